"""Regression tests for issue 11, the input half: hostile and unusual input files.

Each case once gave a silently wrong number, a traceback, a hang, or a message
the user had to decode; each now reads right or fails with exit 2 and a
one-line message naming the file, the data row, the column and the value.
Values are checked against pyarrow's own reading and exact arithmetic.
"""

from __future__ import annotations

import gzip
import json
import os
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import report, run

from lossctl.io import csv as csvio
from lossctl.io import fastcsv
from lossctl.io.sources import format_size


@pytest.fixture(params=["C", "twin"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Each CSV case with the C speed-ups (block scan, numbers) and without."""
    if request.param == "twin":
        monkeypatch.setenv("LOSSCTL_NATIVE", "0")
    else:
        monkeypatch.delenv("LOSSCTL_NATIVE", raising=False)
    fastcsv.module.cache_clear()
    yield request.param
    fastcsv.module.cache_clear()


def mse(y: list[float], p: list[float]) -> float:
    """The exact mean of the float64 squared errors, rounded once."""
    return float(sum((Fraction((a - b) * (a - b)) for a, b in zip(y, p, strict=True)),
                     Fraction(0)) / len(y))


def error(args: list, **kw) -> str:
    """Run, require exit 2 with a one-line message, return it."""
    r = run("runner", args, **kw)
    assert r.code == 2, (r.code, r.out, r.err)
    assert r.err.startswith("lossctl: error: ") and r.err.count("\n") == 1, r.err
    return r.err


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --------------------------------------------------------------------------
# 1. Repeated column names: positions mean positions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["v,v", "y ,y", '"v","v"'])
def test_repeated_csv_names_by_position(header: str, tmp_path: Path, native: str) -> None:
    path = write(tmp_path / "d.csv", f"{header}\n1,2\n3,5\n")
    doc = report("runner", ["eval", path, "-l", "1", "-p", "2", "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == mse([1, 3], [2, 5]) == 2.5
    name = header.split(",")[1].strip('" ')
    assert doc["columns"] == {"label": [f"{name} (column 1)"], "prediction": [f"{name} (column 2)"],
                              "weight": None}


def test_repeated_name_is_ambiguous(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "y,p,p\n1,2,3\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert "'p' is ambiguous: columns 2 and 3 are both named 'p'" in msg
    doc = report("runner", ["eval", path, "-l", "y", "-p", "3", "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == 4.0
    doc = report("runner", ["eval", path, "-l", "y", "-p", "2", "--by", "3", "--keep", "3",
                            "--top", "1", "mse", "-m", "mse"])
    # (CSV text typed at the end, over all its values: an integer, as Parquet would hold it)
    assert doc["slices"][0]["key"] == {"p (column 3)": 3}
    assert doc["top"]["rows"][0]["p (column 3)"] == 3


def test_repeated_parquet_names_by_position(tmp_path: Path) -> None:
    t = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([3.0, 7.0]), pa.array([[1.0], [2.0]]),
                              pa.array([0.5, 1.0])], names=["v", "v", "l", "v"])
    path = tmp_path / "d.parquet"
    pq.write_table(t, path)
    doc = report("runner", ["eval", path, "-l", "1", "-p", "2", "-w", "4", "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == (0.5 * 4 + 1.0 * 25) / 1.5
    msg = error(["eval", path, "-l", "v", "-p", "2", "-m", "mse"])
    assert "columns 1, 2 and 4 are all named 'v'" in msg


@pytest.mark.parametrize("fmt", ["arrow", "orc"])
def test_repeated_names_in_arrow_and_orc(fmt: str, tmp_path: Path) -> None:
    t = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([3.0, 7.0]), pa.array([0.5, 1.0])],
                             names=["v", "v", "w"])
    path = tmp_path / f"d.{fmt}"
    if fmt == "arrow":
        import pyarrow.feather as feather

        feather.write_feather(t, path)
    else:
        import pyarrow.orc as orc

        orc.write_table(t, path)
    doc = report("runner", ["eval", path, "-l", "1", "-p", "2", "-w", "w", "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == (0.5 * 4 + 1.0 * 25) / 1.5
    assert "columns 1 and 2 are both named 'v'" in error(["eval", path, "-l", "v", "-p", "2"])


# --------------------------------------------------------------------------
# 2. Quote parity: a quote inside an unquoted field is a plain character
# --------------------------------------------------------------------------


def inch_file(tmp_path: Path, quote_in_header: bool = False) -> tuple[Path, list[float], list[float]]:
    rng = np.random.default_rng(7)
    y, p = rng.normal(size=(2, 3000)).tolist()
    rows = []
    for i in range(3000):
        note = '5" screen' if i % 5 == 0 else ('"two\nlines, ""q"""' if i % 7 == 0 else "n")
        rows.append(f"{y[i]!r},{p[i]!r},{note}")
    name = 'size 5"' if quote_in_header else "note"
    return write(tmp_path / "inch.csv", f"y,p,{name}\n" + "\n".join(rows) + "\n"), y, p


@pytest.mark.parametrize("quote_in_header", [False, True])
@pytest.mark.parametrize("block", [97, 1024, 1 << 20])
def test_literal_quote_does_not_cut_a_quoted_newline(quote_in_header: bool, block: int,
                                                     tmp_path: Path, native: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path, y, p = inch_file(tmp_path, quote_in_header)
    monkeypatch.setattr(csvio, "CSV_BLOCK", block)
    ref = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert ref.num_rows == 3000
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "--keep", "3",
                            "--top", "3000", "mse"])
    assert doc["rows"] == 3000 and doc["losses"]["mse"]["value"] == mse(y, p)
    kept = {r["row"]: r[ref.column_names[2]] for r in doc["top"]["rows"]}
    assert [kept[i + 1] for i in range(3000)] == ref.column(2).to_pylist()


# --------------------------------------------------------------------------
# 3. An unterminated quote is an error naming the row where it opened
# --------------------------------------------------------------------------


def test_unterminated_quote_in_a_column_not_asked_for(tmp_path: Path, native: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvio, "CSV_BLOCK", 4096)
    rows = [f"{i},{i + 1},n" for i in range(1, 5001)]
    rows[4321] = '7,8,"never closed'
    path = write(tmp_path / "u.csv", "y,p,note\n" + "\n".join(rows) + "\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert f"{path}, row 4322: a quoted field opened in this row is not closed" in msg


def test_unterminated_quote_beyond_the_record_limit(tmp_path: Path, native: str) -> None:
    rows = [f"{i},{i + 1},n" for i in range(1, 200_001)]
    rows[9] = '1,2,"oops'
    path = write(tmp_path / "u.csv", "y,p,note\n" + "\n".join(rows) + "\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "-m", "mse", "--max-record-size", "64K"])
    assert f"{path}, row 10: a quoted field opened in this row runs on for more than 64 KiB" in msg


def test_unterminated_quote_in_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", 'y,"p\n1,2\n')
    assert "the header ends inside a quoted field" in error(["eval", path, "-l", "1", "-p", "2"])


# --------------------------------------------------------------------------
# 4. Former tracebacks
# --------------------------------------------------------------------------


def test_parquet_integers_beyond_2_53_are_rounded_as_csv_digits_are(tmp_path: Path) -> None:
    ys = [2**53 + 1, 2**62 + 3, -(2**63), 2**63 - 1, 12345]
    ps = [0, 2**64 - 1, 2**53 + 3, 7, 2**63 + 1025]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"y": pa.array(ys, pa.int64()), "p": pa.array(ps, pa.uint64())}), path)
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == mse([float(v) for v in ys], [float(v) for v in ps])
    csv = write(tmp_path / "big.csv", "y,p\n" + "".join(f"{a},{b}\n" for a, b in zip(ys, ps, strict=True)))
    assert report("runner", ["eval", csv, "-l", "y", "-p", "p", "-m", "mse"])["losses"] == \
        doc["losses"]


def test_parquet_decimals_are_correctly_rounded(tmp_path: Path) -> None:
    """pyarrow's decimal-to-double cast rounds twice (about one value in ten is an ulp off)."""
    rng = np.random.default_rng(11)
    ys = [Decimal(int(rng.integers(-10**18, 10**18)) * 10**7 + int(rng.integers(0, 10**7)))
          .scaleb(-int(rng.integers(0, 12))) for _ in range(500)]
    path = tmp_path / "dec.parquet"
    pq.write_table(pa.table({"y": pa.array(ys, pa.decimal128(38, 12)), "p": [0.0] * 500}), path)
    direct = pa.array(ys, pa.decimal128(38, 12)).cast(pa.float64()).to_pylist()
    assert direct != [float(v) for v in ys]  # the direct cast is off somewhere: this matters
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mae"])
    exact = float(sum((Fraction(abs(float(v))) for v in ys), Fraction(0)) / 500)
    assert doc["losses"]["mae"]["value"] == exact


@pytest.mark.parametrize("args, message", [
    (["-l", "y", "-p", "ll"], "column 'll' is list<element: list<element: double>>, not numeric"),
    (["-l", "y", "-p", "st"], "column 'st' is struct<a: double>, not numeric"),
    (["-l", "y", "-p", "p", "--by", "st"], "--by column 'st' is struct<a: double>: slices need"),
    (["-l", "y", "-p", "p", "--by", "l"], "--by column 'l' is list<element: double>: slices need"),
])
def test_nested_columns_in_a_role_or_by(args: list[str], message: str, tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"y": [0.0, 1.0], "p": [0.5, 0.5], "ll": [[[1.0]], [[2.0]]],
                             "st": [{"a": 1.0}, {"a": 2.0}], "l": [[1.0], [2.0]]}), path)
    assert message in error(["eval", path, *args, "-m", "mse"])


@pytest.mark.parametrize("extra", [["--keep", "w", "--top", "2", "mse"], ["--by", "w"],
                                   ["--keep", "p", "--top", "1", "mse"], ["--by", "p,w"]])
def test_role_column_also_kept_or_sliced_parses_the_same(extra: list[str], tmp_path: Path,
                                                          native: str) -> None:
    path = write(tmp_path / "k.csv", 'y,p,w\n1,2, 1.5\n3,"5",NA\n4,4,\t2\n2,1e0,1\n')
    plain = report("runner", ["eval", path, "-l", "y", "-p", "p", "-w", "w", "-m", "mse",
                              "--nan", "skip"])
    both = report("runner", ["eval", path, "-l", "y", "-p", "p", "-w", "w", "-m", "mse",
                             "--nan", "skip", *extra])
    assert both["losses"]["mse"]["value"] == plain["losses"]["mse"]["value"] == 2.5 / 4.5
    assert both["rows_skipped"] == 1


@pytest.mark.parametrize("extra", [["--keep", "w"], ["--by", "w"]])
def test_role_column_also_kept_bad_value_gets_the_normal_message(extra: list[str], tmp_path: Path,
                                                                 native: str) -> None:
    path = write(tmp_path / "k.csv", "y,p,w\n1,2,1\n3,5,x1\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "-w", "w", "-m", "mse", *extra])
    assert msg.endswith(f"{path}, row 2, column 'w' (weight): not a number (value: 'x1')\n")
    assert msg == error(["eval", path, "-l", "y", "-p", "p", "-w", "w", "-m", "mse"])


@pytest.mark.parametrize("delimiter", ["\u00a7", ";;", '"', "\n", ""])
def test_delimiter_must_be_one_ascii_character(delimiter: str, tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "y,p\n1,2\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "--delimiter", delimiter])
    assert "--delimiter must be one ASCII character other than a quote or a line end" in msg


@pytest.mark.parametrize("size", ["0", "-5", str(10**20), str(2**30 + 1)])
def test_absurd_chunk_size(size: str, tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "y,p\n1,2\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", f"--chunk-size={size}"])
    assert "--chunk-size must be between 1 and 1,073,741,824 rows" in msg


# --------------------------------------------------------------------------
# 5. Bounded time and memory: the longest record
# --------------------------------------------------------------------------


def test_long_line_in_gzip_fails_fast_naming_the_row(tmp_path: Path) -> None:
    path = tmp_path / "long.csv.gz"
    with gzip.open(path, "wb") as g:  # 200 KB on disk, one 100 MB line
        g.write(b"y,p\n1,2\n" + b"1" * 100_000_000 + b",2\n3,4\n")
    msg = error(["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert f"{path}, row 2: the record is longer than 16 MiB without a line end " \
           "(--max-record-size raises the limit)" in msg


def test_max_record_size_can_be_raised(tmp_path: Path, native: str) -> None:
    wide = ",".join(["0.5"] * 400_000)  # a 1.6 MB record: 400,001 columns
    path = write(tmp_path / "w.csv", "y," + ",".join(f"c{i}" for i in range(400_000)) + "\n"
                 + "1.5," + wide + "\n")
    msg = error(["eval", path, "-l", "y", "-p", "c0", "-m", "mse", "--max-record-size", "1M"])
    assert "the first line is longer than 1 MiB" in msg
    doc = report("runner", ["eval", path, "-l", "y", "-p", "c399999", "-m", "mse",
                            "--max-record-size", "8MiB"])
    assert doc["losses"]["mse"]["value"] == 1.0


def test_blocks_never_grow_past_the_limit(tmp_path: Path, native: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray quote early in a big file: the reader stops at the limit, not at the end."""
    monkeypatch.setattr(csvio, "CSV_BLOCK", 1 << 16)
    rows = "".join(f"{i},{i},n\n" for i in range(300_000))
    path = write(tmp_path / "s.csv", 'y,p,note\n1,2,"stray\n' + rows)
    sizes: list[int] = []
    real = csvio._Block.__init__

    def spy(self, data, begin, end, problem=None):  # type: ignore[no-untyped-def]
        sizes.append(len(data))
        real(self, data, begin, end, problem)

    monkeypatch.setattr(csvio._Block, "__init__", spy)
    msg = error(["eval", path, "-l", "y", "-p", "p", "--max-record-size", "256K"])
    assert "row 1: a quoted field opened in this row runs on for more than 256 KiB" in msg
    assert max(sizes) <= 2 * (256 << 10) + (1 << 16) + (1 << 16)


def test_sizes_in_messages() -> None:
    assert (format_size(16 << 20), format_size(3 << 29), format_size(900)) == \
        ("16 MiB", "1.5 GiB", "900 bytes")


@pytest.mark.parametrize("text", ["abc", "0", "-1M", "3X"])
def test_bad_max_record_size(text: str, tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "y,p\n1,2\n")
    r = run("runner", ["eval", path, "-l", "y", "-p", "p", "--max-record-size", text])
    assert r.code == 2 and "--max-record-size" in r.err


# --------------------------------------------------------------------------
# 6. FIFOs, sockets and other names in shard directories; pipes by name
# --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_txt_in_a_shard_directory_are_skipped(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    write(d / "a.csv", "y,p\n1,2\n")
    write(d / "b.csv", "y,p\n3,5\n")
    write(d / "README.txt", "not data\n")
    os.mkfifo(d / "c.csv")  # nobody writes to it: opening it would block forever
    r = run("script", ["eval", d, "-l", "y", "-p", "p", "-m", "mse", "-f", "value", "--verbose"])
    assert r.code == 0, r.err
    assert float(r.out) == 2.5
    assert r.err.splitlines() == [f"lossctl: reading {d}/a.csv", f"lossctl: reading {d}/b.csv",
                                  f"lossctl: skipped {d}/README.txt: not a data file name (.csv, "
                                  ".tsv, .jsonl, .parquet, .arrow, .orc, ...)",
                                  f"lossctl: skipped {d}/c.csv: not a regular file"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_given_by_name_is_read_like_stdin(tmp_path: Path) -> None:
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c",
                               f"open({str(fifo)!r}, 'w').write('y,p\\n1,3\\n2,2\\n')"])
    try:
        r = run("script", ["eval", fifo, "-l", "y", "-p", "p", "-m", "mse", "-f", "value"])
    finally:
        writer.wait(timeout=30)
    assert (r.code, r.out.strip()) == (0, "2.0"), r.err


def test_txt_named_on_the_command_line_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", "y,p\n1,2\n")
    assert report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse"])["rows"] == 1


# --------------------------------------------------------------------------
# 7. Messages that name the exact row, column and value; unusual files
# --------------------------------------------------------------------------


@pytest.mark.parametrize("line, message", [
    ("1,2", "row 7777: 2 fields where the header has 3 (the row: '1,2')"),
    ("1,2,x,y", "row 7777: 4 fields where the header has 3 (the row: '1,2,x,y')"),
    ("1,2,\xff", "row 7777, column 'note' (--keep column): not UTF-8 text (value: '\\\\xff')"),
    ("1,\xff,n", "row 7777, column 'p' (prediction): not a number (value: '\\\\xff')"),
    ("1,zz,n", "row 7777, column 'p' (prediction): not a number (value: 'zz')"),
])
def test_errors_deep_in_a_file_name_the_exact_row(line: str, message: str, tmp_path: Path,
                                                  native: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvio, "CSV_BLOCK", 3000)  # the row is far into a later block
    rows = [f"{i}.5,{i},n" if i % 9 else f'{i},{i},"q\n""x"""' for i in range(1, 10_001)]
    rows[7776] = line
    path = write(tmp_path / "e.csv", ("y,p,note\n" + "\n".join(rows) + "\n").encode("latin-1"))
    msg = error(["eval", path, "-l", "y", "-p", "p", "-m", "mse", "--keep", "note", "--top", "1",
                 "mse"])
    assert msg == f"lossctl: error: {path}, {message}\n"


def test_a_last_line_of_spaces_is_a_row(tmp_path: Path, native: str) -> None:
    """pyarrow skips empty lines only: a last line of spaces is a row (its value is no number)."""
    path = write(tmp_path / "s.csv", "y\n1\n   ")
    msg = error(["eval", path, "-l", "y", "-p", "y", "-m", "mse"])
    assert msg.endswith("row 2, column 'y' (label): not a number (value: '   ')\n")


@pytest.mark.parametrize("eol", ["\r", "\r\n", "\n"])
def test_line_endings_cr_crlf_lf(eol: str, tmp_path: Path, native: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvio, "CSV_BLOCK", 64)
    y, p = list(range(200)), [v * 0.5 for v in range(200)]
    text = eol.join(["y,p,note"] + [f'{a},{b},"x{eol}y"' for a, b in zip(y, p, strict=True)]) + eol
    path = write(tmp_path / "e.csv", text)
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    assert doc["rows"] == 200 and doc["losses"]["mse"]["value"] == mse(y, p)


def test_header_longer_than_the_first_read(tmp_path: Path, native: str) -> None:
    names = [f"column_with_a_long_name_{i}" for i in range(5000)]  # ~150 KB of header
    path = write(tmp_path / "h.csv", ",".join(names) + "\n" + ",".join(map(str, range(5000))) + "\n")
    doc = report("runner", ["eval", path, "-l", "1", "-p", names[-1], "-m", "mae"])
    assert doc["columns"]["prediction"] == [names[-1]] and doc["losses"]["mae"]["value"] == 4999


def test_names_with_unicode_line_separators(tmp_path: Path, native: str) -> None:
    path = write(tmp_path / "u.csv", "a\u2028b,c\x0cd,e\x85f,\"g\nh\"\n1,2,4,0\n")
    doc = report("runner", ["eval", path, "-l", "a\u2028b", "-p", "3", "-m", "mae"])
    assert doc["columns"]["label"] == ["a\u2028b"] and doc["columns"]["prediction"] == ["e\x85f"]
    assert doc["losses"]["mae"]["value"] == 3.0
    assert report("runner", ["eval", path, "-l", "4", "-p", "2", "-m", "mae"])["columns"] == {
        "label": ["g\nh"], "prediction": ["c\x0cd"], "weight": None}


@pytest.mark.parametrize("group", [1, 3])
def test_parquet_read_errors_name_the_file(group: int, tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"y": np.arange(5000.0), "p": np.arange(5000.0)}), path,
                   row_group_size=1000, compression="none")
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata
    start = meta.row_group(group).column(0).data_page_offset
    data[start:start + 40] = b"\xff" * 40  # a damaged page header in the middle of the file
    write(path, bytes(data))
    r = run("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "-f", "json"])
    if r.code == 0:  # the damage happened to be readable: then the numbers are pyarrow's
        ref = pq.read_table(path)
        assert json.loads(r.out)["losses"]["mse"]["value"] == mse(ref["y"].to_pylist(),
                                                                   ref["p"].to_pylist())
        return
    assert r.err.startswith(f"lossctl: error: {path}: cannot read as Parquet after row "), r.err
    assert r.code == 2 and r.err.count("\n") == 1
