"""Exact, mergeable loss state: ``update(chunk)``, ``merge(other)``, ``result()``.

Every sum is kept exactly (as an integer multiple of 2**-1074, the smallest
float64 step), so a result does not change by a single bit however the rows
are cut into chunks and in whatever order partial states are merged.  The
reported mean is the correctly rounded quotient of two exact sums.

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
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from . import native
from .errors import InputError, InvalidInput, UsageError
from .losses import Check, Loss

BLOCK = 1 << 16  # values per exact bincount pass: keeps bin sums exact and cache-sized
_SCALE = 1074  # every finite float64 is an integer multiple of 2**-1074
_HI_MASK = np.uint64(0xFFFF_FFFF_FFFF_0000)
_NBINS = 4096  # sign bit + 11 exponent bits
_NONFINITE_BINS = (0x7FF, 0xFFF)
# |x| >= 2**1007: 2**16 high parts of such values could overflow a float bin sum,
# so these (rare) values are added as Python integers instead
_HUGE_EXP = 2030
STATE_VERSION = 2


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


# --------------------------------------------------------------------------
# Input preparation and checks
# --------------------------------------------------------------------------

_KERNEL_ROWS = BLOCK  # rows * columns per kernel call: keeps temporaries cache-sized


def _as_float(a: Any, role: str, width: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise UsageError(f"{role} values must be numbers (got dtype {arr.dtype})") from None
    arr = np.asarray(arr, dtype=np.float64)  # any memory layout: (n, K) may be column-major
    if width == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if width == 1 and arr.ndim != 1:
        raise UsageError(f"{role} must be one column, got shape {arr.shape}")
    if width > 1 and (arr.ndim != 2 or arr.shape[1] != width):
        raise UsageError(f"{role} must have {width} columns, got shape {arr.shape}")
    return arr


def _first_bad(mask: np.ndarray) -> tuple[int, int | None]:
    """Row (and column, for 2-D masks) of the first True in ``mask``."""
    if mask.ndim == 1:
        return int(np.flatnonzero(mask)[0]), None
    row = int(np.flatnonzero(mask.any(axis=1))[0])
    return row, int(np.flatnonzero(mask[row])[0])


class _Problems:
    """Bad values found by the checks of one chunk; the earliest row is reported.

    Each check looks at the whole chunk, so without this the first *check*
    to fail would win, not the first bad *row* (a NaN label in row 17 would
    hide a NaN prediction in row 5).
    """

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.first: InvalidInput | None = None

    def check(self, reason: str, role: str, values: np.ndarray, mask: np.ndarray,
              rows: np.ndarray | None = None) -> None:
        """Record the first True of ``mask`` (``rows`` maps filtered rows back to the chunk's)."""
        if not mask.any():
            return
        i, k = _first_bad(mask)
        row = self.offset + (int(rows[i]) if rows is not None else i)
        if self.first is None or row < self.first.row:
            value = values[i] if k is None else values[i, k]
            self.first = InvalidInput(reason, row, role, float(value), index=k)

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first


def _nonfinite_rows(a: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(a)
    return bad if bad.ndim == 1 else bad.any(axis=1)


def _all_finite(a: np.ndarray) -> bool:
    # a sum of finite values is finite unless it overflows; only then look closer
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def check_columns(losses: Sequence[Loss], label_width: int, pred_width: int) -> None:
    """Raise UsageError unless every loss can use labels/predictions of these widths."""
    for loss in losses:
        d = loss.definition
        if d.pred == "value" and pred_width != 1:
            raise UsageError(f"{loss.key} needs one prediction column, got {pred_width}")
        if d.pred == "vector" and pred_width < 2:
            raise UsageError(f"{loss.key} needs K >= 2 prediction columns (one per class), "
                             f"got {pred_width}")
        if d.label in ("value", "binary", "class") and label_width != 1:
            raise UsageError(f"{loss.key} needs one label column, got {label_width}")
        if d.label == "dist" and label_width != pred_width:
            hint = " (for a class index use sparse_softmax_ce)" if d.name == "softmax_ce" else ""
            raise UsageError(f"{loss.key} needs {pred_width} label columns, one per class, "
                             f"got {label_width}{hint}")
        if d.label == "class_or_dist" and label_width not in (1, pred_width):
            raise UsageError(f"{loss.key} needs one class-index label column or {pred_width} "
                             f"label columns, got {label_width}")


def _needs_class_index(losses: Sequence[Loss], label_width: int) -> bool:
    return any(l.definition.label == "class" or
               (l.definition.label == "class_or_dist" and label_width == 1) for l in losses)


# --------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------


@dataclass
class Result:
    """Weighted-mean loss values with the row count and weight sum behind them."""

    values: dict[str, float]
    rows: int
    rows_skipped: int
    weight_sum: float
    losses: list[Loss] = field(repr=False, default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_skipped": self.rows_skipped,
            "weight_sum": self.weight_sum,
            "losses": {l.key: {"value": self.values[l.key], "name": l.name, "params": l.params}
                       for l in self.losses},
        }


class SliceKeys:
    """The slices of ``--by`` columns: each distinct value tuple gets a code, in order of appearance.

    One object is shared by the per-thread states of a run (codes are given
    out by the reader thread); states from other runs are merged by key.
    """

    def __init__(self, columns: Sequence[str], limit: int = 10_000) -> None:
        self.columns = list(columns)
        self.limit = limit
        self.keys: list[tuple] = []
        self.index: dict[tuple, int] = {}

    def code(self, key: tuple) -> int:
        c = self.index.get(key)
        if c is None:
            if len(self.keys) >= self.limit:
                cols = ", ".join(self.columns)
                raise UsageError(f"--by {cols} has more than {self.limit} distinct values; "
                                 f"raise --max-slices or slice by a coarser column")
            c = self.index[key] = len(self.keys)
            self.keys.append(key)
        return c


class _Groups:
    """Exact per-group state of every kernel: rows, weight sum and loss sums."""

    def __init__(self, kernels: Sequence[tuple], weighted: bool, groups: int = 0) -> None:
        self.rows = np.zeros(groups, dtype=np.int64)
        self.weight = GroupedSum(groups) if weighted else None
        self.sums = {k: GroupedSum(groups) for k in kernels}

    @property
    def size(self) -> int:
        return len(self.rows)

    def grow(self, groups: int) -> None:
        if groups > self.size:
            self.rows = np.pad(self.rows, (0, groups - self.size))
            for s in self._all():
                s.grow(groups)

    def _all(self) -> list[GroupedSum]:
        return list(self.sums.values()) + ([self.weight] if self.weight is not None else [])

    def add_rows(self, codes: np.ndarray, w: np.ndarray | None) -> None:
        self.rows += np.bincount(codes, minlength=self.size)
        if self.weight is not None:
            self.weight.add(w, codes)

    def weight_totals(self) -> list[ExactSum]:
        if self.weight is not None:
            return self.weight.totals()
        return [ExactSum(int(n) << _SCALE) for n in self.rows.tolist()]

    def merge(self, other: _Groups, codes: Sequence[int] | None = None) -> None:
        """Add ``other``'s groups (``codes`` maps them to ours; default: the same codes)."""
        idx = np.arange(other.size) if codes is None else np.asarray(codes, dtype=np.int64)
        self.grow(int(idx.max()) + 1 if idx.size else 0)
        np.add.at(self.rows, idx, other.rows)
        for mine, theirs in zip(self._all(), other._all(), strict=True):
            mine.add_totals(theirs.totals(), idx.tolist())

    def to_json(self, names: dict[tuple, str]) -> dict:
        return {"rows": self.rows.tolist(),
                "weight": self.weight.to_json() if self.weight is not None else None,
                "sums": {names[k]: s.to_json() for k, s in self.sums.items()}}

    @classmethod
    def from_json(cls, data: dict, names: dict[tuple, str]) -> _Groups:
        g = cls(list(names), data["weight"] is not None, len(data["rows"]))
        g.rows = np.array(data["rows"], dtype=np.int64)
        if g.weight is not None:
            g.weight = GroupedSum.from_json(data["weight"])
            g.weight.grow(g.size)
        for k, name in names.items():
            g.sums[k] = GroupedSum.from_json(data["sums"][name])
            g.sums[k].grow(g.size)
        return g


def _total(sums: Sequence[ExactSum]) -> ExactSum:
    out = ExactSum()
    for t in sums:
        out.merge(t)
    return out


@dataclass
class RowInfo:
    """Where a chunk's rows come from, for ``--top``: file, first row in it, kept columns."""

    source: str
    first_row: int  # 0-based data row of the chunk's first row in its file
    kept: Any = None  # an Arrow batch of the --keep columns, or None
    rows: np.ndarray | None = None  # offsets of the chunk's rows from first_row, if not 0..n-1


class TopRows:
    """The N worst rows of one loss, kept in bounded memory (a running top-N).

    Ties are broken by file name and row, so the list does not depend on
    chunking, threads or the order states are merged in.
    """

    def __init__(self, key: str, n: int, higher_is_better: bool = False) -> None:
        self.key = key
        self.n = n
        self.sign = -1.0 if higher_is_better else 1.0
        self.rows: list[tuple[float, str, int, dict]] = []  # (value, file, row, kept)

    def _order(self, r: tuple) -> tuple:
        v = r[0] * self.sign
        return (-(math.inf if math.isnan(v) else v), r[1], r[2])

    def add(self, values: np.ndarray, idx: np.ndarray, info: RowInfo) -> None:
        """Offer per-row ``values`` of rows ``idx`` (indices in the chunk) of ``info``."""
        n = min(self.n, len(values))
        if n == 0:
            return
        score = np.where(np.isnan(values), np.inf, values * self.sign)
        if len(values) > n:
            cand = np.argpartition(-score, n - 1)[:n]
            # every row tied with the n-th best is a candidate, so ties resolve by row
            cand = np.flatnonzero(score >= score[cand].min())
        else:
            cand = np.arange(len(values))
        rows = idx[cand]
        kept = info.kept.take(rows).to_pylist() if info.kept is not None else [{}] * len(rows)
        offsets = rows if info.rows is None else info.rows[rows]
        for v, r, k in zip(values[cand].tolist(), offsets.tolist(), kept, strict=True):
            self.rows.append((v, info.source, info.first_row + r, k))
        self._trim()

    def _trim(self) -> None:
        self.rows.sort(key=self._order)
        del self.rows[self.n:]

    def merge(self, other: TopRows) -> None:
        self.rows.extend(other.rows)
        self._trim()

    def to_json(self) -> dict:
        return {"loss": self.key, "n": self.n, "sign": self.sign,
                "rows": [[repr(v), f, r, k] for v, f, r, k in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> TopRows:
        t = cls(data["loss"], data["n"], data["sign"] < 0)
        t.rows = [(float(v), f, r, k) for v, f, r, k in data["rows"]]
        return t


class EvalState:
    """Exact running state of several losses over one stream of rows.

    ``update`` takes one chunk: labels ``y`` (n,) or (n, K), predictions ``p``
    (n,) or (n, K), optional weights ``w`` (n,).  Rows are counted from 0
    across updates so a bad value is reported by its row in the stream.  With
    ``nan="skip"`` a row with a missing, NaN or infinite label or prediction,
    or a missing weight, is dropped for every loss and counted.

    Optional extras, all exact and mergeable: per-slice sums (``slices``, the
    codes of each row given to ``update``), per-bucket sums for bootstrap
    intervals (``buckets`` > 0, each row's bucket given to ``update``), and a
    running top-N of one loss (``top``).
    """

    def __init__(self, losses: Sequence[Loss], label_width: int = 1, pred_width: int = 1,
                 weighted: bool = False, nan: str = "error", slices: SliceKeys | None = None,
                 buckets: int = 0, seed: int = 0, top: tuple[str, int] | None = None) -> None:
        if not losses:
            raise UsageError("no loss to compute")
        if nan not in ("error", "skip"):
            raise UsageError(f"nan policy must be 'error' or 'skip', not {nan!r}")
        check_columns(losses, label_width, pred_width)
        self.losses = list(losses)
        self.label_width = label_width
        self.pred_width = pred_width
        self.weighted = weighted
        self.nan = nan
        self.rows_seen = 0
        self.rows = 0
        self.rows_skipped = 0
        self.weight_sum = ExactSum()
        self._kernels: dict[tuple, Loss] = {}
        for loss in self.losses:
            self._kernels.setdefault(loss.rows_key, loss)
        self.sums: dict[tuple, ExactSum] = {k: ExactSum() for k in self._kernels}
        checks: dict[tuple, tuple[Check, dict]] = {}
        for loss in self.losses:
            for c in loss.definition.checks:
                checks.setdefault((id(c), tuple(sorted(loss.params.items()))), (c, loss.params))
        self._checks = list(checks.values())
        self._class_index = _needs_class_index(self.losses, label_width)
        self._on_diff = any(l.definition.on_diff for l in self._kernels.values())
        self.slice_keys = slices
        self.slices = _Groups(list(self._kernels), weighted) if slices is not None else None
        self.buckets = buckets
        self.seed = seed
        self.bucket_sums = _Groups(list(self._kernels), weighted, buckets) if buckets else None
        self.top: TopRows | None = None
        if top is not None:
            key, n = top
            loss = self.loss(key)
            self.top = TopRows(loss.key, n, loss.definition.higher_is_better)

    def loss(self, key: str) -> Loss:
        """The loss this state computes under ``key`` (as written, or canonical)."""
        for l in self.losses:
            if key in (l.key, l.canonical):
                return l
        raise UsageError(f"{key!r} is not one of the losses computed "
                         f"({', '.join(l.key for l in self.losses)})")

    # -- update -------------------------------------------------------------

    def update(self, y: Any, p: Any, w: Any = None, first_row: int | None = None, *,
               slices: np.ndarray | None = None, buckets: np.ndarray | None = None,
               drop: np.ndarray | None = None, info: RowInfo | None = None,
               per_row: bool = False) -> dict[str, np.ndarray] | None:
        """Add one chunk of rows.

        ``first_row`` is the chunk's row index in the stream (for error
        messages), by default the number of rows this state has seen; give it
        when chunks of one stream are spread over several states.
        ``slices``/``buckets`` are each row's slice code and bucket;
        ``drop`` marks rows to skip like non-finite ones (with ``nan="skip"``:
        a paired comparison drops a row bad in either model); ``info`` names
        the rows for ``--top``.  With ``per_row`` the per-row losses are
        returned (NaN for skipped rows).
        """
        y = _as_float(y, "label", self.label_width)
        p = _as_float(p, "prediction", self.pred_width)
        if len(y) != len(p):
            raise UsageError(f"label and prediction lengths differ: {len(y)} != {len(p)}")
        if self.weighted:
            if w is None:
                raise UsageError("this state is weighted: pass weights")
            w = _as_float(w, "weight", 1)
            if len(w) != len(y):
                raise UsageError(f"weight length {len(w)} != {len(y)} rows")
        elif w is not None:
            raise UsageError("this state is unweighted: create it with weighted=True")
        if (self.slices is not None) != (slices is not None):
            raise UsageError("pass slice codes exactly when the state has slices")
        if (self.bucket_sums is not None) != (buckets is not None):
            raise UsageError("pass buckets exactly when the state has buckets")
        n = len(y)
        problems = _Problems(self.rows_seen if first_row is None else first_row)
        rows = None
        # a weight of +-inf is never "missing": it is always an input error
        if w is not None and not _all_finite(w):
            problems.check("weight must be finite", "weight", w, np.isinf(w))
        arrays = [("label", y), ("prediction", p)] + ([("weight", w)] if w is not None else [])
        if drop is not None or not all(_all_finite(a) for _, a in arrays):
            if self.nan == "error" and not all(_all_finite(a) for _, a in arrays):
                for role, a in arrays:
                    problems.check("missing or non-finite value (use --nan skip to drop such rows)",
                                   role, a, ~np.isfinite(a))
                self._validate(y, p, w, problems)
                problems.raise_first()
            keep = np.ones(n, dtype=bool) if drop is None else ~drop
            for _, a in arrays:
                keep &= ~_nonfinite_rows(a)
            rows = np.flatnonzero(keep)
            y, p = y[keep], p[keep]
            w = w[keep] if w is not None else None
            slices = slices[keep] if slices is not None else None
            buckets = buckets[keep] if buckets is not None else None
            self.rows_skipped += n - len(y)
        self._validate(y, p, w, problems, rows)
        problems.raise_first()
        self.rows_seen += n
        values = self._accumulate(y, p, w, slices, buckets, info, rows, per_row)
        if not per_row:
            return None
        out = {}
        for loss in self.losses:
            v = loss.finish_rows(values[loss.rows_key])
            if rows is not None:
                full = np.full(n, np.nan)
                full[rows] = v
                v = full
            out[loss.key] = v
        return out

    def _validate(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None, problems: _Problems,
                  rows: np.ndarray | None = None) -> None:
        """The spec's domain rules (NaN compares false, so it never trips them)."""
        if w is not None:
            problems.check("weight must be >= 0", "weight", w, w < 0, rows)
        if self._class_index:
            bad = (y < 0) | (y >= self.pred_width) | (y != np.floor(y))
            problems.check(f"class index must be an integer in [0, {self.pred_width})",
                           "label", y, bad, rows)
        for check, params in self._checks:
            values = y if check.role == "label" else p
            problems.check(check.reason, check.role, values, check.bad(values, params), rows)

    def _accumulate(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None,
                    slices: np.ndarray | None, buckets: np.ndarray | None, info: RowInfo | None,
                    rows: np.ndarray | None, keep_values: bool) -> dict[tuple, np.ndarray]:
        n = len(y)
        groups = [(g, c) for g, c in ((self.slices, slices), (self.bucket_sums, buckets))
                  if g is not None]
        if self.slices is not None and self.slice_keys is not None:
            self.slices.grow(len(self.slice_keys.keys))
        top_loss = self.loss(self.top.key) if self.top is not None else None
        top_key = top_loss.rows_key if top_loss is not None else None
        kept: dict[tuple, list[np.ndarray]] = {}
        step = max(1, _KERNEL_ROWS // max(self.pred_width, self.label_width))
        with np.errstate(over="ignore", under="ignore"):
            for start in range(0, n, step):
                ys, ps = y[start:start + step], p[start:start + step]
                ws = w[start:start + step] if w is not None else None
                d = ys - ps if self._on_diff else None
                for key, loss in self._kernels.items():
                    values = loss.per_row(ys, ps, d)
                    if not groups:  # else the overall sums are the groups' sums (_overall)
                        if ws is not None:
                            self.sums[key].add_weighted(values, ws)
                        else:
                            self.sums[key].add(values)
                    for g, codes in groups:
                        cs = codes[start:start + step]
                        if ws is not None:
                            g.sums[key].add_weighted(values, ws, cs)
                        else:
                            g.sums[key].add(values, cs)
                    if key == top_key and info is not None:
                        idx = np.arange(start, start + len(values))
                        self.top.add(top_loss.finish_rows(values), idx if rows is None else rows[idx],
                                     info)
                    if keep_values:
                        kept.setdefault(key, []).append(values)
        if not groups:
            if w is not None:
                self.weight_sum.add(w)
            else:
                self.weight_sum.add_count(n)
        for g, codes in groups:
            g.add_rows(codes, w)
        self.rows += n
        return {k: (np.concatenate(v) if v else np.empty(0)) for k, v in kept.items()} \
            if keep_values else {}

    # -- merge / result -----------------------------------------------------

    def empty_copy(self) -> EvalState:
        """A new, empty state of the same definition (for parallel workers and shards).

        The copy shares this state's slice keys, so worker threads agree on codes.
        """
        top = (self.top.key, self.top.n) if self.top is not None else None
        return EvalState(self.losses, self.label_width, self.pred_width, self.weighted, self.nan,
                         self.slice_keys, self.buckets, self.seed, top)

    def signature(self) -> dict:
        """What two states must share to be merged."""
        return {"losses": [l.canonical for l in self.losses], "label_width": self.label_width,
                "pred_width": self.pred_width, "weighted": self.weighted, "nan": self.nan,
                "by": self.slice_keys.columns if self.slice_keys is not None else None,
                "buckets": self.buckets, "seed": self.seed,
                "top": [self.top.key, self.top.n] if self.top is not None else None}

    def merge(self, other: EvalState) -> EvalState:
        """Fold ``other`` into this state (exact: order does not matter)."""
        mine, theirs = self.signature(), other.signature()
        if mine != theirs:
            diff = ", ".join(f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k])
            raise UsageError(f"cannot merge states of different definitions ({diff})")
        self.rows_seen += other.rows_seen
        self.rows += other.rows
        self.rows_skipped += other.rows_skipped
        self.weight_sum.merge(other.weight_sum)
        for key, s in self.sums.items():
            s.merge(other.sums[key])
        if self.slices is not None and other.slices is not None:
            if other.slice_keys is self.slice_keys:
                self.slices.merge(other.slices)
            else:
                codes = [self.slice_keys.code(k) for k in other.slice_keys.keys]
                self.slices.merge(other.slices, codes)
        if self.bucket_sums is not None and other.bucket_sums is not None:
            self.bucket_sums.merge(other.bucket_sums)
        if self.top is not None and other.top is not None:
            self.top.merge(other.top)
        return self

    def _overall(self) -> None:
        """Overall sums as the exact sums of a grouping every row went into (buckets or slices).

        With groups, rows are summed once, per group; adding the groups up
        is exact, so this is the same as summing the rows.
        """
        g = self.bucket_sums if self.bucket_sums is not None else self.slices
        if g is None:
            return
        self.weight_sum = _total(g.weight_totals())
        self.sums = {k: _total(s.totals()) for k, s in g.sums.items()}

    def _values(self, sums: dict[tuple, ExactSum], weight: ExactSum) -> dict[str, float]:
        return {l.key: l.finish(sums[l.rows_key].mean(weight)) for l in self.losses}

    def result(self) -> Result:
        """The weighted mean of every loss; raises InputError on empty or zero-weight input."""
        self._overall()
        if self.rows == 0:
            extra = f" (all {self.rows_skipped} rows were skipped)" if self.rows_skipped else ""
            raise InputError(f"no rows to evaluate{extra}")
        if self.weight_sum.scaled == 0 and not self.weight_sum.nonfinite:
            raise InputError(f"the weights of all {self.rows} rows sum to zero")
        return Result(self._values(self.sums, self.weight_sum), self.rows, self.rows_skipped,
                      self.weight_sum.value, self.losses)

    def slice_results(self) -> list[dict]:
        """One entry per slice: its key, rows, weight sum and loss values (NaN at zero weight)."""
        if self.slices is None or self.slice_keys is None:
            return []
        g = self.slices
        g.grow(len(self.slice_keys.keys))
        weights = g.weight_totals()
        totals = {k: s.totals() for k, s in g.sums.items()}
        out = []
        for i, key in enumerate(self.slice_keys.keys):
            w = weights[i]
            zero = w.scaled == 0 and not w.nonfinite
            values = {l.key: math.nan for l in self.losses} if zero else \
                self._values({k: t[i] for k, t in totals.items()}, w)
            out.append({"key": dict(zip(self.slice_keys.columns, key, strict=True)),
                        "rows": int(g.rows[i]), "weight_sum": w.value, "values": values})
        return out

    def bucket_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-bucket loss sums (per loss key) and weight sums, as float arrays, for the bootstrap."""
        if self.bucket_sums is None:
            raise UsageError("this state keeps no buckets (evaluate with --ci)")
        g = self.bucket_sums
        weights = np.array([t.value for t in g.weight_totals()])
        sums = {k: np.array([t.value for t in s.totals()]) for k, s in g.sums.items()}
        return {l.key: sums[l.rows_key] for l in self.losses}, weights

    # -- serialisation ------------------------------------------------------

    def to_json(self) -> dict:
        """A JSON-able, lossless snapshot of the state."""
        names = {k: l.canonical for k, l in self._kernels.items()}
        self._overall()
        return {
            "version": STATE_VERSION,
            "losses": [l.to_json() for l in self.losses],
            "label_width": self.label_width,
            "pred_width": self.pred_width,
            "weighted": self.weighted,
            "nan": self.nan,
            "rows_seen": self.rows_seen,
            "rows": self.rows,
            "rows_skipped": self.rows_skipped,
            "weight_sum": self.weight_sum.to_json(),
            "sums": {names[k]: s.to_json() for k, s in self.sums.items()},
            "slices": None if self.slices is None or self.slice_keys is None else {
                "by": self.slice_keys.columns, "limit": self.slice_keys.limit,
                "keys": [list(k) for k in self.slice_keys.keys], **self.slices.to_json(names)},
            "buckets": None if self.bucket_sums is None else {
                "count": self.buckets, "seed": self.seed, **self.bucket_sums.to_json(names)},
            "top": self.top.to_json() if self.top is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> EvalState:
        if data.get("version") != STATE_VERSION:
            raise UsageError(f"unsupported state version {data.get('version')!r} "
                             f"(this lossctl reads version {STATE_VERSION})")
        losses = [Loss.from_json(d) for d in data["losses"]]
        sl, bk, top = data.get("slices"), data.get("buckets"), data.get("top")
        keys = None
        if sl is not None:
            keys = SliceKeys(sl["by"], sl["limit"])
            for k in sl["keys"]:
                keys.code(tuple(k))
        state = cls(losses, data["label_width"], data["pred_width"], data["weighted"], data["nan"],
                    keys, bk["count"] if bk else 0, bk["seed"] if bk else 0,
                    (top["loss"], top["n"]) if top else None)
        state.rows_seen = data["rows_seen"]
        state.rows = data["rows"]
        state.rows_skipped = data["rows_skipped"]
        state.weight_sum = ExactSum.from_json(data["weight_sum"])
        names = {k: l.canonical for k, l in state._kernels.items()}
        for key, name in names.items():
            state.sums[key] = ExactSum.from_json(data["sums"][name])
        if sl is not None:
            state.slices = _Groups.from_json(sl, names)
        if bk is not None:
            state.bucket_sums = _Groups.from_json(bk, names)
            state.bucket_sums.grow(state.buckets)
        if top is not None:
            state.top = TopRows.from_json(top)
        return state
