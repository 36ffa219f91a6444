"""Checks that gate a model in CI: thresholds, baselines and paired regressions.

Three kinds, all evaluated on a finished report:

- a threshold, ``mse > 0.25`` (``--fail-if``): fails when the value satisfies it;
- a baseline tolerance, ``mse=2%`` (``--max-increase`` with ``--baseline``):
  fails when the loss got worse than in an earlier JSON report by more than
  the tolerance, relative (``(new - old) / |old|``) or absolute;
- a regression tolerance, ``mse=1%`` (``compare --max-regression``): fails
  when the candidate is worse than the baseline beyond the tolerance *with
  confidence* (the whole interval of the paired difference is past it), or,
  with ``strict``, on the point value alone.

"Worse" follows the loss definition: up for losses, down where higher is
better.  A NaN value never passes.  Expressions are parsed by a small
grammar (``LOSS OP NUMBER``), never evaluated as code.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.losses import Loss, parse_loss
from ..errors import UsageError
from ..io import fs

OPS = ("<=", ">=", "<", ">")
_RULE = re.compile(r"^\s*(?P<loss>[^<>\s]+)\s*(?P<op><=|>=|<|>)\s*(?P<num>\S+)\s*$")


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
    """How much worse a loss may get: ``relative`` (0.02 for 2%) or absolute."""

    loss: str
    amount: float
    relative: bool
    text: str = ""  # the tolerance as written ("2%", "0.01")

    def __str__(self) -> str:
        return f"{self.loss}={self.limit_text}"

    @property
    def limit_text(self) -> str:
        return self.text or (f"{self.amount * 100!r}%" if self.relative else repr(self.amount))


@dataclass
class Checks:
    """Every check asked for, from options and checks files."""

    thresholds: list[Threshold] = field(default_factory=list)
    max_increase: list[Tolerance] = field(default_factory=list)
    max_regression: list[Tolerance] = field(default_factory=list)
    baseline: str | None = None


@dataclass
class CheckResult:
    """One check's outcome: the quantity checked, its limit and pass/fail."""

    name: str
    kind: str  # threshold, baseline, regression
    loss: str
    value: float | None
    limit: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "loss": self.loss,
                "value": _num(self.value), "limit": self.limit, "passed": self.passed,
                "detail": self.detail}


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


def parse_tolerance(text: str, option: str) -> Tolerance:
    """Parse ``LOSS=2%`` (relative) or ``LOSS=0.01`` (absolute)."""
    loss, sep, amount = text.rpartition("=")
    if not sep or not loss.strip() or not amount.strip():
        raise UsageError(f"{option}: write LOSS=2% (relative) or LOSS=0.01 (absolute), "
                         f"not {text!r}")
    amount = amount.strip()
    relative = amount.endswith("%")
    value = _number(amount[:-1] if relative else amount, f"{option} {text!r}")
    if value < 0:
        raise UsageError(f"{option} {text!r}: the tolerance must be >= 0")
    return Tolerance(loss.strip(), value / 100 if relative else value, relative, amount)


def load_checks_file(path: str) -> Checks:
    """Read a checks file (TOML or JSON) kept in the repository beside the CI job.

    Keys: ``fail_if`` (a list of ``LOSS OP NUMBER``), ``max_increase`` and
    ``max_regression`` (tables of LOSS = "2%" or 0.01), ``baseline`` (a path,
    relative to the checks file).
    """
    try:
        raw = fs.read_bytes(path)
    except OSError as e:
        raise UsageError(f"{path}: cannot read checks file: {e.strerror}") from None
    data = _parse_checks(path, raw)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a checks file holds a table (TOML) or an object (JSON)")
    known = {"fail_if", "max_increase", "max_regression", "baseline"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    checks = Checks()
    fail_if = data.get("fail_if", [])
    if isinstance(fail_if, str):
        fail_if = [fail_if]
    if not isinstance(fail_if, list) or not all(isinstance(r, str) for r in fail_if):
        raise UsageError(f"{path}: fail_if is a list of strings like 'mse > 0.25'")
    checks.thresholds = [parse_threshold(r) for r in fail_if]
    for name in ("max_increase", "max_regression"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise UsageError(f"{path}: {name} is a table of LOSS = \"2%\" or LOSS = 0.01")
        setattr(checks, name, [parse_tolerance(f"{k}={v}", f"{path}: {name}")
                               for k, v in table.items()])
    if "baseline" in data:
        if not isinstance(data["baseline"], str):
            raise UsageError(f"{path}: baseline is a path to a lossctl JSON report")
        checks.baseline = os.path.join(os.path.dirname(path), data["baseline"])
    return checks


def _parse_checks(path: str, raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UsageError(f"{path}: TOML checks files need Python >= 3.11; use JSON") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None


def merge_checks(*parts: Checks) -> Checks:
    out = Checks()
    for c in parts:
        out.thresholds += c.thresholds
        out.max_increase += c.max_increase
        out.max_regression += c.max_regression
        out.baseline = c.baseline or out.baseline
    return out


# --------------------------------------------------------------------------
# Evaluating checks
# --------------------------------------------------------------------------


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


def _fails(value: float, op: str, limit: float) -> bool:
    return {"<": value < limit, "<=": value <= limit, ">": value > limit,
            ">=": value >= limit}[op]


def check_thresholds(rules: list[Threshold], values: dict[str, float], losses: list[Loss],
                     pred_width: int) -> list[CheckResult]:
    out = []
    for r in rules:
        loss = find_loss(r.loss, losses, pred_width, "--fail-if: ")
        v = values[loss.key]
        failed = math.isnan(v) or _fails(v, r.op, r.limit)
        out.append(CheckResult(f"fail if {r}", "threshold", loss.key, v, r.limit, not failed,
                               f"{loss.key} = {v!r}; fails if {r.op} {r.text or r.limit!r}"))
    return out


def load_baseline(path: str) -> dict[str, float]:
    """Loss values of an earlier ``lossctl eval -f json`` report, by canonical loss name."""
    try:
        doc = json.loads(fs.read_bytes(path))
    except OSError as e:
        raise UsageError(f"{path}: cannot read baseline: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the baseline is not JSON text; make it with lossctl eval -f json") \
            from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: the baseline is not JSON (line {e.lineno}: {e.msg}); "
                         f"make it with lossctl eval -f json") from None
    if not isinstance(doc, dict) or "lossctl" not in doc or not isinstance(doc.get("losses"), dict):
        raise UsageError(f"{path}: not a lossctl JSON report (make it with lossctl eval -f json)")
    if doc.get("command", "eval") != "eval":
        raise UsageError(f"{path}: a lossctl {doc['command']} report; a baseline is an eval "
                         f"report (lossctl eval -f json)")
    out: dict[str, float] = {}
    for key, entry in doc["losses"].items():
        try:
            loss = Loss.from_json({"key": key, "name": entry["name"], "params": entry["params"]})
            value = entry["value"]
            out[loss.canonical] = math.nan if value is None else float(value)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(f"{path}: loss {key!r} needs a name, params and a numeric value: "
                             f"not a lossctl eval report") from None
    return out


def _worse_by(old: float, new: float, higher_is_better: bool) -> float:
    return (old - new) if higher_is_better else (new - old)


def check_baseline(tolerances: list[Tolerance], baseline: dict[str, float], path: str,
                   values: dict[str, float], losses: list[Loss], pred_width: int
                   ) -> list[CheckResult]:
    """Every tolerance against the baseline (no tolerance given: no loss may get worse at all)."""
    if not tolerances:
        tolerances = [Tolerance(l.key, 0.0, False) for l in losses]
    out = []
    for t in tolerances:
        loss = find_loss(t.loss, losses, pred_width, "--max-increase: ")
        if loss.canonical not in baseline:
            raise UsageError(f"{path}: the baseline has no {loss.key} "
                             f"(it has: {', '.join(baseline) or 'nothing'})")
        old, new = baseline[loss.canonical], values[loss.key]
        worse = _worse_by(old, new, loss.definition.higher_is_better)
        change = worse / abs(old) if t.relative and old else (
            math.copysign(math.inf, worse) if t.relative and worse else
            0.0 if t.relative else worse)
        passed = not math.isnan(change) and change <= t.amount
        direction = "decrease" if loss.definition.higher_is_better else "increase"
        limit = t.limit_text
        shown = f"{change * 100:+.4g}%" if t.relative else f"{change:+.6g}"
        out.append(CheckResult(f"{loss.key} {direction} <= {limit} vs baseline", "baseline",
                               loss.key, change, t.amount, passed,
                               f"baseline {old:.10g}, now {new:.10g} ({shown})"))
    return out


def check_regressions(tolerances: list[Tolerance], differences: dict[str, dict[str, Any]],
                      losses: list[Loss], pred_width: int, strict: bool) -> list[CheckResult]:
    """Candidate versus baseline: fail when worse beyond the tolerance (with confidence)."""
    out = []
    for t in tolerances:
        loss = find_loss(t.loss, losses, pred_width, "--max-regression: ")
        d = differences[loss.key]
        sign = -1.0 if loss.definition.higher_is_better else 1.0
        point = sign * (d["relative"] if t.relative else d["difference"])
        lo, hi = d["relative_ci" if t.relative else "ci"]
        bound = min(sign * lo, sign * hi)  # the least bad end of the interval
        value = point if strict else bound
        passed = not math.isnan(value) and value <= t.amount
        limit = t.limit_text
        how = "point value" if strict else "whole interval"
        fmt = (lambda v: f"{v * 100:+.4g}%") if t.relative else (lambda v: f"{v:+.6g}")
        out.append(CheckResult(f"{loss.key} regression <= {limit}", "regression", loss.key, value,
                               t.amount, passed,
                               f"worse by {fmt(point)} (interval {fmt(sign * lo)} .. "
                               f"{fmt(sign * hi)}); fails if the {how} is past {limit}"))
    return out
