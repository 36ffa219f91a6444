"""The report model: an engine's outcome -> values, intervals and differences, ready to render.

The engine hands back exact states (:class:`lossctl.engine.plan.Outcome`);
this turns them into results, bootstrap intervals (where the states keep
buckets) and, for a comparison, paired differences.  Rendering is
:mod:`lossctl.report.render`; gating is :mod:`lossctl.report.gate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import intervals
from ..core.state import SLICE_BUCKETS, EvalState, Result

if TYPE_CHECKING:
    from ..engine.joins import JoinStats
    from ..engine.plan import Columns, Outcome


@dataclass
class Report:
    """An engine's outcome with its results computed, ready to render and gate."""

    outcome: Outcome
    result: Result  # the (candidate's) values
    intervals: dict[str, tuple[float, float]] | None = None
    confidence: float = 0.95
    baseline: Result | None = None  # a comparison's baseline
    differences: dict[str, dict[str, Any]] | None = None
    # per slice (in the state's slice order), each loss's interval: --ci with --by
    slice_intervals: list[dict[str, tuple[float, float] | None]] | None = None
    # per slice (in the state's slice order), each loss's paired difference: compare --by
    slice_differences: list[dict[str, Any]] | None = None

    @property
    def state(self) -> EvalState:
        """The state of the model evaluated (a comparison's candidate)."""
        return self.outcome.states[-1]

    @property
    def baseline_state(self) -> EvalState | None:
        return self.outcome.states[0] if len(self.outcome.states) == 2 else None

    @property
    def inputs(self) -> list[str]:
        return self.outcome.inputs

    @property
    def columns(self) -> Columns:
        return self.outcome.columns

    @property
    def losses_chosen(self) -> bool:
        """True when lossctl picked the losses (no -m given)."""
        return self.outcome.losses_chosen

    @property
    def join(self) -> JoinStats | None:
        return self.outcome.join


def make_report(outcome: Outcome, confidence: float = 0.95) -> Report:
    """Results, and intervals where the states keep buckets, of one model or a comparison."""
    state = outcome.states[-1]
    report = Report(outcome, state.result(), confidence=confidence)
    counts = intervals.poisson_counts(state.buckets, state.seed) if state.buckets else None
    per_slice = intervals.poisson_counts(SLICE_BUCKETS, state.seed) if state.buckets else None
    if counts is not None:
        report.intervals = intervals.loss_intervals(state, counts, confidence)
        if state.slice_buckets is not None:
            report.slice_intervals = intervals.slice_intervals(state, per_slice, confidence)
    base = report.baseline_state
    if base is not None:
        report.baseline = base.result()
        report.differences = intervals.differences(base, state, counts, confidence)
        if state.slice_keys is not None and per_slice is not None:
            report.slice_differences = intervals.slice_differences(base, state, per_slice,
                                                                   confidence)
    return report
