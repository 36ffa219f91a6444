"""The optional C fast path for numeric CSV blocks (``lossctl/io/_fastcsv.c``).

pyarrow's CSV reader tokenises every field of every row; the fast path skips
the fields nobody asked for and converts only the wanted ones, which makes
reading a wide CSV about twice as fast.  It handles plain numbers only and
hands any block holding something else (an empty field, ``NA``, ``inf``, a
malformed row) back to pyarrow, whose values and error messages stay the
reference.  Without the extension (see :mod:`lossctl.native`) every block
goes through pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from .. import native

_SKIP = 0xFFFF
_TEXT = 0xFFFE  # the one column wanted as text (its bytes, for a string array)
# delimiters left to pyarrow: those that can sit inside a number, quotes, line ends
_NOT_DELIMITERS = "0123456789+-.eE\"\r\n"
_MAX_COLUMNS = 0xFFFE  # a column's output slot is a uint16, 0xFFFF meaning "skip", 0xFFFE "text"
POW10_RANGE = range(-348, 348)


def powers_of_ten() -> bytes:
    """128-bit approximations, rounded down, of 10**e for e in POW10_RANGE.

    Each is the integer m in [2**127, 2**128) with m * 2**k <= 10**e for some
    k, stored as (low, high) 64-bit words, as the Eisel-Lemire algorithm needs.
    """
    words: list[int] = []
    for e in POW10_RANGE:
        if e >= 0:
            v = 10 ** e
            shift = v.bit_length() - 128
            m = v >> shift if shift > 0 else v << -shift
        else:
            q = 10 ** -e
            m = (1 << (127 + q.bit_length())) // q
        words += [m & 0xFFFF_FFFF_FFFF_FFFF, m >> 64]
    return np.array(words, dtype=np.uint64).tobytes()


@lru_cache(maxsize=1)
def module() -> ModuleType | None:
    """The compiled fast path, ready to use, or None (not built, or turned off)."""
    fast = native.load("_fastcsv")
    if fast is not None:
        fast.set_powers(powers_of_ten())
    return fast


def parse_floats(block: memoryview, delimiter: str, columns: Sequence[str],
                 wanted: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The ``wanted`` columns of a block of whole CSV records as float64 arrays.

    ``columns`` are the file's columns, in order.  Returns None when the fast
    path is not available or the block holds anything it leaves to pyarrow.
    """
    got = _parse(block, delimiter, columns, wanted, None)
    return None if got is None else got[0]


def parse_with_text(block: memoryview, delimiter: str, columns: Sequence[str], wanted: Sequence[str],
                    text: str) -> tuple[dict[str, np.ndarray], pa.Array] | None:
    """As :func:`parse_floats`, plus column ``text`` as an Arrow string array (a --by column).

    None, for pyarrow to parse the block, also when a text field is quoted or
    is not UTF-8.  (The caller checks for pyarrow's null markers.)
    """
    got = _parse(block, delimiter, columns, wanted, text)
    if got is None:
        return None
    floats, (offsets, data), rows = got
    strings = pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    try:
        strings.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    return floats, strings


def _parse(block: memoryview, delimiter: str, columns: Sequence[str], wanted: Sequence[str],
           text: str | None) -> tuple[dict[str, np.ndarray], Any, int] | None:
    fast = module()
    if fast is None or not wanted or len(columns) > _MAX_COLUMNS or len(delimiter) != 1 \
            or delimiter in _NOT_DELIMITERS or not delimiter.isascii():
        return None
    slots = np.full(len(columns), _SKIP, dtype=np.uint16)
    for i, name in enumerate(wanted):
        slots[columns.index(name)] = i
    if text is not None:
        slots[columns.index(text)] = _TEXT
    got = fast.parse_floats(block, delimiter, slots.tobytes())
    if got is None:
        return None
    rows, arrays, text_buffers = got
    floats = {name: np.frombuffer(a, dtype=np.float64, count=rows) for name, a in zip(wanted, arrays,
                                                                                     strict=True)}
    return floats, text_buffers, rows
