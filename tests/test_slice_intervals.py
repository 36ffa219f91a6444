"""Per-slice bootstrap intervals (``--ci`` with ``--by``): determinism, merges, coverage.

Each slice keeps 50 buckets of its own (the row's bucket modulo 50), with
exact per-bucket sums, so a slice's interval does not depend on chunking,
threads or how shards are merged, and covers the true value about as often
as the confidence level says.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run

from lossctl.api import evaluate_request
from lossctl.core import intervals
from lossctl.core.losses import parse_loss_list
from lossctl.core.state import MAX_SLICE_INTERVALS, SLICE_BUCKETS, EvalState, SliceKeys
from lossctl.engine.plan import Request


@pytest.fixture(scope="module")
def sliced_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    n = 6000
    seg = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2])
    y = rng.normal(10, 3, n)
    noise = np.where(seg == "north", 1.0, np.where(seg == "south", 2.0, 3.0))
    p = y + rng.normal(0, 1, n) * noise
    w = rng.uniform(0.5, 2.0, n)
    path = tmp_path_factory.mktemp("slices") / "preds.csv"
    pd.DataFrame({"y": y, "p": p, "w": w, "seg": seg}).to_csv(path, index=False, lineterminator="\n")
    return path


def _report(path: Path, threads: int, chunk: int, weight: str | None = "w") -> dict:
    req = Request(paths=[str(path)], label="y", pred="p", losses=["mse", "rmse", "mae"],
                  weight=weight, by="seg", ci=True, seed=3, threads=threads, chunk_rows=chunk)
    r = evaluate_request(req)
    keys = [k[0] for k in r.state.slice_keys.keys]
    assert r.slice_intervals is not None
    return dict(zip(keys, r.slice_intervals, strict=True))


def test_slice_intervals_do_not_depend_on_threads_or_chunks(sliced_csv: Path) -> None:
    first = _report(sliced_csv, 1, 65536)
    for threads, chunk in [(4, 7), (2, 1000), (1, 1)]:
        assert _report(sliced_csv, threads, chunk) == first
    for seg, ci in first.items():
        for key, (lo, hi) in ci.items():
            assert lo < hi, (seg, key)


def test_slice_intervals_through_the_cli_and_merge(sliced_csv: Path, tmp_path: Path) -> None:
    whole = run("runner", ["eval", str(sliced_csv), "-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae",
                     "--by", "seg", "--ci", "--seed", "9", "-f", "json"])
    assert whole.code == 0, whole.err
    doc = json.loads(whole.out)
    for s in doc["slices"]:
        lo, hi = s["ci"]["mse"]
        assert lo < s["losses"]["mse"] < hi
    # two shards of the same rows, saved and merged: the same slices and intervals, bit for bit
    df = pd.read_csv(sliced_csv)
    shards = []
    for i, part in enumerate((df.iloc[:2500], df.iloc[2500:])):  # (buckets: file name and row)
        path = tmp_path / f"part-{i}.csv"
        part.to_csv(path, index=False, lineterminator="\n")
        shards.append(path)
    one_pass = run("runner", ["eval", *map(str, shards), "-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae",
                        "--by", "seg", "--ci", "--seed", "9", "-f", "json"])
    states = []
    for i, path in enumerate(shards):
        st = tmp_path / f"s{i}.json"
        r = run("runner", ["eval", str(path), "-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae",
                     "--by", "seg", "--ci", "--seed", "9", "--emit-state", str(st), "-f", "json"])
        assert r.code == 0, r.err
        states.append(str(st))
    merged = run("runner", ["merge", *states, "-f", "json"])
    assert merged.code == 0, merged.err
    a, b = json.loads(one_pass.out), json.loads(merged.out)
    assert [s["ci"] for s in a["slices"]] == [s["ci"] for s in b["slices"]]
    assert [s["losses"] for s in a["slices"]] == [s["losses"] for s in b["slices"]]


def test_slice_intervals_cover_the_true_mse() -> None:
    """300 data sets, two slices of different noise: 95% intervals cover the truth 90-98.5%."""
    rng = np.random.default_rng(77)
    counts_of = functools.lru_cache(maxsize=None)(
        lambda s: intervals.poisson_counts(SLICE_BUCKETS, s))
    true = {0: 1.0, 1: 4.0}
    covered = {0: 0, 1: 0}
    sets = 300
    for i in range(sets):
        n = 1200
        codes = rng.integers(0, 2, n)
        sd = np.where(codes == 0, 1.0, 2.0)
        y = rng.normal(size=n)
        p = y + rng.normal(size=n) * sd
        keys = SliceKeys(["s"])
        keys.code((0,))
        keys.code((1,))
        seed = i % 20
        st = EvalState(parse_loss_list(["mse"]), slices=keys, buckets=intervals.BUCKETS, seed=seed)
        st.update(y, p, slices=codes, buckets=intervals.bucket_ids("f.csv", np.arange(n), seed))
        cis = intervals.slice_intervals(st, counts_of(seed), 0.95)
        for s in (0, 1):
            lo, hi = cis[s]["mse"]
            covered[s] += lo <= true[s] <= hi
    for s, c in covered.items():
        assert 0.90 <= c / sets <= 0.985, (s, c / sets)


def test_per_slice_intervals_stop_beyond_the_slice_limit() -> None:
    """More slices than MAX_SLICE_INTERVALS: no per-slice intervals (memory), overall ones stay."""
    n = MAX_SLICE_INTERVALS + 10
    keys = SliceKeys(["s"], limit=n + 1)
    st = EvalState(parse_loss_list(["mse"]), slices=keys, buckets=intervals.BUCKETS, seed=0)
    codes = np.array([keys.code((i,)) for i in range(n)])
    y = np.linspace(0, 1, n)
    st.update(y, y + 0.5, slices=codes, buckets=intervals.bucket_ids("f", np.arange(n), 0))
    assert st.slice_replicates(intervals.poisson_counts(SLICE_BUCKETS, 0)) is None
    assert intervals.loss_intervals(st, intervals.poisson_counts(intervals.BUCKETS, 0), 0.95)["mse"]
