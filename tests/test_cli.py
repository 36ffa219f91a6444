"""``lossctl`` end to end: in-process through Click's CliRunner, and as real processes.

Every value is checked against an independent computation (NumPy, SciPy,
scikit-learn) on the same data, to a relative tolerance of 1e-12.  The
process runs use the installed console script next to ``sys.executable`` and
``python -m lossctl``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import LOSSCTL, command, proc_env, report, run, run_in_pty
from conftest import MC_K, REG_ROWS, DataSet, write_csv
from scipy.special import expit, log_expit, log_softmax, logsumexp, xlogy
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_pinball_loss,
    mean_squared_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

import lossctl

MODES = ("runner", "script", "module")
REL = 1e-12
EPS = float(np.finfo(np.float64).eps)
ANSI = "\x1b["


# --------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------


def values(doc: dict) -> dict[str, float]:
    return {k: v["value"] for k, v in doc["losses"].items()}


def assert_close(got: dict[str, float], ref: dict[str, float]) -> None:
    assert list(got) == list(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=REL, abs=0.0), k


# --------------------------------------------------------------------------
# Independent reference computations
# --------------------------------------------------------------------------


def wavg(x: np.ndarray, w: np.ndarray | None) -> float:
    return float(np.average(x, weights=w))


REG_LOSSES = ["mse", "rmse", "mae", "huber:delta=2", "log_cosh", "quantile:q=0.9"]


def ref_regression(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    d = y - p
    a = np.abs(d)
    return {
        "mse": float(mean_squared_error(y, p, sample_weight=w)),
        "rmse": float(root_mean_squared_error(y, p, sample_weight=w)),
        "mae": float(mean_absolute_error(y, p, sample_weight=w)),
        "huber:delta=2": wavg(np.where(a <= 2.0, 0.5 * d * d, 2.0 * (a - 1.0)), w),
        "log_cosh": wavg(np.logaddexp(d, -d) - math.log(2.0), w),
        "quantile:q=0.9": float(mean_pinball_loss(y, p, alpha=0.9, sample_weight=w)),
    }


def reg_ref(ds: DataSet, rows: slice | np.ndarray = slice(None), weighted: bool = True) -> dict[str, float]:
    w = ds.col("w")[rows] if weighted else None
    return ref_regression(ds.col("y")[rows], ds.col("pred")[rows], w)


REG_ARGS = ["-l", "y", "-p", "pred", "-w", "w", "-m", ",".join(REG_LOSSES)]

BIN_LOSSES = ["bce", "sigmoid_ce", "hinge", "focal", "weighted_sigmoid_ce:pos_weight=3"]


def ref_binary(ds: DataSet, w: np.ndarray | None) -> dict[str, float]:
    z, prob, x, s = ds.col("z"), ds.col("prob"), ds.col("logit"), ds.col("score")
    ce = -(z * log_expit(x) + (1 - z) * log_expit(-x))
    one_minus_pt = z * expit(-x) + (1 - z) * expit(x)
    alpha_t = 0.25 * z + 0.75 * (1 - z)
    return {
        "bce": float(log_loss(z, prob, sample_weight=w)),
        "sigmoid_ce": wavg(ce, w),
        "hinge": wavg(np.maximum(0.0, 1.0 - (2 * z - 1) * s), w),
        "focal": wavg(alpha_t * one_minus_pt**2 * ce, w),
        "weighted_sigmoid_ce:pos_weight=3": wavg(-(3.0 * z * log_expit(x) + (1 - z) * log_expit(-x)), w),
    }


def mc_arrays(ds: DataSet) -> tuple[np.ndarray, ...]:
    k = MC_K
    label = ds.df["label"].to_numpy()
    x = np.column_stack([ds.col(f"logit_{j}") for j in range(k)])
    p = np.column_stack([ds.col(f"prob_{j}") for j in range(k)])
    t = np.column_stack([ds.col(f"t_{j}") for j in range(k)])
    return label, x, p, t


def ref_sparse_softmax_ce(label: np.ndarray, x: np.ndarray, w: np.ndarray | None = None) -> float:
    return wavg(logsumexp(x, axis=1) - x[np.arange(len(x)), label], w)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

INPUT_VARIANTS = {
    "csv": ("csv", []),
    "tsv_by_extension": ("tsv", []),
    "delimiter_tab_word": ("tab_txt", ["--delimiter", "tab"]),
    "delimiter_backslash_t": ("tab_txt", ["--delimiter", "\\t"]),
    "delimiter_tab_char": ("tab_txt", ["--delimiter", "\t"]),
    "delimiter_semicolon": ("semicolon", ["--delimiter", ";"]),
    "input_format_tsv": ("tab_data", ["--input-format", "tsv"]),
    "csv_gz": ("gz", []),
    "csv_zst": ("zst", []),
    "zstd_csv_by_magic_bytes": ("zst_noext", []),
    "parquet": ("parquet", []),
    "parquet_by_magic_misleading_ext": ("parquet_as_csv", []),
    "parquet_by_magic_no_ext": ("parquet_noext", []),
    "input_format_parquet": ("parquet_noext", ["--input-format", "parquet"]),
}


SCRIPT_VARIANTS = ["csv", "delimiter_tab_word", "csv_zst", "parquet_by_magic_misleading_ext"]


@pytest.mark.parametrize("mode,variant", [("runner", v) for v in INPUT_VARIANTS]
                         + [("script", v) for v in SCRIPT_VARIANTS])
def test_input_formats_match_reference(reg: DataSet, mode: str, variant: str) -> None:
    key, extra = INPUT_VARIANTS[variant]
    doc = report(mode, ["eval", reg[key], *REG_ARGS, *extra])
    assert doc["inputs"] == [str(reg[key])]
    assert doc["rows"] == REG_ROWS
    assert doc["weight_sum"] == pytest.approx(reg.col("w").sum(), rel=REL)
    assert_close(values(doc), reg_ref(reg))


def test_all_input_formats_agree_bit_for_bit(reg: DataSet) -> None:
    docs = {v: report("runner", ["eval", reg[k], *REG_ARGS, *extra])
            for v, (k, extra) in INPUT_VARIANTS.items()}
    first = docs["csv"]
    for v, doc in docs.items():
        assert values(doc) == values(first), v
        assert (doc["rows"], doc["weight_sum"]) == (first["rows"], first["weight_sum"]), v


def test_tab_separated_txt_without_delimiter_is_a_clear_error(reg: DataSet) -> None:
    r = run("runner", ["eval", reg["tab_txt"], *REG_ARGS])
    assert r.code == 2
    assert "no label column named 'y'" in r.err


@pytest.mark.parametrize("mode,kind", [("runner", "csv"), ("runner", "gz"), ("runner", "parquet"),
                                       ("script", "csv"), ("script", "parquet"), ("module", "gz")])
def test_stdin(reg: DataSet, mode: str, kind: str) -> None:
    data = Path(reg[kind]).read_bytes()
    doc = report(mode, ["eval", "-", *REG_ARGS], input=data)
    assert doc["inputs"] == ["<stdin>"]
    assert doc["rows"] == REG_ROWS
    assert_close(values(doc), reg_ref(reg))


def test_stdin_tsv_with_delimiter_and_input_format(reg: DataSet) -> None:
    data = Path(reg["tsv"]).read_bytes()
    a = report("runner", ["eval", "-", *REG_ARGS, "--delimiter", "tab"], input=data)
    b = report("runner", ["eval", "-", *REG_ARGS, "--input-format", "tsv"], input=data)
    assert values(a) == values(b)
    assert_close(values(a), reg_ref(reg))


def test_stdin_parquet_with_input_format(reg: DataSet) -> None:
    data = Path(reg["parquet"]).read_bytes()
    doc = report("script", ["eval", "-", *REG_ARGS, "--input-format", "parquet"], input=data)
    assert_close(values(doc), reg_ref(reg))


def test_quoted_glob_through_a_shell(reg: DataSet) -> None:
    flat = reg["flat"]
    cmd = f"{shlex.quote(str(LOSSCTL))} eval 'shard_*.csv' {shlex.join(REG_ARGS)} -f json"
    p = subprocess.run(["bash", "-c", cmd], cwd=flat, capture_output=True, env=proc_env(), timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    doc = json.loads(p.stdout)
    assert doc["inputs"] == [f"shard_{i:03d}.csv" for i in range(4)]  # sorted, other.csv not matched
    assert doc["rows"] == REG_ROWS
    assert_close(values(doc), reg_ref(reg))


@pytest.mark.parametrize("mode", ["runner"])
def test_glob_argument(reg: DataSet, mode: str) -> None:
    flat = reg["flat"]
    rel = report(mode, ["eval", "shard_*.csv", *REG_ARGS], cwd=flat)
    absolute = report(mode, ["eval", flat / "shard_*.csv", *REG_ARGS])
    single = report(mode, ["eval", reg["csv"], *REG_ARGS])
    assert rel["inputs"] == [f"shard_{i:03d}.csv" for i in range(4)]
    assert absolute["inputs"] == [str(flat / f"shard_{i:03d}.csv") for i in range(4)]
    assert values(rel) == values(absolute) == values(single)


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_directory_of_shards(reg: DataSet, mode: str) -> None:
    shards = reg["shards"]
    doc = report(mode, ["eval", shards, *REG_ARGS])
    expected = sorted(str(p) for p in reg["shard_list"])
    # sorted order; _SUCCESS, _tmp_part.csv, .hidden.csv, .crc, _metadata and notes.md ignored
    assert doc["inputs"] == expected
    assert [Path(p).relative_to(shards).as_posix() for p in doc["inputs"]] == [
        "part-0.csv", "part-1.parquet", "part-10.csv.gz", "part-2.tsv", "sub/part-0.csv.zst"]
    single = report("runner", ["eval", reg["csv"], *REG_ARGS])
    assert values(doc) == values(single)
    assert (doc["rows"], doc["weight_sum"]) == (single["rows"], single["weight_sum"])
    assert_close(values(doc), reg_ref(reg))


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_several_files_equal_one_concatenated_file(reg: DataSet, mode: str) -> None:
    parts = [str(p) for p in reg["shard_list"]]
    single = report("runner", ["eval", reg["csv"], *REG_ARGS])
    forward = report(mode, ["eval", *parts, *REG_ARGS])
    backward = report(mode, ["eval", *reversed(parts), *REG_ARGS])
    assert forward["inputs"] == parts
    assert backward["inputs"] == parts[::-1]
    for doc in (forward, backward):
        assert values(doc) == values(single)  # exact sums: bit-identical whatever the cut and order
        assert (doc["rows"], doc["weight_sum"]) == (single["rows"], single["weight_sum"])


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_headerless_csv_columns_by_position(reg: DataSet, mode: str) -> None:
    doc = report(mode, ["eval", reg["noheader"], "--no-header", "-l", "3", "-p", "4", "-w", "5",
                        "-m", ",".join(REG_LOSSES)])
    assert doc["columns"] == {"label": ["3"], "prediction": ["4"], "weight": "5"}
    assert doc["rows"] == REG_ROWS  # the first line is data
    assert_close(values(doc), reg_ref(reg))


def test_headerless_sample_file(sample_dir: Path) -> None:
    df = pd.read_csv(sample_dir / "house_prices.csv").iloc[:20]
    doc = report("runner", ["eval", sample_dir / "house_prices_noheader.csv", "--no-header",
                            "-l", "4", "-p", "5", "-m", "mse,mae"])
    y, p = df["price"].to_numpy(), df["predicted_price"].to_numpy()
    assert doc["rows"] == 20
    assert_close(values(doc), {"mse": mean_squared_error(y, p), "mae": mean_absolute_error(y, p)})


@pytest.mark.parametrize("mode", ["runner", "script"])
@pytest.mark.parametrize("pred", ["logits", "logits_var"])
def test_parquet_list_columns_hold_k_values(multiclass: DataSet, mode: str, pred: str) -> None:
    label, x, _, _ = mc_arrays(multiclass)
    w = multiclass.col("w")
    doc = report(mode, ["eval", multiclass["lists"], "-l", "label", "-p", pred, "-w", "w",
                        "-m", "sparse_softmax_ce"])
    assert doc["columns"]["prediction"] == [pred]
    assert_close(values(doc), {"sparse_softmax_ce": ref_sparse_softmax_ce(label, x, w)})
    k_columns = report("runner", ["eval", multiclass["csv"], "-l", "label", "-p", "logit_0:logit_3",
                                  "-w", "w", "-m", "sparse_softmax_ce"])
    assert values(doc) == values(k_columns)


def test_list_columns_for_labels_and_predictions(multiclass: DataSet) -> None:
    label, x, p, t = mc_arrays(multiclass)
    logq = np.log(np.clip(p, EPS, 1.0))
    losses = {
        ("t", "logits", "softmax_ce"): float(np.mean(-(t * log_softmax(x, axis=1)).sum(axis=1))),
        ("label", "probs", "cce"): float(log_loss(label, p, labels=list(range(MC_K)))),
        ("label", "probs", "log_loss"): float(log_loss(label, p, labels=list(range(MC_K)))),
        ("t", "probs", "cce"): float(np.mean(-(t * logq).sum(axis=1))),
        ("t", "probs", "kl_div"): float(np.mean((xlogy(t, t) - t * logq).sum(axis=1))),
    }
    for (lab, pred, loss), ref in losses.items():
        doc = report("runner", ["eval", multiclass["lists"], "-l", lab, "-p", pred, "-m", loss])
        assert_close(values(doc), {loss: ref})
        assert doc["losses"][loss]["name"] == ("cce" if loss == "log_loss" else loss)
        flat_l = "label" if lab == "label" else "t_0:t_3"
        flat = report("runner", ["eval", multiclass["csv"], "-l", flat_l, "-p",
                                 "logit_*" if pred == "logits" else "prob_*", "-m", loss])
        assert values(flat) == values(doc), (lab, pred, loss)


SAMPLE_CASES = [
    # (file, args, reference computed from pandas)
    ("house_prices.csv", ["-l", "price", "-p", "predicted_price", "-w", "weight", "-m", "rmse"]),
    ("house_prices.tsv", ["-l", "4", "-p", "5", "-m", "mae"]),
    ("churn.parquet", ["-l", "churned", "-p", "prob", "-m", "bce"]),
    ("churn.parquet", ["-l", "churned", "-p", "logit", "-m", "sigmoid_ce"]),
    ("churn.parquet", ["-l", "churned", "-p", "score", "-m", "hinge"]),
    ("digits10.csv", ["-l", "label", "-p", "logit_*", "-m", "sparse_softmax_ce"]),
    ("digits10_list.parquet", ["-l", "label", "-p", "logits", "-m", "sparse_softmax_ce"]),
    ("digits10_list.parquet", ["-l", "label", "-p", "probs", "-m", "cce"]),
    ("demand.csv.gz", ["-l", "units_sold", "-p", "forecast", "-m", "poisson"]),
    ("demand.csv.gz", ["-l", "units_sold", "-p", "log_forecast", "-m", "poisson:log_input=true"]),
]


def _sample_reference(sample_dir: Path, name: str, args: list[str]) -> float:
    path = sample_dir / name
    df = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(
        path, sep="\t" if name.endswith(".tsv") else ",", engine="pyarrow")
    loss = args[-1]
    if name.startswith("house"):
        y, p = df["price"].to_numpy(float), df["predicted_price"].to_numpy(float)
        if loss == "rmse":
            return float(root_mean_squared_error(y, p, sample_weight=df["weight"].to_numpy(float)))
        return float(mean_absolute_error(y, p))
    if name.startswith("churn"):
        z = df["churned"].to_numpy(float)
        if loss == "bce":
            return float(log_loss(z, df["prob"].to_numpy(float)))
        if loss == "sigmoid_ce":
            x = df["logit"].to_numpy(float)
            return float(np.mean(-(z * log_expit(x) + (1 - z) * log_expit(-x))))
        return float(np.mean(np.maximum(0, 1 - (2 * z - 1) * df["score"].to_numpy(float))))
    if name.startswith("digits"):
        label = df["label"].to_numpy()
        if name.endswith(".csv"):
            x = df[[f"logit_{j}" for j in range(10)]].to_numpy(float)
        else:
            x = np.stack(df["logits"].to_numpy())
            if loss == "cce":
                return float(log_loss(label, np.stack(df["probs"].to_numpy()), labels=list(range(10))))
        return ref_sparse_softmax_ce(label, x)
    y = df["units_sold"].to_numpy(float)
    if loss == "poisson":
        p = df["forecast"].to_numpy(float)
        return float(np.mean(p - y * np.log(p)))
    lp = df["log_forecast"].to_numpy(float)
    return float(np.mean(np.exp(lp) - y * lp))


@pytest.mark.parametrize("name,args", SAMPLE_CASES, ids=[f"{c[0]}:{c[1][-1]}" for c in SAMPLE_CASES])
def test_sample_data(sample_dir: Path, name: str, args: list[str]) -> None:
    doc = report("runner", ["eval", sample_dir / name, *args])
    assert_close(values(doc), {args[-1]: _sample_reference(sample_dir, name, args)})


# --------------------------------------------------------------------------
# Column selection
# --------------------------------------------------------------------------

K_SPECS = ["logit_*", "logit_0:logit_3", "3:6", "logit_0,logit_1,logit_2,logit_3", "3,4,5,6",
           "3,logit_1,5:6", "logit_0:6"]


@pytest.mark.parametrize("pred", K_SPECS)
@pytest.mark.parametrize("label", ["label", "2"])
def test_k_column_selection(multiclass: DataSet, label: str, pred: str) -> None:
    labels, x, _, _ = mc_arrays(multiclass)
    doc = report("runner", ["eval", multiclass["csv"], "-l", label, "-p", pred, "-m", "sparse_softmax_ce"])
    assert doc["columns"]["label"] == ["label"]
    assert doc["columns"]["prediction"] == [f"logit_{j}" for j in range(MC_K)]
    assert_close(values(doc), {"sparse_softmax_ce": ref_sparse_softmax_ce(labels, x)})


def test_k_columns_in_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"label": rng.integers(0, 3, n), "s_c": rng.normal(size=n), "s_a": rng.normal(size=n),
                       "s_b": rng.normal(size=n), "other": rng.normal(size=n)})
    path = tmp_path / "order.csv"
    write_csv(df, path)
    label = df["label"].to_numpy()
    file_order = df[["s_c", "s_a", "s_b"]].to_numpy()
    name_order = df[["s_a", "s_b", "s_c"]].to_numpy()
    ref = ref_sparse_softmax_ce(label, file_order)
    assert abs(ref - ref_sparse_softmax_ce(label, name_order)) > 1e-3  # the order matters here
    for spec in ("s_*", "s_c:s_b"):
        doc = report("runner", ["eval", path, "-l", "label", "-p", spec, "-m", "sparse_softmax_ce"])
        assert doc["columns"]["prediction"] == ["s_c", "s_a", "s_b"]
        assert_close(values(doc), {"sparse_softmax_ce": ref})
    # an explicit comma list is taken in the order written
    doc = report("runner", ["eval", path, "-l", "label", "-p", "s_a,s_b,s_c", "-m", "sparse_softmax_ce"])
    assert doc["columns"]["prediction"] == ["s_a", "s_b", "s_c"]
    assert_close(values(doc), {"sparse_softmax_ce": ref_sparse_softmax_ce(label, name_order)})


@pytest.mark.parametrize("cols", [["-l", "y", "-p", "pred", "-w", "w"], ["-l", "3", "-p", "4", "-w", "5"],
                                  ["-l", "y", "-p", "4", "-w", "w*"]])
def test_single_column_selection(reg: DataSet, cols: list[str]) -> None:
    doc = report("runner", ["eval", reg["csv"], *cols, "-m", ",".join(REG_LOSSES)])
    assert doc["columns"] == {"label": ["y"], "prediction": ["pred"], "weight": "w"}
    assert_close(values(doc), reg_ref(reg))


# --------------------------------------------------------------------------
# Losses: -m, keys, defaults
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["runner", "module"])
def test_losses_repeated_and_comma_separated(reg: DataSet, mode: str) -> None:
    cols = ["-l", "y", "-p", "pred", "-w", "w"]
    comma = report(mode, ["eval", reg["csv"], *cols, "-m", "mse,rmse,mae"])
    repeated = report("runner", ["eval", reg["csv"], *cols, "-m", "mse", "-m", "rmse", "-m", "mae"])
    assert list(comma["losses"]) == ["mse", "rmse", "mae"]
    assert comma["losses"] == repeated["losses"]
    assert comma["losses_chosen"] == "user"
    assert_close(values(comma), {k: v for k, v in reg_ref(reg).items() if k in ("mse", "rmse", "mae")})


def test_loss_keys_as_written(reg: DataSet) -> None:
    doc = report("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-w", "w",
                            "-m", "huber:delta=2", "-m", "quantile:q=0.9,log_cosh", "-m", "mad",
                            "-m", "huber", "-m", "mse", "-m", "mse"])
    assert list(doc["losses"]) == ["huber:delta=2", "quantile:q=0.9", "log_cosh", "mad", "huber", "mse"]
    L = doc["losses"]
    assert (L["huber:delta=2"]["name"], L["huber:delta=2"]["params"]) == ("huber", {"delta": 2.0})
    assert (L["huber"]["name"], L["huber"]["params"]) == ("huber", {"delta": 1.0})
    assert (L["quantile:q=0.9"]["name"], L["quantile:q=0.9"]["params"]) == ("quantile", {"q": 0.9})
    assert (L["mad"]["name"], L["mad"]["params"]) == ("mae", {})
    assert L["log_cosh"]["params"] == {}
    ref = reg_ref(reg)
    d, w = reg.col("y") - reg.col("pred"), reg.col("w")
    a = np.abs(d)
    assert_close(values(doc), {
        "huber:delta=2": ref["huber:delta=2"], "quantile:q=0.9": ref["quantile:q=0.9"],
        "log_cosh": ref["log_cosh"], "mad": ref["mae"],
        "huber": wavg(np.where(a <= 1.0, 0.5 * d * d, a - 0.5), w), "mse": ref["mse"]})


@pytest.mark.parametrize("weighted", [True, False])
def test_binary_losses(binary: DataSet, weighted: bool) -> None:
    w_args = ["-w", "w"] if weighted else []
    w = binary.col("w") if weighted else None
    for pred, losses in (("prob", ["bce"]), ("logit", ["sigmoid_ce", "focal",
                                                        "weighted_sigmoid_ce:pos_weight=3"]),
                         ("score", ["hinge"])):
        doc = report("runner", ["eval", binary["parquet"], "-l", "z", "-p", pred, *w_args,
                                "-m", ",".join(losses)])
        ref = ref_binary(binary, w)
        assert_close(values(doc), {k: ref[k] for k in losses})
        assert doc["weight_sum"] == (pytest.approx(w.sum(), rel=REL) if weighted else 1500.0)


def test_multiclass_losses_k_columns(multiclass: DataSet) -> None:
    label, x, p, t = mc_arrays(multiclass)
    w = multiclass.col("w")
    doc = report("runner", ["eval", multiclass["parquet"], "-l", "t_*", "-p", "logit_*", "-w", "w",
                            "-m", "softmax_ce"])
    assert_close(values(doc), {"softmax_ce": wavg(-(t * log_softmax(x, axis=1)).sum(axis=1), w)})
    doc = report("runner", ["eval", multiclass["parquet"], "-l", "label", "-p", "prob_0:prob_3", "-w", "w",
                            "-m", "cce,log_loss"])
    ref = float(log_loss(label, p, sample_weight=w, labels=list(range(MC_K))))
    assert_close(values(doc), {"cce": ref, "log_loss": ref})


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_default_losses(reg: DataSet, binary: DataSet, multiclass: DataSet, mode: str) -> None:
    doc = report(mode, ["eval", reg["csv"], "-l", "y", "-p", "pred"])
    assert doc["losses_chosen"] == "auto"
    ref = {k: v for k, v in reg_ref(reg, weighted=False).items() if k in ("mse", "rmse", "mae")}
    assert_close(values(doc), {**ref, "r2": r2_score(reg.col("y"), reg.col("pred"))})
    if mode != "runner":
        return  # the other kinds take the same path through a process
    doc = report(mode, ["eval", binary["csv"], "-l", "z", "-p", "prob"])
    assert doc["losses_chosen"] == "auto"
    z, prob = binary.col("z"), binary.col("prob")
    assert_close(values(doc), {"bce": ref_binary(binary, None)["bce"],
                               "accuracy": accuracy_score(z, prob > 0.5),
                               "roc_auc": roc_auc_score(z, prob)})
    label, x, _, _ = mc_arrays(multiclass)
    doc = report(mode, ["eval", multiclass["csv"], "-l", "label", "-p", "logit_*"])
    assert doc["losses_chosen"] == "auto"
    assert_close(values(doc), {"sparse_softmax_ce": ref_sparse_softmax_ce(label, x),
                               "accuracy": accuracy_score(label, x.argmax(axis=1))})
    doc = report(mode, ["eval", binary["csv"], "-l", "z", "-p", "logit"])
    assert list(doc["losses"]) == ["sigmoid_ce", "accuracy:threshold=0", "roc_auc"]
    doc = report(mode, ["eval", multiclass["csv"], "-l", "label", "-p", "prob_*"])
    assert list(doc["losses"]) == ["cce", "accuracy"]
    doc = report(mode, ["eval", multiclass["csv"], "-l", "t_*", "-p", "logit_*"])
    assert list(doc["losses"]) == ["softmax_ce"]


# --------------------------------------------------------------------------
# Weights, --nan skip, --chunk-size
# --------------------------------------------------------------------------


def test_unweighted_weight_sum_is_row_count(reg: DataSet) -> None:
    doc = report("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", ",".join(REG_LOSSES)])
    assert doc["columns"]["weight"] is None
    assert doc["weight_sum"] == float(REG_ROWS)
    assert_close(values(doc), reg_ref(reg, weighted=False))


def _with_holes(reg: DataSet, path: Path) -> list[int]:
    """The first 300 regression rows with missing / non-finite values; returns the 0-based bad rows."""
    df = reg.df.iloc[:300].copy()
    for col in ("y", "pred", "w"):
        df[col] = [repr(float(v)) for v in df[col]]
    holes = {4: ("pred", ""), 16: ("y", "nan"), 39: ("w", ""), 99: ("pred", "inf"), 100: ("y", "-inf"),
             200: ("pred", "NaN")}
    for i, (col, v) in holes.items():
        df.iat[i, df.columns.get_loc(col)] = v
    write_csv(df, path)
    return sorted(holes)


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_nan_skip_counts_rows(reg: DataSet, tmp_path: Path, mode: str) -> None:
    path = tmp_path / "holes.csv"
    bad = _with_holes(reg, path)
    doc = report(mode, ["eval", path, *REG_ARGS, "--nan", "skip"])
    keep = np.setdiff1d(np.arange(300), bad)
    assert doc["rows_skipped"] == len(bad)
    assert doc["rows"] == 300 - len(bad)
    assert doc["weight_sum"] == pytest.approx(reg.col("w")[keep].sum(), rel=REL)
    assert_close(values(doc), reg_ref(reg, keep))
    r = run(mode, ["eval", path, *REG_ARGS])  # --nan error is the default
    assert r.code == 2
    assert "--nan skip" in r.err
    assert f"{path}, row 5, column 'pred' (prediction)" in r.err  # the first bad row


CHUNK_CASES = {
    "regression_csv_weighted": ("reg", "csv", REG_ARGS),
    "regression_parquet": ("reg", "parquet", ["-l", "y", "-p", "pred", "-m", ",".join(REG_LOSSES)]),
    "binary_parquet": ("binary", "parquet",
                       ["-l", "z", "-p", "logit", "-w", "w", "-m", ",".join(BIN_LOSSES[1:])]),
    "multiclass_lists": ("multiclass", "lists", ["-l", "t", "-p", "logits", "-w", "w", "-m", "softmax_ce"]),
    "multiclass_k_columns_auto": ("multiclass", "csv", ["-l", "label", "-p", "logit_*"]),
}


def _head_copy(path: Path, rows: int, out_dir: Path) -> Path:
    """The first ``rows`` rows of a data set file, in the same format (Parquet: several row groups)."""
    out = out_dir / path.name
    if path.suffix == ".parquet":
        pq.write_table(pq.read_table(path).slice(0, rows), out, row_group_size=150)
    else:
        out.write_text("".join(path.read_text().splitlines(keepends=True)[:rows + 1]))
    return out


@pytest.mark.parametrize("case", CHUNK_CASES)
def test_chunk_size_gives_identical_json(request: pytest.FixtureRequest, tmp_path: Path, case: str) -> None:
    ds_name, key, args = CHUNK_CASES[case]
    path = _head_copy(request.getfixturevalue(ds_name)[key], 400, tmp_path)  # 400 chunks of one row
    base = report("runner", ["eval", path, *args])
    assert base["rows"] == 400
    for size in ("1", "7", "1000"):
        doc = report("runner", ["eval", path, *args, "--chunk-size", size])
        assert doc == base, size  # every value, count and weight sum bit-identical


def test_chunk_size_in_a_process(reg: DataSet) -> None:
    base = report("runner", ["eval", reg["shards"], *REG_ARGS])
    doc = report("script", ["eval", reg["shards"], *REG_ARGS, "--chunk-size", "7"])
    assert doc == base


# --------------------------------------------------------------------------
# Output formats
# --------------------------------------------------------------------------

SCHEMA_KEYS = ["lossctl", "inputs", "columns", "rows", "rows_skipped", "weight_sum", "losses_chosen",
               "losses"]


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_json_schema(reg: DataSet, mode: str) -> None:
    r = run(mode, ["eval", reg["csv"], *REG_ARGS, "-f", "json"])
    assert r.code == 0 and r.err == ""
    doc = json.loads(r.out)
    assert set(SCHEMA_KEYS) <= set(doc)
    assert doc["lossctl"] == lossctl.__version__
    assert doc["inputs"] == [str(reg["csv"])]
    assert doc["columns"] == {"label": ["y"], "prediction": ["pred"], "weight": "w"}
    assert isinstance(doc["rows"], int) and doc["rows"] == REG_ROWS
    assert isinstance(doc["rows_skipped"], int) and doc["rows_skipped"] == 0
    assert isinstance(doc["weight_sum"], float)
    assert doc["losses_chosen"] == "user"
    assert list(doc["losses"]) == REG_LOSSES
    for key, entry in doc["losses"].items():
        assert set(entry) == {"value", "name", "params", "task", "kind", "group",
                              "higher_is_better", "direction"}, key
        assert entry["name"] == key.split(":")[0]
        assert isinstance(entry["params"], dict)
        v = entry["value"]
        assert isinstance(v, float) and math.isfinite(v)
        assert repr(v) in r.out  # written as the shortest repr, which round-trips
        assert float(repr(v)) == v


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_default_format_is_json_when_not_a_terminal(reg: DataSet, mode: str) -> None:
    r = run(mode, ["eval", reg["csv"], *REG_ARGS])
    assert r.code == 0
    doc = json.loads(r.out)
    assert values(doc) == values(report("runner", ["eval", reg["csv"], *REG_ARGS]))


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_value_format(reg: DataSet, mode: str) -> None:
    doc = report("runner", ["eval", reg["csv"], *REG_ARGS])
    r = run(mode, ["eval", reg["csv"], *REG_ARGS, "-f", "value"])
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert r.out.endswith("\n")
    assert lines == [repr(v) for v in values(doc).values()]
    assert [float(s) for s in lines] == list(values(doc).values())


def test_value_format_in_command_substitution(reg: DataSet) -> None:
    exe = shlex.quote(str(LOSSCTL))
    f = shlex.quote(str(reg["csv"]))
    script = (f'mse=$({exe} eval {f} -l y -p pred -w w -m mse -f value) || exit 9\n'
              f'set -- $({exe} eval {f} -l y -p pred -w w -m mse,rmse,mae -f value)\n'
              f'{shlex.quote(sys.executable)} -c '
              '"import sys; print(float(sys.argv[1]) + 0.0, len(sys.argv) - 2)" '
              '"$mse" "$@"\n')
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=proc_env(), timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    mse, count = p.stdout.decode().split()
    assert float(mse) == pytest.approx(reg_ref(reg)["mse"], rel=REL)
    assert int(count) == 3


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_formats(reg: DataSet, fmt: str, sep: str) -> None:
    doc = report("runner", ["eval", reg["csv"], *REG_ARGS])
    r = run("script", ["eval", reg["csv"], *REG_ARGS, "-f", fmt])
    assert r.code == 0 and r.err == ""
    rows = list(csv.reader(io.StringIO(r.out), delimiter=sep))
    assert rows[0] == ["loss", "value", "rows", "weight_sum"]
    assert [row[0] for row in rows[1:]] == REG_LOSSES  # one row per loss
    for row in rows[1:]:
        assert float(row[1]) == doc["losses"][row[0]]["value"]
        assert int(row[2]) == REG_ROWS
        assert float(row[3]) == doc["weight_sum"]


def test_markdown_format(reg: DataSet) -> None:
    r = run("runner", ["eval", reg["csv"], *REG_ARGS, "-f", "markdown"])
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("| loss | value |")
    assert set(lines[1]) <= set("|-: ")
    body = [ln for ln in lines[2:] if ln.startswith("| `")]
    assert [ln.split("`")[1] for ln in body] == REG_LOSSES
    assert all(f"{REG_ROWS:,}" in ln for ln in body)  # counts with thousands separators


@pytest.mark.parametrize("mode,env", [("runner", {}), ("script", {}), ("script", {"NO_COLOR": "1"}),
                                      ("script", {"TERM": "dumb"})])
def test_table_format_without_terminal_has_no_ansi(reg: DataSet, mode: str, env: dict) -> None:
    r = run(mode, ["eval", reg["csv"], *REG_ARGS, "-f", "table"], env=env)
    assert r.code == 0 and r.err == ""
    assert ANSI not in r.out
    for key in REG_LOSSES:
        assert key in r.out
    assert f"{REG_ROWS:,}" in r.out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_terminal_default_is_a_coloured_table_and_no_color_disables_it(reg: DataSet) -> None:
    args = ["eval", str(reg["csv"]), *REG_ARGS]
    code, out, err = run_in_pty(args, {})
    assert code == 0, err
    assert not out.lstrip().startswith("{")  # a table, not JSON
    assert ANSI in out
    for key in REG_LOSSES:
        assert key in out
    code, out, err = run_in_pty(args, {"NO_COLOR": "1"})
    assert code == 0, err
    assert ANSI not in out
    assert not out.lstrip().startswith("{")
    for key in REG_LOSSES:
        assert key in out


# --------------------------------------------------------------------------
# Other commands
# --------------------------------------------------------------------------

CATALOGUE_NAMES = ["mse", "rmse", "mae", "huber", "log_cosh", "quantile", "poisson", "r2",
                   "explained_variance", "mape", "smape", "msle", "rmsle", "max_error",
                   "poisson_deviance", "gamma_deviance", "tweedie_deviance", "mean_bias",
                   "bce", "sigmoid_ce", "weighted_sigmoid_ce", "hinge", "focal", "accuracy",
                   "precision", "recall", "f1", "balanced_accuracy", "mcc", "brier", "roc_auc",
                   "pr_auc", "ece", "softmax_ce", "sparse_softmax_ce", "cce", "kl_div", "accuracy",
                   "top_k_accuracy", "macro_f1", "ece", "brier"]


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_losses_command_json(mode: str) -> None:
    for args in (["losses"], ["losses", "-f", "json"]):  # json is the default off a terminal
        r = run(mode, args)
        assert r.code == 0 and r.err == ""
        rows = json.loads(r.out)
        assert [row["name"] for row in rows] == CATALOGUE_NAMES
        for row in rows:
            assert {"name", "aliases", "task", "formula", "params", "label", "prediction",
                    "description"} <= set(row)
        by = {row["name"]: row for row in rows}
        assert by["huber"]["params"] == {"delta": 1.0}
        assert by["weighted_sigmoid_ce"]["params"] == {"pos_weight": None}
        assert "mad" in by["mae"]["aliases"] and "log_loss" in by["bce"]["aliases"]


@pytest.mark.parametrize("mode,env", [("runner", {}), ("script", {"NO_COLOR": "1"})])
def test_losses_command_table_and_markdown(mode: str, env: dict) -> None:
    r = run(mode, ["losses", "-f", "table"], env={"COLUMNS": "300", **env})  # wide: no folded cells
    assert r.code == 0 and r.err == ""
    assert ANSI not in r.out
    first_cells = [ln.split("│")[1].strip() for ln in r.out.splitlines() if ln.startswith("│")]
    assert [c for c in first_cells if c] == CATALOGUE_NAMES
    r = run(mode, ["losses", "-f", "markdown"])
    assert r.code == 0
    names = [ln.split("`")[1] for ln in r.out.splitlines() if ln.startswith("| `")]
    assert names == CATALOGUE_NAMES


@pytest.mark.parametrize("mode,flag", [(m, "--version") for m in MODES] + [("runner", "-V")])
def test_version(mode: str, flag: str) -> None:
    r = run(mode, [flag])
    assert r.code == 0
    assert lossctl.__version__ in r.out
    assert importlib.metadata.version("lossctl") == lossctl.__version__
    assert r.out.startswith(f"lossctl, version {lossctl.__version__} (C speed-ups: ")
    if importlib.util.find_spec("lossctl.io._fastcsv") is not None:  # built here: all four
        assert r.out.strip().endswith("(C speed-ups: fastcsv, exactsum, kernels, keyindex)")


@pytest.mark.parametrize("mode", MODES)
def test_help(mode: str) -> None:
    r = run(mode, ["--help"])
    assert r.code == 0
    assert "Usage:" in r.out
    assert "eval" in r.out and "losses" in r.out
    if mode == "module":
        assert "python -m lossctl" in r.out
    r = run(mode, ["eval", "-h"])
    assert r.code == 0
    for opt in ("--label", "--pred", "--loss", "--weight", "--format", "--nan", "--chunk-size",
                "--input-format", "--delimiter", "--no-header"):
        assert opt in r.out


# --------------------------------------------------------------------------
# Errors: exit status 2, one or two lines on stderr, no traceback
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.csv").write_bytes(b"")
    (d / "header_only.csv").write_text("y,p,w\n")
    (d / "not_number.csv").write_text("y,p,w\n1,2,1\n3,4,1\n5,abc,1\n7,8,1\n")
    (d / "empty_value.csv").write_text("y,p,w\n1,2,1\n3,,1\n")
    (d / "nan_value.csv").write_text("y,p,w\n1,2,1\n3,4,1\nNaN,6,1\n")
    (d / "prob.csv").write_text("y,p,w\n1,0.5,1\n0,1.5,1\n")
    (d / "class.csv").write_text("label,x0,x1,x2\n0,1,2,3\n2,0,0,0\n5,1,1,1\n")
    (d / "class_frac.csv").write_text("label,x0,x1,x2\n0,1,2,3\n1.5,0,0,0\n")
    (d / "neg_weight.csv").write_text("y,p,w\n1,2,1\n3,4,-0.5\n")
    (d / "zero_weight.csv").write_text("y,p,w\n1,2,0\n3,4,0\n")
    (d / "multi.csv").write_text("t0,t1,t2,x0,x1,x2,x3\n0.2,0.3,0.5,1,2,3,4\n")
    (d / "corrupt.parquet").write_bytes(np.random.default_rng(5).bytes(2000))
    (d / "nodata").mkdir()
    (d / "nodata" / "_SUCCESS").write_bytes(b"")
    (d / "nodata" / "README.md").write_text("nothing\n")
    (d / "nodata" / ".hidden.csv").write_text("y,p\n1,2\n")
    (d / "ok.csv").write_text("y,p,w\n1,2,1\n3,5,1\n")
    return d


ERROR_CASES: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments after "eval", fragments the message must contain); {d} is the bad-data dir
    "unknown_loss": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "hubber"],
                     ["unknown loss 'hubber'", "Did you mean 'huber'?"]),
    "bad_parameter_value": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "huber:delta=-1"],
                            ["huber", "delta", "> 0", "-1"]),
    "bad_parameter_type": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "huber:delta=abc"],
                           ["delta", "number", "'abc'"]),
    "unknown_parameter": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "huber:dleta=2"],
                          ["unknown parameter 'dleta'", "Did you mean 'delta'?"]),
    "missing_required_parameter": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "weighted_sigmoid_ce"],
                                   ["pos_weight", "required"]),
    "missing_column": (["{d}/ok.csv", "-l", "y", "-p", "pp"],
                       ["no prediction column named 'pp'", "Did you mean 'p'?",
                        "Available columns: y, p, w"]),
    "missing_weight_column": (["{d}/ok.csv", "-l", "y", "-p", "p", "-w", "weight"],
                              ["no weight column named 'weight'", "Available columns: y, p, w"]),
    "column_index_out_of_range": (["{d}/ok.csv", "-l", "y", "-p", "9"],
                                  ["prediction column 9 is out of range", "3 columns", "1-based"]),
    "not_a_number": (["{d}/not_number.csv", "-l", "y", "-p", "p", "-w", "w"],
                     ["{d}/not_number.csv", "row 3", "column 'p'", "'abc'", "not a number"]),
    "empty_value": (["{d}/empty_value.csv", "-l", "y", "-p", "p"],
                    ["{d}/empty_value.csv", "row 2", "column 'p'", "--nan skip"]),
    "nan_value": (["{d}/nan_value.csv", "-l", "y", "-p", "p"],
                  ["{d}/nan_value.csv", "row 3", "column 'y'", "nan"]),
    "probability_outside_unit": (["{d}/prob.csv", "-l", "y", "-p", "p", "-m", "bce"],
                                 ["{d}/prob.csv", "row 2", "column 'p'", "probability outside [0, 1]",
                                  "1.5"]),
    "class_index_out_of_range": (["{d}/class.csv", "-l", "label", "-p", "x*", "-m", "sparse_softmax_ce"],
                                 ["{d}/class.csv", "row 3", "column 'label'", "[0, 3)", "5.0"]),
    "class_index_not_integer": (["{d}/class_frac.csv", "-l", "label", "-p", "x0:x2",
                                 "-m", "sparse_softmax_ce"],
                                ["row 2", "column 'label'", "integer", "1.5"]),
    "negative_weight": (["{d}/neg_weight.csv", "-l", "y", "-p", "p", "-w", "w"],
                        ["{d}/neg_weight.csv", "row 2", "column 'w'", ">= 0", "-0.5"]),
    "zero_weight_sum": (["{d}/zero_weight.csv", "-l", "y", "-p", "p", "-w", "w"], ["sum to zero"]),
    "empty_file": (["{d}/empty.csv", "-l", "y", "-p", "p"], ["{d}/empty.csv", "empty"]),
    "header_only_file": (["{d}/header_only.csv", "-l", "y", "-p", "p"],
                         ["{d}/header_only.csv", "no data rows"]),
    "no_such_file": (["{d}/does_not_exist.csv", "-l", "y", "-p", "p"],
                     ["{d}/does_not_exist.csv", "no such file"]),
    "corrupt_parquet": (["{d}/corrupt.parquet", "-l", "y", "-p", "p"], ["{d}/corrupt.parquet", "parquet"]),
    "glob_matches_nothing": (["{d}/nothing_*.csv", "-l", "y", "-p", "p"],
                             ["{d}/nothing_*.csv", "no file matches"]),
    "directory_without_data": (["{d}/nodata", "-l", "y", "-p", "p"],
                               ["{d}/nodata", "holds no CSV, TSV, JSON Lines, Parquet"]),
    "multiclass_column_count_mismatch": (["{d}/multi.csv", "-l", "t0:t2", "-p", "x0:x3", "-m", "softmax_ce"],
                                         ["softmax_ce needs 4 label columns", "got 3"]),
    "loss_needs_k_columns": (["{d}/ok.csv", "-l", "y", "-p", "p", "-m", "sparse_softmax_ce"],
                             ["sparse_softmax_ce", "K >= 2", "got 1"]),
    "weight_is_one_column": (["{d}/ok.csv", "-l", "y", "-p", "p", "-w", "p,w"], ["weight is one column"]),
    "empty_stdin": (["-", "-l", "y", "-p", "p"], ["<stdin>", "empty"]),
    "negative_chunk_size": (["{d}/ok.csv", "-l", "y", "-p", "p", "--chunk-size", "-3"], ["--chunk-size"]),
}


SCRIPT_ERRORS = ["unknown_loss", "missing_column", "not_a_number", "empty_value", "header_only_file",
                 "corrupt_parquet", "glob_matches_nothing", "empty_stdin"]


@pytest.mark.parametrize("mode,case", [("runner", c) for c in ERROR_CASES]
                         + [("script", c) for c in SCRIPT_ERRORS])
def test_errors(bad: Path, mode: str, case: str) -> None:
    args, fragments = ERROR_CASES[case]
    r = run(mode, ["eval", *(a.format(d=bad) for a in args)], input=b"" if "-" in args else None)
    assert r.code == 2, (r.out, r.err)
    assert r.out == ""
    assert "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert 1 <= len(lines) <= 2, r.err
    assert lines[0].startswith("lossctl: error: ")
    for frag in fragments:
        assert frag.format(d=bad) in r.err, (frag, r.err)


@pytest.mark.parametrize("env", [{}, {"LOSSCTL_DEBUG": "1"}])
def test_debug_shows_a_traceback(bad: Path, env: dict) -> None:
    args = ["eval", bad / "not_number.csv", "-l", "y", "-p", "p"] + ([] if env else ["--debug"])
    r = run("script", args, env=env)
    assert r.code != 0
    assert "Traceback" in r.err
    assert "InvalidInput" in r.err and "not a number" in r.err
    r = run("runner", args, env=env, allow_exception=True)
    assert type(r.exception).__name__ == "InvalidInput"


@pytest.mark.parametrize("content,args", [
    ("y,p\n1,2\n3,\nnan,4\n", ["-l", "y", "-p", "p"]),
    ("y,p,w\n1,0.5,1\n3,0.5,1\n0.5,0.5,-1\n", ["-l", "y", "-p", "p", "-w", "w", "-m", "bce"]),
], ids=["nan_in_two_columns", "bad_label_before_bad_weight"])
def test_error_names_the_first_bad_row_whatever_the_chunk_size(tmp_path: Path, content: str,
                                                               args: list[str]) -> None:
    path = tmp_path / "two_bad_rows.csv"
    path.write_text(content)
    one = run("runner", ["eval", path, *args, "--chunk-size", "1"])
    default = run("runner", ["eval", path, *args])
    assert one.code == default.code == 2
    assert f"{path}, row 2," in one.err
    assert default.err == one.err


# --------------------------------------------------------------------------
# Pipes closed early
# --------------------------------------------------------------------------


def _no_pipe_noise(err: str) -> None:
    for word in ("Traceback", "BrokenPipeError", "Exception ignored", "Errno 32"):
        assert word not in err, err


@pytest.mark.parametrize("reader", ["head -n 1", "head -c 1", "true"])
def test_pipe_closed_early_through_a_shell(reg: DataSet, reader: str) -> None:
    exe = shlex.quote(str(LOSSCTL))
    script = (f"{exe} eval {shlex.quote(str(reg['shards']))} -l y -p pred -m "
              f"{','.join(REG_LOSSES)} -f csv | {reader}")
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=proc_env(), timeout=60,
                       stdin=subprocess.DEVNULL)
    _no_pipe_noise(p.stderr.decode())
    assert p.returncode == 0
    if reader == "head -n 1":
        assert p.stdout.decode() == "loss,value,rows,weight_sum\n"


def _run_into_closed_pipe(mode: str, args: list[str]) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.close(r)  # nobody will ever read: the first write fails with EPIPE
    try:
        return subprocess.run(command(mode) + args, stdout=w, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=proc_env(), timeout=60)
    finally:
        os.close(w)


@pytest.mark.parametrize("mode", ["script", "module"])
@pytest.mark.parametrize("sub", ["eval", "losses"])
def test_closed_pipe_is_quiet(reg: DataSet, mode: str, sub: str) -> None:
    args = ["eval", str(reg["csv"]), "-l", "y", "-p", "pred", "-f", "csv"] if sub == "eval" else ["losses"]
    p = _run_into_closed_pipe(mode, args)
    _no_pipe_noise(p.stderr.decode())
    assert p.stderr == b""
    assert p.returncode in (0, 1)


def test_closed_pipe_exit_status_is_zero(reg: DataSet) -> None:
    """Was: Click's own EPIPE handler exited 1 before cli.main() could exit 0."""
    p = _run_into_closed_pipe("script", ["eval", str(reg["csv"]), "-l", "y", "-p", "pred", "-f", "csv"])
    assert p.stderr == b""
    assert p.returncode == 0


# --------------------------------------------------------------------------
# A million rows through the installed script
# --------------------------------------------------------------------------


def test_million_rows_csv_and_parquet(tmp_path: Path) -> None:
    rng = np.random.default_rng(2024)
    n = 1_000_000
    y = rng.normal(0.0, 3.0, n)
    p = y + rng.laplace(0.0, 1.0, n)
    w = rng.uniform(0.0, 2.0, n)
    table = pa.table({"y": y, "p": p, "w": w})
    csv_path, pq_path = tmp_path / "big.csv", tmp_path / "big.parquet"
    pacsv.write_csv(table, csv_path, write_options=pacsv.WriteOptions(quoting_style="none"))
    pq.write_table(table, pq_path, row_group_size=200_000)
    d = y - p
    a = np.abs(d)
    ref = {
        "mse": float(np.average(d * d, weights=w)),
        "rmse": float(np.sqrt(np.average(d * d, weights=w))),
        "mae": float(np.average(a, weights=w)),
        "huber:delta=1.5": float(np.average(np.where(a <= 1.5, 0.5 * d * d, 1.5 * (a - 0.75)), weights=w)),
    }
    args = ["-l", "y", "-p", "p", "-w", "w", "-m", ",".join(ref)]
    docs = [report("script", ["eval", path, *args]) for path in (csv_path, pq_path)]
    for doc in docs:
        assert doc["rows"] == n
        assert doc["weight_sum"] == pytest.approx(float(w.sum()), rel=REL)
        assert_close(values(doc), ref)
    assert values(docs[0]) == values(docs[1])  # the same numbers, read two ways: the same bits
    mse = run("script", ["eval", csv_path, "-l", "y", "-p", "p", "-m", "mse", "-f", "value"])
    assert float(mse.out) == pytest.approx(float(np.mean(d * d)), rel=REL)


# --------------------------------------------------------------------------
# Regression tests for bugs found while writing these tests (fixed in a8f6c9b
# and 5ef6ead)
# --------------------------------------------------------------------------


def _list_file(path: Path, rows: list[list[float]]) -> None:
    pq.write_table(pa.table({"c": [1] * len(rows), "x": pa.array(rows, pa.list_(pa.float64()))}), path)


def test_bad_list_length_row_within_file(tmp_path: Path) -> None:
    """Was: engine._list_to_2d named the row within the chunk (row 501 for 1501)."""
    good = [0.1, 0.2, 0.7]
    _list_file(tmp_path / "v.parquet", [good] * 1500 + [[0.5, 0.5]] + [good] * 10)
    r = run("runner", ["eval", tmp_path / "v.parquet", "-l", "c", "-p", "x", "-m", "cce",
                       "--chunk-size", "1000"])
    assert r.code == 2
    assert "list has 2 values, expected 3" in r.err
    assert "row 1501," in r.err


def test_bad_list_length_row_in_second_file(tmp_path: Path) -> None:
    """Was: the chunk-relative row minus the file's start row: row -96 for row 4."""
    good = [0.1, 0.2, 0.7]
    _list_file(tmp_path / "a.parquet", [good] * 100)
    _list_file(tmp_path / "b.parquet", [good] * 3 + [[0.5, 0.5]])
    r = run("runner", ["eval", tmp_path / "a.parquet", tmp_path / "b.parquet", "-l", "c", "-p", "x",
                       "-m", "cce"])
    assert r.code == 2
    assert f"{tmp_path / 'b.parquet'}, row 4," in r.err


def test_auto_losses_do_not_depend_on_chunk_size(tmp_path: Path) -> None:
    """Was: the automatic choice looked at the first chunk only."""
    path = tmp_path / "counts.csv"
    path.write_text("y,p\n1,0.8\n0,0.3\n3,2.5\n2,2.0\n")  # the first two rows look like binary probabilities
    base = report("runner", ["eval", path, "-l", "y", "-p", "p"])
    assert list(base["losses"]) == ["mse", "rmse", "mae", "r2"]
    assert report("runner", ["eval", path, "-l", "y", "-p", "p", "--chunk-size", "2"]) == base


def test_auto_losses_do_not_depend_on_sharding(tmp_path: Path) -> None:
    """Was: the automatic choice looked at the first (tiny) shard only."""
    (tmp_path / "all.csv").write_text("y,p\n1,0.8\n0,0.3\n3,2.5\n2,2.0\n")
    (tmp_path / "s1.csv").write_text("y,p\n1,0.8\n0,0.3\n")
    (tmp_path / "s2.csv").write_text("y,p\n3,2.5\n2,2.0\n")
    base = report("runner", ["eval", tmp_path / "all.csv", "-l", "y", "-p", "p"])
    sharded = report("runner", ["eval", tmp_path / "s1.csv", tmp_path / "s2.csv", "-l", "y", "-p", "p"])
    assert values(sharded) == values(base)


def test_chunk_size_zero_is_rejected(bad: Path) -> None:
    """Was: `chunk_size or DEFAULT_CHUNK_ROWS` took 0 as 'not given'."""
    r = run("runner", ["eval", bad / "ok.csv", "-l", "y", "-p", "p", "--chunk-size", "0"])
    assert r.code == 2
    assert "--chunk-size" in r.err


def test_non_number_accepted_by_python_float_is_located(tmp_path: Path) -> None:
    """Was: Python's float() accepts '1_000', so the value was not located."""
    path = tmp_path / "underscore.csv"
    path.write_text("y,p\n1,2\n3,4\n5,1_000\n")
    r = run("runner", ["eval", path, "-l", "y", "-p", "p"])
    assert r.code == 2
    assert f"{path}, row 3, column 'p'" in r.err
    assert "'1_000'" in r.err


def test_hidden_and_underscore_subdirectories_are_skipped(tmp_path: Path) -> None:
    """Was: '_'/'.' file names were skipped but such directories walked."""
    d = tmp_path / "out"
    (d / "_temporary" / "0").mkdir(parents=True)
    (d / ".ipynb_checkpoints").mkdir()
    (d / "part-0.csv").write_text("y,p\n1,2\n3,5\n")
    (d / "_temporary" / "0" / "part-1.csv").write_text("y,p\n1,half-written\n")
    (d / ".ipynb_checkpoints" / "part-0-checkpoint.csv").write_text("y,p\n100,0\n")
    doc = report("runner", ["eval", d, "-l", "y", "-p", "p", "-m", "mse"])
    assert doc["inputs"] == [str(d / "part-0.csv")]
    assert values(doc) == {"mse": 2.5}



def test_list_width_change_between_files_names_the_file(tmp_path: Path) -> None:
    """Was: EvalState._as_float failed with a message naming neither the file nor the row."""
    _list_file(tmp_path / "a.parquet", [[0.1, 0.2, 0.7]] * 100)
    _list_file(tmp_path / "b.parquet", [[0.5, 0.5]] * 3)
    r = run("runner", ["eval", tmp_path / "a.parquet", tmp_path / "b.parquet", "-l", "c", "-p", "x",
                       "-m", "cce"])
    assert r.code == 2
    assert f"{tmp_path / 'b.parquet'}, row 1," in r.err


EXTRAS = ("dask", "distributed", "matplotlib", "PIL", "html5lib", "pandas", "sklearn", "scipy",
          "polars", "duckdb", "fsspec", "jsonschema")


@pytest.mark.parametrize("args", [
    ["eval", "{csv}", "-l", "y", "-p", "p", "-f", "json"],
    ["eval", "{parquet}", "-l", "y", "-p", "p", "-f", "value", "-m", "mse"],
    ["eval", "{parquet}", "-l", "y", "-p", "p", "--by", "s", "--ci", "--top", "1", "mse", "--keep", "s"],
    ["eval", "{csv}", "-l", "y", "-p", "p", "--quantiles", "-f", "markdown", "--by", "s"],
    ["eval", "{jsonl}", "{arrow}", "{orc}", "-l", "y", "-p", "p", "-f", "csv"],
    ["rows", "{csv}", "{csv2}", "-l", "y", "-p", "p", "-o", "-"],
    ["merge", "{state}", "{state2}", "-f", "markdown"],
    ["losses", "-f", "json"],
    ["--version"],
    ["eval", "--help"],
], ids=["eval-csv", "eval-parquet", "eval-slices-ci-top", "eval-quantiles-markdown",
        "eval-jsonl-arrow-orc", "rows", "merge",
        "losses", "version", "help"])
def test_commands_never_import_an_extra(args: list[str], tmp_path: Path) -> None:
    """The base install imports no extra: pandas alone costs half a second of start-up, and
    the optional extras (dask, matplotlib, ...) may not be installed. Checked with the
    extras installed (pip install -e '.[dev]'), where an accidental import would show."""
    import pyarrow.feather as feather
    import pyarrow.orc as orc

    t = pa.table({"y": [1.0, 3.0], "p": [2.0, 4.5], "s": ["a", "b"]})
    files = {"csv": tmp_path / "d.csv", "parquet": tmp_path / "d.parquet", "jsonl": tmp_path / "d.jsonl",
             "arrow": tmp_path / "d.arrow", "orc": tmp_path / "d.orc", "state": tmp_path / "s.json",
             "csv2": tmp_path / "d2.csv", "state2": tmp_path / "s2.json"}
    files["csv"].write_text("y,p,s\n1,2,a\n3,4.5,b\n")
    files["csv2"].write_text("y,p,s\n1,2,a\n5,4.5,b\n")  # other rows: a row is counted once
    pq.write_table(t, files["parquet"])
    files["jsonl"].write_text('{"y": 1, "p": 2, "s": "a"}\n{"y": 3, "p": 4.5, "s": "b"}\n')
    feather.write_feather(t, files["arrow"])
    orc.write_table(t, str(files["orc"]))
    for data, state in (("csv", "state"), ("csv2", "state2")):
        assert run("runner", ["eval", files[data], "-l", "y", "-p", "p", "--emit-state",
                              files[state]]).code == 0
    argv = [a.format(**files) for a in args]
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "lossctl", *argv], capture_output=True,
                       env=proc_env(), timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr.decode()
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.decode().splitlines()
                if ln.startswith("import time:")]
    if args == ["--version"]:  # answered before Click (and the CLI) load
        assert "lossctl.native" in imported and "click" not in imported
    else:
        assert "lossctl.cli" in imported
    if args[0] in ("eval", "rows", "merge") and "--help" not in args:
        assert "numpy" in imported  # (the check ran where the work is done)
    if args[0] == "--version":
        assert "numpy" not in imported and "pyarrow" not in imported
    assert not [m for m in imported if m.split(".")[0] in EXTRAS]


def test_ratio_metric_of_overflowing_values_is_null_not_a_traceback(tmp_path: Path) -> None:
    """Was: r2 (chosen by default) on values near 1e200 raised OverflowError."""
    path = tmp_path / "big.csv"
    path.write_text("y,p\n1e200,2e200\n3e200,1e200\n")
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p"])
    assert doc["losses"]["r2"]["value"] is None
    assert doc["losses"]["mae"]["value"] == 1.5e200
