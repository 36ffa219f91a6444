"""Bootstrap intervals, in-process: coverage on simulated data, determinism, merges and seeds.

The command line is covered by ``test_gating.py``; here the statistics are
checked directly on ``EvalState`` + ``lossctl.core.intervals``, the same calls the
engine makes (``bucket_ids`` per chunk, exact per-bucket sums, seeded
Poisson counts, percentile intervals, paired differences).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossctl.api import evaluate_request as evaluate_files
from lossctl.core import intervals
from lossctl.core.losses import parse_loss_list
from lossctl.core.state import EvalState
from lossctl.engine.plan import Columns, Outcome, Request
from lossctl.report.model import Report, make_report

B = intervals.BUCKETS


def fed_state(y: np.ndarray, p: np.ndarray, seed: int, losses: tuple[str, ...] = ("mse",),
              w: np.ndarray | None = None, name: str = "f.csv", cuts: list[int] | None = None,
              first_row: int = 0) -> EvalState:
    """A state fed rows ``first_row ...`` of file ``name``, in chunks cut at ``cuts``."""
    st = EvalState(parse_loss_list(list(losses)), weighted=w is not None, buckets=B, seed=seed)
    bounds = [0, *(cuts or []), len(y)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        rows = np.arange(first_row + a, first_row + b)
        st.update(y[a:b], p[a:b], None if w is None else w[a:b],
                  buckets=intervals.bucket_ids(name, rows, seed))
    return st


def columns() -> Columns:
    return Columns(label=["y"], pred=["p"], weight=None)


# --------------------------------------------------------------------------
# Coverage: 95% intervals cover the true value 92-98% of the time
# --------------------------------------------------------------------------

DATASETS = 300
ROWS = 1500
SEED_POOL = 25
# Errors: a part shared by both models (the pairing) plus each model's own part.
SHARED_SD, BASE_OWN_VAR, CAND_OWN_VAR = 0.9, 0.19, 0.40
TRUE_BASE_MSE = SHARED_SD**2 + BASE_OWN_VAR  # 1.0
TRUE_CAND_MSE = SHARED_SD**2 + CAND_OWN_VAR  # 1.21
TRUE_DIFF = TRUE_CAND_MSE - TRUE_BASE_MSE  # 0.21


def test_95_percent_intervals_cover_the_true_mse_and_paired_difference() -> None:
    """300 data sets of 1500 rows from a known distribution; the coverage must be 92-98%.

    Deterministic (fixed seeds).  Each data set hashes its rows with its own
    seed from a pool of 25 (the Poisson counts of a seed are drawn once:
    drawing 2 million Poisson values per data set would dominate the run
    time; the rows are i.i.d., so sharing counts between data sets leaves
    every data set's bootstrap valid).  An unpaired difference interval
    (independent counts for the two models) covers ~99% here and fails the
    upper bound; too narrow an interval fails the lower one.
    """
    rng = np.random.default_rng(20240601)
    counts_of = functools.lru_cache(maxsize=None)(lambda s: intervals.poisson_counts(B, s))
    covered = {"mse": 0, "difference": 0, "relative": 0}
    for i in range(DATASETS):
        s = i % SEED_POOL
        y = rng.normal(0.0, 1.0, ROWS)
        shared = rng.normal(0.0, SHARED_SD, ROWS)
        base_p = y + shared + rng.normal(0.0, math.sqrt(BASE_OWN_VAR), ROWS)
        cand_p = y + shared + rng.normal(0.0, math.sqrt(CAND_OWN_VAR), ROWS)
        base, cand = fed_state(y, base_p, s), fed_state(y, cand_p, s)
        counts = counts_of(s)
        lo, hi = intervals.loss_intervals(base, counts, 0.95)["mse"]
        covered["mse"] += lo <= TRUE_BASE_MSE <= hi
        d = intervals.differences(base, cand, counts, 0.95)["mse"]
        covered["difference"] += d["ci"][0] <= TRUE_DIFF <= d["ci"][1]
        covered["relative"] += d["relative_ci"][0] <= TRUE_DIFF / TRUE_BASE_MSE <= d["relative_ci"][1]
    rates = {k: v / DATASETS for k, v in covered.items()}
    for k, rate in rates.items():
        assert 0.92 <= rate <= 0.98, (k, rates)


def test_coverage_simulation_uses_the_engine_counts() -> None:
    """The shortcut above calls what make_report calls: intervals from counts seeded by the state's seed."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=ROWS)
    st = fed_state(y, y + rng.normal(size=ROWS), seed=7, losses=("mse", "rmse", "mae"))
    report = make_report(Outcome([st], ["f.csv"], columns(), False), 0.95)
    assert report.intervals == intervals.loss_intervals(st, intervals.poisson_counts(B, 7), 0.95)
    assert report.intervals != intervals.loss_intervals(st, intervals.poisson_counts(B, 0), 0.95)
    value = report.result.values["mse"]
    lo, hi = report.intervals["mse"]
    assert lo < value < hi


# --------------------------------------------------------------------------
# Determinism: merges, chunk splits, threads
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 5000
    y = rng.normal(10.0, 3.0, n)
    return {"y": y, "old": y + rng.standard_t(3, n), "new": y + 1.1 * rng.standard_t(3, n),
            "w": rng.uniform(0.1, 3.0, n)}


def _all_intervals(base: EvalState, cand: EvalState, seed: int) -> tuple:
    counts = intervals.poisson_counts(B, seed)
    return (intervals.loss_intervals(cand, counts, 0.95), intervals.differences(base, cand, counts, 0.95),
            cand.bucket_arrays()[1].tolist())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("split", [1, 2500, 4999])
def test_merge_of_two_halves_is_bit_identical(data: dict, weighted: bool, split: int) -> None:
    y, w = data["y"], data["w"] if weighted else None
    losses = ("mse", "rmse", "mae", "huber:delta=2")

    def whole(pred: str) -> EvalState:
        return fed_state(y, data[pred], 5, losses, w)

    def halves(pred: str, reverse: bool) -> EvalState:
        p = data[pred]
        a = fed_state(y[:split], p[:split], 5, losses, None if w is None else w[:split])
        b = fed_state(y[split:], p[split:], 5, losses, None if w is None else w[split:], first_row=split)
        return b.merge(a) if reverse else a.merge(b)

    one = _all_intervals(whole("old"), whole("new"), 5)
    for reverse in (False, True):
        merged = _all_intervals(halves("old", reverse), halves("new", reverse), 5)
        assert merged == one  # == on floats: bit for bit
    assert one[0]["mse"][0] < one[1]["mse"]["candidate"] < one[0]["mse"][1]


def test_intervals_do_not_depend_on_chunk_splits(data: dict) -> None:
    y, p, w = data["y"], data["new"], data["w"]
    rng = np.random.default_rng(0)
    counts = intervals.poisson_counts(B, 1)
    ref = intervals.loss_intervals(fed_state(y, p, 1, ("mse", "rmse"), w), counts, 0.9)
    splits = [list(range(1, 5000, 1)), list(range(7, 5000, 7)), [1000],
              sorted(rng.choice(np.arange(1, 5000), 40, replace=False).tolist())]
    for cuts in splits:
        st = fed_state(y, p, 1, ("mse", "rmse"), w, cuts=cuts)
        assert intervals.loss_intervals(st, counts, 0.9) == ref, len(cuts)


def test_bucket_arrays_hold_the_row_sums(data: dict) -> None:
    """Per-bucket sums of (y - p)^2 and of the weights, as an independent computation gives them."""
    y, p, w = data["y"], data["new"], data["w"]
    st = fed_state(y, p, 2, ("mse",), w, cuts=[123, 4000])
    sums, weights = st.bucket_arrays()
    ids = intervals.bucket_ids("f.csv", np.arange(len(y)), 2)
    np.testing.assert_allclose(sums["mse"], np.bincount(ids, w * (y - p) ** 2, minlength=B), rtol=1e-12)
    np.testing.assert_allclose(weights, np.bincount(ids, w, minlength=B), rtol=1e-12)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory: pytest.TempPathFactory, data: dict) -> Path:
    path = tmp_path_factory.mktemp("iv") / "preds.csv"
    pd.DataFrame({"y": data["y"], "old": data["old"], "new": data["new"], "w": data["w"]}).to_csv(
        path, index=False, lineterminator="\n")
    return path


@pytest.mark.parametrize("compare", [False, True])
def test_engine_intervals_do_not_depend_on_threads_or_chunks(csv_file: Path, compare: bool) -> None:
    def report(threads: int, chunk_rows: int) -> Report:
        req = Request(paths=[str(csv_file)], label="y", pred="new", losses=["mse", "rmse", "mae"],
                      weight="w", ci=True, seed=4, threads=threads, chunk_rows=chunk_rows,
                      baseline_pred="old" if compare else None)
        return evaluate_files(req)

    reports = [report(1, 65536), report(4, 7), report(4, 1000), report(2, 333), report(1, 1)]
    first = reports[0]
    for r in reports[1:]:
        assert r.result.values == first.result.values
        assert r.intervals == first.intervals
        assert r.differences == first.differences
    if compare:
        d = first.differences["mse"]
        assert d["ci"][0] < d["difference"] < d["ci"][1]
    # the interval and the value agree with a direct computation on the arrays
    df = pd.read_csv(csv_file)
    mse = np.average((df["y"] - df["new"]) ** 2, weights=df["w"])
    assert first.result.values["mse"] == pytest.approx(mse, rel=1e-12)
    direct = fed_state(df["y"].to_numpy(), df["new"].to_numpy(), 4, ("mse", "rmse", "mae"),
                       df["w"].to_numpy(), name="preds.csv")
    assert first.intervals == intervals.loss_intervals(direct, intervals.poisson_counts(B, 4), 0.95)


# --------------------------------------------------------------------------
# Seeds: Poisson counts and row buckets
# --------------------------------------------------------------------------


def test_poisson_counts_are_seeded() -> None:
    a = intervals.poisson_counts(B, 0)
    assert a.shape == (intervals.REPLICATES, B)
    assert np.array_equal(a, intervals.poisson_counts(B, 0))  # same seed, same counts
    b = intervals.poisson_counts(B, 1)
    assert not np.array_equal(a, b)
    assert np.mean(a == b) < 0.5  # not merely a shifted copy: mostly different draws
    assert (a >= 0).all() and np.array_equal(a, np.round(a))
    assert a.mean() == pytest.approx(1.0, abs=0.005)  # Poisson(1): mean 1, variance 1
    assert a.var() == pytest.approx(1.0, abs=0.01)
    assert abs(np.corrcoef(a[:, 0], a[:, 1])[0, 1]) < 0.1
    assert intervals.poisson_counts(10, 3, replicates=5).shape == (5, 10)


def test_bucket_ids() -> None:
    rows = np.arange(200_000)
    ids = intervals.bucket_ids("part-0.parquet", rows, 0)
    assert ids.dtype.kind == "i" and ids.min() >= 0 and ids.max() < B
    assert np.array_equal(ids, intervals.bucket_ids("part-0.parquet", rows, 0))
    # a row's bucket does not depend on the chunk it arrives in
    assert np.array_equal(ids[777:1234], intervals.bucket_ids("part-0.parquet", rows[777:1234], 0))
    # the base name counts, not the directory the shard was written to
    assert np.array_equal(ids, intervals.bucket_ids("/tmp/elsewhere/part-0.parquet", rows, 0))
    assert np.mean(ids == intervals.bucket_ids("part-1.parquet", rows, 0)) < 0.01
    assert np.mean(ids == intervals.bucket_ids("part-0.parquet", rows, 1)) < 0.01
    # spread evenly: a chi-square statistic near its mean (B - 1), far from a clumped assignment
    counts = np.bincount(ids, minlength=B)
    expected = len(rows) / B
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < (B - 1) + 6 * math.sqrt(2 * (B - 1))


def test_different_seeds_give_different_intervals(data: dict) -> None:
    y, p = data["y"], data["new"]
    got = {s: intervals.loss_intervals(fed_state(y, p, s), intervals.poisson_counts(B, s), 0.95)["mse"]
           for s in range(5)}
    assert len(set(got.values())) == 5
    value = fed_state(y, p, 0).result().values["mse"]
    for lo, hi in got.values():
        assert lo < value < hi
        assert (hi - lo) == pytest.approx(got[0][1] - got[0][0], rel=0.3)  # same data, similar width


# --------------------------------------------------------------------------
# Small pieces: percentile interval, verdict
# --------------------------------------------------------------------------


def test_percentile_interval() -> None:
    v = np.arange(1001, dtype=float)
    assert intervals.percentile_interval(v, 0.95) == (pytest.approx(25.0), pytest.approx(975.0))
    assert intervals.percentile_interval(v, 0.5) == (pytest.approx(250.0), pytest.approx(750.0))
    mostly_nan = np.where(np.arange(1001) < 600, np.nan, v)
    lo, hi = intervals.percentile_interval(mostly_nan, 0.95)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("ci,higher_is_better,want", [
    ((0.1, 0.2), False, "worse"),
    ((-0.2, -0.1), False, "better"),
    ((-0.1, 0.1), False, "no significant change"),
    ((0.0, 0.1), False, "no significant change"),
    ((0.1, 0.2), True, "better"),
    ((-0.2, -0.1), True, "worse"),
    ((math.nan, math.nan), False, "no significant change"),
])
def test_verdict(ci: tuple[float, float], higher_is_better: bool, want: str) -> None:
    """The verdict reads how much worse the candidate is: c - b, or b - c when higher is better."""
    worse_ci = tuple(sorted(-v for v in ci)) if higher_is_better else ci
    assert intervals.verdict(worse_ci) == want


def test_c_bucket_ids_equal_the_numpy_formula(monkeypatch):
    """lossctl.core._kernels.bucket_ids: the same bucket for every row as the NumPy formula."""
    pytest.importorskip("lossctl.core._kernels", reason="the optional C extension is not built")
    iv = intervals
    rng = np.random.default_rng(5)
    cases = [np.arange(70_000), rng.integers(0, 2**62, 20_000), np.arange(9)[::3],
             np.array([], dtype=np.int64)]
    got = [iv.bucket_ids("shards/part-0.csv", rows, 2**64 - 7) for rows in cases]
    monkeypatch.setattr(iv, "_kernels", None)
    for rows, ids in zip(cases, got, strict=True):
        np.testing.assert_array_equal(ids, iv.bucket_ids("shards/part-0.csv", rows, 2**64 - 7))
        assert ids.dtype == np.int64 and (len(ids) == 0 or 0 <= ids.min() <= ids.max() < iv.BUCKETS)
