"""States that are not sums of per-row terms: reliability bins, score histograms, maxima.

A definition of the catalogue names one of these specs as its ``component``;
the evaluation state keeps one grouped state per spec (deduplicated by
``key``) for the whole stream, one per slice and, where ``intervals`` holds,
one per bootstrap bucket.  Every state is exact and mergeable: integer row
counts, exact weight sums (:class:`lossctl.core.exact.GroupedSum`), maxima.

- :class:`Binned`: exact weighted sums per bin (or class) of a few channels:
  the reliability bins of ``ece`` (weight, sum of p, sum of y per bin) and the
  per-class counts of ``macro_f1``.
- :class:`ScoreHistogram`: exact weights of positives and negatives per score,
  for ``roc_auc`` and ``pr_auc``.  Scores are keyed by their float64 bits in
  an order-preserving way; while at most ``MAX_KEYS`` distinct scores occur
  the histogram is exact, beyond that keys drop low bits (the same for every
  group: the smallest shift that fits, whatever the order rows arrive in), and
  the metric reports the worst-case error this can cause.
- :class:`Maximum`: the largest per-row value (``max_error``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .exact import _SCALE, ExactSum, GroupedSum

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
# Score histograms
# --------------------------------------------------------------------------

MAX_KEYS = 1 << 16  # distinct scores kept exactly per histogram; beyond, keys drop low bits
_SIGN = np.uint64(1 << 63)


def ordered_bits(x: Array) -> Array:
    """float64 -> uint64 keys in the same order as the floats (-0.0 and 0.0 equal).

    Non-negative floats get the sign bit set, negative ones have every bit
    flipped: one XOR with a mask made by an arithmetic shift of the sign.
    """
    bits = (np.asarray(x, dtype=np.float64) + 0.0).view(np.uint64)  # (-0.0 + 0.0 is 0.0)
    flip = (bits.view(np.int64) >> np.int64(63)).view(np.uint64) | _SIGN
    return np.bitwise_xor(bits, flip, out=flip)


@dataclass(frozen=True)
class ScoreHistogram:
    """Positives' and negatives' weights per score (binary labels, any real scores)."""

    key: tuple = ("score_histogram",)
    intervals: bool = False
    # why --ci gives no interval (the report says so beside "ci": null)
    no_intervals: str = ("no bootstrap interval: the score histogram is kept once, not per "
                         "bootstrap bucket (1,000 histograms of up to 65,536 keys)")

    def new(self, groups: int, weighted: bool) -> HistogramState:
        return HistogramState(groups, weighted)


@dataclass
class ScoreTable:
    """A histogram's totals per distinct key, in increasing score order.

    ``neg`` and ``pos`` are object arrays of exact integers: weights in units
    of ``1 / scale`` (a power of two), or row counts (``scale`` 1) when unweighted.
    ``mixed`` marks keys that hold more than one distinct score: only there
    can the bucketing make a metric inexact.
    """

    neg: Array
    pos: Array
    mixed: Array
    scale: int
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # metrics computed once

    def floats(self, a: Array) -> Array:
        return np.array([v / self.scale for v in a.tolist()], dtype=float)


class _Side:
    """The scores of one label: keys (ordered score bits >> shift) -> counts and exact weights."""

    def __init__(self, weighted: bool) -> None:
        self.keys = np.zeros(0, dtype=np.uint64)  # in code order (order of first appearance)
        self.sorted_keys = np.zeros(0, dtype=np.uint64)
        self.sorted_codes = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.low = np.zeros(0, dtype=np.uint64)  # smallest and largest score bits per key:
        self.high = np.zeros(0, dtype=np.uint64)  # a key with low < high holds several scores
        self.weights = GroupedSum(0) if weighted else None

    def _lookup(self, uniq: Array) -> tuple[Array, Array]:
        """Codes of distinct sorted keys, and the keys among them not seen before (appended)."""
        codes, known = known_codes(self.sorted_keys, self.sorted_codes, uniq)
        new = ~known
        fresh = uniq[new]
        if len(fresh):
            start = len(self.keys)
            codes[new] = np.arange(start, start + len(fresh))
            self._append(fresh, codes[new])
        return codes, fresh

    def _codes(self, keys: Array) -> Array:
        """Codes of any ``keys`` (new keys get new codes, appended)."""
        uniq, inverse = np.unique(keys, return_inverse=True)  # (sort-based: fast with inverse)
        return self._lookup(uniq)[0][inverse.reshape(-1)]

    def _append(self, new: Array, codes: Array) -> None:
        """Add keys not seen before (sorted, distinct), with their new codes."""
        n = len(new)
        self.keys = np.concatenate([self.keys, new])
        # a merge of two sorted runs, not a new sort of every key
        at = np.searchsorted(self.sorted_keys, new)
        self.sorted_keys = np.insert(self.sorted_keys, at, new)
        self.sorted_codes = np.insert(self.sorted_codes, at, codes)
        self.counts = np.concatenate([self.counts, np.zeros(n, dtype=np.int64)])
        self.low = np.concatenate([self.low, np.full(n, _ALL_ONES, dtype=np.uint64)])
        self.high = np.concatenate([self.high, np.zeros(n, dtype=np.uint64)])
        if self.weights is not None:
            self.weights.grow(len(self.keys))

    def add(self, bits: Array, shift: int, w: Array | None) -> Array:
        """Add rows by their ordered score bits; returns the keys not seen before (sorted).

        One sort of the rows by score gives everything per key: its rows
        (counts), smallest and largest score (the first and last of its run),
        and the codes of the sorted rows for the exact weight sums.
        """
        order = np.argsort(bits) if self.weights is not None else None
        sorted_bits = bits[order] if order is not None else np.sort(bits)  # (a sort is 2x faster)
        keys = sorted_bits >> np.uint64(shift)
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        ends = np.append(starts[1:], len(keys))
        codes, fresh = self._lookup(keys[starts])
        rows = ends - starts
        self.counts[codes] += rows  # (codes are distinct: plain fancy indexing is exact)
        self.low[codes] = np.minimum(self.low[codes], sorted_bits[starts])
        self.high[codes] = np.maximum(self.high[codes], sorted_bits[ends - 1])
        if order is not None:
            assert self.weights is not None and w is not None
            self.weights.add(w[order], np.repeat(codes, rows))
        return fresh

    def add_totals(self, keys: Array, other: _Side) -> None:
        """Add ``other``'s keys, renamed to ``keys`` (coarser keys may fall together)."""
        if not len(keys):
            return
        codes = self._codes(keys)
        np.add.at(self.counts, codes, other.counts)
        np.minimum.at(self.low, codes, other.low)
        np.maximum.at(self.high, codes, other.high)
        if self.weights is not None and other.weights is not None:
            self.weights.add_scaled(other.weights.scaled_totals(), codes.tolist())

    def exact_weights(self) -> Array:
        """Exact weight per key (units of 2**-1074), or the row count unweighted; object ints."""
        if self.weights is not None:
            return np.array(self.weights.scaled_totals(), dtype=object)
        return np.array(self.counts.tolist(), dtype=object)

    def to_json(self) -> dict:
        return {"keys": [hex(int(k)) for k in self.keys], "counts": self.counts.tolist(),
                "low": [hex(int(k)) for k in self.low], "high": [hex(int(k)) for k in self.high],
                "weights": self.weights.to_json() if self.weights is not None else None}

    @classmethod
    def from_json(cls, data: dict, weighted: bool) -> _Side:
        side = cls(weighted)
        saved = cls(weighted)
        saved.keys = np.array([int(k, 16) for k in data["keys"]], dtype=np.uint64)
        saved.counts = np.array(data["counts"], dtype=np.int64)
        saved.low = np.array([int(k, 16) for k in data["low"]], dtype=np.uint64)
        saved.high = np.array([int(k, 16) for k in data["high"]], dtype=np.uint64)
        if weighted:
            saved.weights = GroupedSum.from_json(data["weights"])
            saved.weights.grow(len(saved.keys))
        side.add_totals(saved.keys, saved)
        return side


_ALL_ONES = np.iinfo(np.uint64).max


def known_codes(sorted_keys: Array, sorted_codes: Array, uniq: Array) -> tuple[Array, Array]:
    """Codes of the sorted, distinct ``uniq`` in a code book (its keys sorted, with their codes).

    Returns the codes (undefined where not known) and which keys are known.
    """
    codes = np.empty(len(uniq), dtype=np.int64)
    known = np.zeros(len(uniq), dtype=bool)
    if len(sorted_keys) and len(uniq):
        pos = np.minimum(np.searchsorted(sorted_keys, uniq), len(sorted_keys) - 1)
        known = sorted_keys[pos] == uniq
        codes[known] = sorted_codes[pos[known]]
    return codes, known


def _missing(keys: Array, sorted_keys: Array) -> int:
    """How many of the distinct ``keys`` are not in ``sorted_keys``."""
    if not len(sorted_keys) or not len(keys):
        return len(keys)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return int(np.count_nonzero(sorted_keys[at] != keys))


def _distinct(keys: Array) -> Array:
    """The distinct values of ``keys``, sorted (a sort and a compare: NumPy 2's hash-based
    ``np.unique`` is about 20x slower on uint64 keys)."""
    keys = np.sort(keys)
    if len(keys) < 2:
        return keys
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]


class _Hist:
    """One histogram: negatives and positives keyed by the same ``shift`` of their score bits."""

    def __init__(self, weighted: bool) -> None:
        self.weighted = weighted
        self.shift = 0
        self.sides = (_Side(weighted), _Side(weighted))  # label 0, label 1
        self.distinct = 0  # distinct keys of both sides together
        self._table: ScoreTable | None = None

    def add(self, bits: Array, label: Array, w: Array | None) -> None:
        self._table = None
        for start in range(0, len(bits), MAX_KEYS):  # (bounds the keys held before a _fit)
            cut = slice(start, start + MAX_KEYS)
            b, lab = bits[cut], label[cut]
            for i, rows in enumerate((~lab, lab)):
                if rows.any():
                    fresh = self.sides[i].add(b[rows], self.shift,
                                              None if w is None else w[cut][rows])
                    self.distinct += _missing(fresh, self.sides[1 - i].sorted_keys)
            self._fit()

    def _count(self) -> None:
        neg, pos = self.sides
        self.distinct = len(neg.keys) + _missing(pos.sorted_keys, neg.sorted_keys)

    def _fit(self) -> None:
        """Drop low key bits until at most MAX_KEYS distinct scores remain (never fewer bits).

        The result is the smallest shift at which every score seen so far
        fits: the same whatever order the rows (or merged states) came in.
        """
        if self.distinct <= MAX_KEYS:
            return
        neg, pos = self.sides
        scores = _distinct(np.concatenate([neg.sorted_keys, pos.sorted_keys]))

        def fits(extra: int) -> bool:  # (sorted keys stay sorted when shifted: count the steps)
            keys = scores >> np.uint64(extra)
            return 1 + int(np.count_nonzero(keys[1:] != keys[:-1])) <= MAX_KEYS

        low, high = 1, 63 - self.shift  # at shift 63 two keys are left: that fits
        while low < high:  # the smallest extra shift that fits (fitting is monotone in it)
            mid = (low + high) // 2
            if fits(mid):
                high = mid
            else:
                low = mid + 1
        self._coarsen(self.shift + low)

    def _coarsen(self, shift: int) -> None:
        extra = np.uint64(shift - self.shift)
        old = self.sides
        self.sides = (_Side(self.weighted), _Side(self.weighted))
        for mine, theirs in zip(self.sides, old, strict=True):
            mine.add_totals(theirs.keys >> extra, theirs)
        self.shift = shift
        self._count()

    def merge(self, other: _Hist) -> None:
        self._table = None
        shift = max(self.shift, other.shift)
        if shift > self.shift:
            self._coarsen(shift)
        extra = np.uint64(shift - other.shift)
        for mine, theirs in zip(self.sides, other.sides, strict=True):
            mine.add_totals(theirs.keys >> extra, theirs)
        self._count()
        self._fit()

    def table(self) -> ScoreTable:
        """Per distinct key, in increasing score order: exact negatives, positives, and mixed.

        Made once until rows are added; weights in the coarsest unit that
        keeps them integers (small integers make the metrics' exact sums fast).
        """
        if self._table is None:
            self._table = self._make_table()
        return self._table

    def _make_table(self) -> ScoreTable:
        neg_side, pos_side = self.sides
        uniq = _distinct(np.concatenate([neg_side.keys, pos_side.keys]))
        low = np.full(len(uniq), _ALL_ONES, dtype=np.uint64)
        high = np.zeros(len(uniq), dtype=np.uint64)
        out = []
        for side in self.sides:
            at = np.searchsorted(uniq, side.keys)
            w = np.zeros(len(uniq), dtype=object)
            w[at] = side.exact_weights()
            out.append(w)
            np.minimum.at(low, at, side.low)
            np.maximum.at(high, at, side.high)
        if not self.weighted:
            return ScoreTable(out[0], out[1], low < high, 1)
        nonzero = [v for v in (*out[0].tolist(), *out[1].tolist()) if v]
        zeros = min(((v & -v).bit_length() - 1 for v in nonzero), default=0)  # common factor 2**zeros
        zeros = min(zeros, _SCALE)
        neg, pos = (np.array([v >> zeros for v in a.tolist()], dtype=object) for a in out)
        return ScoreTable(neg, pos, low < high, 1 << (_SCALE - zeros))

    def to_json(self) -> dict:
        return {"shift": self.shift, "sides": [s.to_json() for s in self.sides]}

    @classmethod
    def from_json(cls, data: dict, weighted: bool) -> _Hist:
        h = cls(weighted)
        h.shift = int(data["shift"])
        h.sides = tuple(_Side.from_json(d, weighted) for d in data["sides"])  # type: ignore[assignment]
        h._count()
        return h


class HistogramState:
    """A :class:`ScoreHistogram` per group (one group: the whole stream)."""

    def __init__(self, groups: int, weighted: bool) -> None:
        self.weighted = weighted
        self.hists: dict[int, _Hist] = {}
        self.groups = groups

    def grow(self, groups: int) -> None:
        self.groups = max(self.groups, groups)

    def _hist(self, g: int) -> _Hist:
        h = self.hists.get(g)
        if h is None:
            h = self.hists[g] = _Hist(self.weighted)
        return h

    def add(self, y: Array, p: Array, w: Array | None, codes: Array | None) -> None:
        bits = ordered_bits(p)
        label = y == 1.0
        if codes is None:
            self._hist(0).add(bits, label, w)
            return
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        cuts = np.flatnonzero(np.diff(sorted_codes)) + 1
        for part in np.split(order, cuts):
            if len(part):
                self._hist(int(codes[part[0]])).add(bits[part], label[part],
                                                    None if w is None else w[part])

    def merge(self, other: HistogramState, codes: Sequence[int] | None = None) -> None:
        for g, h in other.hists.items():
            self._hist(g if codes is None else int(codes[g])).merge(h)
        self.grow(other.groups if codes is None else max(codes, default=-1) + 1)

    def table(self, g: int) -> ScoreTable | None:
        h = self.hists.get(g)
        return None if h is None else h.table()

    def to_json(self) -> dict:
        return {"groups": self.groups, "hists": {str(g): h.to_json() for g, h in self.hists.items()}}

    @classmethod
    def from_json(cls, spec: ScoreHistogram, data: dict, weighted: bool) -> HistogramState:
        st = cls(data["groups"], weighted)
        st.hists = {int(g): _Hist.from_json(h, weighted) for g, h in data["hists"].items()}
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
