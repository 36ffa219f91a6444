"""Exact sums: ``ExactSum`` (one total) and ``GroupedSum`` (one total per group).

Every sum is kept exactly (as an integer multiple of 2**-1074, the smallest
float64 step), so a result does not change by a single bit however the rows
are cut into chunks and in whatever order partial states are merged.  A mean
is the correctly rounded quotient of two exact sums.

The exact sum of a chunk is vectorised: each value's float64 bits are split
into a high part (its top 37 significant bits) and the rest; values are binned
by their exponent with ``np.bincount``.  Within a bin every high part is an
integer multiple of one power of two below 2**37, so up to 2**16 of them add
up exactly in float64, and likewise the low parts.  The few non-empty bins are
then folded into a Python integer.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import native

BLOCK = 1 << 16  # values per exact bincount pass: keeps bin sums exact and cache-sized
_SCALE = 1074  # every finite float64 is an integer multiple of 2**-1074
_HI_MASK = np.uint64(0xFFFF_FFFF_FFFF_0000)
_NBINS = 4096  # sign bit + 11 exponent bits
_NONFINITE_BINS = (0x7FF, 0xFFF)
# |x| >= 2**1007: 2**16 high parts of such values could overflow a float bin sum,
# so these (rare) values are added as Python integers instead
_HUGE_EXP = 2030


class _Workspace(threading.local):
    """Per-thread scratch buffers, reused so that no chunk page-faults fresh memory."""

    def __init__(self) -> None:
        self.exp = np.empty(BLOCK, dtype=np.int64)
        self.hi = np.empty(BLOCK, dtype=np.uint64)
        self.lo = np.empty(BLOCK, dtype=np.float64)
        self.bins = np.empty((2, _NBINS), dtype=np.float64)  # for the C binning


_ws = _Workspace()
_exactsum = native.load("_exactsum")


def _fold(bins: np.ndarray) -> int:
    """Turn exact per-exponent float sums into one integer (units of 2**-1074)."""
    total = 0
    for v in bins[bins != 0].tolist():
        num, den = v.as_integer_ratio()
        total += num << (_SCALE - den.bit_length() + 1)
    return total


def _bins(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-(sign, exponent) sums of the high and the low parts of at most BLOCK values."""
    if _exactsum is not None:  # the same sums in one pass, in C
        _exactsum.bin_sums(block, _ws.bins)
        return _ws.bins[0], _ws.bins[1]
    n = block.size
    bits = block.view(np.uint64)
    exp = np.right_shift(bits, np.uint64(52), out=_ws.exp[:n], casting="unsafe")
    hi = np.bitwise_and(bits, _HI_MASK, out=_ws.hi[:n]).view(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf, only after an overflow upstream
        lo = np.subtract(block, hi, out=_ws.lo[:n])
    return np.bincount(exp, weights=hi, minlength=_NBINS), np.bincount(exp, weights=lo, minlength=_NBINS)


def exact_sum_scaled(x: np.ndarray) -> tuple[int, float]:
    """Exact sum of a float64 array: ``(integer sum in units of 2**-1074, sum of non-finite)``."""
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    total, special = 0, 0.0
    for start in range(0, x.size, BLOCK):
        block = x[start:start + BLOCK]
        sh, sl = _bins(block)
        if sh[_HUGE_EXP:0x800].any() or sh[0x800 + _HUGE_EXP:].any() or np.isnan(sh).any():
            # rare: inf/nan (after an overflow upstream) or values near the float64 limit
            biased = (block.view(np.uint64) >> np.uint64(52)) & np.uint64(0x7FF)
            top = (biased >= _HUGE_EXP) & (biased != 0x7FF)
            total += sum(int(v) for v in block[top].tolist()) << _SCALE
            with np.errstate(invalid="ignore"):  # inf + -inf is nan, as it should be
                special += float(np.sum(block[~np.isfinite(block)]))
            for b in range(_HUGE_EXP, 0x800):
                sh[b] = sl[b] = sh[b + 0x800] = sl[b + 0x800] = 0.0
        total += _fold(sh) + _fold(sl)
    return total, special


def exact_products_scaled(a: np.ndarray, b: np.ndarray) -> int:
    """Exact ``sum(a * b)`` in units of 2**-1074, for the few products that overflow float64.

    A product of doubles that large is a multiple of 2**-1074, so this is exact.
    """
    total = 0
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        f = Fraction(x) * Fraction(y)
        total += (f.numerator << _SCALE) // f.denominator
    return total


def _to_float(scaled: int) -> float:
    try:
        return scaled / (1 << _SCALE)
    except OverflowError:
        return math.inf if scaled > 0 else -math.inf


def _ratio(num: int, den: int) -> float:
    """Correctly rounded ``num / den`` for exact integers."""
    try:
        return num / den
    except OverflowError:
        return math.inf if (num > 0) == (den > 0) else -math.inf


@dataclass
class ExactSum:
    """An exact, order-independent float64 sum."""

    scaled: int = 0  # the sum of finite values, in units of 2**-1074
    nonfinite: float = 0.0  # sum of inf/nan values (only after overflow)

    def add(self, x: np.ndarray) -> None:
        s, special = exact_sum_scaled(x)
        self.scaled += s
        self.nonfinite += special

    def add_weighted(self, values: np.ndarray, weights: np.ndarray) -> None:
        """Add ``sum(values * weights)``; products that overflow float64 are added exactly."""
        with np.errstate(invalid="ignore"):
            products = values * weights
        if not _all_finite(products):
            over = np.isinf(products) & np.isfinite(values)
            if over.any():
                self.scaled += exact_products_scaled(values[over], weights[over])
            # a row of weight 0 adds nothing, even if its loss overflowed (0 * inf)
            products = np.where(over | (weights == 0.0), 0.0, products)
        self.add(products)

    def add_count(self, n: int) -> None:
        """Add the integer ``n`` (a weight sum of ``n`` unit weights)."""
        self.scaled += n << _SCALE

    def merge(self, other: ExactSum) -> None:
        self.scaled += other.scaled
        self.nonfinite += other.nonfinite

    @property
    def value(self) -> float:
        return _to_float(self.scaled) + self.nonfinite if self.nonfinite else _to_float(self.scaled)

    def mean(self, weight: ExactSum) -> float:
        """Correctly rounded ``self / weight``."""
        if self.nonfinite:
            return self.value / weight.value
        return _ratio(self.scaled, weight.scaled)

    def to_json(self) -> dict:
        return {"scaled": hex(self.scaled), "nonfinite": repr(self.nonfinite)}

    @classmethod
    def from_json(cls, data: dict) -> ExactSum:
        return cls(int(data["scaled"], 16), float(data["nonfinite"]))


class GroupedSum:
    """Exact sums per group (a slice, or a bootstrap bucket), vectorised over a chunk.

    The split of :func:`exact_sum_scaled`, with the bin index extended by the
    group: ``slot(exponent) * groups + group``.  Only exponents that occur get
    a slot, so ``slots x groups`` stays small.  Here the high part keeps 32
    significant bits, so float bins stay exact for 2**21 values each: chunk
    after chunk is added into float bins, which are turned into int64
    counters (in the unit of their exponent) only every ``_FLOAT_ROWS`` rows,
    and those into Python integers (units of 2**-1074) every
    ``_INT_ROWS`` rows, before either could lose a bit.
    """

    _FLOAT_ROWS = 1 << 21  # 2**32 * 2**21 = 2**53: float bins are exact up to here
    _INT_ROWS = 1 << 30  # 2**53 per flush, 2**9 flushes: int64 counters cannot overflow
    _MASK = np.uint64(0xFFFF_FFFF_FFE0_0000)  # sign, exponent, top 20 mantissa bits
    _LOW_BITS = 21
    _HUGE = 2020  # |x| >= 2**997: 2**21 high parts could overflow a float bin; added as ints
    _NEW, _RARE = -1, -2  # slot table marks: exponent not seen yet, value added exactly

    def __init__(self, groups: int = 0) -> None:
        self.groups = groups
        self.slot_of = np.full(4096, self._NEW, dtype=np.int64)  # biased exponent (with sign)
        for e in (*range(self._HUGE, 0x800), *range(0x800 + self._HUGE, 0x1000)):
            self.slot_of[e] = self._RARE
        self.exps: list[int] = []  # biased exponent of each slot
        self._base = self.slot_of * groups  # slot * groups, the bin row of each exponent
        self.fhi = np.zeros((0, groups))  # exact float bins since the last flush
        self.flo = np.zeros((0, groups))
        self.hi = np.zeros((0, groups), dtype=np.int64)  # in units of 2**(e - 1075 + 21)
        self.lo = np.zeros((0, groups), dtype=np.int64)  # in units of 2**(e - 1075)
        self.ints = [0] * groups  # folded exact sums, units of 2**-1074
        self.nonfinite = np.zeros(groups)
        self._float_rows = 0
        self._int_rows = 0

    def grow(self, groups: int) -> None:
        """Make room for group codes below ``groups``."""
        if groups <= self.groups:
            return
        extra = groups - self.groups
        for name in ("fhi", "flo", "hi", "lo"):
            setattr(self, name, np.pad(getattr(self, name), ((0, 0), (0, extra))))
        self.ints.extend([0] * extra)
        self.nonfinite = np.pad(self.nonfinite, (0, extra))
        self.groups = groups
        self._base = np.where(self.slot_of >= 0, self.slot_of * groups, self.slot_of)

    def _new_slots(self, exps: np.ndarray) -> None:
        for e in np.unique(exps & 0x7FF).tolist():
            self.slot_of[e] = self.slot_of[e | 0x800] = len(self.exps)
            self.exps.append(e)
        rows = len(self.exps) - len(self.hi)
        for name in ("fhi", "flo", "hi", "lo"):
            a = getattr(self, name)
            setattr(self, name, np.vstack([a, np.zeros((rows, self.groups), dtype=a.dtype)]))
        self._base = np.where(self.slot_of >= 0, self.slot_of * self.groups, self.slot_of)

    def add(self, x: np.ndarray, groups: np.ndarray) -> None:
        """Add ``x[i]`` to group ``groups[i]`` (codes below ``self.groups``), exactly."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        for start in range(0, x.size, BLOCK):
            self._add_block(x[start:start + BLOCK], groups[start:start + BLOCK])

    def _add_block(self, x: np.ndarray, groups: np.ndarray) -> None:
        if self._float_rows + len(x) > self._FLOAT_ROWS:
            self._flush_floats()
        groups = groups.astype(np.int64, copy=False)
        if _exactsum is not None and \
                _exactsum.group_sums(x, groups, self._base, self.fhi, self.flo, int(self._MASK)):
            self._float_rows += len(x)  # the common case: every exponent has its bin row
            return
        bits = x.view(np.uint64)
        exp = (bits >> np.uint64(52)).view(np.int64)
        slot = self.slot_of[exp]
        if (slot == self._NEW).any():
            self._new_slots(exp[slot == self._NEW])
        rare = self.slot_of[exp] == self._RARE
        if rare.any():  # inf/nan after an overflow, or values near the float64 limit
            for v, g in zip(x[rare].tolist(), groups[rare].tolist(), strict=True):
                if math.isfinite(v):
                    self.ints[g] += int(v) << _SCALE
                else:
                    self.nonfinite[g] += v
            x, groups, exp = x[~rare], groups[~rare], exp[~rare]
            bits = x.view(np.uint64)
        if _exactsum is not None:  # now every value has its bin row
            added = _exactsum.group_sums(x, groups, self._base, self.fhi, self.flo, int(self._MASK))
            assert added
        else:
            key = self._base[exp] + groups
            hi = (bits & self._MASK).view(np.float64)
            size = self.fhi.size
            self.fhi += np.bincount(key, weights=hi, minlength=size).reshape(self.fhi.shape)
            self.flo += np.bincount(key, weights=x - hi, minlength=size).reshape(self.flo.shape)
        self._float_rows += len(x)

    def _flush_floats(self) -> None:
        """Float bins -> int64 counters: each bin is an integer in its exponent's unit."""
        unit = np.maximum(np.array(self.exps, dtype=np.int64), 1) - 1075
        self.hi += np.ldexp(self.fhi, -(unit + self._LOW_BITS)[:, None]).astype(np.int64)
        self.lo += np.ldexp(self.flo, -unit[:, None]).astype(np.int64)
        self.fhi[:] = 0.0
        self.flo[:] = 0.0
        self._int_rows += self._float_rows
        self._float_rows = 0
        if self._int_rows >= self._INT_ROWS:
            self._flush()

    def add_weighted(self, values: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> None:
        """Add ``values * weights`` per group; products that overflow float64 are added exactly."""
        with np.errstate(invalid="ignore", over="ignore"):
            products = values * weights
        if not _all_finite(products):
            over = np.isinf(products) & np.isfinite(values)
            for i in np.flatnonzero(over).tolist():
                self.ints[int(groups[i])] += exact_products_scaled(values[i:i + 1], weights[i:i + 1])
            products = np.where(over | (weights == 0.0), 0.0, products)
        self.add(products, groups)

    def _flush(self) -> None:
        """Fold the int64 counters into the exact Python integers (object arithmetic, per slot)."""
        if not self.exps or not (self.hi.any() or self.lo.any()):
            return
        total = np.zeros(self.groups, dtype=object)
        for s, e in enumerate(self.exps):
            shift = max(e, 1) - 1
            total += self.hi[s].astype(object) * (1 << (shift + self._LOW_BITS)) \
                + self.lo[s].astype(object) * (1 << shift)
        self.ints = [a + int(b) for a, b in zip(self.ints, total.tolist(), strict=True)]
        self.hi[:] = 0
        self.lo[:] = 0
        self._int_rows = 0

    def totals(self) -> list[ExactSum]:
        """The exact sum of every group."""
        self._flush_floats()
        self._flush()
        return [ExactSum(s, float(f)) for s, f in zip(self.ints, self.nonfinite.tolist(), strict=True)]

    def add_totals(self, totals: Sequence[ExactSum], codes: Sequence[int] | None = None) -> None:
        """Add exact sums group by group (``codes`` maps their groups to ours)."""
        codes = range(len(totals)) if codes is None else codes
        self.grow(max(codes, default=-1) + 1)
        for c, t in zip(codes, totals, strict=True):
            self.ints[c] += t.scaled
            self.nonfinite[c] += t.nonfinite

    def to_json(self) -> list:
        return [t.to_json() for t in self.totals()]

    @classmethod
    def from_json(cls, data: list) -> GroupedSum:
        g = cls()
        g.add_totals([ExactSum.from_json(d) for d in data])
        return g


def _all_finite(a: np.ndarray) -> bool:
    # a sum of finite values is finite unless it overflows; only then look closer
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())

