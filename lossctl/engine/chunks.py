"""Record batches -> the NumPy arrays the states take: roles, slice codes, row info.

Zero-copy from the Arrow buffers where the type allows: pyarrow's own
``to_numpy`` imports pandas when it is installed (half a second of start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import intervals
from ..core.state import SliceKeys
from ..core.top import RowInfo, json_value
from ..errors import InputError, InvalidInput
from .plan import is_list


def _column_array(batch: pa.RecordBatch, name: str) -> np.ndarray:
    col = batch.column(name)
    if is_list(col.type):
        return _list_to_2d(col, name)
    return _float64(col, name)


def _float64(col: pa.Array, name: str) -> np.ndarray:
    """A float64 NumPy view of an Arrow array, nulls as NaN.

    Zero-copy from the Arrow buffer: pyarrow's ``to_numpy`` imports pandas
    when it is installed, which costs half a second of start-up.
    """
    if col.type != pa.float64():
        col = _cast_float64(col, name)
    validity, data = col.buffers()
    values = np.frombuffer(data, dtype=np.float64, count=len(col), offset=col.offset * 8)
    if col.null_count:  # (pyarrow's fill_null would import pandas too)
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        valid = bits[col.offset:col.offset + len(col)].astype(bool)
        values = np.where(valid, values, np.nan)
    return values


def _cast_float64(col: pa.Array, name: str) -> pa.Array:
    """Any numeric Arrow array (or CSV text) as float64, each value correctly rounded.

    Integers beyond 2**53 round to the nearest double (as a CSV of the same
    digits reads; pyarrow's checked cast would refuse them), and decimals go
    through their exact text, since pyarrow's direct cast rounds twice (about
    one value in ten is then off by an ulp).
    """
    t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.float64(), safe=False)  # int -> double rounds to nearest in C
    if pa.types.is_decimal(t):
        return col.cast(pa.string()).cast(pa.float64())
    if pa.types.is_dictionary(t):  # a slice key
        return _cast_float64(col.dictionary_decode(), name)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return text_to_float64(col, name)
    return col.cast(pa.float64())


def text_to_float64(col: pa.Array, name: str) -> pa.Array:
    """CSV text (a role's column that is also kept, a key or a slice key) as the CSV reader's numbers.

    Null markers (``NA``, empty) are already nulls (the CSV reader reads text
    with ``strings_can_be_null``); what is left converts as pyarrow's CSV
    number decoder does: spaces and tabs trimmed, then the same parser.  A
    value that is not a number is an error naming its row and value.
    """
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim(col, characters=" \t")
    try:
        return trimmed.cast(pa.float64())
    except pa.ArrowInvalid:
        lo, hi = 0, len(col)  # bisect to the first value that does not convert
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                trimmed.slice(lo, mid - lo).cast(pa.float64())
                lo = mid
            except pa.ArrowInvalid:
                hi = mid
        raise InvalidInput("not a number", lo, "", col[lo].as_py(), column=name) from None


def _list_to_2d(col: pa.Array, name: str) -> np.ndarray:
    n = len(col)
    if col.null_count:
        raise InputError(f"list column {name!r} holds a missing (null) list")
    if pa.types.is_fixed_size_list(col.type):
        k = col.type.list_size
    else:
        lengths = np.diff(col.offsets.to_numpy())
        k = int(lengths[0]) if n else 0
        if n and (lengths != k).any():
            i = int(np.flatnonzero(lengths != k)[0])
            raise InvalidInput(f"list has {int(lengths[i])} values, expected {k}", i, "", None,
                               column=name)
    values = _float64(col.flatten(), name)
    return values.reshape(n, k)


def role_array(batch: pa.RecordBatch, cols: list[str]) -> np.ndarray:
    """One role's values: (n,) for one column, (n, K) column-major for K columns.

    Column-major keeps each class contiguous, so the kernels' per-row
    reductions over K run as K contiguous elementwise passes (2x faster for
    small K than a row-major copy).
    """
    if len(cols) == 1:
        return _column_array(batch, cols[0])
    out = np.empty((batch.num_rows, len(cols)), order="F")
    for k, c in enumerate(cols):
        out[:, k] = _column_array(batch, c)
    return out


def pieces(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


@dataclass
class Chunk:
    """Rows ready for the states: arrays of every role plus where the rows come from."""

    y: np.ndarray
    preds: list[np.ndarray]  # one per model
    w: np.ndarray | None
    first_row: int  # stream row of the chunk's first row (before any rows were dropped)
    info: RowInfo  # file, first data row in it, kept columns, offsets of the rows kept
    slices: np.ndarray | None = None
    bucket_rows: np.ndarray | None = None  # rows in the file to hash into buckets (--ci)
    seed: int = 0
    drops: list[np.ndarray | None] = field(default_factory=list)
    bucket_keys: pa.Array | None = None  # each row's id to hash instead (--ci-key)
    bucket_key_name: str = ""

    def buckets(self) -> np.ndarray | None:
        if self.bucket_keys is not None:
            ids = _ids(self.bucket_keys, self.first_row, self.bucket_key_name)
            if isinstance(ids, np.ndarray):
                return intervals.int_key_bucket_ids(ids, self.seed)
            return intervals.key_bucket_ids(*ids, self.seed)
        if self.bucket_rows is None:
            return None
        return intervals.bucket_ids(self.info.source, self.bucket_rows, self.seed)


def _ids(col: pa.Array, first_row: int, name: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Row ids: int64 values (integer ids), or text as int64 offsets and bytes.

    An integer id hashes as its decimal text, as a CSV file holds it (17 is "17").
    """
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if col.null_count:
        import pyarrow.compute as pc

        i = int(pc.index(pc.is_null(col), True).as_py())
        raise InvalidInput("a row needs an id to be put in an interval bucket (--ci-key)",
                           first_row + i, "row id", None, column=name)
    if pa.types.is_integer(col.type) and not pa.types.is_uint64(col.type):
        if col.type != pa.int64():
            col = col.cast(pa.int64())
        return np.frombuffer(col.buffers()[1], dtype=np.int64, count=len(col), offset=col.offset * 8)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    wide = pa.types.is_large_string(col.type)  # (the bytes are used in place: no copy of the text)
    _, offsets, data = col.buffers()
    width = 8 if wide else 4
    starts = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32, count=len(col) + 1,
                           offset=col.offset * width).astype(np.int64, copy=False)
    return starts, np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)


Sink = Callable[[Chunk, dict[str, np.ndarray]], None]  # per-row values of a chunk, in order


def rows_sink(writer: Any) -> Sink:
    """A sink writing each chunk's per-row values with its 1-based file rows (``lossctl rows``)."""

    def sink(chunk: Chunk, values: dict[str, np.ndarray]) -> None:
        info = chunk.info
        offsets = info.rows if info.rows is not None else np.arange(len(chunk.y))
        writer.write(info.source, info.first_row + offsets + 1, info.kept, values)

    return sink


def slice_codes(batch: pa.RecordBatch, columns: list[str], keys: SliceKeys) -> np.ndarray:
    """Each row's slice code: its tuple of --by values, numbered in order of first appearance."""
    import pyarrow.compute as pc

    local: list[np.ndarray] = []
    values: list[list] = []
    for c in columns:
        col = batch.column(c)
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col)
        codes, vals = _dictionary_codes(col)
        local.append(codes)
        values.append(vals)
    if len(columns) == 1:
        used = np.flatnonzero(np.bincount(local[0], minlength=len(values[0])))
        lookup = np.zeros(len(values[0]), dtype=np.int64)
        lookup[used] = [keys.code((values[0][i],)) for i in used.tolist()]
        return lookup[local[0]]
    combined = np.zeros(batch.num_rows, dtype=np.int64)
    for codes, vals in zip(local, values, strict=True):
        combined = combined * len(vals) + codes
        if combined.size and combined.max() > (1 << 40):  # keep the product small
            _, combined = np.unique(combined, return_inverse=True)
    uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    appearance = np.argsort(first)  # register new slices in the order their rows come
    lookup = np.empty(len(uniq), dtype=np.int64)
    for u in appearance.tolist():
        row = int(first[u])
        lookup[u] = keys.code(tuple(vals[codes[row]] for codes, vals in zip(local, values,
                                                                            strict=True)))
    return lookup[inverse.reshape(-1)]


def _dictionary_codes(col: pa.DictionaryArray) -> tuple[np.ndarray, list]:
    """Indices of a dictionary array as int64 (a null is one more value, None) and its values."""
    values = [json_value(v) for v in col.dictionary.to_pylist()]
    idx = col.indices
    codes = np.frombuffer(idx.buffers()[1], dtype=np.dtype(f"int{idx.type.bit_width}"), count=len(idx),
                          offset=idx.offset * idx.type.bit_width // 8).astype(np.int64)
    if col.null_count:
        bits = np.unpackbits(np.frombuffer(idx.buffers()[0], dtype=np.uint8), bitorder="little")
        valid = bits[idx.offset:idx.offset + len(idx)].astype(bool)
        codes = np.where(valid, codes, len(values))
        values.append(None)
    return codes, values
