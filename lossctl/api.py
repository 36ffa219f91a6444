"""The Python API: ``lossctl.evaluate`` for notebooks and scripts, and the calls the CLI makes.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.losses import Loss, default_losses, resolve
from .core.state import EvalState, Result
from .errors import InvalidInput, UsageError

if TYPE_CHECKING:
    from .engine.chunks import Sink
    from .engine.plan import Progress, Request
    from .io.sinks import RowParts, Target
    from .report.model import Report


def _to_array(a: Any, role: str) -> np.ndarray:
    """Accept NumPy arrays, lists, pandas Series and DataFrames (columns in order).

    A Series (or 1-D object array) whose items are arrays of K values is K
    columns, as a list column of a Parquet file is.
    """
    try:
        if hasattr(a, "to_numpy"):
            raw = a.to_numpy()
            if raw.dtype == object and raw.ndim == 1 and len(raw) and np.ndim(raw[0]) == 1:
                return _stack_rows(raw, role)
            a = a.to_numpy(dtype=np.float64, na_value=np.nan)
        elif isinstance(a, np.ndarray) and a.dtype == object and a.ndim == 1 and len(a) \
                and np.ndim(a[0]) == 1:
            return _stack_rows(a, role)
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        _raise_not_a_number(a, role)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _stack_rows(rows: np.ndarray, role: str) -> np.ndarray:
    """Rows that are arrays of K values -> an (n, K) array (every row must hold K values)."""
    k = len(rows[0])
    for i, r in enumerate(rows):
        if np.ndim(r) != 1 or len(r) != k:
            raise InvalidInput(f"row holds {np.size(r)} values, the first row {k}", i, role,
                               float(np.size(r)))
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


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


def evaluate_request(req: Request, progress: Progress | None = None, sink: Sink | None = None,
                     parts: RowParts | None = None) -> Report:
    """Evaluate a request over its files on its engine and build its report.

    ``sink`` takes per-row values (local engine); ``parts`` is where the
    Dask engine writes them, one part per unit.
    """
    from .report.model import make_report

    if req.engine == "dask":
        from .engine.dask import run_dask

        outcome = run_dask(req, progress, parts)
    elif req.engine == "local":
        from .engine.local import run_local

        outcome = run_local(req, progress, sink)
    else:
        raise UsageError(f"unknown engine {req.engine!r} (local or dask)")
    return make_report(outcome, req.confidence)


def evaluate_files(paths: str | Sequence[str], label: str, pred: str | Sequence[str],
                   losses: Sequence[str] | str | None = None, weight: str | None = None, *,
                   engine: str = "local", client: Any = None, scheduler: str | None = None,
                   **options: Any) -> Report:
    """Evaluate prediction files (paths, globs, directories, URIs) like ``lossctl eval``.

    ``label``/``pred``/``weight`` are column specs as on the command line;
    several ``pred`` (one column each) score several models in one pass, a
    leaderboard (``Report.leaderboard``; ``models_glob``, ``reference`` as
    ``--models``, ``--reference``);
    ``options`` are :class:`~lossctl.engine.plan.Request` fields (``by``,
    ``ci``, ``top``, ``keep``, ``nan``...).  ``engine="dask"`` runs on a
    Dask cluster: ``client`` (a ``distributed.Client`` of yours), else
    ``scheduler`` (an address), else Dask's configuration, else a local
    cluster.  The report is the same, bit for bit, on either engine.
    """
    from .engine.plan import Request

    paths = [paths] if isinstance(paths, str) else list(paths)
    losses = [losses] if isinstance(losses, str) else list(losses or [])
    preds = [pred] if isinstance(pred, str) else list(pred)
    if len(preds) > 1:
        options["preds"] = preds
    req = Request(paths=paths, label=label, pred=preds[0], losses=losses, weight=weight,
                  engine=engine, client=client, scheduler=scheduler, **options)
    return evaluate_request(req)


def merge_states(paths: list[str], confidence: float = 0.95) -> Report:
    """Merge states saved by ``eval --emit-state`` into one report."""
    from .engine.saved import load_states
    from .report.model import make_report

    return make_report(load_states(paths), confidence)


def save_state(report: Report, path: str | Target) -> None:
    """Save a report's exact state (for ``lossctl merge``), all or nothing.

    An existing file is never replaced unless ``path`` is a target claimed with
    ``force`` (see :class:`lossctl.io.sinks.Outputs`).
    """
    from .engine.saved import save_state as save

    save(path, report.outcome)
