"""JSON Lines, Arrow IPC (file and stream, Feather) and ORC inputs, through the real CLI.

The same rows written in every format must give the same JSON report as
Parquet (only ``inputs`` and the file names of ``--top`` rows differ), by
extension, by magic bytes, with ``--input-format``, from stdin and in shard
directories; a bad value is named by file, row and column in every format.
pyarrow's own readers are the reference for what a file holds.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from cli_run import report, run
from conftest import make_regression
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossctl.io.reader import open_reader
from lossctl.io.sources import FORMATS, open_source

ROWS = 3000


def write_jsonl(table: pa.Table, path: Path, compression: str | None = None) -> None:
    """One object per line; Python writes floats as repr, which round-trips exactly."""
    data = "".join(json.dumps(r) + "\n" for r in table.to_pylist()).encode()
    if compression == "gzip":
        path.write_bytes(gzip.compress(data))
    elif compression == "zstd":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)


def write_ipc_file(table: pa.Table, path: Path) -> None:
    with ipc.new_file(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=700)  # several record batches


def write_ipc_stream(table: pa.Table, path: Path) -> None:
    with ipc.new_stream(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=700)


def write_orc(table: pa.Table, path: Path) -> None:
    orc.write_table(table, str(path), stripe_size=16 << 10)  # several stripes


WRITERS = {
    "jsonl": lambda t, p: write_jsonl(t, p),
    "ndjson": lambda t, p: write_jsonl(t, p),
    "jsonl.gz": lambda t, p: write_jsonl(t, p, "gzip"),
    "jsonl.zst": lambda t, p: write_jsonl(t, p, "zstd"),
    "arrow": write_ipc_file,
    "feather": lambda t, p: feather.write_feather(t, str(p), chunksize=700),
    "ipc": write_ipc_stream,  # the stream format under an IPC extension
    "orc": write_orc,
}


@pytest.fixture(scope="session")
def table() -> pa.Table:
    return pa.Table.from_pandas(make_regression(ROWS, 1717), preserve_index=False)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory, table: pa.Table) -> dict[str, Path]:
    """The same rows in every format: by extension, and by magic bytes (same base name)."""
    d = tmp_path_factory.mktemp("formats")
    out = {"parquet": d / "reg.parquet"}
    pq.write_table(table, out["parquet"], row_group_size=700)
    for ext, write in WRITERS.items():
        out[ext] = d / f"reg.{ext}"
        write(table, out[ext])
    # no extension, one directory each: only the content tells the format, and the
    # base name (which seeds the --ci row buckets) is the same for all
    magic = {"parquet": lambda t, p: pq.write_table(t, p, row_group_size=700),
             "arrow-file": write_ipc_file, "arrow-stream": write_ipc_stream, "orc": write_orc,
             "jsonl": WRITERS["jsonl"], "jsonl-gzip": WRITERS["jsonl.gz"],
             "jsonl-zstd": WRITERS["jsonl.zst"]}
    for name, write in magic.items():
        (d / name).mkdir()
        out[f"magic-{name}"] = d / name / "preds"
        write(table, out[f"magic-{name}"])
    return out


ARGS = ["-l", "y", "-p", "pred", "-w", "w", "-m", "mse,rmse,mae,huber:delta=3,quantile:q=0.8"]
BATCH_ARGS = ["--by", "segment", "--top", "7", "mae", "--keep", "id,segment"]


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The report without what names the input file (and fingerprints its bytes)."""
    doc = dict(doc)
    doc.pop("inputs")
    doc.pop("input_files")
    if "top" in doc:
        doc["top"] = {**doc["top"], "rows": [{k: v for k, v in r.items() if k != "file"}
                                             for r in doc["top"]["rows"]]}
    return doc


@pytest.mark.parametrize("ext", list(WRITERS))
def test_every_format_by_extension_reports_as_parquet(files: dict[str, Path], ext: str) -> None:
    want = report("runner", ["eval", files["parquet"], *ARGS, *BATCH_ARGS])
    got = report("runner", ["eval", files[ext], *ARGS, *BATCH_ARGS])
    assert got["inputs"] == [str(files[ext])]
    assert comparable(got) == comparable(want)
    assert got["rows"] == ROWS and len(got["slices"]) == 3 and len(got["top"]["rows"]) == 7
    assert got["top"]["rows"][0]["file"] == str(files[ext])
    assert isinstance(got["top"]["rows"][0]["id"], int)  # typed as in the file, as Parquet


@pytest.mark.parametrize("name", ["arrow-file", "arrow-stream", "orc", "jsonl", "jsonl-gzip",
                                  "jsonl-zstd"])
def test_every_format_by_magic_bytes_with_intervals(files: dict[str, Path], name: str) -> None:
    """Same base name, so the --ci buckets and the whole report are the same, bit for bit."""
    args = [*ARGS, "--ci", "--by", "segment", "--seed", "3"]
    want = report("runner", ["eval", files["magic-parquet"], *args])
    got = report("runner", ["eval", files[f"magic-{name}"], *args])
    assert comparable(got) == comparable(want)
    assert "ci" in got["losses"]["mse"]


@pytest.mark.parametrize("fmt,key", [("jsonl", "jsonl"), ("arrow", "arrow"), ("arrow", "ipc"),
                                     ("orc", "orc"), ("parquet", "parquet")])
def test_input_format_option(files: dict[str, Path], tmp_path: Path, fmt: str, key: str) -> None:
    path = tmp_path / "preds.data"  # an extension that says nothing
    shutil.copy(files[key], path)
    want = report("runner", ["eval", files["parquet"], *ARGS])
    assert comparable(report("runner", ["eval", path, *ARGS, "--input-format", fmt])) == comparable(want)


def test_input_format_choices_are_the_readers_formats() -> None:
    from lossctl.cli import INPUT_FORMATS

    assert INPUT_FORMATS == list(FORMATS)
    r = run("runner", ["eval", "--help"])
    for fmt in ("jsonl", "arrow", "orc", "JSON Lines", "Feather", ".ndjson"):
        assert fmt in r.out, fmt


@pytest.mark.parametrize("key", ["jsonl", "jsonl.gz", "arrow", "ipc", "orc"])
def test_stdin(files: dict[str, Path], key: str) -> None:
    want = report("runner", ["eval", files["parquet"], *ARGS])
    got = report("runner", ["eval", "-", *ARGS], input=files[key].read_bytes())
    assert got["inputs"] == ["<stdin>"]
    assert comparable(got) == comparable(want)


def test_stdin_as_a_real_process(files: dict[str, Path]) -> None:
    got = report("script", ["eval", "-", *ARGS], input=files["jsonl.gz"].read_bytes())
    assert got["rows"] == ROWS


@pytest.mark.parametrize("key", ["jsonl", "arrow", "orc"])
def test_chunk_size_does_not_change_a_bit(files: dict[str, Path], key: str) -> None:
    a = report("runner", ["eval", files[key], *ARGS, "--chunk-size", "13"])
    b = report("runner", ["eval", files[key], *ARGS, "--chunk-size", "100000"])
    assert a == b


def test_shard_directory_picks_up_every_format(tmp_path: Path, table: pa.Table,
                                                files: dict[str, Path]) -> None:
    d = tmp_path / "shards"
    (d / "sub").mkdir(parents=True)
    cuts = [("part-0.jsonl", 0, 400), ("part-1.arrow", 400, 900), ("part-2.orc", 900, 1500),
            ("part-3.feather", 1500, 1900), ("part-4.ndjson.gz", 1900, 2300),
            ("sub/part-5.ipc", 2300, 2600), ("sub/part-6.jsonl.zst", 2600, ROWS)]
    for name, a, b in cuts:
        ext = name.split(".", 1)[1].replace("ndjson.gz", "jsonl.gz")
        WRITERS[ext](table.slice(a, b - a), d / name)
    (d / "_SUCCESS").write_bytes(b"")
    (d / "notes.md").write_text("not data\n")
    doc = report("runner", ["eval", d, *ARGS])
    assert doc["inputs"] == [str(d / name) for name, _, _ in sorted(cuts)]
    want = report("runner", ["eval", files["parquet"], *ARGS])
    assert doc["losses"] == want["losses"] and doc["rows"] == ROWS
    assert doc["weight_sum"] == want["weight_sum"]


def test_rows_output_is_the_same_in_every_format(files: dict[str, Path], tmp_path: Path) -> None:
    tables = {}
    for key in ("parquet", "jsonl.gz", "feather", "ipc", "orc"):
        out = tmp_path / f"rows-{key}.parquet"
        r = run("runner", ["rows", files[key], "-l", "y", "-p", "pred", "-m", "mse,mae",
                           "--keep", "id,segment", "-o", out])
        assert r.code == 0, r.err
        tables[key] = pq.read_table(out)
    for key, t in tables.items():  # (the Parquet file has large strings, from pandas)
        assert t.to_pylist() == tables["parquet"].to_pylist(), key
    assert tables["orc"].num_rows == ROWS
    assert tables["orc"].column_names == ["row", "id", "segment", "mse", "mae"]


# --------------------------------------------------------------------------
# multiclass list columns, label joins
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    n, k = 900, 4
    logits = rng.normal(0, 2, (n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = pa.table({"label": rng.integers(0, k, n),
                  "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), k),
                  "probs": [list(r) for r in probs]})
    d = tmp_path_factory.mktemp("lists")
    out = {"parquet": d / "mc.parquet", "jsonl": d / "mc.jsonl", "arrow": d / "mc.arrow",
           "orc": d / "mc.orc"}
    pq.write_table(t, out["parquet"], row_group_size=200)
    write_jsonl(t, out["jsonl"])
    write_ipc_file(t, out["arrow"])
    # ORC has no fixed-size lists: variable lists of K values
    write_orc(t.set_column(1, "logits", t.column("logits").cast(pa.list_(pa.float64()))), out["orc"])
    return out


@pytest.mark.parametrize("key", ["jsonl", "arrow", "orc"])
def test_list_columns_hold_the_classes(lists: dict[str, Path], key: str) -> None:
    args = ["-l", "label", "-m", "sparse_softmax_ce"]
    want = report("runner", ["eval", lists["parquet"], *args, "-p", "logits"])
    got = report("runner", ["eval", lists[key], *args, "-p", "logits"])
    assert comparable(got) == comparable(want)
    want = report("runner", ["eval", lists["parquet"], "-l", "label", "-p", "probs", "-m", "cce"])
    got = report("runner", ["eval", lists[key], "-l", "label", "-p", "probs", "-m", "cce"])
    assert comparable(got) == comparable(want)


def test_labels_joined_from_jsonl_by_key(files: dict[str, Path], table: pa.Table,
                                         tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl.gz"
    write_jsonl(table.select(["id", "y"]).take(np.arange(ROWS)[::-1]), labels, "gzip")
    preds = tmp_path / "preds.arrow"
    write_ipc_file(table.drop_columns(["y"]), preds)
    got = report("runner", ["eval", preds, "--labels", labels, "--key", "id", *ARGS])
    want = report("runner", ["eval", files["parquet"], *ARGS])
    assert got["losses"] == want["losses"]
    assert got["join"]["unmatched_main"] == 0


# --------------------------------------------------------------------------
# bad values and bad files
# --------------------------------------------------------------------------

BAD_ROW = 2345  # 1-based data row; far enough to be in a later JSON block or record batch


def _with_value(table: pa.Table, column: str, value: Any) -> pa.Table:
    values = table.column(column).to_pylist()
    values[BAD_ROW - 1] = value
    return table.set_column(table.column_names.index(column), column,
                            pa.array(values, type=table.schema.field(column).type))


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "jsonl.gz", "arrow", "ipc", "orc"])
def test_a_bad_value_is_named_by_row_and_column(table: pa.Table, tmp_path: Path, ext: str) -> None:
    bad = _with_value(table, "w", -2.0)  # a negative weight
    path = tmp_path / f"bad.{ext}"
    (lambda t, p: pq.write_table(t, p, row_group_size=700)) (bad, path) if ext == "parquet" \
        else WRITERS[ext](bad, path)
    r = run("runner", ["eval", path, *ARGS])
    assert r.code == 2
    assert f"{path}, row {BAD_ROW}, column 'w' (weight)" in r.err
    assert "-2.0" in r.err


@pytest.mark.parametrize("ext", ["arrow", "orc", "jsonl.zst"])
def test_a_missing_value_is_named_and_skippable(table: pa.Table, tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"null.{ext}"
    WRITERS[ext](_with_value(table, "pred", None), path)
    r = run("runner", ["eval", path, *ARGS])
    assert r.code == 2
    assert f"{path}, row {BAD_ROW}, column 'pred' (prediction)" in r.err
    doc = report("runner", ["eval", path, *ARGS, "--nan", "skip"])
    assert (doc["rows"], doc["rows_skipped"]) == (ROWS - 1, 1)


def _jsonl_with_line(table: pa.Table, path: Path, line: str, compress: bool = False) -> None:
    lines = [json.dumps(r) for r in table.to_pylist()]
    lines[BAD_ROW - 1] = line
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("line,message", [
    ('{"id": 1, "segment": "a", "y": 1, "pred": "oops", "w": 1}',
     "row {row}, column 'pred' (prediction): not a number (value: \"oops\")"),
    ('{"id": 1, "segment": "a", "y": 1, "pred": true, "w": 1}',
     "row {row}, column 'pred' (prediction): not a number (value: true)"),
    ('{"id": 1, "segment": "a", "y": 1, "pred": 1e999, "w": 1}',
     "row {row}, column 'pred' (prediction): number too large for a float64 (value: 1e999)"),
    ('{"id": 1, "segment": "a", "y": 1, "pred": [1], "w": 1}',
     "row {row}, column 'pred' (prediction): not a number (value: [1])"),
    ('{"id": 1, "segment": "a", "y": 1, "pred": 2, "pred": 3, "w": 1}',
     "row {row}, column 'pred' (prediction): given twice in one object (value: 3)"),
    ('{"id": 1, "segment": "a", "y": 1, "pred": 2, "w": 1',
     "row {row}: not valid JSON (Expecting ',' delimiter at character 52)"),
    ('[1, 2, 3]', "row {row}: not a JSON object (JSON Lines hold one object per line)"),
], ids=["string", "bool", "overflow", "list", "repeated-key", "truncated", "array"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_jsonl_bad_records(table: pa.Table, tmp_path: Path, line: str, message: str,
                           compress: bool) -> None:
    path = tmp_path / ("bad.jsonl.gz" if compress else "bad.jsonl")
    _jsonl_with_line(table, path, line, compress)
    r = run("runner", ["eval", path, *ARGS])
    assert r.code == 2
    assert r.err == f"lossctl: error: {path}, {message.format(row=BAD_ROW)}\n"


def test_jsonl_blank_lines_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"y": 1, "p": 2}\r\n\n   \n{"y": 2, "p": 4}\n{"y": 3, "p": "x"}')
    r = run("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert r.err == f"lossctl: error: {path}, row 3, column 'p' (prediction): not a number " \
                    "(value: \"x\")\n"


def test_jsonl_keys_seen_only_later_are_unknown_columns(tmp_path: Path) -> None:
    """Columns are the keys of the first lines (64 KiB), as a CSV's are its header's."""
    path = tmp_path / "late.jsonl"
    path.write_text('{"y": 1, "p": 2}\n' * 5000 + '{"y": 1, "p": 2, "q": 3}\n')
    r = run("runner", ["eval", path, "-l", "y", "-p", "q"])
    assert r.code == 2 and "no prediction column named 'q'" in r.err and "y, p" in r.err
    # a key the first lines name but later rows lack is a missing value
    path.write_text('{"y": 1, "p": 2}\n' * 5 + '{"y": 1}\n')
    r = run("runner", ["eval", path, "-l", "y", "-p", "p"])
    assert r.code == 2 and f"{path}, row 6, column 'p'" in r.err


@pytest.mark.parametrize("content,name,message", [
    (b"", "empty.jsonl", "empty input"),
    (b"ARROW1\x00\x00garbage", "cut.arrow", "cannot read as Arrow IPC"),
    (b"\xff\xff\xff\xffgarbage", "cut.ipc", "cannot read as Arrow IPC"),
    (b"ORC\x00garbage", "cut.orc", "cannot read as ORC"),
    (b"FEA1\x00\x00\x00\x00rest", "old.feather", "a Feather v1 file (deprecated)"),
    (gzip.compress(b"ARROW1"), "x.arrow.gz", "a compressed Arrow IPC file is not supported"),
    (gzip.compress(b"ORC\x00"), "x.orc.gz", "a compressed ORC file is not supported"),
])
def test_bad_files(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    r = run("script", ["eval", path, "-l", "y", "-p", "p"])
    assert r.code == 2
    assert r.err.startswith(f"lossctl: error: {path}") and message in r.err
    assert "Traceback" not in r.err


def test_a_string_column_in_a_typed_format_is_named(table: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "strings.orc"
    write_orc(table.set_column(3, "pred", table.column("pred").cast(pa.string())), path)
    r = run("runner", ["eval", path, *ARGS])
    assert r.code == 2 and "column 'pred' is string, not numeric" in r.err


def test_csv_text_starting_with_ORC_is_still_csv(tmp_path: Path) -> None:
    path = tmp_path / "orcid"
    path.write_text("ORCID,y,p\n1,1,2\n2,2,4\n")
    assert open_source(str(path)).format == "csv"
    assert report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse"])["rows"] == 2


# --------------------------------------------------------------------------
# streaming: record batch by batch, stripe by stripe, block by block
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key,at_least", [("arrow", 5), ("ipc", 5), ("orc", 2), ("jsonl", 1)])
def test_readers_stream_in_pieces(files: dict[str, Path], key: str, at_least: int) -> None:
    reader = open_reader(open_source(str(files[key])))
    assert reader.columns == ["id", "segment", "y", "pred", "w"]
    batches = list(reader.batches(["y", "w"]))
    assert len(batches) >= at_least
    assert sum(b.num_rows for b in batches) == ROWS
    got = pa.Table.from_batches(batches)
    assert set(got.column_names) == {"y", "w"}  # only the needed columns are read
    ref = pq.read_table(files["parquet"])
    for c in ("y", "w"):
        assert got.column(c).to_pylist() == ref.column(c).to_pylist()


def test_jsonl_is_read_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 table: pa.Table) -> None:
    from lossctl.io import jsonl

    monkeypatch.setattr(jsonl, "_BLOCK", 1 << 14)
    path = tmp_path / "blocks.jsonl"
    write_jsonl(table, path)
    batches = list(open_reader(open_source(str(path))).batches(["pred"]))
    assert len(batches) > 10 and sum(b.num_rows for b in batches) == ROWS


# --------------------------------------------------------------------------
# exactness: any float survives JSON Lines, Arrow and ORC bit for bit
# --------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e150, max_value=1e150)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=40))
def test_fuzzed_values_agree_bit_for_bit(tmp_path: Path, rows: list[tuple[float, float]]) -> None:
    t = pa.table({"y": [r[0] for r in rows], "p": [r[1] for r in rows]})
    pq.write_table(t, tmp_path / "f.parquet")
    want = report("runner", ["eval", tmp_path / "f.parquet", "-l", "y", "-p", "p",
                             "-m", "mse,mae,log_cosh"])
    for ext in ("jsonl", "arrow", "orc"):
        WRITERS[ext](t, tmp_path / f"f.{ext}")
        got = report("runner", ["eval", tmp_path / f"f.{ext}", "-l", "y", "-p", "p",
                                "-m", "mse,mae,log_cosh"])
        assert got["losses"] == want["losses"], ext
