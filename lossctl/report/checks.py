"""The checks asked for: thresholds and tolerances, from options and checks files.

What each check means is in :mod:`lossctl.report.gate`, which evaluates them on
a finished report.  Here they are parsed (``LOSS OP NUMBER`` by a small
grammar, never evaluated as code; ``LOSS=2%`` or ``LOSS=0.01``), read from a
checks file (TOML or JSON, validated before use), merged, and refused early
when the run cannot evaluate them, before any data is read.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..io.documents import List, Map, Number, Obj, OneOf, Str, parse_json, parse_toml, read_text, validate
from ..io.documents import field as field_path
from .baseline import Baseline, load_baseline

OPS = ("<=", ">=", "<", ">")
ALL = "*"  # the loss name of a default tolerance: every loss without one of its own
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
