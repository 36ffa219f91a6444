"""The C fast path for numeric CSV blocks (``lossctl/io/_fastcsv.c``, glue in ``lossctl/io/fastcsv.py``).

Its promise: whenever ``fastcsv.parse_floats`` returns arrays, they are bit for
bit what pyarrow's CSV reader gives for the same block; anything else (an
empty field, NA, inf, '+1', a malformed row, ...) is handed back (None) to
pyarrow, so the CLI's results, exit codes and error messages do not depend on
whether the fast path is on (the default) or off (``LOSSCTL_NATIVE=0``).

1. numbers: the conversion against Python's ``float`` (and pyarrow), bit for bit;
2. blocks: random multi-column blocks (quoted text, CRLF, tabs, ...) against pyarrow;
3. bail-outs: what the fast path must refuse, and the CLI on such files, on vs off;
4. end to end: a 200k-row CSV evaluated with the fast path on and off;
5. the whole eval against an exact (Fraction) computation of mse/mae/rmse.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from cli_run import Run, report, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossctl.io import csv as sources
from lossctl.io import fastcsv

pytest.importorskip("lossctl.io._fastcsv", reason="the optional C extension is not built")

# The switch: LOSSCTL_NATIVE=0 turns off every C extension (lossctl.native).
OFF = {"LOSSCTL_NATIVE": "0"}

HYPOTHESIS = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def fast_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with the fast path on (whatever the caller's environment says)."""
    for name in OFF:
        monkeypatch.delenv(name, raising=False)
    fastcsv.module.cache_clear()
    assert fastcsv.module() is not None
    yield
    fastcsv.module.cache_clear()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def bits(a: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def fast_parse(block: bytes | str, columns: Sequence[str], wanted: Sequence[str],
               delimiter: str = ",") -> dict[str, np.ndarray] | None:
    data = block.encode() if isinstance(block, str) else block
    return fastcsv.parse_floats(memoryview(data), delimiter, list(columns), list(wanted))


def arrow_parse(block: bytes | str, columns: Sequence[str], wanted: Sequence[str],
                delimiter: str = ",") -> pa.Table:
    """pyarrow's reading of the block, as the brief defines the reference (may raise)."""
    data = block.encode() if isinstance(block, str) else block
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=list(columns), use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(include_columns=list(wanted),
                                             column_types=dict.fromkeys(wanted, pa.float64())))


def assert_same_as_arrow(got: dict[str, np.ndarray], block: bytes | str, columns: Sequence[str],
                         wanted: Sequence[str], delimiter: str = ",") -> None:
    want = arrow_parse(block, columns, wanted, delimiter)
    assert list(got) == list(wanted)
    for name in wanted:
        col = want.column(name)
        assert col.null_count == 0, name
        ref = col.to_numpy()
        assert len(got[name]) == want.num_rows, name
        assert got[name].dtype == np.float64
        assert np.array_equal(bits(got[name]), bits(ref)), (name, got[name], ref)


def check_numbers(strings: Sequence[str], quoted: bool = False, arrow: bool = True) -> None:
    """One number a line in a one-column block: the fast path must take it and agree with float()."""
    lines = [f'"{s}"' if quoted else s for s in strings]
    block = "\n".join(lines) + "\n"
    got = fast_parse(block, ["x"], ["x"])
    if got is None:  # name the first number refused, for the failure message
        refused = next((s for s, line in zip(strings, lines, strict=True)
                        if fast_parse(line + "\n", ["x"], ["x"]) is None), None)
        pytest.fail(f"fast path refused the block; first refused number: {refused!r}")
    want = bits([float(s) for s in strings])
    mismatch = np.flatnonzero(bits(got["x"]) != want)
    assert mismatch.size == 0, [(strings[i], got["x"][i], float(strings[i])) for i in mismatch[:5]]
    if arrow:
        assert_same_as_arrow(got, block, ["x"], ["x"])


def random_doubles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite doubles over every exponent: random bit patterns (subnormals included) and
    log-uniform magnitudes from 1e-320 to 1e308, both signs."""
    raw = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True).view(np.float64)
    raw = raw[np.isfinite(raw)]
    mag = 10.0 ** rng.uniform(-320.0, 308.0, n) * rng.uniform(1.0, 1.7976, n)
    mag = mag * rng.choice([-1.0, 1.0], n)
    mag = mag[np.isfinite(mag)]
    subnormal = rng.integers(1, 2**52, n // 10, dtype=np.uint64).view(np.float64)
    return np.concatenate([raw, mag, subnormal])


# --------------------------------------------------------------------------
# 1. numbers, bit for bit
# --------------------------------------------------------------------------


FORMATS = ["repr", "%.17g", "%.15g", "%.20g", "%.16e", "%.12f", "%.17E"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_doubles_in_every_format(fmt: str) -> None:
    rng = np.random.default_rng(20240917 + FORMATS.index(fmt))
    x = random_doubles(rng, 6000)
    assert np.count_nonzero((x != 0) & (np.abs(x) < 2.2250738585072014e-308)) > 100  # subnormals
    if fmt == "repr":
        strings = [repr(float(v)) for v in x]
    else:
        strings = [fmt % v for v in x]
    check_numbers(strings)


def test_repr_across_exponents_one_by_one() -> None:
    """Every decimal exponent from 1e-320 to 1e308 (the Eisel-Lemire table's whole range)."""
    rng = np.random.default_rng(7)
    strings = []
    for e in range(-320, 309):
        for m in rng.uniform(1.0, 9.999, 6):
            v = float(f"{m:.17f}e{e}")
            if math.isfinite(v):
                strings += [repr(v), f"{v:.17g}", f"{v:.15g}", f"{v:.20g}"]
    check_numbers(strings)


def test_zeros_and_negative_zero() -> None:
    strings = ["0", "-0", "0.0", "-0.0", "000", "-000.000", "0e0", "-0e5", "0E-999", "-0.0e+10",
               "0e99999999999", "-0e-99999999999", "0.00000000000000000000000000000000000"]
    check_numbers(strings)
    got = fast_parse("-0\n0\n-0.0e7\n", ["x"], ["x"])
    assert got is not None
    assert [math.copysign(1.0, v) for v in got["x"]] == [-1.0, 1.0, -1.0]


def test_leading_zeros() -> None:
    strings = ["007.50", "-007.50", "0000000000000000000000001.5", "00.5", "0001e3", "-0001E-3",
               "0.000000000000000000000000000000000001234", "00000000000000000000123456789012345678",
               "0.0000000000000000000001234567890123456789012", "000000000000000000001"]
    check_numbers(strings)


def _halfway(a: float, up: bool = True) -> Decimal:
    b = math.nextafter(a, math.inf if up else -math.inf)
    return (Decimal(a) + Decimal(b)) / 2  # exact: the context below is wide enough


def test_exact_halfway_strings() -> None:
    """Decimal strings exactly halfway between adjacent doubles (ties to even), and a hair either side."""
    rng = np.random.default_rng(11)
    strings: list[str] = []
    with localcontext() as ctx:
        ctx.prec = 1200
        pool = list(random_doubles(rng, 400)) + [1.0, 0.1, 2.0**53, 2.0**-1022, 5e-324, 1e308, 1e23,
                                                 123456.789, 2.0**63, 9007199254740993.0]
        for a in pool:
            a = abs(float(a))
            if not 0 < a < 1.7e308:
                continue
            mid = _halfway(a)
            tiny = Decimal(1).scaleb(mid.adjusted() - 60)
            for d in (mid, mid + tiny, mid - tiny):
                s = format(d.normalize(), "E")
                if len(s) < 480:  # longer ones are left to pyarrow by design
                    strings += [s, "-" + s]
        # halfway values with few digits: odd 54-bit integers times small powers of two,
        # where Eisel-Lemire itself sees the tie
        for e in range(-6, 11):
            for m in rng.integers(2**53, 2**54, 40, dtype=np.int64):
                v = Decimal(int(m) | 1) * Decimal(2) ** e
                s = format(v.normalize(), "f")
                strings += [s, "-" + s, s + "0", format(v.normalize(), "E")]
    assert len(strings) > 2000
    strings += ["9007199254740993", "9007199254740993e0", "900719925474099.3e1", "9.007199254740993e15",
                "9007199254740995", "18014398509481986", "18014398509481990", "90071992547409930000e-4"]
    check_numbers(strings)


def test_more_than_19_digits() -> None:
    rng = np.random.default_rng(19)
    x = random_doubles(rng, 3000)
    strings = [f"{v:.25e}" for v in x] + [f"{v:.30g}" for v in x[:1000]]
    digits = rng.integers(0, 10, (2000, 40))
    lengths = rng.integers(18, 41, 2000)
    exps = rng.integers(-340, 320, 2000)
    strings += ["".join(map(str, d[:n])) + f"e{k}" for d, n, k in zip(digits, lengths, exps, strict=True)]
    strings += ["".join(map(str, d[:n // 2])) + "." + "".join(map(str, d[n // 2:n]))
                for d, n in zip(digits[:500], lengths[:500], strict=True)]
    strings += ["9999999999999999999", "10000000000000000000", "18446744073709551615",
                "18446744073709551616", "99999999999999999999", "1" + "0" * 30, "0." + "1" * 40,
                "123456789012345678901234567890e-10", "1234567890123456789.5", "1000000000000000000.5"]
    check_numbers(strings)


def test_out_of_range_exponents() -> None:
    """Overflow gives +-inf and underflow +-0.0, as pyarrow gives (not an error)."""
    strings = ["1e400", "-1e400", "1e-400", "-1e-400", "1e99999999999", "-1e99999999999",
               "1e-99999999999", "1e100001", "1e-100001", "123456789e-400",
               "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
               "179769313486231580793728971405303415079934132710037826936173778980444968292764750946"
               "649017977587207096330286416692887910946555547851940402630657488671505820681908902000"
               "708383676273854845817711531764475730270069855571366959622842914819860834936475292719"
               "074168444365510704342711559699508093042880177904174497791e0",
               "2.4703282292062327e-324", "2.4703282292062328e-324", "4.9406564584124654e-324",
               "2.2250738585072011e-308", "2.2250738585072012e-308", "2.2250738585072014e-308",
               "1e-320", "1e-323", "3e-324", "1e-324", "1e308", "1e309", "1e-307", "1e-308", "1e-309"]
    check_numbers(strings)
    got = fast_parse("1e400\n-1e400\n1e-400\n-1e-400\n", ["x"], ["x"])
    assert got is not None
    assert list(got["x"]) == [math.inf, -math.inf, 0.0, 0.0]
    assert [math.copysign(1.0, v) for v in got["x"][2:]] == [1.0, -1.0]


def test_exponent_forms() -> None:
    strings = ["1E5", "1e5", "1e+05", "1e-05", "1.5E-3", "1.5e+3", "1e0005", "2.5e+000", "-3E+2",
               "7e22", "7e23", "1e22", "9007199254740993e-22", "123456789012345678e-5", "1E-0"]
    check_numbers(strings)


@pytest.mark.parametrize("case", ["simple", "random"])
def test_quoted_numbers(case: str) -> None:
    if case == "simple":
        strings = ["1.5", "-2", "007.50", "1e400", "1e-400", "-0", "1E5", "1e+05", "1" + "0" * 25]
    else:
        strings = [repr(float(v)) for v in random_doubles(np.random.default_rng(3), 2000)]
    check_numbers(strings, quoted=True)


NUMBER = st.from_regex(r"-?[0-9]{1,24}(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)


@HYPOTHESIS
@given(st.lists(NUMBER, min_size=1, max_size=40))
def test_number_grammar_matches_float_and_arrow(strings: list[str]) -> None:
    check_numbers(strings)
    check_numbers(strings, quoted=True, arrow=False)


@HYPOTHESIS
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=40),
       st.sampled_from(["{!r}", "{:.17g}", "{:.15g}", "{:.20g}", "{:.12e}", "{:.3e}", "{:.17E}"]))
def test_formatted_floats_match_float_and_arrow(values: list[float], fmt: str) -> None:
    check_numbers([fmt.format(v) for v in values])


@pytest.mark.parametrize("tail, kept, value", [
    ("12345678901234567890123456789", "1234567890123456789012", 1234567890123456789012.0),  # deferred
    ("4.5e-7", "4.5", 4.5),
    ("1e5", "1e", None),  # cut short: not a number any more
    ("4.5", "4.", None),
    ('"7"', '"7', None),
])
def test_block_is_a_view_into_a_larger_buffer(tail: str, kept: str, value: float | None) -> None:
    """Only the view's bytes count, though the buffer goes on (as Reader passes its blocks)."""
    buf = bytearray(f"99\n1.5,2\n3,{tail}\n".encode())
    view = memoryview(buf)[3:3 + len(f"1.5,2\n3,{kept}")]
    got = fastcsv.parse_floats(view, ",", ["a", "b"], ["a", "b"])
    if value is None:
        assert got is None
    else:
        assert got is not None
        assert list(got["a"]) == [1.5, 3.0]
        assert bits(got["b"]).tolist() == bits([2.0, value]).tolist()


def test_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fastcsv.module() is fastcsv.module()  # cached
    assert fast_parse("1,2\n", ["a", "b"], ["a"]) is not None
    for name, value in OFF.items():
        monkeypatch.setenv(name, value)
    fastcsv.module.cache_clear()
    assert fastcsv.module() is None
    assert fast_parse("1,2\n", ["a", "b"], ["a"]) is None


# --------------------------------------------------------------------------
# 2. blocks against pyarrow
# --------------------------------------------------------------------------

TEXT = ["plain", "two words", "x", "", "ünïcödé", '"quoted, with comma"', '"say ""hi"""', '""',
        '"multi\nline"', '"crlf\r\ninside"', '"a,""b"",\n,c"', '"tab\there"', '"1.5"', '"NA"', "NA",
        '"trailing newline\n"', '"""just quotes"""', '"semi;colon"', "1e5abc"]


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 6)
    if kind == 0:
        return str(int(rng.integers(-10**6, 10**6)))
    if kind == 1:
        return repr(float(rng.normal(0, 1e3)))
    v = float(random_doubles(rng, 1)[0])
    return [repr(v), f"{v:.17g}", f"{v:.15g}", f"{v:.20g}"][kind - 2]


def random_block(rng: np.random.Generator, delimiter: str, ncols: int, rows: int, crlf: bool,
                 trailing: bool) -> tuple[str, list[str], list[str]]:
    """A clean block: every field is something the fast path takes; some columns are text."""
    columns = [f"c{i}" for i in range(ncols)]
    kinds = rng.choice(["wanted", "skipped_number", "text"], ncols, p=[0.5, 0.2, 0.3])
    if "wanted" not in kinds:
        kinds[rng.integers(ncols)] = "wanted"
    wanted = [c for c, k in zip(columns, kinds, strict=True) if k == "wanted"]
    if len(wanted) > 1 and rng.random() < 0.5:
        wanted = list(rng.permutation(wanted))  # the slots need not follow file order
    text = [t for t in TEXT if delimiter not in t.strip('"') or t.startswith('"')]
    lines = []
    for _ in range(rows):
        fields = []
        for k in kinds:
            if k == "text":
                fields.append(text[rng.integers(len(text))])
            else:
                s = _number(rng)
                fields.append(f'"{s}"' if rng.random() < 0.1 else s)
        lines.append(delimiter.join(fields))
    eol = "\r\n" if crlf else "\n"
    return eol.join(lines) + (eol if trailing else ""), columns, wanted


BAIL = ["", "NA", "nan", "NaN", "inf", "-inf", "Infinity", "null", "N/A", "+1", ".5", "-.5", "1.", "-",
        "1.5x", " 1.5", "1.5 ", "0x10", "1e", "1e+", "1_000", '"1.5', '1.5"', '"1.5"x', '"1""5"', '""',
        '"1.5\n"']


def dirty(rng: np.random.Generator, block: str, delimiter: str, wanted_index: Sequence[int]) -> str:
    """Spoil a clean block in one of the ways the fast path refuses."""
    lines = block.split("\n")
    i = int(rng.integers(len(lines)))
    how = rng.integers(0, 5)
    if how == 0 and wanted_index:  # a bad token in a wanted field (if the line splits simply)
        fields = lines[i].split(delimiter)
        j = int(rng.choice(wanted_index))
        if '"' not in lines[i] and j < len(fields):
            fields[j] = BAIL[rng.integers(len(BAIL))]
            lines[i] = delimiter.join(fields)
            return "\n".join(lines)
    if how == 1:  # an empty line
        lines.insert(i, "")
    elif how == 2:  # a field too many
        lines[i] = lines[i].replace("\r", "") + delimiter + "7"
    elif how == 3:  # a field too few (when it splits simply)
        if '"' not in lines[i] and delimiter in lines[i]:
            lines[i] = lines[i].rsplit(delimiter, 1)[0]
    else:  # a bare carriage return as a line end
        lines[i] = lines[i].replace("\r", "") + "\r" + lines[i]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(6))
def test_random_blocks_agree_with_arrow(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    taken = refused = 0
    for _ in range(60):
        delimiter = str(rng.choice([",", "\t", ";", "|"]))
        ncols = int(rng.integers(1, 8))
        block, columns, wanted = random_block(rng, delimiter, ncols, int(rng.integers(1, 40)),
                                              crlf=bool(rng.random() < 0.3),
                                              trailing=bool(rng.random() < 0.8))
        got = fast_parse(block, columns, wanted, delimiter)
        assert got is not None, (block, delimiter)
        assert_same_as_arrow(got, block, columns, wanted, delimiter)
        taken += 1

        spoiled = dirty(rng, block, delimiter, [columns.index(w) for w in wanted])
        got = fast_parse(spoiled, columns, wanted, delimiter)
        if got is None:
            refused += 1
        else:  # still a clean block (the spoiling missed): then it must agree
            assert_same_as_arrow(got, spoiled, columns, wanted, delimiter)
    assert taken == 60 and refused > 20


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("trailing", [False, True])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_quoted_text_columns_are_skipped(crlf: bool, trailing: bool, delimiter: str) -> None:
    eol = "\r\n" if crlf else "\n"
    d = delimiter
    rows = [f'1.5{d}"a{d} b"{d}2{d}x',
            f'-3e-5{d}"say ""hi""{d} ok"{d}4.25{d}""',
            f'7{d}"multi\nline{eol}text"{d}1e300{d}"{d}{d}"',
            f'0.1{d}"""quoted"""{d}-0{d}plain words',
            f'"2.5"{d}"ends with newline\n"{d}"3"{d}"the\r\nend"']
    block = eol.join(rows) + (eol if trailing else "")
    columns = ["y", "note", "p", "tail"]
    for wanted in (["y", "p"], ["p", "y"], ["p"], ["y"]):
        got = fast_parse(block, columns, wanted, delimiter)
        assert got is not None
        assert_same_as_arrow(got, block, columns, wanted, delimiter)
        assert len(got[wanted[0]]) == 5
    got = fast_parse(block, columns, ["p", "y"], delimiter)
    assert got is not None
    assert bits(got["y"]).tolist() == bits([1.5, -3e-5, 7, 0.1, 2.5]).tolist()
    assert bits(got["p"]).tolist() == bits([2, 4.25, 1e300, -0.0, 3]).tolist()


@pytest.mark.parametrize("trailing", [False, True])
def test_single_column(trailing: bool) -> None:
    values = random_doubles(np.random.default_rng(5), 3000)
    block = "\n".join(repr(float(v)) for v in values) + ("\n" if trailing else "")
    got = fast_parse(block, ["x"], ["x"])
    assert got is not None
    assert_same_as_arrow(got, block, ["x"], ["x"])
    assert np.array_equal(bits(got["x"]), bits(values))


def test_one_record_without_newline_and_wide_rows() -> None:
    got = fast_parse("1.25", ["x"], ["x"])
    assert got is not None and got["x"].tolist() == [1.25]
    columns = [f"c{i}" for i in range(300)]
    rng = np.random.default_rng(9)
    block = "\n".join(",".join(repr(float(v)) for v in rng.normal(size=300)) for _ in range(20)) + "\n"
    wanted = ["c299", "c0", "c150"]
    got = fast_parse(block, columns, wanted)
    assert got is not None
    assert_same_as_arrow(got, block, columns, wanted)


# --------------------------------------------------------------------------
# 3. what the fast path leaves to pyarrow
# --------------------------------------------------------------------------


@pytest.mark.parametrize("token", BAIL)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_refused_values(token: str, where: str) -> None:
    columns = ["a", "b", "c"]
    row = {"first": f"{token},2,3", "middle": f"1,{token},3", "last": f"1,2,{token}"}[where]
    block = f"1,2,3\n{row}\n4,5,6\n"
    assert fast_parse(block, columns, columns) is None


STRUCTURE = [  # refused whatever columns are wanted
    "1,2\n\n3,4\n",  # an empty line (pyarrow skips it)
    "\n1,2\n",  # an empty first line
    "1,2\n3,4\n\n",  # an empty last line
    "1,2\r\n\r\n3,4\r\n",  # an empty CRLF line
    "1,2\r3,4\n",  # a bare carriage return (pyarrow: a line end)
    "1,2\r",  # a bare carriage return at the end
    "1,2\n3,4,5\n",  # too many fields
    "1,2\n3\n",  # too few fields
    "1,2\n3,4,\n",  # an empty extra field
    '1,2\n3,4"\n',  # a stray quote after a number
    '1,"x\n',  # an unclosed quote
    '1,"x""\n',  # an unclosed quote, after an escaped one
    '1,ab"c\n',  # a quote inside an unquoted field
    '1,"ab"c\n',  # text after a closing quote
    "1;2\n",  # the wrong delimiter: one field
]
VALUES = [  # refused when the second column is wanted
    "1,2 \n",  # a trailing space
    "1,\t2\n",
    "1,0x1A\n",
    "1,1.5e5.5\n",
    '1,"2\n"\n',  # a newline inside a quoted number
    "1,\n",
    '1,""\n',
]


@pytest.mark.parametrize("block", STRUCTURE)
def test_refused_blocks(block: str) -> None:
    for wanted in (["a", "b"], ["a"], ["b"]):
        assert fast_parse(block, ["a", "b"], wanted) is None, wanted


@pytest.mark.parametrize("block", VALUES)
def test_refused_fields(block: str) -> None:
    assert fast_parse(block, ["a", "b"], ["a", "b"]) is None
    assert fast_parse(block, ["a", "b"], ["b"]) is None
    got = fast_parse(block, ["a", "b"], ["a"])  # the field is skipped: the block is fine
    assert got is not None
    assert_same_as_arrow(got, block, ["a", "b"], ["a"])


def test_over_long_number_is_left_to_arrow() -> None:
    long = "0." + "0" * 600 + "1"
    assert fast_parse(f"1,{long}\n", ["a", "b"], ["a", "b"]) is None
    assert float(long) == 0.0


@pytest.mark.parametrize("block, delimiter, columns", [
    ("1--2\n", "-", ["a", "b"]),  # pyarrow: 3 fields, an error
    ("1.5\n", ".", ["a"]),  # pyarrow: 2 fields, an error
    ("1e5\n", "e", ["a"]),
    ("1e+5\n", "+", ["a"]),
    ('1"2\n', '"', ["a", "b"]),  # a quote as the delimiter
])
def test_delimiter_that_is_part_of_a_number(block: str, delimiter: str, columns: list[str]) -> None:
    """A delimiter that can sit inside a number ('-', '+', 'e', '.'), or a quote, is left to pyarrow."""
    assert fast_parse(block, columns, columns, delimiter) is None


def test_more_columns_than_output_slots_is_left_to_arrow() -> None:
    columns = [f"c{i}" for i in range(70_000)]
    assert fastcsv.parse_floats(memoryview(b"1,2\n"), ",", columns, ["c0"]) is None


class Spy:
    """Counts the blocks the fast path parsed (returned arrays) and refused, in-process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.taken = self.refused = 0
        lock = threading.Lock()  # blocks are parsed on several threads
        real = fastcsv.parse_floats

        def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
            got = real(*args, **kwargs)
            with lock:
                if got is None:
                    self.refused += 1
                else:
                    self.taken += 1
            return got

        monkeypatch.setattr(fastcsv, "parse_floats", spy)

    def reset(self) -> None:
        self.taken = self.refused = 0


def run_both(monkeypatch: pytest.MonkeyPatch, spy: Spy, args: list, **kw) -> tuple[Run, Run]:
    """The CLI in-process with the fast path on, then off (the environment switch)."""
    spy.reset()
    fastcsv.module.cache_clear()
    on = run("runner", args, **kw)
    taken, refused = spy.taken, spy.refused
    for name, value in OFF.items():
        monkeypatch.setenv(name, value)
    fastcsv.module.cache_clear()
    try:
        spy.reset()
        off = run("runner", args, **kw)
        assert spy.taken == 0  # the switch works
    finally:
        for name in OFF:
            monkeypatch.delenv(name)
        fastcsv.module.cache_clear()
    spy.taken, spy.refused = taken, refused
    return on, off


BAD_AT, BAD_FILE_ROWS = 9876, 12_000


def bad_file(tmp_path: Path, bad_row: int, line: str, rows: int = BAD_FILE_ROWS) -> Path:
    """y,p,note with ``line`` as data row ``bad_row`` (1-based), other rows clean; ~550 kB.

    (Reader's blocks are at least 64 KiB whatever CSV_BLOCK says: buffers get 64 KiB of slack
    and are filled whole; so the file is big enough for several blocks.)
    """
    rng = np.random.default_rng(bad_row)
    out = []
    for i in range(1, rows + 1):
        y, p = rng.normal(size=2).tolist()
        note = '"a, ""b""\nc"' if i % 7 == 0 else "n"
        out.append(line if i == bad_row else f"{y!r},{p!r},{note}")
    path = tmp_path / "bad.csv"
    path.write_text("y,p,note\n" + "\n".join(out) + "\n")
    return path


BAD_ROWS = {  # name: (data row, exit code, part of stderr (None: unchecked), left to pyarrow)
    "empty field": ("0.5,,n", 2, "row 9876, column 'p' (prediction): missing or non-finite value", True),
    "empty label": (",0.5,n", 2, "row 9876, column 'y' (label): missing or non-finite value", True),
    "text value": ("0.5,abc,n", 2, "row 9876, column 'p' (prediction): not a number (value: 'abc')", True),
    "junk after number": ("1.5x,2,n", 2, "row 9876, column 'y' (label): not a number (value: '1.5x')",
                          True),
    "NA": ("0.5,NA,n", 2, "row 9876, column 'p' (prediction): missing or non-finite value", True),
    "nan": ("nan,0.5,n", 2, "row 9876, column 'y'", True),
    "inf": ("0.5,inf,n", 2, "row 9876, column 'p'", True),
    "too many fields": ("1,2,n,extra", 2, "bad.csv, row 9876: 4 fields where the header has 3 "
                        "(the row: '1,2,n,extra')", True),
    "too few fields": ("1,2", 2, "bad.csv, row 9876: 2 fields where the header has 3 (the row: '1,2')",
                       True),
    "leading space": (" 1.5,2,n", 0, None, True),
    "plus sign": ("+1,2,n", 0, None, True),
    "bare point": (".5,1.,n", 0, None, True),
    "empty line": ("", 0, None, True),
    "bare CR": ("1,2,n\r3,4,n", None, None, True),
    "quote in text": ('1,2,ab"c', None, None, True),
    # taken by the fast path, with the same outcome
    "overflow": ("1e400,0.5,n", 2, "row 9876, column 'y' (label): missing or non-finite value", False),
    "underflow": ("1e-400,-1e-400,n", 0, None, False),
    "quoted numbers": ('"1.5","-2",n', 0, None, False),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_cli_same_result_with_and_without_fast_path(case: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    line, code, message, refused = BAD_ROWS[case]
    path = bad_file(tmp_path, BAD_AT, line)
    monkeypatch.setattr(sources, "CSV_BLOCK", 1024)  # many blocks: most of them clean
    spy = Spy(monkeypatch)
    args = ["eval", path, "-l", "y", "-p", "p", "-m", "mse,mae", "-f", "json"]
    on, off = run_both(monkeypatch, spy, args)
    assert spy.taken >= 3 and (spy.refused >= 1) == refused
    assert (on.code, on.out, on.err) == (off.code, off.out, off.err)
    if code is not None:
        assert on.code == code, on.err
    if message is not None:
        assert on.err.startswith(f"lossctl: error: {path}"), on.err
        assert message in on.err
        assert on.err.count("\n") == 1
    if on.code == 0:
        assert json.loads(on.out)["rows"] >= BAD_FILE_ROWS - 1


@pytest.mark.parametrize("token", ["NA", "", "nan", "null", "-inf"])
def test_cli_nan_skip_same_numbers(token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = bad_file(tmp_path, BAD_AT, f"0.25,{token},n")
    monkeypatch.setattr(sources, "CSV_BLOCK", 1024)
    spy = Spy(monkeypatch)
    args = ["eval", path, "-l", "y", "-p", "p", "-m", "mse,mae,huber", "--nan", "skip", "-f", "json"]
    on, off = run_both(monkeypatch, spy, args)
    assert spy.taken >= 3 and spy.refused >= 1
    assert on.code == 0, on.err
    assert (on.out, on.err) == (off.out, off.err)
    doc = json.loads(on.out)
    assert (doc["rows"], doc["rows_skipped"]) == (BAD_FILE_ROWS - 1, 1)


@pytest.mark.parametrize("name, delimiter, eol, trailing, args", [
    ("d.tsv", "\t", "\r\n", False, []),
    ("d.csv", ";", "\n", False, ["--delimiter", ";"]),
    ("d.csv", ",", "\r\n", True, []),
    ("d.txt", "\t", "\n", True, ["--delimiter", "tab"]),
])
def test_cli_dialects(name: str, delimiter: str, eol: str, trailing: bool, args: list[str],
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TSV, other delimiters, CRLF, no final newline, quoted text with newlines: on == off."""
    rng = np.random.default_rng(len(name) + len(eol))
    y, p = rng.normal(size=(2, BAD_FILE_ROWS)).tolist()
    notes = ['"x, y"', f'"two{eol}lines"', '"q ""u"" o"', "plain", f'"{delimiter}"']
    lines = [delimiter.join(["note", "y", "p"])]
    lines += [delimiter.join([notes[i % len(notes)], repr(y[i]), repr(p[i])]) for i in range(BAD_FILE_ROWS)]
    path = tmp_path / name
    path.write_bytes((eol.join(lines) + (eol if trailing else "")).encode())
    monkeypatch.setattr(sources, "CSV_BLOCK", 1024)
    spy = Spy(monkeypatch)
    on, off = run_both(monkeypatch, spy, ["eval", path, "-l", "y", "-p", "p", "-m", "mse,mae", *args,
                                          "-f", "json"])
    assert spy.taken >= 3 and spy.refused == 0
    assert on.code == 0, on.err
    assert (on.out, on.err) == (off.out, off.err)
    assert json.loads(on.out)["rows"] == BAD_FILE_ROWS


@pytest.mark.parametrize("case", ["empty field", "text value", "too many fields"])
def test_cli_subprocess_env_var(case: str, tmp_path: Path) -> None:
    """The real switch: a fresh process with and without LOSSCTL_NATIVE=0."""
    line, code, message, _ = BAD_ROWS[case]
    path = bad_file(tmp_path, BAD_AT, line)
    args = ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "-f", "json"]
    on = run("script", args)
    off = run("script", args, env=OFF)
    assert (on.code, on.out, on.err) == (off.code, off.out, off.err)
    assert on.code == code and message in on.err


# --------------------------------------------------------------------------
# 4. and 5. end to end: a 200k-row CSV, fast path on and off
# --------------------------------------------------------------------------

BIG_ROWS = 200_000
SEGMENTS = np.array(['"north, upper"', "south", '"east ""E"""', '"west\nside"'])


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """id, segment (quoted text: commas, doubled quotes, newlines), y, p, w, z, note; > 8 MiB.

    Returns the path, the y and p columns as Python's float() reads the written text, and the
    segment column as written.
    """
    rng = np.random.default_rng(20240601)
    y = rng.normal(50.0, 20.0, BIG_ROWS)
    p = y + 5.0 * rng.standard_t(3, BIG_ROWS)
    p[rng.integers(0, BIG_ROWS, 500)] *= 1e-300  # a few tiny values
    y[::1000] = np.round(y[::1000], 2)  # short decimals: the exact (Clinger) case
    w = rng.uniform(0.05, 3.0, BIG_ROWS)
    z = rng.integers(0, 2, BIG_ROWS)
    seg = SEGMENTS[rng.integers(0, len(SEGMENTS), BIG_ROWS)]
    fmts = ["{!r}", "{:.17g}", "{:.15g}", "{:.20g}", "{:.6e}", "{:.25e}"]
    ys = [fmts[i % len(fmts)].format(v) for i, v in enumerate(y.tolist())]
    ps = [repr(v) for v in p.tolist()]
    ws = [repr(v) for v in w.tolist()]
    lines = ["id,segment,y,p,w,z,note"]
    for i in range(BIG_ROWS):
        lines.append(f'{i},{seg[i]},{ys[i]},{ps[i]},{ws[i]},{z[i]},"n{i % 13}, ok"')
    path = tmp_path_factory.mktemp("big") / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 2 * sources.CSV_BLOCK  # several blocks at the default size
    return path, np.array([float(s) for s in ys]), np.array([float(s) for s in ps]), seg


def _unquote(field: str) -> str:
    return field[1:-1].replace('""', '"') if field.startswith('"') else field


EVAL = ["-l", "y", "-p", "p", "-m", "mse,rmse,mae,huber:delta=2,log_cosh,quantile:q=0.9"]


@pytest.mark.parametrize("extra, fast_used", [
    ([], True),
    (["-w", "w"], True),
    (["--chunk-size", "1000"], True),
    (["--by", "segment"], False),  # a text column: pyarrow reads every block
])
def test_big_file_same_report(big, extra: list[str], fast_used: bool,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = big[0]
    spy = Spy(monkeypatch)
    on, off = run_both(monkeypatch, spy, ["eval", path, *EVAL, *extra, "-f", "json"])
    assert on.code == 0 and off.code == 0, (on.err, off.err)
    assert on.err == off.err == ""
    assert on.out == off.out
    assert (spy.taken > 0) == fast_used
    if fast_used:
        assert spy.refused == 0
    doc = json.loads(on.out)
    assert doc["rows"] == BIG_ROWS
    if "--by" in extra:
        assert len(doc["slices"]) == len(SEGMENTS)
        counts = dict(zip(*np.unique(big[3], return_counts=True), strict=True))
        got = {s["key"]["segment"]: s["rows"] for s in doc["slices"]}
        assert got == {_unquote(str(t)): int(n) for t, n in counts.items()}


def test_big_file_small_blocks_and_chunks(big, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many block boundaries (inside and between quoted newlines), tiny chunks: same report."""
    path = big[0]
    spy = Spy(monkeypatch)
    base = report("runner", ["eval", path, *EVAL])
    monkeypatch.setattr(sources, "CSV_BLOCK", 100_003)
    on, off = run_both(monkeypatch, spy, ["eval", path, *EVAL, "--chunk-size", "777", "-f", "json"])
    assert spy.taken > 50 and spy.refused == 0
    assert on.code == 0 and on.out == off.out
    assert json.loads(on.out) == base  # nor do blocks or chunks change a bit


def test_big_file_subprocess(big) -> None:
    path = big[0]
    on = report("script", ["eval", path, *EVAL])
    off = report("script", ["eval", path, *EVAL], env=OFF)
    assert on == off


def _exact_mean(values: np.ndarray) -> float:
    """The correctly rounded mean of doubles: an exact sum in units of 2**-1074."""
    total = 0
    for v in values.tolist():
        num, den = v.as_integer_ratio()
        total += num * ((1 << 1074) // den)
    return float(Fraction(total, len(values) << 1074))


def test_big_file_matches_exact_reference(big) -> None:
    path, y, p, _ = big
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse,rmse,mae"])
    d = y - p
    mse = _exact_mean(d * d)
    expected = {"mse": mse, "rmse": math.sqrt(mse), "mae": _exact_mean(np.abs(d))}
    got = {k: v["value"] for k, v in doc["losses"].items()}
    assert got == expected


# --------------------------------------------------------------------------
# 6. one text column (--by): the C fast path's string values and codes are pyarrow's
# --------------------------------------------------------------------------

TEXT_VALUES = ["a", "s001", '"s002"', '"with, comma"', '"two\nlines"', "ünï", '"quo""te"', "", '""', "NA",
               "null", "nan", "-", " pad ", '"x"']


def _by_reader(tmp_path: Path, data: bytes) -> sources.CsvReader:
    path = tmp_path / "by.csv"
    path.write_bytes(data)
    from lossctl.io.sources import open_source

    return sources.CsvReader(open_source(str(path)))


def _parse_by(reader: sources.CsvReader, data: bytes, columns: list[str]) -> pa.Table:
    block = sources._Block(bytearray(data), 0, len(data))
    return reader._parse_block(block, columns, {"s"}, {"s"})


@pytest.mark.parametrize("seed", range(8))
def test_text_column_same_table_as_arrow(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    pool = TEXT_VALUES if seed % 2 else [v for v in TEXT_VALUES[:6] if "\n" not in v]
    rows = [f"{rng.normal():.17g},{pool[rng.integers(len(pool))]},{rng.normal() * 1e3:.6g}"
            for _ in range(int(rng.integers(1, 400)))]
    data = ("y,s,p\n" + ("\r\n" if seed % 3 == 0 else "\n").join(rows) + "\n").encode()
    reader = _by_reader(tmp_path, data)
    body = data[data.index(b"\n") + 1:]
    fast = _parse_by(reader, body, ["y", "s", "p"])
    monkeypatch.setattr(fastcsv, "parse_with_text", lambda *a: None)  # pyarrow only
    slow = _parse_by(reader, body, ["y", "s", "p"])
    assert fast.schema == slow.schema
    assert fast.column("s").to_pylist() == slow.column("s").to_pylist()
    for c in ("y", "p"):
        assert (bits(fast.column(c).to_numpy()) == bits(slow.column(c).to_numpy())).all()


def test_text_column_fast_path_is_taken_for_plain_slices(tmp_path: Path) -> None:
    data = b"y,s,p\n" + b"".join(b'%d,"s%03d",%d.5\n' % (i, i % 7, i) for i in range(100))
    reader = _by_reader(tmp_path, data)
    got = fastcsv.parse_with_text(memoryview(data[6:]), ",", reader.columns, ["y", "p"], "s")
    assert got is not None
    floats, strings = got
    assert strings.to_pylist() == [f"s{i % 7:03d}" for i in range(100)]
    assert floats["p"][3] == 3.5
    for refused in (b'1,"a""b",2\n', b"1,\xff\xfe,2\n"):  # an escape, not UTF-8: pyarrow's
        assert fastcsv.parse_with_text(memoryview(refused), ",", reader.columns, ["y", "p"], "s") is None


def test_cli_by_on_csv_same_report_with_and_without_c(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    keys = ["north", "south", '"east"', "NA", "west"]
    lines = [f"{rng.normal():.17g},{keys[rng.integers(5)]},{rng.normal():.17g}" for _ in range(5000)]
    path = tmp_path / "s.csv"
    path.write_text("y,region,p\n" + "\n".join(lines) + "\n")
    args = ["eval", str(path), "-l", "y", "-p", "p", "-m", "mse,mae", "--by", "region", "-f", "json",
            "--chunk-size", "333"]
    on, off = run("script", args), run("script", args, env=OFF)
    assert on.code == off.code == 0
    assert on.out == off.out
    got = json.loads(on.out)
    assert {tuple(s["key"].values()) for s in got["slices"]} == {("north",), ("south",), ("east",),
                                                                (None,), ("west",)}
