"""States that are not sums of per-row terms: reliability bins, score histograms, maxima.

A definition of the catalogue names one of these specs as its ``component``;
the evaluation state keeps one grouped state per spec (deduplicated by
``key``) for the whole stream, one per slice and, where ``intervals`` holds,
one per bootstrap bucket.  Every state is exact and mergeable: integer row
counts, exact weight sums (:class:`lossctl.core.exact.GroupedSum`), maxima.

- :class:`Binned`: exact weighted sums per bin (or class) of a few channels:
  the reliability bins of ``ece`` (weight, sum of p, sum of y per bin) and the
  per-class counts of ``macro_f1``.
- :class:`~lossctl.core.histogram.ScoreHistogram` (its own module): exact
  weights of positives and negatives per score, for ``roc_auc`` and ``pr_auc``.
- :class:`Maximum`: the largest per-row value (``max_error``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .exact import _SCALE, ExactSum, GroupedSum
from .histogram import HistogramState, ScoreHistogram

Array = np.ndarray
UNIT = Fraction(1, 1 << _SCALE)  # an exact sum's integer counts units of 2**-1074


def _groups_of(codes: Array | None, n: int) -> Array:
    return np.zeros(n, dtype=np.int64) if codes is None else codes.astype(np.int64, copy=False)


def exact(totals: Sequence[ExactSum]) -> Array:
    """Exact sums as an object array of Fractions (NaN where a sum overflowed)."""
    return np.array([Fraction(t.scaled) * UNIT if not t.nonfinite else float("nan")
                     for t in totals], dtype=object)


# --------------------------------------------------------------------------
# Binned sums
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """One binned sum: each row's bin (``code``), and the value summed (None: the weight)."""

    name: str
    code: Callable[[Array, Array], Array]  # (y, p) -> int codes in [0, Binned.bins)
    value: Callable[[Array, Array], Array] | None = None


@dataclass(frozen=True)
class Binned:
    """Exact weighted sums per bin of a few channels, and the rows per bin of the first."""

    key: tuple
    bins: int
    channels: tuple[Channel, ...]
    intervals: bool = True

    def new(self, groups: int, weighted: bool) -> BinnedState:
        return BinnedState(self, groups, weighted)


class BinnedState:
    """:class:`Binned` sums for ``groups`` groups (one group: the whole stream)."""

    def __init__(self, spec: Binned, groups: int, weighted: bool) -> None:
        self.spec = spec
        self.groups = groups
        self.weighted = weighted
        self.rows = np.zeros(groups * spec.bins, dtype=np.int64)  # rows per bin of channel 0
        self.sums = {c.name: GroupedSum(groups * spec.bins) for c in spec.channels
                     if weighted or c.value is not None}
        self.counts = {c.name: np.zeros(groups * spec.bins, dtype=np.int64) for c in spec.channels
                       if not weighted and c.value is None}

    def grow(self, groups: int) -> None:
        """Make room for group codes below ``groups`` (cells are group * bins + bin)."""
        if groups <= self.groups:
            return
        size = groups * self.spec.bins
        self.rows = np.pad(self.rows, (0, size - len(self.rows)))
        for s in self.sums.values():
            s.grow(size)
        for name, c in self.counts.items():
            self.counts[name] = np.pad(c, (0, size - len(c)))
        self.groups = groups

    def add(self, y: Array, p: Array, w: Array | None, codes: Array | None) -> None:
        g = _groups_of(codes, len(y)) * self.spec.bins
        size = self.groups * self.spec.bins
        for i, c in enumerate(self.spec.channels):
            cell = g + c.code(y, p)
            if i == 0:
                self.rows += np.bincount(cell, minlength=size)
            if c.value is None:
                if w is None:
                    self.counts[c.name] += np.bincount(cell, minlength=size)
                else:
                    self.sums[c.name].add(w, cell)
            elif w is None:
                self.sums[c.name].add(c.value(y, p), cell)
            else:
                self.sums[c.name].add_weighted(c.value(y, p), w, cell)

    def merge(self, other: BinnedState, codes: Sequence[int] | None = None) -> None:
        """Add ``other``'s groups (``codes`` maps them to ours; default: the same codes)."""
        b = self.spec.bins
        idx = np.arange(other.groups) if codes is None else np.asarray(codes, dtype=np.int64)
        self.grow(int(idx.max()) + 1 if idx.size else 0)
        cells = (idx[:, None] * b + np.arange(b)).reshape(-1)
        np.add.at(self.rows, cells, other.rows)
        for name, s in self.sums.items():
            s.add_totals(other.sums[name].totals(), cells.tolist())
        for name, c in self.counts.items():
            np.add.at(c, cells, other.counts[name])

    def channel(self, name: str) -> Array:
        """(groups, bins) object array of the exact sums of one channel."""
        if name in self.counts:
            values = np.array([Fraction(int(n)) for n in self.counts[name].tolist()], dtype=object)
        else:
            values = exact(self.sums[name].totals())
        return values.reshape(self.groups, self.spec.bins)

    def channel_floats(self, name: str) -> Array:
        """(groups, bins) float sums of one channel (for bootstrap replicates)."""
        if name in self.counts:
            return self.counts[name].astype(float).reshape(self.groups, self.spec.bins)
        return np.array([t.value for t in self.sums[name].totals()]).reshape(self.groups,
                                                                            self.spec.bins)

    def bin_rows(self) -> Array:
        return self.rows.reshape(self.groups, self.spec.bins)

    def to_json(self) -> dict:
        return {"groups": self.groups, "rows": self.rows.tolist(),
                "sums": {k: s.to_json() for k, s in self.sums.items()},
                "counts": {k: c.tolist() for k, c in self.counts.items()}}

    @classmethod
    def from_json(cls, spec: Binned, data: dict, weighted: bool) -> BinnedState:
        st = cls(spec, data["groups"], weighted)
        st.rows = np.array(data["rows"], dtype=np.int64)
        for k in st.sums:
            st.sums[k] = GroupedSum.from_json(data["sums"][k])
            st.sums[k].grow(st.groups * spec.bins)
        for k in st.counts:
            st.counts[k] = np.array(data["counts"][k], dtype=np.int64)
        return st


# --------------------------------------------------------------------------
# Maxima
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Maximum:
    """The largest per-row value of rows with a positive weight."""

    key: tuple
    value: Callable[[Array, Array], Array]
    intervals: bool = True

    def new(self, groups: int, weighted: bool) -> MaximumState:
        return MaximumState(self, groups)


class MaximumState:
    def __init__(self, spec: Maximum, groups: int) -> None:
        self.spec = spec
        self.groups = groups
        self.max = np.full(groups, -np.inf)

    def grow(self, groups: int) -> None:
        if groups > self.groups:
            self.max = np.concatenate([self.max, np.full(groups - self.groups, -np.inf)])
            self.groups = groups

    def add(self, y: Array, p: Array, w: Array | None, codes: Array | None) -> None:
        v = self.spec.value(y, p)
        if w is not None:
            v = np.where(w > 0, v, -np.inf)
        if codes is None:
            if len(v):
                self.max[0] = max(self.max[0], float(v.max()))
        else:
            np.maximum.at(self.max, codes, v)

    def merge(self, other: MaximumState, codes: Sequence[int] | None = None) -> None:
        idx = np.arange(other.groups) if codes is None else np.asarray(codes, dtype=np.int64)
        self.grow(int(idx.max()) + 1 if idx.size else 0)
        np.maximum.at(self.max, idx, other.max)

    def to_json(self) -> dict:
        return {"groups": self.groups, "max": [repr(float(v)) for v in self.max]}

    @classmethod
    def from_json(cls, spec: Maximum, data: dict, weighted: bool) -> MaximumState:
        st = cls(spec, data["groups"])
        st.max = np.array([float(v) for v in data["max"]])
        return st


Spec = Any  # Binned | ScoreHistogram | Maximum


def load_component(spec: Spec, data: dict, weighted: bool) -> Any:
    """The state of ``spec`` saved by ``to_json``."""
    kind = {Binned: BinnedState, ScoreHistogram: HistogramState, Maximum: MaximumState}[type(spec)]
    return kind.from_json(spec, data, weighted)
