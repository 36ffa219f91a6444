"""Fuzzing the input surface: generated CSV and Parquet files, read by the real CLI and readers.

For every generated input:

* the exit status is 0 or 2, never a traceback (in-process, an exception that
  escapes the command fails the test; a few cases run as real processes);
* when it is 0, the values equal a reference reading: pyarrow's reader of the
  whole file, then exact rational arithmetic (``fractions.Fraction``) for the
  means; when pyarrow cannot read the file, or a value is bad, the status is 2;
* CSV blocks are cut where pyarrow's tokenizer reads record ends, whatever the
  block size: the reader's rows equal pyarrow's whole-file rows, and an
  independent byte-by-byte tokenizer (below) agrees with both;
* the input files are never modified;
* with the C speed-ups off (``LOSSCTL_NATIVE=0``) the output is the same.

Hypothesis runs derandomized (a fixed sequence of examples) so CI is
deterministic; the example counts keep the whole module near a minute.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossctl.errors import LossctlError
from lossctl.io import csv as csvio
from lossctl.io import fastcsv, records
from lossctl.io.reader import open_reader
from lossctl.io.sources import open_source


def fuzz(n: int) -> settings:
    return settings(derandomize=True, database=None, deadline=None, max_examples=n,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def native_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LOSSCTL_NATIVE", raising=False)
    fastcsv.module.cache_clear()
    yield
    fastcsv.module.cache_clear()


def set_native(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    """The CSV speed-ups (block scan, number parser) on or off in this process."""
    if on:
        monkeypatch.delenv("LOSSCTL_NATIVE", raising=False)
    else:
        monkeypatch.setenv("LOSSCTL_NATIVE", "0")
    fastcsv.module.cache_clear()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# An independent reference tokenizer: the CSV rules, one byte at a time
# --------------------------------------------------------------------------


def reference_records(data: bytes, delim: int, ends: list[int] | None = None
                      ) -> tuple[list[list[bytes]], bool]:
    """(records as lists of fields, whether the data ends inside a quoted field).

    ``ends`` gets the offset just after each record.

    The rules pyarrow's tokenizer (and Python's ``csv``) follow: a quote opens
    a quoted field only at the start of a field; in it ``""`` is a quote and a
    lone quote ends the quoting (the rest of the field is unquoted, where a
    quote is a plain character).  A record ends at LF, CRLF or a bare CR
    outside quotes; an empty line is no record.
    """
    out: list[list[bytes]] = []
    rec: list[bytes] = []
    field = bytearray()
    start, quoted, started = True, False, False
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if quoted:
            if c == 34:
                if i + 1 < n and data[i + 1] == 34:
                    field.append(34)
                    i += 2
                    continue
                quoted = False
            else:
                field.append(c)
            i += 1
            continue
        if c == 34 and start:
            quoted, start, started = True, False, True
        elif c == delim:
            rec.append(bytes(field))
            field, start, started = bytearray(), True, True
        elif c in (10, 13):
            if c == 13 and i + 1 < n and data[i + 1] == 10:
                i += 1
            if started:
                out.append(rec + [bytes(field)])
                if ends is not None:
                    ends.append(i + 1)
            rec, field, start, started = [], bytearray(), True, False
        else:
            field.append(c)
            start, started = False, True
        i += 1
    if started:
        out.append(rec + [bytes(field)])
        if ends is not None:
            ends.append(n)
    return out, quoted


# --------------------------------------------------------------------------
# CSV text with quotes in every position
# --------------------------------------------------------------------------

DELIMITERS = [",", ";", "\t", "|"]
EOLS = ["\n", "\r\n", "\r"]


@st.composite
def csv_field(draw: st.DrawFn, delim: str, numeric: bool = False, dirty: bool = True) -> str:
    """One field as written in the file: numbers, plain text, quoted text, stray quotes.

    ``dirty``: junk may stand where a number is expected.
    """
    number = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                       st.integers(-10**6, 10**6).map(str),
                       st.sampled_from(["0", "-0", "1e300", "2.5e-310", "1e400", ".5", "5.", "+1"]))
    junk = st.sampled_from(["", "NA", "nan", "inf", "abc", " 1.5", "1.5 ", "0x10", "1,5", "\xff",
                            "1_0", "--1", "null", "N/A", "\u00e9"])
    text = st.text(alphabet=f'ab 5"\'{delim}\n\r,;xy\u2028\x85', max_size=8)
    kind = draw(st.sampled_from(["number", "number", "quoted number"] + ["junk"] * dirty if numeric
                                else ["number", "plain", "quoted", "quoted", "inch", "after close",
                                      "empty", "junk"]))
    if kind == "number":
        return draw(number)
    if kind == "quoted number":
        return '"' + draw(number) + '"'
    if kind == "junk":
        return draw(junk)
    if kind == "empty":
        return ""
    if kind == "plain":  # no delimiter, no line end; a quote only inside
        body = draw(text).replace(delim, "").replace("\n", "").replace("\r", "")
        return body if not body.startswith('"') else "x" + body
    if kind == "inch":  # a literal quote inside an unquoted field: 5" screen
        return draw(st.sampled_from(['5" screen', 'a"b', 'x""', '3"', 'say "hi"']))
    body = draw(text)
    quoted = '"' + body.replace('"', '""') + '"'
    if kind == "after close":  # "ab"cd: the rest after the closing quote is unquoted
        tail = draw(st.sampled_from(["x", 'y"', "z z", '""']))
        return quoted + tail
    return quoted


@st.composite
def csv_document(draw: st.DrawFn, numeric_cols: int = 0) -> tuple[bytes, str]:
    """(file bytes, delimiter): a header and rows, sometimes damaged (cut short, a field too many)."""
    delim = draw(st.sampled_from(DELIMITERS))
    ncols = draw(st.integers(max(1, numeric_cols), 4))
    eol = draw(st.sampled_from(EOLS + ["mixed"]))

    def line_end() -> str:
        return draw(st.sampled_from(["\n", "\r\n"])) if eol == "mixed" else eol

    header = [f"c{i}" for i in range(ncols)]
    if draw(st.booleans()):  # names with quotes, delimiters, newlines, spaces
        header = [draw(csv_field(delim)) or f"c{i}" for i in range(ncols)]
    if numeric_cols:
        header[:numeric_cols] = ["y", "p"][:numeric_cols]
    dirty = draw(st.integers(0, 3)) == 0  # most files are well formed, so most runs succeed
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        width = ncols + (draw(st.sampled_from([0] * 10 + [-1, 1])) if dirty else 0)
        rows.append([draw(csv_field(delim, numeric=i < numeric_cols, dirty=dirty))
                     for i in range(max(1, width))])
    text = delim.join(header) + line_end()
    text += "".join(delim.join(r) + line_end() for r in rows)
    if draw(st.booleans()) and text:
        text = text.rstrip("\r\n")  # no line end after the last row
    data = text.encode("utf-8", errors="surrogatepass")
    if dirty and draw(st.booleans()):  # cut anywhere: unterminated quotes, partial rows
        data = data[:draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data, delim


def arrow_read(path: Path, delim: str, numbers: int = 0) -> pa.Table:
    """pyarrow's reading of the data (the reference): the first ``numbers`` columns as float64,
    the others as text.

    The header is cut off by the reference tokenizer (pyarrow's ``skip_rows``
    counts physical lines), the data rows are pyarrow's.
    """
    data = path.read_bytes()
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    ends: list[int] = []
    recs, _ = reference_records(body, ord(delim), ends)
    names = [f"f{i}" for i in range(len(recs[0]))]
    types = {n: pa.float64() if i < numbers else pa.string() for i, n in enumerate(names)}
    if len(recs) == 1:  # a header and no data (pyarrow refuses an empty file)
        return pa.table({n: pa.array([], t) for n, t in types.items()})
    read = pacsv.ReadOptions(use_threads=False, column_names=names)
    parse = pacsv.ParseOptions(delimiter=delim, newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    return pacsv.read_csv(pa.py_buffer(body[ends[0]:]), read_options=read, parse_options=parse,
                          convert_options=convert)


def arrow_names(path: Path, delim: str) -> list[str] | None:
    """pyarrow's own reading of the header (None: it cannot read it)."""
    try:
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                              parse_options=pacsv.ParseOptions(delimiter=delim,
                                                               newlines_in_values=True),
                              convert_options=pacsv.ConvertOptions(include_columns=[])).column_names
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None


def lossctl_read(path: Path, delim: str) -> tuple[list[str], list[list]]:
    """lossctl's reader: the column names and every column as text, block by block."""
    reader = open_reader(open_source(str(path), "csv", delim))
    batches = list(reader.batches(reader.columns, text=reader.columns))
    return reader.names, [sum((b.column(c).to_pylist() for b in batches), []) for c in reader.columns]


# --------------------------------------------------------------------------
# 1. Block cutting agrees with pyarrow's whole-file reading, at any block size
# --------------------------------------------------------------------------


def header_fields(data: bytes, delim: str) -> tuple[list[list[bytes]], bool]:
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    return reference_records(body, ord(delim))


@fuzz(800)
@given(doc=csv_document(), block=st.sampled_from([1, 2, 3, 7, 16, 64, 1 << 20]),
       native=st.booleans())
def test_blocks_read_as_pyarrow_reads_the_whole_file(doc: tuple[bytes, str], block: int,
                                                     native: bool, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data, delim = doc
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    recs, inside = header_fields(data, delim)
    set_native(monkeypatch, native)
    monkeypatch.setattr(csvio, "CSV_BLOCK", block)
    want = None
    if recs and not inside:
        try:
            want = arrow_read(path, delim)
        except pa.ArrowInvalid:
            pass
    if want is not None:  # the reference tokenizer reads what pyarrow reads
        assert [[c[i].as_py().encode() if c[i].is_valid else None for c in want.columns]
                for i in range(want.num_rows)] == [
            [f if f.decode(errors="replace") not in _NULLS else None for f in r] for r in recs[1:]]
    try:
        names, got = lossctl_read(path, delim)
    except LossctlError as e:
        # refused: pyarrow refuses too, or the file ends inside a quoted field, or has no header
        assert want is None or inside or not recs or "UTF-8" in str(e), str(e)
        if inside and want is not None:
            assert "quote" in str(e) or "quoted field" in str(e), str(e)
        return
    finally:
        assert path.read_bytes() == data
    assert not inside, "a file ending inside a quoted field was read"
    assert want is not None, "lossctl read a file pyarrow refuses"
    assert got == [c.to_pylist() for c in want.columns]
    assert names == [f.decode("utf-8", errors="replace").strip() for f in recs[0]]
    header = arrow_names(path, delim)
    if header is not None and len(recs) > 1:
        assert names == [n.strip() for n in header]


_NULLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
          "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


@fuzz(500)
@given(data=st.binary(max_size=60) | st.lists(st.sampled_from([b"a", b",", b'"', b"\n", b"\r",
                                                                b"\r\n", b'""', b"x", b" "]),
                                               max_size=40).map(b"".join),
       eof=st.booleans(), first=st.booleans())
def test_record_end_c_and_twins_agree(data: bytes, eof: bool, first: bool) -> None:
    """The C scan, the quote-by-quote walk and the NumPy parity shortcut give the same answer."""
    fast = fastcsv.module()
    if fast is None:
        pytest.skip("the C extension is not built")
    for begin in (0, min(3, len(data))):
        c = fast.record_end(data, begin, len(data), ",", first, eof)
        walk = records._walk_record_end(data, begin, len(data), ord(","), first, eof)
        assert c == (walk[0], int(walk[1]))
        if not first:
            parity = records._parity_record_end(data, begin, len(data), ",", eof)
            assert parity is None or (parity[0], int(parity[1])) == c
        # the cut is a record boundary of the reference tokenizer
        if c[0] >= 0 and not first:
            head, _ = reference_records(data[begin:c[0] + 1], 44)
            tail, _ = reference_records(data[c[0] + 1:], 44)
            whole, _ = reference_records(data[begin:], 44)
            assert head + tail == whole


# --------------------------------------------------------------------------
# 2. The CLI on generated numeric CSV: exit 0 with exact values, or exit 2
# --------------------------------------------------------------------------


def exact_means(y: list[float], p: list[float]) -> dict[str, float | None]:
    """mse and mae as lossctl defines them: each row's loss in float64, their exact mean rounded
    once (None: overflowed to infinity)."""
    d = [a - b for a, b in zip(y, p, strict=True)]
    out: dict[str, float | None] = {}
    for loss, rows in (("mse", [x * x for x in d]), ("mae", [abs(x) for x in d])):
        if not all(map(math.isfinite, rows)):
            out[loss] = None
            continue
        mean = float(sum(map(Fraction, rows), Fraction(0)) / len(rows))
        out[loss] = mean if math.isfinite(mean) else None
    return out


def expected_outcome(path: Path, delim: str, nan: str) -> tuple[int, dict | None]:
    """(exit status, the exact report values) lossctl must give, from pyarrow's reading."""
    data = path.read_bytes()
    recs, inside = header_fields(data, delim)
    if inside or not recs:
        return 2, None
    try:
        table = arrow_read(path, delim, numbers=2)
    except pa.ArrowInvalid:
        return 2, None
    names = [f.decode("utf-8", errors="replace").strip() for f in recs[0]]
    if names[:2] != ["y", "p"] or names.count("y") > 1 or names.count("p") > 1:
        return 2, None
    y = [math.nan if v is None else v for v in table.column(0).to_pylist()]
    p = [math.nan if v is None else v for v in table.column(1).to_pylist()]
    good = [i for i in range(len(y)) if math.isfinite(y[i]) and math.isfinite(p[i])]
    if (len(good) < len(y) and nan == "error") or not good:
        return 2, None
    values = exact_means([y[i] for i in good], [p[i] for i in good])
    return 0, {"rows": len(good), "rows_skipped": len(y) - len(good), **values}


def check_cli(path: Path, delim: str, nan: str, chunk: int) -> tuple[int, str, str]:
    """Run ``eval`` on a generated CSV and check it against :func:`expected_outcome`."""
    before = digest(path)
    r = run("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse,mae", "--nan", nan,
                       "--delimiter", delim, "--chunk-size", chunk, "-f", "json"])
    assert digest(path) == before
    assert r.code in (0, 2), (r.code, r.err)
    code, want = expected_outcome(path, delim, nan)
    assert r.code == code, (r.err, want)
    if code == 2:
        assert r.err.startswith("lossctl: error: ") and r.err.count("\n") == 1, r.err
    else:
        doc = json.loads(r.out)
        assert (doc["rows"], doc["rows_skipped"]) == (want["rows"], want["rows_skipped"])
        for loss in ("mse", "mae"):
            assert doc["losses"][loss]["value"] == want[loss], (loss, doc["losses"][loss], want)
    return r.code, r.out, r.err


@fuzz(300)
@given(doc=csv_document(numeric_cols=2), nan=st.sampled_from(["error", "skip"]),
       block=st.sampled_from([1, 5, 32, 1 << 20]), chunk=st.sampled_from([1, 3, 65536]))
def test_cli_numbers_equal_exact_reference_on_and_off(doc: tuple[bytes, str], nan: str, block: int,
                                                      chunk: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data, delim = doc
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csvio, "CSV_BLOCK", block)
    outs = []
    for native in (True, False):  # the differential leg: the CSV speed-ups on and off
        set_native(monkeypatch, native)
        outs.append(check_cli(path, delim, nan, chunk))
    assert outs[0] == outs[1]


SUBPROCESS_CASES = [
    b'y,p,note\n1,2,5" screen\n3,4,"a\nb"\n',
    b'y,p\n1,2\n3,"4\n',
    b'y,p\r1,2\r3,5\r',
    b'y,p,p\n1,2,3\n',
    b'y,p\n1,abc\n',
    b'\xef\xbb\xbf"y","p"\r\n"1","2"\r\n',
    b'y,p\n1,2,3\n',
    b'y,p\n\xff,1\n',
]


@pytest.mark.parametrize("i", range(len(SUBPROCESS_CASES)))
def test_real_process_with_and_without_c(i: int, tmp_path: Path) -> None:
    """A fresh process with and without LOSSCTL_NATIVE=0: the same status, output and message."""
    path = tmp_path / "f.csv"
    path.write_bytes(SUBPROCESS_CASES[i])
    args = ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "-f", "json"]
    on = run("script", args)
    off = run("script", args, env={"LOSSCTL_NATIVE": "0"})
    assert on.code in (0, 2) and "Traceback" not in on.err
    assert (on.code, on.out, on.err) == (off.code, off.out, off.err)
    code, want = expected_outcome(path, ",", "error")
    assert on.code == code, on.err
    if code == 0:
        assert json.loads(on.out)["losses"]["mse"]["value"] == want["mse"]


# --------------------------------------------------------------------------
# 3. Random Parquet schemas, and corrupted Parquet files
# --------------------------------------------------------------------------

TYPES = {
    "float64": pa.float64(), "float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(),
    "int64": pa.int64(), "uint64": pa.uint64(), "bool": pa.bool_(), "decimal": pa.decimal128(30, 7),
    "string": pa.string(), "list": pa.list_(pa.float64()), "list2": pa.list_(pa.list_(pa.float64())),
    "struct": pa.struct([("a", pa.float64())]), "null": pa.null(),
}


@st.composite
def parquet_table(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))
    ncols = draw(st.integers(2, 5))
    names = [draw(st.sampled_from(["y", "p", "w", "v", "y "])) for _ in range(ncols)]
    cols = []
    for _ in range(ncols):
        kind = draw(st.sampled_from(list(TYPES) + ["float64", "int64", "uint64", "decimal"]))
        cols.append(draw(column_values(kind, n)))
    return pa.Table.from_arrays(cols, names=names)


@st.composite
def column_values(draw: st.DrawFn, kind: str, n: int) -> pa.Array:
    t = TYPES[kind]
    nulls = st.none() if draw(st.integers(0, 3)) == 0 else st.nothing()
    if kind.startswith("float"):
        v = st.floats(width=int(kind[5:]), allow_nan=True)
    elif kind == "int8":
        v = st.integers(-128, 127)
    elif kind == "int64":
        v = st.integers(-2**63, 2**63 - 1) | st.integers(-2**53 - 5, 2**53 + 5)
    elif kind == "uint64":
        v = st.integers(0, 2**64 - 1)
    elif kind == "bool":
        v = st.booleans()
    elif kind == "decimal":
        v = st.decimals(min_value=-10**22, max_value=10**22, places=7, allow_nan=False,
                        allow_infinity=False)
    elif kind == "string":
        v = st.sampled_from(["1.5", "a", ""])
    elif kind == "list":
        v = st.lists(st.floats(-10, 10), min_size=2, max_size=3)
    elif kind == "list2":
        v = st.lists(st.lists(st.floats(-10, 10), max_size=2), max_size=2)
    elif kind == "struct":
        v = st.builds(lambda x: {"a": x}, st.floats(-10, 10))
    else:
        return pa.nulls(n)
    return pa.array(draw(st.lists(v | nulls, min_size=n, max_size=n)), type=t)


def parquet_expected(table: pa.Table, li: int, pi: int) -> tuple[int, dict | None]:
    """What ``eval -l LI -p PI -m mse`` must give on this table (1-based positions)."""
    cols = []
    for i in (li, pi):
        t = table.schema.field(i - 1).type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
            or pa.types.is_decimal(t) or pa.types.is_null(t)
        if not numeric:
            return 2, None  # lists: a K-column loss would be needed; strings, structs: not numbers
        cols.append([math.nan if v is None else float(v) for v in table.column(i - 1).to_pylist()])
    y, p = cols
    if not y or not all(math.isfinite(a) and math.isfinite(b) for a, b in zip(y, p, strict=True)):
        return 2, None
    return 0, exact_means(y, p)


@fuzz(250)
@given(table=parquet_table(), li=st.integers(1, 5), pi=st.integers(1, 5),
       chunk=st.sampled_from([1, 4, 65536]))
def test_parquet_schemas(table: pa.Table, li: int, pi: int, chunk: int, tmp_path: Path) -> None:
    li, pi = min(li, table.num_columns), min(pi, table.num_columns)
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=5)
    before = digest(path)
    r = run("runner", ["eval", path, "-l", li, "-p", pi, "-m", "mse", "--chunk-size", chunk,
                       "-f", "json"])
    assert digest(path) == before
    assert r.code in (0, 2), r.err
    code, want = parquet_expected(table, li, pi)
    assert r.code == code, (r.err, table.schema)
    if code == 0:
        assert json.loads(r.out)["losses"]["mse"]["value"] == want["mse"]
    else:
        assert r.err.startswith("lossctl: error: ") and r.err.count("\n") == 1, r.err


@fuzz(30)
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["truncate", "flip", "zero run"]))
def test_corrupted_parquet_in_a_real_process(seed: int, how: str, tmp_path: Path) -> None:
    """Damaged bytes anywhere in a Parquet file: exit 0 with pyarrow's values, or 2 (a subprocess:
    a crash in a decoder must not take the test run with it)."""
    rng = np.random.default_rng(seed)
    n = 300
    table = pa.table({"y": rng.normal(size=n), "p": rng.normal(size=n),
                      "s": pa.array([str(i) for i in range(n)])})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=100, compression=str(rng.choice(["snappy", "none"])))
    data = bytearray(path.read_bytes())
    k = int(rng.integers(0, len(data)))
    if how == "truncate":
        data = data[:k]
    elif how == "flip":
        for j in rng.integers(0, len(data), size=3):
            data[int(j)] ^= int(rng.integers(1, 256))
    else:
        data[k:k + 16] = bytes(len(data[k:k + 16]))
    path.write_bytes(bytes(data))
    r = run("script", ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "-f", "json"])
    assert path.read_bytes() == bytes(data)
    assert r.code in (0, 2) and "Traceback" not in r.err, (r.code, r.err)
    if r.code == 2:
        assert r.err.startswith(f"lossctl: error: {path}") and r.err.count("\n") == 1, r.err
        return
    ref = pq.read_table(path, columns=["y", "p"])  # lossctl read it: so does pyarrow, the same
    want = exact_means(ref.column("y").to_pylist(), ref.column("p").to_pylist())
    assert json.loads(r.out)["losses"]["mse"]["value"] == want["mse"]


# --------------------------------------------------------------------------
# 4. Garbage: random bytes as CSV and as Parquet
# --------------------------------------------------------------------------


@fuzz(300)
@given(data=st.binary(max_size=300) | st.text(alphabet='{}[]":,1.5e-\n ayp\\', max_size=80).map(
           lambda t: t.encode()), fmt=st.sampled_from(["csv", "tsv", "parquet", "jsonl", "arrow", "orc"]),
       header=st.booleans())
def test_random_bytes_never_a_traceback(data: bytes, fmt: str, header: bool, tmp_path: Path) -> None:
    path = tmp_path / f"f.{fmt}"
    path.write_bytes(data)
    args = ["eval", path, "-l", "1", "-p", "2", "-m", "mse", "-f", "json"]
    if not header:
        args.append("--no-header")
    r = run("runner", args)
    assert r.code in (0, 2), r.err
    assert path.read_bytes() == data
    if r.code == 2:
        assert r.err.startswith("lossctl: error: ") and r.err.count("\n") == 1, r.err


def test_reference_tokenizer_examples() -> None:
    """The test's own tokenizer on the cases the issue names."""
    assert reference_records(b'a,5" screen\n"x\ny",z\n', 44) == (
        [[b"a", b'5" screen'], [b"x\ny", b"z"]], False)
    assert reference_records(b'"ab"c"d,e\r\n\r\nf', 44) == ([[b'abc"d', b"e"], [b"f"]], False)
    assert reference_records(b'1,"open\n2,3\n', 44)[1] is True
