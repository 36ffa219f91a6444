"""The Python API: arrays (``evaluate``) and files (``evaluate_files``, ``compare_files``,
``merge_states``, ``write_rows``: what ``lossctl eval``, ``compare``, ``merge`` and ``rows``
do, each returning the report the CLI renders).  The CLI is a thin layer over this module:
options that need a file read, an output claimed or a check evaluated are handled here.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.losses import Loss, default_losses, resolve
from .core.state import EvalState, Result
from .errors import InvalidInput, OptionError, UsageError

if TYPE_CHECKING:
    from .engine.chunks import Sink
    from .engine.plan import Progress, Request
    from .io.sinks import RowParts, Target
    from .report.checks import Checks
    from .report.model import Report

DEFAULT_MAX_SLICES = 10_000  # = lossctl.engine.plan.DEFAULT_MAX_SLICES (that module loads pyarrow)


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
                     parts: RowParts | None = None, allow_empty: bool = False) -> Report:
    """Evaluate a request over its files on its engine and build its report.

    ``sink`` takes per-row values (local engine); ``parts`` is where the
    Dask engine writes them, one part per unit; ``allow_empty`` (a state
    saved for ``merge``): no rows or zero weight give undefined values.
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
    return make_report(outcome, req.confidence, allow_empty)


def _names(given: str | Sequence[str] | None) -> list[str]:
    return [given] if isinstance(given, str) else list(given or [])


def _request(paths: list[str], label: str, pred: str | Sequence[str] | None,
             losses: str | Sequence[str] | None, weight: str | None, args: dict[str, Any],
             **extra: Any) -> Request:
    """The engine request of the reading options in ``args`` (a function's keyword arguments).

    Several ``pred`` (or a ``models`` glob, eval only) are several models.
    """
    from .engine.plan import Request
    from .io.sources import DEFAULT_MAX_RECORD

    preds, glob = _names(pred), args.get("models")
    if not preds and glob is None:
        raise OptionError("missing option '-p' / '--pred'.")
    delimiter = args["delimiter"]
    unit = args["unit_size"]
    return Request(
        paths=paths, label=label, pred=preds[0] if preds else "", losses=_names(losses),
        preds=preds if len(preds) > 1 or glob is not None else [], models_glob=glob,
        reference=args.get("reference"), weight=weight,
        nan=args["nan"], chunk_rows=args["chunk_size"], input_format=args["input_format"],
        delimiter={"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter), header=args["header"],
        max_record=args["max_record_size"] or DEFAULT_MAX_RECORD, engine=args["engine"],
        scheduler=args["scheduler"], client=args["client"],
        **({"unit_bytes": unit} if unit else {}), **extra)


def _claim(inputs: Sequence[str | None], checks: Checks, force: bool, **paths: str | None
           ) -> dict[str, Target]:
    """Check every output against the inputs before anything is read (and the plotting extra
    of an HTML report); a target per output asked for, keyed like ``paths``."""
    from .io.sinks import Outputs

    if paths.get("html"):
        from .report.plots import require

        require()
    outs = Outputs([*inputs, *checks.inputs], force)
    return {name: outs.claim(path, "--" + name.replace("_", "-"))
            for name, path in paths.items() if path}


def _conclude(report: Report, checks: Checks, targets: dict[str, Target], command: str,
              strict: bool = False, min_slice_rows: int = 0, sort: str | None = None) -> Report:
    """Evaluate the checks on the report, and write its JUnit XML and HTML outputs."""
    from .io.sinks import write_bytes
    from .report.gate import evaluate as gate

    report.gate = gate(checks, report, strict, min_slice_rows)
    report.min_slice_rows, report.sort = min_slice_rows, sort
    if "junit" in targets or "html" in targets:
        doc = report.to_dict()
        if "junit" in targets:
            from .report.render import junit_xml

            write_bytes(targets["junit"], junit_xml(doc).encode())
        if "html" in targets:
            from .report.html import html_page

            write_bytes(targets["html"], html_page(report, doc, command).encode())
    return report


def _call(function: str, paths: Sequence[str], label: str | None = None,
          pred: str | None = None) -> str:
    """How a call is shown in an HTML report made from Python (the CLI passes its command line)."""
    cols = "".join(f", {k}={v!r}" for k, v in (("label", label), ("pred", pred)) if v)
    return f"lossctl.{function}({list(paths)!r}{cols})"


def _sort_slices(report: Report, sort: str | None, by: str | None) -> None:
    if sort is not None:
        report.state.loss(sort)  # an unknown loss is named before anything is shown
        if not by:
            raise OptionError("--sort orders the slices of --by")


def evaluate_files(
    paths: str | Sequence[str], label: str, pred: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None, weight: str | None = None, *,
    models: str | None = None, reference: str | None = None, by: str | None = None,
    ci: bool = False, labels: str | None = None, key: str | None = None,
    missing: str = "error", fail_if: str | Sequence[str] = (),
    slice_fail_if: str | Sequence[str] = (), checks: str | None = None,
    baseline: str | None = None, max_increase: str | Sequence[str] = (),
    top: tuple[int, str] | None = None, keep: str | None = None, confidence: float = 0.95,
    seed: int = 0, ci_key: str | None = None, min_slice_rows: int = 0, sort: str | None = None,
    max_slices: int = DEFAULT_MAX_SLICES, quantiles: bool = False, emit_state: str | None = None,
    junit: str | None = None, html: str | None = None, force: bool = False,
    nan: str = "error", chunk_size: int | None = None, input_format: str | None = None,
    delimiter: str | None = None, header: bool = True, max_record_size: int | None = None,
    engine: str = "local", scheduler: str | None = None, unit_size: int | None = None,
    client: Any = None, progress: Progress | None = None, command: str | None = None,
) -> Report:
    """Evaluate prediction files (paths, globs, directories, URIs) as ``lossctl eval`` does.

    Every keyword is the option of ``lossctl eval`` of that name, with the
    same meaning and default: columns as on the command line (``label="y"``,
    ``pred="logit_*"``; several ``pred``, one column each, or a ``models``
    glob score several models in one pass, a leaderboard against
    ``reference``, the first by default), ``losses`` names (``["mse", "huber:delta=2"]`` or
    ``"mse,mae"``; ``None`` chooses them from the columns), ``by`` slice
    columns, ``ci`` intervals, ``labels``/``key`` a labels file joined to the
    predictions, ``top=(N, LOSS)`` the worst rows; the checks ``fail_if``,
    ``slice_fail_if``, ``checks`` (a TOML or JSON file), ``baseline`` with
    ``max_increase``; ``header=False`` is ``--no-header``; outputs
    ``emit_state``, ``junit``, ``html`` (never replacing a file unless
    ``force``).  ``engine="dask"`` runs on a Dask cluster: ``client`` (a
    ``distributed.Client`` of yours), else ``scheduler`` (an address), else
    Dask's configuration, else a local cluster; the report is the same, bit
    for bit.  ``progress(done, total)`` is called as bytes (Dask: units) are read.

    The report's ``to_dict()`` is the JSON that ``lossctl eval -f json``
    prints; ``passed`` is False when a check failed (the CLI's exit 1).  A
    bad request or bad data raises :class:`lossctl.errors.LossctlError`
    (``UsageError``, ``InputError``) with the message the CLI prints.

    >>> import lossctl
    >>> r = lossctl.evaluate_files("sample_data/house_prices.csv", "price", "predicted_price",
    ...                            ["rmse", "mae"], by="segment", fail_if="mae > 40000")
    >>> round(r.to_dict()["losses"]["mae"]["value"], 2), r.passed
    (27364.85, True)
    >>> r.to_pandas().shape, list(r.to_pandas(slices=False)["loss"])
    ((6, 5), ['rmse', 'mae'])
    """
    from .engine.plan import JoinRequest
    from .report.checks import build_checks, require_options

    args = locals()
    paths = _names(paths)
    gates = build_checks(fail_if=fail_if, slice_fail_if=slice_fail_if, max_increase=max_increase,
                         baseline=baseline, checks_file=checks)
    several = len(_names(pred)) > 1 or models is not None
    require_options(gates, slices=bool(by), compare=False, models=several)
    if emit_state and several:
        raise OptionError("--emit-state saves one model's state; run eval once per model")
    if key and not labels:
        raise OptionError("--key joins a --labels file; give --labels FILE")
    targets = _claim([*paths, labels], gates, force, emit_state=emit_state, junit=junit, html=html)
    join = JoinRequest([labels], "label", key, missing) if labels else None
    req = _request(paths, label, pred, losses, weight, args, ci=ci, confidence=confidence,
                   seed=seed, ci_key=ci_key, by=by, max_slices=max_slices,
                   top=(top[1], top[0]) if top else None, keep=keep, join=join,
                   quantiles=quantiles or bool(html), calibration=bool(html))
    report = evaluate_request(req, progress, allow_empty=bool(emit_state))
    _sort_slices(report, sort, by)
    if emit_state:
        save_state(report, targets["emit_state"])
    return _conclude(report, gates, targets, command or _call("evaluate_files", paths, label, pred),
                     min_slice_rows=min_slice_rows, sort=sort)


def compare_files(
    paths: str | Sequence[str], label: str, pred: str,
    losses: str | Sequence[str] | None = None, weight: str | None = None, *,
    baseline_pred: str | None = None, key: str | None = None, missing: str = "error",
    by: str | None = None, fail_if: str | Sequence[str] = (),
    slice_fail_if: str | Sequence[str] = (), checks: str | None = None,
    max_regression: str | Sequence[str] = (), slice_max_regression: str | Sequence[str] = (),
    strict: bool = False, confidence: float = 0.95, seed: int = 0, ci_key: str | None = None,
    min_slice_rows: int = 0, sort: str | None = None, max_slices: int = DEFAULT_MAX_SLICES,
    quantiles: bool = False, junit: str | None = None, html: str | None = None,
    force: bool = False, nan: str = "error", chunk_size: int | None = None,
    input_format: str | None = None, delimiter: str | None = None, header: bool = True,
    max_record_size: int | None = None, engine: str = "local", scheduler: str | None = None,
    unit_size: int | None = None, client: Any = None, progress: Progress | None = None,
    command: str | None = None,
) -> Report:
    """A paired comparison of a baseline and a candidate on the same labels, as ``lossctl compare``.

    ``paths`` is one file (or glob, directory) holding both models: the
    baseline's columns are ``baseline_pred``, the candidate's ``pred``; or
    two files, the baseline's and the candidate's, aligned row by row or by
    ``key`` (labels from the first).  The other keywords are those of
    :func:`evaluate_files` and the options of ``lossctl compare``
    (``max_regression=["mse=1%"]``, ``strict``...).  Every loss gets the
    baseline's and the candidate's value, their difference with a paired
    bootstrap interval and a verdict.

    >>> import lossctl
    >>> r = lossctl.compare_files(["sample_data/house_prices.csv", "sample_data/house_prices_v2.csv"],
    ...                           "price", "predicted_price", "mae", key="id")
    >>> d = r.to_dict()["losses"]["mae"]
    >>> round(d["baseline"], 2), d["verdict"] in ("better", "worse", "no significant change")
    (27364.85, True)
    """
    from .engine.plan import JoinRequest
    from .report.checks import build_checks, require_options

    args = locals()
    paths = _names(paths)
    gates = build_checks(fail_if=fail_if, slice_fail_if=slice_fail_if, checks_file=checks,
                         max_regression=max_regression, slice_max_regression=slice_max_regression)
    require_options(gates, slices=bool(by), compare=True)
    if sort is not None and not by:
        raise OptionError("--sort orders the slices of --by")
    if len(paths) == 1:
        if not baseline_pred:
            raise OptionError("one FILE: name the baseline's columns with --baseline-pred")
        if key:
            raise OptionError("--key joins two files; give the baseline's and the candidate's "
                              "files")
        join = None
    elif len(paths) == 2:
        join = JoinRequest([paths[1]], "candidate", key, missing)
    else:
        raise OptionError("give one FILE (two prediction columns) or two FILEs "
                          "(baseline's, candidate's)")
    targets = _claim(paths, gates, force, junit=junit, html=html)
    req = _request([paths[0]], label, pred, losses, weight, args, ci=True, confidence=confidence,
                   seed=seed, ci_key=ci_key, baseline_pred=baseline_pred, join=join, by=by,
                   max_slices=max_slices, quantiles=quantiles or bool(html),
                   calibration=bool(html))
    report = evaluate_request(req, progress)
    _sort_slices(report, sort, by)
    return _conclude(report, gates, targets, command or _call("compare_files", paths, label, pred),
                     strict, min_slice_rows, sort)


def merge_states(
    paths: str | Sequence[str], confidence: float = 0.95, *, fail_if: str | Sequence[str] = (),
    slice_fail_if: str | Sequence[str] = (), checks: str | None = None,
    baseline: str | None = None, max_increase: str | Sequence[str] = (), min_slice_rows: int = 0,
    sort: str | None = None, emit_state: str | None = None, junit: str | None = None,
    html: str | None = None, force: bool = False, command: str | None = None,
) -> Report:
    """Merge states saved by ``eval --emit-state`` into one report, as ``lossctl merge``.

    The report is the one a single run over all the shards gives, bit for
    bit; the keywords are those of :func:`evaluate_files` (checks, outputs).

    >>> import os, tempfile, lossctl
    >>> with tempfile.TemporaryDirectory() as d:
    ...     states = [os.path.join(d, "csv.json"), os.path.join(d, "tsv.json")]
    ...     for path, state in zip(["sample_data/house_prices.csv",
    ...                             "sample_data/house_prices.tsv"], states):
    ...         _ = lossctl.evaluate_files(path, "price", "predicted_price", "mae",
    ...                                    emit_state=state)
    ...     merged = lossctl.merge_states(states)
    >>> merged.result.rows, merged.to_dict()["inputs"]
    (650, ['sample_data/house_prices.csv', 'sample_data/house_prices.tsv'])
    """
    from .engine.saved import load_states
    from .report.checks import build_checks, require_options
    from .report.model import make_report

    paths = _names(paths)
    gates = build_checks(fail_if=fail_if, slice_fail_if=slice_fail_if, max_increase=max_increase,
                         baseline=baseline, checks_file=checks)
    require_options(gates, slices=True, compare=False)  # (slices: known once merged)
    targets = _claim(paths, gates, force, emit_state=emit_state, junit=junit, html=html)
    report = make_report(load_states(paths), confidence, allow_empty=bool(emit_state))
    if sort is not None:
        report.state.loss(sort)
    if emit_state:
        save_state(report, targets["emit_state"])
    return _conclude(report, gates, targets, command or _call("merge_states", paths),
                     min_slice_rows=min_slice_rows, sort=sort)


@dataclass
class Written:
    """What :func:`write_rows` wrote: ``rows`` rows to ``where``, and the run's report."""

    report: Report
    rows: int
    where: str


def write_rows(
    paths: str | Sequence[str], label: str, pred: str,
    losses: str | Sequence[str] | None = None, weight: str | None = None, *, output: str,
    force: bool = False, keep: str | None = None, top: tuple[int, str] | None = None,
    labels: str | None = None, key: str | None = None, missing: str = "error",
    nan: str = "error", chunk_size: int | None = None, input_format: str | None = None,
    delimiter: str | None = None, header: bool = True, max_record_size: int | None = None,
    engine: str = "local", scheduler: str | None = None, unit_size: int | None = None,
    client: Any = None, progress: Progress | None = None,
) -> Written:
    """Write the loss of every row to ``output`` (``.parquet``, ``.csv``, ``.tsv``; ``-``: stdout),
    as ``lossctl rows``: all or nothing, never over an input (or an existing file unless ``force``).

    With ``engine="dask"``, ``output`` is a directory of parts, one per unit.
    The keywords are those of :func:`evaluate_files`.

    >>> import os, tempfile, lossctl
    >>> with tempfile.TemporaryDirectory() as d:
    ...     w = lossctl.write_rows("sample_data/house_prices.csv", "price", "predicted_price",
    ...                            "mae", output=os.path.join(d, "rows.csv"), keep="id")
    >>> w.rows
    600
    """
    from .engine.plan import JoinRequest
    from .io.sinks import Outputs, RowWriter, output_format
    from .io.sources import expand_paths

    args = locals()
    paths = _names(paths)
    if engine != "dask":  # (Dask writes a directory of parts: any name)
        output_format(output)
    elif output == "-":
        raise OptionError("--engine dask writes a directory of parts; give -o DIR")
    inputs = expand_paths(paths)
    target = Outputs([*inputs, labels], force).claim(output, "-o", directory=engine == "dask")
    if key and not labels:
        raise OptionError("--key joins a --labels file; give --labels FILE")
    join = JoinRequest([labels], "label", key, missing) if labels else None
    req = _request(paths, label, pred, losses, weight, args,
                   top=(top[1], top[0]) if top else None, keep=keep, join=join)
    if engine == "dask":  # one part per unit, in a directory committed when all are done
        from .io.sinks import RowParts

        parts = RowParts(target, many_files=len(inputs) > 1)
        report = evaluate_request(req, progress, parts=parts)
        return Written(report, parts.rows, f"{len(parts.names)} parts in {output}")
    from .engine.chunks import rows_sink

    writer = RowWriter(target, many_files=len(inputs) > 1)
    try:
        report = evaluate_request(req, progress, rows_sink(writer))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return Written(report, writer.rows, "stdout" if output == "-" else output)


def save_state(report: Report, path: str | Target) -> None:
    """Save a report's exact state (for ``lossctl merge``), all or nothing.

    An existing file is never replaced unless ``path`` is a target claimed with
    ``force`` (see :class:`lossctl.io.sinks.Outputs`).
    """
    from .engine.saved import save_state as save

    save(path, report.outcome)
