"""The catalogue: every loss and metric lossctl computes, one definition each.

Each entry names its kernel (:mod:`lossctl.core.kernels` for the losses,
:mod:`lossctl.core.metrics` for the metrics), parameters, columns, domain
checks and direction; how its value comes from the exact state is its
``kind`` (see :mod:`lossctl.core.definitions`).  Adding a loss or a metric
means adding one entry here; the README table and ``docs/`` list them.
"""

from __future__ import annotations

import math

import numpy as np

from .definitions import (
    BINARY_Z,
    DIST_SUM_T,
    DIST_T,
    EPS,
    P_SUM,
    UNIT_P,
    Check,
    LossDef,
    Param,
    negative,
    outside_unit,
)
from .kernels import (
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


def _hinge_label(a, _):
    return outside_unit(a, _) & (a != -1.0)


def _poisson_rate(a, params):
    if params["log_input"]:
        return np.zeros(a.shape, dtype=bool)
    return a <= 0.0


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
            checks=(Check("label", "count label must be >= 0", negative),
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
