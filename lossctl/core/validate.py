"""Input checks of one chunk: array shapes, non-finite values, the spec's domain rules.

A bad value is reported by its row (the earliest in the chunk, whichever rule
it breaks), its role and its value; the engine turns the row into a file and
a data row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput, UsageError
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
              rows: np.ndarray | None = None) -> None:
        """Record the first True of ``mask`` (``rows`` maps filtered rows back to the chunk's)."""
        if not mask.any():
            return
        i, k = _first_bad(mask)
        row = self.offset + (int(rows[i]) if rows is not None else i)
        if self.first is None or row < self.first.row:
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
        if d.label in ("value", "binary", "class") and label_width != 1:
            raise UsageError(f"{loss.key} needs one label column, got {label_width}")
        if d.label == "dist" and label_width != pred_width:
            hint = " (for a class index use sparse_softmax_ce)" if d.name == "softmax_ce" else ""
            raise UsageError(f"{loss.key} needs {pred_width} label columns, one per class, "
                             f"got {label_width}{hint}")
        if d.label == "class_or_dist" and label_width not in (1, pred_width):
            raise UsageError(f"{loss.key} needs one class-index label column or {pred_width} "
                             f"label columns, got {label_width}")


def _needs_class_index(losses: Sequence[Loss], label_width: int) -> bool:
    return any(l.definition.label == "class" or
               (l.definition.label == "class_or_dist" and label_width == 1) for l in losses)
