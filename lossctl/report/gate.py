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
down for scores.  A NaN value never passes.  Expressions are parsed by a
small grammar (``LOSS OP NUMBER``), never evaluated as code.  The baseline
document is read by :mod:`lossctl.report.baseline`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.losses import Loss, parse_loss
from ..errors import UsageError
from ..io.documents import List, Map, Number, Obj, OneOf, Str, parse_json, parse_toml, read_text, validate
from ..io.documents import field as field_path
from .baseline import Baseline, load_baseline
from .numbers import DIGITS, MOST, distinct_digits, number

if TYPE_CHECKING:
    from ..core.state import EvalState
    from .model import Report

OPS = ("<=", ">=", "<", ">")
ALL = "*"  # the loss name of a default tolerance: every loss without one of its own
_RULE = re.compile(r"^\s*(?P<loss>[^<>\s]+)\s*(?P<op><=|>=|<|>)\s*(?P<num>\S+)\s*$")
SHOWN_FAILURES = 5  # failing slices named in a check's detail (the JSON lists all)
ROWS_WARNING = 0.10  # warn when the baseline's row count differs by more than this


@dataclass(frozen=True)
class Threshold:
    """``LOSS OP LIMIT``: the check fails when the loss value satisfies the comparison."""

    loss: str
    op: str
    limit: float
    text: str = ""  # the limit as written

    def __str__(self) -> str:
        return f"{self.loss} {self.op} {self.text or repr(self.limit)}"


@dataclass(frozen=True)
class Tolerance:
    """How much worse a loss may get: ``relative`` (0.02 for 2%) or absolute.

    ``loss`` is :data:`ALL` for the default of every loss; ``origin`` says
    where it was given (``--max-increase mse=2%``, a checks file), for the report.
    """

    loss: str
    amount: float
    relative: bool
    text: str = ""  # the tolerance as written ("2%", "0.01")
    origin: str = ""

    def __str__(self) -> str:
        return f"{self.loss}={self.limit_text}"

    @property
    def limit_text(self) -> str:
        return self.text or (f"{self.amount * 100!r}%" if self.relative else repr(self.amount))


NO_INCREASE = Tolerance(ALL, 0.0, False, "0", "default: no loss may get worse")


@dataclass
class Checks:
    """Every check asked for, from options and checks files."""

    thresholds: list[Threshold] = field(default_factory=list)
    max_increase: list[Tolerance] = field(default_factory=list)
    max_regression: list[Tolerance] = field(default_factory=list)
    baseline: str | None = None
    slice_thresholds: list[Threshold] = field(default_factory=list)
    slice_max_regression: list[Tolerance] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the checks files read
    baseline_doc: Baseline | None = None  # read by require_options, before the run

    @property
    def inputs(self) -> list[str]:
        """Every file the checks read (checks files, the baseline): never an output."""
        return self.files + ([self.baseline] if self.baseline else [])


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


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"{what}: the limit must be finite, not {text!r}")
    return v


def parse_threshold(text: str) -> Threshold:
    """Parse ``LOSS OP NUMBER`` (``OP`` one of ``< <= > >=``)."""
    m = _RULE.match(text)
    if not m:
        raise UsageError(f"cannot read check {text!r}: write LOSS OP NUMBER with OP one of "
                         f"{' '.join(OPS)}, e.g. 'mse > 0.25'")
    return Threshold(m["loss"], m["op"], _number(m["num"], f"check {text!r}"), m["num"])


def parse_tolerance(text: str, option: str, origin: str | None = None) -> Tolerance:
    """Parse ``LOSS=2%`` (relative) or ``LOSS=0.01`` (absolute); ``2%`` or ``*=2%`` for every loss."""
    loss, sep, amount = text.rpartition("=")
    if not sep:
        loss, amount = ALL, text
    usage = (f"{option}: write LOSS=2% (relative) or LOSS=0.01 (absolute), or 2% for every loss, "
             f"not {text!r}")
    if not loss.strip() or not amount.strip():
        raise UsageError(usage)
    amount = amount.strip()
    relative = amount.endswith("%")
    figure = amount[:-1] if relative else amount
    if not sep:
        try:
            float(figure)
        except ValueError:
            raise UsageError(usage) from None
    value = _number(figure, f"{option} {text!r}")
    if value < 0:
        raise UsageError(f"{option} {text!r}: the tolerance must be >= 0")
    return Tolerance(loss.strip(), value / 100 if relative else value, relative, amount,
                     origin or f"{option} {text}")


_RULES = OneOf(Str(), List(Str()), expected="a string like 'mse > 0.25' or a list of them")
_TOLERANCES = Map(OneOf(Number(), Str(), expected='a number or a string like "2%"'),
                  expected='a table of LOSS = "2%" or LOSS = 0.01 ("*" for every loss)')
CHECKS_FILE = Obj({
    "fail_if": _RULES, "slice_fail_if": _RULES,
    "max_increase": _TOLERANCES, "max_regression": _TOLERANCES, "slice_max_regression": _TOLERANCES,
    "baseline": Str(expected="a path to a lossctl JSON report or state"),
}, optional=("fail_if", "slice_fail_if", "max_increase", "max_regression", "slice_max_regression",
             "baseline"), expected="a table (TOML) or an object (JSON)")


def load_checks_file(path: str) -> Checks:
    """Read a checks file (TOML or JSON) kept in the repository beside the CI job.

    Keys: ``fail_if`` and ``slice_fail_if`` (lists of ``LOSS OP NUMBER``),
    ``max_increase``, ``max_regression`` and ``slice_max_regression`` (tables
    of LOSS = "2%" or 0.01; ``"*"`` is the default of every loss),
    ``baseline`` (a path, relative to the checks file).  The file is validated
    before use: an error names the file and the field.
    """
    text = read_text(path, "checks file", 16 << 20)
    if path.endswith(".json") or text.lstrip().startswith("{"):
        data = parse_json(text, path, "checks file")
    else:
        data = parse_toml(text, path, "checks file")
    validate(data, CHECKS_FILE, path)
    checks = Checks(files=[path])
    for name, attr in (("fail_if", "thresholds"), ("slice_fail_if", "slice_thresholds")):
        rules = data.get(name, [])
        single = isinstance(rules, str)
        setattr(checks, attr, [
            _in_field(path, name if single else f"{name}[{i}]", parse_threshold, r)
            for i, r in enumerate([rules] if single else rules)])
    for name in ("max_increase", "max_regression", "slice_max_regression"):
        setattr(checks, name, [
            _in_field(path, field_path(name, k), parse_tolerance, f"{k}={v}", f"{path}: {name}",
                      f"{path}: {name} {k} = {json.dumps(v)}")
            for k, v in data.get(name, {}).items()])
    if "baseline" in data:
        checks.baseline = os.path.join(os.path.dirname(path), data["baseline"])
    return checks


def _in_field(path: str, where: str, parse: Callable[..., Any], *args: Any) -> Any:
    try:
        return parse(*args)
    except UsageError as e:
        raise UsageError(f"{path}: field {where}: {e}") from None


def _texts(given: str | Sequence[str]) -> list[str]:
    return [given] if isinstance(given, str) else list(given)


def build_checks(*, fail_if: str | Sequence[str] = (), slice_fail_if: str | Sequence[str] = (),
                 max_increase: str | Sequence[str] = (), max_regression: str | Sequence[str] = (),
                 slice_max_regression: str | Sequence[str] = (), baseline: str | None = None,
                 checks_file: str | None = None) -> Checks:
    """The checks of options as written on the command line (``"mse > 0.25"``, ``"mse=2%"``),
    after those of ``checks_file``."""
    given = Checks([parse_threshold(t) for t in _texts(fail_if)],
                   [parse_tolerance(t, "--max-increase") for t in _texts(max_increase)],
                   [parse_tolerance(t, "--max-regression") for t in _texts(max_regression)],
                   baseline, [parse_threshold(t) for t in _texts(slice_fail_if)],
                   [parse_tolerance(t, "--slice-max-regression")
                    for t in _texts(slice_max_regression)])
    return merge_checks(load_checks_file(checks_file), given) if checks_file else given


def merge_checks(*parts: Checks) -> Checks:
    """Checks of several sources; a later tolerance of the same loss replaces an earlier one."""
    out = Checks()
    for c in parts:
        out.thresholds += c.thresholds
        out.slice_thresholds += c.slice_thresholds
        out.max_increase += c.max_increase
        out.max_regression += c.max_regression
        out.slice_max_regression += c.slice_max_regression
        out.baseline = c.baseline or out.baseline
        out.files += c.files
    return out


# --------------------------------------------------------------------------
# Evaluating checks
# --------------------------------------------------------------------------


def require_options(checks: Checks, *, slices: bool, compare: bool, models: bool = False) -> None:
    """Refuse checks the run cannot evaluate, and read the baseline (called before reading,
    so that a bad baseline does not cost a whole pass; and again on the report).

    ``models``: several models (a leaderboard) are gated by thresholds, each model."""
    if models and (checks.baseline or checks.max_increase):
        raise UsageError("--baseline gates one model; with several models gate each with "
                         "--fail-if, or run eval once per model")
    if (checks.slice_thresholds or checks.slice_max_regression) and not slices:
        option = "--slice-fail-if" if checks.slice_thresholds else "--slice-max-regression"
        raise UsageError(f"{option} checks every slice of --by; give --by COLS")
    if checks.max_increase and not checks.baseline:
        raise UsageError("--max-increase needs --baseline (an earlier lossctl eval -f json "
                         "report, or a state saved with --emit-state)")
    if checks.baseline and compare:
        raise UsageError("--baseline gates eval and merge; lossctl compare gates the "
                         "candidate with --max-regression")
    if (checks.max_regression or checks.slice_max_regression) and not compare:
        option = "--max-regression" if checks.max_regression else "--slice-max-regression"
        raise UsageError(f"{option} gates a paired comparison (lossctl compare); against an "
                         f"earlier report use --baseline with --max-increase")
    if checks.baseline and checks.baseline_doc is None:
        checks.baseline_doc = load_baseline(checks.baseline)


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
