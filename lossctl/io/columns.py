"""Column selection: a NAME, a 1-based INDEX, a GLOB, a RANGE ``a:b``, or a comma list of those."""

from __future__ import annotations

import difflib
import fnmatch

from ..errors import UsageError


def has_magic(s: str) -> bool:
    """Whether ``s`` is a glob pattern."""
    return any(c in s for c in "*?[")



def select_columns(spec: str, available: list[str], what: str = "column") -> list[str]:
    """Resolve a column spec against the file's columns, in file order for globs/ranges."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in available:
            out.append(item)
        elif ":" in item:
            a, b = item.split(":", 1)
            i, j = _position(a, available, what, item), _position(b, available, what, item)
            if i > j:
                raise UsageError(f"{what} range {item!r} runs backwards")
            out.extend(available[i:j + 1])
        elif has_magic(item):
            matched = [c for c in available if fnmatch.fnmatchcase(c, item)]
            if not matched:
                raise UsageError(f"no {what} matches {item!r}; {_listing(available)}")
            out.extend(matched)
        else:
            out.append(available[_position(item, available, what, item)])
    if not out:
        raise UsageError(f"empty {what} selection {spec!r}")
    dup = {c for c in out if out.count(c) > 1}
    if dup:
        raise UsageError(f"{what} selection {spec!r} names {', '.join(sorted(dup))} twice")
    return out


def _position(token: str, available: list[str], what: str, item: str) -> int:
    token = token.strip()
    if token in available:
        return available.index(token)
    if token.isdigit():
        i = int(token)
        if 1 <= i <= len(available):
            return i - 1
        raise UsageError(f"{what} {token} is out of range: the file has {len(available)} columns "
                         "(indexes are 1-based)")
    close = difflib.get_close_matches(token, available, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"no {what} named {token!r}.{hint} {_listing(available)}")


def _listing(available: list[str]) -> str:
    shown = ", ".join(available[:40]) + (" ..." if len(available) > 40 else "")
    return f"Available columns: {shown}"
