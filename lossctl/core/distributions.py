"""What a visual report needs beyond the values: per-row distributions and reliability bins.

An :class:`EvalState` asked for ``quantiles`` keeps a
:class:`lossctl.core.sketch.SketchState` of each mean's per-row values, as
``lossctl rows`` writes them (one per distinct value: rmse's are the roots
of mse's per-row values, so they get their own sketch, the same as mae's)
and, for a regression, of the signed residuals ``p - y``; asked for ``calibration`` it keeps reliability
bins of probability predictions (the state an ``ece`` keeps) when no
``ece`` is asked for.  Both are kept for the whole stream only (not per
slice or bucket), exactly, and merge like every other state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .components import BinnedState
from .exact import ExactSum
from .losses import Loss, parse_loss
from .sketch import LOSS_LEVELS, SIGNED_LEVELS, Buckets, QuantileSketch, SketchState
from .views import ExactView, details_of

RESIDUALS = ("residuals",)  # the key of the residuals' sketch


def sketch_key(loss: Loss) -> tuple:
    """The key of a mean's sketch: its rows key, marked when the values are finished (rmse)."""
    return loss.rows_key if loss.definition.finish is None else (*loss.rows_key, "finished")


def sketch_specs(losses: Sequence[Loss], label_width: int, pred_width: int
                 ) -> dict[tuple, QuantileSketch]:
    """One sketch per distinct per-row value of a mean, and the residuals of a regression."""
    specs = {sketch_key(l): QuantileSketch(sketch_key(l)) for l in losses if l.definition.per_row}
    if label_width == pred_width == 1 and any(l.definition.task == "regression" for l in losses):
        specs[RESIDUALS] = QuantileSketch(RESIDUALS, signed=True)
    return specs


def calibration_loss(losses: Sequence[Loss], label_width: int, pred_width: int,
                     class_index: bool) -> Loss | None:
    """An ``ece`` to keep reliability bins with, when the losses make its checks hold.

    Only when another loss already requires what ``ece`` does (probabilities
    in [0, 1] against binary labels; or K probabilities in [0, 1] against a
    class index), so that no row valid for the losses asked for can fail it;
    and only when no ``ece`` is asked for (its bins are in the report then).
    """
    from .definitions import BINARY_Z, HARD_Z, P_SUM, P_SUM_PLAIN, UNIT_P

    if any(l.name == "ece" for l in losses):
        return None
    checks = {c for l in losses for c in l.definition.checks}
    if pred_width == 1 and UNIT_P in checks and checks & {BINARY_Z, HARD_Z}:
        return parse_loss("ece", 1)
    if pred_width > 1 and class_index and label_width == 1 and UNIT_P in checks \
            and checks & {P_SUM, P_SUM_PLAIN}:
        return parse_loss("ece", pred_width)
    return None


class Distributions:
    """The sketches and calibration bins of one state (empty when neither is asked for)."""

    def __init__(self, losses: Sequence[Loss], label_width: int, pred_width: int, weighted: bool,
                 class_index: bool, quantiles: bool, calibration: bool) -> None:
        self.quantiles = quantiles
        self.calibration = calibration
        self.weighted = weighted
        self.specs = sketch_specs(losses, label_width, pred_width) if quantiles else {}
        self.sketches = {k: spec.new(weighted) for k, spec in self.specs.items()}
        # term key -> the sketches its per-row values go to, each with the loss that finishes them
        self._feeds: dict[tuple, dict[tuple, Loss | None]] = {}
        for loss in losses if quantiles else []:
            if loss.definition.per_row:
                finish = loss if loss.definition.finish is not None else None
                self._feeds.setdefault(loss.rows_key, {}).setdefault(sketch_key(loss), finish)
        self.ece = calibration_loss(losses, label_width, pred_width, class_index) \
            if calibration else None
        self._bins_spec = None if self.ece is None else self.ece.component(label_width, pred_width)
        self.bins: BinnedState | None = None if self._bins_spec is None else \
            self._bins_spec.new(1, weighted)

    @property
    def residuals(self) -> bool:
        return RESIDUALS in self.sketches

    def add_rows(self, term: tuple, values: np.ndarray, w: np.ndarray | None) -> None:
        """Per-row values of a term (kept by the sketches of the means that use it)."""
        for key, finish in self._feeds.get(term, {}).items():
            self.sketches[key].add(values if finish is None else finish.finish_rows(values), w)

    def add_residuals(self, residuals: np.ndarray, w: np.ndarray | None) -> None:
        self.sketches[RESIDUALS].add(residuals, w)

    def add_chunk(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> None:
        if self.bins is not None:
            self.bins.add(y, p, w, None)

    def merge(self, other: Distributions) -> None:
        """Add ``other``'s sketches (both must keep them: see the state's signature) and bins.

        Reliability bins are only for the page: a merge keeps them when both
        states have them, and else drops them (whatever the order).
        """
        for key, sketch in self.sketches.items():
            sketch.merge(other.sketches[key])
        if self.bins is not None and other.bins is not None:
            self.bins.merge(other.bins)
        else:
            self.bins = None

    # -- reading ------------------------------------------------------------

    def row_quantiles(self, loss: Loss) -> dict[str, float] | None:
        """p50, p90, p99 and max of a mean's per-row values (None: not kept, or no weight)."""
        sketch = self.sketches.get(sketch_key(loss))
        q = sketch.quantiles(LOSS_LEVELS) if sketch is not None else None
        return None if q is None else {n: q[n] for n in [*LOSS_LEVELS, "max"]}

    def residual_quantiles(self) -> dict[str, float] | None:
        """min, p1, p10, p50, p90, p99 and max of the residuals ``p - y`` (regression)."""
        sketch = self.sketches.get(RESIDUALS)
        q = sketch.quantiles(SIGNED_LEVELS) if sketch is not None else None
        return None if q is None else {n: q[n] for n in ["min", *SIGNED_LEVELS, "max"]}

    def buckets(self, loss: Loss | None) -> Buckets | None:
        """The sketch buckets of a mean's per-row values, or (``None``) of the residuals."""
        sketch = self.sketches.get(RESIDUALS if loss is None else sketch_key(loss))
        return sketch.buckets() if sketch is not None else None

    def calibration_details(self, weight: ExactSum) -> dict | None:
        """Reliability bins (as ``ece`` reports them), if kept."""
        if self.ece is None or self.bins is None or self._bins_spec is None:
            return None
        key = self._bins_spec.key
        return details_of(self.ece, ExactView({}, weight, {key: self.bins}), key)

    # -- serialisation ------------------------------------------------------

    @staticmethod
    def _name(key: tuple, names: dict[tuple, str]) -> str:
        """A sketch's name in a saved state: its term's name (``:finished`` for rmse's)."""
        if key == RESIDUALS:
            return "residuals"
        if key[-1] == "finished":
            return names[key[:-1]] + ":finished"
        return names[key]

    def to_json(self, names: dict[tuple, str]) -> dict[str, Any]:
        return {"sketches": {self._name(k, names): s.to_json() for k, s in self.sketches.items()}
                if self.quantiles else None,
                "calibration": self.bins.to_json() if self.bins is not None else None}

    def load(self, data: dict, names: dict[tuple, str]) -> None:
        """Fill this (empty) state from :meth:`to_json`'s output."""
        for key in self.sketches:
            self.sketches[key] = SketchState.from_json(data["sketches"][self._name(key, names)],
                                                       self.weighted)
        if self.bins is not None and self._bins_spec is not None:
            self.bins = BinnedState.from_json(self._bins_spec, data["calibration"], self.weighted)
