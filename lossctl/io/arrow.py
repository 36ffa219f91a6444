"""Arrow arrays from NumPy data, zero-copy and without importing pandas.

``pa.array()`` (and ``pa.table``, ``pa.scalar``) on any Python or NumPy data
imports pandas when it is installed: half a second of start-up for a command
that never needs it.  Building arrays from buffers avoids that.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_TYPES = {np.dtype(np.float64): pa.float64(), np.dtype(np.int64): pa.int64()}


def from_numpy(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A 1-D float64 or int64 array as Arrow; ``valid`` marks the non-null entries."""
    values = np.ascontiguousarray(values)
    bitmap, nulls = None, 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = int(len(valid) - np.count_nonzero(valid))
    return pa.Array.from_buffers(_TYPES[values.dtype], len(values), [bitmap, pa.py_buffer(values)],
                                 null_count=nulls)


def strings(values: list[str]) -> pa.Array:
    """A string array of ``values``."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(data), [None, pa.py_buffer(offsets),
                                                               pa.py_buffer(b"".join(data))]).cast(pa.string())


def repeated(text: str, n: int) -> pa.Array:
    """A string array of ``n`` times ``text`` (built with 64-bit offsets, which cannot overflow)."""
    data = text.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets),
                                                       pa.py_buffer(data * n)]).cast(pa.string())
