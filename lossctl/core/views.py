"""Reading a value off a state: exact totals for the report, bootstrap replicates for intervals.

A definition's value is written once (see :mod:`lossctl.core.definitions`)
and read through a *view*: :class:`ExactView` hands it exact ``Fraction``
totals of one group (the whole stream, or a slice), so the value is rounded
once at the end; :class:`ReplicateView` hands it float arrays, one entry per
bootstrap replicate, made from per-bucket totals reweighted by Poisson counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from .components import UNIT, BinnedState, MaximumState, exact
from .definitions import MEAN, div
from .exact import _SCALE, ExactSum, _ratio
from .groups import Groups
from .histogram import HistogramState
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

    def centred(self, square: tuple, first: tuple) -> Fraction | float:
        """``sum w (v - mean)^2`` from the exact sums of ``w v^2`` and ``w v``.

        Never below 0: exact sums cannot give less, except when the squares
        of values below about 1e-146 lost bits to underflow.
        """
        q, s, w = self.sum(square), self.sum(first), self.weight
        if not all(isinstance(x, Fraction) for x in (q, s, w)):
            return math.nan  # a sum overflowed
        return max(q - div(s * s, w, 0.0), Fraction(0))

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


_WEIGHT = ("__weight__",)


class ReplicateView:
    """Bootstrap replicates of a group of buckets: ``counts @ per-bucket totals``.

    ``groups`` holds the buckets; ``first`` and ``counts.shape[1]`` select
    which of its groups are the buckets (all of them for the whole stream,
    a slice's run of buckets for per-slice intervals).  The views of the
    slices of one state share ``totals`` (every group's exact totals, read
    once), so reading all slices costs one pass, not one per slice.
    """

    def __init__(self, groups: Groups, counts: np.ndarray, first: int = 0,
                 totals: dict[tuple, tuple[list[ExactSum], np.ndarray]] | None = None) -> None:
        self._groups = groups
        self._counts = counts
        self._cut = slice(first, first + counts.shape[1])
        self._totals = {} if totals is None else totals
        self._cache: dict[tuple, Any] = {}

    def _exact(self, key: tuple) -> tuple[list[ExactSum], np.ndarray]:
        """This view's buckets' exact totals of a term (or the weight), and them as floats."""
        got = self._totals.get(key)
        if got is None:
            exact = self._groups.weight_totals() if key == _WEIGHT else self._groups.sums[key].totals()
            got = self._totals[key] = (exact, np.array([t.value for t in exact]))
        return got[0][self._cut], got[1][self._cut]

    def sum(self, key: tuple) -> np.ndarray:
        return self._counts @ self._exact(key)[1]

    @property
    def weight(self) -> np.ndarray:
        return self._counts @ self._exact(_WEIGHT)[1]

    def centred(self, square: tuple, first: tuple) -> np.ndarray:
        """Replicates of ``sum w (v - mean)^2``, without cancellation.

        Each bucket's sums are first centred exactly (integers) on the mean
        over all buckets ``m``: ``sum_b w (v - m)^2`` and ``sum_b w (v - m)``;
        a replicate is then ``Q - S^2 / W`` of its reweighted centred sums,
        where ``S`` is small, so nothing large cancels.
        """
        key = ("__centred__", square, first)
        got = self._cache.get(key)
        if got is None:
            q, s, w = self._exact(square)[0], self._exact(first)[0], self._exact(_WEIGHT)[0]
            if any(t.nonfinite for t in (*q, *s)):
                got = (np.full(len(q), math.nan), np.full(len(q), math.nan))
            else:
                S, W = sum(t.scaled for t in s), sum(t.scaled for t in w)
                W = W or 1  # (no weight at all: every replicate is empty anyway)
                unit = 1 << _SCALE
                got = (np.array([_ratio(qb.scaled * W * W - 2 * S * sb.scaled * W + S * S * wb.scaled,
                                        W * W * unit) for qb, sb, wb in zip(q, s, w, strict=True)]),
                       np.array([_ratio(sb.scaled * W - S * wb.scaled, W * unit)
                                 for sb, wb in zip(s, w, strict=True)]))
            self._cache[key] = got
        squares, firsts = self._counts @ got[0], self._counts @ got[1]
        return np.maximum(squares - div(firsts * firsts, self.weight, 0.0), 0.0)

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


class _Totals(Mapping):
    """A ratio's term totals by term name, read through a view (see ``definitions.Totals``)."""

    def __init__(self, view: Any, loss: Loss) -> None:
        self._view = view
        self._keys = {t.name: k for k, t in loss.terms()}

    def __getitem__(self, name: str) -> Any:
        return self._view.sum(self._keys[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def centred(self, square: str, first: str) -> Any:
        return self._view.centred(self._keys[square], self._keys[first])

    def overflowed(self) -> bool:
        """Whether an exact total overflowed float64 (it is then an inf or nan float)."""
        return any(isinstance(v, float) for v in self.values())


def _float(x: Any) -> float:
    """An exact value as the nearest float (an inf where it is beyond float64's range)."""
    try:
        return float(x)
    except OverflowError:
        return math.copysign(math.inf, x)


def value_of(loss: Loss, view: Any, component: tuple | None) -> Any:
    """A definition's value read through ``view`` (a float, or an array of replicates).

    A ratio whose exact sums overflowed float64 (squares of values beyond
    about 1e154) is NaN, as the mean of an overflowed loss is infinite.
    """
    d = loss.definition
    if d.kind == MEAN:
        return loss.finish(div(view.sum(loss.rows_key), view.weight))
    assert d.reduce is not None
    inputs: Any
    if d.component is not None:
        assert component is not None
        inputs = view.component(component)
        if inputs is None:
            return math.nan
    else:
        inputs = _Totals(view, loss)
        if inputs.overflowed() or isinstance(view.weight, float):
            return math.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # (empty replicates: NaN)
        out = d.reduce(inputs, view.weight, loss.params)
    return out if isinstance(out, np.ndarray) else _float(out)


def details_of(loss: Loss, view: ExactView, component: tuple | None) -> dict:
    """What a curve metric reports beside its value (reliability bins, error bound)."""
    d = loss.definition
    if d.details is None or component is None:
        return {}
    inputs = view.component(component)
    return d.details(inputs, view.weight, loss.params) if inputs is not None else {}


__all__ = ["BinView", "ExactView", "ReplicateView", "details_of", "exact", "value_of"]
