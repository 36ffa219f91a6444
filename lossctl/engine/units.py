"""Work units: the pieces of input an engine evaluates independently.

A unit is a whole file, a range of row groups of a large Parquet file (its
first row known from the footer), or a newline-aligned byte range of a large
uncompressed CSV (its first row from a cheap counting pass over the bytes,
:func:`count_csv_range`; a file holding quotes or lone carriage returns,
where a newline may sit inside a field, stays whole).  Every unit knows its
first data row in its file, because ``--ci`` buckets hash (file base name,
row in file) and errors and ``--top`` name the file and the row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..io import fs
from ..io.sources import Source

DEFAULT_UNIT_BYTES = 128 << 20  # files larger than this are split (Dask engine)
_PIECE = 16 << 20  # bytes read at a time by the counting pass


@dataclass(frozen=True)
class Unit:
    """One piece of work: a file, or a part of one, with its first data row in the file."""

    index: int  # position in the stream: results are merged, and errors chosen, in this order
    source: Source
    first_row: int = 0
    row_groups: tuple[int, int] | None = None  # Parquet: row groups [start, stop)
    byte_range: tuple[int, int] | None = None  # CSV: bytes [start, end), whole records
    rows: int | None = None  # rows the unit holds, when known in advance (split units)
    join: Source | None = None  # the file paired with this one by a row join (Dask)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def whole(self) -> bool:
        return self.row_groups is None and self.byte_range is None


def whole_files(sources: list[Source]) -> list[Unit]:
    return [Unit(i, s) for i, s in enumerate(sources)]


def parquet_parts(unit: Unit, unit_bytes: int) -> list[Unit]:
    """Row-group ranges of about ``unit_bytes`` each (row offsets from the footer)."""
    import pyarrow.parquet as pq

    with _open(unit.source) as f:
        meta = pq.ParquetFile(f).metadata
    out: list[Unit] = []
    start, first, size, rows = 0, 0, 0, 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        size += rg.total_byte_size
        rows += rg.num_rows
        if size >= unit_bytes or g == meta.num_row_groups - 1:
            out.append(replace(unit, first_row=first, row_groups=(start, g + 1), rows=rows))
            start, first, size, rows = g + 1, first + rows, 0, 0
    return out if len(out) > 1 else [unit]


def csv_ranges(size: int, unit_bytes: int) -> list[int]:
    """Nominal cut points of a CSV of ``size`` bytes (each moved to the next record start)."""
    n = max(1, -(-size // unit_bytes))
    return [size * k // n for k in range(n + 1)]


def count_csv_range(source: Source, cut: int, end_cut: int) -> tuple[int, int, int, bool]:
    """The records of one range of a CSV: (start, end, records, safe).

    ``start``/``end`` are the nominal cuts moved to the byte after the next
    newline (0 and the file size stay); ``records`` counts the non-empty
    lines in [start, end), as the CSV reader counts rows (the header line
    of range 0 included); ``safe`` is False when the range holds a quote or
    a lone carriage return, where a newline could be inside a field or a
    line end could be missed: the file is then read whole.
    """
    size = source.size or 0
    with _open(source) as f:
        start = _next_record(f, cut, size)
        end = _next_record(f, end_cut, size)
        f.seek(start)
        records, safe, prev = 0, True, 10  # 10: as if after a newline
        left = end - start
        while left > 0:
            data = np.frombuffer(f.read(min(_PIECE, left)), dtype=np.uint8)
            if not len(data):
                break
            left -= len(data)
            if (data == 34).any():  # a quote: a newline may sit in a quoted field
                safe = False
            cr = data == 13
            if cr.any():
                after = np.append(data[1:], 0)
                if (after[cr] != 10).any():  # a lone \r ends a line for pyarrow, not for us
                    safe = False
            before = np.concatenate(([prev], data[:-1]))
            records += int(np.count_nonzero((before == 10) & (data != 10) & (data != 13)))
            prev = int(data[-1])
    return start, end, records, safe


def _next_record(f: object, cut: int, size: int) -> int:
    """The byte after the first newline at or after ``cut - 1`` (a record start), or ``size``."""
    if cut <= 0:
        return 0
    if cut >= size:
        return size
    pos = cut - 1
    f.seek(pos)  # type: ignore[attr-defined]
    while pos < size:
        block = f.read(1 << 16)  # type: ignore[attr-defined]
        if not block:
            return size
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(block)
    return size


def _open(source: Source):  # type: ignore[no-untyped-def]
    if fs.is_uri(source.path):
        return fs.open_input(source.path)
    import pyarrow as pa

    return pa.OSFile(source.path)
