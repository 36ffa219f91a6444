"""The score histogram of roc_auc and pr_auc: exact weights of positives and negatives per score.

Scores are keyed by their float64 bits in an order-preserving way (-0.0 and
0.0 equal).  While at most ``MAX_KEYS`` distinct scores occur the histogram
is exact; beyond that keys drop low bits (the same for every group: the
smallest shift that fits, whatever the order rows arrive in), and the
metrics report the worst-case error this can cause (see
:mod:`lossctl.core.metrics`).  A histogram per group: the whole stream, or
each slice.  Weighted sides keep their exact weight sums sparse in (key,
exponent) (:class:`KeyWeights`), so memory follows the keys and exponents
that occur rather than every exponent times every key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .exact import _SCALE, ExactSum

Array = np.ndarray

MAX_KEYS = 1 << 16  # distinct scores kept exactly per histogram; beyond, keys drop low bits
_EXPONENTS = 2048  # biased float64 exponents (weights are finite and >= 0: no sign bit)
_HALF = 26  # a 53-bit significand is added as two halves: sums of the halves stay exact
_BLOCK = 1 << 26  # rows per float bincount of the halves (< 2**27 each): sums below 2**53
_FLUSH_ROWS = 1 << 35  # int64 half sums cannot overflow before this many rows
_SIGN = np.uint64(1 << 63)


class KeyWeights:
    """Exact sums of finite weights >= 0 per key code, sparse in (code, exponent).

    A weight is ``m 2**(e - 1075)`` with ``m`` its 53-bit significand: the
    two halves of ``m`` are summed as int64 per (code, exponent) pair that
    occurs, kept sorted in ``pairs``, and folded into exact integers (units
    of 2**-1074, in ``ints``) only when totals are read.  A dense GroupedSum
    would keep every exponent seen for every key: with 65,536 keys and ~40
    weight exponents, ~80 MiB per side; this keeps the few pairs per key
    that occur, and merging two of them (a coarser shift, another state)
    stays in int64 arithmetic.
    """

    def __init__(self, groups: int = 0) -> None:
        self.pairs = np.zeros(0, dtype=np.int64)  # code * 2048 + biased exponent, sorted
        self.high = np.zeros(0, dtype=np.int64)  # per pair: sum of significands >> 26
        self.low = np.zeros(0, dtype=np.int64)  # and of their low 26 bits
        self.ints: list[int] = [0] * groups  # folded totals per code
        self._rows = 0  # rows in the int64 sums since the last fold (bounds them)

    def grow(self, groups: int) -> None:
        if groups > len(self.ints):
            self.ints.extend([0] * (groups - len(self.ints)))

    def add(self, w: Array, codes: Array) -> None:
        """Add weight ``w[i]`` to code ``codes[i]``, exactly."""
        if len(w) > _BLOCK:  # (the float bins below are exact for this many rows)
            for start in range(0, len(w), _BLOCK):
                self.add(w[start:start + _BLOCK], codes[start:start + _BLOCK])
            return
        self.grow(int(codes.max()) + 1 if len(codes) else 0)
        bits = np.ascontiguousarray(w, dtype=np.float64).view(np.uint64)
        exp = (bits >> np.uint64(52)).astype(np.int64)
        sig = (bits & np.uint64((1 << 52) - 1)) | np.where(exp > 0, np.uint64(1 << 52), np.uint64(0))
        uniq, inverse = np.unique(codes.astype(np.int64) * _EXPONENTS + exp, return_inverse=True)
        # float bins are exact: each half is below 2**27 and there are at most _BLOCK of them
        high = np.bincount(inverse, weights=(sig >> np.uint64(_HALF)).astype(np.float64))
        low = np.bincount(inverse, weights=(sig & np.uint64((1 << _HALF) - 1)).astype(np.float64))
        self._merge(uniq, high.astype(np.int64), low.astype(np.int64), len(bits))

    def absorb(self, other: KeyWeights, codes: Array) -> None:
        """Add ``other``'s sums, its code ``i`` becoming ``codes[i]`` (codes may fall together)."""
        self.grow(int(codes.max()) + 1 if len(codes) else 0)
        for i, v in enumerate(other.ints):
            if v:
                self.ints[int(codes[i])] += v
        if not len(other.pairs):
            return
        pairs = codes[other.pairs // _EXPONENTS] * _EXPONENTS + other.pairs % _EXPONENTS
        order = np.argsort(pairs, kind="stable")
        pairs = pairs[order]
        starts = np.flatnonzero(np.concatenate([[True], pairs[1:] != pairs[:-1]]))
        self._merge(pairs[starts], np.add.reduceat(other.high[order], starts),
                    np.add.reduceat(other.low[order], starts), other._rows)

    def _merge(self, uniq: Array, high: Array, low: Array, rows: int) -> None:
        """Add int64 half sums of distinct sorted pairs (from ``rows`` rows) to ours."""
        at = np.searchsorted(self.pairs, uniq)
        known = np.zeros(len(uniq), dtype=bool)
        if len(self.pairs):
            known = self.pairs[np.minimum(at, len(self.pairs) - 1)] == uniq
        old = at[known]  # (distinct positions: plain fancy indexing adds exactly)
        self.high[old] += high[known]
        self.low[old] += low[known]
        new = ~known
        self.pairs = np.insert(self.pairs, at[new], uniq[new])
        self.high = np.insert(self.high, at[new], high[new])
        self.low = np.insert(self.low, at[new], low[new])
        self._rows += rows
        if self._rows >= _FLUSH_ROWS:
            self._fold()

    def _fold(self) -> None:
        """Move the int64 pair sums into the exact integers per code."""
        codes, exp = self.pairs // _EXPONENTS, self.pairs % _EXPONENTS
        ints = self.ints
        for e in np.unique(exp).tolist():  # (a few dozen exponents: object arithmetic per one)
            sel = exp == e
            total = (self.high[sel].astype(object) * (1 << _HALF) + self.low[sel].astype(object)) \
                * (1 << (max(e, 1) - 1))
            for c, t in zip(codes[sel].tolist(), total.tolist(), strict=True):
                ints[c] += t
        self.pairs = np.zeros(0, dtype=np.int64)
        self.high = np.zeros(0, dtype=np.int64)
        self.low = np.zeros(0, dtype=np.int64)
        self._rows = 0

    def scaled_totals(self) -> list[int]:
        """The exact sum of every code in units of 2**-1074."""
        self._fold()
        return list(self.ints)

    def to_json(self) -> list:  # (the format of GroupedSum.to_json)
        return [ExactSum(v).to_json() for v in self.scaled_totals()]

    @classmethod
    def from_json(cls, data: list) -> KeyWeights:
        out = cls()
        out.ints = [ExactSum.from_json(d).scaled for d in data]
        return out


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
        self.weights = KeyWeights() if weighted else None

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
            self.weights.absorb(other.weights, codes)

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
            saved.weights = KeyWeights.from_json(data["weights"])
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
