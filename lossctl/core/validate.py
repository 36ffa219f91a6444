"""Input checks of one chunk: array shapes, non-finite values, the spec's domain rules.

A bad value is reported by its row (the earliest in the chunk, whichever rule
it breaks), its role and its value; the engine turns the row into a file and
a data row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInput, UsageError
from .definitions import Check
from .exact import _all_finite
from .losses import Loss


def _as_float(a: Any, role: str, width: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise UsageError(f"{role} values must be numbers (got dtype {arr.dtype})") from None
    arr = np.asarray(arr, dtype=np.float64)  # any memory layout: (n, K) may be column-major
    if width == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if width == 1 and arr.ndim != 1:
        raise UsageError(f"{role} must be one column, got shape {arr.shape}")
    if width > 1 and (arr.ndim != 2 or arr.shape[1] != width):
        raise UsageError(f"{role} must have {width} columns, got shape {arr.shape}")
    return arr


def _first_bad(mask: np.ndarray) -> tuple[int, int | None]:
    """Row (and column, for 2-D masks) of the first True in ``mask``."""
    if mask.ndim == 1:
        return int(np.flatnonzero(mask)[0]), None
    row = int(np.flatnonzero(mask.any(axis=1))[0])
    return row, int(np.flatnonzero(mask[row])[0])


class _Problems:
    """Bad values found by the checks of one chunk; the earliest row is reported.

    Each check looks at the whole chunk, so without this the first *check*
    to fail would win, not the first bad *row* (a NaN label in row 17 would
    hide a NaN prediction in row 5).
    """

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.first: InvalidInput | None = None

    def check(self, reason: str, role: str, values: np.ndarray, mask: np.ndarray,
              rows: np.ndarray | None = None, row_sum: bool = False) -> None:
        """Record the first True of ``mask`` (``rows`` maps filtered rows back to the chunk's).

        With ``row_sum`` the rule is about a whole row: the error names the
        row's columns and shows its sum.
        """
        if not mask.any():
            return
        i, k = _first_bad(mask)
        row = self.offset + (int(rows[i]) if rows is not None else i)
        if self.first is None or row < self.first.row:
            if row_sum and values.ndim == 2:
                self.first = InvalidInput(reason, row, role, float(values[i].sum()),
                                          shown_as="row sum")
                return
            value = values[i] if k is None else values[i, k]
            self.first = InvalidInput(reason, row, role, float(value), index=k)

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first


def _nonfinite_rows(a: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(a)
    return bad if bad.ndim == 1 else bad.any(axis=1)



def check_columns(losses: Sequence[Loss], label_width: int, pred_width: int) -> None:
    """Raise UsageError unless every loss can use labels/predictions of these widths."""
    for loss in losses:
        d = loss.definition
        if d.pred == "value" and pred_width != 1:
            raise UsageError(f"{loss.key} needs one prediction column, got {pred_width}")
        if d.pred == "vector" and pred_width < 2:
            raise UsageError(f"{loss.key} needs K >= 2 prediction columns (one per class), "
                             f"got {pred_width}")
        if d.label in ("value", "binary", "signed", "class") and label_width != 1:
            raise UsageError(f"{loss.key} needs one label column, got {label_width}")
        if d.label == "dist" and label_width != pred_width:
            hint = " (for a class index use sparse_softmax_ce)" if d.name == "softmax_ce" else ""
            raise UsageError(f"{loss.key} needs {pred_width} label columns, one per class, "
                             f"got {label_width}{hint}")
        if d.label == "class_or_dist" and label_width not in (1, pred_width):
            raise UsageError(f"{loss.key} needs one class-index label column or {pred_width} "
                             f"label columns, got {label_width}")


def needs_class_index(losses: Sequence[Loss], label_width: int) -> bool:
    return any(l.definition.label == "class" or
               (l.definition.label == "class_or_dist" and label_width == 1) for l in losses)


@dataclass
class Chunk:
    """A validated chunk: the rows kept (all, or those without missing values under --nan skip)."""

    y: np.ndarray
    p: np.ndarray
    w: np.ndarray | None
    slices: np.ndarray | None
    buckets: np.ndarray | None
    n: int  # rows given, before any was dropped
    rows: np.ndarray | None = None  # offsets of the rows kept, if not all


def rules(losses: Sequence[Loss]) -> tuple[tuple[Check, dict], ...]:
    """Each distinct domain check of the losses, with the parameters it reads."""
    checks: dict[tuple, tuple[Check, dict]] = {}
    for loss in losses:
        for c in loss.definition.checks:
            checks.setdefault((id(c), tuple(sorted(loss.params.items()))), (c, loss.params))
    return tuple(checks.values())


def prepare(state: Any, y: Any, p: Any, w: Any, slices: np.ndarray | None,
            buckets: np.ndarray | None, drop: np.ndarray | None, first_row: int) -> Chunk:
    """Check one chunk against ``state``'s shapes and the spec's rules; drop skipped rows.

    Raises :class:`InvalidInput` for the earliest bad row (``first_row`` is
    the chunk's row in the stream).  ``drop`` marks rows to skip like
    non-finite ones (a paired comparison drops a row bad in either model).
    """
    y = _as_float(y, "label", state.label_width)
    p = _as_float(p, "prediction", state.pred_width)
    if len(y) != len(p):
        raise UsageError(f"label and prediction lengths differ: {len(y)} != {len(p)}")
    if state.weighted:
        if w is None:
            raise UsageError("this state is weighted: pass weights")
        w = _as_float(w, "weight", 1)
        if len(w) != len(y):
            raise UsageError(f"weight length {len(w)} != {len(y)} rows")
    elif w is not None:
        raise UsageError("this state is unweighted: create it with weighted=True")
    n = len(y)
    rules, class_index = state.rules, state.class_index
    problems = _Problems(first_row)
    rows = None
    # a weight of +-inf is never "missing": it is always an input error
    if w is not None and not _all_finite(w):
        problems.check("weight must be finite", "weight", w, np.isinf(w))
    arrays = [("label", y), ("prediction", p)] + ([("weight", w)] if w is not None else [])
    if drop is not None or not all(_all_finite(a) for _, a in arrays):
        if state.nan == "error" and not all(_all_finite(a) for _, a in arrays):
            for role, a in arrays:
                problems.check("missing or non-finite value (use --nan skip to drop such rows)",
                               role, a, ~np.isfinite(a))
            _validate(y, p, w, problems, rules, class_index, state.pred_width)
            problems.raise_first()
        keep = np.ones(n, dtype=bool) if drop is None else ~drop
        for _, a in arrays:
            keep &= ~_nonfinite_rows(a)
        rows = np.flatnonzero(keep)
        y, p = y[keep], p[keep]
        w = w[keep] if w is not None else None
        slices = slices[keep] if slices is not None else None
        buckets = buckets[keep] if buckets is not None else None
    _validate(y, p, w, problems, rules, class_index, state.pred_width, rows)
    problems.raise_first()
    return Chunk(y, p, w, slices, buckets, n, rows)


def _validate(y: np.ndarray, p: np.ndarray, w: np.ndarray | None, problems: _Problems,
              rules: Sequence[tuple[Check, dict]], class_index: bool, pred_width: int,
              rows: np.ndarray | None = None) -> None:
    """The spec's domain rules (NaN compares false, so it never trips them)."""
    if w is not None:
        problems.check("weight must be >= 0", "weight", w, w < 0, rows)
    if class_index:
        bad = (y < 0) | (y >= pred_width) | (y != np.floor(y))
        problems.check(f"class index must be an integer in [0, {pred_width})",
                       "label", y, bad, rows)
    for check, params in rules:
        values = y if check.role == "label" else p
        problems.check(check.reason, check.role, values, check.bad(values, params), rows,
                       check.row_sum)
