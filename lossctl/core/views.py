"""Reading a value off a state: exact totals for the report, bootstrap replicates for intervals.

A definition's value is written once (see :mod:`lossctl.core.definitions`)
and read through a *view*: :class:`ExactView` hands it exact ``Fraction``
totals of one group (the whole stream, or a slice), so the value is rounded
once at the end; :class:`ReplicateView` hands it float arrays, one entry per
bootstrap replicate, made from per-bucket totals reweighted by Poisson counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from .components import UNIT, BinnedState, HistogramState, MaximumState, exact
from .definitions import MEAN, div
from .exact import ExactSum
from .groups import Groups
from .losses import Loss


def _fraction(s: ExactSum) -> Fraction | float:
    """An exact sum as a Fraction (a float inf/nan if it overflowed upstream)."""
    return s.value if s.nonfinite else Fraction(s.scaled) * UNIT


class ExactView:
    """Exact totals of one group: ``sums`` by term key, the weight, component states."""

    def __init__(self, sums: Mapping[tuple, ExactSum], weight: ExactSum,
                 components: Mapping[tuple, Any], group: int = 0) -> None:
        self._sums = sums
        self._weight = weight
        self._components = components
        self.group = group

    def sum(self, key: tuple) -> Fraction | float:
        return _fraction(self._sums[key])

    @property
    def weight(self) -> Fraction | float:
        return _fraction(self._weight)

    def component(self, key: tuple) -> Any:
        state = self._components[key]
        if isinstance(state, BinnedState):
            return BinView(state, self.group)
        if isinstance(state, HistogramState):
            return state.table(self.group)
        if isinstance(state, MaximumState):
            return float(state.max[self.group])
        raise TypeError(type(state))


class BinView:
    """One group's bins of a :class:`BinnedState`: exact channel sums per bin, rows per bin."""

    def __init__(self, state: BinnedState, group: int) -> None:
        self._state = state
        self.group = group

    def channel(self, name: str) -> np.ndarray:
        return self._state.channel(name)[self.group]

    @property
    def rows(self) -> np.ndarray:
        return self._state.bin_rows()[self.group]


class ReplicateView:
    """Bootstrap replicates of a group of buckets: ``counts @ per-bucket totals``.

    ``groups`` holds the buckets; ``first`` and ``counts.shape[1]`` select
    which of its groups are the buckets (all of them for the whole stream,
    a slice's run of buckets for per-slice intervals).
    """

    def __init__(self, groups: Groups, counts: np.ndarray, first: int = 0) -> None:
        self._groups = groups
        self._counts = counts
        self._cut = slice(first, first + counts.shape[1])
        self._cache: dict[tuple, np.ndarray] = {}

    def _floats(self, key: tuple) -> np.ndarray:
        got = self._cache.get(key)
        if got is None:
            totals = self._groups.sums[key].totals()[self._cut]
            got = self._cache[key] = np.array([t.value for t in totals])
        return got

    def sum(self, key: tuple) -> np.ndarray:
        return self._counts @ self._floats(key)

    @property
    def weight(self) -> np.ndarray:
        got = self._cache.get(("__weight__",))
        if got is None:
            got = np.array([t.value for t in self._groups.weight_totals()[self._cut]])
            self._cache[("__weight__",)] = got
        return self._counts @ got

    def component(self, key: tuple) -> Any:
        state = self._groups.components[key]
        if isinstance(state, BinnedState):
            return _BinReplicates(state, self._counts, self._cut)
        if isinstance(state, MaximumState):
            present = self._counts > 0
            return np.where(present, state.max[self._cut], -np.inf).max(axis=1)
        return None  # (score histograms keep no buckets)


class _BinReplicates:
    def __init__(self, state: BinnedState, counts: np.ndarray, cut: slice) -> None:
        self._state = state
        self._counts = counts
        self._cut = cut

    def channel(self, name: str) -> np.ndarray:
        return self._counts @ self._state.channel_floats(name)[self._cut]

    @property
    def rows(self) -> np.ndarray:
        return self._counts @ self._state.bin_rows()[self._cut].astype(float)


def value_of(loss: Loss, view: Any, component: tuple | None) -> Any:
    """A definition's value read through ``view`` (a float, or an array of replicates)."""
    d = loss.definition
    if d.kind == MEAN:
        return loss.finish(div(view.sum(loss.rows_key), view.weight))
    assert d.reduce is not None
    if d.component is not None:
        assert component is not None
        inputs = view.component(component)
        if inputs is None:
            return math.nan
    else:
        inputs = {t.name: view.sum(k) for k, t in loss.terms()}
    try:
        out = d.reduce(inputs, view.weight, loss.params)
        return out if isinstance(out, np.ndarray) else float(out)
    except OverflowError:  # a sum beyond float64 met an exact one: the value in floats (inf, nan)
        with np.errstate(all="ignore"):
            floats = {k: np.array([_float(v)]) for k, v in inputs.items()} \
                if isinstance(inputs, dict) else inputs
            return float(d.reduce(floats, np.array([_float(view.weight)]), loss.params)[0])


def _float(v: Any) -> float:
    """A Fraction as the nearest float, +-inf beyond the float64 range."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def details_of(loss: Loss, view: ExactView, component: tuple | None) -> dict:
    """What a curve metric reports beside its value (reliability bins, error bound)."""
    d = loss.definition
    if d.details is None or component is None:
        return {}
    inputs = view.component(component)
    return d.details(inputs, view.weight, loss.params) if inputs is not None else {}


__all__ = ["BinView", "ExactView", "ReplicateView", "details_of", "exact", "value_of"]
