"""Suggestions for a name the user mistyped: a column, a loss, a parameter."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(token: str, names: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The names nearest ``token``, best first: the same name in another case, then look-alikes.

    Case is ignored when comparing (``Y`` finds ``y``), ``-`` and ``_`` are
    the same, and the names are returned as they are spelled.
    """
    def norm(s: str) -> str:
        return s.strip().lower().replace("-", "_")

    names = list(dict.fromkeys(names))
    by_norm: dict[str, list[str]] = {}
    for name in names:
        by_norm.setdefault(norm(name), []).append(name)
    want = norm(token)
    out = list(by_norm.get(want, []))
    for match in difflib.get_close_matches(want, list(by_norm), n=n, cutoff=cutoff):
        out += [m for m in by_norm[match] if m not in out]
    return out[:n]


def did_you_mean(names: list[str]) -> str:
    """`` Did you mean 'a', 'b' or 'c'?`` (empty without suggestions)."""
    if not names:
        return ""
    quoted = [repr(x) for x in names]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" Did you mean {listed}?"
