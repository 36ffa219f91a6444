"""Columns from a second file, joined to the main stream by a key or row by row.

``eval --labels FILE`` takes the labels from FILE; ``compare OLD NEW`` takes
the candidate's predictions from NEW.  With a key the second file is held in
memory (only its key and the joined columns), so memory grows with that file
and never with the main stream; without a key both files are streamed side
by side and must have the same number of rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from ..errors import InputError, InvalidInput, UsageError
from ..io.reader import Reader, open_reader
from ..io.sources import Source
from .keyindex import KeyIndex, normalise

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


class KeyJoin:
    """The second file in memory, looked up by key (first occurrence wins; repeats are counted)."""

    def __init__(self, sources: list[Source], key: str, specs: dict[str, str],
                 arrays: Callable[[pa.RecordBatch, list[str]], np.ndarray], batch_rows: int) -> None:
        self.key = key
        tables: list[pa.Table] = []
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
            tables.append(reader.table(needed, text=[key]))
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        del tables
        if not table.num_rows:
            raise InputError(f"{', '.join(s.name for s in sources)}: no data rows")
        self.stats = JoinStats(", ".join(s.name for s in sources), key, table.num_rows)
        self.index = KeyIndex(table.column(key))
        if not any(key in cs for cs in self.columns.values()):
            table = table.drop_columns([key])
        table = table.combine_chunks()  # (the key went first: one column is copied at a time)
        batch = table.to_batches()[0]
        self.values = {role: arrays(batch, cols) for role, cols in self.columns.items()}
        self.stats.duplicate_keys = self.index.duplicates

    def lookup(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Row of the second file for each key (-1: no match)."""
        keys = normalise(keys)
        if pa.types.is_integer(keys.type) != self.index.ints:  # integers on one side only: text
            if self.index.ints:
                self.index = self.index.as_strings()
            else:
                keys = keys.cast(pa.string())
        return self.index.lookup(keys)

    def fork(self) -> KeyJoin:
        """A view for one work unit: the same index, with match records (and unmatched_main) of its own."""
        own = copy.copy(self)
        own.index = self.index.fork()
        own.stats = replace(self.stats, unmatched_main=0)
        return own

    def matched(self) -> tuple[np.ndarray, int]:
        """Rows of the joined file found so far, and how many lookups found one (for add_matched)."""
        return np.flatnonzero(self.index.hit), self.index.hits

    def add_matched(self, rows: np.ndarray, hits: int) -> None:
        """Take in another view's :meth:`matched`."""
        self.index.hit[rows] = 1
        self.index.hits += int(hits)

    def finish(self) -> JoinStats:
        # a repeated key's later rows are never looked up: they are counted as duplicates only
        self.stats.unmatched_other = self.index.unmatched()
        self.stats.repeated_matches = self.index.repeated()
        return self.stats


class RowJoin:
    """The second file streamed beside the main one, row by row."""

    def __init__(self, sources: list[Source], specs: dict[str, str],
                 arrays: Callable[[pa.RecordBatch, list[str]], np.ndarray],
                 batch_rows: Callable[[Reader, list[str]], int]) -> None:
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
            reader = open_reader(source)
            cols = {role: reader.select(spec, f"{role} column") for role, spec in self.specs.items()}
            if self.columns and cols != self.columns:
                raise UsageError(f"{source.name}: columns {cols} differ from the first file's")
            self.columns = cols
            needed = list(dict.fromkeys(c for cs in cols.values() for c in cs))
            reader.batch_rows = self.batch_rows(reader, needed)
            yield from reader.batches(needed)

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
