"""The Python API: ``lossctl.evaluate`` for notebooks and scripts.

Example::

    >>> import lossctl
    >>> r = lossctl.evaluate([3.0, 5.0, 2.5], [2.5, 5.0, 4.0], losses=["mse", "huber:delta=1"])
    >>> r["mse"], r.rows
    (0.8333333333333334, 3)
    >>> r.to_dict()["losses"]["huber:delta=1"]["value"]
    0.375
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .accumulators import EvalState, Result
from .errors import InvalidInput
from .losses import Loss, default_losses, resolve


def _to_array(a: Any, role: str) -> np.ndarray:
    """Accept NumPy arrays, lists, pandas Series and DataFrames (columns in order)."""
    try:
        if hasattr(a, "to_numpy"):
            a = a.to_numpy(dtype=np.float64, na_value=np.nan)
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        _raise_not_a_number(a, role)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _raise_not_a_number(a: Any, role: str) -> None:
    """Name the first value of ``a`` that is not a number (the slow path of an error)."""
    values = np.asarray(a, dtype=object)
    flat = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    for row, items in enumerate(flat):
        for k, v in enumerate(items):
            try:
                float(v)
            except (TypeError, ValueError):
                raise InvalidInput("not a number", row, role, v,
                                   index=k if values.ndim > 1 else None) from None
    raise InvalidInput("not a number", 0, role, a)


def _width(a: np.ndarray) -> int:
    return 1 if a.ndim == 1 else a.shape[1]


def evaluate(
    y_true: Any,
    y_pred: Any,
    losses: Sequence[str | Loss] | str | None = None,
    weights: Any = None,
    nan: str = "error",
) -> Result:
    """Compute losses of ``y_pred`` against ``y_true``, exactly summed.

    ``y_true``/``y_pred`` are 1-D (one column) or 2-D (K columns for
    multiclass losses).  ``losses`` are names as on the command line
    (``"mse"``, ``"huber:delta=2"``); ``None`` picks defaults from the data.
    ``weights`` are optional sample weights (finite, >= 0).  ``nan="skip"``
    drops rows holding missing or non-finite values and counts them.

    Raises :class:`lossctl.errors.UsageError` for a bad request and
    :class:`lossctl.errors.InputError` (``InvalidInput`` with the row index
    and the value) for bad data.
    """
    y = _to_array(y_true, "label")
    p = _to_array(y_pred, "prediction")
    if isinstance(losses, str):
        losses = [losses]
    bound = default_losses(y, p) if losses is None else [resolve(s, _width(p)) for s in losses]
    state = EvalState(bound, _width(y), _width(p), weighted=weights is not None, nan=nan)
    state.update(y, p, None if weights is None else _to_array(weights, "weight"))
    return state.result()
