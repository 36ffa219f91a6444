"""Distributions of per-row values: a log-bucketed histogram with exact counts and weights.

:class:`SketchState` keeps, for one stream of per-row values (the losses of
one mean, or the signed residuals ``p - y``), a histogram whose buckets are
relative: a bucket is the set of float64 values that share their sign, their
exponent and the top ``MANTISSA_BITS`` bits of their mantissa (64 buckets per
power of two, as DDSketch's linearly interpolated mapping).  Negative values
mirror the positive buckets and zero has a bucket of its own, so any sign
goes.  Per bucket it keeps the row count (an integer), the exact weight sum
(:class:`lossctl.core.exact.GroupedSum`) and the smallest and largest value:
every piece merges exactly, so a sketch does not change by a bit whatever
the chunking, threads, shards or merge order.

A quantile is read off the buckets: the bucket where the cumulative weight
first reaches ``q`` of the total (the *inverted CDF* definition: NumPy's
``method="inverted_cdf"``), represented by its midpoint clamped to the
bucket's smallest and largest value.  The true quantile is in that bucket,
so the reported value is within ``RELATIVE_ERROR`` (2**-7, 0.78%) of it
(and within ``ABSOLUTE_ERROR``, 2**-1029, for subnormal values below
2.2e-308, whose buckets have a fixed width); a
bucket holding a single distinct value (0/1 accuracies, whole numbers)
gives that value exactly, and ``max`` and ``min`` are exact.  Rows of weight
0 and NaN values are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .exact import ExactSum, GroupedSum
from .histogram import known_codes

MANTISSA_BITS = 6
RELATIVE_ERROR = 2.0 ** -(MANTISSA_BITS + 1)  # half a bucket's width, relative to its values
ABSOLUTE_ERROR = 2.0 ** -(1074 - 52 + MANTISSA_BITS + 1)  # half a subnormal bucket
_SHIFT = np.uint64(52 - MANTISSA_BITS)
_SIGN = np.uint64(1 << 63)
_KEYS = 1 << (12 + MANTISSA_BITS)  # sign + exponent + mantissa bits: every bucket key is below
_ZERO_KEY = _KEYS >> 1
_MAGNITUDE = (1 << 63) - 1
_INT_SHIFT = 52 - MANTISSA_BITS

# quantile levels as exact fractions: 0.9 means nine tenths, not the float nearest to it
LOSS_LEVELS = {"p50": Fraction(1, 2), "p90": Fraction(9, 10), "p99": Fraction(99, 100)}
SIGNED_LEVELS = {"p1": Fraction(1, 100), "p10": Fraction(1, 10), **LOSS_LEVELS}


def bucket_keys(x: np.ndarray) -> np.ndarray:
    """Each value's bucket key, in value order: ``ordered_bits(x) >> (52 - MANTISSA_BITS)``.

    Branch-free (``np.where`` on a random sign is several times slower): a
    negative value's magnitude key is mirrored below the zero key by ``^ -1``.
    """
    keys = (x + 0.0).view(np.int64)  # (+ 0.0 turns -0.0 into 0.0); a new array, changed in place
    sign = keys >> 63
    keys &= _MAGNITUDE
    keys >>= _INT_SHIFT
    keys ^= sign
    keys += _ZERO_KEY
    return keys


def _from_ordered(keys: np.ndarray) -> np.ndarray:
    """Ordered bits (see :func:`ordered_bits`) back to float64 values."""
    keys = keys.astype(np.uint64)
    bits = np.where(keys & _SIGN, keys & ~_SIGN, ~keys)
    return bits.view(np.float64)


def bucket_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest float64 of each bucket key."""
    keys = keys.astype(np.uint64)
    first = keys << _SHIFT
    last = first | ((np.uint64(1) << _SHIFT) - np.uint64(1))
    with np.errstate(invalid="ignore"):
        return _from_ordered(first), _from_ordered(last)


@dataclass(frozen=True)
class QuantileSketch:
    """The spec of one distribution: its key (``("rows", term label)`` or ``("residuals",)``)."""

    key: tuple
    signed: bool = False  # residuals: report the lower tail too

    def new(self, weighted: bool) -> SketchState:
        return SketchState(weighted)


@dataclass
class Buckets:
    """A sketch's buckets in increasing value order (what a histogram plot needs)."""

    lower: np.ndarray  # each bucket's smallest possible value
    upper: np.ndarray  # and largest
    low: np.ndarray  # the smallest and largest value seen in it
    high: np.ndarray
    rows: np.ndarray  # rows per bucket (int64)
    weight: np.ndarray  # weight per bucket (float; the row count when unweighted)


class SketchState:
    """One log-bucketed histogram of per-row values (see the module docstring)."""

    def __init__(self, weighted: bool) -> None:
        self.weighted = weighted
        self.keys = np.zeros(0, dtype=np.int64)  # in code order (first appearance)
        self._sorted = np.zeros(0, dtype=np.int64)  # keys sorted, and their codes
        self._sorted_codes = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.weights = GroupedSum(0) if weighted else None

    def _codes(self, keys: np.ndarray) -> np.ndarray:
        """Codes of sorted, distinct ``keys``; new keys get new codes."""
        codes, known = known_codes(self._sorted, self._sorted_codes, keys)
        new = keys[~known]
        if len(new):
            start, n = len(self.keys), len(new)
            codes[~known] = np.arange(start, start + n)
            self.keys = np.concatenate([self.keys, new])
            order = np.argsort(self.keys, kind="stable")
            self._sorted, self._sorted_codes = self.keys[order], order.astype(np.int64)
            self.rows = np.concatenate([self.rows, np.zeros(n, dtype=np.int64)])
            self.low = np.concatenate([self.low, np.full(n, np.inf)])
            self.high = np.concatenate([self.high, np.full(n, -np.inf)])
            if self.weights is not None:
                self.weights.grow(len(self.keys))
        return codes

    def add(self, values: np.ndarray, w: np.ndarray | None = None) -> None:
        """Add per-row ``values`` (weights ``w``; rows of weight 0 and NaN values are left out)."""
        keep = ~np.isnan(values)
        if w is not None:
            keep &= w > 0
        if not keep.all():
            values = values[keep]
            w = w[keep] if w is not None else None
        if not len(values):
            return
        keys = bucket_keys(values)
        first = int(keys.min())
        keys -= first
        counts = np.bincount(keys)
        present = np.flatnonzero(counts)
        codes = self._codes(present + first)
        self.rows[codes] += counts[present]
        lookup = np.empty(len(counts), dtype=np.int64)
        lookup[present] = codes
        row_codes = lookup[keys]
        np.minimum.at(self.low, row_codes, values)
        np.maximum.at(self.high, row_codes, values)
        if self.weights is not None:
            self.weights.add(w, row_codes)

    def merge(self, other: SketchState) -> None:
        """Add ``other``'s buckets (exact: counts, weights, extremes)."""
        if not len(other.keys):
            return
        order = np.argsort(other.keys)
        codes = np.empty(len(order), dtype=np.int64)
        codes[order] = self._codes(other.keys[order])
        np.add.at(self.rows, codes, other.rows)
        np.minimum.at(self.low, codes, other.low)
        np.maximum.at(self.high, codes, other.high)
        if self.weights is not None and other.weights is not None:
            self.weights.add_totals(other.weights.totals(), codes.tolist())

    # -- reading ------------------------------------------------------------

    def _exact_weights(self) -> list[int]:
        """Exact weight per code: units of 2**-1074, or row counts when unweighted."""
        if self.weights is None:
            return self.rows.tolist()
        return [t.scaled for t in self.weights.totals()]

    def buckets(self) -> Buckets:
        order = self._sorted_codes
        lower, upper = bucket_bounds(self._sorted)
        if self.weights is not None:
            totals = self.weights.totals()
            weight = np.array([totals[c].value for c in order.tolist()], dtype=float)
        else:
            weight = self.rows[order].astype(float)
        return Buckets(lower, upper, self.low[order], self.high[order], self.rows[order], weight)

    def quantiles(self, levels: dict[str, Fraction]) -> dict[str, float] | None:
        """Each level's quantile, with ``min`` and ``max`` (None: no row of positive weight)."""
        order = self._sorted_codes.tolist()
        exact = self._exact_weights()
        weights = [exact[c] for c in order]
        total = sum(weights)
        if not order or total <= 0:
            return None
        cum = np.cumsum(np.array(weights, dtype=object))
        lower, upper = bucket_bounds(self._sorted)
        out = {"min": float(self.low[order[0]])}
        for name, q in levels.items():
            # the first bucket where cum >= q * total, compared in exact integers
            target = q.numerator * total
            i = next(i for i, c in enumerate(cum.tolist()) if c * q.denominator >= target)
            out[name] = self._representative(order[i], float(lower[i]), float(upper[i]))
        out["max"] = float(self.high[order[-1]])
        return out

    def _representative(self, code: int, lower: float, upper: float) -> float:
        low, high = float(self.low[code]), float(self.high[code])
        if low == high:
            return low
        mid = lower / 2 + upper / 2  # (no overflow at the top of the float range)
        return min(max(mid, low), high)

    # -- serialisation ------------------------------------------------------

    def to_json(self) -> dict:
        """Buckets in key order, so equal sketches give equal JSON however they were built."""
        order = self._sorted_codes
        exact = self._exact_weights()
        return {"mantissa_bits": MANTISSA_BITS, "keys": self._sorted.tolist(),
                "rows": self.rows[order].tolist(),
                "low": [repr(v) for v in self.low[order].tolist()],
                "high": [repr(v) for v in self.high[order].tolist()],
                "weights": [hex(exact[c]) for c in order.tolist()] if self.weighted else None}

    @classmethod
    def from_json(cls, data: dict, weighted: bool) -> SketchState:
        if data.get("mantissa_bits") != MANTISSA_BITS:
            raise ValueError(f"sketch with {data.get('mantissa_bits')!r} mantissa bits")
        st = cls(weighted)
        keys = np.array(data["keys"], dtype=np.int64)
        if len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= _KEYS):
            raise ValueError("sketch keys out of order")
        st._codes(keys)
        st.rows = np.array(data["rows"], dtype=np.int64)
        st.low = np.array([float(v) for v in data["low"]], dtype=float)
        st.high = np.array([float(v) for v in data["high"]], dtype=float)
        if len(st.rows) != len(keys) or len(st.low) != len(keys) or len(st.high) != len(keys):
            raise ValueError("sketch arrays of different lengths")
        if weighted:
            st.weights = GroupedSum(0)
            st.weights.add_totals([ExactSum(int(h, 16)) for h in data["weights"]])
            st.weights.grow(len(keys))
        return st

