"""The baseline of ``--baseline``: an earlier ``eval -f json`` report or a saved state.

Either document gives the loss values (by canonical name, so aliases and
spelled-out parameters match), and what they were computed from: the
columns, the inputs and the row count.  A baseline must describe the same
evaluation as the run it gates (the same label and weight columns); other
rows and inputs are allowed, and named in the checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.losses import Loss
from ..errors import LossctlError, UsageError
from ..io import fs

if TYPE_CHECKING:
    from ..engine.plan import Columns

STATE_KIND = "lossctl-state"


@dataclass
class Baseline:
    """Loss values of an earlier evaluation and what they were computed from."""

    path: str
    values: dict[str, float]  # canonical loss name -> value (NaN for a null value)
    kind: str  # "report" or "state"
    inputs: list[str] = field(default_factory=list)
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
    """Read ``--baseline``: a ``lossctl eval -f json`` report or an ``--emit-state`` file."""
    try:
        doc = json.loads(fs.read_bytes(path))
    except OSError as e:
        raise UsageError(f"{path}: cannot read baseline: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
        raise UsageError(f"{path}: the baseline is not JSON{where}; make it with lossctl eval "
                         f"-f json or --emit-state") from None
    if isinstance(doc, dict) and doc.get("kind") == STATE_KIND:
        return _from_state(path)
    return _from_report(path, doc)


def _from_report(path: str, doc: Any) -> Baseline:
    if not isinstance(doc, dict) or "lossctl" not in doc or not isinstance(doc.get("losses"), dict):
        raise UsageError(f"{path}: not a lossctl JSON report (make it with lossctl eval -f json)")
    if doc.get("command", "eval") != "eval":
        raise UsageError(f"{path}: a lossctl {doc['command']} report; a baseline is an eval "
                         f"report (lossctl eval -f json)")
    values: dict[str, float] = {}
    for key, entry in doc["losses"].items():
        try:
            loss = Loss.from_json({"key": key, "name": entry["name"], "params": entry["params"]})
            value = entry["value"]
            values[loss.canonical] = math.nan if value is None else float(value)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(f"{path}: loss {key!r} needs a name, params and a numeric value: "
                             f"not a lossctl eval report") from None
    cols = doc.get("columns") if isinstance(doc.get("columns"), dict) else {}
    label = cols.get("label")
    inputs = doc.get("inputs")
    rows = doc.get("rows")
    return Baseline(path, values, "report",
                    [str(i) for i in inputs] if isinstance(inputs, list) else [],
                    rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
                    [str(c) for c in label] if isinstance(label, list) else None,
                    cols.get("weight") if isinstance(cols.get("weight"), str) else None,
                    "weight" in cols)


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
