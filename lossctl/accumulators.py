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
STATE_VERSION = 1


class _Workspace(threading.local):
    """Per-thread scratch buffers, reused so that no chunk page-faults fresh memory."""

    def __init__(self) -> None:
        self.exp = np.empty(BLOCK, dtype=np.int64)
        self.hi = np.empty(BLOCK, dtype=np.uint64)
        self.lo = np.empty(BLOCK, dtype=np.float64)


_ws = _Workspace()


def _fold(bins: np.ndarray) -> int:
    """Turn exact per-exponent float sums into one integer (units of 2**-1074)."""
    total = 0
    for v in bins[bins != 0].tolist():
        num, den = v.as_integer_ratio()
        total += num << (_SCALE - den.bit_length() + 1)
    return total


def exact_sum_scaled(x: np.ndarray) -> tuple[int, float]:
    """Exact sum of a float64 array: ``(integer sum in units of 2**-1074, sum of non-finite)``."""
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    total, special = 0, 0.0
    for start in range(0, x.size, BLOCK):
        block = x[start:start + BLOCK]
        n = block.size
        bits = block.view(np.uint64)
        exp = np.right_shift(bits, np.uint64(52), out=_ws.exp[:n], casting="unsafe")
        hi = np.bitwise_and(bits, _HI_MASK, out=_ws.hi[:n]).view(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf, only after an overflow upstream
            lo = np.subtract(block, hi, out=_ws.lo[:n])
        sh = np.bincount(exp, weights=hi, minlength=_NBINS)
        sl = np.bincount(exp, weights=lo, minlength=_NBINS)
        if sh[_HUGE_EXP:0x800].any() or sh[0x800 + _HUGE_EXP:].any() or np.isnan(sh).any():
            # rare: inf/nan (after an overflow upstream) or values near the float64 limit
            biased = exp & 0x7FF
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


class EvalState:
    """Exact running state of several losses over one stream of rows.

    ``update`` takes one chunk: labels ``y`` (n,) or (n, K), predictions ``p``
    (n,) or (n, K), optional weights ``w`` (n,).  Rows are counted from 0
    across updates so a bad value is reported by its row in the stream.  With
    ``nan="skip"`` a row with a missing, NaN or infinite label or prediction,
    or a missing weight, is dropped for every loss and counted.
    """

    def __init__(self, losses: Sequence[Loss], label_width: int = 1, pred_width: int = 1,
                 weighted: bool = False, nan: str = "error") -> None:
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

    # -- update -------------------------------------------------------------

    def update(self, y: Any, p: Any, w: Any = None, first_row: int | None = None) -> None:
        """Add one chunk of rows.

        ``first_row`` is the chunk's row index in the stream (for error
        messages), by default the number of rows this state has seen; give it
        when chunks of one stream are spread over several states.
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
        n = len(y)
        problems = _Problems(self.rows_seen if first_row is None else first_row)
        rows = None
        # a weight of +-inf is never "missing": it is always an input error
        if w is not None and not _all_finite(w):
            problems.check("weight must be finite", "weight", w, np.isinf(w))
        arrays = [("label", y), ("prediction", p)] + ([("weight", w)] if w is not None else [])
        if not all(_all_finite(a) for _, a in arrays):
            if self.nan == "error":
                for role, a in arrays:
                    problems.check("missing or non-finite value (use --nan skip to drop such rows)",
                                   role, a, ~np.isfinite(a))
                self._validate(y, p, w, problems)
                problems.raise_first()
            keep = np.ones(n, dtype=bool)
            for _, a in arrays:
                keep &= ~_nonfinite_rows(a)
            rows = np.flatnonzero(keep)
            y, p = y[keep], p[keep]
            w = w[keep] if w is not None else None
            self.rows_skipped += n - len(y)
        self._validate(y, p, w, problems, rows)
        problems.raise_first()
        self.rows_seen += n
        self._accumulate(y, p, w)

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

    def _accumulate(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> None:
        n = len(y)
        step = max(1, _KERNEL_ROWS // max(self.pred_width, self.label_width))
        with np.errstate(over="ignore", under="ignore"):
            for start in range(0, n, step):
                ys, ps = y[start:start + step], p[start:start + step]
                ws = w[start:start + step] if w is not None else None
                d = ys - ps if self._on_diff else None
                for key, loss in self._kernels.items():
                    values = loss.per_row(ys, ps, d)
                    if ws is not None:
                        self.sums[key].add_weighted(values, ws)
                    else:
                        self.sums[key].add(values)
        if w is not None:
            self.weight_sum.add(w)
        else:
            self.weight_sum.add_count(n)
        self.rows += n

    # -- merge / result -----------------------------------------------------

    def empty_copy(self) -> EvalState:
        """A new, empty state of the same definition (for parallel workers and shards)."""
        return EvalState(self.losses, self.label_width, self.pred_width, self.weighted, self.nan)

    def signature(self) -> dict:
        """What two states must share to be merged."""
        return {"losses": [l.canonical for l in self.losses], "label_width": self.label_width,
                "pred_width": self.pred_width, "weighted": self.weighted, "nan": self.nan}

    def merge(self, other: EvalState) -> EvalState:
        """Fold ``other`` into this state (exact: order does not matter)."""
        if other.signature() != self.signature():
            raise UsageError(f"cannot merge states of different definitions: "
                             f"{self.signature()} vs {other.signature()}")
        self.rows_seen += other.rows_seen
        self.rows += other.rows
        self.rows_skipped += other.rows_skipped
        self.weight_sum.merge(other.weight_sum)
        for key, s in self.sums.items():
            s.merge(other.sums[key])
        return self

    def result(self) -> Result:
        """The weighted mean of every loss; raises InputError on empty or zero-weight input."""
        if self.rows == 0:
            extra = f" (all {self.rows_skipped} rows were skipped)" if self.rows_skipped else ""
            raise InputError(f"no rows to evaluate{extra}")
        if self.weight_sum.scaled == 0 and not self.weight_sum.nonfinite:
            raise InputError(f"the weights of all {self.rows} rows sum to zero")
        values = {}
        for loss in self.losses:
            values[loss.key] = loss.finish(self.sums[loss.rows_key].mean(self.weight_sum))
        return Result(values, self.rows, self.rows_skipped, self.weight_sum.value, self.losses)

    # -- serialisation ------------------------------------------------------

    def to_json(self) -> dict:
        """A JSON-able, lossless snapshot of the state."""
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
            "sums": {self._kernels[k].canonical: s.to_json() for k, s in self.sums.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> EvalState:
        if data.get("version") != STATE_VERSION:
            raise UsageError(f"unsupported state version {data.get('version')!r} "
                             f"(this lossctl reads version {STATE_VERSION})")
        losses = [Loss.from_json(d) for d in data["losses"]]
        state = cls(losses, data["label_width"], data["pred_width"], data["weighted"], data["nan"])
        state.rows_seen = data["rows_seen"]
        state.rows = data["rows"]
        state.rows_skipped = data["rows_skipped"]
        state.weight_sum = ExactSum.from_json(data["weight_sum"])
        for key, loss in state._kernels.items():
            state.sums[key] = ExactSum.from_json(data["sums"][loss.canonical])
        return state
