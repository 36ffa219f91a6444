"""Every metric against scikit-learn (or a direct NumPy computation), on random and hard data.

In-process through ``lossctl.evaluate`` (the Python API); the command line,
chunkings, threads, shards and intervals are in ``test_metrics_cli.py``, the
score histogram of roc_auc/pr_auc and its error bound in
``test_metrics_auc.py``.  Weighted cases use scikit-learn's ``sample_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as M

import lossctl
from lossctl.errors import InputError, UsageError

REL = 1e-12

# scikit-learn warns on zero_division, a single class and one-row r2: the cases tested here
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning",
                                        "ignore::UserWarning")


def close(got: float, want: float, rel: float = REL) -> bool:
    """Equal within ``rel`` (absolute near 0), NaN equal to NaN."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return got == pytest.approx(want, rel=rel, abs=rel)


def values(y, p, names, w=None) -> dict[str, float]:
    return lossctl.evaluate(y, p, names, weights=w).values


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------


def smape_ref(y, p, w):
    den = np.abs(y) + np.abs(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(den == 0, 0.0, 2 * np.abs(y - p) / den)
    return np.average(v, weights=w)


def max_error_ref(y, p, w):
    keep = np.ones(len(y), bool) if w is None else w > 0
    return M.max_error(y[keep], p[keep])  # scikit-learn's max_error takes no weights


REGRESSION: dict[str, Callable] = {
    "r2": lambda y, p, w: M.r2_score(y, p, sample_weight=w),
    "explained_variance": lambda y, p, w: M.explained_variance_score(y, p, sample_weight=w),
    "mape": lambda y, p, w: M.mean_absolute_percentage_error(y, p, sample_weight=w),
    "smape": smape_ref,
    "msle": lambda y, p, w: M.mean_squared_log_error(y, p, sample_weight=w),
    "rmsle": lambda y, p, w: M.root_mean_squared_log_error(y, p, sample_weight=w),
    "max_error": max_error_ref,
    "poisson_deviance": lambda y, p, w: M.mean_poisson_deviance(y, p, sample_weight=w),
    "gamma_deviance": lambda y, p, w: M.mean_gamma_deviance(y, p, sample_weight=w),
    "mean_bias": lambda y, p, w: np.average(p - y, weights=w),
}
POWERS = [-2.0, -1.0, -0.5, 0.0, 1.0, 1.2, 1.5, 1.9, 2.0, 2.5, 3.0]
for _q in POWERS:
    REGRESSION[f"tweedie_deviance:power={_q}"] = (
        lambda y, p, w, q=_q: M.mean_tweedie_deviance(y, p, sample_weight=w, power=q))


def ece_ref(z, p, w, bins=15):
    """Expected calibration error, directly: edges b/bins, last bin closed, weighted."""
    w = np.ones(len(z)) if w is None else w
    b = np.clip(np.digitize(p, np.arange(1, bins) / bins), 0, bins - 1)
    total = 0.0
    for k in range(bins):
        m = b == k
        total += abs(np.sum(w[m] * z[m]) - np.sum(w[m] * p[m]))
    return total / np.sum(w)


def top_label_ece_ref(y, P, w, bins=15):
    conf, hit = P.max(axis=1), (P.argmax(axis=1) == y).astype(float)
    return ece_ref(hit, conf, w, bins)


def thresholded(fn: Callable, **kw) -> Callable:
    return lambda z, p, w, t=0.5: fn(z, p > t, sample_weight=w, **kw)


BINARY: dict[str, Callable] = {
    "accuracy": thresholded(M.accuracy_score),
    "precision": thresholded(M.precision_score, zero_division=0),
    "recall": thresholded(M.recall_score, zero_division=0),
    "f1": thresholded(M.f1_score, zero_division=0),
    "balanced_accuracy": thresholded(M.balanced_accuracy_score),
    "mcc": thresholded(M.matthews_corrcoef),
    "brier": lambda z, p, w: M.brier_score_loss(z, p, sample_weight=w, labels=[0, 1]),
    "roc_auc": lambda z, p, w: M.roc_auc_score(z, p, sample_weight=w),
    "pr_auc": lambda z, p, w: M.average_precision_score(z, p, sample_weight=w),
    "ece": ece_ref,
}
THRESHOLDED = ("accuracy", "precision", "recall", "f1", "balanced_accuracy", "mcc")


def multiclass_refs(K: int) -> dict[str, Callable]:
    labels = np.arange(K)
    return {
        "accuracy": lambda y, P, w: M.accuracy_score(y, P.argmax(axis=1), sample_weight=w),
        "top_k_accuracy:k=1": lambda y, P, w: M.top_k_accuracy_score(y, P, k=1, labels=labels,
                                                                     sample_weight=w),
        "top_k_accuracy:k=2": lambda y, P, w: M.top_k_accuracy_score(y, P, k=2, labels=labels,
                                                                     sample_weight=w),
        "top_k_accuracy": lambda y, P, w: M.top_k_accuracy_score(y, P, k=5, labels=labels,
                                                                 sample_weight=w),
        "macro_f1": lambda y, P, w: M.f1_score(y, P.argmax(axis=1), average="macro",
                                               sample_weight=w, zero_division=0),
        "brier": lambda y, P, w: M.brier_score_loss(y, P, sample_weight=w, labels=labels),
        "ece": top_label_ece_ref,
    }


def check_all(refs: dict[str, Callable], y, p, w=None, names=None, rel: float = REL) -> None:
    names = list(refs) if names is None else names
    got = values(y, p, names, w)
    bad = {n: (got[n], refs[n](y, p, w)) for n in names if not close(got[n], refs[n](y, p, w), rel)}
    assert not bad, bad


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

RNG = np.random.default_rng(20260515)
N = 1200


def regression_data(n: int = N, seed: int = 0, zeros: bool = True):
    """Positive labels (some exactly 0), positive predictions: every regression domain."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 3.0, n)
    if zeros:
        y[rng.uniform(size=n) < 0.1] = 0.0
    p = np.maximum(y + rng.normal(0, 2.0, n), 0.05)
    return y, p, rng.uniform(0.0, 3.0, n)


def binary_data(n: int = N, seed: int = 1, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    logit = rng.normal(0, 2, n)
    z = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit - rng.normal(0, 1, n)))).astype(float)
    p = 1 / (1 + np.exp(-logit))
    if decimals is not None:  # ties
        p = np.round(p, decimals)
    return z, p, rng.uniform(0.0, 2.0, n)


def multiclass_data(n: int = N, K: int = 6, seed: int = 2, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n).astype(float)
    x = rng.normal(0, 1, (n, K))
    x[np.arange(n), y.astype(int)] += 1.0
    P = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    if decimals is not None:  # ties between classes; rows renormalised to sum to 1
        P = np.round(P, decimals)
        P[:, -1] = 1.0 - P[:, :-1].sum(axis=1)
        P = np.abs(P)
        P /= P.sum(axis=1, keepdims=True)
    return y, P, rng.uniform(0.0, 2.0, n)


# --------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_match_sklearn(weighted: bool, seed: int) -> None:
    y, p, w = regression_data(seed=seed)
    ok = [n for n in REGRESSION if not n.startswith(("gamma", "tweedie_deviance:power=2",
                                                      "tweedie_deviance:power=3"))]
    check_all(REGRESSION, y, p, w if weighted else None, ok)
    # gamma and Tweedie powers >= 2 need y > 0
    y, p, w = regression_data(seed=seed, zeros=False)
    check_all(REGRESSION, y, p, w if weighted else None)


@pytest.mark.parametrize("power", POWERS)
def test_tweedie_reduces_to_its_special_cases(power: float) -> None:
    y, p, _ = regression_data(zeros=False)
    got = values(y, p, [f"tweedie_deviance:power={power}", "mse", "poisson_deviance",
                        "gamma_deviance"])
    tw = got[f"tweedie_deviance:power={power}"]
    special = {0.0: "mse", 1.0: "poisson_deviance", 2.0: "gamma_deviance"}.get(power)
    if special is not None:
        assert tw == got[special]
    assert close(tw, M.mean_tweedie_deviance(y, p, power=power))


def test_tweedie_domains_follow_sklearn() -> None:
    y, p = np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.0, 3.0])
    for power in (-1.0, 0.0, 1.0, 1.5):  # y = 0 allowed
        assert close(values(y, p, [f"tweedie_deviance:power={power}"])
                     [f"tweedie_deviance:power={power}"], M.mean_tweedie_deviance(y, p, power=power))
    for power in (2.0, 3.0):  # y must be > 0
        with pytest.raises(InputError, match="Tweedie domain"):
            values(y, p, [f"tweedie_deviance:power={power}"])
    with pytest.raises(InputError, match="Tweedie prediction"):
        values(np.array([1.0]), np.array([0.0]), ["tweedie_deviance:power=-1"])
    # power = 0 is the squared error: any real prediction
    assert values(np.array([1.0]), np.array([-2.0]), ["tweedie_deviance:power=0"]) == \
        {"tweedie_deviance:power=0": 9.0}
    with pytest.raises(UsageError, match="<= 0 or >= 1"):
        values(y, p, ["tweedie_deviance:power=0.5"])


@pytest.mark.parametrize("name,y,p,why", [
    ("msle", [-1.0, 2.0], [1.0, 1.0], "label must be > -1"),
    ("msle", [1.0, 2.0], [-1.5, 1.0], "prediction must be > -1"),
    ("poisson_deviance", [-1.0], [1.0], "count label must be >= 0"),
    ("poisson_deviance", [1.0], [0.0], "poisson rate must be > 0"),
    ("gamma_deviance", [0.0], [1.0], "gamma label must be > 0"),
    ("gamma_deviance", [1.0], [-1.0], "gamma prediction must be > 0"),
])
def test_regression_domain_errors(name: str, y, p, why: str) -> None:
    with pytest.raises(InputError, match=why):
        values(np.array(y), np.array(p), [name])


def test_msle_allows_values_just_above_minus_one() -> None:
    y, p = np.array([-0.5, 0.0, 3.0]), np.array([-0.9, 1.0, 2.0])
    assert close(values(y, p, ["msle"])["msle"], M.mean_squared_log_error(y, p))


def test_r2_and_explained_variance_force_finite() -> None:
    """Constant labels: 1 if predicted exactly, else 0 (scikit-learn's force_finite=True)."""
    y = np.full(20, 3.5)
    got = values(y, y.copy(), ["r2", "explained_variance"])
    assert got == {"r2": 1.0, "explained_variance": 1.0}
    assert got["r2"] == M.r2_score(y, y)
    off = y + np.linspace(-1, 1, 20)
    got = values(y, off, ["r2", "explained_variance"])
    assert got == {"r2": M.r2_score(y, off), "explained_variance": M.explained_variance_score(y, off)}
    assert got["r2"] == 0.0
    # a constant shift: the variance of the errors is 0, so explained_variance is 1 while r2 < 1
    y = np.linspace(0, 10, 50)
    got = values(y, y + 2.0, ["r2", "explained_variance"])
    assert got["explained_variance"] == 1.0 and close(got["r2"], M.r2_score(y, y + 2.0))


def test_r2_of_a_single_row_is_the_force_finite_value() -> None:
    """One row has no variance: lossctl applies force_finite (scikit-learn returns NaN there)."""
    assert values(np.array([2.0]), np.array([2.0]), ["r2"])["r2"] == 1.0
    assert values(np.array([2.0]), np.array([3.0]), ["r2"])["r2"] == 0.0
    assert math.isnan(M.r2_score([2.0], [3.0]))


@pytest.mark.parametrize("kind", ["perfect", "constant", "mean"])
def test_regression_edge_predictions(kind: str) -> None:
    y, _, w = regression_data(zeros=False)
    p = {"perfect": y.copy(), "constant": np.full(len(y), 4.0),
         "mean": np.full(len(y), float(np.mean(y)))}[kind]
    for weights in (None, w):
        check_all(REGRESSION, y, p, weights)
    if kind == "perfect":
        got = values(y, p, list(REGRESSION))
        assert got["r2"] == got["explained_variance"] == 1.0
        assert got["max_error"] == got["mape"] == got["smape"] == got["mean_bias"] == 0.0


def test_r2_on_a_large_offset_is_exact() -> None:
    """y = 1e8 + noise: sums of y^2 near 1e16 per row; float sums would cancel, exact ones do not."""
    rng = np.random.default_rng(3)
    y = 1e8 + rng.normal(size=5000)
    p = y + rng.normal(0, 0.3, 5000)
    w = rng.uniform(0, 2, 5000)
    for weights in (None, w):
        got = values(y, p, ["r2", "explained_variance"], weights)
        # the exact value, from the errors and the centred labels (no cancellation)
        yc = y - np.average(y, weights=weights)
        ref_r2 = 1 - np.average((y - p) ** 2, weights=weights) / np.average(yc ** 2, weights=weights)
        assert close(got["r2"], ref_r2, 1e-10)
        assert close(got["r2"], M.r2_score(y, p, sample_weight=weights), 1e-9)
        assert close(got["explained_variance"], M.explained_variance_score(y, p, sample_weight=weights),
                     1e-9)


@pytest.mark.parametrize("scale", [1e150, 1e100, 1e-100, 1e-140])
def test_regression_huge_and_tiny_magnitudes(scale: float) -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=400) * scale
    p = y + rng.normal(size=400) * scale * 0.2
    names = ["r2", "explained_variance", "mape", "smape", "max_error", "mean_bias"]
    check_all(REGRESSION, y, p, None, names)
    check_all(REGRESSION, y, p, rng.uniform(0, 2, 400), names)


@pytest.mark.parametrize("scale", [1e160, 1e300, 1e-160, 1e-300])
def test_regression_beyond_the_exact_range_is_defined(scale: float) -> None:
    """Squares beyond float64 (|y| > ~1e154): r2 is NaN (null), like an overflowed mse; squares
    below it (|y| < ~1e-154) round as in any float64 computation: r2 stays in its range."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=300) * scale
    p = y + rng.normal(size=300) * scale * 0.2
    got = values(y, p, ["r2", "explained_variance", "mse", "mape", "smape", "max_error"])
    assert close(got["mape"], REGRESSION["mape"](y, p, None))
    assert close(got["smape"], smape_ref(y, p, None))
    assert got["max_error"] == max_error_ref(y, p, None)
    if scale > 1:
        assert math.isnan(got["r2"]) and math.isnan(got["explained_variance"])
        assert got["mse"] == math.inf
    else:
        for k in ("r2", "explained_variance"):
            assert 0.0 <= got[k] <= 1.0, got
        assert got["r2"] == pytest.approx(M.r2_score(y, p), abs=0.02)


def test_max_error_ignores_weights_except_zero() -> None:
    y, p = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, -5.0, 2.0, 0.5])
    assert values(y, p, ["max_error"])["max_error"] == 5.0
    for w in ([1, 1, 1, 1], [0.1, 7, 0.1, 0.1], [1, 1e-300, 1, 1]):
        assert values(y, p, ["max_error"], np.array(w, float))["max_error"] == 5.0
    assert values(y, p, ["max_error"], np.array([1, 0, 1, 1.0]))["max_error"] == 2.0


# --------------------------------------------------------------------------
# Binary
# --------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 2, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_metrics_match_sklearn(decimals: int | None, weighted: bool) -> None:
    z, p, w = binary_data(decimals=decimals)
    check_all(BINARY, z, p, w if weighted else None)


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.35, 0.9, 1.0])
def test_threshold_is_strictly_greater(threshold: float) -> None:
    z, p, w = binary_data(decimals=2)
    p[:50] = threshold  # rows exactly at the threshold are predicted negative
    names = [f"{m}:threshold={threshold}" for m in THRESHOLDED]
    got = values(z, p, names, w)
    for m, n in zip(THRESHOLDED, names, strict=True):
        assert close(got[n], BINARY[m](z, p, w, threshold)), n


def test_logit_scores_with_threshold_zero() -> None:
    z, p, w = binary_data()
    logit = np.log(p) - np.log1p(-p)
    names = [f"{m}:threshold=0" for m in THRESHOLDED] + ["roc_auc", "pr_auc"]
    got = values(z, logit, names, w)
    for m in THRESHOLDED:
        assert close(got[f"{m}:threshold=0"], BINARY[m](z, logit, w, 0.0)), m
    assert close(got["roc_auc"], M.roc_auc_score(z, logit, sample_weight=w))
    assert close(got["pr_auc"], M.average_precision_score(z, logit, sample_weight=w))


@pytest.mark.parametrize("case", ["constant", "perfect", "inverted", "all_above", "all_below"])
def test_binary_edge_predictions(case: str) -> None:
    z, p, w = binary_data(n=300)
    p = {"constant": np.full(300, 0.3), "perfect": z.copy(), "inverted": 1 - z,
         "all_above": np.full(300, 0.9), "all_below": np.zeros(300)}[case]
    for weights in (None, w):
        check_all(BINARY, z, p, weights)
    got = values(z, p, list(BINARY))
    if case == "perfect":
        assert all(got[k] == 1.0 for k in (*THRESHOLDED, "roc_auc", "pr_auc"))
        assert got["brier"] == got["ece"] == 0.0
    if case == "constant":
        assert got["roc_auc"] == 0.5 and got["precision"] == got["recall"] == got["f1"] == 0.0


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_single_class_present(label: float) -> None:
    """Only one class: roc_auc is undefined (NaN with a reason), never an error or a guess."""
    rng = np.random.default_rng(6)
    z, p = np.full(50, label), rng.uniform(size=50)
    r = lossctl.evaluate(z, p, list(BINARY))
    assert math.isnan(r["roc_auc"])
    assert "undefined" in r.details["roc_auc"] and "both classes" in r.details["roc_auc"]["undefined"]
    assert math.isnan(M.roc_auc_score(z, p))  # (scikit-learn warns and says NaN)
    if label == 1.0:  # all positive: every threshold has precision 1
        assert r["pr_auc"] == 1.0 == M.average_precision_score(z, p)
    else:  # no positive: no recall to average over (scikit-learn warns and says 0)
        assert math.isnan(r["pr_auc"]) and "no positive" in r.details["pr_auc"]["undefined"]
    for m in (*THRESHOLDED, "brier", "ece"):
        assert close(r[m], BINARY[m](z, p, None)), m
    assert r.to_dict()["losses"]["roc_auc"]["undefined"] == r.details["roc_auc"]["undefined"]


@pytest.mark.parametrize("z,p", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]),  # nothing predicted positive: precision 0
    ([0, 0, 0, 0], [0.1, 0.7, 0.3, 0.9]),  # no positive label: recall 0, f1 0
    ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]),  # neither: f1 0, mcc 0, balanced_accuracy from tn only
    ([1, 1, 1, 1], [0.9, 0.7, 0.6, 0.8]),  # no negative at all: mcc 0
    ([1, 0, 1, 0], [0.9, 0.9, 0.9, 0.9]),  # everything positive
])
def test_zero_division_conventions(z, p) -> None:
    """scikit-learn's zero_division=0 (precision, recall, f1) and mcc's empty-margin 0."""
    z, p = np.array(z, float), np.array(p, float)
    for w in (None, np.array([1.0, 2.0, 0.5, 3.0])):
        check_all(BINARY, z, p, w, [m for m in BINARY if m not in ("roc_auc", "pr_auc")])


def test_zero_weight_rows_count_as_absent() -> None:
    """A row of weight 0 changes no metric: the same values as without the row."""
    z, p, w = binary_data(n=400, decimals=2)
    w[::7] = 0.0
    keep = w > 0
    names = list(BINARY)
    assert values(z, p, names, w) == values(z[keep], p[keep], names, w[keep])
    y, q, v = regression_data(n=400, zeros=False)
    v[::5] = 0.0
    keep = v > 0
    names = list(REGRESSION)
    a, b = values(y, q, names, v), values(y[keep], q[keep], names, v[keep])
    assert a == b
    # the only positive has weight 0: roc_auc has no positive, as without the row
    z2, p2 = np.array([1.0, 0.0, 0.0]), np.array([0.9, 0.2, 0.4])
    r = lossctl.evaluate(z2, p2, ["roc_auc"], weights=np.array([0.0, 1.0, 1.0]))
    assert math.isnan(r["roc_auc"]) and "no positive" in r.details["roc_auc"]["undefined"]


@pytest.mark.parametrize("bins", [1, 7, 10, 15, 100])
def test_ece_against_numpy(bins: int) -> None:
    z, p, w = binary_data(decimals=2)
    p[:5] = [0.0, 1.0, 0.3, 0.29, 0.7]  # bin edges
    for weights in (None, w):
        assert close(values(z, p, [f"ece:bins={bins}"], weights)[f"ece:bins={bins}"],
                     ece_ref(z, p, weights, bins))


def test_ece_bins_in_the_report() -> None:
    """Edges b/bins as floats (0.3 in [0.3, 0.4)), the last bin closed; rows, weight, means."""
    z = np.array([0, 1, 1, 0, 1, 1.0])
    p = np.array([0.29, 0.3, 0.7, 1.0, 0.0, 0.35])
    w = np.array([1, 2, 1, 1, 1, 0.5])
    r = lossctl.evaluate(z, p, ["ece:bins=10"], weights=w)
    bins = r.details["ece:bins=10"]["bins"]
    assert [b["lower"] for b in bins] == [k / 10 for k in range(10)]
    assert [b["upper"] for b in bins] == [(k + 1) / 10 for k in range(10)]
    assert [b["rows"] for b in bins] == [1, 0, 1, 2, 0, 0, 0, 1, 0, 1]
    b3 = bins[3]
    assert b3["weight"] == 2.5 and b3["mean_prediction"] == pytest.approx((0.6 + 0.175) / 2.5)
    assert b3["observed"] == 1.0 and bins[9]["observed"] == 0.0 and bins[9]["mean_prediction"] == 1.0
    assert bins[1]["mean_prediction"] is None and bins[1]["observed"] is None
    for b in bins:  # each bin's mean prediction lies inside the bin
        if b["rows"]:
            assert b["lower"] <= b["mean_prediction"] <= b["upper"]
    assert close(r["ece:bins=10"], ece_ref(z, p, w, 10))


def test_ece_parameter_range() -> None:
    for bad in ("0", "10001", "2.5"):
        with pytest.raises(UsageError, match="bins"):
            values(np.array([0.0]), np.array([0.5]), [f"ece:bins={bad}"])


@pytest.mark.parametrize("name,why", [
    ("accuracy", "binary label must be 0 or 1"),
    ("roc_auc", "binary label must be 0 or 1"),
    ("brier", "probability outside"),
    ("ece", "probability outside"),
])
def test_binary_domain_errors(name: str, why: str) -> None:
    z, p = np.array([0.0, 1.0, 0.5]), np.array([0.1, 0.9, 0.5])
    if why.startswith("probability"):
        z, p = np.array([0.0, 1.0]), np.array([0.1, 1.5])
    with pytest.raises(InputError, match=why):
        values(z, p, [name])


# --------------------------------------------------------------------------
# Multiclass
# --------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_metrics_match_sklearn(decimals: int | None, weighted: bool) -> None:
    y, P, w = multiclass_data(decimals=decimals)
    check_all(multiclass_refs(6), y, P, w if weighted else None)


def test_top_k_tie_rule_is_sklearns() -> None:
    """Among equal scores the higher class index ranks first (scikit-learn's stable sort, reversed);
    accuracy takes the first highest class (argmax): they differ on ties, as in scikit-learn."""
    y = np.array([0, 1, 2, 0.0])
    P = np.array([[0.2, 0.2, 0.6], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    got = values(y, P, ["top_k_accuracy:k=1", "top_k_accuracy:k=2", "accuracy"])
    assert got["top_k_accuracy:k=1"] == M.top_k_accuracy_score(y, P, k=1, labels=[0, 1, 2]) == 0.5
    assert got["top_k_accuracy:k=2"] == M.top_k_accuracy_score(y, P, k=2, labels=[0, 1, 2]) == 0.75
    assert got["accuracy"] == M.accuracy_score(y, P.argmax(axis=1)) == 0.25


def test_top_k_at_least_k_classes_is_one() -> None:
    y, P, _ = multiclass_data(n=100, K=3)
    assert values(y, P, ["top_k_accuracy:k=3", "top_k_accuracy:k=10"]) == \
        {"top_k_accuracy:k=3": 1.0, "top_k_accuracy:k=10": 1.0}


def test_macro_f1_classes_present() -> None:
    """Classes present in the labels or the predictions count; absent ones do not."""
    y = np.array([0, 0, 1, 1, 3.0])
    P = np.eye(5)[[0, 1, 1, 1, 2]] * 0.8 + 0.04
    assert close(values(y, P, ["macro_f1"])["macro_f1"], M.f1_score(y, P.argmax(1), average="macro"))
    # a class present only in zero-weight rows does not count (it would change nothing else);
    # scikit-learn still averages it in as 0 here
    w = np.array([1, 1, 1, 1, 0.0])
    keep = w > 0
    got = values(y, P, ["macro_f1"], w)["macro_f1"]
    assert close(got, M.f1_score(y[keep], P[keep].argmax(1), average="macro"))
    assert got > M.f1_score(y, P.argmax(1), average="macro", sample_weight=w, zero_division=0)


def test_multiclass_brier_with_label_distributions() -> None:
    rng = np.random.default_rng(8)
    T = rng.dirichlet(np.ones(4), 200)
    P = rng.dirichlet(np.ones(4), 200)
    w = rng.uniform(0, 2, 200)
    assert close(values(T, P, ["brier"], w)["brier"], np.average(((P - T) ** 2).sum(axis=1), weights=w))


def test_binary_and_multiclass_forms_are_chosen_by_prediction_width() -> None:
    """accuracy, brier and ece on one column are the binary metrics; on K columns, multiclass ones.
    On two columns they agree with the binary form wherever the forms coincide."""
    z, p, w = binary_data(n=500, decimals=3)
    P = np.column_stack([1 - p, p])
    one = lossctl.evaluate(z, p, ["accuracy", "brier", "ece"], weights=w)
    two = lossctl.evaluate(z, P, ["accuracy", "brier", "ece"], weights=w)
    assert [l.definition.task for l in one.losses] == ["binary"] * 3
    assert [l.definition.task for l in two.losses] == ["multiclass"] * 3
    assert close(two["brier"], 2 * one["brier"])  # the multiclass form sums both classes
    assert close(two["ece"], top_label_ece_ref(z, P, w))
    assert (p == 0.5).any()  # a tie: argmax takes class 0, the binary form predicts negative too
    assert two["accuracy"] == one["accuracy"]
    assert close(two["accuracy"], M.accuracy_score(z, P.argmax(axis=1), sample_weight=w))


def test_metrics_need_the_right_columns() -> None:
    y, P, _ = multiclass_data(n=20, K=3)
    with pytest.raises(UsageError):
        values(y, P, ["roc_auc"])
    with pytest.raises(UsageError):
        values(y, P[:, 0], ["macro_f1"])
