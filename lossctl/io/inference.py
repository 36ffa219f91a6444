"""Types of text columns: a CSV value read as text gets the type the whole column supports.

CSV has no schema, so ``--by`` slice keys and ``--keep`` values are read as
text.  A column whose every value (over the whole input, not one block) is
an integer is reported as integers, and so on down: integer, then float,
then boolean (``true``/``false``), else text.  The same data read from
Parquet (typed by its schema) then gives the same report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

INT = r"[+-]?[0-9]+"
FLOAT = (r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
         r"|[+-]?(?:nan|NaN|NAN|inf|Inf|INF|infinity|Infinity)")
BOOL = r"true|True|TRUE|false|False|FALSE"
KINDS = ("int", "float", "bool", "text")  # from the narrowest to the widest
_SOURCES = {"int": f"^(?:{INT})$", "float": f"^(?:{FLOAT})$", "bool": f"^(?:{BOOL})$"}
_PATTERNS = {kind: re.compile(p) for kind, p in _SOURCES.items()}  # (Arrow's RE2 reads them too)


def _float(s: str) -> Any:
    v = float(s)
    return v if math.isfinite(v) else str(v)  # (JSON has no NaN: as Parquet's keys, "nan")


CONVERT: dict[str, Callable[[str], Any]] = {
    "int": int, "float": _float, "bool": lambda s: s.lower() == "true", "text": str}


def _fits(kind: str, values: Iterable[str]) -> bool:
    if kind == "text":
        return True
    pattern = _PATTERNS[kind]
    return all(pattern.match(v) for v in values)


def infer(values: Iterable[str]) -> str:
    """The narrowest kind every value fits."""
    values = list(values)
    return next(kind for kind in KINDS if _fits(kind, values))


def distinct_kind(values: Iterable[str]) -> str:
    """:func:`infer`, kept only if distinct texts stay distinct values ("1" and "01": text)."""
    values = set(values)
    kind = infer(values)
    if len({convert(kind, v) for v in values}) != len(values):
        return "text"
    return kind


def convert(kind: str, value: Any) -> Any:
    """A text value as ``kind`` (None and values already typed stay as they are)."""
    return CONVERT[kind](value) if isinstance(value, str) else value


def widest(a: dict[str, str] | None, b: dict[str, str] | None) -> dict[str, str] | None:
    """Kinds of two trackers of the same columns merged: each column's wider kind."""
    if a is None or b is None:
        return a if b is None else b
    return {c: max(a.get(c, "int"), b.get(c, "int"), key=KINDS.index) for c in {**a, **b}}


class Tracker:
    """The kind of each text column, narrowed block by block over the whole stream.

    Checking a block is vectorised (a regex match over the Arrow array); a
    column only ever widens, so the kind at the end fits every value seen.
    """

    def __init__(self, columns: Iterable[str]) -> None:
        self.kinds = dict.fromkeys(columns, "int")

    def add(self, batch: pa.RecordBatch) -> None:
        import pyarrow.compute as pc

        for name, kind in self.kinds.items():
            if kind == "text":
                continue
            col = batch.column(name)
            if pa.types.is_dictionary(col.type):  # (also a --by column): its distinct values
                col = col.dictionary
            if pa.types.is_null(col.type):
                continue
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                self.kinds[name] = "text"  # typed by a schema: left as it is
                continue
            while kind != "text":
                matched = pc.match_substring_regex(col, _SOURCES[kind])
                if pc.all(matched, skip_nulls=True).as_py() is not False:
                    break
                kind = KINDS[KINDS.index(kind) + 1]
            self.kinds[name] = kind
