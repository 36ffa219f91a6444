"""A short fuzz of the C CSV parser's entry points, for the sanitizer run (tests/sanitize.sh).

Not a pytest module: ``python tests/fuzz_fastcsv.py [SECONDS]`` feeds
``_fastcsv.parse_floats`` and ``record_end`` random and mutated blocks
(quotes, CR, empty and over-long fields, huge numbers, NUL and high bytes,
truncation anywhere), each in a buffer of exactly its size so that
AddressSanitizer sees any read past its end.  Where the parser accepts a
block, its values must equal pyarrow's reading of it; every record end found
in C must be the one the Python twin's walk finds.  Fixed seed: the same
blocks every run.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lossctl.io import fastcsv, records

NUMBERS = ["0", "1", "-1", "1.5", "-0.0", "1e308", "1e-320", "2.2250738585072014e-308", "9" * 25,
           "1" * 400, "1" * 600, "." + "5" * 40, "1e99999", "00012", "4.", ".4", "+3", '"7"',
           "4.9406564584124654e-324", "1.7976931348623157e308", "123456789012345678901234567890e-30"]
JUNK = ["nan", "inf", "", "abc", '"a,b"', '"x""y"', '"\n"', "0x10", "1_0", " 2", "3 ", "\x00",
        "\xff", "é", "-", "e5", "1e", '"', "1,5"]


def exact_buffer(data: bytes) -> memoryview:
    """``data`` in an allocation of exactly its size (a bytes object has a spare NUL at its end)."""
    return memoryview(np.frombuffer(data, dtype=np.uint8).copy())


def block(rng: random.Random, delimiter: str, ncols: int) -> bytes:
    eol = rng.choice(["\n", "\r\n", "\n", "\r\n", "\r", "\n\n"])
    dirt = rng.choice([0.0, 0.0, 0.002, 0.05])  # how often a field is not a plain number
    rows = []
    for _ in range(rng.randint(0, 30)):
        n = ncols + (rng.choice([-1, 1]) if rng.random() < dirt else 0)
        rows.append(delimiter.join(
            rng.choice(JUNK) if rng.random() < dirt else rng.choice(NUMBERS) if rng.random() < 0.2
            else repr(rng.uniform(-1e6, 1e6)) for _ in range(max(n, 0))))
    text = eol.join(rows) + (eol if rng.random() < 0.8 else "")
    raw = text.encode("utf-8", "surrogateescape")
    for _ in range(rng.choice([0, 0, 0, 0, 1, 3])):  # byte-level damage
        at = rng.randrange(len(raw) + 1)
        raw = raw[:at] + rng.choice([b'"', b"\r", b"\n", b"\x00", b"\xff", delimiter.encode(),
                                     b"9" * 700]) + raw[at:]
    if raw and rng.random() < 0.2:
        raw = raw[:rng.randrange(len(raw))]
    return raw


def agrees_with_arrow(raw: bytes, delimiter: str, columns: list[str], wanted: list[str],
                      got: dict[str, np.ndarray]) -> None:
    if not raw.strip(b"\r\n"):  # no record at all: pyarrow calls it an empty file
        assert all(len(v) == 0 for v in got.values()), raw
        return
    table = pacsv.read_csv(pa.py_buffer(raw),
                           read_options=pacsv.ReadOptions(column_names=columns, use_threads=False),
                           parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                                            newlines_in_values=True),
                           convert_options=pacsv.ConvertOptions(
                               column_types={c: pa.float64() for c in wanted},
                               include_columns=wanted))
    for c in wanted:
        want = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        assert np.array_equal(got[c], want, equal_nan=True), (raw, c)


def main(seconds: float) -> int:
    fast = fastcsv.module()
    if fast is None:
        print("fuzz_fastcsv: the C extension is not built", file=sys.stderr)
        return 1
    rng = random.Random(20240611)
    deadline = time.monotonic() + seconds
    blocks = accepted = 0
    while time.monotonic() < deadline:
        delimiter = rng.choice([",", "\t", ";", "|", " "])
        ncols = rng.randint(1, 9)
        raw = block(rng, delimiter, ncols)
        columns = [f"c{i}" for i in range(ncols)]
        wanted = rng.sample(columns, rng.randint(1, ncols))
        buf = exact_buffer(raw)
        got = fastcsv.parse_floats(buf, delimiter, columns, wanted)
        blocks += 1
        if got is not None:
            accepted += 1
            agrees_with_arrow(raw, delimiter, columns, wanted, got)
        for _ in range(3):  # the block cutter's scan, against its Python twin
            lo = rng.randrange(len(raw) + 1)
            hi = rng.randrange(lo, len(raw) + 1)
            first, eof = rng.random() < 0.3, rng.random() < 0.5
            got = fast.record_end(buf, lo, hi, delimiter, first, eof)
            want = records._walk_record_end(raw, lo, hi, ord(delimiter), first, eof)
            assert tuple(got) == want, (raw, lo, hi, first, eof, got, want)
        # raw slot tables and delimiters as the Python wrapper would never pass them
        slots = np.array([rng.choice([0, 1, 2, 0xFFFF]) for _ in range(ncols)], dtype=np.uint16)
        try:
            fast.parse_floats(buf, delimiter, slots.tobytes())
        except ValueError:
            pass
    print(f"fuzz_fastcsv: {blocks} blocks, {accepted} parsed in C (and equal to pyarrow's reading)")
    return 0 if blocks > 100 and accepted > 10 else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
