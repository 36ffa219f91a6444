"""Confidence intervals: a Poisson bootstrap over hashed row buckets.

Each row goes to one of ``BUCKETS`` buckets by a hash of (its file's name,
its row in that file, the seed), or with ``--ci-key`` of (its row id, the
seed), so the assignment does not depend on chunk size, threads or how the
files are split across runs, and states of shards merge into the same
buckets as one pass (with a row id: whatever the files are called or
which format holds them).  The state keeps exact per-bucket
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
    return _buckets(np.asarray(rows, dtype=np.int64), _splitmix64(mixed)[0], buckets)


_KEY_TAG = np.uint64(0x6B65795F68617368)  # keeps key hashes apart from (file, row) ones
_PRIME = np.uint64(0x100000001B3)  # FNV-64's prime: odd, so its powers never vanish
_powers = np.ones(1, dtype=np.uint64)


def _prime_powers(n: int) -> np.ndarray:
    """``_PRIME ** k`` for k < n (wrapping uint64), grown and kept as longer keys come."""
    global _powers
    if len(_powers) < n:
        more = np.full(max(n, 2 * len(_powers)) - len(_powers), _PRIME, dtype=np.uint64)
        _powers = np.concatenate([_powers, _powers[-1] * np.cumprod(more)])
    return _powers[:n]


def key_bucket_ids(offsets: np.ndarray, data: np.ndarray, seed: int,
                   buckets: int = BUCKETS) -> np.ndarray:
    """The bucket of each row by its row id (``--ci-key``): a hash of the id's bytes and the seed.

    ``offsets`` (n + 1 int64) and ``data`` (uint8) hold the ids as text, as
    Arrow lays out strings: id ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    The same id falls in the same bucket in every file, format and shard.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    offset = _splitmix64(_splitmix64(np.array([seed], dtype=np.uint64)) ^ _KEY_TAG)[0]
    if _kernels is not None:  # the same integers in one pass, in C
        out = np.empty(len(offsets) - 1, dtype=np.int64)
        _kernels.key_bucket_ids(np.ascontiguousarray(offsets), np.ascontiguousarray(data),
                                int(offset), buckets, out)
        return out
    lengths = np.diff(offsets)
    n = len(lengths)
    chars = np.asarray(data[offsets[0]:offsets[-1]], dtype=np.uint64) if n else \
        np.empty(0, dtype=np.uint64)
    starts = offsets[:-1] - offsets[0]
    owner = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(chars)) - starts[owner]
    terms = chars * _prime_powers(int(lengths.max()) if n else 1)[pos]
    h = np.zeros(n, dtype=np.uint64)
    full = lengths > 0
    if len(terms):  # (reduceat takes the starts of the non-empty ids only)
        h[full] = np.add.reduceat(terms, starts[full])
    h = _splitmix64(h ^ _splitmix64(lengths.astype(np.uint64)))
    return _buckets(h.view(np.int64), offset, buckets)


_POWERS_OF_TEN = np.array([10**k for k in range(20)], dtype=np.uint64)


def int_key_bucket_ids(values: np.ndarray, seed: int, buckets: int = BUCKETS) -> np.ndarray:
    """:func:`key_bucket_ids` of integer row ids, hashed as their decimal text (17 as "17").

    The same bucket as the id read as text from a CSV file, without making
    the text: each decimal digit's byte enters the hash at its position.
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    offset = _splitmix64(_splitmix64(np.array([seed], dtype=np.uint64)) ^ _KEY_TAG)[0]
    if _kernels is not None:
        out = np.empty(len(values), dtype=np.int64)
        _kernels.int_key_bucket_ids(values, int(offset), buckets, out)
        return out
    negative = values < 0
    magnitude = np.where(negative, np.uint64(0) - values.view(np.uint64), values.view(np.uint64))
    digits = np.maximum(1, (magnitude[:, None] >= _POWERS_OF_TEN[None, :]).sum(axis=1))
    sign = negative.astype(np.int64)
    powers = _prime_powers(21)
    h = np.where(negative, np.uint64(ord("-")), np.uint64(0))
    for p in range(20):  # the digit worth 10**p sits at sign + digits - 1 - p from the left
        present = p < digits
        char = (magnitude // _POWERS_OF_TEN[p]) % np.uint64(10) + np.uint64(ord("0"))
        at = np.where(present, sign + digits - 1 - p, 0)
        h += np.where(present, char * powers[at], np.uint64(0))
    lengths = (sign + digits).astype(np.uint64)
    h = _splitmix64(h ^ _splitmix64(lengths))
    return _buckets(h.view(np.int64), offset, buckets)


def _buckets(values: np.ndarray, offset: np.uint64, buckets: int) -> np.ndarray:
    """``buckets`` scaled from the top 32 bits of ``splitmix64(value + offset)``."""
    if _kernels is not None:  # the same integers in one pass, in C
        out = np.empty(len(values), dtype=np.int64)
        _kernels.bucket_ids(np.ascontiguousarray(values, dtype=np.int64), int(offset), buckets, out)
        return out
    z = values.astype(np.int64).view(np.uint64) + offset
    # the top 32 hash bits scaled to [0, buckets): a multiply instead of a division
    return ((_splitmix64(z) >> np.uint64(32)) * np.uint64(buckets) >> np.uint64(32)).view(np.int64)


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
    reps_b = base.replicates(counts) if counts is not None else {}
    reps_c = cand.replicates(counts) if counts is not None else {}
    return {loss.key: _difference(b.values[loss.key], c.values[loss.key], reps_b.get(loss.key),
                                  reps_c.get(loss.key), counts is not None, confidence,
                                  loss.definition, cand.interval_note(loss))
            for loss in cand.losses}


def slice_differences(base: Any, cand: Any, counts: np.ndarray | None, confidence: float
                      ) -> list[dict[str, Any]]:
    """Per slice (``compare --by``): rows, weight sum and every loss's paired difference.

    Both states share their slice codes (one pass over the same rows); each
    slice's interval comes from its own buckets, as in :func:`slice_intervals`
    (none beyond the state's limit of slices with buckets: no verdict then;
    none at all without ``counts``: the states keep no buckets).
    """
    with_ci = counts is not None
    reps_b = base.slice_replicates(counts) if with_ci else None
    reps_c = cand.slice_replicates(counts) if with_ci else None
    dropped = None if reps_c is not None or not with_ci else "no per-slice buckets are kept " \
        "beyond 2,000 slices"
    out = []
    for i, (sb, sc) in enumerate(zip(base.slice_results(), cand.slice_results(), strict=True)):
        rb = reps_b[i] if reps_b is not None else {}
        rc = reps_c[i] if reps_c is not None else {}
        out.append({"key": sc["key"], "rows": sc["rows"], "weight_sum": sc["weight_sum"],
                    "losses": {loss.key: _difference(sb["values"][loss.key],
                                                     sc["values"][loss.key], rb.get(loss.key),
                                                     rc.get(loss.key), with_ci, confidence,
                                                     loss.definition,
                                                     cand.interval_note(loss) or dropped)
                               for loss in cand.losses}})
    return out


def _relative(amount: Any, b: Any) -> Any:
    if isinstance(amount, np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore"):
            return amount / np.abs(b)
    return amount / abs(b) if b else math.copysign(math.inf, amount) if amount else 0.0


def _difference(b: float, c: float, rep_b: np.ndarray | None, rep_c: np.ndarray | None,
                with_ci: bool, confidence: float, definition: Any,
                note: str | None = None) -> dict[str, Any]:
    """One paired difference; without replicates, no interval and no verdict (``note``: why).

    ``difference`` is ``candidate - baseline``; ``worse_by`` says how much
    worse the candidate is in the definition's direction (for mean_bias:
    ``|c| - |b|``), with its interval ``worse_ci``: the verdict and the
    regression checks read those.
    """
    diff, worse = c - b, definition.worse(b, c)
    entry: dict[str, Any] = {"baseline": b, "candidate": c, "difference": diff,
                             "relative": _relative(diff, b), "worse_by": worse,
                             "relative_worse": _relative(worse, b),
                             "higher_is_better": definition.higher_is_better}
    if with_ci and (rep_b is None or rep_c is None):  # no interval: no verdict
        nan = (math.nan, math.nan)
        entry.update(ci=nan, relative_ci=nan, worse_ci=nan, relative_worse_ci=nan, verdict=None,
                     ci_unsupported=note or "no interval")
    elif with_ci:
        worse_reps = definition.worse(rep_b, rep_c)
        entry["ci"] = percentile_interval(rep_c - rep_b, confidence)
        entry["relative_ci"] = percentile_interval(_relative(rep_c - rep_b, rep_b), confidence)
        entry["worse_ci"] = percentile_interval(worse_reps, confidence)
        entry["relative_worse_ci"] = percentile_interval(_relative(worse_reps, rep_b), confidence)
        entry["verdict"] = verdict(entry["worse_ci"])
    return entry


def verdict(worse_ci: tuple[float, float]) -> str:
    """``worse``, ``better`` or ``no significant change`` from the interval of how much worse."""
    lo, hi = worse_ci
    if math.isnan(lo) or not (lo > 0 or hi < 0):
        return "no significant change"
    return "worse" if lo > 0 else "better"
