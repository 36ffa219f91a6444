"""The loss catalogue: one small, vectorised kernel per loss, with its parameters.

Each kernel maps one chunk of labels and predictions to per-row losses (NumPy,
no Python loop over rows) in the numerically stable form of ``LOSSES.md``.
Each loss also declares the columns it needs and the domain checks of the
spec's "bad input" section.  Adding a loss means adding one ``LossDef`` to
``CATALOGUE`` below.

A loss is named as ``NAME`` or ``NAME:key=value,key=value``; see
:func:`parse_loss` and :func:`parse_loss_list`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import native
from .errors import UsageError

_kernels = native.load("_kernels")

EPS = float(np.finfo(np.float64).eps)  # 2.220446049250313e-16, scikit-learn's clip
LN2 = math.log(2.0)
ROW_SUM_TOL = 1e-6  # how far a probability row may be from summing to 1

Array = np.ndarray


# --------------------------------------------------------------------------
# Shared stable pieces
# --------------------------------------------------------------------------


def _log1pexp_neg_abs(x: Array) -> Array:
    """``log1p(exp(-|x|))``: the tail of softplus, never overflows."""
    return np.log1p(np.exp(-np.abs(x)))


def _softplus_pair(x: Array) -> tuple[Array, Array]:
    """Return ``(softplus(x), softplus(-x))``, i.e. ``-log sigmoid(-x)`` and ``-log sigmoid(x)``.

    Both are sums of non-negative terms, so they stay accurate for logits of
    any size (``softplus(1e300) = 1e300``, ``softplus(-1e300) = 0``).
    """
    tail = _log1pexp_neg_abs(x)
    return np.maximum(x, 0.0) + tail, np.maximum(-x, 0.0) + tail


def _log_softmax(x: Array) -> tuple[Array, Array]:
    """``(log S, m)`` per row, ``m`` the row max and ``S = sum_k exp(x_k - m) >= 1``.

    Where ``S < 1.5`` (a confident row), ``log S`` is recomputed as ``log1p``
    of the terms other than one max (ties add their count): ``log(1 + 1e-20)``
    would round to 0.  Elsewhere ``log S >= 0.4`` is accurate as it is.
    Computed in C where built (lossctl._kernels: NumPy's float64 exp is a
    scalar call on CPUs without AVX-512), to within an ulp of this NumPy form.
    """
    if _kernels is not None and x.strides[0] == x.itemsize == 8 and x.shape[1] > 0:
        log_s, m = np.empty(len(x)), np.empty(len(x))
        _kernels.log_softmax(x, log_s, m)
        return log_s, m
    m = x.max(axis=1, keepdims=True)
    shifted = x - m
    total = np.exp(shifted).sum(axis=1)
    log_s = np.log(total)
    close = np.flatnonzero(total < 1.5)
    if close.size:
        sub = shifted[close]
        at_max = sub == 0.0
        others = np.where(at_max, 0.0, np.exp(sub)).sum(axis=1) + (at_max.sum(axis=1) - 1)
        log_s[close] = np.log1p(others)
    return log_s, m[:, 0]


def _one_hot_take(values: Array, labels: Array) -> Array:
    """Pick ``values[i, labels[i]]`` for every row."""
    return np.take_along_axis(values, labels.astype(np.intp)[:, None], axis=1)[:, 0]


# --------------------------------------------------------------------------
# Kernels: (y, p, **params) -> per-row loss, float64, shape (n,)
# --------------------------------------------------------------------------


# Regression kernels of the difference only take ``d = y - p`` (computed once
# per chunk for all of them).


def squared_error(d: Array) -> Array:
    """``(y - p)^2``."""
    return d * d


def absolute_error(d: Array) -> Array:
    """``|y - p|``."""
    return np.abs(d)


def huber(d: Array, delta: float) -> Array:
    """``0.5 d^2`` if ``|d| <= delta`` else ``delta (|d| - 0.5 delta)``, ``d = y - p``."""
    a = np.abs(d)
    return np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))


def log_cosh(d: Array) -> Array:
    """``ln cosh(d)`` as ``|d| + log1p(exp(-2|d|)) - ln 2``, ``d = y - p``.

    For ``|d| < 1`` that form cancels, so there the identity
    ``ln cosh a = log1p(2 sinh(a/2)^2)`` is used instead (same value, full
    relative accuracy down to the smallest ``d``).
    """
    a = np.abs(d)
    with np.errstate(over="ignore"):
        big = a + np.log1p(np.exp(-2.0 * a)) - LN2
        s = np.sinh(0.5 * a)
        small = np.log1p(2.0 * s * s)
    return np.where(a < 1.0, small, big)


def quantile(d: Array, q: float) -> Array:
    """Pinball loss ``max(q d, (q - 1) d)``, ``d = y - p``."""
    return np.maximum(q * d, (q - 1.0) * d)


def poisson(y: Array, p: Array, log_input: bool) -> Array:
    """``p - y ln p``; with ``log_input``, ``exp(p) - y p`` (p is the log rate)."""
    if log_input:
        with np.errstate(over="ignore", invalid="ignore"):
            rate = np.exp(p)
            # exp(p) overflows first: the loss is +inf, not inf - inf
            return np.where(np.isinf(rate), rate, rate - y * p)
    return p - y * np.log(p)


def bce(y: Array, p: Array, eps: float) -> Array:
    """``-(z ln p' + (1 - z) ln(1 - p'))`` with ``p' = clip(p, eps, 1 - eps)``.

    ``ln(1 - p')`` is taken as ``log1p(-p')``; a zero label weight drops its
    term exactly (as ``xlogy``).
    """
    pc = np.clip(p, eps, 1.0 - eps)
    if eps > 0:  # both logs are finite
        return -(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))
    with np.errstate(divide="ignore"):
        return -(_xlogy(y, np.log(pc)) + _xlogy(1.0 - y, np.log1p(-pc)))


def sigmoid_ce(y: Array, p: Array) -> Array:
    """Binary cross-entropy on logits: ``max(x, 0) - x z + log1p(exp(-|x|))``.

    Evaluated as ``(1 - z) softplus(x) + z softplus(-x)``, the same value
    written as a sum of non-negative terms, so soft labels near 0 or 1 do not
    cancel.
    """
    sp_pos, sp_neg = _softplus_pair(p)
    return (1.0 - y) * sp_pos + y * sp_neg


def weighted_sigmoid_ce(y: Array, p: Array, pos_weight: float) -> Array:
    """``(1 - z) x + l (log1p(exp(-|x|)) + max(-x, 0))``, ``l = 1 + (q - 1) z``.

    Evaluated as ``(1 - z) softplus(x) + q z softplus(-x)`` (the same value,
    no cancellation), matching ``tf.nn.weighted_cross_entropy_with_logits``
    and torch's ``pos_weight``.
    """
    sp_pos, sp_neg = _softplus_pair(p)
    return (1.0 - y) * sp_pos + (pos_weight * y) * sp_neg


def hinge(y: Array, p: Array) -> Array:
    """``max(0, 1 - t s)`` with ``t = 2z - 1`` (labels 0/1) or ``t = z`` for -1/+1 labels."""
    t = np.where(y == -1.0, -1.0, 2.0 * y - 1.0)
    return np.maximum(0.0, 1.0 - t * p)


def focal(y: Array, p: Array, alpha: float, gamma: float) -> Array:
    """Sigmoid focal loss ``alpha_t (1 - p_t)^gamma sigmoid_ce(x, z)`` (torchvision).

    ``1 - p_t = z sigmoid(-x) + (1 - z) sigmoid(x)`` is computed directly, so
    it keeps its relative accuracy when ``p_t`` is near 1.
    """
    sp_pos, sp_neg = _softplus_pair(p)
    ce = (1.0 - y) * sp_pos + y * sp_neg
    # sigmoid(x) = exp(-softplus(-x)), sigmoid(-x) = exp(-softplus(x))
    one_minus_pt = y * np.exp(-sp_pos) + (1.0 - y) * np.exp(-sp_neg)
    loss = ce * one_minus_pt**gamma
    if alpha >= 0:
        loss *= alpha * y + (1.0 - alpha) * (1.0 - y)
    return loss


def softmax_ce(y: Array, p: Array) -> Array:
    """``-sum_k t_k log_softmax(x)_k`` = ``sum_k t_k (log S - (x_k - m))``, all terms >= 0.

    A zero label weight drops its term (``0 * inf = 0``); logits so far apart
    that ``m - x_k`` overflows are taken at half scale.
    """
    log_s, m = _log_softmax(p)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = y * (log_s[:, None] - (p - m[:, None]))
    bad = ~np.isfinite(terms)
    if bad.any():
        half = 0.5 * p.max(axis=1, keepdims=True) - 0.5 * p
        alt = np.where(y > 0, (2.0 * y) * half + y * log_s[:, None], 0.0)
        terms = np.where(bad, alt, terms)
    return terms.sum(axis=1)


def sparse_softmax_ce(y: Array, p: Array) -> Array:
    """``logsumexp(x) - x_y`` = ``log S - (x_y - m)``, shifted by the row max ``m``."""
    log_s, m = _log_softmax(p)
    return log_s - (_one_hot_take(p, y) - m)


def _xlogy(t: Array, log_q: Array) -> Array:
    """``t * log_q`` with ``0 * log 0 = 0`` (scipy's ``xlogy``)."""
    with np.errstate(invalid="ignore"):
        return np.where(t != 0.0, t * log_q, 0.0)


def cce(y: Array, p: Array, eps: float, renormalize: bool) -> Array:
    """``-sum_k t_k ln clip(p_k, eps, 1)``; ``y`` is a class index or K label columns.

    With ``renormalize`` each row is divided by its sum first; for a class
    index, ``-ln(p_y / sum p)`` is taken as ``log1p(sum of the other p / p_y)``
    so a confident row keeps its relative accuracy.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if renormalize and y.ndim == 1:
            true_p = _one_hot_take(p, y)
            is_true = np.arange(p.shape[1]) == y[:, None]
            others = np.where(is_true, 0.0, p).sum(axis=1)
            q = true_p / (true_p + others)
            return np.where(q < eps, -np.log(eps), np.log1p(others / true_p))
        if renormalize:  # K label columns: only the largest p can be near 1
            total = p.sum(axis=1)
            logp = np.log(np.clip(p / total[:, None], eps, 1.0))
            rows = np.arange(len(p))
            top = p.argmax(axis=1)
            top_p = p[rows, top]
            others = np.where(np.arange(p.shape[1]) == top[:, None], 0.0, p).sum(axis=1)
            ok = top_p / total >= eps
            logp[rows[ok], top[ok]] = -np.log1p(others[ok] / top_p[ok])
            return -_xlogy(y, logp).sum(axis=1)
        logp = np.log(np.clip(p, eps, 1.0))
        if y.ndim == 1:
            return -_one_hot_take(logp, y)
        return -_xlogy(y, logp).sum(axis=1)


def kl_div(y: Array, p: Array, eps: float) -> Array:
    """``sum_k t_k (ln t_k - ln clip(q_k, eps, 1))`` with ``0 ln 0 = 0``."""
    logq = np.log(np.clip(p, eps, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > 0, y * (np.log(y) - logq), 0.0)
    return terms.sum(axis=1)


# --------------------------------------------------------------------------
# Domain checks: each returns a boolean mask of bad values (True = bad)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A bad-input rule: which column role it looks at, and why a value fails."""

    role: str  # "label" or "prediction"
    reason: str
    bad: Callable[..., Array]  # (values, params) -> bool mask, same shape


def _outside_unit(a: Array, _: dict) -> Array:
    return (a < 0.0) | (a > 1.0)


def _hinge_label(a: Array, _: dict) -> Array:
    return _outside_unit(a, _) & (a != -1.0)


def _negative(a: Array, _: dict) -> Array:
    return a < 0.0


def _poisson_rate(a: Array, params: dict) -> Array:
    if params["log_input"]:
        return np.zeros(a.shape, dtype=bool)
    return a <= 0.0


def _bad_row_sum(a: Array, params: dict) -> Array:
    if params.get("renormalize"):  # any row but an all-zero one can be rescaled
        bad = np.zeros(a.shape, dtype=bool)
        bad[:, 0] = ~(a.sum(axis=1) > 0)
        return bad
    off = np.abs(a.sum(axis=1) - 1.0) > ROW_SUM_TOL
    bad = np.zeros(a.shape, dtype=bool)
    bad[:, 0] = off
    return bad


def _dist_outside_unit(a: Array, params: dict) -> Array:
    if a.ndim == 1:  # a class index, checked by the label kind
        return np.zeros(a.shape, dtype=bool)
    return _outside_unit(a, params)


def _bad_dist_rows(a: Array, params: dict) -> Array:
    if a.ndim == 1:
        return np.zeros(a.shape, dtype=bool)
    return _bad_row_sum(a, {})


UNIT_P = Check("prediction", "probability outside [0, 1]", _outside_unit)
BINARY_Z = Check("label", "binary label outside [0, 1]", _outside_unit)
DIST_T = Check("label", "label probability outside [0, 1]", _dist_outside_unit)
DIST_SUM_T = Check("label", "label row does not sum to 1 (tolerance 1e-6)", _bad_dist_rows)
P_SUM = Check("prediction", "probability row does not sum to 1 (tolerance 1e-6; with "
              "renormalize=true, it must not sum to 0)", _bad_row_sum)


# --------------------------------------------------------------------------
# Parameters and loss definitions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A loss parameter: name, type, default (``None`` means required) and valid range."""

    name: str
    kind: type  # float or bool
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
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{loss}: parameter {self.name} takes a number, not {value!r}")
            value = float(value)
            if not math.isfinite(value) or not self.valid(value):
                raise UsageError(f"{loss}: parameter {self.name} must be {self.valid_doc}, not {value!r}")
        elif not isinstance(value, bool):
            raise UsageError(f"{loss}: parameter {self.name} takes true or false, not {value!r}")
        return value


# label kinds: "value" (any real), "binary" (z in [0, 1]), "class" (integer in
# [0, K)), "dist" (K columns), "class_or_dist"; prediction kinds: "value", "vector".
@dataclass(frozen=True)
class LossDef:
    """One loss of the catalogue."""

    name: str
    task: str  # regression, binary, multiclass
    kernel: Callable[..., Array]
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
    doc: str = ""

    @property
    def row_kernel_name(self) -> str:
        return self.shares_rows_with or self.name


_delta = Param("delta", float, 1.0, "transition point", lambda v: v > 0, "> 0")
_q = Param("q", float, 0.5, "quantile", lambda v: 0 < v < 1, "in (0, 1)")
_eps = Param("eps", float, EPS, "probability clip", lambda v: 0 <= v < 0.5, "in [0, 0.5)")

CATALOGUE: tuple[LossDef, ...] = (
    LossDef("mse", "regression", squared_error, "(y - p)^2", "value", "value",
            on_diff=True, doc="mean squared error"),
    LossDef("rmse", "regression", squared_error, "sqrt(mean of (y - p)^2)", "value", "value",
            finish=math.sqrt, shares_rows_with="mse", on_diff=True,
            doc="root of the weighted mse over all rows"),
    LossDef("mae", "regression", absolute_error, "|y - p|", "value", "value",
            aliases=("mad", "l1"), on_diff=True, doc="mean absolute error"),
    LossDef("huber", "regression", huber,
            "0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta), d = y - p", "value", "value",
            params=(_delta,), on_diff=True, doc="quadratic near zero, linear beyond delta"),
    LossDef("log_cosh", "regression", log_cosh, "ln cosh(y - p)", "value", "value",
            on_diff=True, doc="smooth, like mse near zero and mae far away"),
    LossDef("quantile", "regression", quantile, "max(q d, (q - 1) d), d = y - p", "value", "value",
            aliases=("pinball",), params=(_q,), on_diff=True, doc="pinball loss of the q-quantile"),
    LossDef("poisson", "regression", poisson, "p - y ln p  (log_input: exp(p) - y p)",
            "value", "value",
            params=(Param("log_input", bool, False, "prediction is the log rate"),),
            checks=(Check("label", "count label must be >= 0", _negative),
                    Check("prediction", "poisson rate must be > 0", _poisson_rate)),
            doc="Poisson negative log-likelihood without the ln y! term"),
    LossDef("bce", "binary", bce, "-(z ln p' + (1 - z) ln(1 - p')), p' = clip(p, eps, 1 - eps)",
            "binary", "value", aliases=("binary_crossentropy", "log_loss"), params=(_eps,),
            checks=(BINARY_Z, UNIT_P), doc="binary cross-entropy on probabilities"),
    LossDef("sigmoid_ce", "binary", sigmoid_ce, "max(x, 0) - x z + log1p(exp(-|x|))",
            "binary", "value", aliases=("sigmoid_cross_entropy_with_logits", "bce_logits"),
            checks=(BINARY_Z,), doc="binary cross-entropy on logits"),
    LossDef("weighted_sigmoid_ce", "binary", weighted_sigmoid_ce,
            "(1 - z) x + (1 + (q - 1) z) (log1p(exp(-|x|)) + max(-x, 0))", "binary", "value",
            aliases=("weighted_cross_entropy_with_logits",),
            params=(Param("pos_weight", float, None, "weight of positives", lambda v: v >= 0, ">= 0"),),
            checks=(BINARY_Z,), doc="cross-entropy on logits with positives weighted by pos_weight"),
    LossDef("hinge", "binary", hinge, "max(0, 1 - t s), t = 2z - 1 (or -1/+1 labels)",
            "binary", "value",
            checks=(Check("label", "hinge label must be in [0, 1] or -1", _hinge_label),),
            doc="margin loss on raw scores"),
    LossDef("focal", "binary", focal, "alpha_t (1 - p_t)^gamma sigmoid_ce(x, z)", "binary", "value",
            params=(Param("alpha", float, 0.25, "positive class weight (< 0 disables)",
                          lambda v: v <= 1, "<= 1"),
                    Param("gamma", float, 2.0, "focusing exponent", lambda v: v >= 0, ">= 0")),
            checks=(BINARY_Z,), doc="sigmoid focal loss on logits (torchvision)"),
    LossDef("softmax_ce", "multiclass", softmax_ce, "-sum_k t_k log_softmax(x)_k", "dist", "vector",
            aliases=("softmax_cross_entropy_with_logits",),
            checks=(DIST_T, DIST_SUM_T), doc="cross-entropy of K logits against a label distribution"),
    LossDef("sparse_softmax_ce", "multiclass", sparse_softmax_ce, "logsumexp(x) - x_y",
            "class", "vector", aliases=("sparse_softmax_cross_entropy_with_logits",),
            doc="cross-entropy of K logits against a class index"),
    LossDef("cce", "multiclass", cce, "-sum_k t_k ln clip(p_k, eps, 1)", "class_or_dist", "vector",
            aliases=("categorical_crossentropy", "log_loss"),
            params=(_eps, Param("renormalize", bool, False, "rescale rows of p to sum to 1")),
            checks=(DIST_T, DIST_SUM_T, UNIT_P, P_SUM),
            doc="cross-entropy of K probabilities against a class index or distribution"),
    LossDef("kl_div", "multiclass", kl_div, "sum_k t_k (ln t_k - ln clip(q_k, eps, 1))",
            "dist", "vector", params=(_eps,), checks=(DIST_T, DIST_SUM_T, UNIT_P),
            doc="Kullback-Leibler divergence of q from the label distribution t"),
)

_BY_NAME: dict[str, LossDef] = {d.name: d for d in CATALOGUE}
# ``log_loss`` names bce on one prediction column and cce on K columns.
_ALIASES: dict[str, str] = {a: d.name for d in CATALOGUE for a in d.aliases if a != "log_loss"}
AMBIGUOUS = {"log_loss": ("bce", "cce")}


@dataclass(frozen=True)
class Loss:
    """A loss with its parameters bound, as the user named it.

    ``key`` is the spelling the user wrote (``huber:delta=2``): reports are
    keyed by it.  ``canonical`` names the same loss with every parameter
    spelled out, for comparing states and baselines.
    """

    definition: LossDef
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def canonical(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}:{inner}"

    @property
    def rows_key(self) -> tuple:
        """Losses with equal ``rows_key`` share per-row values (mse and rmse)."""
        return (self.definition.row_kernel_name, tuple(sorted(self.params.items())))

    def per_row(self, y: Array, p: Array, d: Array | None = None) -> Array:
        """Per-row losses of one chunk (no validation); ``d`` is ``y - p`` if already known."""
        if self.definition.on_diff:
            return self.definition.kernel(y - p if d is None else d, **self.params)
        return self.definition.kernel(y, p, **self.params)

    def finish(self, mean: float) -> float:
        f = self.definition.finish
        return f(mean) if f is not None else mean

    def finish_rows(self, values: Array) -> Array:
        """``finish`` row by row (a row's rmse is its absolute error), for per-row output."""
        f = self.definition.finish
        if f is None:
            return values
        if f is math.sqrt:
            return np.sqrt(values)
        return np.vectorize(f, otypes=[np.float64])(values)

    def to_json(self) -> dict:
        return {"key": self.key, "name": self.name, "params": self.params}

    @classmethod
    def from_json(cls, data: dict) -> Loss:
        d = _BY_NAME[data["name"]]
        return cls(d, dict(data["params"]), data["key"])


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) and not float(v).is_integer() else str(v)


_NEEDS = {"value": "1 column", "binary": "1 column in [0, 1]", "class": "class index in [0, K)",
          "dist": "K columns (distribution)", "class_or_dist": "class index or K columns",
          "vector": "K columns or a list column"}


def describe_catalogue() -> list[dict[str, Any]]:
    """One plain dict per loss (for ``lossctl losses``): names, parameters, columns, formula."""
    rows = []
    for d in CATALOGUE:
        aliases = list(d.aliases) + [a for a, names in AMBIGUOUS.items()
                                     if d.name in names and a not in d.aliases]
        rows.append({
            "name": d.name, "aliases": aliases, "task": d.task, "formula": d.formula,
            "params": {p.name: p.default for p in d.params},
            "label": _NEEDS[d.label], "prediction": _NEEDS[d.pred], "description": d.doc,
        })
    return rows


def all_names() -> list[str]:
    """Every loss name and alias, for help texts and suggestions."""
    return sorted(set(_BY_NAME) | set(_ALIASES) | set(AMBIGUOUS))


def lookup(name: str, pred_width: int | None = None) -> LossDef:
    """Find a loss by name or alias; ``pred_width`` settles ``log_loss``."""
    low = name.strip().lower()
    if low in AMBIGUOUS:
        binary, multi = (_BY_NAME[n] for n in AMBIGUOUS[low])
        return multi if pred_width is not None and pred_width > 1 else binary
    if low in _BY_NAME:
        return _BY_NAME[low]
    if low in _ALIASES:
        return _BY_NAME[_ALIASES[low]]
    close = difflib.get_close_matches(low, all_names(), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown loss {name!r}.{hint} Known losses: {', '.join(all_names())}.")


def bind(definition: LossDef, given: dict[str, Any], key: str) -> Loss:
    """Check ``given`` against the loss's parameters, fill defaults, and bind."""
    known = {p.name: p for p in definition.params}
    for k in given:
        if k not in known:
            names = ", ".join(known) or "none"
            close = difflib.get_close_matches(k, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{definition.name}: unknown parameter {k!r}.{hint} Parameters: {names}.")
    params: dict[str, Any] = {}
    for p in definition.params:
        if p.name in given:
            params[p.name] = p.check(definition.name, given[p.name])
        elif p.default is None:
            raise UsageError(f"{definition.name}: parameter {p.name} is required "
                             f"(e.g. {definition.name}:{p.name}=1)")
        else:
            params[p.name] = p.default
    return Loss(definition, params, key)


def parse_loss(text: str, pred_width: int | None = None) -> Loss:
    """Parse ``NAME`` or ``NAME:key=value,...`` into a bound :class:`Loss`."""
    text = text.strip()
    name, _, rest = text.partition(":")
    definition = lookup(name, pred_width)
    given: dict[str, Any] = {}
    known = {p.name: p for p in definition.params}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq:
            raise UsageError(f"{text!r}: parameters are written key=value, not {item!r}")
        if k in given:
            raise UsageError(f"{text!r}: parameter {k!r} given twice")
        given[k] = known[k].parse(definition.name, v) if k in known else v
    return bind(definition, given, text)


def split_loss_list(texts: Sequence[str]) -> list[str]:
    """Split ``-m`` values on commas: ``mse,huber:delta=2,q=1`` style lists.

    A comma-separated item holding ``=`` but no ``:`` continues the parameter
    list of the loss before it.
    """
    out: list[str] = []
    for text in texts:
        for item in (s.strip() for s in text.split(",")):
            if not item:
                continue
            if "=" in item and ":" not in item and out:
                out[-1] += "," + item
            else:
                out.append(item)
    return out


def parse_loss_list(texts: Sequence[str], pred_width: int | None = None) -> list[Loss]:
    """Parse repeated/comma-separated loss names, dropping exact repeats."""
    seen: dict[str, Loss] = {}
    for item in split_loss_list(texts):
        loss = parse_loss(item, pred_width)
        seen.setdefault(loss.key, loss)
    return list(seen.values())


def resolve(spec: str | Loss, pred_width: int | None = None) -> Loss:
    """Accept a Loss or its text form."""
    return spec if isinstance(spec, Loss) else parse_loss(spec, pred_width)


def default_losses(y: Array, p: Array) -> list[Loss]:
    """Pick sensible losses from a sample of the columns when the user named none.

    One prediction column: binary labels with probabilities give ``bce``,
    binary labels with any other score give ``sigmoid_ce``, anything else is
    regression (``mse``, ``rmse``, ``mae``).  K prediction columns: rows of
    probabilities give ``cce``, logits give ``sparse_softmax_ce`` (one label
    column) or ``softmax_ce`` (K label columns).
    """
    with np.errstate(invalid="ignore"):
        finite_p = p[np.isfinite(p).all(axis=1)] if p.ndim == 2 else p[np.isfinite(p)]
        is_prob = finite_p.size > 0 and bool(((finite_p >= 0) & (finite_p <= 1)).all())
        if p.ndim == 2 and p.shape[1] > 1:
            if is_prob and bool((np.abs(finite_p.sum(axis=1) - 1) <= ROW_SUM_TOL).all()):
                names = ["cce"]
            else:
                names = ["sparse_softmax_ce"] if y.ndim == 1 else ["softmax_ce"]
        else:
            finite_y = y[np.isfinite(y)]
            binary = finite_y.size > 0 and bool(np.isin(finite_y, (0.0, 1.0)).all())
            if binary:
                names = ["bce"] if is_prob else ["sigmoid_ce"]
            else:
                names = ["mse", "rmse", "mae"]
    return [parse_loss(n) for n in names]
