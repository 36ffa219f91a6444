"""Where CSV records end: the block cutter's scan, by the CSV tokenizer's own quoting rules.

The reading thread cuts a CSV file into blocks that end on a record
boundary, so that each block can be parsed on its own (in C or by pyarrow)
and read exactly as pyarrow reads the whole file.  A newline inside a quoted
field is not a boundary, and a quote is the start of a quoted field only at
the start of a field: ``5" screen`` holds a plain quote character.  The scan
is in C (``_fastcsv.record_end``, from quote to quote in 16-byte SSE2
steps); without the extension, a NumPy twin checks that the quote parity
holds and walks the quotes one by one only where it does not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .fastcsv import module


def record_end(data: bytes | bytearray, begin: int, end: int, delimiter: str, first: bool = False,
               eof: bool = False) -> tuple[int, bool]:
    """Where a block of CSV may end: ``(cut, inside)``.

    ``data[begin:end]`` starts on a record boundary.  ``cut`` is the index of
    the last (``first``: the first) record end outside quoted fields, or -1;
    ``inside`` tells that the scan ends inside a quoted field (before
    ``eof``, also on a quote that may be the first of a doubled one).  A
    record ends at ``\n`` or at a ``\r`` not followed by ``\n`` (one that is
    the last byte is undecided before ``eof``).  The quoting rules are
    pyarrow's (and Python's ``csv``): a quote opens a quoted field only at the
    start of a field, else it is a plain character (``5" screen``); inside a
    quoted field ``""`` is a quote and a lone quote ends the quoting.
    """
    fast = module()
    if fast is not None:
        return fast.record_end(data, begin, end, delimiter, first, eof)
    if data.find(b'"', begin, end) < 0:  # the common case: no quote at all
        return _stretch_end(data, begin, end, end, first, eof), False
    if not first:
        got = _parity_record_end(data, begin, end, delimiter, eof)
        if got is not None:
            return got
    return _walk_record_end(data, begin, end, ord(delimiter), first, eof)


def _stretch_end(data: bytes | bytearray, a: int, b: int, end: int, first: bool, eof: bool) -> int:
    """The first (or last) record end in ``data[a:b]``, a stretch outside quoted fields, or -1."""
    if a >= b:
        return -1
    if first:
        n = data.find(b"\n", a, b)
        r = data.find(b"\r", a, n if n >= 0 else b)
        if r >= 0:  # the first CR: of a CRLF (then n is next) or bare
            if r + 1 < end:
                return r + 1 if data[r + 1] == _LF else r
            if eof:
                return r
        return n
    n = data.rfind(b"\n", a, b)
    after = n + 1 if n >= 0 else a
    r = data.rfind(b"\r", after, b)  # after the last LF: a bare CR
    if r >= 0 and r + 1 == end and not eof:
        r = data.rfind(b"\r", after, r)
    return r if r >= 0 else n


def _walk_record_end(data: bytes | bytearray, begin: int, end: int, delim: int, first: bool,
                     eof: bool) -> tuple[int, bool]:
    """:func:`record_end` quote by quote (the C extension's loop)."""
    cut, out, i = -1, begin, begin
    while True:
        q = data.find(b'"', i, end)
        if q < 0:
            c = _stretch_end(data, out, end, end, first, eof)
            return (c if c >= 0 else cut), False
        if q > begin and data[q - 1] not in (delim, _LF, _CR):
            i = q + 1  # a quote inside an unquoted field: a plain character
            continue
        c = _stretch_end(data, out, q, end, first, eof)
        if c >= 0:
            cut = c
            if first:
                return cut, False
        i = q + 1
        while True:  # inside the quoted field, to its closing quote
            q = data.find(b'"', i, end)
            if q < 0 or (q + 1 == end and not eof):
                return cut, True
            if q + 1 >= end or data[q + 1] != _QUOTE:
                break
            i = q + 2
        out = i = q + 1


def _parity_record_end(data: bytes | bytearray, begin: int, end: int, delimiter: str,
                       eof: bool) -> tuple[int, bool] | None:
    """The last record end by quote parity, or None when parity does not hold.

    Parity is the tokenizer's reading when every quote it takes as opening
    (the 1st, 3rd, ...) is at the start of a field or right after the
    quote before it (a doubled quote); then the odd quotes open quoted
    fields and the even ones close them.
    """
    arr = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
    q = np.flatnonzero(arr == _QUOTE)
    if not q.size:
        return _stretch_end(data, begin, end, end, False, eof), False
    openers = q[0::2]
    before = arr[np.maximum(openers - 1, 0)]
    ok = (openers == 0) | (before == ord(delimiter)) | (before == _LF) | (before == _CR) | \
        (before == _QUOTE)
    if not ok.all():
        return None
    odd = len(q) % 2
    last = int(q[-1]) + begin
    inside = bool(odd) or (last + 1 == end and not eof)

    def stretches() -> Iterator[tuple[int, int]]:
        """Outside quotes, last first: after the last closing quote, between pairs, the start."""
        if not odd:
            yield last + 1, end
        for k in range(len(q) - 3 + odd, 0, -2):
            yield int(q[k]) + begin + 1, int(q[k + 1]) + begin
        yield begin, int(q[0]) + begin

    for a, b in stretches():
        c = _stretch_end(data, a, b, end, False, eof)
        if c >= 0:
            return c, inside
    return -1, inside


def split_record(record: bytes, delimiter: str) -> list[bytes]:
    """The fields of one whole record (a header), quotes removed, by the same rules.

    ``record`` is what :func:`record_end` delimits, with or without its line
    end; it is not inside a quoted field at its end.
    """
    if record.endswith(b"\r\n"):
        record = record[:-2]
    elif record.endswith((b"\n", b"\r")):
        record = record[:-1]
    d = delimiter.encode()
    fields: list[bytes] = []
    i = 0
    while True:
        field = bytearray()
        if record[i:i + 1] == b'"':  # a quoted field, then maybe an unquoted rest
            i += 1
            while True:
                q = record.find(b'"', i)
                if q < 0:
                    q = len(record)
                field += record[i:q]
                if record[q + 1:q + 2] != b'"':
                    i = q + 1
                    break
                field += b'"'
                i = q + 2
        j = record.find(d, i)
        field += record[i:j if j >= 0 else len(record)]
        fields.append(bytes(field))
        if j < 0:
            return fields
        i = j + 1


_LF, _CR, _QUOTE = 10, 13, 34
