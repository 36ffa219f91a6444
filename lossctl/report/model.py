"""The report model: an engine's outcome -> values, intervals and differences, ready to render.

The engine hands back exact states (:class:`lossctl.engine.plan.Outcome`);
this turns them into results, bootstrap intervals (where the states keep
buckets) and, for a comparison, paired differences.  Several models
(``eval -p a -p b``) make a :class:`Leaderboard`: each model's values and
intervals as a single model's, ranked, and its paired differences against
the reference model as ``lossctl compare`` computes them.  Rendering is
:mod:`lossctl.report.render`; gating is :mod:`lossctl.report.gate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import intervals
from ..core.state import SLICE_BUCKETS, EvalState, Result

if TYPE_CHECKING:
    import pandas as pd

    from ..core.losses import Loss
    from ..engine.joins import JoinStats
    from ..engine.plan import Columns, Outcome
    from .gate import CheckResult, Gate


@dataclass
class Entry:
    """One model of a leaderboard: its column, values, intervals and differences."""

    name: str  # the model's prediction column
    state: EvalState
    result: Result
    intervals: dict[str, tuple[float, float] | None] | None
    differences: dict[str, dict[str, Any]] | None  # against the reference (None: it is the reference)
    # --by: per slice (in the state's slice order) each loss's interval, and difference
    slice_intervals: list[dict[str, tuple[float, float] | None]] | None = None
    slice_differences: list[dict[str, Any]] | None = None


@dataclass
class Leaderboard:
    """Several models on the same rows: best first by the first loss, in its direction."""

    entries: list[Entry]
    reference: str


@dataclass(repr=False)
class Report:
    """An engine's outcome with its results computed, ready to render and gate.

    What the API returns: :meth:`to_dict` is the JSON report of the CLI
    (``-f json``), :meth:`to_pandas` a table of it; ``gate`` holds the
    checks' results once evaluated (:attr:`checks`, :attr:`passed`), and
    ``min_slice_rows``/``sort`` how slices are shown.
    """

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
    leaderboard: Leaderboard | None = None  # several models (then ``result`` is the reference's)
    gate: Gate | None = None  # the checks evaluated on this report
    min_slice_rows: int = 0  # slices with fewer rows are hidden (counted in slices_hidden)
    sort: str | None = None  # slices ordered by this loss, worst first (else by value)

    @property
    def state(self) -> EvalState:
        """The state of the model evaluated (a comparison's candidate)."""
        return self.outcome.states[-1]

    @property
    def baseline_state(self) -> EvalState | None:
        return self.outcome.states[0] if self.differences is not None else None

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

    @property
    def checks(self) -> list[CheckResult]:
        """Every check's result (empty when none was asked for)."""
        return self.gate.results if self.gate is not None else []

    @property
    def passed(self) -> bool:
        """True unless a check failed (the CLI's exit status 1)."""
        return all(c.passed for c in self.checks)

    @property
    def warnings(self) -> list[str]:
        """What the CLI prints as warnings (a baseline of other data, a shard without values)."""
        empty = self.state.empty_reason() if self.leaderboard is None else None
        return ([f"{empty}: the values are undefined (the saved state merges as nothing)"]
                if empty else []) + (self.gate.warnings if self.gate is not None else [])

    def __repr__(self) -> str:
        """Short (a notebook shows it): the command, rows, each loss's value (a comparison's
        baseline -> candidate) and the checks."""
        command = "compare" if self.differences is not None else "eval"
        old = self.baseline.values if self.baseline is not None else {}
        values = ", ".join(f"{k}={old[k]:.6g} -> {v:.6g}" if k in old else f"{k}={v:.6g}"
                           for k, v in self.result.values.items())
        checks = f"; checks {'passed' if self.passed else 'FAILED'}" if self.checks else ""
        if self.leaderboard is not None:
            board = self.leaderboard
            values = ", ".join(f"{e.name} {e.result.values[k]:.6g}" for e in board.entries
                               for k in list(e.result.values)[:1])
            return (f"<lossctl.Report eval: {self.result.rows} rows; {len(board.entries)} models"
                    f" by {list(self.result.values)[0]}: {values}{checks}>")
        return f"<lossctl.Report {command}: {self.result.rows} rows; {values}{checks}>"

    def to_dict(self) -> dict[str, Any]:
        """The JSON report, as ``lossctl eval -f json`` (or ``compare``, ``merge``) prints it."""
        from .render import to_dict

        return to_dict(self, self.checks, self.min_slice_rows, self.sort,
                       self.gate.baseline if self.gate is not None else None)

    def to_pandas(self, slices: bool | None = None) -> pd.DataFrame:
        """A DataFrame of the report: a row per loss, or with ``slices`` a row per slice and loss.

        ``slices=None`` gives the slices when the report has them (``by=``).
        Slice rows start with the ``by`` columns; see :mod:`lossctl.report.frames`.
        """
        from .frames import report_frame

        return report_frame(self.to_dict(), slices)


def make_report(outcome: Outcome, confidence: float = 0.95, allow_empty: bool = False) -> Report:
    """Results, and intervals where the states keep buckets, of one model, a comparison or several.

    ``allow_empty``: no rows, or weights summing to zero, give undefined values
    instead of an error (a shard whose state is saved for ``merge``).
    """
    state = outcome.states[-1]
    counts = intervals.poisson_counts(state.buckets, state.seed) if state.buckets else None
    per_slice = intervals.poisson_counts(SLICE_BUCKETS, state.seed) if state.buckets else None
    if outcome.columns.models:
        board = make_leaderboard(outcome, counts, per_slice, confidence)
        ref = next(e for e in board.entries if e.name == board.reference)
        return Report(outcome, ref.result, confidence=confidence, leaderboard=board)
    report = Report(outcome, state.result(allow_empty), confidence=confidence)
    if counts is not None and state.empty_reason() is None:  # (an empty shard: no intervals)
        report.intervals = intervals.loss_intervals(state, counts, confidence)
        if state.slice_buckets is not None:
            report.slice_intervals = intervals.slice_intervals(state, per_slice, confidence)
    if len(outcome.states) == 2:
        base = outcome.states[0]
        report.baseline = base.result()
        report.differences = intervals.differences(base, state, counts, confidence)
        if state.slice_keys is not None and per_slice is not None:
            report.slice_differences = intervals.slice_differences(base, state, per_slice,
                                                                   confidence)
    return report


def make_leaderboard(outcome: Outcome, counts: Any, per_slice: Any,
                     confidence: float = 0.95) -> Leaderboard:
    """Every model's values and intervals (the same bucket counts for all), and its paired
    differences against the reference (the first state), overall and per slice, ranked by
    the first loss (see :func:`ranked`)."""
    ref = outcome.states[0]
    entries = []
    for i, (name, st) in enumerate(zip(outcome.columns.models, outcome.states, strict=True)):
        e = Entry(name, st, st.result(),
                  None if counts is None else intervals.loss_intervals(st, counts, confidence),
                  None if i == 0 else intervals.differences(ref, st, counts, confidence))
        if st.slice_keys is not None:
            if per_slice is not None and st.slice_buckets is not None:
                e.slice_intervals = intervals.slice_intervals(st, per_slice, confidence)
            if i:
                e.slice_differences = intervals.slice_differences(ref, st, per_slice, confidence)
        entries.append(e)
    first = ref.losses[0]
    return Leaderboard(ranked(entries, first, lambda e: e.result.values[first.key]),
                       outcome.columns.models[0])


T = TypeVar("T")


def ranked(items: list[T], loss: Loss, value: Callable[[T], float]) -> list[T]:
    """``items`` best first by ``loss``'s ``value`` in its direction; ties keep their order, NaN last."""
    def rank(item: T) -> tuple[bool, float]:
        v = loss.definition.badness(value(item))
        return (math.isnan(v), 0.0 if math.isnan(v) else v)

    return sorted(items, key=rank)
