"""The numeric core against independent references (docs/LOSSES.md, "Reference implementations").

* every loss, alias and parameter of the spec on random data against scikit-learn,
  scipy.special and (if installed, CPU only) torch;
* hard cases (huge logits, probabilities at 0 and 1, soft labels, extreme pos_weight,
  K = 2 and K = 1000, cancelling differences, a 1e15 outlier among a million rows)
  against a 50-digit mpmath evaluation of the spec formulas on the float64 inputs,
  within 1e-12 relative error, per row and as the weighted mean;
* every rule of the spec's "bad input" section, and usage errors.

Tests named in the report as regression tests pin down core bugs found while writing
this file (confident softmax rows, eps=0, logits near the float64 limit, huge sums and
weights, renormalize, non-numbers in the API).
"""

from __future__ import annotations

import math
import warnings
import zlib
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from scipy import special
from sklearn import metrics

import lossctl
from lossctl.core.losses import CATALOGUE, EPS, all_names, lookup, parse_loss
from lossctl.core.state import EvalState
from lossctl.errors import InputError, InvalidInput, LossctlError, UsageError

MP_DPS = 50
REL = 1e-12  # required relative accuracy against the 50-digit reference
TINY = 2.2250738585072014e-308  # smallest normal float64: below it no relative accuracy exists
FMAX = 1.7976931348623157e308

# --------------------------------------------------------------------------
# The spec's catalogue, written out independently of lossctl.core.losses
# --------------------------------------------------------------------------

SPEC_ALIASES = {
    "mse": (),
    "rmse": (),
    "mae": ("mad", "l1"),
    "huber": (),
    "log_cosh": (),
    "quantile": ("pinball",),
    "poisson": (),
    "bce": ("binary_crossentropy", "log_loss"),
    "sigmoid_ce": ("sigmoid_cross_entropy_with_logits", "bce_logits"),
    "weighted_sigmoid_ce": ("weighted_cross_entropy_with_logits",),
    "hinge": (),
    "focal": (),
    "softmax_ce": ("softmax_cross_entropy_with_logits",),
    "sparse_softmax_ce": ("sparse_softmax_cross_entropy_with_logits",),
    "cce": ("categorical_crossentropy", "log_loss"),
    "kl_div": (),
}
SPEC_DEFAULTS = {
    "huber": {"delta": 1.0},
    "quantile": {"q": 0.5},
    "poisson": {"log_input": False},
    "bce": {"eps": 2.220446049250313e-16},
    "focal": {"alpha": 0.25, "gamma": 2.0},
    "cce": {"renormalize": False},
}
MULTICLASS = {"softmax_ce", "sparse_softmax_ce", "cce", "kl_div"}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def value(y, p, loss, w=None, nan="error") -> float:
    """The reported value of one loss through the public API."""
    r = lossctl.evaluate(y, p, losses=[loss], weights=w, nan=nan)
    return r[loss]


def per_row(loss: str, y, p) -> np.ndarray:
    """The core's per-row values (the kernel, no reduction)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(all="ignore"):
        return parse_loss(loss, 1 if p.ndim == 1 else p.shape[1]).per_row(
            np.asarray(y, dtype=np.float64), p)


def wmean(values, w=None) -> float:
    values = np.asarray(values, dtype=np.float64)
    if w is None:
        return math.fsum(values) / len(values)
    w = np.asarray(w, dtype=np.float64)
    return math.fsum(values * w) / math.fsum(w)


def assert_rel(got: float, want: float, rel: float = REL, what: str = "") -> None:
    assert math.isfinite(got), f"{what}: got {got!r}, want {want!r}"
    assert abs(got - want) <= rel * abs(want), (
        f"{what}: got {got!r}, want {want!r}, relative error {abs(got - want) / abs(want):.3g}")


def exact_fraction(xs) -> Fraction:
    """The exact sum of float64 values, via repeated correctly rounded math.fsum residuals."""
    xs = [float(x) for x in np.asarray(xs, dtype=np.float64).ravel()]
    parts: list[float] = []
    while True:
        r = math.fsum(xs + [-q for q in parts])
        if r == 0.0:
            return sum(map(Fraction, parts), Fraction(0))
        parts.append(r)


def mp_close(got: float, ref, rel: float = REL) -> bool:
    """``got`` within ``rel`` of the mpmath value ``ref`` (exact for overflow/underflow)."""
    if mpmath.isinf(ref) or abs(ref) > FMAX:
        return got == (math.inf if ref > 0 else -math.inf)
    if abs(ref) < TINY:  # the true value is not a normal float64
        return abs(got - float(ref)) <= TINY
    return math.isfinite(got) and abs(mpmath.mpf(got) - ref) <= rel * abs(ref)


# --------------------------------------------------------------------------
# 50-digit references: the spec formulas evaluated on the float64 inputs.
# (Mathematically identical rearrangements are used only where a literal
# evaluation would lose the answer even at 50 digits; each is noted.)
# --------------------------------------------------------------------------

M = mpmath.mpf


def _xlogy(a, b):
    return M(0) if a == 0 else a * mpmath.log(b)


def _clip(v, lo, hi):
    return min(max(v, lo), hi)


def _mp_log_cosh(d):
    # ln cosh d; cosh d - 1 ~ d^2/2 needs about -2 log10|d| extra digits
    extra = 0 if d == 0 else max(0, int(-2 * mpmath.log10(abs(d)))) + 10
    with mpmath.workdps(MP_DPS + extra):
        return +mpmath.log(mpmath.cosh(d))


def _mp_sigmoid_ce(z, x):
    return max(x, 0) - x * z + mpmath.log1p(mpmath.exp(-abs(x)))


def _mp_row_scalar(name: str, params: dict, y: float, p: float):
    y, p = M(y), M(p)
    d = y - p
    if name in ("mse", "rmse"):
        return d * d
    if name == "mae":
        return abs(d)
    if name == "huber":
        delta = M(params["delta"])
        return d * d / 2 if abs(d) <= delta else delta * (abs(d) - delta / 2)
    if name == "log_cosh":
        return _mp_log_cosh(d)
    if name == "quantile":
        q = M(params["q"])
        return max(q * d, (q - 1) * d)
    if name == "poisson":
        return mpmath.exp(p) - y * p if params["log_input"] else p - y * mpmath.log(p)
    if name == "bce":
        # the clip bounds are the float64 numbers eps and 1 - eps (as in scikit-learn)
        eps = params["eps"]
        pc = _clip(p, M(eps), M(1.0 - eps))
        return -(_xlogy(y, pc) + _xlogy(1 - y, 1 - pc))
    if name == "sigmoid_ce":
        return _mp_sigmoid_ce(y, p)
    if name == "weighted_sigmoid_ce":
        # (1 - z) x and l max(-x, 0) cancel for x << 0, leaving q z |x| + (1 - z) log1p(exp(x)):
        # 100 more digits cover 1 / (q z) for the q and z used here (q >= 1e-8, z >= 2**-60)
        with mpmath.workdps(MP_DPS + 100):
            q = M(params["pos_weight"])
            l = 1 + (q - 1) * y
            return (1 - y) * p + l * (mpmath.log1p(mpmath.exp(-abs(p))) + max(-p, 0))
    if name == "hinge":
        t = M(-1) if y == -1 else 2 * y - 1
        return max(M(0), 1 - t * p)
    if name == "focal":
        alpha, gamma = M(params["alpha"]), M(params["gamma"])
        # p = sigmoid(x); 1 - p_t = 1 - (p z + (1 - p)(1 - z)) = z sigmoid(-x) + (1 - z) sigmoid(x)
        sig, sig_neg = 1 / (1 + mpmath.exp(-p)), 1 / (1 + mpmath.exp(p))
        one_minus_pt = y * sig_neg + (1 - y) * sig
        loss = one_minus_pt**gamma * _mp_sigmoid_ce(y, p)
        if alpha >= 0:
            loss *= alpha * y + (1 - alpha) * (1 - y)
        return loss
    raise AssertionError(name)


def _mp_lse_gaps(x):
    """``logsumexp(x) - x_k`` for every k, as ``(m - x_k) + log1p(sum_{j != argmax} exp(x_j - m))``."""
    x = [M(v) for v in x]
    m = max(x)
    top = x.index(m)
    rest = mpmath.fsum(mpmath.exp(v - m) for j, v in enumerate(x) if j != top)
    tail = mpmath.log1p(rest)
    return [(m - v) + tail for v in x]


def _mp_row_vector(name: str, params: dict, y, p):
    K = len(p)
    t = [M(v) for v in y] if np.ndim(y) else [M(int(k == int(y))) for k in range(K)]
    if name in ("softmax_ce", "sparse_softmax_ce"):
        return mpmath.fsum(tk * g for tk, g in zip(t, _mp_lse_gaps(p), strict=True) if tk != 0)
    eps = M(params["eps"])
    q = [M(v) for v in p]
    if name == "cce":
        if params["renormalize"]:
            s = mpmath.fsum(q)
            q = [v / s for v in q]
        return -mpmath.fsum(_xlogy(tk, _clip(qk, eps, 1)) for tk, qk in zip(t, q, strict=True))
    if name == "kl_div":
        return mpmath.fsum(tk * (mpmath.log(tk) - mpmath.log(_clip(qk, eps, 1)))
                           for tk, qk in zip(t, q, strict=True) if tk != 0)
    raise AssertionError(name)


def mp_rows(loss: str, y, p) -> list:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    bound = parse_loss(loss, 1 if p.ndim == 1 else p.shape[1])
    with mpmath.workdps(MP_DPS):
        if p.ndim == 1:
            return [_mp_row_scalar(bound.name, bound.params, float(a), float(b))
                    for a, b in zip(y, p, strict=True)]
        return [_mp_row_vector(bound.name, bound.params, a, b) for a, b in zip(y, p, strict=True)]


def mp_mean(loss: str, y, p, w=None):
    rows = mp_rows(loss, y, p)
    with mpmath.workdps(MP_DPS):
        if w is None:
            mean = mpmath.fsum(rows) / len(rows)
        else:
            mean = mpmath.fsum(M(float(wi)) * r for wi, r in zip(w, rows, strict=True)) / mpmath.fsum(
                M(float(wi)) for wi in w)
        return mpmath.sqrt(mean) if parse_loss(loss, 2 if np.ndim(p) == 2 else 1).name == "rmse" \
            else mean


# --------------------------------------------------------------------------
# Random data for every loss
# --------------------------------------------------------------------------


def make_data(loss: str, rng: np.random.Generator, n: int = 300, K: int = 4):
    name = lookup(loss.split(":")[0], K if loss.startswith(("log_loss:K", "cce")) else None).name
    if name in ("mse", "rmse", "mae", "huber", "log_cosh", "quantile"):
        return rng.normal(0, 3, n), rng.normal(0, 3, n)
    if name == "poisson":
        y = rng.poisson(3.0, n).astype(np.float64)
        if "log_input=true" in loss:
            return y, rng.normal(0.5, 1.5, n)
        return y, rng.uniform(0.05, 10.0, n)
    if name == "bce":
        p = rng.uniform(0, 1, n)
        p[:5] = [0.0, 1.0, 1e-300, 1 - 1e-16, 0.5]
        return rng.integers(0, 2, n).astype(np.float64), p
    if name in ("sigmoid_ce", "weighted_sigmoid_ce", "focal", "hinge"):
        z = rng.uniform(0, 1, n)
        z[: n // 2] = np.round(z[: n // 2])
        return z, rng.normal(0, 4, n)
    logits = rng.normal(0, 3, (n, K))
    probs = special.softmax(logits, axis=1)
    labels = rng.integers(0, K, n).astype(np.float64)
    if name == "sparse_softmax_ce":
        return labels, logits
    if name == "softmax_ce":
        return special.softmax(rng.normal(0, 2, (n, K)), axis=1), logits
    if name == "cce":
        return labels, probs
    if name == "kl_div":
        t = special.softmax(rng.normal(0, 2, (n, K)), axis=1)
        t[:3, :] = np.eye(K)[:3] if K >= 3 else np.eye(K)[0]
        return t, probs
    raise AssertionError(name)


# ==========================================================================
# 1. The catalogue: names, aliases, defaults
# ==========================================================================


# the metrics (issue "Metrics beyond losses"), tested against scikit-learn in test_metrics.py
METRIC_ALIASES = {
    "r2": ("r2_score",), "explained_variance": (), "mape": (), "smape": (), "msle": (),
    "rmsle": (), "max_error": (), "poisson_deviance": (), "gamma_deviance": (),
    "tweedie_deviance": (), "mean_bias": (), "accuracy": (), "precision": (), "recall": (),
    "f1": ("f1_score",), "balanced_accuracy": (), "mcc": ("matthews_corrcoef",),
    "brier": ("brier_score",), "roc_auc": ("auc", "roc_auc_score"),
    "pr_auc": ("average_precision", "average_precision_score"), "ece": (),
    "top_k_accuracy": (), "macro_f1": (),
}


def test_catalogue_matches_spec():
    losses = {d.name for d in CATALOGUE if d.name in SPEC_ALIASES}
    assert losses == set(SPEC_ALIASES)
    assert {d.name for d in CATALOGUE} == set(SPEC_ALIASES) | set(METRIC_ALIASES)
    for d in CATALOGUE:
        assert set(d.aliases) == set({**SPEC_ALIASES, **METRIC_ALIASES}[d.name]), d.name
    spelled = {n for table in (SPEC_ALIASES, METRIC_ALIASES) for name, al in table.items()
               for n in (name, *al)}
    assert set(all_names()) == spelled


ALIAS_CASES = [(a, name) for name, al in SPEC_ALIASES.items() for a in al]


@pytest.mark.parametrize("alias,name", ALIAS_CASES, ids=[f"{a}->{n}" for a, n in ALIAS_CASES])
def test_alias_is_bit_identical_to_canonical(alias, name):
    K = 4 if name in MULTICLASS else None
    assert lookup(alias, K).name == name
    assert lookup(alias.upper(), K).name == name  # names are case-insensitive
    rng = np.random.default_rng(zlib.crc32(alias.encode()))
    y, p = make_data(name, rng, 200, 4)
    w = rng.uniform(0, 2, len(y))
    suffix = ":pos_weight=2.5" if name == "weighted_sigmoid_ce" else ""
    a, b = value(y, p, alias + suffix, w), value(y, p, name + suffix, w)
    assert a == b and a.hex() == b.hex()


def test_log_loss_resolves_by_prediction_width():
    assert lookup("log_loss").name == "bce"
    assert lookup("log_loss", 1).name == "bce"
    assert lookup("log_loss", 2).name == "cce"
    assert lookup("log_loss", 1000).name == "cce"
    rng = np.random.default_rng(1)
    y, p = make_data("cce", rng, 100, 3)
    assert value(y, p, "log_loss") == value(y, p, "cce")
    y, p = make_data("bce", rng, 100)
    assert value(y, p, "log_loss") == value(y, p, "bce")


@pytest.mark.parametrize("name", sorted(SPEC_DEFAULTS))
def test_spec_defaults(name):
    params = parse_loss(name).params if name != "cce" else parse_loss(name, 3).params
    for k, v in SPEC_DEFAULTS[name].items():
        assert params[k] == v and type(params[k]) is type(v), (name, k, params)


def test_pos_weight_is_required():
    with pytest.raises(UsageError, match="pos_weight"):
        parse_loss("weighted_sigmoid_ce")
    with pytest.raises(UsageError, match="pos_weight"):
        value([1.0], [0.5], "weighted_cross_entropy_with_logits")


# ==========================================================================
# 2. Random data against scikit-learn, scipy.special (and torch if present)
# ==========================================================================

WEIGHTINGS = ["unweighted", "weighted"]


def _weights(rng, n, kind):
    if kind == "unweighted":
        return None
    w = rng.uniform(0, 3, n)
    w[::17] = 0.0
    return w


@pytest.fixture(params=WEIGHTINGS)
def weighting(request):
    return request.param


@pytest.mark.parametrize("loss", ["mse", "rmse", "mae", "mad", "l1"])
def test_regression_vs_sklearn(loss, weighting):
    rng = np.random.default_rng(10)
    y, p = rng.normal(0, 3, 500), rng.normal(0, 3, 500)
    y[:3] = [1e8 + 1, 1e16 + 2, -1e-300]
    p[:3] = [1e8, 1e16, 1e-300]
    w = _weights(rng, 500, weighting)
    ref = {"mse": metrics.mean_squared_error, "rmse": metrics.root_mean_squared_error}.get(
        loss, metrics.mean_absolute_error)(y, p, sample_weight=w)
    assert_rel(value(y, p, loss, w), ref, what=loss)


@pytest.mark.parametrize("q", [0.5, 0.1, 0.9, 0.001, 0.999])
@pytest.mark.parametrize("name", ["quantile", "pinball"])
def test_quantile_vs_sklearn_pinball(name, q, weighting):
    rng = np.random.default_rng(11)
    y, p = rng.normal(0, 3, 400), rng.normal(0, 3, 400)
    w = _weights(rng, 400, weighting)
    ref = metrics.mean_pinball_loss(y, p, alpha=q, sample_weight=w)
    loss = name if q == 0.5 else f"{name}:q={q!r}"
    assert_rel(value(y, p, loss, w), ref, what=loss)


def test_quantile_default_is_half_mae():
    rng = np.random.default_rng(12)
    y, p = rng.normal(0, 3, 100), rng.normal(0, 3, 100)
    assert value(y, p, "quantile") == value(y, p, "mae") / 2


@pytest.mark.parametrize("loss", ["bce", "binary_crossentropy", "log_loss", "bce:eps=1e-7"])
def test_binary_log_loss_vs_sklearn(loss, weighting):
    rng = np.random.default_rng(13)
    y, p = make_data("bce", rng, 500)
    w = _weights(rng, 500, weighting)
    if "eps=1e-7" in loss:  # scikit-learn clips at machine epsilon only
        ref = wmean(-(special.xlogy(y, np.clip(p, 1e-7, 1 - 1e-7))
                      + special.xlogy(1 - y, 1 - np.clip(p, 1e-7, 1 - 1e-7))), w)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = metrics.log_loss(y, p, sample_weight=w, labels=[0, 1])
    assert_rel(value(y, p, loss, w), ref, what=loss)


def test_bce_max_loss_is_ln_eps():
    # a confident wrong prediction costs -ln(eps) ~ 36.04, never inf
    assert_rel(value([1.0], [0.0], "bce"), -math.log(EPS))
    assert_rel(value([0.0], [1.0], "bce"), -math.log(EPS))
    assert 36.04 < value([0.0], [1.0], "bce") < 36.05


@pytest.mark.parametrize("K", [2, 5, 1000])
@pytest.mark.parametrize("loss", ["cce", "categorical_crossentropy", "log_loss"])
def test_multiclass_log_loss_vs_sklearn(loss, K, weighting):
    rng = np.random.default_rng(14 + K)
    n = 300
    y, p = make_data("cce", rng, n, K)
    w = _weights(rng, n, weighting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metrics.log_loss(y, p, sample_weight=w, labels=np.arange(K))
    assert_rel(value(y, p, loss, w), ref, what=f"{loss} K={K}")
    # K one-hot label columns give the same per-row values, hence the same bits
    onehot = np.eye(K)[y.astype(int)]
    a, b = value(onehot, p, loss, w), value(y, p, loss, w)
    assert a == b


@pytest.mark.parametrize("K", [2, 7])
def test_cce_soft_labels_and_renormalize_vs_scipy(K, weighting):
    rng = np.random.default_rng(15)
    n = 200
    t = special.softmax(rng.normal(0, 2, (n, K)), axis=1)
    raw = rng.uniform(0, 1, (n, K))
    w = _weights(rng, n, weighting)
    q = raw / raw.sum(axis=1, keepdims=True)
    ref = wmean(-special.xlogy(t, np.clip(q, EPS, 1)).sum(axis=1), w)
    assert_rel(value(t, raw, "cce:renormalize=true", w), ref)
    assert_rel(value(t, q, "cce", w), ref)
    # renormalize is a no-op on rows that already sum to one (up to rounding)
    assert_rel(value(t, q, "cce:renormalize=true", w), ref)


@pytest.mark.parametrize("loss", ["sigmoid_ce", "sigmoid_cross_entropy_with_logits", "bce_logits"])
def test_sigmoid_ce_vs_scipy_log_expit(loss, weighting):
    rng = np.random.default_rng(16)
    z, x = make_data("sigmoid_ce", rng, 500)
    w = _weights(rng, 500, weighting)
    ref = wmean(-(z * special.log_expit(x) + (1 - z) * special.log_expit(-x)), w)
    assert_rel(value(z, x, loss, w), ref, what=loss)
    # and the spec's own stable form
    ref2 = wmean(np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x))), w)
    assert_rel(value(z, x, loss, w), ref2, rel=1e-11, what=loss)


@pytest.mark.parametrize("pos_weight", [0.0, 0.5, 1.0, 3.0, 1e6])
def test_weighted_sigmoid_ce_vs_scipy(pos_weight, weighting):
    rng = np.random.default_rng(17)
    z, x = make_data("weighted_sigmoid_ce", rng, 500)
    w = _weights(rng, 500, weighting)
    ref = wmean(-(pos_weight * z * special.log_expit(x) + (1 - z) * special.log_expit(-x)), w)
    loss = f"weighted_sigmoid_ce:pos_weight={pos_weight!r}"
    assert_rel(value(z, x, loss, w), ref, what=loss)
    if pos_weight == 1.0:  # pos_weight 1 is plain sigmoid_ce
        assert value(z, x, loss, w) == value(z, x, "sigmoid_ce", w)


@pytest.mark.parametrize("delta", [1.0, 0.1, 2.5, 1e-8, 1e8])
def test_huber_vs_numpy_formula(delta, weighting):
    rng = np.random.default_rng(18)
    y, p = rng.normal(0, 3, 500), rng.normal(0, 3, 500)
    w = _weights(rng, 500, weighting)
    d = np.abs(y - p)
    ref = wmean(np.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta)), w)
    loss = "huber" if delta == 1.0 else f"huber:delta={delta!r}"
    assert_rel(value(y, p, loss, w), ref, what=loss)
    if delta == 1e8:  # never linear here: half the mse
        assert_rel(value(y, p, loss, w), value(y, p, "mse", w) / 2)


def test_log_cosh_vs_mpmath_random(weighting):
    rng = np.random.default_rng(19)
    y = rng.normal(0, 1, 300) * 10.0 ** rng.integers(-12, 3, 300)
    p = np.zeros(300)
    w = _weights(rng, 300, weighting)
    got = per_row("log_cosh", y, p)
    ref = mp_rows("log_cosh", y, p)
    bad = [(y[i], got[i], ref[i]) for i in range(len(y)) if not mp_close(got[i], ref[i])]
    assert not bad, bad[:5]
    assert mp_close(value(y, p, "log_cosh", w), mp_mean("log_cosh", y, p, w))
    # against numpy where ln(cosh d) is accurate
    mid = np.abs(y) > 1e-2
    assert_rel(value(y[mid], p[mid], "log_cosh"), float(np.mean(np.log(np.cosh(y[mid])))), rel=1e-11)


@pytest.mark.parametrize("log_input", [False, True])
def test_poisson_vs_scipy_xlogy(log_input, weighting):
    rng = np.random.default_rng(20)
    loss = f"poisson:log_input={'true' if log_input else 'false'}"
    y, p = make_data(loss, rng, 500)
    w = _weights(rng, 500, weighting)
    ref = np.exp(p) - y * p if log_input else p - special.xlogy(y, p)
    assert_rel(value(y, p, loss, w), wmean(ref, w), what=loss)
    if not log_input:
        assert value(y, p, "poisson", w) == value(y, p, loss, w)


@pytest.mark.parametrize("labels", ["01", "pm1", "soft"])
def test_hinge_vs_numpy_formula(labels, weighting):
    rng = np.random.default_rng(21)
    s = rng.normal(0, 2, 400)
    z = rng.integers(0, 2, 400).astype(np.float64)
    t = 2 * z - 1
    if labels == "pm1":
        z = t
    elif labels == "soft":
        z = rng.uniform(0, 1, 400)
        t = 2 * z - 1
    w = _weights(rng, 400, weighting)
    assert_rel(value(z, s, "hinge", w), wmean(np.maximum(0, 1 - t * s), w))
    if labels == "pm1":  # -1/+1 labels are the same as 0/1 labels
        assert value(z, s, "hinge", w) == value((z + 1) / 2, s, "hinge", w)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (1.0, 0.5), (0.0, 3.0),
                                         (0.75, 1.0)])
def test_focal_vs_torchvision_formula(alpha, gamma, weighting):
    rng = np.random.default_rng(22)
    z, x = make_data("focal", rng, 500)
    w = _weights(rng, 500, weighting)
    ce = -(z * special.log_expit(x) + (1 - z) * special.log_expit(-x))
    loss = f"focal:alpha={alpha!r},gamma={gamma!r}"
    # torchvision.ops.sigmoid_focal_loss, literally
    p = special.expit(x)
    p_t = p * z + (1 - p) * (1 - z)
    tv = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        tv = (alpha * z + (1 - alpha) * (1 - z)) * tv
    assert_rel(value(z, x, loss, w), wmean(tv, w), rel=1e-9, what=loss)  # 1 - p_t cancels there
    # the same with 1 - p_t = z expit(-x) + (1 - z) expit(x), no cancellation
    st = ce * (z * special.expit(-x) + (1 - z) * special.expit(x)) ** gamma
    if alpha >= 0:
        st = (alpha * z + (1 - alpha) * (1 - z)) * st
    assert_rel(value(z, x, loss, w), wmean(st, w), what=loss)
    if gamma == 0.0 and alpha < 0:
        assert_rel(value(z, x, loss, w), value(z, x, "sigmoid_ce", w))


def test_focal_defaults_and_alpha_disabling():
    rng = np.random.default_rng(23)
    z, x = make_data("focal", rng, 100)
    assert value(z, x, "focal") == value(z, x, "focal:alpha=0.25,gamma=2")
    assert value(z, x, "focal:alpha=-1") == value(z, x, "focal:alpha=-0.5")
    assert value(z, x, "focal:gamma=0,alpha=-1") == pytest.approx(value(z, x, "sigmoid_ce"), rel=1e-15)


@pytest.mark.parametrize("K", [2, 3, 1000])
@pytest.mark.parametrize("loss", ["sparse_softmax_ce", "sparse_softmax_cross_entropy_with_logits"])
def test_sparse_softmax_ce_vs_scipy_logsumexp(loss, K, weighting):
    rng = np.random.default_rng(24 + K)
    y, x = make_data("sparse_softmax_ce", rng, 200, K)
    w = _weights(rng, 200, weighting)
    ref = special.logsumexp(x, axis=1) - x[np.arange(len(y)), y.astype(int)]
    assert_rel(value(y, x, loss, w), wmean(ref, w), what=loss)
    # scikit-learn's log_loss of the softmax probabilities is the same number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = metrics.log_loss(y, special.softmax(x, axis=1), sample_weight=w, labels=np.arange(K))
    assert_rel(value(y, x, loss, w), sk, rel=1e-9)


@pytest.mark.parametrize("K", [2, 3, 1000])
@pytest.mark.parametrize("loss", ["softmax_ce", "softmax_cross_entropy_with_logits"])
def test_softmax_ce_vs_scipy_log_softmax(loss, K, weighting):
    rng = np.random.default_rng(25 + K)
    t, x = make_data("softmax_ce", rng, 200, K)
    w = _weights(rng, 200, weighting)
    ref = -(t * special.log_softmax(x, axis=1)).sum(axis=1)
    assert_rel(value(t, x, loss, w), wmean(ref, w), what=loss)
    # one-hot distributions equal the sparse loss
    y = rng.integers(0, K, 200)
    assert_rel(value(np.eye(K)[y], x, loss, w), value(y.astype(float), x, "sparse_softmax_ce", w))


@pytest.mark.parametrize("eps", [None, 1e-7])
@pytest.mark.parametrize("K", [2, 6])
def test_kl_div_vs_scipy_xlogy(K, eps, weighting):
    rng = np.random.default_rng(26)
    t, q = make_data("kl_div", rng, 200, K)
    q[5] = 0.0
    q[5, 0] = 1.0  # zeros in q get clipped to eps
    w = _weights(rng, 200, weighting)
    e = EPS if eps is None else eps
    ref = (special.xlogy(t, t) - special.xlogy(t, np.clip(q, e, 1))).sum(axis=1)
    loss = "kl_div" if eps is None else f"kl_div:eps={eps!r}"
    assert_rel(value(t, q, loss, w), wmean(ref, w), what=loss)
    # rel_entr is the same divergence written differently
    assert_rel(value(t, q, loss, w), wmean(special.rel_entr(t, np.clip(q, e, 1)).sum(axis=1), w),
               rel=1e-11)
    assert value(t, t, loss) >= 0 or abs(value(t, t, loss)) < 1e-15


def test_rmse_is_sqrt_of_weighted_mse_over_all_rows():
    rng = np.random.default_rng(27)
    y, p = rng.normal(0, 3, 1000), rng.normal(0, 3, 1000)
    w = rng.uniform(0, 2, 1000)
    r = lossctl.evaluate(y, p, losses=["mse", "rmse"], weights=w)
    assert r["rmse"] == math.sqrt(r["mse"])
    # not the mean of per-chunk RMSEs
    chunked = np.mean([math.sqrt(np.average((y[i:i + 100] - p[i:i + 100]) ** 2, weights=w[i:i + 100]))
                       for i in range(0, 1000, 100)])
    assert abs(r["rmse"] - chunked) > 1e-6


def test_result_reports_rows_and_weight_sum():
    rng = np.random.default_rng(28)
    y, p, w = rng.normal(size=50), rng.normal(size=50), rng.uniform(0, 1, 50)
    r = lossctl.evaluate(y, p, losses=["mse"], weights=w)
    assert r.rows == 50 and r.rows_skipped == 0
    assert r.weight_sum == math.fsum(w)
    r = lossctl.evaluate(y, p, losses=["mse"])
    assert r.weight_sum == 50.0


def test_zero_weight_rows_do_not_count():
    rng = np.random.default_rng(29)
    y, p = rng.normal(size=100), rng.normal(size=100)
    w = np.ones(100)
    w[::3] = 0.0
    for loss in ["mse", "mae", "huber", "log_cosh", "quantile:q=0.2"]:
        assert value(y, p, loss, w) == value(y[w > 0], p[w > 0], loss)


def test_integer_weights_equal_repeated_rows_bitwise():
    rng = np.random.default_rng(30)
    z, x = make_data("sigmoid_ce", rng, 200)
    w = rng.integers(1, 4, 200).astype(np.float64)
    for loss in ["sigmoid_ce", "focal", "hinge"]:
        rep = value(np.repeat(z, w.astype(int)), np.repeat(x, w.astype(int)), loss)
        assert_rel(value(z, x, loss, w), rep, rel=4e-16)


# ---- torch (optional, CPU) -----------------------------------------------


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_default_device("cpu") if hasattr(torch, "set_default_device") else None
    return torch


@pytest.mark.parametrize("pos_weight", [None, 0.0, 1.0, 3.0, 1e6])
def test_torch_bce_with_logits(pos_weight, weighting):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(40)
    z, x = make_data("sigmoid_ce", rng, 400)
    w = _weights(rng, 400, weighting)
    kw = {} if pos_weight is None else {"pos_weight": torch.tensor(pos_weight, dtype=torch.float64)}
    ref = F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(z), reduction="none", **kw)
    loss = "sigmoid_ce" if pos_weight is None else f"weighted_sigmoid_ce:pos_weight={pos_weight!r}"
    assert_rel(value(z, x, loss, w), wmean(ref.numpy(), w), rel=1e-11, what=loss)


@pytest.mark.parametrize("K", [2, 10, 1000])
def test_torch_cross_entropy(K, weighting):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(41)
    y, x = make_data("sparse_softmax_ce", rng, 200, K)
    w = _weights(rng, 200, weighting)
    ref = F.cross_entropy(torch.tensor(x), torch.tensor(y.astype(np.int64)), reduction="none")
    assert_rel(value(y, x, "sparse_softmax_ce", w), wmean(ref.numpy(), w), rel=1e-11)
    t = special.softmax(rng.normal(0, 2, (200, K)), axis=1)
    ref = F.cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none")
    assert_rel(value(t, x, "softmax_ce", w), wmean(ref.numpy(), w), rel=1e-11)


@pytest.mark.parametrize("delta", [1.0, 0.3, 4.0])
def test_torch_huber(delta, weighting):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(42)
    y, p = rng.normal(0, 3, 400), rng.normal(0, 3, 400)
    w = _weights(rng, 400, weighting)
    ref = F.huber_loss(torch.tensor(p), torch.tensor(y), reduction="none", delta=delta)
    assert_rel(value(y, p, f"huber:delta={delta!r}", w), wmean(ref.numpy(), w), rel=1e-11)


@pytest.mark.parametrize("log_input", [False, True])
def test_torch_poisson_nll(log_input, weighting):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(43)
    loss = f"poisson:log_input={'true' if log_input else 'false'}"
    y, p = make_data(loss, rng, 400)
    w = _weights(rng, 400, weighting)
    ref = F.poisson_nll_loss(torch.tensor(p), torch.tensor(y), log_input=log_input, full=False,
                             eps=0.0, reduction="none")
    assert_rel(value(y, p, loss, w), wmean(ref.numpy(), w), rel=1e-11)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.6, 0.5)])
def test_torch_sigmoid_focal_formula(alpha, gamma, weighting):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(44)
    z, x = make_data("focal", rng, 400)
    w = _weights(rng, 400, weighting)
    inputs, targets = torch.tensor(x), torch.tensor(z)
    # torchvision.ops.sigmoid_focal_loss, reduction="none"
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    ref = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        ref = (alpha * targets + (1 - alpha) * (1 - targets)) * ref
    assert_rel(value(z, x, f"focal:alpha={alpha!r},gamma={gamma!r}", w), wmean(ref.numpy(), w),
               rel=1e-9)


# ==========================================================================
# 3. Hard cases against 50-digit mpmath (1e-12 relative, per row and mean)
# ==========================================================================

HUGE_LOGITS = [1e3, -1e3, 1e300, -1e300, 40.0, -40.0, 0.0, 1e-300, -1e-300, 36.7, 710.0, -745.5]
SOFT_LABELS = [0.0, 1.0, 0.5, 0.999999, 1e-6, 1 - 2**-53, 2**-60]
HARD_PROBS = [0.0, 1.0, 1e-300, 1 - 1e-16, 1e-17, EPS, 1 - EPS, 0.5, 0.999999, 1e-6, 5e-324]


def _grid(xs, zs):
    z, x = np.meshgrid(np.array(zs, dtype=np.float64), np.array(xs, dtype=np.float64))
    return z.ravel(), x.ravel()


def _hard_binary(loss):
    if loss.startswith("bce"):
        return _grid(HARD_PROBS, [0.0, 1.0, 0.5, 0.999999, 1e-6, 1 - 2**-53])
    if loss.startswith("hinge"):
        return _grid([1e300, -1e300, 1e3, -1e3, 1.0, 1 - 2**-53, 1 + 2**-52, 0.0, 1e-300],
                     [0.0, 1.0, -1.0, 0.5, 0.75, 0.999999])
    return _grid(HUGE_LOGITS, SOFT_LABELS)


def _hard_regression(loss):
    pairs = [(1e8 + 1, 1e8), (1e8, 1e8 + 1), (1e16 + 2, 1e16), (-1e16, -1e16 - 2), (1.0 + 2**-52, 1.0),
             (1e300, -1e300), (1e150, 0.0), (1e-300, -1e-300), (5e-324, 0.0), (0.0, 0.0), (3.0, 3.0),
             (1e-8, 0.0), (0.5, 0.0), (1.0, 0.0), (20.0, 0.0), (-1e5, 1e5), (710.0, 0.0), (123.456, 1e-9)]
    if loss.startswith("mse") or loss.startswith("rmse"):
        pairs = [pq for pq in pairs if abs(pq[0] - pq[1]) < 1e150]
    if loss.startswith("poisson"):
        if "log_input=true" in loss:
            # (exp(p) - y p is ill-conditioned near its minimum p = ln y, e.g. y = 1e6, p = 1e-6:
            # no float64 evaluation reaches 1e-12 there, so such rows are not in this list)
            pairs = [(0.0, -1e3), (1e8 + 1, -1e8), (3.0, 700.0), (1e300, -1e-300), (5.0, -745.0),
                     (2.0, 0.0), (0.0, 0.0), (1e6, -1e-6), (7.0, 1e-300), (1.0, 1e-16), (1e-300, 709.0)]
        else:
            pairs = [(0.0, 1e-300), (3.0, 1e-300), (1e8 + 1, 1e8), (0.0, 1e300), (5.0, 1e300), (1.0, 1.0),
                     (2.0, 5e-324), (1e6, 1.0 + 2**-52), (1e-300, 1e-300), (4.0, 1e8)]
    y, p = zip(*pairs, strict=True)
    return np.array(y), np.array(p)


REGRESSION_HARD = ["mse", "rmse", "mae", "huber", "huber:delta=1e-300", "huber:delta=1e8", "log_cosh",
                   "quantile", "quantile:q=1e-9", "quantile:q=0.999999", "poisson",
                   "poisson:log_input=true"]
BINARY_HARD = ["bce", "bce:eps=1e-7", "sigmoid_ce", "weighted_sigmoid_ce:pos_weight=0",
               "weighted_sigmoid_ce:pos_weight=1e6", "weighted_sigmoid_ce:pos_weight=1e-8",
               "weighted_sigmoid_ce:pos_weight=2.5", "hinge", "focal", "focal:alpha=-1,gamma=0.5",
               "focal:alpha=0.9,gamma=0", "focal:gamma=7"]


def _check_rows(loss, y, p):
    got = per_row(loss, y, p)
    ref = mp_rows(loss, y, p)
    bad = [(i, (y[i].tolist(), p[i].tolist()) if np.ndim(p) == 1 else i, float(got[i]),
            mpmath.nstr(ref[i], 20)) for i in range(len(ref)) if not mp_close(float(got[i]), ref[i])]
    assert not bad, f"{loss}: {len(bad)} rows off, e.g. {bad[:4]}"


def _check_mean(loss, y, p):
    # rows whose loss overflows float64 are checked by _check_rows (inf); leave them out here
    finite = np.array([abs(r) <= FMAX for r in mp_rows(loss, y, p)])
    y, p = y[finite], p[finite]
    ref = mp_mean(loss, y, p)
    got = value(y, p, loss)
    assert mp_close(got, ref), f"{loss}: mean {got!r} vs {mpmath.nstr(ref, 20)}"
    w = np.random.default_rng(len(y)).uniform(0, 10, len(y))
    if len(y) > 2:
        w[::5] = 0.0
        w[1] = 1e-300
    ref = mp_mean(loss, y, p, w)
    got = value(y, p, loss, w)
    assert mp_close(got, ref), f"{loss}: weighted mean {got!r} vs {mpmath.nstr(ref, 20)}"


@pytest.mark.parametrize("loss", REGRESSION_HARD)
def test_hard_regression_vs_mpmath(loss):
    y, p = _hard_regression(loss)
    _check_rows(loss, y, p)
    _check_mean(loss, y, p)


def test_cancelling_differences_are_exact():
    # (1e8 + 1) - 1e8 is exactly 1 in float64: every loss sees d = 1
    y, p = np.array([1e8 + 1, 1e16 + 2, -1e8]), np.array([1e8, 1e16, -1e8 - 1])
    assert value(y, p, "mse") == (1 + 4 + 1) / 3
    assert value(y, p, "mae") == 4 / 3
    assert value(y, p, "huber") == (0.5 + 1.5 + 0.5) / 3
    assert_rel(value(y[[0]], p[[0]], "log_cosh"), float(mpmath.log(mpmath.cosh(1))))


@pytest.mark.parametrize("loss", BINARY_HARD)
def test_hard_binary_vs_mpmath(loss):
    z, x = _hard_binary(loss)
    _check_rows(loss, z, x)
    _check_mean(loss, z, x)


def test_soft_label_near_one_with_logit_40():
    # (1 - z) x + log1p(exp(-x)) with z = 0.999999, x = 40: no cancellation allowed
    with mpmath.workdps(MP_DPS):
        ref = 40 * (1 - M(0.999999)) + mpmath.log1p(mpmath.exp(-40))
    assert mp_close(value([0.999999], [40.0], "sigmoid_ce"), ref)
    assert mp_close(value([0.999999], [40.0], "weighted_sigmoid_ce:pos_weight=1"), ref)
    assert_rel(value([1.0], [40.0], "sigmoid_ce"), math.exp(-40) - math.exp(-80) / 2)


def _hard_multiclass(kind: str, K: int):
    """Hard rows (confident correct rows, whose loss is tiny: test_confident_correct_softmax_vs_mpmath)."""
    rng = np.random.default_rng(K)
    rows = []
    for big in (1e3, 1e300):
        x = np.zeros(K)
        x[0], x[-1] = big, -big
        rows.append((x, K - 1))  # the worst class
        rows.append((-x, K - 1))  # the best class, by a margin whose loss underflows
        rows.append((x, 1 % K))
    rows.append((np.full(K, 1e300), 0))  # all equal: ln K
    rows.append((np.full(K, -1e300), K // 2))
    rows.append((rng.normal(0, 1e3, K), int(np.argmin(rng.normal(0, 1e3, K)))))
    x = rng.normal(0, 3, K)
    x[3 % K] = 1e300
    rows.append((x, 0))
    rows.append((rng.normal(0, 1, K), 0))
    X = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows], dtype=np.float64)
    if kind == "sparse":
        return labels, X
    T = np.eye(K)[labels.astype(int)]
    T[-1] = 1.0 / K  # soft rows
    T[-2] = 0.0
    T[-2, :2] = [0.999999, 1 - 0.999999]
    return T, X


@pytest.mark.parametrize("K", [2, 1000])
@pytest.mark.parametrize("loss", ["sparse_softmax_ce", "softmax_ce"])
def test_hard_softmax_vs_mpmath(loss, K):
    y, x = _hard_multiclass("sparse" if loss.startswith("sparse") else "dist", K)
    _check_rows(loss, y, x)
    _check_mean(loss, y, x)


CONFIDENT = [
    ("K2-logit40", 2, [40.0, 0.0]),  # loss = log1p(exp(-40)) = 4.2e-18
    ("K2-logit25", 2, [25.0, 0.0]),  # loss = 1.4e-11, a well-trained classifier
    ("K2-logit12", 2, [12.0, 0.0]),  # loss = 6.1e-6
    ("K1000-margin50", 1000, None),
]


@pytest.mark.parametrize("loss", ["sparse_softmax_ce", "softmax_ce"])
@pytest.mark.parametrize("case,K,row", CONFIDENT, ids=[c[0] for c in CONFIDENT])
def test_confident_correct_softmax_vs_mpmath(loss, case, K, row):
    if row is None:
        x = np.random.default_rng(5).normal(0, 3, K)
        x[7] = x.max() + 50.0
    else:
        x = np.array(row)
    y = np.array([float(np.argmax(x))]) if loss.startswith("sparse") else np.eye(K)[[int(np.argmax(x))]]
    X = x[None, :]
    _check_rows(loss, y, X)
    _check_mean(loss, y, X)


def test_sigmoid_ce_equals_k2_softmax_on_hard_logits():
    # sigmoid_ce(x, z) is softmax_ce on logits [x, 0] with t = [z, 1 - z]: check where both are exact
    x = np.array([1e3, -1e3, 1e300, -1e300, 3.0, -3.0, 0.0])
    z = np.array([0.0, 1.0, 0.5, 0.25, 0.0, 1.0, 0.3])
    a = per_row("sigmoid_ce", 1 - z, -x)
    b = per_row("softmax_ce", np.stack([z, 1 - z], axis=1), np.stack([x, np.zeros_like(x)], axis=1))
    np.testing.assert_allclose(a, b, rtol=1e-15)


def _hard_probs(kind: str, K: int, confident: bool = True):
    rows, labels = [], []
    for top in (1.0, 1 - 1e-16, 1 - 1e-7) if confident else (1.0, 1 - 1e-16, 0.75):
        p = np.zeros(K)
        p[0] = top
        p[1:] = (1 - top) / (K - 1)
        for lab in (0, K - 1):
            rows.append(p.copy())
            labels.append(lab)
    p = np.full(K, 1e-300)
    p[-1] = 1.0 - (K - 1) * 1e-300
    rows.append(p)
    labels.append(0)
    rows.append(np.full(K, 1.0 / K))
    labels.append(K // 2)
    P = np.array(rows)
    y = np.array(labels, dtype=np.float64)
    if kind == "index":
        return y, P
    T = np.eye(K)[y.astype(int)]
    T[-1] = 1.0 / K
    T[-2, :] = 0.0
    T[-2, :2] = 0.5
    return T, P


@pytest.mark.parametrize("K", [2, 1000])
@pytest.mark.parametrize("loss,kind", [("cce", "index"), ("cce", "dist"), ("cce:eps=1e-7", "index"),
                                       ("cce:renormalize=true", "index"),
                                       ("cce:renormalize=true", "dist"), ("kl_div", "dist"),
                                       ("kl_div:eps=1e-9", "dist")])
def test_hard_probabilities_vs_mpmath(loss, kind, K):
    # (renormalize with K label columns on a confident row: a known bug, see
    # test_cce_renormalize_confident_row_vs_mpmath)
    y, p = _hard_probs(kind, K, confident=not ("renormalize" in loss and kind == "dist"))
    _check_rows(loss, y, p)
    _check_mean(loss, y, p)


def test_cce_renormalize_rescales_rows():
    p = np.array([[0.2, 0.6], [1e-300, 3e-300], [0.1, 0.3]])
    y = np.array([1.0, 0.0, 1.0])
    _check_rows("cce:renormalize=true", y, p)
    assert_rel(value(y, p, "cce:renormalize=true"), (-math.log(0.75) - math.log(0.25) - math.log(0.75)) / 3)
    # renormalizing does not make scores outside [0, 1] probabilities
    e = _raises_invalid(y, p * 10, "cce:renormalize=true")
    assert (e.row, e.role, e.index, e.value) == (0, "prediction", 0, 2.0)


@pytest.mark.parametrize("labels", ["index", "onehot"])
@pytest.mark.parametrize("K", [2, 1000])
def test_cce_renormalize_confident_row_vs_mpmath(K, labels):
    p = np.zeros((1, K))
    p[0, 0] = 1 - 1e-7
    p[0, 1:] = 1e-7 / (K - 1)
    p[0, 1] *= 1.5  # so the row is off by a few 1e-8, a typical unnormalised row
    y = np.array([0.0]) if labels == "index" else np.eye(K)[[0]]
    _check_rows("cce:renormalize=true", y, p)


@pytest.mark.parametrize("loss", ["mae", "mse"])
def test_million_rows_with_one_outlier_exact(loss):
    rng = np.random.default_rng(50)
    n = 1_000_000
    y = rng.random(n)
    y[123_456] = 1e15
    p = np.zeros(n)
    rows = np.abs(y) if loss == "mae" else y * y
    exact = exact_fraction(rows) / n
    want = float(exact)  # correctly rounded
    got = value(y, p, loss)
    assert got == want, (got, want)
    # an ordinary float sum is measurably off here; the core must not be
    assert math.fsum(rows) / n == pytest.approx(want, rel=1e-15)
    with mpmath.workdps(MP_DPS):
        ref = M(exact.numerator) / exact.denominator
        assert mp_close(got, ref, rel=2**-53)


def test_million_rows_weighted_outlier_exact():
    rng = np.random.default_rng(51)
    n = 1_000_000
    y = rng.random(n)
    y[777] = -1e15
    w = rng.random(n)
    got = value(y, np.zeros(n), "mae", w)
    want = float(exact_fraction(np.abs(y) * w) / exact_fraction(w))
    assert got == want


# ---- known overflow / edge bugs ------------------------------------------


@pytest.mark.parametrize("case", ["values", "weights"])
def test_huge_but_finite_sums(case):
    if case == "values":
        got = value([1.7e308, 1.7e308, 1.6e308], [0.0, 0.0, 0.0], "mae")
        assert got == float((Fraction(1.7e308) * 2 + Fraction(1.6e308)) / 3)
    else:
        got = value([1.0, 3.0], [0.0, 0.0], "mae", [1e308, 1e308])
        assert got == 2.0


def test_huge_weight_times_loss():
    assert value([1e10, 0.0], [0.0, 0.0], "mae", [1e300, 1.0]) == pytest.approx(1e10, rel=1e-15)


@pytest.mark.parametrize("loss,y,p,want", [
    ("bce:eps=0", [0.0, 1.0], [0.0, 1.0], 0.0),
    ("bce:eps=0", [0.0, 0.0], [0.0, 0.5], math.log(2) / 2),
    ("cce:eps=0", [[1.0, 0.0]], [[1.0, 0.0]], 0.0),
    ("cce:eps=0", [[0.5, 0.5, 0.0]], [[0.5, 0.5, 0.0]], math.log(2)),
], ids=["bce-certain", "bce-mixed", "cce-onehot", "cce-soft"])
def test_eps_zero_keeps_xlogy_convention(loss, y, p, want):
    got = value(np.array(y), np.array(p), loss)
    assert got == pytest.approx(want, abs=1e-300, rel=1e-15)


def test_eps_zero_infinite_loss_is_inf():
    # a certain wrong prediction without clipping costs +inf, not nan
    assert value([1.0], [0.0], "bce:eps=0") == math.inf
    assert value(np.array([1.0]), np.array([[1.0, 0.0]]), "cce:eps=0") == math.inf


@pytest.mark.parametrize("t,want", [([1.0, 0.0], 0.0), ([0.5, 0.5], 1e308)], ids=["onehot", "soft"])
def test_softmax_ce_logits_near_float_max(t, want):
    got = value(np.array([t]), np.array([[1e308, -1e308]]), "softmax_ce")
    assert got == pytest.approx(want, rel=1e-15, abs=1e-300)


def test_sparse_softmax_ce_logits_near_float_max():
    X = np.array([[1e308, -1e308], [-1e308, 1e308]])
    assert value(np.array([0.0, 1.0]), X, "sparse_softmax_ce") == 0.0
    assert value(np.array([1.0]), X[:1], "sparse_softmax_ce") == math.inf  # 2e308 overflows


# ==========================================================================
# 4. Bad input
# ==========================================================================


def _raises_invalid(y, p, loss, w=None, nan="error") -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        lossctl.evaluate(y, p, losses=[loss], weights=w, nan=nan)
    e = info.value
    assert isinstance(e, InputError) and isinstance(e, LossctlError)
    return e


def _same_value(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


NONFINITE = [math.nan, math.inf, -math.inf]
NONFINITE_LOSSES = ["mse", "rmse", "mae", "huber", "log_cosh", "quantile", "poisson", "bce", "sigmoid_ce",
                    "weighted_sigmoid_ce:pos_weight=2", "hinge", "focal", "softmax_ce",
                    "sparse_softmax_ce", "cce", "kl_div"]


def _clean(loss: str, n: int = 6, K: int = 3):
    rng = np.random.default_rng(60)
    y, p = make_data(loss, rng, n, K)
    return y.copy(), p.copy()


@pytest.mark.parametrize("bad", NONFINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("role", ["label", "prediction"])
@pytest.mark.parametrize("loss", NONFINITE_LOSSES)
def test_nonfinite_is_an_error_and_skip_drops_it(loss, role, bad):
    y, p = _clean(loss)
    arr = y if role == "label" else p
    col = None
    if arr.ndim == 2:
        col = 1
        arr[4, col] = bad
    else:
        arr[4] = bad
    e = _raises_invalid(y, p, loss)
    assert (e.row, e.role, e.index) == (4, role, col)
    assert _same_value(e.value, bad)
    assert "row 5" in str(e)
    r = lossctl.evaluate(y, p, losses=[loss], nan="skip")
    assert (r.rows, r.rows_skipped) == (5, 1)
    keep = np.arange(6) != 4
    assert r[loss] == value(y[keep], p[keep], loss)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, -1e-300], ids=str)
def test_bad_weight(bad):
    y, p = np.arange(5.0), np.zeros(5)
    w = np.ones(5)
    w[3] = bad
    e = _raises_invalid(y, p, "mse", w)
    assert (e.row, e.role) == (3, "weight")
    assert _same_value(e.value, bad)
    if math.isnan(bad):  # a missing weight may be skipped
        r = lossctl.evaluate(y, p, losses=["mse"], weights=w, nan="skip")
        assert (r.rows, r.rows_skipped, r["mse"]) == (4, 1, (0 + 1 + 4 + 16) / 4)
    else:  # an infinite or negative weight is never "missing"
        e = _raises_invalid(y, p, "mse", w, nan="skip")
        assert (e.row, e.role, e.value) == (3, "weight", bad)


def test_all_weights_zero_is_an_input_error():
    with pytest.raises(InputError, match="zero"):
        lossctl.evaluate([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], losses=["mse"], weights=[0.0, 0.0, 0.0])
    with pytest.raises(InputError):
        lossctl.evaluate(np.array([0.0, 1.0]), np.full((2, 3), 1 / 3), losses=["cce"], weights=[0.0, -0.0])


def test_all_rows_skipped_is_an_input_error():
    with pytest.raises(InputError):
        lossctl.evaluate([math.nan, 1.0], [0.0, math.inf], losses=["mse"], nan="skip")


BINARY_LABEL_LOSSES = ["bce", "sigmoid_ce", "weighted_sigmoid_ce:pos_weight=1", "focal", "hinge"]


@pytest.mark.parametrize("bad", [1.5, -0.5, 2.0, -1e-300, 1 + 2**-52], ids=str)
@pytest.mark.parametrize("loss", BINARY_LABEL_LOSSES)
def test_binary_label_outside_unit_interval(loss, bad):
    z, x = _clean(loss)
    z[2] = bad
    e = _raises_invalid(z, x, loss)
    assert (e.row, e.role, e.value) == (2, "label", bad)


def test_hinge_accepts_minus_one_labels_only_as_labels():
    s = np.array([0.3, -2.0, 4.0])
    assert value(np.array([-1.0, 1.0, 0.0]), s, "hinge") == (1.3 + 3.0 + 5.0) / 3
    e = _raises_invalid(np.array([-1.0, -0.5, 0.0]), s, "hinge")
    assert (e.row, e.role) == (1, "label")
    e = _raises_invalid(np.array([0.0, 1.0]), np.array([0.5, 1.5]), "bce")
    assert (e.row, e.role, e.value) == (1, "prediction", 1.5)
    # -1 is not a 0/1 label for the cross-entropies
    _raises_invalid(np.array([-1.0, 1.0]), np.array([0.5, 0.5]), "sigmoid_ce")


@pytest.mark.parametrize("bad", [1.0 + 2**-52, -1e-300, 2.0, -0.5], ids=str)
def test_bce_probability_outside_unit_interval(bad):
    z, p = _clean("bce")
    p[3] = bad
    e = _raises_invalid(z, p, "bce")
    assert (e.row, e.role, e.value, e.index) == (3, "prediction", bad, None)


@pytest.mark.parametrize("loss", ["cce", "kl_div"])
@pytest.mark.parametrize("bad", [1.5, -0.25], ids=str)
def test_multiclass_probability_outside_unit_interval(loss, bad):
    K = 4
    t = np.full((5, K), 0.25)
    q = np.full((5, K), 0.25)
    q[3] = [0.25, 0.25, bad, 0.5 - bad]  # still sums to one
    e = _raises_invalid(t, q, loss)
    assert (e.row, e.role, e.index, e.value) == (3, "prediction", 2, bad)


@pytest.mark.parametrize("loss", ["cce", "kl_div", "softmax_ce"])
def test_label_distribution_rules(loss):
    K = 3
    x = np.full((4, K), 1 / 3)
    t = np.full((4, K), 1 / 3)
    t[2] = [1.2, -0.2, 0.0]
    e = _raises_invalid(t, x, loss)
    assert (e.row, e.role, e.index, e.value) == (2, "label", 0, 1.2)
    t[2] = [0.5, 0.4, 0.0]  # inside [0, 1] but does not sum to 1
    e = _raises_invalid(t, x, loss)
    assert (e.row, e.role) == (2, "label")


def test_probability_rows_must_sum_to_one_unless_renormalize():
    p = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6], [0.1, 0.1, 0.8]])
    y = np.array([0.0, 1.0, 2.0])
    e = _raises_invalid(y, p, "cce")
    assert (e.row, e.role) == (1, "prediction")
    assert math.isfinite(value(y, p, "cce:renormalize=true"))
    ok = p.copy()
    ok[1] = [0.2, 0.3, 0.5 + 9e-7]  # within the 1e-6 tolerance
    assert math.isfinite(value(y, ok, "cce"))
    ok[1] = [0.2, 0.3, 0.5 + 2e-6]
    assert _raises_invalid(y, ok, "cce").row == 1


@pytest.mark.parametrize("loss", ["sparse_softmax_ce", "cce", "log_loss"])
@pytest.mark.parametrize("bad", [4.0, 5.0, -1.0, 1.5, 0.5, 3.000001, -0.5], ids=str)
def test_class_index_not_integer_or_out_of_range(loss, bad):
    K = 4
    y, x = _clean("cce", 6, K)
    if loss == "sparse_softmax_ce":
        x = np.log(x)
    y[3] = bad
    e = _raises_invalid(y, x, loss)
    assert (e.row, e.role, e.value, e.index) == (3, "label", bad, None)
    assert f"[0, {K})" in e.reason


def test_class_index_accepts_every_valid_class_k1000():
    K = 1000
    rng = np.random.default_rng(61)
    x = rng.normal(0, 1, (K, K))
    y = np.arange(K, dtype=np.float64)
    ref = special.logsumexp(x, axis=1) - x[np.arange(K), np.arange(K)]
    assert_rel(value(y, x, "sparse_softmax_ce"), float(np.mean(ref)))
    y[-1] = K
    assert _raises_invalid(y, x, "sparse_softmax_ce").row == K - 1


@pytest.mark.parametrize("log_input", [False, True])
def test_poisson_domain(log_input):
    loss = f"poisson:log_input={str(log_input).lower()}"
    y, p = np.array([1.0, 2.0, 0.0, 3.0]), np.array([0.5, 1.0, 2.0, 1.5])
    for bad in (0.0, -1.0, -0.0, -1e-300):
        q = p.copy()
        q[2] = bad
        if log_input:  # a log rate may be any real number
            assert math.isfinite(value(y, q, loss))
        else:
            e = _raises_invalid(y, q, loss)
            assert (e.row, e.role, e.value) == (2, "prediction", bad)
    yy = y.copy()
    yy[1] = -1.0
    assert (_raises_invalid(yy, p, loss).row, _raises_invalid(yy, p, loss).role) == (1, "label")


def test_bad_row_is_counted_across_chunks_and_skips():
    loss = parse_loss("bce")
    s = EvalState([loss], nan="skip")
    s.update(np.array([0.0, 1.0, 0.5]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(InvalidInput) as info:
        s.update(np.array([math.nan, 1.0, 1.0, 0.0]), np.array([0.5, 0.5, 0.5, 1.5]))
    assert (info.value.row, info.value.role, info.value.value) == (6, "prediction", 1.5)
    for y2, w2, want in [([1.0, 3.0], [1.0, 1.0], (3, "label", 3.0)),
                         ([1.0, 0.0], [1.0, math.inf], (3, "weight", math.inf)),
                         ([1.0, 0.0], [-2.0, 1.0], (2, "weight", -2.0))]:
        s = EvalState([parse_loss("sparse_softmax_ce", 3)], 1, 3, weighted=True)
        s.update(np.array([0.0, 2.0]), np.zeros((2, 3)), np.ones(2))
        with pytest.raises(InvalidInput) as info:
            s.update(np.array(y2), np.zeros((2, 3)), np.array(w2))
        assert (info.value.row, info.value.role, info.value.value) == want


def test_invalid_input_message_names_row_role_and_value():
    e = _raises_invalid(np.array([0.0, 1.0, 7.0]), np.zeros((3, 4)), "sparse_softmax_ce")
    text = str(e)
    assert "row 3" in text and "label" in text and "7.0" in text


# ==========================================================================
# 5. Usage errors
# ==========================================================================


@pytest.mark.parametrize("typo,suggestion", [("hubber", "huber"), ("rmes", "rmse"), ("msee", "mse"),
                                             ("sigmoid_cee", "sigmoid_ce"), ("focall", "focal"),
                                             ("kl_dv", "kl_div"), ("log_los", "log_loss")])
def test_unknown_loss_suggests(typo, suggestion):
    with pytest.raises(UsageError, match=f"Did you mean '{suggestion}'"):
        parse_loss(typo)
    with pytest.raises(UsageError, match=f"'{suggestion}'"):
        lossctl.evaluate([1.0], [1.0], losses=[typo])


def test_unknown_loss_without_close_match():
    with pytest.raises(UsageError, match="unknown loss"):
        parse_loss("zzzzqqq")


@pytest.mark.parametrize("text,match", [
    ("huber:delt=2", "Did you mean 'delta'"),
    ("quantile:qq=0.3", "Did you mean 'q'"),
    ("focal:gama=1", "Did you mean 'gamma'"),
    ("weighted_sigmoid_ce:pos_weigth=2", "Did you mean 'pos_weight'"),
    ("mse:delta=1", "unknown parameter"),
    ("huber:delta", "key=value"),
    ("huber:delta=1,delta=2", "twice"),
])
def test_unknown_or_malformed_parameter(text, match):
    with pytest.raises(UsageError, match=match):
        parse_loss(text)


@pytest.mark.parametrize("text", [
    "huber:delta=0", "huber:delta=-1", "huber:delta=nan", "huber:delta=inf", "huber:delta=abc",
    "quantile:q=0", "quantile:q=1", "quantile:q=1.5", "quantile:q=-0.1", "pinball:q=nan",
    "weighted_sigmoid_ce:pos_weight=-1", "weighted_sigmoid_ce:pos_weight=inf",
    "weighted_sigmoid_ce:pos_weight=", "focal:gamma=-1", "focal:alpha=1.5", "bce:eps=-1e-9",
    "bce:eps=0.5", "cce:eps=1", "kl_div:eps=-1", "poisson:log_input=maybe", "cce:renormalize=2",
])
def test_parameter_range_errors(text):
    with pytest.raises(UsageError):
        parse_loss(text, 3 if text.startswith(("cce", "kl_div")) else None)
    with pytest.raises(UsageError):
        lossctl.evaluate(np.array([[1.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]), losses=[text]) \
            if text.startswith(("cce", "kl_div")) else lossctl.evaluate([1.0], [0.5], losses=[text])


@pytest.mark.parametrize("text", ["huber:delta=1e-300", "quantile:q=1e-9", "weighted_sigmoid_ce:pos_weight=0",
                                  "focal:alpha=-1", "focal:gamma=0", "bce:eps=0", "poisson:log_input=TRUE",
                                  "cce:renormalize=yes"])
def test_parameter_boundaries_accepted(text):
    parse_loss(text, 3 if text.startswith("cce") else None)


@pytest.mark.parametrize("loss,y,p", [
    ("sparse_softmax_ce", np.zeros(3), np.zeros(3)),  # K = 1
    ("cce", np.zeros((3, 2)), np.full((3, 3), 1 / 3)),  # 2 label columns, 3 prediction columns
    ("softmax_ce", np.zeros(3), np.zeros((3, 3))),  # class index given to softmax_ce
    ("mse", np.zeros(3), np.zeros((3, 2))),
    ("bce", np.zeros((3, 2)), np.full(3, 0.5)),
])
def test_column_count_errors(loss, y, p):
    with pytest.raises(UsageError):
        lossctl.evaluate(y, p, losses=[loss])


def test_usage_errors_of_the_state():
    with pytest.raises(UsageError):
        EvalState([])
    with pytest.raises(UsageError):
        EvalState([parse_loss("mse")], nan="drop")
    s = EvalState([parse_loss("mse")])
    with pytest.raises(UsageError):
        s.update(np.zeros(3), np.zeros(4))
    with pytest.raises(UsageError):
        s.update(np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(UsageError):
        EvalState([parse_loss("mse")], weighted=True).update(np.zeros(3), np.zeros(3))
    with pytest.raises(LossctlError):
        s.update(np.array(["a", "b"], dtype=object), np.zeros(2))


def test_evaluate_rejects_non_numbers_with_an_input_error():
    # "a value that is not a number" is an input error (was: numpy's ValueError escaped)
    with pytest.raises(InputError) as info:
        lossctl.evaluate([1.0, "b"], [1.0, 2.0], losses=["mse"])
    if isinstance(info.value, InvalidInput):
        assert (info.value.row, info.value.role) == (1, "label")


def test_the_earliest_bad_row_is_reported():
    # a NaN label in row 17 must not hide a bad prediction in row 5, whatever the rule
    z, p = _clean("bce", 30)
    z[17] = math.nan
    p[5] = 1.5
    e = _raises_invalid(z, p, "bce")
    assert (e.row, e.role, e.value) == (5, "prediction", 1.5)
    z[3] = 2.0
    e = _raises_invalid(z, p, "bce", nan="skip")
    assert (e.row, e.role, e.value) == (3, "label", 2.0)


LOG_SOFTMAX_CASES = {
    "normal": lambda rng: rng.normal(0, 2, (3000, 10)),
    "wide": lambda rng: rng.normal(0, 300, (3000, 7)),
    "confident": lambda rng: np.column_stack([rng.normal(0, 1, 500) + 60.0, rng.normal(0, 1, (500, 4))]),
    "ties": lambda rng: np.repeat(rng.normal(0, 1, (400, 1)), 5, axis=1),
    "underflow": lambda rng: np.column_stack([np.zeros(400), -rng.uniform(700.0, 760.0, 400)]),
    "one_class": lambda rng: rng.normal(0, 5, (100, 1)),
    "one_row": lambda rng: rng.normal(0, 5, (1, 6)),  # both C- and F-contiguous: other strides
}


@pytest.mark.parametrize("case", list(LOG_SOFTMAX_CASES))
def test_c_log_softmax_matches_numpy_and_mpmath(case, monkeypatch):
    """lossctl.core._kernels.log_softmax: the NumPy formula to ~1 ulp; both against mpmath."""
    pytest.importorskip("lossctl.core._kernels", reason="the optional C extension is not built")
    from lossctl.core import kernels as losses

    x = np.asfortranarray(LOG_SOFTMAX_CASES[case](np.random.default_rng(11)))
    in_c = losses._log_softmax(x)
    sliced = losses._log_softmax(x[7:-3]) if len(x) > 10 else None  # strided columns
    monkeypatch.setattr(losses, "_kernels", None)
    in_numpy = losses._log_softmax(x)
    np.testing.assert_array_equal(in_c[1], in_numpy[1])  # the row max
    # the two sum S in different orders: log S may differ by an ulp or two of S
    np.testing.assert_allclose(in_c[0], in_numpy[0], rtol=2e-15, atol=0)
    if sliced is not None:
        np.testing.assert_array_equal(sliced[0], in_c[0][7:-3])
    for i in range(0, len(x), max(1, len(x) // 25)):  # log S = log1p(the other terms), 50 digits
        with mpmath.workdps(50):
            top = int(np.argmax(x[i]))
            others = mpmath.fsum(mpmath.exp(mpmath.mpf(v) - x[i][top]) for j, v in enumerate(x[i])
                                 if j != top)
            want = float(mpmath.log1p(others))
        # (x - m rounds: exp of it is off by up to |x - m| ulps, inherent in the formula)
        assert abs(in_c[0][i] - want) <= REL * abs(want), (i, x[i])
