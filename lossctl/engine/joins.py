"""Columns from a second file, joined to the main stream by a key or row by row.

``eval --labels FILE`` takes the labels from FILE; ``compare OLD NEW`` takes
the candidate's predictions from NEW.  With a key the second file is held in
memory (only its key and the joined columns), so memory grows with that file
and never with the main stream; without a key both files are streamed side
by side and must have the same number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError, InvalidInput, UsageError
from ..io.reader import open_reader
from ..io.sources import Source

Arrays = Callable[[pa.RecordBatch], np.ndarray]  # a batch -> one role's values


@dataclass
class JoinStats:
    """What the join found; reported in every format."""

    file: str
    key: str | None
    rows: int = 0  # rows of the second file
    duplicate_keys: int = 0  # rows of the second file whose key appeared before (ignored)
    unmatched_main: int = 0  # main rows without a match (errors, or skipped with --missing skip)
    unmatched_other: int = 0  # rows of the second file no main row matched
    repeated_matches: int = 0  # main rows matching a key another main row matched before

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _key_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Keys compare as strings unless both sides are integers (CSV keys are read as text)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_integer(col.type) or pa.types.is_string(col.type):
        return col
    return col.cast(pa.string())


def _indices(idx: pa.Array) -> np.ndarray:
    """int32 Arrow indices as int64, nulls as -1 (pyarrow's to_numpy would import pandas)."""
    out = np.frombuffer(idx.buffers()[1], dtype=np.int32, count=len(idx),
                        offset=idx.offset * 4).astype(np.int64)
    if idx.null_count:
        bits = np.unpackbits(np.frombuffer(idx.buffers()[0], dtype=np.uint8), bitorder="little")
        out[~bits[idx.offset:idx.offset + len(idx)].astype(bool)] = -1
    return out


class KeyJoin:
    """The second file in memory, looked up by key (first occurrence wins; repeats are counted)."""

    def __init__(self, sources: list[Source], key: str, specs: dict[str, str],
                 arrays: Callable[[pa.RecordBatch, list[str]], np.ndarray], batch_rows: int) -> None:
        self.key = key
        batches: list[pa.RecordBatch] = []
        self.columns: dict[str, list[str]] = {}
        for source in sources:
            reader = open_reader(source, batch_rows)
            if key not in reader.names:
                raise UsageError(f"{source.name}: no key column {key!r}")
            reader.select(key, "--key column")  # a name that repeats is an error
            cols = {role: reader.select(spec, f"{role} column") for role, spec in specs.items()}
            if self.columns and cols != self.columns:
                raise UsageError(f"{source.name}: columns {cols} differ from the first file's")
            self.columns = cols
            needed = list(dict.fromkeys([key] + [c for cs in cols.values() for c in cs]))
            batches.extend(reader.batches(needed, text=[key]))
        if not batches:
            raise InputError(f"{', '.join(s.name for s in sources)}: no data rows")
        table = pa.Table.from_batches(batches).combine_chunks()
        batch = table.to_batches()[0] if table.num_rows else batches[0].slice(0, 0)
        self.keys = _key_array(table.column(key))
        self.values = {role: arrays(batch, cols) for role, cols in self.columns.items()}
        self.stats = JoinStats(", ".join(s.name for s in sources), key, table.num_rows)
        valid = table.num_rows - self.keys.null_count
        self.stats.duplicate_keys = valid - pc.count_distinct(self.keys).as_py()
        self.matches = np.zeros(table.num_rows, dtype=np.int64)

    def lookup(self, keys: pa.Array) -> np.ndarray:
        """Row of the second file for each key (-1: no match)."""
        keys = _key_array(keys)
        if keys.type != self.keys.type:
            keys = keys.cast(pa.string())
            if self.keys.type != pa.string():
                self.keys = self.keys.cast(pa.string())
        idx = pc.index_in(keys, value_set=self.keys, skip_nulls=True)
        rows = _indices(idx)
        hit = rows[rows >= 0]
        self.matches += np.bincount(hit, minlength=len(self.matches))
        return rows

    def finish(self) -> JoinStats:
        # a repeated key's later rows are never looked up: they are counted as duplicates only
        first = _indices(pc.index_in(self.keys, value_set=self.keys, skip_nulls=True))
        used = (first == np.arange(len(first))) | (first < 0)
        self.stats.unmatched_other = int(((self.matches == 0) & used).sum())
        self.stats.repeated_matches = int(np.maximum(self.matches - 1, 0).sum())
        return self.stats


class RowJoin:
    """The second file streamed beside the main one, row by row."""

    def __init__(self, sources: list[Source], specs: dict[str, str],
                 arrays: Callable[[pa.RecordBatch, list[str]], np.ndarray], batch_rows: int) -> None:
        self.sources = sources
        self.specs = specs
        self.arrays = arrays
        self.batch_rows = batch_rows
        self.columns: dict[str, list[str]] = {}
        self._batches = self._stream()
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self.stats = JoinStats(", ".join(s.name for s in sources), None)
        self.exhausted = False

    def _stream(self) -> Iterator[pa.RecordBatch]:
        for source in self.sources:
            reader = open_reader(source, self.batch_rows)
            cols = {role: reader.select(spec, f"{role} column") for role, spec in self.specs.items()}
            if self.columns and cols != self.columns:
                raise UsageError(f"{source.name}: columns {cols} differ from the first file's")
            self.columns = cols
            yield from reader.batches(list(dict.fromkeys(c for cs in cols.values() for c in cs)))

    def open(self) -> None:
        """Read the first batch, which resolves the second file's columns."""
        if not self.columns and not self.exhausted:
            batch = next(self._batches, None)
            if batch is None:
                self.exhausted = True
            else:
                self._buffer.append(batch)
                self._buffered += batch.num_rows

    def take(self, n: int) -> dict[str, np.ndarray] | None:
        """The next ``n`` rows' values per role, or None when the second file has fewer rows."""
        while self._buffered < n:
            batch = next(self._batches, None)
            if batch is None:
                self.exhausted = True
                return None
            self._buffer.append(batch)
            self._buffered += batch.num_rows
        table = pa.Table.from_batches(self._buffer).combine_chunks()
        head = table.slice(0, n).to_batches()
        batch = head[0] if head else table.to_batches()[0].slice(0, 0)
        rest = table.slice(n)
        self._buffer = rest.to_batches() if rest.num_rows else []
        self._buffered = rest.num_rows
        self.stats.rows += n
        return {role: self.arrays(batch, cols) for role, cols in self.columns.items()}

    def finish(self, main_rows: int, main_name: str) -> JoinStats:
        """Check that both files had the same number of rows."""
        other = self.stats.rows + self._buffered
        if not self.exhausted:
            other += sum(b.num_rows for b in self._batches)
        if other != main_rows:
            raise InputError(f"row counts differ: {main_name} has {main_rows} rows, "
                             f"{self.stats.file} has {other} (join by --key, or align the files)")
        return self.stats


def missing_key(stream_row: int, key: str, value: object) -> InvalidInput:
    return InvalidInput("no row with this key in the joined file (use --missing skip to drop such rows)",
                        stream_row, "key", value, column=key)
