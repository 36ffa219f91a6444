"""The baseline of ``--baseline``: an earlier ``eval -f json`` report or a saved state.

Either document gives the loss values (by canonical name, so aliases and
spelled-out parameters match), and what they were computed from: the
columns, the inputs and the row count.  A baseline must describe the same
evaluation as the run it gates (the same label and weight columns); other
rows and inputs are allowed, and named in the checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any

from ..core.losses import Loss, bind, lookup
from ..errors import LossctlError, UsageError
from ..io.documents import (
    Const,
    Int,
    Invalid,
    List,
    Map,
    Number,
    Obj,
    Opt,
    Scalar,
    Str,
    field,
    parse_json,
    read_text,
    validate,
)

if TYPE_CHECKING:
    from ..engine.plan import Columns

STATE_KIND = "lossctl-state"


@dataclass
class Baseline:
    """Loss values of an earlier evaluation and what they were computed from."""

    path: str
    values: dict[str, float]  # canonical loss name -> value (null: see _from_report)
    kind: str  # "report" or "state"
    inputs: list[str] = dataclass_field(default_factory=list)
    rows: int | None = None
    label: list[str] | None = None  # None: not recorded
    weight: str | None = None
    weight_known: bool = False  # False: an old report that does not say

    def require_same_evaluation(self, columns: Columns) -> None:
        """Refuse a baseline of other labels or weights: its values would not be comparable."""
        made = "make it again with the same -l and -w"
        if self.label is not None and self.label != columns.label:
            raise UsageError(f"{self.path}: the baseline is evaluated against label column(s) "
                             f"{', '.join(self.label)}, this run against "
                             f"{', '.join(columns.label)}; a baseline must be the same "
                             f"evaluation ({made})")
        if self.weight_known and self.weight != columns.weight:
            then = f"weighted by {self.weight}" if self.weight else "unweighted"
            now = f"weighted by {columns.weight}" if columns.weight else "unweighted"
            raise UsageError(f"{self.path}: the baseline is {then}, this run {now}; a baseline "
                             f"must be the same evaluation ({made})")


def load_baseline(path: str) -> Baseline:
    """Read ``--baseline``: a ``lossctl eval -f json`` report or an ``--emit-state`` file.

    Both are validated before use (a report here, a state by
    :func:`lossctl.engine.saved.load_states`): an error names the file and the field.
    """
    hint = " (make it with lossctl eval -f json or --emit-state)"
    doc = parse_json(read_text(path, "baseline"), path, "baseline", hint)
    if isinstance(doc, dict) and doc.get("kind") == STATE_KIND:
        return _from_state(path)
    return _from_report(path, doc)


def _report_loss(entry: dict, key: str) -> Loss:
    """The loss a report's entry names (its task or parameters tell a binary and a multiclass
    definition of one name apart), with the parameters checked."""
    lookup(entry["name"])  # an unknown name: an error that suggests the closest
    try:
        definition = Loss.from_json({"key": key, **entry}).definition
    except KeyError:  # an alias: reports name losses canonically
        definition = lookup(entry["name"])
    return bind(definition, entry["params"], key)


def _entry(entry: dict, where: str) -> None:
    try:
        lookup(entry["name"])
    except UsageError as e:
        raise Invalid(field(where, "name"), "", problem=str(e)) from None
    try:
        _report_loss(entry, "")
    except UsageError as e:
        raise Invalid(field(where, "params"), "", problem=str(e)) from None


REPORT = Obj({
    "lossctl": Str(),
    "command": Const("eval"),
    "losses": Map(Obj({"name": Str(), "params": Map(Scalar()), "value": Opt(Number()),
                       "nonfinite": Str(choices=("inf", "-inf", "nan"))},
                      optional=("nonfinite",), extra=True, rules=[_entry],
                      expected="a loss: {name, params, value}")),
    "inputs": List(Str()),
    "rows": Int(),
    "columns": Obj({"label": List(Str()), "weight": Opt(Str())}, optional=("label", "weight"),
                   extra=True),
}, optional=("command", "inputs", "rows", "columns"), extra=True)  # a newer report may hold more


def _from_report(path: str, doc: Any) -> Baseline:
    """A report's values.  A ``null`` value is not finite: ``nonfinite`` says which (``inf``,
    ``-inf``, ``nan``); without it (reports of lossctl 0.1.0) it overflowed to infinity, the
    worst value in the loss's direction."""
    if not isinstance(doc, dict) or "lossctl" not in doc or not isinstance(doc.get("losses"), dict):
        raise UsageError(f"{path}: not a lossctl JSON report (make it with lossctl eval -f json)")
    if doc.get("command", "eval") == "compare":
        raise UsageError(f"{path}: a lossctl compare report; a baseline is an eval "
                         f"report (lossctl eval -f json)")
    validate(doc, REPORT, path)
    values: dict[str, float] = {}
    for key, entry in doc["losses"].items():
        loss = _report_loss(entry, key)
        value = entry["value"]
        if value is None:
            worst = -math.inf if loss.definition.higher_is_better else math.inf
            value = float(entry["nonfinite"]) if "nonfinite" in entry else worst
        values[loss.canonical] = float(value)
    cols = doc.get("columns", {})
    return Baseline(path, values, "report", list(doc.get("inputs", [])), doc.get("rows"),
                    cols.get("label"), cols.get("weight"), "weight" in cols)


def _from_state(path: str) -> Baseline:
    from ..engine.saved import load_states

    try:
        outcome = load_states([path])
        result = outcome.states[0].result()
    except LossctlError as e:
        raise UsageError(f"baseline: {e}") from None
    c = outcome.columns
    return Baseline(path, {l.canonical: result.values[l.key] for l in result.losses}, "state",
                    list(outcome.inputs), result.rows, list(c.label), c.weight, True)
