"""Confidence intervals: a Poisson bootstrap over hashed row buckets.

Each row goes to one of ``BUCKETS`` buckets by a hash of (its file's name,
its row in that file, the seed), so the assignment does not depend on chunk
size, threads or how the files are split across runs, and states of shards
merge into the same buckets as one pass.  The state keeps exact per-bucket
sums; at the end every replicate reweights the buckets by independent
Poisson(1) counts (the bootstrap of large-scale evaluation systems: no
resampling of rows, constant memory) and the interval is the percentile
range of the replicates.  A paired comparison uses the same counts for both
models, so the interval of their difference accounts for the pairing.
"""

from __future__ import annotations

import math
import os
import zlib
from typing import Any

import numpy as np

from .. import native

BUCKETS = 1000
REPLICATES = 1000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_kernels = native.load("_kernels")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each value (wrapping uint64 arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def file_key(source: str) -> int:
    """A stable number for a file: its base name (shards keep their names wherever they run)."""
    return zlib.crc32(os.path.basename(source).encode())


def bucket_ids(source: str, rows: np.ndarray, seed: int, buckets: int = BUCKETS) -> np.ndarray:
    """The bucket of each of ``rows`` (0-based data rows) of file ``source``."""
    mixed = _splitmix64(np.array([seed], dtype=np.uint64)) ^ np.uint64(file_key(source))
    offset = _splitmix64(mixed)[0]
    if _kernels is not None:  # the same integers in one pass, in C
        out = np.empty(len(rows), dtype=np.int64)
        _kernels.bucket_ids(np.ascontiguousarray(rows, dtype=np.int64), int(offset), buckets, out)
        return out
    rows = rows.astype(np.uint64) + offset
    # the top 32 hash bits scaled to [0, buckets): a multiply instead of a division
    return ((_splitmix64(rows) >> np.uint64(32)) * np.uint64(buckets) >> np.uint64(32)).view(np.int64)


def poisson_counts(buckets: int, seed: int, replicates: int = REPLICATES) -> np.ndarray:
    """Poisson(1) weights of every bucket in every replicate, (replicates, buckets)."""
    rng = np.random.default_rng([seed, 0x1055C71])
    return rng.poisson(1.0, size=(replicates, buckets)).astype(np.float64)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` range of the replicates (NaN if too few are defined)."""
    ok = values[np.isfinite(values)]
    if len(ok) < len(values) / 2:
        return math.nan, math.nan
    lo, hi = np.quantile(ok, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def loss_intervals(state: Any, counts: np.ndarray, confidence: float
                   ) -> dict[str, tuple[float, float] | None]:
    """A percentile interval for every loss of ``state`` (an EvalState with buckets).

    None for a loss whose state keeps no buckets (the score histogram of
    roc_auc and pr_auc).
    """
    return {key: None if reps is None else percentile_interval(reps, confidence)
            for key, reps in state.replicates(counts).items()}


def slice_intervals(state: Any, counts: np.ndarray, confidence: float
                    ) -> list[dict[str, tuple[float, float] | None]] | None:
    """Per slice, a percentile interval for every loss (None where the state keeps none)."""
    reps = state.slice_replicates(counts)
    if reps is None:
        return None
    return [{key: None if r is None else percentile_interval(r, confidence) for key, r in s.items()}
            for s in reps]


def differences(base: Any, cand: Any, counts: np.ndarray | None, confidence: float
                ) -> dict[str, dict[str, Any]]:
    """Paired differences ``candidate - baseline`` per loss, with intervals from shared buckets.

    ``relative`` is ``(candidate - baseline) / |baseline|``.  The verdict is
    ``worse`` or ``better`` when the interval of the difference excludes 0,
    else ``no significant change``; None (with ``ci_unsupported``, the reason)
    for a metric that gets no interval.
    """
    b, c = base.result(), cand.result()
    out: dict[str, dict[str, Any]] = {}
    reps_b = base.replicates(counts) if counts is not None else {}
    reps_c = cand.replicates(counts) if counts is not None else {}
    for loss in cand.losses:
        key = loss.key
        diff = c.values[key] - b.values[key]
        rel = diff / abs(b.values[key]) if b.values[key] else math.copysign(math.inf, diff) \
            if diff else 0.0
        entry: dict[str, Any] = {"baseline": b.values[key], "candidate": c.values[key],
                                 "difference": diff, "relative": rel,
                                 "higher_is_better": loss.definition.higher_is_better}
        rep_b, rep_c = reps_b.get(key), reps_c.get(key)
        if counts is not None and (rep_b is None or rep_c is None):  # no interval: no verdict
            entry.update(ci=(math.nan, math.nan), relative_ci=(math.nan, math.nan), verdict=None,
                         ci_unsupported=cand.interval_note(loss))
        elif counts is not None:
            entry["ci"] = percentile_interval(rep_c - rep_b, confidence)
            with np.errstate(divide="ignore", invalid="ignore"):
                entry["relative_ci"] = percentile_interval((rep_c - rep_b) / np.abs(rep_b),
                                                           confidence)
            entry["verdict"] = verdict(entry["ci"], loss.definition.higher_is_better)
        out[key] = entry
    return out


def verdict(ci: tuple[float, float], higher_is_better: bool) -> str:
    """``worse``, ``better`` or ``no significant change`` from the interval of candidate - baseline."""
    lo, hi = ci
    if math.isnan(lo):
        return "no significant change"
    up = lo > 0
    down = hi < 0
    if not (up or down):
        return "no significant change"
    return "worse" if up != higher_is_better else "better"
