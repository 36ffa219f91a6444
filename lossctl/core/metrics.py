"""Metric kernels and reducers: accuracy, AUC, calibration, R², deviances.

Means (accuracy, brier, mape, the deviances) are per-row kernels like the
losses in :mod:`lossctl.core.kernels`.  Ratios of sums (r2, precision, mcc)
are per-row *terms* whose exact weighted sums a reduce function combines
once, at the end; curve metrics (roc_auc, pr_auc, ece, macro_f1) reduce a
component (:mod:`lossctl.core.components`).  Definitions follow
scikit-learn's (``r2_score``, ``precision_score``, ``roc_auc_score``,
``average_precision_score``, ``mean_tweedie_deviance``...), including its
``zero_division`` and ``force_finite`` conventions; where scikit-learn has no
such metric (smape, mean_bias, ece) the formula is the spec's
(``docs/LOSSES.md``, ``docs/METRICS.md``).

Reducers take exact ``Fraction`` totals (the reported value) or float arrays
of bootstrap replicates; :func:`~lossctl.core.definitions.div` works on both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from .definitions import Number, Totals, div

Array = np.ndarray
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant


# --------------------------------------------------------------------------
# Error-free products: exact sums of w*y and w*y^2 (for variances without cancellation)
# --------------------------------------------------------------------------


def _split(a: Array) -> tuple[Array, Array]:
    c = _SPLIT * a
    high = c - (c - a)
    return high, a - high


def two_product(a: Array, b: Array) -> tuple[Array, Array]:
    """``(p, e)`` with ``p = fl(a * b)`` and ``a * b = p + e`` exactly (Dekker).

    Exact unless a product overflows or its error underflows (|a b| below
    about 1e-290 or above 1e300); there ``e`` is set to 0, so the sum is
    then correctly rounded per row instead of exact.
    """
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, np.where(np.isfinite(e), e, 0.0)


def weighted_pieces(v: Array, w: Array | None) -> list[Array]:
    """Arrays whose exact sum is ``sum(w * v)``."""
    if w is None:
        return [v]
    return list(two_product(w, v))


def weighted_square_pieces(v: Array, w: Array | None) -> list[Array]:
    """Arrays whose exact sum is ``sum(w * v**2)``."""
    s, e = two_product(v, v)
    if w is None:
        return [s, e]
    return [*two_product(w, s), *two_product(w, e)]


def y_pieces(y: Array, p: Array, w: Array | None) -> list[Array]:
    return weighted_pieces(y, w)


def y2_pieces(y: Array, p: Array, w: Array | None) -> list[Array]:
    return weighted_square_pieces(y, w)


def e_pieces(y: Array, p: Array, w: Array | None) -> list[Array]:
    return weighted_pieces(y - p, w)


def e2_pieces(y: Array, p: Array, w: Array | None) -> list[Array]:
    return weighted_square_pieces(y - p, w)


def _finite_ratio(num: Number, den: Number) -> Number:
    """``1 - num / den`` with scikit-learn's ``force_finite``: 1 if both are 0, 0 if only den is."""
    if isinstance(den, np.ndarray) or isinstance(num, np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 1.0 - np.asarray(num, dtype=float) / den
        return np.where(den == 0, np.where(num == 0, 1.0, 0.0), out)
    if den == 0:
        return Fraction(1) if num == 0 else Fraction(0)
    return 1 - num / den


# --------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------


def r2(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """``1 - sum w (y - p)^2 / sum w (y - ybar)^2`` (scikit-learn's ``r2_score``)."""
    return _finite_ratio(s["mse"], s.centred("y2", "y"))


def explained_variance(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """``1 - Var_w(y - p) / Var_w(y)`` (scikit-learn's ``explained_variance_score``)."""
    return _finite_ratio(s.centred("e2", "e"), s.centred("y2", "y"))


def ape(y: Array, p: Array) -> Array:
    """``|y - p| / max(|y|, eps)`` (scikit-learn's ``mean_absolute_percentage_error``)."""
    return np.abs(y - p) / np.maximum(np.abs(y), np.finfo(np.float64).eps)


def sape(y: Array, p: Array) -> Array:
    """``2 |y - p| / (|y| + |p|)``, 0 where both are 0."""
    den = np.abs(y) + np.abs(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den == 0, 0.0, 2.0 * np.abs(y - p) / den)


def squared_log_error(y: Array, p: Array) -> Array:
    """``(log1p(y) - log1p(p))^2`` (y, p > -1)."""
    d = np.log1p(y) - np.log1p(p)
    return d * d


def abs_error(y: Array, p: Array) -> Array:
    return np.abs(y - p)


def bias(d: Array) -> Array:
    """``p - y``: positive when the model over-predicts (``d = y - p``)."""
    return -d


def _xlogy_ratio(y: Array, p: Array) -> Array:
    """``y ln(y / p)`` with ``0 ln 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(y / p), 0.0)


def poisson_deviance(y: Array, p: Array) -> Array:
    """``2 (y ln(y / p) - y + p)`` (y >= 0, p > 0)."""
    return 2.0 * (_xlogy_ratio(y, p) - y + p)


def gamma_deviance(y: Array, p: Array) -> Array:
    """``2 (ln(p / y) + y / p - 1)`` (y, p > 0)."""
    return 2.0 * (np.log(p / y) + y / p - 1.0)


def tweedie_deviance(y: Array, p: Array, power: float) -> Array:
    """scikit-learn's unit Tweedie deviance of power ``power`` (0 normal, 1 Poisson, 2 gamma)."""
    if power == 0:
        d = y - p
        return d * d
    if power == 1:
        return poisson_deviance(y, p)
    if power == 2:
        return gamma_deviance(y, p)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        yp = np.power(np.maximum(y, 0.0), 2.0 - power) if power < 0 else np.power(y, 2.0 - power)
        dev = yp / ((1.0 - power) * (2.0 - power)) - y * np.power(p, 1.0 - power) / (1.0 - power) \
            + np.power(p, 2.0 - power) / (2.0 - power)
    return 2.0 * dev


# --------------------------------------------------------------------------
# Binary: thresholded predictions, confusion counts, histograms, reliability bins
# --------------------------------------------------------------------------


def correct(y: Array, p: Array, threshold: float) -> Array:
    """1 where the prediction ``p > threshold`` matches the 0/1 label."""
    return ((p > threshold) == (y == 1.0)).astype(np.float64)


def true_positive(y: Array, p: Array, threshold: float) -> Array:
    return ((p > threshold) & (y == 1.0)).astype(np.float64)


def predicted_positive(y: Array, p: Array, threshold: float) -> Array:
    return (p > threshold).astype(np.float64)


def actual_positive(y: Array, p: Array) -> Array:
    return (y == 1.0).astype(np.float64)


def _confusion(s: Totals, w: Number) -> tuple[Number, Number, Number, Number]:
    tp, pp, ap = s["tp"], s["pp"], s["ap"]
    return tp, pp - tp, ap - tp, w - pp - ap + tp  # tp, fp, fn, tn


def precision(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """``tp / (tp + fp)``; 0 when nothing is predicted positive (``zero_division=0``)."""
    return div(s["tp"], s["pp"], 0.0)


def recall(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """``tp / (tp + fn)``; 0 when no label is positive."""
    return div(s["tp"], s["ap"], 0.0)


def f1(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """``2 tp / (2 tp + fp + fn)``; 0 when there is no positive at all."""
    return div(2 * s["tp"], s["pp"] + s["ap"], 0.0)


def balanced_accuracy(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """Mean recall of the classes present in the labels (scikit-learn's ``balanced_accuracy_score``)."""
    tp, fp, fn, tn = _confusion(s, w)
    pos, neg = tp + fn, tn + fp
    tpr, tnr = div(tp, pos), div(tn, neg)
    if isinstance(tpr, np.ndarray) or isinstance(tnr, np.ndarray):  # replicates
        has_pos, has_neg = np.asarray(pos) != 0, np.asarray(neg) != 0
        total = np.where(has_pos, tpr, 0.0) + np.where(has_neg, tnr, 0.0)
        return div(total, has_pos.astype(float) + has_neg)
    present = [r for r, n in ((tpr, pos), (tnr, neg)) if n != 0]
    return sum(present, Fraction(0)) / len(present) if present else math.nan


def mcc(s: Totals, w: Number, params: Mapping[str, Any]) -> Number:
    """Matthews correlation ``(tp tn - fp fn) / sqrt(...)``; 0 when a margin is empty."""
    tp, fp, fn, tn = _confusion(s, w)
    num = tp * tn - fp * fn
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if isinstance(den, np.ndarray):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den == 0, 0.0, num / np.sqrt(np.maximum(den, 0.0)))
    if den == 0:
        return 0.0
    # the exact num / sqrt(den), correctly rounded: sign(num) sqrt(num^2 / den)
    return math.copysign(math.sqrt(float(num * num / den)), float(num))


def brier(y: Array, p: Array) -> Array:
    """``(p - y)^2``."""
    d = p - y
    return d * d


def _bin_of(bins: int):
    """Row values -> reliability bin: ``b`` where ``b / bins <= v < (b + 1) / bins``, last closed.

    The edges are ``b / bins`` rounded to the nearest float64 (so 0.3 with 10
    bins is in [0.3, 0.4), as written), not ``floor(v * bins)``, whose
    rounded product puts 0.29 with 100 bins into [0.28, 0.29).
    """
    edges = np.arange(1, bins) / bins

    def bin_of(v: Array) -> Array:
        return np.searchsorted(edges, v, side="right").astype(np.int64, copy=False)

    return bin_of


def reliability_bin(bins: int):
    """Equal-width bins of the probability on [0, 1], the last closed on the right."""
    bin_of = _bin_of(bins)

    def code(y: Array, p: Array) -> Array:
        return bin_of(p)

    return code


def ece(view: Any, w: Number, params: Mapping[str, Any]) -> Number:
    """``sum_b |sum_b w y - sum_b w p| / sum w``: expected calibration error over the bins."""
    return div(np.abs(view.channel("y") - view.channel("p")).sum(axis=-1), w)


def ece_details(view: Any, w: Number, params: Mapping[str, Any]) -> dict:
    """The reliability bins: rows, weight, mean prediction and observed rate per bin."""
    bins = params["bins"]
    weight, p, y, rows = view.channel("w"), view.channel("p"), view.channel("y"), view.rows
    out = []
    for b in range(bins):
        wb = weight[b]
        out.append({"lower": b / bins, "upper": (b + 1) / bins, "rows": int(rows[b]),
                    "weight": float(wb), "mean_prediction": float(p[b] / wb) if wb else None,
                    "observed": float(y[b] / wb) if wb else None})
    return {"bins": out}


def roc_auc(table: Any, w: Number, params: Mapping[str, Any]) -> float:
    """Area under the ROC curve from the score histogram (ties count one half)."""
    return _auc(table)[0]


def _auc(table: Any) -> tuple[float, float, str | None]:
    """(roc_auc, worst-case error from bucketing, why it is undefined), once per table."""
    if "auc" not in table.memo:
        table.memo["auc"] = _exact_auc(table)
    return table.memo["auc"]


def _exact_auc(table: Any) -> tuple[float, float, str | None]:
    neg, pos, mixed = table.neg, table.pos, table.mixed
    n_neg, n_pos = sum(neg.tolist()), sum(pos.tolist())
    if n_neg == 0 or n_pos == 0:
        which = "positive" if n_pos == 0 else "negative"
        return math.nan, math.nan, f"no {which} label: roc_auc needs both classes"
    below = np.concatenate([[0], np.cumsum(neg)[:-1]]) if len(neg) else neg
    num = int(sum((pos * (2 * below + neg)).tolist()))
    den = 2 * int(n_pos) * int(n_neg)
    bound = int(sum((pos[mixed] * neg[mixed]).tolist())) if mixed.any() else 0
    return float(Fraction(num, den)), float(Fraction(bound, den)), None


def auc_details(table: Any, w: Number, params: Mapping[str, Any]) -> dict:
    value, bound, why = _auc(table)
    return {"error_bound": bound} if why is None else {"undefined": why}


def _average_precision(table: Any) -> tuple[float, float, str | None]:
    """(AP, worst-case error from bucketing, why undefined): scikit-learn's step-wise AP."""
    if "ap" not in table.memo:
        table.memo["ap"] = _step_average_precision(table)
    return table.memo["ap"]


def _step_average_precision(table: Any) -> tuple[float, float, str | None]:
    if sum(table.pos.tolist()) == 0:
        return math.nan, math.nan, "no positive label: pr_auc needs positives"
    # thresholds from the highest score down: cumulative true and false positives
    dp, dn = table.floats(table.pos)[::-1], table.floats(table.neg)[::-1]
    n_pos = float(sum(table.pos.tolist()) / table.scale)
    tp, fp = np.cumsum(dp), np.cumsum(dn)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    ap = math.fsum((dp * prec).tolist()) / n_pos  # (fsum: keys of weight 0 change nothing)
    m = table.mixed[::-1]
    tp0, fp0 = tp - dp, fp - dn
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = np.where(tp + fp0 > 0, tp / (tp + fp0), 0.0)
        lo = np.where(tp0 + fp > 0, tp0 / (tp0 + fp), 0.0)
    bound = math.fsum((dp * (hi - lo))[m].tolist()) / n_pos if m.any() else 0.0
    return ap, bound, None


def pr_auc(table: Any, w: Number, params: Mapping[str, Any]) -> float:
    """Average precision: ``sum_k (R_k - R_{k-1}) P_k`` over thresholds (scikit-learn's)."""
    return _average_precision(table)[0]


def pr_auc_details(table: Any, w: Number, params: Mapping[str, Any]) -> dict:
    value, bound, why = _average_precision(table)
    return {"error_bound": bound} if why is None else {"undefined": why}


def max_error(view: Any, w: Number, params: Mapping[str, Any]) -> Number:
    """The largest ``|y - p|`` over rows of positive weight."""
    return view


# --------------------------------------------------------------------------
# Multiclass: K probability (or score) columns, a class-index label
# --------------------------------------------------------------------------


def argmax_correct(y: Array, p: Array) -> Array:
    """1 where the highest-scored class (the first of ties) is the label."""
    return (p.argmax(axis=1) == y).astype(np.float64)


def top_k_correct(y: Array, p: Array, k: int) -> Array:
    """1 where the label is among the ``k`` highest scores.

    Ties are ranked as scikit-learn's ``top_k_accuracy_score`` ranks them
    (a stable sort in descending order: among equal scores, the higher
    class index first).
    """
    true = np.take_along_axis(p, y.astype(np.intp)[:, None], axis=1)
    idx = np.arange(p.shape[1])
    ahead = (p > true) | ((p == true) & (idx > y[:, None]))
    return (ahead.sum(axis=1) < k).astype(np.float64)


def multiclass_brier(y: Array, p: Array) -> Array:
    """``sum_k (p_k - t_k)^2`` with ``t`` the one-hot label (or K label columns)."""
    if y.ndim == 1:
        t = np.zeros(p.shape)
        t[np.arange(len(y)), y.astype(np.intp)] = 1.0
    else:
        t = y
    d = p - t
    return (d * d).sum(axis=1)


def macro_f1(view: Any, w: Number, params: Mapping[str, Any]) -> Number:
    """Mean over classes present (in labels or predictions) of ``2 tp / (actual + predicted)``."""
    tp, actual, pred = view.channel("tp"), view.channel("actual"), view.channel("pred")
    both = actual + pred
    f = div(2 * tp, both, 0.0)
    if f.dtype != object:  # replicates (R, K): classes present in the replicate
        present = both > 0
        with np.errstate(invalid="ignore"):
            return np.where(present, f, 0.0).sum(axis=-1) / present.sum(axis=-1)
    present = [x for x, n in zip(f.tolist(), both.tolist(), strict=True) if n != 0]
    return sum(present, Fraction(0)) / len(present) if present else math.nan


def label_class(y: Array, p: Array) -> Array:
    return y.astype(np.int64)


def predicted_class(y: Array, p: Array) -> Array:
    return p.argmax(axis=1).astype(np.int64)


def top_probability(y: Array, p: Array) -> Array:
    return p.max(axis=1)


def top_correct(y: Array, p: Array) -> Array:
    return argmax_correct(y, p)


def top_label_bin(bins: int):
    """The reliability bin of each row's highest probability."""
    bin_of = _bin_of(bins)

    def code(y: Array, p: Array) -> Array:
        return bin_of(p.max(axis=1))

    return code
