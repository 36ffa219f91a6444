"""Column selection: a NAME, a 1-based INDEX, a GLOB, a RANGE ``a:b``, or a comma list of those.

A file's columns are known by *keys*: their names, made unique where a name
repeats (``v,v`` or ``y ,y`` after trimming): then each is ``v (column 2)``.
A position always means that position; a name that repeats is ambiguous and
an error that names its positions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from ..errors import UsageError
from ..suggest import closest, did_you_mean


def has_magic(s: str) -> bool:
    """Whether ``s`` is a glob pattern."""
    return any(c in s for c in "*?[")


def column_keys(names: Sequence[str]) -> list[str]:
    """Unique keys for a file's column names: the name, or ``name (column i)`` if it repeats."""
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    keys: list[str] = []
    taken = set(names)
    for i, n in enumerate(names):
        key = n
        if seen[n] > 1:
            key = f"{n} (column {i + 1})"
            while key in taken:  # (a real column of that name: keep it apart)
                key += "'"
            taken.add(key)
        keys.append(key)
    return keys


def select_columns(spec: str, available: list[str], what: str = "column",
                   names: Sequence[str] | None = None) -> list[str]:
    """Resolve a column spec against the file's columns, in file order for globs/ranges.

    ``available`` are the column keys (see :func:`column_keys`), ``names``
    the names as in the file (the keys when not given); the result is keys.
    """
    names = available if names is None else names
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in available:  # a name that does not repeat, or a key
            out.append(item)
        elif ":" in item and not _named(item, available, names):
            a, b = item.split(":", 1)
            i, j = (_position(a, available, names, what, item),
                    _position(b, available, names, what, item))
            if i > j:
                raise UsageError(f"{what} range {item!r} runs backwards")
            out.extend(available[i:j + 1])
        elif has_magic(item) and not _named(item, available, names):
            matched = [k for k, n in zip(available, names, strict=True) if fnmatch.fnmatchcase(n, item)]
            if not matched:
                raise UsageError(f"no {what} matches {item!r}; {_listing(names)}")
            out.extend(matched)
        else:
            out.append(available[_position(item, available, names, what, item)])
    if not out:
        raise UsageError(f"empty {what} selection {spec!r}")
    dup = {c for c in out if out.count(c) > 1}
    if dup:
        raise UsageError(f"{what} selection {spec!r} names {', '.join(sorted(dup))} twice")
    return out


def _named(item: str, available: list[str], names: Sequence[str]) -> bool:
    """Whether ``item`` is a column's name or key as it is (``a:b`` or ``p*`` can be a name)."""
    return item in available or item in names


def _position(token: str, available: list[str], names: Sequence[str], what: str, item: str) -> int:
    token = token.strip()
    where = [i for i, n in enumerate(names) if n == token]
    if len(where) > 1:
        shown = ", ".join(str(i + 1) for i in where[:-1]) + f" and {where[-1] + 1}"
        raise UsageError(f"{what} name {token!r} is ambiguous: columns {shown} are "
                         f"{'both' if len(where) == 2 else 'all'} named {token!r}; "
                         f"select one by position (e.g. {where[0] + 1})")
    if where:
        return where[0]
    if token in available:
        return available.index(token)
    if token.isdigit():
        i = int(token)
        if 1 <= i <= len(available):
            return i - 1
        raise UsageError(f"{what} {token} is out of range: the file has {len(available)} columns "
                         "(indexes are 1-based)")
    hint = did_you_mean(closest(token, list(names), n=1, cutoff=0.5))
    raise UsageError(f"no {what} named {token!r}.{hint} {_listing(names)}")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) if not n.isprintable() or not n else n for n in names[:40])
    return f"Available columns: {shown}" + (" ..." if len(names) > 40 else "")
