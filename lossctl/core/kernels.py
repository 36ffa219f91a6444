"""Loss kernels: one chunk of labels and predictions -> per-row losses, vectorised.

Each kernel is NumPy over a whole chunk (no Python loop over rows) in the
numerically stable form of the spec (``docs/LOSSES.md``); where the
spec's form would cancel, an algebraically equal form with non-negative terms
is used, and the docstring says so.  The catalogue (:mod:`lossctl.core.losses`)
binds each kernel to its name, parameters, columns and domain checks.
"""

from __future__ import annotations

import math

import numpy as np

from .. import native

_kernels = native.load("_kernels")

LN2 = math.log(2.0)

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
