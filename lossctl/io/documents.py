"""Files lossctl reads that are not data: saved states, baselines, checks files.

Each is parsed with guards (strict UTF-8; an integer of more than
``MAX_INT_DIGITS`` digits, nesting too deep for the parser, a lone
surrogate are errors) and checked against a schema before any field is used,
so a damaged or hostile file gets one line that names the file and the field::

    s0.json: field state.slices.rows[3]: expected a non-negative integer, got "many"

never a traceback, a silently wrong number or gigabytes of memory.

The schema language is the few classes below (``Int``, ``Str``, ``List``,
``Obj``, ...); an ``Obj`` also takes *rules*, checks across fields (a length
implied by another field, a count implied by the loss definitions).  Why not
jsonschema: it would be a new runtime dependency (with its own dependencies
and import time) for what is a hundred lines here, and JSON Schema cannot
express those cross-field rules, which are where the hostile files are.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import UsageError
from . import fs

MAX_INT_DIGITS = 100  # no count, seed or key in these files needs more (2**64 has 20 digits)
MAX_DEPTH = 16  # nesting allowed inside free-form values (kept columns of --top rows)
_MISSING = object()


class Invalid(Exception):
    """A field that does not match its schema: where it is, what was expected, what it holds."""

    def __init__(self, where: str, expected: str, got: Any = _MISSING, problem: str = "") -> None:
        super().__init__(where)
        self.where, self.expected, self.got, self.problem = where, expected, got, problem

    def message(self, path: str) -> str:
        field = f"field {self.where}" if self.where else "the document"
        if self.problem:
            return f"{path}: {field}: {self.problem}"
        if self.got is _MISSING:
            return f"{path}: {field}: missing (expected {self.expected})"
        return f"{path}: {field}: expected {self.expected}, got {show(self.got)}"


def show(v: Any) -> str:
    """A value as a message shows it: short, and never a conversion that could fail."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        digits = math.floor(v.bit_length() * math.log10(2)) + 1 if v else 1
        return str(v) if digits <= 30 else f"an integer of about {digits} digits"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        text = json.dumps(v[:40] + ("..." if len(v) > 40 else ""))
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(v, list):
        return f"a list of {len(v)} item{'s' if len(v) != 1 else ''}"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def field(where: str, name: str | int) -> str:
    """The path of a child: ``a.b``, ``a[3]``, or ``a["huber:delta=2"]`` for odd keys."""
    if isinstance(name, int):
        return f"{where}[{name}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f"{where}.{name}" if where else name
    return f"{where}[{json.dumps(name)}]"


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------


class Schema:
    """A check of one value; ``expected`` says in words what passes."""

    expected = "a value"

    def check(self, v: Any, where: str) -> None:
        if not self.accepts(v):
            raise Invalid(where, self.expected, v)

    def accepts(self, v: Any) -> bool:
        return True


class Int(Schema):
    """An integer (never a bool) in ``[lo, hi]``."""

    def __init__(self, lo: int = 0, hi: int = 2**63 - 1) -> None:
        self.lo, self.hi = lo, hi
        self.expected = "a non-negative integer" if lo == 0 else \
            "a positive integer" if lo == 1 else f"an integer >= {lo}"

    def check(self, v: Any, where: str) -> None:
        if type(v) is not int or v < self.lo:
            raise Invalid(where, self.expected, v)
        if v > self.hi:
            raise Invalid(where, self.expected, v, f"expected at most {self.hi}, got {show(v)}")


class Number(Schema):
    """A finite number, integer or float (never a bool)."""

    expected = "a finite number"

    def accepts(self, v: Any) -> bool:
        if type(v) is int:
            return abs(v) < 2**1023
        return type(v) is float and math.isfinite(v)


class Str(Schema):
    """A string (valid Unicode), optionally one of ``choices`` or matching ``pattern``."""

    def __init__(self, choices: Iterable[str] | None = None, pattern: str | None = None,
                 max_len: int | None = None, expected: str | None = None) -> None:
        self.choices = None if choices is None else tuple(choices)
        self.pattern = re.compile(pattern) if pattern else None
        self.max_len = max_len
        self.expected = expected or (
            "one of " + ", ".join(json.dumps(c) for c in self.choices) if self.choices else "a string")

    def accepts(self, v: Any) -> bool:
        if not isinstance(v, str) or not _unicode(v):
            return False
        if self.max_len is not None and len(v) > self.max_len:
            return False
        if self.choices is not None and v not in self.choices:
            return False
        return self.pattern is None or self.pattern.fullmatch(v) is not None


class Const(Schema):
    def __init__(self, value: Any) -> None:
        self.value = value
        self.expected = json.dumps(value)

    def accepts(self, v: Any) -> bool:
        return type(v) is type(self.value) and v == self.value


class Bool(Schema):
    expected = "true or false"

    def accepts(self, v: Any) -> bool:
        return isinstance(v, bool)


class Null(Schema):
    expected = "null"

    def accepts(self, v: Any) -> bool:
        return v is None


class Scalar(Schema):
    """A string, number, bool or null (a slice key's value)."""

    expected = "a string, number, true, false or null"

    def accepts(self, v: Any) -> bool:
        return v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and _unicode(v))


class Json(Schema):
    """Any JSON value nested at most ``MAX_DEPTH`` deep (free-form: a kept column's value)."""

    expected = f"a JSON value nested at most {MAX_DEPTH} deep"

    def accepts(self, v: Any) -> bool:
        todo = [(v, 0)]
        while todo:
            x, depth = todo.pop()
            if isinstance(x, (list, dict)):
                if depth >= MAX_DEPTH:
                    return False
                items = x.values() if isinstance(x, dict) else x
                todo += [(y, depth + 1) for y in items]
                if isinstance(x, dict) and not all(_unicode(k) for k in x):
                    return False
            elif isinstance(x, str) and not _unicode(x):
                return False
        return True


class HexInt(Schema):
    """An exact integer written in hex (``"0x1f"``, ``"-0x1f"``) with ``|v| < 2**bits``."""

    def __init__(self, bits: int, lo: int | None = None) -> None:
        self.bits, self.lo = bits, lo
        sign = "a non-negative" if lo == 0 else "an"
        self.expected = f"{sign} integer in hex below 2**{bits}"

    def accepts(self, v: Any) -> bool:
        if not isinstance(v, str) or len(v) > self.bits // 4 + 4 or not _HEX.fullmatch(v):
            return False
        n = int(v, 16)
        return abs(n) < (1 << self.bits) and (self.lo is None or n >= self.lo)


_HEX = re.compile(r"-?0x[0-9a-f]+")


class FloatText(Schema):
    """A float written as text (``repr``: ``"1.5"``, ``"inf"``, ``"nan"``) passing ``ok``."""

    def __init__(self, ok: Callable[[float], bool] = lambda x: True, expected: str = "") -> None:
        self.ok = ok
        self.expected = expected or "a number written as a string"

    def accepts(self, v: Any) -> bool:
        if not isinstance(v, str) or len(v) > 40:
            return False
        try:
            x = float(v)
        except ValueError:
            return False
        return self.ok(x)


class OneOf(Schema):
    """The first alternative that accepts the value."""

    def __init__(self, *alternatives: Schema, expected: str | None = None) -> None:
        self.alternatives = alternatives
        self.expected = expected or " or ".join(a.expected for a in alternatives)

    def check(self, v: Any, where: str) -> None:
        for a in self.alternatives:
            try:
                a.check(v, where)
                return
            except Invalid as e:
                if e.where != where:  # the value had the right shape, a part of it is wrong
                    last = e
                    break
        else:
            raise Invalid(where, self.expected, v)
        raise last


def Opt(schema: Schema) -> Schema:  # noqa: N802 (reads as a type)
    """``schema`` or null."""
    return OneOf(Null(), schema)


class List(Schema):
    """A list of ``item``, with a length in ``[min_len, max_len]``."""

    def __init__(self, item: Schema, min_len: int = 0, max_len: int | None = None,
                 expected: str = "a list") -> None:
        self.item, self.min_len, self.max_len, self.expected = item, min_len, max_len, expected

    def check(self, v: Any, where: str) -> None:
        if not isinstance(v, list):
            raise Invalid(where, self.expected, v)
        if len(v) < self.min_len:
            raise Invalid(where, self.expected, v, f"expected at least {self.min_len} item(s)")
        if self.max_len is not None and len(v) > self.max_len:
            raise Invalid(where, self.expected, v,
                          f"expected at most {self.max_len} item(s), got {len(v)}")
        for i, x in enumerate(v):
            self.item.check(x, field(where, i))


class Tuple(Schema):
    """A list of exactly these items, in order (a top row: value, file, row, kept)."""

    def __init__(self, *items: Schema, expected: str) -> None:
        self.items, self.expected = items, expected

    def check(self, v: Any, where: str) -> None:
        if not isinstance(v, list) or len(v) != len(self.items):
            raise Invalid(where, self.expected, v)
        for i, (x, s) in enumerate(zip(v, self.items, strict=True)):
            s.check(x, field(where, i))


Rule = Callable[[dict, str], None]  # raises Invalid; runs once the object's fields are valid


class Obj(Schema):
    """An object with these fields (all required unless ``optional``); unknown fields are
    refused unless ``extra``.  ``rules`` check across fields once each field is valid."""

    def __init__(self, fields: dict[str, Schema], optional: Iterable[str] = (), extra: bool = False,
                 rules: Sequence[Rule] = (), expected: str = "an object") -> None:
        self.fields, self.optional, self.extra = fields, set(optional), extra
        self.rules, self.expected = list(rules), expected

    def check(self, v: Any, where: str) -> None:
        if not isinstance(v, dict):
            raise Invalid(where, self.expected, v)
        for name, schema in self.fields.items():
            if name in v:
                schema.check(v[name], field(where, name))
            elif name not in self.optional:
                raise Invalid(field(where, name), schema.expected)
        if not self.extra:
            unknown = [k for k in v if k not in self.fields]
            if unknown:
                raise Invalid(field(where, unknown[0]), "", problem="unknown field (known: "
                              + ", ".join(self.fields) + ")")
        for rule in self.rules:
            rule(v, where)


class Map(Schema):
    """An object with any (string) keys, each value matching ``value``."""

    def __init__(self, value: Schema, expected: str = "an object") -> None:
        self.value, self.expected = value, expected

    def check(self, v: Any, where: str) -> None:
        if not isinstance(v, dict):
            raise Invalid(where, self.expected, v)
        for k, x in v.items():
            if not _unicode(k):
                raise Invalid(where, self.expected, v, f"a key is not valid Unicode: {show(k)}")
            self.value.check(x, field(where, k))


def validate(doc: Any, schema: Schema, path: str, root: str = "") -> None:
    """Check ``doc`` (read from ``path``) against ``schema``; a mismatch is a UsageError naming both."""
    try:
        schema.check(doc, root)
    except Invalid as e:
        raise UsageError(e.message(path)) from None


def _unicode(s: str) -> bool:
    """False for a string holding a lone surrogate (JSON allows ``"\\ud800"``; nothing can print it)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_text(path: str, what: str, limit: int = 256 << 20) -> str:
    """The file as text: UTF-8 (a BOM is allowed), else an error naming the byte.

    At most ``limit`` bytes, and never a device (``/dev/zero`` would fill the
    memory); a pipe (``<(...)``, ``/dev/stdin``) is fine, and so is a URI
    (:mod:`lossctl.io.fs`).
    """
    if fs.is_uri(path):
        size = fs.size(path)
        if size is not None and size > limit:
            raise UsageError(f"{fs.display(path)}: larger than {limit >> 20} MiB: not a {what}")
        return _decode(fs.read_bytes(path), fs.display(path), what)
    try:
        with open(path, "rb") as f:
            if stat.S_ISCHR(os.fstat(f.fileno()).st_mode) or stat.S_ISBLK(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"{path}: a device, not a {what}")
            raw = f.read(limit + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if len(raw) > limit:
        raise UsageError(f"{path}: larger than {limit >> 20} MiB: not a {what}")
    return _decode(raw, path, what)


def _decode(raw: bytes, path: str, what: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{path}: not a {what}: byte 0x{raw[e.start]:02x} on line {line} is not "
                         f"UTF-8 text") from None


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLong(len(text.lstrip("-")))
    return int(text)


class _TooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def parse_json(text: str, path: str, what: str, hint: str = "") -> Any:
    """JSON with integers of at most ``MAX_INT_DIGITS`` digits and bounded nesting."""
    try:
        return json.loads(text, parse_int=_int)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not a {what}: invalid JSON on line {e.lineno}, column {e.colno}: "
                         f"{e.msg}{hint}") from None
    except _TooLong as e:
        raise UsageError(f"{path}: not a {what}: an integer of {e.digits} digits (at most "
                         f"{MAX_INT_DIGITS}){hint}") from None
    except RecursionError:
        raise UsageError(f"{path}: not a {what}: nested too deeply{hint}") from None


def parse_toml(text: str, path: str, what: str) -> Any:
    """TOML (Python >= 3.11), with the same guards as :func:`parse_json`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UsageError(f"{path}: TOML needs Python >= 3.11; write the {what} in JSON") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not a {what}: invalid TOML: {e}") from None
    except RecursionError:
        raise UsageError(f"{path}: not a {what}: nested too deeply") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise UsageError(f"{path}: not a {what}: an integer with too many digits") from None
