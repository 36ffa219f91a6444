"""What a loss or metric of the catalogue is made of: parameters, domain checks, sum terms.

A definition (:class:`LossDef`) declares the exact state it needs, as
torchmetrics' ``add_state`` does, and the evaluation state
(:class:`lossctl.core.state.EvalState`) composes them:

- ``terms``: per-row quantities whose weighted sums are kept exactly, overall,
  per slice and per bootstrap bucket.  A *mean* (mse, accuracy) has one term,
  its per-row value; a *ratio* of sums (r2, precision) has several, and a
  ``reduce`` function that turns their exact totals into the value, once, at
  the end.  Equal terms (same name and parameters) are kept once however many
  definitions use them (mse and rmse, r2 and mse, the confusion counts of
  precision, recall and f1).
- ``component``: a state that is not a sum of per-row terms (reliability bins,
  a score histogram, a maximum), from :mod:`lossctl.core.components`.

``reduce`` functions are written once for two kinds of numbers: exact
``Fraction`` totals (the reported value, rounded once) and float arrays of
bootstrap replicates (intervals).  :func:`div` and :func:`sqrt` work on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from ..errors import UsageError

Array = np.ndarray
Number = Fraction | float | Array
ROW_SUM_TOL = 1e-6  # how far a probability row may be from summing to 1
EPS = float(np.finfo(np.float64).eps)  # 2.220446049250313e-16, scikit-learn's clip

# what a definition is: how its value comes from its state
MEAN = "mean"  # the weighted mean of a per-row value (rows and --top give the per-row values)
RATIO = "ratio"  # a function of several exact weighted sums (r2, precision)
CURVE = "curve"  # a statistic of a score histogram or of reliability bins (roc_auc, ece)
EXTREME = "extreme"  # the largest per-row value (max_error)


# --------------------------------------------------------------------------
# Domain checks: each returns a boolean mask of bad values (True = bad)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A bad-input rule: which column role it looks at, and why a value fails."""

    role: str  # "label" or "prediction"
    reason: str
    bad: Callable[..., Array]  # (values, params) -> bool mask, same shape
    row_sum: bool = False  # a rule on a row's sum: the error shows the sum, not a cell


def outside_unit(a: Array, _: dict) -> Array:
    return (a < 0.0) | (a > 1.0)


def not_zero_one(a: Array, _: dict) -> Array:
    return (a != 0.0) & (a != 1.0)


def negative(a: Array, _: dict) -> Array:
    return a < 0.0


def not_positive(a: Array, _: dict) -> Array:
    return a <= 0.0


def at_most_minus_one(a: Array, _: dict) -> Array:
    return a <= -1.0


def bad_row_sum(a: Array, params: dict) -> Array:
    """Rows of K probabilities must sum to 1 (with ``renormalize``: to anything but 0)."""
    bad = np.zeros(a.shape, dtype=bool)
    if params.get("renormalize"):  # any row but an all-zero one can be rescaled
        bad[:, 0] = ~(a.sum(axis=1) > 0)
    else:
        bad[:, 0] = np.abs(a.sum(axis=1) - 1.0) > ROW_SUM_TOL
    return bad


def _dist_outside_unit(a: Array, params: dict) -> Array:
    if a.ndim == 1:  # a class index, checked by the label kind
        return np.zeros(a.shape, dtype=bool)
    return outside_unit(a, params)


def _bad_dist_rows(a: Array, params: dict) -> Array:
    if a.ndim == 1:
        return np.zeros(a.shape, dtype=bool)
    return bad_row_sum(a, {})


UNIT_P = Check("prediction", "probability outside [0, 1]", outside_unit)
BINARY_Z = Check("label", "binary label outside [0, 1]", outside_unit)
HARD_Z = Check("label", "binary label must be 0 or 1", not_zero_one)
DIST_T = Check("label", "label probability outside [0, 1]", _dist_outside_unit)
DIST_SUM_T = Check("label", "label row does not sum to 1 (tolerance 1e-6)", _bad_dist_rows, True)
P_SUM = Check("prediction", "probability row does not sum to 1 (tolerance 1e-6; with "
              "renormalize=true, it must not sum to 0)", bad_row_sum, True)
P_SUM_PLAIN = Check("prediction", "probability row does not sum to 1 (tolerance 1e-6)", bad_row_sum,
                    True)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A parameter: name, type, default (``None`` means required) and valid range."""

    name: str
    kind: type  # float, int or bool
    default: Any
    doc: str
    valid: Callable[[Any], bool] = lambda v: True
    valid_doc: str = ""

    def parse(self, loss: str, text: str) -> Any:
        """Turn ``text`` from the command line into a value, or raise UsageError."""
        if self.kind is bool:
            low = text.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise UsageError(f"{loss}: parameter {self.name} takes true or false, not {text!r}")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{loss}: parameter {self.name} takes a number, not {text!r}") from None
        return self.check(loss, value)

    def check(self, loss: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{loss}: parameter {self.name} takes true or false, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{loss}: parameter {self.name} takes a number, not {value!r}")
        if self.kind is int:
            if not (math.isfinite(value) and float(value).is_integer()):
                raise UsageError(f"{loss}: parameter {self.name} takes a whole number, not {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise UsageError(f"{loss}: parameter {self.name} must be {self.valid_doc}, not {value!r}")
        if not self.valid(value):
            raise UsageError(f"{loss}: parameter {self.name} must be {self.valid_doc}, not {value!r}")
        return value


# --------------------------------------------------------------------------
# Sum terms
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """A per-row quantity whose weighted sum a definition needs, kept exactly.

    ``kernel`` maps a chunk to per-row values: ``kernel(d, **params)`` with
    ``on_diff`` (``d = y - p``, computed once per chunk), else
    ``kernel(y, p, **params)``; ``params`` names the definition's parameters
    it depends on.  The state adds ``w * value`` (the product rounded, as
    every weighted mean here).  With ``exact_pieces`` the kernel takes the
    weights too (``kernel(y, p, w)``, ``w`` None when unweighted) and returns
    arrays whose exact sum is ``w * value`` without any rounding (an
    error-free product, for sums that a later subtraction would cancel:
    the variance of r2).
    """

    name: str
    kernel: Callable[..., Any]
    params: tuple[str, ...] = ()
    on_diff: bool = False
    exact_pieces: bool = False

    def key(self, params: Mapping[str, Any]) -> tuple:
        """Terms with equal keys are the same per-row values: kept once."""
        return (self.name, tuple((k, params[k]) for k in self.params))

    def label(self, params: Mapping[str, Any]) -> str:
        """The key as text, naming the term's sums in a saved state."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(params[k])}" for k in self.params)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) and not float(v).is_integer() else str(v)


# --------------------------------------------------------------------------
# Arithmetic for reduce functions: exact Fractions or float replicate arrays
# --------------------------------------------------------------------------


def div(a: Number, b: Number, zero: float = math.nan) -> Number:
    """``a / b``, and ``zero`` where ``b`` is 0 (scikit-learn's ``zero_division``).

    Exact operands (Fractions, or object arrays of them) give exact results;
    float arrays (replicates) give float arrays.
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.dtype == object or b_arr.dtype == object:
            a_arr, b_arr = np.broadcast_arrays(a_arr, b_arr)
            return np.array([div(x, y, zero) for x, y in zip(a_arr.ravel().tolist(),
                                                            b_arr.ravel().tolist(), strict=True)],
                            dtype=object).reshape(a_arr.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b_arr == 0, zero, a_arr.astype(float) / b_arr)
    if b == 0:
        return Fraction(zero) if math.isfinite(zero) else zero
    return a / b


def sqrt(x: Number) -> Number:
    """Square root of an exact or replicate value (NaN below 0)."""
    if isinstance(x, np.ndarray):
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)
    v = float(x)
    return math.sqrt(v) if v >= 0 else math.nan


# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------

class Totals(Protocol):
    """What a ratio's ``reduce`` reads: each term's total by term name, and centred moments.

    ``totals["mse"]`` is a term's weighted sum (an exact Fraction, or a float
    array of replicates).  ``totals.centred("y2", "y")`` is
    ``sum w (v - mean_w v)^2`` from the sums of ``w v^2`` and ``w v``: from
    exact sums when exact; for replicates, from per-bucket sums centred
    exactly on the overall mean first, so that replicates of data with a
    large mean (``1e8 + noise``) do not cancel catastrophically.
    """

    def __getitem__(self, name: str) -> Number: ...

    def centred(self, square: str, first: str) -> Number: ...


# label kinds: "value" (any real), "binary" (z in [0, 1]), "signed" (z in [0, 1] or -1),
# "class" (integer in [0, K)), "dist" (K columns), "class_or_dist"; prediction kinds:
# "value", "vector".
Reduce = Callable[[Totals, Number, Mapping[str, Any]], Number]


@dataclass(frozen=True)
class LossDef:
    """One loss or metric of the catalogue: everything about it in one place.

    A *mean* (the default ``kind``) has a per-row ``kernel``; the value is
    ``finish(sum(w l) / sum(w))``.  A *ratio* has ``terms`` and ``reduce``
    (sums by term name, the weight sum, the parameters).  A *curve* or
    *extreme* definition has a ``component`` factory (parameters, label
    width, prediction width -> a :mod:`lossctl.core.components` spec) and
    ``reduce`` reads the component instead.
    """

    name: str
    task: str  # regression, binary, multiclass
    kernel: Callable[..., Array] | None
    formula: str
    label: str
    pred: str
    aliases: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    checks: tuple[Check, ...] = ()
    finish: Callable[[float], float] | None = None  # applied to the weighted mean (rmse)
    shares_rows_with: str | None = None  # another loss whose per-row values this one reuses
    on_diff: bool = False  # the kernel takes d = y - p instead of (y, p)
    higher_is_better: bool = False
    best_at_zero: bool = False  # a signed value whose size is what matters (mean_bias)
    doc: str = ""
    kind: str = MEAN
    terms: tuple[Term, ...] = ()
    reduce: Reduce | None = None
    component: Callable[..., Any] | None = None
    details: Callable[..., dict] | None = None  # (component view, weight, params) -> extra JSON
    group: str = "loss"  # "loss" or "metric": how reports group it
    reference: str = ""  # the public implementation tests compare against

    @property
    def row_kernel_name(self) -> str:
        return self.shares_rows_with or self.name

    @property
    def per_row(self) -> bool:
        """Whether the value is a mean of per-row values (``rows`` and ``--top`` can show them)."""
        return self.kind == MEAN

    @property
    def direction(self) -> str:
        """``higher`` or ``lower`` is better, or ``zero`` (the size of a signed value matters)."""
        return "zero" if self.best_at_zero else "higher" if self.higher_is_better else "lower"

    def worse(self, old: Number, new: Number) -> Number:
        """How much worse ``new`` is than ``old`` (> 0 worse, < 0 better; arrays elementwise)."""
        if self.best_at_zero:
            return abs(new) - abs(old)
        return old - new if self.higher_is_better else new - old

    def badness(self, value: Number) -> Number:
        """A value ordered from best to worst (the worst slice first is the largest)."""
        return abs(value) if self.best_at_zero else -value if self.higher_is_better else value

    def sum_terms(self) -> tuple[Term, ...]:
        """The sum terms of this definition (a mean: its per-row value)."""
        if self.kind == MEAN:
            assert self.kernel is not None
            return (Term(self.row_kernel_name, self.kernel, tuple(p.name for p in self.params),
                         self.on_diff),)
        return self.terms
