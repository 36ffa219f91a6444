"""Metrics through the command line and the engine: formats, chunkings, threads, shards, slices,
intervals, gates and the catalogue listing.

Values are checked against scikit-learn (see ``test_metrics.py`` for the
hard cases); here what matters is that every path through lossctl gives the
same bits: CSV and Parquet, ``--chunk-size`` 1 / 7 / default, 1 to 4
threads, shards merged with ``--emit-state`` + ``lossctl merge``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import report, run
from sklearn import metrics as M

from lossctl.api import evaluate_request
from lossctl.engine.plan import Request
from lossctl.report.render import to_dict

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

N = 700
K = 4
REG = ["r2", "explained_variance", "mape", "smape", "msle", "max_error", "poisson_deviance",
       "gamma_deviance", "tweedie_deviance:power=1.5", "mean_bias", "mse"]
BIN = ["accuracy", "precision", "recall", "f1", "balanced_accuracy", "mcc", "brier", "roc_auc",
       "pr_auc", "ece", "bce"]
MC = ["accuracy", "top_k_accuracy:k=2", "macro_f1", "brier", "ece", "cce"]
TASKS = {"reg": (["-l", "y", "-p", "yhat"], REG), "bin": (["-l", "z", "-p", "prob"], BIN),
         "mc": (["-l", "label", "-p", "p_*"], MC)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("metrics")
    rng = np.random.default_rng(15)
    y = rng.gamma(2.0, 2.0, N) + 0.01
    logit = rng.normal(0, 2, N)
    z = (rng.uniform(size=N) < 1 / (1 + np.exp(-logit - rng.normal(0, 1, N)))).astype(np.int64)
    x = rng.normal(0, 1, (N, K))
    label = rng.integers(0, K, N)
    x[np.arange(N), label] += 1.0
    P = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    df = pd.DataFrame({"id": np.arange(N), "seg": rng.choice(["a", "b", "c"], N), "y": y,
                       "yhat": np.maximum(y + rng.normal(0, 1.0, N), 0.05), "z": z,
                       "prob": np.round(1 / (1 + np.exp(-logit)), 2),  # ties
                       "label": label, **{f"p_{k}": P[:, k] for k in range(K)},
                       "w": rng.uniform(0.0, 2.0, N)})
    df.loc[::50, "w"] = 0.0
    paths = {"csv": d / "m.csv", "parquet": d / "m.parquet"}
    df.to_csv(paths["csv"], index=False, lineterminator="\n")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), paths["parquet"], row_group_size=300)
    back = pd.read_csv(paths["csv"])
    assert all(np.array_equal(back[c].to_numpy(), df[c].to_numpy()) for c in ("y", "yhat", "prob", "w"))
    return {"df": df, "dir": d, **paths}


def values(doc: dict) -> dict[str, float | None]:
    return {k: e["value"] for k, e in doc["losses"].items()}


def sklearn_values(df: pd.DataFrame, task: str, w: np.ndarray | None) -> dict[str, float]:
    if task == "reg":
        y, p = df["y"].to_numpy(), df["yhat"].to_numpy()
        keep = np.ones(len(y), bool) if w is None else w > 0
        return {"r2": M.r2_score(y, p, sample_weight=w),
                "explained_variance": M.explained_variance_score(y, p, sample_weight=w),
                "mape": M.mean_absolute_percentage_error(y, p, sample_weight=w),
                "smape": np.average(2 * np.abs(y - p) / (np.abs(y) + np.abs(p)), weights=w),
                "msle": M.mean_squared_log_error(y, p, sample_weight=w),
                "max_error": M.max_error(y[keep], p[keep]),
                "poisson_deviance": M.mean_poisson_deviance(y, p, sample_weight=w),
                "gamma_deviance": M.mean_gamma_deviance(y, p, sample_weight=w),
                "tweedie_deviance:power=1.5": M.mean_tweedie_deviance(y, p, power=1.5, sample_weight=w),
                "mean_bias": np.average(p - y, weights=w),
                "mse": M.mean_squared_error(y, p, sample_weight=w)}
    if task == "bin":
        z, p = df["z"].to_numpy(), df["prob"].to_numpy()
        pred = p > 0.5
        ww = np.ones(len(z)) if w is None else w
        bins = np.digitize(p, np.arange(1, 15) / 15)
        ece = sum(abs(np.sum((ww * (z - p))[bins == b])) for b in range(15)) / ww.sum()
        return {"accuracy": M.accuracy_score(z, pred, sample_weight=w),
                "precision": M.precision_score(z, pred, sample_weight=w),
                "recall": M.recall_score(z, pred, sample_weight=w),
                "f1": M.f1_score(z, pred, sample_weight=w),
                "balanced_accuracy": M.balanced_accuracy_score(z, pred, sample_weight=w),
                "mcc": M.matthews_corrcoef(z, pred, sample_weight=w),
                "brier": M.brier_score_loss(z, p, sample_weight=w),
                "roc_auc": M.roc_auc_score(z, p, sample_weight=w),
                "pr_auc": M.average_precision_score(z, p, sample_weight=w), "ece": ece,
                "bce": M.log_loss(z, p, sample_weight=w)}
    y = df["label"].to_numpy()
    P = df[[f"p_{k}" for k in range(K)]].to_numpy()
    ww = np.ones(len(y)) if w is None else w
    conf, hit = P.max(axis=1), (P.argmax(axis=1) == y)
    bins = np.digitize(conf, np.arange(1, 15) / 15)
    ece = sum(abs(np.sum((ww * (hit - conf))[bins == b])) for b in range(15)) / ww.sum()
    return {"accuracy": M.accuracy_score(y, P.argmax(axis=1), sample_weight=w),
            "top_k_accuracy:k=2": M.top_k_accuracy_score(y, P, k=2, sample_weight=w),
            "macro_f1": M.f1_score(y, P.argmax(axis=1), average="macro", sample_weight=w),
            "brier": M.brier_score_loss(y, P, sample_weight=w, labels=np.arange(K)), "ece": ece,
            "cce": M.log_loss(y, P, sample_weight=w, labels=np.arange(K))}


def assert_sklearn(got: dict, ref: dict, rel: float = 1e-12) -> None:
    bad = {k: (got[k], v) for k, v in ref.items() if got[k] != pytest.approx(v, rel=rel, abs=rel)}
    assert not bad, bad


# --------------------------------------------------------------------------
# CSV and Parquet, weighted or not, against scikit-learn
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task", list(TASKS))
def test_cli_matches_sklearn_on_csv_and_parquet(data: dict, task: str, weighted: bool) -> None:
    cols, names = TASKS[task]
    args = [*cols, "-m", ",".join(names), *(["-w", "w"] if weighted else [])]
    docs = [report("runner", ["eval", data[fmt], *args]) for fmt in ("csv", "parquet")]
    assert values(docs[0]) == values(docs[1])
    ref = sklearn_values(data["df"], task, data["df"]["w"].to_numpy() if weighted else None)
    assert_sklearn(values(docs[0]), ref)
    e = docs[0]["losses"]
    for name in names:  # the JSON describes each entry
        assert {"name", "params", "task", "kind", "group", "higher_is_better", "value"} <= set(e[name])
    if task == "bin":
        assert e["roc_auc"]["error_bound"] == e["pr_auc"]["error_bound"] == 0.0
        assert e["roc_auc"]["kind"] == "curve" and e["roc_auc"]["higher_is_better"] is True
        assert len(e["ece"]["bins"]) == 15 and sum(b["rows"] for b in e["ece"]["bins"]) == N
        assert e["f1"]["kind"] == "ratio" and e["bce"]["group"] == "loss"


# --------------------------------------------------------------------------
# The same bits for every chunking, thread count, shard split and merge
# --------------------------------------------------------------------------


def _engine(data: dict, task: str, chunk: int, threads: int, fmt: str = "parquet", **kw: Any) -> dict:
    cols, names = TASKS[task]
    req = Request(paths=[str(data[fmt])], label=cols[1], pred=cols[3], losses=names, weight="w",
                  chunk_rows=chunk, threads=threads, **kw)
    rep = evaluate_request(req)
    doc = to_dict(rep)
    doc.pop("inputs")
    doc.pop("engine")  # (says how many threads ran: the only key that may differ)
    return doc


@pytest.mark.parametrize("task", list(TASKS))
def test_chunks_and_threads_give_the_same_bits(data: dict, task: str) -> None:
    first = _engine(data, task, 65536, 1)
    for chunk, threads in [(7, 1), (7, 4), (1, 2), (100, 3), (65536, 4)]:
        assert _engine(data, task, chunk, threads) == first, (chunk, threads)
    # the command line, with its --chunk-size, says the same
    cols, names = TASKS[task]
    for chunk in ("1", "7"):
        doc = report("runner", ["eval", data["csv"], *cols, "-m", ",".join(names), "-w", "w",
                                "--chunk-size", chunk])
        assert doc["losses"] == first["losses"]


@pytest.mark.parametrize("task", list(TASKS))
def test_merged_shards_equal_one_pass(data: dict, task: str, tmp_path: Path) -> None:
    cols, names = TASKS[task]
    df = data["df"]
    cuts = [0, 2, 400, N]  # (a shard of row 0 alone could not report: its weight is 0)
    # (--ci with the multiclass bins keeps 1,000 x K x bins sums: covered by bin, kept fast here)
    args = [*cols, "-m", ",".join(names), "-w", "w", "--by", "seg", *(["--ci"] if task != "mc" else [])]
    states = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        part = tmp_path / f"part-{i}.{'csv' if i % 2 else 'parquet'}"
        if i % 2:
            df.iloc[a:b].to_csv(part, index=False, lineterminator="\n")
        else:
            pq.write_table(pa.Table.from_pandas(df.iloc[a:b], preserve_index=False), part)
        states.append(tmp_path / f"s{i}.json")
        r = run("runner", ["eval", part, *args, "--emit-state", states[-1], "-f", "json"])
        assert r.code == 0, r.err
    one = report("runner", ["eval", *sorted(tmp_path.glob("part-*")), *args])
    for order in (states, states[::-1]):
        merged = report("runner", ["merge", *order])
        for key in ("losses", "slices", "rows", "weight_sum"):
            assert merged[key] == one[key], key


# --------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
def test_slices_match_sklearn_per_slice(data: dict, task: str) -> None:
    cols, names = TASKS[task]
    doc = report("runner", ["eval", data["parquet"], *cols, "-m", ",".join(names), "-w", "w",
                            "--by", "seg"])
    df = data["df"]
    assert {s["key"]["seg"] for s in doc["slices"]} == {"a", "b", "c"}
    for s in doc["slices"]:
        part = df[df["seg"] == s["key"]["seg"]]
        assert s["rows"] == len(part)
        assert_sklearn(s["losses"], sklearn_values(part, task, part["w"].to_numpy()))


def test_a_slice_with_one_class_has_an_undefined_auc(data: dict, tmp_path: Path) -> None:
    df = data["df"].copy()
    df.loc[df["seg"] == "c", "z"] = 1
    path = tmp_path / "one_class.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    doc = report("runner", ["eval", path, "-l", "z", "-p", "prob", "-m", "roc_auc,accuracy",
                            "--by", "seg"])
    by = {s["key"]["seg"]: s["losses"] for s in doc["slices"]}
    assert by["c"]["roc_auc"] is None and by["c"]["accuracy"] is not None
    part = df[df["seg"] == "a"]
    assert by["a"]["roc_auc"] == pytest.approx(M.roc_auc_score(part["z"], part["prob"]), abs=1e-12)


# --------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------


def test_ci_for_ratio_and_mean_metrics(data: dict) -> None:
    names = ["accuracy", "precision", "recall", "f1", "balanced_accuracy", "mcc", "ece", "brier",
             "roc_auc", "pr_auc"]
    reqs = [dict(chunk=65536, threads=1), dict(chunk=7, threads=3), dict(chunk=3, threads=2)]
    docs = [_engine(data, "bin", r["chunk"], r["threads"], ci=True, seed=5) for r in reqs]
    for d in docs[1:]:
        assert d["losses"] == docs[0]["losses"]
    losses = docs[0]["losses"]
    for name in names:
        e = losses[name]
        if name in ("roc_auc", "pr_auc"):
            assert e["ci"] is None and "histogram" in e["ci_unsupported"]
            continue
        lo, hi = e["ci"]
        assert lo < e["value"] < hi, name
        assert "ci_unsupported" not in e
    reg = _engine(data, "reg", 7, 2, ci=True, seed=5)["losses"]
    for name in ("r2", "explained_variance", "max_error", "mape"):
        lo, hi = reg[name]["ci"]
        assert lo <= reg[name]["value"] <= hi, name
    assert reg["r2"]["ci"][1] <= 1.0


def test_ci_unsupported_in_every_format(data: dict) -> None:
    args = ["eval", data["parquet"], "-l", "z", "-p", "prob", "-m", "accuracy,roc_auc", "--ci"]
    table = run("runner", [*args, "-f", "table"])
    assert table.code == 0
    row = next(line for line in table.out.splitlines() if "roc_auc" in line and "│" in line)
    assert "n/a" in row
    assert "no interval for roc_auc" in table.out
    md = run("runner", [*args, "-f", "markdown"]).out
    assert "| `roc_auc` |" in md and "n/a" in md and "no interval for roc_auc" in md
    doc = json.loads(run("runner", [*args, "-f", "json"]).out)
    assert doc["losses"]["roc_auc"]["ci"] is None and doc["losses"]["roc_auc"]["ci_unsupported"]
    assert doc["losses"]["accuracy"]["ci"] is not None


def test_compare_has_no_verdict_without_an_interval(data: dict) -> None:
    doc = report("runner", ["compare", data["parquet"], "-l", "z", "--baseline-pred", "prob",
                            "-p", "p_0", "-m", "roc_auc,accuracy"])
    e = doc["losses"]["roc_auc"]
    assert e["verdict"] is None and e["ci_unsupported"]
    assert doc["losses"]["accuracy"]["verdict"] in ("better", "worse", "no significant change")


# --------------------------------------------------------------------------
# Undefined values, gates, the catalogue
# --------------------------------------------------------------------------


def test_undefined_auc_is_null_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "neg.csv"
    path.write_text("z,p\n0,0.1\n0,0.4\n0,0.8\n")
    doc = report("script", ["eval", path, "-l", "z", "-p", "p", "-m", "roc_auc,pr_auc,accuracy"])
    for k in ("roc_auc", "pr_auc"):
        assert doc["losses"][k]["value"] is None
        assert "no positive label" in doc["losses"][k]["undefined"]
    assert doc["losses"]["accuracy"]["value"] == 2 / 3
    table = run("runner", ["eval", path, "-l", "z", "-p", "p", "-m", "roc_auc", "-f", "table"])
    assert table.code == 0 and "undefined" in table.out
    assert run("runner", ["eval", path, "-l", "z", "-p", "p", "-m", "roc_auc", "-f", "value"]).out \
        == "nan\n"
    # a check on an undefined value fails (NaN never passes)
    r = run("runner", ["eval", path, "-l", "z", "-p", "p", "-m", "roc_auc", "--fail-if",
                       "roc_auc < 0.5", "-f", "json"])
    assert r.code == 1


@pytest.mark.parametrize("limit,code", [("0.9", 1), ("0.5", 0)])
def test_fail_if_accuracy_below(data: dict, limit: str, code: int) -> None:
    doc = report("runner", ["eval", data["parquet"], "-l", "z", "-p", "prob", "-m", "accuracy"])
    acc = doc["losses"]["accuracy"]["value"]
    assert 0.5 < acc < 0.9
    r = run("runner", ["eval", data["parquet"], "-l", "z", "-p", "prob", "-m", "accuracy",
                       "--fail-if", f"accuracy < {limit}", "-f", "json"])
    assert r.code == code
    check = json.loads(r.out)["checks"][0]
    assert check["passed"] is (code == 0) and check["value"] == acc


@pytest.mark.parametrize("metric,cols,worse", [
    ("roc_auc", ["-l", "z"], "p_worse"), ("accuracy", ["-l", "z"], "p_worse"),
    ("r2", ["-l", "y"], "yhat_worse")])
def test_baseline_drop_of_a_higher_is_better_metric_fails(data: dict, tmp_path: Path, metric: str,
                                                          cols: list[str], worse: str) -> None:
    df = data["df"].copy()
    rng = np.random.default_rng(9)
    df["p_worse"] = np.clip(df["prob"] + rng.normal(0, 0.3, N), 0, 1)
    df["yhat_worse"] = np.maximum(df["yhat"] + rng.normal(0, 2.0, N), 0.05)
    better = {"z": "prob", "y": "yhat"}[cols[1]]
    path = tmp_path / "two.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report("runner", ["eval", path, *cols, "-p", better, "-m", metric])))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(report("runner", ["eval", path, *cols, "-p", worse, "-m", metric])))
    old = json.loads(good.read_text())["losses"][metric]["value"]
    new = json.loads(bad.read_text())["losses"][metric]["value"]
    assert new < old  # the worse model has the lower (worse) value
    # the drop fails, with or without a tolerance smaller than it
    for extra in ([], ["--max-increase", f"{metric}=1%"]):
        r = run("runner", ["eval", path, *cols, "-p", worse, "-m", metric, "--baseline", good,
                           *extra, "-f", "json"])
        assert r.code == 1, r.err
        c = json.loads(r.out)["checks"][0]
        assert not c["passed"] and "decrease" in c["name"]
    # a tolerance larger than the drop passes; a rise always passes
    rel = (old - new) / old
    r = run("runner", ["eval", path, *cols, "-p", worse, "-m", metric, "--baseline", good,
                       "--max-increase", f"{metric}={rel * 100 * 1.5}%", "-f", "json"])
    assert r.code == 0, r.out
    r = run("runner", ["eval", path, *cols, "-p", better, "-m", metric, "--baseline", bad, "-f", "json"])
    assert r.code == 0


def test_losses_lists_kind_and_direction() -> None:
    md = run("runner", ["losses", "-f", "markdown"]).out.splitlines()
    assert md[0].startswith("| loss | aliases | task | kind | better |")
    rows = {line.split("|")[1].strip(" `") + "/" + line.split("|")[3].strip(): line.split("|")
            for line in md[2:]}
    assert rows["roc_auc/binary"][4].strip() == "curve" and rows["roc_auc/binary"][5].strip() == "higher"
    assert rows["r2/regression"][4].strip() == "ratio"
    assert rows["mean_bias/regression"][5].strip() == "nearer 0"
    assert rows["mse/regression"][5].strip() == "lower" and rows["mse/regression"][4].strip() == "mean"
    assert rows["max_error/regression"][4].strip() == "extreme"
    table = run("runner", ["losses", "-f", "table"], env={"COLUMNS": "200"}).out
    assert "nearer 0" in table and "curve" in table
    doc = json.loads(run("runner", ["losses", "-f", "json"]).out)
    mb = next(d for d in doc if d["name"] == "mean_bias")
    assert mb["better"] == "nearer 0" and mb["kind"] == "mean" and not mb["higher_is_better"]
    assert all({"kind", "group", "higher_is_better"} <= set(d) for d in doc)


@pytest.mark.parametrize("metric", ["r2", "roc_auc", "max_error"])
def test_rows_and_top_need_a_per_row_metric(data: dict, tmp_path: Path, metric: str) -> None:
    cols = ["-l", "y", "-p", "yhat"] if metric != "roc_auc" else ["-l", "z", "-p", "prob"]
    r = run("runner", ["rows", data["parquet"], *cols, "-m", metric, "-o", tmp_path / "o.csv"])
    assert r.code == 2 and "per-row" in r.err and not (tmp_path / "o.csv").exists()
    r = run("runner", ["eval", data["parquet"], *cols, "-m", metric, "--top", "3", metric])
    assert r.code == 2 and "per-row" in r.err


def test_ci_on_a_few_rows_keeps_stderr_quiet(tmp_path: Path) -> None:
    """Most replicates of two rows are empty: their NaNs are dropped without numpy warnings."""
    b = tmp_path / "two.csv"
    b.write_text("z,p,y,q\n0,0.2,1.0,2.0\n1,0.7,3.0,2.5\n")
    doc = report("script", ["eval", b, "-l", "z", "-p", "p", "-m",
                            "ece,balanced_accuracy,precision,mcc,accuracy", "--ci"])
    assert all(e["value"] is not None for e in doc["losses"].values())
    report("script", ["eval", b, "-l", "y", "-p", "q", "-m", "r2,explained_variance,max_error",
                      "--ci"])


def test_slice_intervals_of_ratio_metrics(data: dict) -> None:
    doc = report("runner", ["eval", data["parquet"], "-l", "y", "-p", "yhat", "-w", "w", "-m",
                            "r2,mse", "--by", "seg", "--ci"])
    for s in doc["slices"]:
        for k in ("r2", "mse"):
            lo, hi = s["ci"][k]
            assert lo < s["losses"][k] < hi, (s["key"], k)
