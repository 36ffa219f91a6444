"""CSV's text columns typed at the end of a run: slice keys and kept values.

A CSV file has no schema, so its ``--by`` and ``--keep`` columns are read as
text; once every value has been seen (the slices at the end, the kept
columns tracked block by block, :class:`lossctl.io.inference.Tracker`), each
column gets the type all its values fit, as Parquet's schema would give
it.  A run with any input of another format leaves them as read.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.state import EvalState
from ..io.inference import convert, distinct_kind
from ..io.sources import Source


def type_text(states: Sequence[EvalState], sources: Sequence[Source],
              kept_kinds: dict[str, str] | None) -> None:
    """Retype the slice keys and top rows' kept values of ``states`` read from CSV ``sources``."""
    if not sources or any(s.format != "csv" for s in sources):
        return
    seen: set[int] = set()
    for st in states:
        keys = st.slice_keys
        if keys is None or id(keys) in seen:
            continue
        seen.add(id(keys))
        kinds = [distinct_kind(str(k[i]) for k in keys.keys if isinstance(k[i], str))
                 for i in range(len(keys.columns))]
        if any(kind != "text" for kind in kinds):
            keys.retype([tuple(convert(kind, v) for kind, v in zip(kinds, k, strict=True))
                         for k in keys.keys])
    kept = {c: kind for c, kind in (kept_kinds or {}).items() if kind != "text"}
    for st in states:
        if st.top is not None and kept:
            st.top.rows = [(v, f, r, {c: convert(kept[c], x) if c in kept else x
                                      for c, x in k.items()}) for v, f, r, k in st.top.rows]
