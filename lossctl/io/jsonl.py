"""JSON Lines input (``.jsonl``, ``.ndjson``; plain, gzip or zstd): one object per line, streamed.

pyarrow's streaming JSON reader parses the needed keys only (every other key
is skipped), block by block, with an explicit schema: numbers as float64,
so the values and their bits are those of any correctly rounded parser.  The
column names (and the types of kept columns) come from the first lines.  A
value pyarrow refuses is found again by Python's ``json`` in the failing
stretch of the file, to name its row, column and value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from ..errors import InputError, InvalidInput
from .reader import Reader, short

_PEEK = 1 << 16  # bytes of the first lines that name the columns
_MAX_FIRST_LINE = 64 << 20
_BLOCK = 1 << 20  # bytes pyarrow parses at a time: its default; larger blocks were no faster, and bigger


class JsonlReader(Reader):
    """Streams record batches of selected keys from a JSON Lines file."""

    def _names(self) -> list[str]:
        self._first = self._first_records()
        return list(dict.fromkeys(k for rec in self._first for k in rec if isinstance(k, str)))

    def _first_records(self) -> list[dict[str, Any]]:
        """The records of the first ~64 KiB (at least one line), parsed by Python's json."""
        s = self.source
        try:
            with self._raw() as f:
                data = f.read(_PEEK)
                eof = len(data) < _PEEK
                while not eof and b"\n" not in data and len(data) < _MAX_FIRST_LINE:
                    more = f.read(_PEEK)
                    eof = len(more) < _PEEK
                    data += more
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{s.name}: cannot read as JSON Lines: {short(e)}") from None
        if not eof:
            data = data[:data.rfind(b"\n") + 1]
        records = []
        for row, line in enumerate(_lines(data.removeprefix(b"\xef\xbb\xbf"))):
            records.append(self._parse(line, row))
        if not records:
            raise InputError(f"{s.name}: empty input")
        return records

    def _parse(self, line: bytes, row: int) -> dict[str, Any]:
        try:
            rec = json.loads(line, parse_float=_float, object_pairs_hook=_object)
        except ValueError as e:  # (UnicodeDecodeError too)
            why = f"{e.msg} at character {e.pos + 1}" if isinstance(e, json.JSONDecodeError) else str(e)
            raise InputError(f"{self.source.name}, row {row + 1}: not valid JSON ({why})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{self.source.name}, row {row + 1}: not a JSON object "
                             "(JSON Lines hold one object per line)")
        return rec

    def _schema(self, columns: list[str], text: set[str]) -> pa.Schema:
        """float64 (or bool, or a list of float64) for values; kept columns as the first lines have them."""
        fields = []
        for c in columns:
            seen = [rec[c] for rec in self._first if rec.get(c) is not None]
            if c in text:
                fields.append(pa.field(c, _kept_type(seen)))
            elif seen and all(isinstance(v, bool) for v in seen):
                fields.append(pa.field(c, pa.bool_()))
            elif any(isinstance(v, list) for v in seen):
                fields.append(pa.field(c, pa.list_(pa.float64())))
            else:
                fields.append(pa.field(c, pa.float64()))
        return pa.schema(fields)

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        schema = self._schema(columns, set(text) | set(categories))
        parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        rows = 0
        try:
            for batch in pajson.open_json(self._raw(), read_options=pajson.ReadOptions(block_size=_BLOCK),
                                          parse_options=parse):
                rows += batch.num_rows
                yield batch
        except (pa.ArrowException, OSError) as e:
            self._locate(schema, rows)
            raise InputError(f"{self.source.name}: cannot read as JSON Lines near row {rows + 1}: "
                             f"{short(e)}") from None

    def _locate(self, schema: pa.Schema, done: int) -> None:
        """Raise an error naming the first record at or after row ``done`` that pyarrow refused."""
        row = 0
        for line in _stream_lines(self._raw()):
            if row >= done:
                rec = self._parse(line, row)
                for f in schema:
                    v = rec.get(f.name)
                    why = "given twice in one object" if f.name in rec.get(_REPEATED, ()) else \
                        _misfit(v, f.type)
                    if why:
                        raise InvalidInput(why, row, "", _JsonValue(v), column=f.name,
                                           source=self.source.name, line=row + 1)
            row += 1


class _JsonValue:
    """A value as JSON spells it, for error messages (``true``, ``[1, "a"]``, ``"abc"``)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        if isinstance(self.value, _TooBig):
            return str(self.value)
        return json.dumps(self.value, default=str)


_REPEATED = object()  # the key, in a parsed object, of the list of keys it holds twice


def _object(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    """A JSON object as a dict that remembers repeated keys (pyarrow refuses them)."""
    out: dict[Any, Any] = {}
    for k, v in pairs:
        if k in out:
            out.setdefault(_REPEATED, []).append(k)
        out[k] = v
    return out


class _TooBig(str):
    """A JSON number beyond float64's range (pyarrow refuses it; Python would read inf)."""


def _float(text: str) -> float | _TooBig:
    value = float(text)
    return _TooBig(text) if math.isinf(value) else value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, (bool, _TooBig))


def _misfit(v: Any, t: pa.DataType) -> str | None:
    """Why ``v`` cannot be a value of type ``t`` (None if it can)."""
    if v is None:
        return None
    if isinstance(v, _TooBig):
        return "number too large for a float64"
    if pa.types.is_floating(t):
        return None if _is_number(v) else "not a number"
    if pa.types.is_boolean(t):
        return None if isinstance(v, bool) else "not true or false, as in the first rows"
    if pa.types.is_integer(t):
        ok = isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < (1 << 63)
        return None if ok else "not an integer, as in the first rows"
    if pa.types.is_list(t):
        if not isinstance(v, list):
            return "not a list of numbers"
        return None if all(x is None or _is_number(x) for x in v) else "not a list of numbers"
    return None if isinstance(v, str) else "not a string, as in the first rows"


def _kept_type(seen: list[Any]) -> pa.DataType:
    """The Arrow type of a kept column (an id, a slice key) from its first values."""
    if seen and all(isinstance(v, bool) for v in seen):
        return pa.bool_()
    if seen and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return pa.int64()
    if seen and all(_is_number(v) for v in seen):
        return pa.float64()
    return pa.string()


def _lines(data: bytes) -> Iterator[bytes]:
    """The non-blank lines of ``data`` (blank lines are not records, for pyarrow either)."""
    for line in data.split(b"\n"):
        if line.strip():
            yield line


def _stream_lines(f: pa.NativeFile) -> Iterator[bytes]:
    """The non-blank lines of a (decompressed) stream, read in blocks."""
    with f:
        carry = f.read(3).removeprefix(b"\xef\xbb\xbf")  # a byte-order mark
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            data = carry + block
            cut = data.rfind(b"\n") + 1
            yield from _lines(data[:cut])
            carry = data[cut:]
        yield from _lines(carry)
