"""Per-row quantiles: the log-bucketed sketch against NumPy, and its exact, order-free merging.

The reference is NumPy's ``quantile(method="inverted_cdf")`` (weighted where
there are weights): the sketch's value must be within ``RELATIVE_ERROR`` of
it, equal to it where a bucket holds one distinct value, and max and min
exact.  Merging is checked bit for bit on the saved JSON, through the engine
(chunk sizes, threads), shards merged with ``lossctl merge``, and
hypothesis-chosen splits.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import report, run
from hypothesis import given, settings
from hypothesis import strategies as st

from lossctl.api import evaluate_request
from lossctl.core.histogram import ordered_bits
from lossctl.core.sketch import (
    ABSOLUTE_ERROR,
    LOSS_LEVELS,
    RELATIVE_ERROR,
    SIGNED_LEVELS,
    SketchState,
    bucket_keys,
)
from lossctl.engine.plan import Request


def numpy_quantiles(x: np.ndarray, w: np.ndarray | None, levels: dict[str, Fraction]) -> dict:
    keep = ~np.isnan(x) if w is None else ~np.isnan(x) & (w > 0)
    xs, ws = x[keep], None if w is None else w[keep]
    out = {name: float(np.quantile(xs, float(q), method="inverted_cdf", weights=ws))
           for name, q in levels.items()}
    return {"min": float(xs.min()), **out, "max": float(xs.max())}


def assert_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert abs(got[k] - v) <= max(RELATIVE_ERROR * abs(v), ABSOLUTE_ERROR), (k, got[k], v)


def sketch_of(x: np.ndarray, w: np.ndarray | None = None, pieces: int = 1) -> SketchState:
    s = SketchState(w is not None)
    for part in np.array_split(np.arange(len(x)), pieces):
        s.add(x[part], None if w is None else w[part])
    return s


RNG = np.random.default_rng(20240716)
CASES = {
    "lognormal (losses over 12 decades)": RNG.lognormal(0.0, 4.0, 200_000),
    "normal (signed residuals)": RNG.normal(3.0, 10.0, 200_000),
    "with exact zeros": np.concatenate([np.zeros(3000), RNG.exponential(1.0, 7000)]),
    "tiny and huge": np.concatenate([RNG.uniform(1e-300, 1e-299, 500), RNG.uniform(1e299, 1e300, 500),
                                     -RNG.uniform(1e-310, 1e-308, 100)]),
    "heavy tail": RNG.standard_t(1.5, 100_000),
}


@pytest.mark.parametrize("name", list(CASES))
def test_quantiles_match_numpy_within_the_stated_accuracy(name: str) -> None:
    x = CASES[name]
    s = sketch_of(x)
    assert_close(s.quantiles(SIGNED_LEVELS), numpy_quantiles(x, None, SIGNED_LEVELS))
    w = RNG.uniform(0.0, 3.0, len(x)) * (RNG.uniform(size=len(x)) > 0.2)  # a fifth weigh nothing
    sw = sketch_of(x, w)
    assert_close(sw.quantiles(SIGNED_LEVELS), numpy_quantiles(x, w, SIGNED_LEVELS))


def test_values_a_bucket_holds_alone_are_exact() -> None:
    """0/1 accuracies, whole-number errors: a bucket of one distinct value reports that value."""
    x = RNG.integers(-3, 40, 10_000).astype(float)
    got = sketch_of(x).quantiles(SIGNED_LEVELS)
    assert got == numpy_quantiles(x, None, SIGNED_LEVELS)
    assert sketch_of(np.array([0.0, 1.0, 1.0, 1.0])).quantiles(LOSS_LEVELS) == \
        {"min": 0.0, "p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0}


def test_levels_are_decimal_fractions() -> None:
    """p90 of 1..10 is 9 (nine tenths of the rows), not 10 (the float 0.9 is a hair above 9/10)."""
    got = sketch_of(np.arange(1.0, 11.0)).quantiles(LOSS_LEVELS)
    assert (got["p50"], got["p90"], got["p99"]) == (5.0, 9.0, 10.0)


def test_zero_weight_nan_and_infinite_values() -> None:
    s = SketchState(True)
    s.add(np.array([1.0, 2.0, np.nan, 1e9, np.inf]), np.array([1.0, 1.0, 1.0, 0.0, 1.0]))
    q = s.quantiles(LOSS_LEVELS)
    assert q is not None and q["max"] == np.inf and q["min"] == 1.0  # the weightless 1e9 is out
    assert int(s.rows.sum()) == 3
    empty = SketchState(True)
    empty.add(np.array([5.0]), np.array([0.0]))
    assert empty.quantiles(LOSS_LEVELS) is None


def test_bucket_keys_are_ordered_bits_shifted() -> None:
    """The branch-free keys equal the score histogram's order-preserving bits, -0.0 with 0.0."""
    x = np.concatenate([RNG.normal(0, 1e3, 10_000), [0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf,
                                                     1.7976931348623157e308]])
    assert np.array_equal(bucket_keys(x), (ordered_bits(x) >> np.uint64(46)).astype(np.int64))
    keys = bucket_keys(np.sort(x))
    assert (np.diff(keys) >= 0).all()


def test_bucket_bounds_hold_their_values() -> None:
    x = np.concatenate([RNG.normal(0, 50, 5000), [0.0, 1.0, -1.0, 2.0 ** -1074]])
    b = sketch_of(x).buckets()
    assert (b.lower <= b.low).all() and (b.high <= b.upper).all() and (b.low <= b.high).all()
    assert (np.diff(b.lower) > 0).all() and int(b.rows.sum()) == len(x)
    # a bucket is at most 2**-6 wide relative to its values (away from zero)
    wide = np.abs(b.lower) > 1e-300
    assert ((b.upper - b.lower)[wide] <= 2 ** -6 * np.minimum(np.abs(b.lower), np.abs(b.upper))[wide]
            * (1 + 1e-12)).all()


finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.lists(st.integers(0, 300), max_size=4),
       st.booleans(), st.randoms())
def test_any_split_merges_to_the_same_bits(values: list[float], cuts: list[int], weighted: bool,
                                           rnd) -> None:
    """Split anywhere, merge in any order: the same JSON, and quantiles within the bound."""
    x = np.array(values)
    w = np.array([rnd.choice([0.0, 0.5, 1.0, 2.0, 3.0]) for _ in values]) if weighted else None
    whole = sketch_of(x, w)
    bounds = sorted({min(c, len(x)) for c in cuts} | {0, len(x)})
    parts = [sketch_of(x[a:b], None if w is None else w[a:b])
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    rnd.shuffle(parts)
    merged = SketchState(weighted)
    for p in parts:
        merged.merge(p)
    assert json.dumps(merged.to_json()) == json.dumps(whole.to_json())
    back = SketchState.from_json(json.loads(json.dumps(whole.to_json())), weighted)
    assert json.dumps(back.to_json()) == json.dumps(whole.to_json())
    got = whole.quantiles(SIGNED_LEVELS)
    if w is not None and not (w > 0).any():
        assert got is None
        return
    assert got is not None
    assert_close(got, numpy_quantiles(x, w, SIGNED_LEVELS))


# --------------------------------------------------------------------------
# Through the engine and the CLI
# --------------------------------------------------------------------------


def _sketches(path: Path, chunk_rows: int, threads: int, weighted: bool) -> str:
    req = Request([str(path)], "y", "pred", ["mse", "rmse", "mae", "huber:delta=5"],
                  weight="w" if weighted else None, chunk_rows=chunk_rows, threads=threads,
                  by="segment", quantiles=True)
    return json.dumps(evaluate_request(req).state.to_json()["sketches"], sort_keys=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_engine_sketches_do_not_depend_on_chunks_or_threads(reg, weighted: bool) -> None:
    first = _sketches(reg["parquet"], 1 << 16, 1, weighted)
    for chunk_rows, threads in [(7, 1), (97, 4), (1000, 2)]:
        assert _sketches(reg["csv"], chunk_rows, threads, weighted) == first


def test_quantiles_in_the_json_report_match_numpy(reg) -> None:
    doc = report("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-w", "w",
                            "-m", "mse,rmse,mae,r2", "--quantiles"])
    y, p, w = reg.col("y"), reg.col("pred"), reg.col("w")
    e = y - p
    for key, rows in [("mse", e * e), ("rmse", np.abs(e)), ("mae", np.abs(e))]:
        want = numpy_quantiles(rows, w, LOSS_LEVELS)
        del want["min"]
        assert_close(doc["losses"][key]["quantiles"], want)
    assert doc["losses"]["rmse"]["quantiles"] == doc["losses"]["mae"]["quantiles"]  # both |y - p|
    assert "quantiles" not in doc["losses"]["r2"]  # a ratio: no per-row values
    assert_close(doc["residuals"]["quantiles"], numpy_quantiles(p - y, w, SIGNED_LEVELS))
    assert doc["residuals"]["of"] == "prediction - label"
    assert doc["quantiles"]["relative_error"] == RELATIVE_ERROR


def test_no_quantiles_unless_asked(reg) -> None:
    doc = report("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse"])
    assert "quantiles" not in doc and "residuals" not in doc
    assert "quantiles" not in doc["losses"]["mse"]


def test_compare_quantiles_per_model(reg) -> None:
    doc = report("runner", ["compare", reg["csv"], "-l", "y", "--baseline-pred", "y", "-p", "pred",
                            "-m", "mae", "--quantiles"])
    q = doc["losses"]["mae"]["quantiles"]
    assert q["baseline"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}  # y against itself
    assert q["candidate"]["max"] == float(np.abs(reg.col("y") - reg.col("pred")).max())
    assert doc["residuals"]["quantiles"]["baseline"]["min"] == 0.0


def test_shards_merged_give_the_single_run(reg, tmp_path: Path) -> None:
    """States emitted per shard with --quantiles and merged: the same quantiles, the same sketch bits."""
    args = ["-l", "y", "-p", "pred", "-w", "w", "-m", "mse,mae", "--quantiles"]
    whole = report("runner", ["eval", reg["csv"], *args, "--emit-state", tmp_path / "all.json"])
    states = []
    for i, shard in enumerate(reg["shard_list"]):
        states.append(tmp_path / f"s{i}.json")
        r = run("runner", ["eval", shard, *args, "--emit-state", states[-1], "-f", "json"])
        assert r.code == 0, r.err
    merged = report("runner", ["merge", *reversed(states), "--emit-state", tmp_path / "m.json"])
    for key in ("mse", "mae"):
        assert merged["losses"][key]["quantiles"] == whole["losses"][key]["quantiles"]
    assert merged["residuals"] == whole["residuals"]
    sketches = [json.loads((tmp_path / n).read_text())["state"]["sketches"] for n in ("all.json", "m.json")]
    assert sketches[0] == sketches[1]


def test_merging_with_and_without_sketches_is_refused(reg, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, extra in ((a, ["--quantiles"]), (b, [])):
        r = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse", *extra,
                           "--emit-state", path, "-f", "json"])
        assert r.code == 0, r.err
    r = run("runner", ["merge", a, b, "-f", "json"])
    assert r.code == 2 and "quantiles" in r.err


def test_quantiles_of_a_big_parquet_file_quickly(tmp_path: Path) -> None:
    """2M rows, many chunks and four threads: still within the bound of NumPy's quantiles."""
    rng = np.random.default_rng(5)
    n = 2_000_000
    y = rng.normal(0, 1, n)
    p = y + rng.standard_t(4, n)
    pq.write_table(pa.table({"y": y, "p": p}), tmp_path / "big.parquet")
    doc = report("runner", ["eval", tmp_path / "big.parquet", "-l", "y", "-p", "p", "-m", "mse",
                            "--quantiles"])
    want = numpy_quantiles((y - p) ** 2, None, LOSS_LEVELS)
    del want["min"]
    assert_close(doc["losses"]["mse"]["quantiles"], want)
