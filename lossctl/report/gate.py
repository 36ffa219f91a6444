"""Checks that gate a model in CI: thresholds, baselines and paired regressions, overall and per slice.

The kinds, all evaluated on a finished report:

- a threshold, ``mse > 0.25`` (``--fail-if``): fails when the value satisfies it;
  per slice (``--slice-fail-if``), every slice shown must pass;
- a baseline tolerance (``--baseline`` with ``--max-increase``): every loss
  computed is checked against an earlier report or saved state, with its own
  tolerance (``mse=2%``), the default one (``2%``, ``*=2%``) or none at all
  (no increase); relative (``(new - old) / |old|``) or absolute;
- a regression tolerance, ``mse=1%`` (``compare --max-regression``, per slice
  ``--slice-max-regression``): fails when the candidate is worse than the
  baseline beyond the tolerance *with confidence* (the whole interval of the
  paired difference is past it), or, with ``strict``, on the point value alone.

"Worse" follows the loss definition (``higher_is_better``): up for losses,
down for scores.  A NaN value never passes.  The checks are parsed and read
from checks files by :mod:`lossctl.report.checks`, the baseline document by
:mod:`lossctl.report.baseline`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.losses import Loss, parse_loss
from ..errors import UsageError
from .baseline import Baseline, load_baseline
from .checks import ALL, NO_INCREASE, Checks, Threshold, Tolerance, require_options
from .numbers import DIGITS, MOST, distinct_digits, number

if TYPE_CHECKING:
    from ..core.state import EvalState
    from .model import Report

SHOWN_FAILURES = 5  # failing slices named in a check's detail (the JSON lists all)
ROWS_WARNING = 0.10  # warn when the baseline's row count differs by more than this


@dataclass
class CheckResult:
    """One check's outcome: the quantity checked, its limit and pass/fail.

    ``tolerance`` (baseline and regression checks) is the tolerance used and
    where it came from; ``failing_slices`` (per-slice checks) names every
    failing slice with its value.
    """

    name: str
    kind: str  # threshold, baseline, regression, slice_threshold, slice_regression
    loss: str
    value: float | None
    limit: float
    passed: bool
    detail: str = ""
    tolerance: Tolerance | None = None
    failing_slices: list[dict[str, Any]] | None = None
    slices_checked: int | None = None
    model: str | None = None  # which of several models (eval -p a -p b)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, "loss": self.loss,
               "value": _num(self.value), "limit": self.limit, "passed": self.passed,
               "detail": self.detail}
        if self.model is not None:
            out["model"] = self.model
        if self.tolerance is not None:
            t = self.tolerance
            out["tolerance"] = {"text": t.limit_text, "relative": t.relative, "for": t.loss,
                                "origin": t.origin}
        if self.failing_slices is not None:
            out["slices_checked"] = self.slices_checked
            out["failing_slices"] = [{**s, "value": _num(s["value"])} for s in self.failing_slices]
        return out


@dataclass
class Gate:
    """Every check's result, and warnings for stderr (a baseline of other data)."""

    results: list[CheckResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    baseline: Baseline | None = None


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# --------------------------------------------------------------------------
# Evaluating checks
# --------------------------------------------------------------------------


def evaluate(checks: Checks, report: Report, strict: bool = False,
             min_slice_rows: int = 0) -> Gate:
    """Every check asked for, on a finished report (eval, merge or compare)."""
    require_options(checks, slices=report.state.slice_keys is not None,
                    compare=report.differences is not None, models=report.leaderboard is not None)
    r = report.result
    width = report.state.pred_width
    if report.leaderboard is not None:  # every check holds for every model, best first
        return Gate([res for e in report.leaderboard.entries for res in
                     check_thresholds(checks.thresholds, e.result.values, e.result.losses,
                                      width, e.name)
                     + check_slice_thresholds(checks.slice_thresholds, report, width,
                                              min_slice_rows, e.state, e.name)])
    gate = Gate(check_thresholds(checks.thresholds, r.values, r.losses, width))
    if checks.slice_thresholds:
        gate.results += check_slice_thresholds(checks.slice_thresholds, report, width,
                                               min_slice_rows)
    if checks.baseline:
        gate.baseline = checks.baseline_doc or load_baseline(checks.baseline)
        results, gate.warnings = check_baseline(checks.max_increase, gate.baseline, report)
        gate.results += results
    if checks.max_regression and report.differences is not None:
        gate.results += check_regressions(checks.max_regression, report.differences, r.losses,
                                          width, strict)
    if checks.slice_max_regression:
        gate.results += check_slice_regressions(checks.slice_max_regression, report, width,
                                                strict, min_slice_rows)
    return gate


def find_loss(name: str, losses: list[Loss], pred_width: int, where: str = "") -> Loss:
    """The computed loss a check names (as written in -m, an alias, or the canonical form)."""
    for l in losses:
        if name == l.key:
            return l
    try:
        canonical = parse_loss(name, pred_width).canonical
    except UsageError:
        canonical = None
    for l in losses:
        if canonical == l.canonical:
            return l
    computed = ", ".join(l.key for l in losses)
    raise UsageError(f"{where}{name!r} was not computed (computed: {computed}); "
                     f"add it with -m or fix the check")


def _near(value: float, limit: float) -> str:
    """A value with the digits that tell it from the limit it is checked against."""
    return number(value, distinct_digits([value, limit], DIGITS, MOST))


def _pair(old: float, new: float) -> tuple[str, str]:
    """Two values with the digits that tell them apart."""
    d = distinct_digits([old, new], DIGITS, MOST)
    return number(old, d), number(new, d)


def _fails(value: float, op: str, limit: float) -> bool:
    return {"<": value < limit, "<=": value <= limit, ">": value > limit,
            ">=": value >= limit}[op]


def check_thresholds(rules: list[Threshold], values: dict[str, float], losses: list[Loss],
                     pred_width: int, model: str | None = None) -> list[CheckResult]:
    """Each ``--fail-if`` rule on the values (of ``model``, one of several: its name leads)."""
    out = []
    for r in rules:
        loss = find_loss(r.loss, losses, pred_width, "--fail-if: ")
        v = values[loss.key]
        failed = math.isnan(v) or _fails(v, r.op, r.limit)
        out.append(CheckResult(f"{model}: fail if {r}" if model else f"fail if {r}", "threshold",
                               loss.key, v, r.limit, not failed,
                               f"{loss.key} = {_near(v, r.limit)}; fails if {r.op} "
                               f"{r.text or repr(r.limit)}", model=model))
    return out


# -- per slice -----------------------------------------------------------------


def slice_label(key: dict[str, Any]) -> str:
    """``country=FR, device=ios``: a slice as people write it."""
    return ", ".join(f"{c}={'null' if v is None else v}" for c, v in key.items())


def _slice_check(name: str, kind: str, loss: Loss, limit: float, entries: list[dict],
                 high_fails: bool, tolerance: Tolerance | None = None,
                 model: str | None = None) -> CheckResult:
    """One per-slice check: passes when no shown slice fails; names the failing ones.

    ``entries`` has one dict per slice checked: ``key``, ``rows``, ``value``
    (the quantity compared with the limit), ``fails`` and ``text`` (the value
    as the detail shows it).  The check's value is the worst slice's.
    """
    failing = [e for e in entries if e["fails"]]
    values = [e["value"] for e in entries]
    nan = [e for e in entries if math.isnan(e["value"])]
    worst = nan[0] if nan else (max if high_fails else min)(entries, key=lambda e: e["value"]) \
        if entries else None
    if failing:
        named = "; ".join(f"{slice_label(e['key'])}: {e['text']}" for e in failing[:SHOWN_FAILURES])
        more = f"; and {len(failing) - SHOWN_FAILURES} more" if len(failing) > SHOWN_FAILURES else ""
        detail = f"{len(failing)} of {len(entries)} slices fail: {named}{more}"
    elif worst is not None:
        detail = f"all {len(entries)} slices pass (nearest: {slice_label(worst['key'])}: " \
                 f"{worst['text']})"
    else:
        detail = "no slice has enough rows to check (--min-slice-rows)"
    shown = [{"key": e["key"], "rows": e["rows"], "value": e["value"], "detail": e["text"]}
             for e in failing]
    return CheckResult(name, kind, loss.key, worst["value"] if worst else None, limit,
                       not failing, detail, tolerance, shown, len(values), model)


def check_slice_thresholds(rules: list[Threshold], report: Report, pred_width: int,
                           min_rows: int, state: EvalState | None = None,
                           model: str | None = None) -> list[CheckResult]:
    """``--slice-fail-if``: every shown slice must pass the threshold (of ``state``, the
    state of ``model``, one of several; by default the report's)."""
    losses = report.result.losses
    state = report.state if state is None else state
    shown = [s for s in state.slice_results() if s["rows"] >= min_rows] if rules else []
    out = []
    for r in rules:
        loss = find_loss(r.loss, losses, pred_width, "--slice-fail-if: ")
        entries = []
        for s in shown:
            v = s["values"][loss.key]
            entries.append({"key": s["key"], "rows": s["rows"], "value": v,
                            "fails": math.isnan(v) or _fails(v, r.op, r.limit),
                            "text": f"{loss.key} = {_near(v, r.limit)}"})
        out.append(_slice_check(f"{model}: every slice: fail if {r}" if model else
                                f"every slice: fail if {r}", "slice_threshold", loss, r.limit,
                                entries, r.op in (">", ">="), model=model))
    return out


# -- against a baseline ------------------------------------------------------------


def _tolerances(tolerances: Sequence[Tolerance], losses: list[Loss], pred_width: int,
                option: str) -> dict[str, Tolerance]:
    """The tolerance of every loss: its own, else the default (``*``), else no increase.

    A later tolerance of the same loss (the command line after a checks file)
    replaces an earlier one.
    """
    default = NO_INCREASE
    own: dict[str, Tolerance] = {}
    for t in tolerances:
        if t.loss == ALL:
            default = t
        else:
            own[find_loss(t.loss, losses, pred_width, f"{option}: ").key] = t
    return {l.key: own.get(l.key, default) for l in losses}


def _change(worse: float, relative: bool) -> str:
    """``2.1% worse``, ``0.3% better``, ``no change`` from a signed worse-by amount."""
    if math.isnan(worse):
        return "change undefined (NaN)"
    if worse == 0:
        return "no change"
    size = abs(worse)
    amount = f"{size * 100:.3g}%" if relative else f"{size:.4g}"
    return f"{amount} {'worse' if worse > 0 else 'better'}"


def _change_of(definition: Any, old: float, new: float, relative: bool) -> float:
    """How much worse ``new`` is than ``old``: absolute, or relative to ``|old|``.

    Equal values (two infinities too: both overflowed) are no change; from an
    infinite or zero baseline any other value is infinitely better (or worse);
    NaN stays NaN, so it never passes.
    """
    if old == new:
        return 0.0
    worse = definition.worse(old, new)
    if not relative or math.isnan(worse):
        return worse
    if math.isinf(old) or old == 0:
        return math.copysign(math.inf, worse) if worse else 0.0
    return worse / abs(old)


def _data_text(inputs: Sequence[str], rows: int | None) -> str:
    rows_text = "? rows" if rows is None else f"{rows:,} rows"
    if not inputs:
        return rows_text
    names = inputs[0] if len(inputs) == 1 else f"{len(inputs)} files ({inputs[0]}, ...)"
    return f"{rows_text} of {names}"


def check_baseline(tolerances: list[Tolerance], baseline: Baseline, report: Report
                   ) -> tuple[list[CheckResult], list[str]]:
    """Every computed loss against the baseline, each with its tolerance; and warnings.

    The baseline must describe the same evaluation (the same label and
    weight columns; every loss computed, with the same parameters, in it);
    other data (rows, inputs) is allowed, named in each check's detail, and
    warned about when the row count differs by more than 10%.
    """
    r = report.result
    losses, width = r.losses, report.state.pred_width
    baseline.require_same_evaluation(report.columns)
    chosen = _tolerances(tolerances, losses, width, "--max-increase")
    missing = [l.key for l in losses if l.canonical not in baseline.values]
    if missing:
        raise UsageError(f"{baseline.path}: the baseline has no {', '.join(missing)} "
                         f"(it has: {', '.join(baseline.values) or 'nothing'}); every loss "
                         f"computed is checked: make the baseline again with these -m, or drop "
                         f"them")
    then, now = _data_text(baseline.inputs, baseline.rows), _data_text(report.inputs, r.rows)
    warnings = []
    if baseline.rows and abs(r.rows - baseline.rows) > ROWS_WARNING * baseline.rows:
        warnings.append(f"the baseline {baseline.path} was computed on {baseline.rows:,} rows, "
                        f"this run on {r.rows:,} ({(r.rows - baseline.rows) / baseline.rows:+.0%}): "
                        f"is it the same evaluation data?")
    out = []
    for loss in losses:
        t = chosen[loss.key]
        old, new = baseline.values[loss.canonical], r.values[loss.key]
        change = _change_of(loss.definition, old, new, t.relative)
        passed = not math.isnan(change) and change <= t.amount
        direction = {"higher": "decrease", "lower": "increase",
                     "zero": "move away from 0"}[loss.definition.direction]
        o, n = _pair(old, new)
        data = f"baseline {o}, now {n} (both on {now})" if then == now and \
            baseline.inputs == report.inputs else f"baseline {o} on {then}, now {n} on {now}"
        out.append(CheckResult(
            f"{loss.key} {direction} <= {t.limit_text} vs baseline", "baseline", loss.key, change,
            t.amount, passed,
            f"{_change(change, t.relative)}: {data}; tolerance {t.limit_text} ({t.origin})", t))
    return out, warnings


# -- paired comparisons -----------------------------------------------------------------


def _regression(t: Tolerance, d: dict[str, Any], strict: bool) -> tuple[float, str]:
    """The value checked (a signed worse-by amount) of a paired difference, and its detail.

    The interval's least bad end, or with ``strict`` the point value; a
    metric that gets no interval (``ci_unsupported``) is judged on its point
    value, and the detail says so.
    """
    point = d["relative_worse"] if t.relative else d["worse_by"]
    if "ci_unsupported" in d:
        return point, (f"{_change(point, t.relative)}; no interval ({d['ci_unsupported']}): "
                       f"fails if the point value is past {t.limit_text} worse")
    lo, hi = d["relative_worse_ci" if t.relative else "worse_ci"]
    how = "the point value" if strict else "the whole interval"
    return (point if strict else lo), (
        f"{_change(point, t.relative)} (interval: {_change(lo, t.relative)} .. "
        f"{_change(hi, t.relative)}); fails if {how} is past {t.limit_text} worse")


def check_regressions(tolerances: list[Tolerance], differences: dict[str, dict[str, Any]],
                      losses: list[Loss], pred_width: int, strict: bool) -> list[CheckResult]:
    """Candidate versus baseline: fail when worse beyond the tolerance (with confidence).

    Every loss is checked, as against a baseline: with its own tolerance,
    else the default (``*``), else none (no significant regression at all).
    """
    chosen = _tolerances(tolerances, losses, pred_width, "--max-regression")
    out = []
    for loss in losses:
        t = chosen[loss.key]
        value, text = _regression(t, differences[loss.key], strict)
        passed = not math.isnan(value) and value <= t.amount
        out.append(CheckResult(f"{loss.key} regression <= {t.limit_text}", "regression", loss.key,
                               value, t.amount, passed, text, t))
    return out


def check_slice_regressions(tolerances: list[Tolerance], report: Report, pred_width: int,
                            strict: bool, min_rows: int) -> list[CheckResult]:
    """``--slice-max-regression``: every shown slice's paired difference within the tolerance."""
    losses = report.result.losses
    shown = [s for s in report.slice_differences or [] if s["rows"] >= min_rows]
    chosen = _tolerances(tolerances, losses, pred_width, "--slice-max-regression")
    out = []
    for loss in losses:
        t = chosen[loss.key]
        entries = []
        for s in shown:
            value, text = _regression(t, s["losses"][loss.key], strict)
            entries.append({"key": s["key"], "rows": s["rows"], "value": value,
                            "fails": math.isnan(value) or value > t.amount, "text": text})
        out.append(_slice_check(f"every slice: {loss.key} regression <= {t.limit_text}",
                                "slice_regression", loss, t.amount, entries, True, t))
    return out
