"""The catalogue: every loss and metric lossctl computes, one definition each.

Each entry names its kernel (:mod:`lossctl.core.kernels` for the losses,
:mod:`lossctl.core.metrics` for the metrics), parameters, columns, domain
checks and direction; how its value comes from the exact state is its
``kind`` (see :mod:`lossctl.core.definitions`).  Adding a loss or a metric
means adding one entry here; the README tables and ``docs/LOSSES.md`` / ``docs/METRICS.md``
list them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import metrics as m
from .components import Binned, Channel, Maximum
from .definitions import (
    BINARY_Z,
    CURVE,
    DIST_SUM_T,
    DIST_T,
    EPS,
    EXTREME,
    HARD_Z,
    P_SUM,
    P_SUM_PLAIN,
    RATIO,
    UNIT_P,
    Check,
    LossDef,
    Param,
    Term,
    at_most_minus_one,
    negative,
    not_positive,
    outside_unit,
)
from .histogram import ScoreHistogram
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

_LOSSES: tuple[LossDef, ...] = (
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
                    Check("prediction", "poisson rate must be > 0 (unless log_input=true)",
                          _poisson_rate)),
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
            "signed", "value",
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


# -- metrics ---------------------------------------------------------------

_threshold = Param("threshold", float, 0.5, "predicted positive when p > threshold (0 for logits)")
_bins = Param("bins", int, 15, "equal-width bins on [0, 1]", lambda v: 1 <= v <= 10_000,
              "in [1, 10000]")
_k = Param("k", int, 5, "how many top classes count", lambda v: v >= 1, ">= 1")
_power = Param("power", float, 0.0, "Tweedie power (0 normal, 1 Poisson, 2 gamma)",
               lambda v: v <= 0 or v >= 1, "<= 0 or >= 1")

_SQ = Term("mse", squared_error, on_diff=True)  # the same per-row values as mse: kept once
_Y = Term("y", m.y_pieces, exact_pieces=True)
_Y2 = Term("y2", m.y2_pieces, exact_pieces=True)
_CONFUSION = (Term("tp", m.true_positive, ("threshold",)),
              Term("pp", m.predicted_positive, ("threshold",)), Term("ap", m.actual_positive))


def _tweedie_label(a: Any, params: dict) -> Any:
    power = params["power"]
    if power <= 0:
        return np.zeros(a.shape, dtype=bool)
    return a < 0 if power < 2 else a <= 0


def _tweedie_pred(a: Any, params: dict) -> Any:
    return a <= 0 if params["power"] != 0 else np.zeros(a.shape, dtype=bool)


def _reliability(params: dict, label_width: int, pred_width: int) -> Binned:
    bins = params["bins"]
    if pred_width == 1:
        code = m.reliability_bin(bins)
        return Binned(("reliability", bins), bins, (
            Channel("w", code), Channel("p", code, lambda y, p: p), Channel("y", code, lambda y, p: y)))
    code = m.top_label_bin(bins)
    return Binned(("top_label_reliability", bins), bins, (
        Channel("w", code), Channel("p", code, m.top_probability), Channel("y", code, m.top_correct)))


def _class_counts(params: dict, label_width: int, pred_width: int) -> Binned:
    return Binned(("class_counts", pred_width), pred_width, (
        Channel("tp", m.label_class, m.argmax_correct), Channel("actual", m.label_class),
        Channel("pred", m.predicted_class)))


_HISTOGRAM = ScoreHistogram()
_LABEL_GT_M1 = Check("label", "label must be > -1 (log1p)", at_most_minus_one)
_PRED_GT_M1 = Check("prediction", "prediction must be > -1 (log1p)", at_most_minus_one)

_METRICS: tuple[LossDef, ...] = (
    # regression
    LossDef("r2", "regression", None, "1 - sum w (y - p)^2 / sum w (y - mean y)^2", "value", "value",
            aliases=("r2_score",), kind=RATIO, terms=(_SQ, _Y, _Y2), reduce=m.r2,
            higher_is_better=True, group="metric", reference="sklearn.metrics.r2_score",
            doc="coefficient of determination (1 if y is constant and predicted exactly, else 0)"),
    LossDef("explained_variance", "regression", None, "1 - Var_w(y - p) / Var_w(y)", "value",
            "value", kind=RATIO, reduce=m.explained_variance, higher_is_better=True, group="metric",
            terms=(Term("e", m.e_pieces, exact_pieces=True), Term("e2", m.e2_pieces, exact_pieces=True),
                   _Y, _Y2), reference="sklearn.metrics.explained_variance_score",
            doc="explained variance score"),
    LossDef("mape", "regression", m.ape, "|y - p| / max(|y|, eps)", "value", "value",
            reference="sklearn.metrics.mean_absolute_percentage_error",
            doc="mean absolute percentage error (as a fraction, not %)"),
    LossDef("smape", "regression", m.sape, "2 |y - p| / (|y| + |p|), 0 if both are 0", "value",
            "value", doc="symmetric mean absolute percentage error (as a fraction, in [0, 2])"),
    LossDef("msle", "regression", m.squared_log_error, "(ln(1 + y) - ln(1 + p))^2", "value", "value",
            checks=(_LABEL_GT_M1, _PRED_GT_M1), reference="sklearn.metrics.mean_squared_log_error",
            doc="mean squared logarithmic error"),
    LossDef("rmsle", "regression", m.squared_log_error, "sqrt(mean of (ln(1 + y) - ln(1 + p))^2)",
            "value", "value", finish=math.sqrt, shares_rows_with="msle",
            checks=(_LABEL_GT_M1, _PRED_GT_M1),
            reference="sklearn.metrics.root_mean_squared_log_error",
            doc="root of the weighted msle over all rows"),
    LossDef("max_error", "regression", None, "max |y - p| (rows of weight > 0)", "value", "value",
            kind=EXTREME, reduce=m.max_error,
            component=lambda params, lw, pw: Maximum(("max_abs_error",), m.abs_error),
            reference="sklearn.metrics.max_error", doc="largest absolute error"),
    LossDef("poisson_deviance", "regression", m.poisson_deviance, "2 (y ln(y / p) - y + p)", "value",
            "value", checks=(Check("label", "count label must be >= 0", negative),
                             Check("prediction", "poisson rate must be > 0", not_positive)),
            reference="sklearn.metrics.mean_poisson_deviance", doc="mean Poisson deviance"),
    LossDef("gamma_deviance", "regression", m.gamma_deviance, "2 (ln(p / y) + y / p - 1)", "value",
            "value", checks=(Check("label", "gamma label must be > 0", not_positive),
                             Check("prediction", "gamma prediction must be > 0", not_positive)),
            reference="sklearn.metrics.mean_gamma_deviance", doc="mean gamma deviance"),
    LossDef("tweedie_deviance", "regression", m.tweedie_deviance,
            "2 (y^(2-q) / ((1-q)(2-q)) - y p^(1-q) / (1-q) + p^(2-q) / (2-q)), q = power", "value",
            "value", params=(_power,),
            checks=(Check("label", "label outside the Tweedie domain (y >= 0 for 1 <= power < 2, "
                          "y > 0 for power >= 2)", _tweedie_label),
                    Check("prediction", "Tweedie prediction must be > 0", _tweedie_pred)),
            reference="sklearn.metrics.mean_tweedie_deviance", doc="mean Tweedie deviance"),
    LossDef("mean_bias", "regression", m.bias, "p - y", "value", "value", on_diff=True,
            best_at_zero=True, group="metric",
            doc="signed mean error: > 0 when the model over-predicts (calibration of regressors)"),
    # binary
    LossDef("accuracy", "binary", m.correct, "[(p > threshold) = z]", "binary", "value",
            params=(_threshold,), checks=(HARD_Z,), higher_is_better=True, group="metric",
            reference="sklearn.metrics.accuracy_score", doc="share of rows classified correctly"),
    LossDef("precision", "binary", None, "tp / (tp + fp), 0 if nothing is predicted positive",
            "binary", "value", params=(_threshold,), checks=(HARD_Z,), kind=RATIO,
            terms=_CONFUSION, reduce=m.precision, higher_is_better=True, group="metric",
            reference="sklearn.metrics.precision_score", doc="positive predictive value"),
    LossDef("recall", "binary", None, "tp / (tp + fn), 0 if no label is positive", "binary", "value",
            params=(_threshold,), checks=(HARD_Z,), kind=RATIO, terms=_CONFUSION, reduce=m.recall,
            higher_is_better=True, group="metric", reference="sklearn.metrics.recall_score",
            doc="true positive rate (sensitivity)"),
    LossDef("f1", "binary", None, "2 tp / (2 tp + fp + fn), 0 if there is no positive", "binary",
            "value", params=(_threshold,), checks=(HARD_Z,), kind=RATIO, terms=_CONFUSION,
            reduce=m.f1, higher_is_better=True, group="metric", aliases=("f1_score",),
            reference="sklearn.metrics.f1_score", doc="harmonic mean of precision and recall"),
    LossDef("balanced_accuracy", "binary", None, "(tp / (tp + fn) + tn / (tn + fp)) / 2", "binary",
            "value", params=(_threshold,), checks=(HARD_Z,), kind=RATIO, terms=_CONFUSION,
            reduce=m.balanced_accuracy, higher_is_better=True, group="metric",
            reference="sklearn.metrics.balanced_accuracy_score",
            doc="mean recall of the classes present"),
    LossDef("mcc", "binary", None, "(tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)), 0 if a "
            "margin is empty", "binary", "value", params=(_threshold,), checks=(HARD_Z,),
            kind=RATIO, terms=_CONFUSION, reduce=m.mcc, higher_is_better=True, group="metric",
            aliases=("matthews_corrcoef",), reference="sklearn.metrics.matthews_corrcoef",
            doc="Matthews correlation coefficient"),
    LossDef("brier", "binary", m.brier, "(p - z)^2", "binary", "value", checks=(BINARY_Z, UNIT_P),
            aliases=("brier_score",), reference="sklearn.metrics.brier_score_loss",
            doc="Brier score of probabilities"),
    LossDef("roc_auc", "binary", None, "P(score of a positive > score of a negative), ties 1/2",
            "binary", "value", aliases=("auc", "roc_auc_score"), checks=(HARD_Z,), kind=CURVE,
            component=lambda params, lw, pw: _HISTOGRAM, reduce=m.roc_auc, details=m.auc_details,
            higher_is_better=True, group="metric", reference="sklearn.metrics.roc_auc_score",
            doc="area under the ROC curve (scores or probabilities)"),
    LossDef("pr_auc", "binary", None, "sum_k (R_k - R_k-1) P_k over score thresholds", "binary",
            "value", aliases=("average_precision", "average_precision_score"), checks=(HARD_Z,),
            kind=CURVE, component=lambda params, lw, pw: _HISTOGRAM, reduce=m.pr_auc,
            details=m.pr_auc_details, higher_is_better=True, group="metric",
            reference="sklearn.metrics.average_precision_score",
            doc="area under the precision-recall curve (average precision)"),
    LossDef("ece", "binary", None, "sum_b |sum_b w z - sum_b w p| / sum w, equal-width bins",
            "binary", "value", params=(_bins,), checks=(BINARY_Z, UNIT_P), kind=CURVE,
            component=_reliability, reduce=m.ece, details=m.ece_details, group="metric",
            doc="expected calibration error of probabilities (reliability bins in the report)"),
    # multiclass
    LossDef("accuracy", "multiclass", m.argmax_correct, "[argmax_k p_k = y]", "class", "vector",
            higher_is_better=True, group="metric", reference="sklearn.metrics.accuracy_score",
            doc="share of rows whose highest-scored class is the label"),
    LossDef("top_k_accuracy", "multiclass", m.top_k_correct, "[y among the k highest p]", "class",
            "vector", params=(_k,), higher_is_better=True, group="metric",
            reference="sklearn.metrics.top_k_accuracy_score",
            doc="share of rows whose label is among the k highest scores"),
    LossDef("macro_f1", "multiclass", None, "mean over classes of 2 tp_k / (2 tp_k + fp_k + fn_k)",
            "class", "vector", kind=CURVE, component=_class_counts, reduce=m.macro_f1,
            higher_is_better=True, group="metric", reference="sklearn.metrics.f1_score (macro)",
            doc="unweighted mean of per-class F1 over the classes present"),
    LossDef("ece", "multiclass", None, "sum_b |sum_b w [argmax = y] - sum_b w max p| / sum w",
            "class", "vector", params=(_bins,), checks=(UNIT_P, P_SUM_PLAIN), kind=CURVE,
            component=_reliability, reduce=m.ece, details=m.ece_details, group="metric",
            doc="top-label expected calibration error"),
    LossDef("brier", "multiclass", m.multiclass_brier, "sum_k (p_k - t_k)^2", "class_or_dist",
            "vector", aliases=("brier_score",), checks=(DIST_T, DIST_SUM_T, UNIT_P),
            reference="sklearn.metrics.brier_score_loss (multiclass)",
            doc="multiclass Brier score (sum over classes)"),
)

_TASKS = ("regression", "binary", "multiclass")
CATALOGUE: tuple[LossDef, ...] = tuple(sorted(_LOSSES + _METRICS, key=lambda d: _TASKS.index(d.task)))
