"""The loss catalogue: each loss's kernel, parameters, columns, domain checks and direction.

Adding a loss means adding one ``LossDef`` to ``CATALOGUE`` below (its kernel
goes in :mod:`lossctl.core.kernels`).  A loss is named as ``NAME`` or
``NAME:key=value,key=value``; see :func:`parse_loss` and :func:`parse_loss_list`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from .kernels import (
    Array,
    absolute_error,
    bce,
    cce,
    focal,
    hinge,
    huber,
    kl_div,
    log_cosh,
    poisson,
    quantile,
    sigmoid_ce,
    softmax_ce,
    sparse_softmax_ce,
    squared_error,
    weighted_sigmoid_ce,
)

EPS = float(np.finfo(np.float64).eps)  # 2.220446049250313e-16, scikit-learn's clip
ROW_SUM_TOL = 1e-6  # how far a probability row may be from summing to 1


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
