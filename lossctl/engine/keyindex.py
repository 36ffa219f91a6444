"""The index of a key join: each key's first row in the joined file, found chunk by chunk.

Built once over the joined file's key column; every chunk of the main stream
is then looked up in it.  (pyarrow's ``index_in`` builds a hash set of its
value set on every call, so calling it per chunk hashes the whole joined file
again for each chunk: quadratic.)  The C extension ``_keyindex`` keeps one
open-addressing hash table; its twin here sorts integer keys once and
binary-searches each chunk (strings: ``index_in`` against the distinct keys,
exact but slower).  Both give the same rows and counts.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import native
from ..io import arrow

_native = native.load("_keyindex")
_MAX_ROWS = (1 << 31) - 2  # the C table holds row + 1 in int32 slots (strings: 32 bits of uint64 ones)


def _valid(arr: pa.Array) -> np.ndarray | None:
    """A uint8 mask of the non-null entries, or None when there is no null."""
    if not arr.null_count:
        return None
    bits = np.unpackbits(np.frombuffer(arr.buffers()[0], dtype=np.uint8), bitorder="little")
    return np.ascontiguousarray(bits[arr.offset:arr.offset + len(arr)])


def _ints(arr: pa.Array) -> np.ndarray:
    """The int64 values of an int64 array (zero-copy; a null's slot holds anything)."""
    return np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr), offset=arr.offset * 8)


def _strings(arr: pa.Array) -> tuple[np.ndarray, memoryview | bytes]:
    """Offsets (int32 or int64, len + 1) and data buffer of a string or large_string array."""
    width = 8 if pa.types.is_large_string(arr.type) else 4
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.dtype(f"int{width * 8}"), count=len(arr) + 1,
                            offset=arr.offset * width)
    data = arr.buffers()[2]
    return offsets, (memoryview(data) if data is not None and data.size else b"")


def normalise(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Keys as one int64 or string array: integers compare as integers, anything else as text."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if pa.types.is_integer(keys.type):
        try:
            return keys.cast(pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64: compared as text
            return keys.cast(pa.string())
    if pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type):
        return keys
    return keys.cast(pa.string())


class KeyIndex:
    """Rows of a key column by key: the first row holding a key wins, later ones are duplicates.

    ``lookup`` records which rows were found and how often, for the join's
    statistics (``unmatched``, ``repeated``).
    """

    def __init__(self, keys: pa.Array) -> None:
        self.keys = normalise(keys)
        self.ints = pa.types.is_integer(self.keys.type)
        n = len(self.keys)
        self.valid = _valid(self.keys)
        self.hit = np.zeros(n, dtype=np.uint8)  # rows found by some lookup
        self.hits = 0  # lookups that found a row
        self.native = _native is not None and n <= _MAX_ROWS
        self.first = np.zeros(n, dtype=np.uint8)  # rows holding their key's first occurrence
        if self.native:
            size = 1 << max(4, int(1.5 * n).bit_length())
            if self.ints:
                self.slots = np.zeros(size, dtype=np.int32)
                self.duplicates = _native.build_int(_ints(self.keys), self.valid, self.slots, self.first)
            else:
                offsets, data = _strings(self.keys)
                self.slots = np.zeros(size, dtype=np.uint64)
                self.duplicates = _native.build_str(offsets, data, self.valid, self.slots, self.first)
        else:
            self._build_twin()

    def _build_twin(self) -> None:
        rows = np.arange(len(self.keys)) if self.valid is None else np.flatnonzero(self.valid)
        if self.ints:
            values = _ints(self.keys)[rows]
            order = np.argsort(values, kind="stable")  # equal keys keep file order: the first wins
            ordered = values[order]
            starts = np.ones(len(ordered), dtype=bool)
            starts[1:] = ordered[1:] != ordered[:-1]
            self.sorted_keys = ordered[starts]
            self.sorted_rows = rows[order][starts]
        else:
            first = pc.index_in(self.keys, value_set=self.keys, skip_nulls=True)
            firsts = rows[_indices(first)[rows] == rows]
            # (not sorted: the distinct keys in file order, for index_in)
            self.sorted_keys = self.keys.take(arrow.from_numpy(firsts.astype(np.int64)))
            self.sorted_rows = firsts
        self.first[self.sorted_rows] = 1
        self.duplicates = len(rows) - len(self.sorted_rows)

    def fork(self) -> KeyIndex:
        """The same index with no lookups recorded (a work unit's own statistics)."""
        other = copy.copy(self)
        other.hit, other.hits = np.zeros_like(self.hit), 0
        return other

    def as_strings(self) -> KeyIndex:
        """The same index with its keys compared as text (a lookup by keys of another type)."""
        other = KeyIndex(self.keys.cast(pa.string()))
        other.hit, other.hits = self.hit, self.hits
        return other

    def lookup(self, queries: pa.Array) -> np.ndarray:
        """The row of each query's key (int64; -1: no such key, or a null query)."""
        valid = _valid(queries)
        out = np.empty(len(queries), dtype=np.int64)
        if self.native and self.ints:
            self.hits += _native.lookup_int(_ints(self.keys), self.slots, _ints(queries), valid, out,
                                            self.hit)
            return out
        if self.native:
            offsets, data = _strings(self.keys)
            q_offsets, q_data = _strings(queries)
            self.hits += _native.lookup_str(offsets, data, self.slots, q_offsets, q_data, valid, out,
                                            self.hit)
            return out
        if self.ints:
            q = _ints(queries)
            pos = np.minimum(np.searchsorted(self.sorted_keys, q), max(len(self.sorted_keys) - 1, 0))
            found = self.sorted_keys[pos] == q if len(self.sorted_keys) else np.zeros(len(q), bool)
            if valid is not None:
                found &= valid.astype(bool)
        else:
            if queries.type != self.keys.type:
                queries = queries.cast(self.keys.type)
            idx = _indices(pc.index_in(queries, value_set=self.sorted_keys, skip_nulls=True))
            found = idx >= 0
            pos = np.maximum(idx, 0)
        out[:] = -1
        out[found] = self.sorted_rows[pos[found]]
        self.hit[out[found]] = 1
        self.hits += int(found.sum())
        return out

    def unmatched(self) -> int:
        """Rows that no lookup found, their key's repeats aside (a null key is never found)."""
        used = self.first.astype(bool)
        if self.valid is not None:
            used |= ~self.valid.astype(bool)
        return int(np.count_nonzero(used & (self.hit == 0)))

    def repeated(self) -> int:
        """Lookups that found a row an earlier lookup had found."""
        return self.hits - int(np.count_nonzero(self.hit))


def _indices(idx: pa.Array) -> np.ndarray:
    """int32 Arrow indices as int64, nulls as -1 (pyarrow's to_numpy would import pandas)."""
    out = np.frombuffer(idx.buffers()[1], dtype=np.int32, count=len(idx),
                        offset=idx.offset * 4).astype(np.int64)
    valid = _valid(idx)
    if valid is not None:
        out[~valid.astype(bool)] = -1
    return out
