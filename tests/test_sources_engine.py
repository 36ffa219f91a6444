"""Sources and engine: block-parallel CSV parsing, column selection, thread/chunk invariance."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from lossctl.api import evaluate_request as evaluate_files
from lossctl.engine.plan import Request
from lossctl.errors import InputError, InvalidInput, UsageError
from lossctl.io import csv as sources
from lossctl.io.columns import select_columns
from lossctl.io.reader import open_reader
from lossctl.io.records import record_end
from lossctl.io.sources import open_source

# --------------------------------------------------------------------------
# record boundaries
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, end, expected",
    [
        (b"a,b\n1,2\n3,4", None, 7),
        (b'a,b\n"x\ny",2\n', None, 11),  # the newline inside quotes is not a boundary
        (b'1,"q\n', None, -1),  # only newline is inside an open quote
        (b'1,"a""b"\n2,3', None, 8),  # doubled quotes keep the parity
        (b"no newline", None, -1),
    ],
)
def test_record_end(data: bytes, end: int | None, expected: int) -> None:
    assert record_end(data, 0, len(data) if end is None else end, ",")[0] == expected
    # the same from an offset into a larger buffer
    shifted = record_end(b"zz\n" + data, 3, 3 + (len(data) if end is None else end), ",")[0]
    assert shifted == (expected + 3 if expected >= 0 else -1)


def test_first_record_end_skips_quoted_newline_in_header() -> None:
    assert record_end(b'"a\nb",c\n1,2\n', 0, 12, ",", first=True) == (7, False)
    assert record_end(b"a,b", 0, 3, ",", first=True) == (-1, False)


# --------------------------------------------------------------------------
# block-parallel CSV equals pyarrow's whole-file reader
# --------------------------------------------------------------------------

TRICKY = (
    b'\xef\xbb\xbfid,note,y,p\r\n'
    b'1,"plain",1.5,2\r\n'
    b'2,"line one\nline two, with comma",3,4.25\r\n'
    b'3,"he said ""hi""\n",-1e300,5\r\n'
    b'4,,7,8\r\n'
    + b"".join(b'%d,"multi\nline %d",%d.5,%d\r\n' % (i, i, i, i * 2) for i in range(5, 60))
    + b"60,last,1,2"  # no trailing newline
)


@pytest.mark.parametrize("block", [7, 16, 33, 64, 1000, 1 << 20])
def test_csv_blocks_match_whole_file(tmp_path, monkeypatch, block: int) -> None:
    path = tmp_path / "tricky.csv"
    path.write_bytes(TRICKY)
    monkeypatch.setattr(sources, "CSV_BLOCK", block)
    reader = open_reader(open_source(str(path)))
    assert reader.columns == ["id", "note", "y", "p"]
    got = pa.Table.from_batches(list(reader.batches(["y", "p"])))
    want = pacsv.read_csv(
        str(path),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(include_columns=["y", "p"],
                                             column_types={"y": pa.float64(), "p": pa.float64()}),
    )
    assert got.num_rows == 60
    assert got.column("y").to_pylist() == want.column("y").to_pylist()
    assert got.column("p").to_pylist() == want.column("p").to_pylist()


def test_csv_bad_value_found_in_later_block(tmp_path, monkeypatch) -> None:
    rows = [f"{i},{i * 0.5}" for i in range(200)]
    rows[137] = "137,oops"
    path = tmp_path / "bad.csv"
    path.write_text("y,p\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(sources, "CSV_BLOCK", 50)
    with pytest.raises(InvalidInput) as info:
        evaluate_files(Request([str(path)], "y", "p", ["mse"]))
    e = info.value
    assert (e.row, e.column, e.role, e.value) == (137, "p", "prediction", "oops")
    assert e.source == str(path)
    assert "row 138" in str(e)


def test_header_only_and_empty(tmp_path) -> None:
    (tmp_path / "h.csv").write_text("y,p\n")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match="no data rows"):
        evaluate_files(Request([str(tmp_path / "h.csv")], "y", "p"))
    with pytest.raises(InputError, match="empty"):
        evaluate_files(Request([str(tmp_path / "e.csv")], "y", "p"))


# --------------------------------------------------------------------------
# column selection
# --------------------------------------------------------------------------

COLS = ["id", "label", "logit_0", "logit_1", "logit_2", "w"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("label", ["label"]),
        ("2", ["label"]),
        ("logit_*", ["logit_0", "logit_1", "logit_2"]),
        ("logit_0:logit_2", ["logit_0", "logit_1", "logit_2"]),
        ("3:5", ["logit_0", "logit_1", "logit_2"]),
        ("logit_2,logit_0", ["logit_2", "logit_0"]),
        ("id, w", ["id", "w"]),
    ],
)
def test_select_columns(spec: str, expected: list[str]) -> None:
    assert select_columns(spec, COLS) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lable", "Did you mean 'label'"),
        ("9", "out of range"),
        ("x_*", "no column matches"),
        ("logit_2:logit_0", "backwards"),
        ("label,2", "twice"),
    ],
)
def test_select_columns_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        select_columns(spec, COLS)
    if "Did you mean" in message:
        assert "Available columns: id, label" in str(info.value)


# --------------------------------------------------------------------------
# the engine: threads and chunk sizes do not change a bit; first error wins
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory) -> str:
    rng = np.random.default_rng(7)
    n = 8_000
    y = rng.normal(size=n) * 10.0 ** rng.integers(-5, 6, n)
    table = pa.table({"y": y, "p": y + rng.normal(size=n), "w": rng.uniform(0, 3, n)})
    path = tmp_path_factory.mktemp("eng") / "r.csv"
    pacsv.write_csv(table, str(path))
    return str(path)


def test_threads_and_chunks_do_not_change_bits(regression_csv, monkeypatch) -> None:
    losses = ["mse", "rmse", "mae", "huber:delta=0.5", "log_cosh", "quantile:q=0.2"]
    results = set()
    for threads, chunk, block in [(1, 65536, 1 << 20), (4, 7, 4096), (2, 1000, 100_000),
                                  (3, 4093, 333)]:
        monkeypatch.setattr(sources, "CSV_BLOCK", block)
        r = evaluate_files(Request([regression_csv], "y", "p", losses, weight="w",
                                   chunk_rows=chunk, threads=threads)).result
        results.add(tuple(v.hex() for v in r.values.values()) + (r.weight_sum.hex(), r.rows))
    assert len(results) == 1


def test_first_error_in_stream_is_reported(tmp_path) -> None:
    z = np.zeros(5000)
    z[4321] = 2.0
    z[1234] = -1.0
    path = tmp_path / "b.csv"
    pacsv.write_csv(pa.table({"z": z, "p": np.full(5000, 0.5)}), str(path))
    for threads, chunk in [(1, 100), (4, 3), (2, 5000)]:
        with pytest.raises(InvalidInput) as info:
            evaluate_files(Request([str(path)], "z", "p", ["bce"], chunk_rows=chunk,
                                   threads=threads))
        assert (info.value.row, info.value.value, info.value.column) == (1234, -1.0, "z")


def test_rows_counted_per_file_across_shards(tmp_path) -> None:
    for i in range(3):
        z = np.full(100, 0.5)
        if i == 2:
            z[41] = 7.0
        pacsv.write_csv(pa.table({"z": z, "p": np.full(100, 0.5)}), str(tmp_path / f"s{i}.csv"))
    with pytest.raises(InvalidInput) as info:
        evaluate_files(Request([str(tmp_path / "s*.csv")], "z", "p", ["bce"], chunk_rows=16))
    assert info.value.source.endswith("s2.csv")
    assert info.value.row == 41


# --------------------------------------------------------------------------
# the default chunk adapts to the row width (memory bounded by values)
# --------------------------------------------------------------------------


def test_default_chunk_rows_follow_the_row_width() -> None:
    from lossctl.engine.plan import CHUNK_VALUES, DEFAULT_CHUNK_ROWS, chunk_rows_for

    assert chunk_rows_for(1) == chunk_rows_for(3) == DEFAULT_CHUNK_ROWS
    assert chunk_rows_for(1002) == CHUNK_VALUES // 1002 == 1046  # K=1000 logits + label
    assert chunk_rows_for(10**9) == 1


def _wide_parquet(tmp_path, rows: int, k: int, row_group: int, fixed: bool = False) -> str:
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, rows * k)
    values = pa.array(logits)
    lists = pa.FixedSizeListArray.from_arrays(values, k) if fixed else pa.ListArray.from_arrays(
        pa.array(np.arange(rows + 1, dtype=np.int32) * k), values)
    path = tmp_path / f"wide-{fixed}.parquet"
    pq.write_table(pa.table({"label": rng.integers(0, k, rows), "logits": lists, "w": rng.random(rows)}),
                   str(path), row_group_size=row_group)
    return str(path)


@pytest.mark.parametrize("fixed", [False, True])
def test_parquet_row_width_counts_list_values(tmp_path, fixed: bool) -> None:
    path = _wide_parquet(tmp_path, 300, 40, 128, fixed)
    reader = open_reader(open_source(path))
    assert reader.row_width(["label"]) == 1
    assert reader.row_width(["label", "logits", "w"]) == 42
    req = Request([path], "label", "logits")
    assert req.rows_for(reader, ["label", "logits"]) == min(65536, (1 << 20) // 41)
    assert Request([path], "label", "logits", chunk_rows=7).rows_for(reader, ["logits"]) == 7


def test_adaptive_chunks_do_not_change_bits(tmp_path, monkeypatch) -> None:
    """A wide list column in one row group: adaptive chunks, forced small, give the same bits."""
    import lossctl.engine.plan as plan

    path = _wide_parquet(tmp_path, 3000, 50, 3000)

    def bits(**kw) -> tuple:
        r = evaluate_files(Request([path], "label", "logits", ["sparse_softmax_ce"], weight="w", **kw))
        return tuple(v.hex() for v in r.result.values.values()) + (r.result.weight_sum.hex(),)

    whole = bits(chunk_rows=3000)
    monkeypatch.setattr(plan, "CHUNK_VALUES", 52 * 97)  # 97 rows a chunk: 31 chunks of one row group
    assert plan.chunk_rows_for(52) == 97
    assert bits() == whole
    assert bits(threads=1) == whole


# --------------------------------------------------------------------------
# gzip: ISA-L's inflate (isal) and pyarrow's zlib give the same rows and errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("native", ["1", "0"])
def test_gzip_csv_same_bits_and_clear_errors(tmp_path, monkeypatch, native: str) -> None:
    import gzip

    monkeypatch.setenv("LOSSCTL_NATIVE", native)
    rng = np.random.default_rng(3)
    table = pa.table({"y": rng.normal(size=30000), "p": rng.normal(size=30000)})
    plain = tmp_path / "a.csv"
    pacsv.write_csv(table, str(plain))
    data = plain.read_bytes()
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(data[:200000]) + gzip.compress(data[200000:]))  # two members
    monkeypatch.setattr(sources, "CSV_BLOCK", 65536)

    def bits(path) -> tuple:
        r = evaluate_files(Request([str(path)], "y", "p", ["mse", "mae"])).result
        return tuple(v.hex() for v in r.values.values()) + (r.rows,)

    assert bits(packed) == bits(plain)
    truncated = tmp_path / "t.csv.gz"
    truncated.write_bytes(gzip.compress(data)[:50000])
    with pytest.raises(InputError, match="t.csv.gz"):
        evaluate_files(Request([str(truncated)], "y", "p", ["mse"]))
    corrupt = tmp_path / "c.csv.gz"
    whole = bytearray(gzip.compress(data))
    whole[5000:5100] = bytes(100)
    corrupt.write_bytes(bytes(whole))
    with pytest.raises(InputError, match="c.csv.gz"):
        evaluate_files(Request([str(corrupt)], "y", "p", ["mse"]))
    fake = tmp_path / "f.csv.gz"
    fake.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(InputError, match="f.csv.gz"):
        evaluate_files(Request([str(fake)], "y", "p", ["mse"]))
