"""Batch scoring (issue #5): slices, per-row output, top rows, saved states and merge, label joins.

Every number is checked against an independent computation on the same data
(pandas groupby / merge / nlargest, NumPy per-row losses), to a relative
tolerance of 1e-12; results that the README promises to be identical (chunk
sizes, shard splits, merge orders) are compared bit for bit.  Commands run
in-process through Click's CliRunner and, where cheap, as real processes of
the installed ``lossctl`` script.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import CLEAN_ENV, LOSSCTL, Run, report, run
from conftest import write_csv

from lossctl.core import kernels
from lossctl.report.numbers import number

REL = 1e-12


# --------------------------------------------------------------------------
# Running the CLI (the same two ways as test_cli.py)
# --------------------------------------------------------------------------


def usage_error(r: Run, *needles: str) -> None:
    """Exit 2, a one-line style message on stderr (no traceback) containing every needle."""
    assert r.code == 2, f"exit {r.code}, stderr: {r.err}"
    assert "Traceback" not in r.err, r.err
    assert "lossctl: error:" in r.err or "Error:" in r.err, r.err
    for n in needles:
        assert n in r.err, f"{n!r} not in {r.err!r}"


def values(doc: dict) -> dict[str, float]:
    return {k: v["value"] for k, v in doc["losses"].items()}


def without_inputs(doc: dict) -> dict:
    """The report but for where its rows came from: the inputs (and their fingerprints) and the
    engine that read them."""
    return {k: v for k, v in doc.items() if k not in ("inputs", "input_files", "engine")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def close(got: float | None, want: float) -> bool:
    return got is not None and got == pytest.approx(want, rel=REL, abs=0.0)


# --------------------------------------------------------------------------
# Data: id, seg (text with nulls, a quoted comma, a two-row slice), dev (int), y, p, p2, w
# --------------------------------------------------------------------------

N = 600
SEGMENTS = ["north", "south", "east", "west, far"]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seg = rng.choice(SEGMENTS, n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    seg[rng.choice(np.arange(10, n), 15, replace=False)] = None
    seg[[5, n - 7]] = "tiny"  # a slice of two rows
    y = rng.normal(10.0, 4.0, n)
    p = y + rng.standard_t(3, n)
    return pd.DataFrame({"id": np.arange(1, n + 1), "seg": seg, "dev": rng.integers(0, 3, n),
                         "y": y, "p": p, "p2": y + rng.normal(0.0, 2.0, n),
                         "w": rng.uniform(0.05, 3.0, n)})


def write_parquet(df: pd.DataFrame, path: Path, row_group_size: int | None = None) -> None:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path,
                   row_group_size=row_group_size)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        write_parquet(df, path, row_group_size=128)
    else:
        write_csv(df, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("batch")
    df = make_frame(N, 20250105)
    files = {"df": df, "dir": d}
    for fmt in ("csv", "parquet"):
        files[fmt] = write(df, d / f"data.{fmt}")
        files[f"head_{fmt}"] = write(df.iloc[:300], d / f"head.{fmt}")
    # the CSV parses back to the very floats of the frame
    back = pacsv.read_csv(files["csv"])
    for c in ("y", "p", "p2", "w"):
        assert np.array_equal(back.column(c).to_numpy(), df[c].to_numpy())
    return files


def key_value(v: Any, fmt: str) -> Any:
    """A slice key as lossctl reports it: Parquet keeps its types, CSV gets the same ones."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return int(v) if isinstance(v, (int, np.integer)) else v


# per-row losses of d = y - p (rmse is the root of the mse of a group)
PER_ROW: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mse": lambda d: d * d,
    "mae": np.abs,
    "huber:delta=2": lambda d: np.where(np.abs(d) <= 2.0, 0.5 * d * d, 2.0 * (np.abs(d) - 1.0)),
    "quantile:q=0.9": lambda d: np.maximum(0.9 * d, -0.1 * d),
}
SLICE_LOSSES = ["mse", "rmse", "mae", "huber:delta=2", "quantile:q=0.9"]


def ref_slices(df: pd.DataFrame, by: list[str], fmt: str, weighted: bool,
               label: str = "y", pred: str = "p") -> dict[tuple, dict]:
    """pandas groupby reference: per slice rows, weight sum and each loss's weighted mean."""
    d = df[label].to_numpy(np.float64) - df[pred].to_numpy(np.float64)
    w = df["w"].to_numpy() if weighted else np.ones(len(df))
    frame = df[by].copy()
    frame["_n"] = 1
    frame["_w"] = w
    for k, f in PER_ROW.items():
        frame[k] = f(d) * w
    sums = frame.groupby(by, dropna=False, sort=False).sum()
    out = {}
    for idx, row in sums.iterrows():
        key = tuple(key_value(v, fmt) for v in (idx if isinstance(idx, tuple) else (idx,)))
        vals = {k: row[k] / row["_w"] for k in PER_ROW}
        vals["rmse"] = math.sqrt(vals["mse"])
        out[key] = {"rows": int(row["_n"]), "weight_sum": float(row["_w"]), "losses": vals}
    return out


def check_slices(doc: dict, ref: dict[tuple, dict], by: list[str]) -> None:
    assert doc["columns"]["by"] == by
    got = {}
    for s in doc["slices"]:
        assert list(s["key"]) == by
        got[tuple(s["key"][c] for c in by)] = s
    assert len(got) == len(doc["slices"]), "a slice is listed twice"
    assert set(got) == set(ref)
    for key, r in ref.items():
        s = got[key]
        assert s["rows"] == r["rows"], key
        assert close(s["weight_sum"], r["weight_sum"]), key
        assert set(s["losses"]) == set(doc["losses"]), key
        for loss in s["losses"]:
            assert close(s["losses"][loss], r["losses"][loss]), (key, loss)


def key_order(s: dict) -> list:
    return [(v is None, v if v is not None else "") for v in s["key"].values()]


# --------------------------------------------------------------------------
# 1. Slices
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_slices_match_pandas_groupby(data: dict, fmt: str, weighted: bool) -> None:
    args = ["-l", "y", "-p", "p", "-m", ",".join(SLICE_LOSSES)] + (["-w", "w"] if weighted else [])
    doc = report("runner", ["eval", data[fmt], *args, "--by", "seg"])
    ref = ref_slices(data["df"], ["seg"], fmt, weighted)
    check_slices(doc, ref, ["seg"])
    assert (None,) in ref and ("west, far",) in ref  # the null slice, and a quoted comma
    assert doc["slices_hidden"] == 0 and doc["slices_sort"] is None
    assert doc["slices"] == sorted(doc["slices"], key=key_order)  # by value, null last
    # the overall values stay in `losses`, the very bits of a run without --by
    plain = report("runner", ["eval", data[fmt], *args])
    assert values(doc) == values(plain)
    assert (doc["rows"], doc["weight_sum"]) == (plain["rows"], plain["weight_sum"])
    assert sum(s["rows"] for s in doc["slices"]) == N


@pytest.mark.parametrize("fmt,mode", [("csv", "runner"), ("parquet", "script")])
def test_slices_by_two_columns_match_groupby(data: dict, fmt: str, mode: str) -> None:
    doc = report(mode, ["eval", data[fmt], "-l", "y", "-p", "p", "-w", "w",
                        "-m", ",".join(SLICE_LOSSES), "--by", "seg,dev"])
    check_slices(doc, ref_slices(data["df"], ["seg", "dev"], fmt, True), ["seg", "dev"])
    assert doc["slices"] == sorted(doc["slices"], key=key_order)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_slices_by_the_label_column(tmp_path: Path, fmt: str) -> None:
    """Per-class loss: the label is a slice key and still read as a number."""
    rng = np.random.default_rng(3)
    n = 400
    z = rng.integers(0, 2, n)
    prob = np.clip(rng.beta(2, 2, n) * 0.5 + 0.5 * z, 0.01, 0.99)
    df = pd.DataFrame({"z": z, "prob": prob})
    path = write(df, tmp_path / f"bin.{fmt}")
    doc = report("runner", ["eval", path, "-l", "z", "-p", "prob", "-m", "bce", "--by", "z"])
    ce = -(z * np.log(prob) + (1 - z) * np.log1p(-prob))
    ref = {key_value(k, fmt): float(ce[z == k].mean()) for k in (0, 1)}
    got = {s["key"]["z"]: s for s in doc["slices"]}
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k]["rows"] == int((z == int(k)).sum())
        assert close(got[k]["losses"]["bce"], v)
    assert close(doc["losses"]["bce"]["value"], float(ce.mean()))


def test_zero_weight_slice_has_null_losses(tmp_path: Path) -> None:
    path = tmp_path / "zero.csv"
    path.write_text("seg,y,p,w\na,1,2,0\na,3,1,0\nb,1,2,1\nb,3,1,2\n")
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-w", "w", "-m", "mse", "--by", "seg"])
    by = {s["key"]["seg"]: s for s in doc["slices"]}
    assert by["a"]["rows"] == 2 and by["a"]["weight_sum"] == 0.0
    assert by["a"]["losses"]["mse"] is None
    assert by["b"]["losses"]["mse"] == 3.0  # (1 * 1 + 2 * 4) / 3
    assert doc["losses"]["mse"]["value"] == 3.0


def test_nan_skip_rows_leave_their_slice(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    path.write_text("seg,y,p\na,1,2\na,,5\na,3,1\nb,1,nan\nb,2,2\n,4,1\n")
    doc = report("runner", ["eval", path, "-l", "y", "-p", "p", "-m", "mse", "--by", "seg",
                            "--nan", "skip"])
    assert (doc["rows"], doc["rows_skipped"]) == (4, 2)
    got = {s["key"]["seg"]: (s["rows"], s["losses"]["mse"]) for s in doc["slices"]}
    assert got == {"a": (2, 2.5), "b": (1, 0.0), None: (1, 9.0)}


def test_min_slice_rows_hides_small_slices(data: dict) -> None:
    args = ["eval", data["parquet"], "-l", "y", "-p", "p", "-m", "mse,mae", "--by", "seg,dev"]
    full = report("runner", args)
    ref = ref_slices(data["df"], ["seg", "dev"], "parquet", False)
    limit = sorted({r["rows"] for r in ref.values()})[1]  # a slice of exactly this many is shown
    small = {k for k, r in ref.items() if r["rows"] < limit}
    assert small and len(small) < len(ref)
    doc = report("runner", [*args, "--min-slice-rows", limit])
    assert doc["slices_hidden"] == len(small)
    shown = [s for s in full["slices"] if s["rows"] >= limit]
    assert doc["slices"] == shown
    assert values(doc) == values(full) and doc["rows"] == N  # hidden rows still count overall


@pytest.mark.parametrize("sort", ["mse", "mae"])
def test_sort_orders_slices_worst_first(data: dict, sort: str) -> None:
    doc = report("runner", ["eval", data["csv"], "-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae",
                            "--by", "seg", "--sort", sort])
    assert doc["slices_sort"] == sort
    ref = ref_slices(data["df"], ["seg"], "csv", True)
    want = sorted(ref, key=lambda k: -ref[k]["losses"][sort])
    assert [tuple(s["key"].values()) for s in doc["slices"]] == want
    got = [s["losses"][sort] for s in doc["slices"]]
    assert got == sorted(got, reverse=True)


def test_slice_option_errors(data: dict) -> None:
    f = data["csv"]
    base = ["eval", f, "-l", "y", "-p", "p", "-m", "mse"]
    usage_error(run("runner", [*base, "--by", "nope"]), "nope")
    usage_error(run("runner", [*base, "--by", "seg", "--sort", "mae"]), "mae")
    usage_error(run("runner", [*base, "--sort", "mse"]), "--by")


def test_max_slices(data: dict) -> None:
    base = ["eval", data["parquet"], "-l", "y", "-p", "p", "-m", "mse"]
    distinct = len(SEGMENTS) + 2  # plus "tiny" and null
    assert len(report("runner", [*base, "--by", "seg", "--max-slices", distinct])["slices"]) == distinct
    usage_error(run("runner", [*base, "--by", "seg", "--max-slices", distinct - 1]),
                "--max-slices", "seg")
    r = run("script", [*base, "--by", "id", "--max-slices", 100])
    usage_error(r, "--max-slices", "100")
    assert r.out == ""


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_slices_do_not_depend_on_chunk_size(data: dict, fmt: str) -> None:
    args = ["eval", data[f"head_{fmt}"], "-l", "y", "-p", "p", "-w", "w", "-m", "mse,rmse,mae",
            "--by", "seg,dev", "--top", "4", "mae", "--keep", "id", "-f", "json"]
    outs = []
    for chunk in (None, 1, 7, 64):
        r = run("runner", args + ([] if chunk is None else ["--chunk-size", chunk]))
        assert r.code == 0, r.err
        outs.append(r.out)
    assert all(o == outs[0] for o in outs)  # bit for bit
    check_slices(json.loads(outs[0]), ref_slices(data["df"].iloc[:300], ["seg", "dev"], fmt, True),
                 ["seg", "dev"])


def test_slices_in_csv_format(data: dict) -> None:
    args = ["eval", data["parquet"], "-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae", "--by", "seg,dev"]
    doc = report("runner", args)
    r = run("script", [*args, "-f", "csv"])
    assert r.code == 0, r.err
    rows = list(csv.reader(io.StringIO(r.out)))
    assert rows[0] == ["seg", "dev", "rows", "weight_sum", "mse", "mae"]
    overall = rows[1]
    assert overall[:2] == ["", ""]
    assert int(overall[2]) == N and float(overall[3]) == doc["weight_sum"]
    assert [float(x) for x in overall[4:]] == list(values(doc).values())
    assert len(rows) == 2 + len(doc["slices"])  # one row per slice
    for row, s in zip(rows[2:], doc["slices"], strict=True):
        for cell, v in zip(row[:2], s["key"].values(), strict=True):
            if v is None:
                assert cell != ""  # told apart from the overall row
            else:
                assert cell == str(v)
        assert int(row[2]) == s["rows"] and float(row[3]) == s["weight_sum"]
        assert [float(x) for x in row[4:]] == [s["losses"]["mse"], s["losses"]["mae"]]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_slices_in_table_and_markdown(data: dict, fmt: str) -> None:
    args = ["eval", data["csv"], "-l", "y", "-p", "p", "-m", "mse", "--by", "seg"]
    doc = report("runner", args)
    r = run("runner", [*args, "-f", fmt])
    assert r.code == 0, r.err
    assert "slices" in r.out
    for s in doc["slices"]:
        name = s["key"]["seg"]
        if name is not None:
            assert name in r.out
        assert number(s["losses"]["mse"]) in r.out  # 6 significant digits
    if fmt == "markdown":
        lines = r.out.splitlines()
        start = lines.index("| seg | rows | weight sum | mse |")
        table = []
        for line in lines[start + 2:]:
            if not line.startswith("|"):
                break
            table.append(line)
        assert len(table) == 1 + len(doc["slices"])  # the overall row and every slice


# --------------------------------------------------------------------------
# 2. Per-row output and top rows
# --------------------------------------------------------------------------


def read_rows(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    return pacsv.read_csv(path).to_pandas()


def text(v: Any) -> str | None:
    """A kept value as text: CSV inputs keep text, nulls may come back as NaN or ''."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return None
    return str(v)


ROW_LOSSES = ["mse", "mae", "huber:delta=2", "log_cosh"]


def check_row_losses(out: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> None:
    d = y - p
    a = np.abs(d)
    mse, mae = out["mse"].to_numpy(np.float64), out["mae"].to_numpy(np.float64)
    huber, log_cosh = out["huber:delta=2"].to_numpy(np.float64), out["log_cosh"].to_numpy(np.float64)
    assert np.array_equal(mse, d * d)
    assert np.array_equal(mae, a)
    # the core kernels, bit for bit, and independent NumPy forms
    assert np.array_equal(huber, kernels.huber(d, 2.0))
    assert np.array_equal(log_cosh, kernels.log_cosh(d))
    np.testing.assert_allclose(huber, np.where(a <= 2.0, 0.5 * d * d, 2.0 * (a - 1.0)), rtol=REL)
    np.testing.assert_allclose(log_cosh, np.log(np.cosh(d)), rtol=REL, atol=1e-15)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("out_ext", ["parquet", "csv"])
def test_rows_match_numpy(data: dict, tmp_path: Path, fmt: str, out_ext: str) -> None:
    src = data[fmt]
    before = digest(src)
    out = tmp_path / f"losses.{out_ext}"
    mode = "script" if out_ext == "csv" else "runner"
    r = run(mode, ["rows", src, "-l", "y", "-p", "p", "-m", ",".join(ROW_LOSSES),
                   "--keep", "id,seg", "-o", out])
    assert r.code == 0, r.err
    assert f"{N} rows" in r.err and r.out == ""
    assert digest(src) == before  # the input is never touched
    assert sorted(os.listdir(tmp_path)) == [out.name]  # no partial file left behind
    got = read_rows(out)
    assert list(got.columns) == ["row", "id", "seg", *ROW_LOSSES]
    df = data["df"]
    assert got["row"].tolist() == list(range(1, N + 1))
    assert [text(v) for v in got["id"]] == [str(v) for v in df["id"]]
    assert [text(v) for v in got["seg"]] == [text(v) for v in df["seg"]]
    check_row_losses(got, df["y"].to_numpy(), df["p"].to_numpy())
    if out_ext == "parquet":
        schema = pq.read_schema(out)
        assert schema.field("row").type == pa.int64()
        assert all(schema.field(k).type == pa.float64() for k in ROW_LOSSES)


def test_rows_of_several_inputs_name_the_file(data: dict, tmp_path: Path) -> None:
    df = data["df"]
    a = write(df.iloc[:250], tmp_path / "a.csv")
    b = write(df.iloc[250:], tmp_path / "b.parquet")
    out = tmp_path / "out" / "rows.parquet"
    out.parent.mkdir()
    r = run("runner", ["rows", a, b, "-l", "y", "-p", "p", "-m", ",".join(ROW_LOSSES),
                       "--keep", "id", "-o", out, "--chunk-size", 100])
    assert r.code == 0, r.err
    got = read_rows(out)
    assert list(got.columns) == ["file", "row", "id", *ROW_LOSSES]
    assert got["file"].tolist() == [str(a)] * 250 + [str(b)] * (N - 250)
    assert got["row"].tolist() == list(range(1, 251)) + list(range(1, N - 250 + 1))
    assert [text(v) for v in got["id"]] == [str(v) for v in df["id"]]
    check_row_losses(got, df["y"].to_numpy(), df["p"].to_numpy())
    # a glob matching one file: one input, no file column
    r = run("runner", ["rows", tmp_path / "a.*", "-l", "y", "-p", "p", "-m", "mse",
                       "-o", tmp_path / "one.parquet"])
    assert r.code == 0, r.err
    assert list(read_rows(tmp_path / "one.parquet").columns) == ["row", "mse"]


def test_rows_nan_skip_gives_null_losses(tmp_path: Path) -> None:
    src = tmp_path / "holes.csv"
    src.write_text("y,p\n1,2\n,5\n3,1\n4,inf\n2,2\n5,NaN\n0,-1\n")
    out = tmp_path / "rows.csv"
    r = run("script", ["rows", src, "-l", "y", "-p", "p", "-m", "mse,mae", "--nan", "skip", "-o", out])
    assert r.code == 0, r.err
    got = read_rows(out)
    assert got["row"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    mse = got["mse"].tolist()
    assert [None if math.isnan(v) else v for v in mse] == [1.0, None, 4.0, None, 0.0, None, 1.0]
    assert got["mae"].isna().tolist() == [False, True, False, True, False, True, False]
    # without --nan skip: exit 2 naming the row, and no output (nor partial file)
    out2 = tmp_path / "rows2.parquet"
    usage_error(run("runner", ["rows", src, "-l", "y", "-p", "p", "-m", "mse", "-o", out2]), "row 2")
    assert sorted(os.listdir(tmp_path)) == ["holes.csv", "rows.csv"]


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_rows_to_stdout(data: dict, mode: str) -> None:
    r = run(mode, ["rows", data["parquet"], "-l", "y", "-p", "p", "-m", "mse,mae", "-o", "-"])
    assert r.code == 0, r.err
    assert r.err.splitlines()[0] == f"lossctl: wrote {N} rows to stdout"
    got = pacsv.read_csv(pa.BufferReader(r.out.encode())).to_pandas()
    assert list(got.columns) == ["row", "mse", "mae"]
    d = data["df"]["y"].to_numpy() - data["df"]["p"].to_numpy()
    assert np.array_equal(got["mse"].to_numpy(), d * d)
    assert np.array_equal(got["mae"].to_numpy(), np.abs(d))


def test_rows_refuses_to_overwrite_without_force(data: dict, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    out.write_bytes(b"precious")
    args = ["rows", data["csv"], "-l", "y", "-p", "p", "-m", "mse", "-o", out]
    for mode in ("runner", "script"):
        usage_error(run(mode, args), "--force")
        assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["rows.parquet"]
    r = run("runner", [*args, "--force"])
    assert r.code == 0, r.err
    assert pq.read_table(out).num_rows == N


@pytest.mark.parametrize("case", ["same_path", "other_spelling", "labels_file", "input_directory",
                                  "input_glob"])
def test_rows_never_writes_onto_an_input(data: dict, tmp_path: Path, case: str) -> None:
    df = data["df"]
    shards = tmp_path / "shards"
    shards.mkdir()
    a = write(df.iloc[:300], shards / "part-0.csv")
    b = write(df.iloc[300:], shards / "part-1.csv")
    labels = write(df[["id", "y"]], tmp_path / "labels.csv")
    cols = ["-l", "y", "-p", "p", "-m", "mse"]
    args = {
        "same_path": [a, *cols, "-o", a],
        "other_spelling": [a, *cols, "-o", shards / "." / "part-0.csv"],
        "labels_file": [a, "--labels", labels, "--key", "id", "--missing", "skip", *cols,
                        "-o", labels],
        "input_directory": [shards, *cols, "-o", b],
        "input_glob": [shards / "part-*.csv", *cols, "-o", a],
    }[case]
    before = {p: digest(p) for p in (a, b, labels)}
    r = run("runner", ["rows", *args, "--force"])
    usage_error(r)
    assert {p: digest(p) for p in (a, b, labels)} == before
    assert sorted(os.listdir(shards)) == ["part-0.csv", "part-1.csv"]


def test_rows_failing_midway_keeps_the_old_output(data: dict, tmp_path: Path) -> None:
    df = data["df"].copy()
    df["p"] = df["p"].astype(object)
    df.loc[449, "p"] = "oops"
    src = tmp_path / "bad.csv"
    write_csv(df, src)
    out = tmp_path / "rows.csv"
    out.write_text("old\n")
    r = run("script", ["rows", src, "-l", "y", "-p", "p", "-m", "mse", "-o", out, "--force",
                       "--chunk-size", 100])
    usage_error(r, "row 450", "oops")
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "rows.csv"]


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 million rows: several seconds of `rows --chunk-size 100`, written in about a second."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    rng = np.random.default_rng(99)
    n = 3_000_000
    pacsv.write_csv(pa.table({"y": rng.integers(0, 1000, n), "p": rng.integers(0, 1000, n)}), path)
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_interrupted_rows_leaves_no_output(big_csv: Path, tmp_path: Path, sig: int) -> None:
    before = digest(big_csv)
    out = tmp_path / "out.parquet"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    proc = subprocess.Popen([str(LOSSCTL), "rows", str(big_csv), "-l", "y", "-p", "p", "-m", "mse,mae",
                             "-o", str(out), "--chunk-size", "100"],  # slow on purpose
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env,
                            # SIGINT works even if this test runs where it is ignored (nohup, &)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / f".out.parquet.lossctl-{proc.pid}.partial"
    try:
        deadline = time.monotonic() + 60
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert partial.exists(), "the output is not written under its temporary name"
        time.sleep(0.1)  # let it write some chunks
        assert proc.poll() is None, "finished before it could be interrupted: use a larger input"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert code != 0
    assert not out.exists()
    if sig != signal.SIGKILL:
        assert not partial.exists()
        assert os.listdir(tmp_path) == []
        assert "Traceback" not in err
    assert digest(big_csv) == before


@pytest.fixture(scope="module")
def ties(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Integer labels and predictions (many tied losses) in a CSV and a Parquet file."""
    d = tmp_path_factory.mktemp("ties")
    rng = np.random.default_rng(17)
    n = 700
    df = pd.DataFrame({"id": np.arange(1000, 1000 + n), "seg": rng.choice(["u", "v"], n),
                       "y": rng.integers(0, 7, n).astype(np.float64),
                       "p": rng.integers(0, 7, n).astype(np.float64)})
    a = write(df.iloc[:300], d / "a.csv")
    b = write(df.iloc[300:], d / "b.parquet")
    ref = pd.concat([df.iloc[:300].assign(file=str(a), row=np.arange(1, 301)),
                     df.iloc[300:].assign(file=str(b), row=np.arange(1, n - 300 + 1))])
    ref["mae"] = (ref["y"] - ref["p"]).abs()
    ref["mse"] = (ref["y"] - ref["p"]) ** 2
    return {"a": a, "b": b, "ref": ref}


def ref_top(ref: pd.DataFrame, loss: str, n: int) -> list[tuple]:
    """nlargest, ties broken by file name then row."""
    # nlargest(keep="all") gives every row tied with the n-th; then the tie-break picks n
    cand = ref.nlargest(n, loss, keep="all")
    cand = cand.sort_values([loss, "file", "row"], ascending=[False, True, True]).head(n)
    return [(f, int(r), float(v), str(i)) for f, r, v, i in
            zip(cand["file"], cand["row"], cand[loss], cand["id"], strict=True)]


def top_rows(doc: dict) -> list[tuple]:
    return [(r["file"], r["row"], r["value"], str(r["id"])) for r in doc["top"]["rows"]]


@pytest.mark.parametrize("loss,n", [("mae", 25), ("mse", 40), ("mae", 1)])
def test_top_matches_pandas_nlargest(ties: dict, loss: str, n: int) -> None:
    want = ref_top(ties["ref"], loss, n)
    assert len({v for _, _, v, _ in want}) <= 2  # the list is decided by ties
    # given in reverse name order: ties go by file name, not by the order files are read
    args = ["eval", ties["b"], ties["a"], "-l", "y", "-p", "p", "-m", "mse,mae", "--top", n, loss,
            "--keep", "id"]
    docs = [report("runner", args + ([] if c is None else ["--chunk-size", c])) for c in (None, 7)]
    for doc in docs:
        assert doc["top"]["loss"] == loss
        assert top_rows(doc) == want
        assert all(set(r) == {"file", "row", "value", "id"} for r in doc["top"]["rows"])
    assert docs[0] == docs[1]


def test_top_with_rows_goes_to_stderr(ties: dict, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    r = run("script", ["rows", ties["a"], ties["b"], "-l", "y", "-p", "p", "-m", "mae",
                       "--top", 10, "mae", "--keep", "id", "-o", out])
    assert r.code == 0, r.err
    assert r.out == ""
    first, rest = r.err.split("\n", 1)
    assert first == f"lossctl: wrote 700 rows to {out}"
    doc = json.loads(rest)
    assert top_rows(doc) == ref_top(ties["ref"], "mae", 10)
    assert pq.read_table(out).num_rows == 700


def test_top_of_a_loss_not_computed(ties: dict) -> None:
    usage_error(run("runner", ["eval", ties["a"], "-l", "y", "-p", "p", "-m", "mse",
                               "--top", 3, "huber"]), "huber")


# --------------------------------------------------------------------------
# 3. Saved states and merge
# --------------------------------------------------------------------------

STATE_ARGS = ["-l", "y", "-p", "p", "-w", "w", "-m", "mse,rmse,mae", "--by", "seg", "--ci",
              "--top", "5", "mae", "--keep", "id"]


def make_shards(df: pd.DataFrame, d: Path, k: int, fmt: str, seed: int = 0) -> list[Path]:
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed + k)
    cuts = np.sort(rng.choice(np.arange(1, len(df)), k - 1, replace=False)) if k > 1 else []
    bounds = [0, *cuts, len(df)]
    return [write(df.iloc[bounds[i]:bounds[i + 1]], d / f"part-{i:02d}.{fmt}") for i in range(k)]


def emit(shard: Path, state: Path, args: list[str]) -> None:
    r = run("runner", ["eval", shard, *args, "--emit-state", state, "-f", "json"])
    assert r.code == 0, r.err
    assert state.exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("k", [1, 2, 10])
def test_merge_equals_one_pass(data: dict, tmp_path: Path, fmt: str, k: int) -> None:
    shards = make_shards(data["df"], tmp_path / "shards", k, fmt)
    one = report("runner", ["eval", tmp_path / "shards", *STATE_ARGS])
    assert one["rows"] == N and len(one["top"]["rows"]) == 5 and "ci" in one["losses"]["mse"]
    states = []
    for i, shard in enumerate(shards):
        states.append(tmp_path / f"s{i}.json")
        emit(shard, states[-1], STATE_ARGS)
    merged = report("script" if k == 10 else "runner", ["merge", *states])
    assert merged["inputs"] == [str(s) for s in shards]
    assert without_inputs(merged) == without_inputs(one)
    # any merge order, and the slice view options of merge
    view = ["--sort", "mae", "--min-slice-rows", 20]
    rev = report("runner", ["merge", *reversed(states), *view])
    assert without_inputs(rev) == without_inputs(report("runner", ["eval", tmp_path / "shards",
                                                                   *STATE_ARGS, *view]))
    small = [r for r in ref_slices(data["df"], ["seg"], fmt, True).values() if r["rows"] < 20]
    assert rev["slices_hidden"] == len(small) > 0


def test_merged_state_can_be_saved_and_merged_again(data: dict, tmp_path: Path) -> None:
    shards = make_shards(data["df"], tmp_path / "shards", 3, "parquet")
    for i, shard in enumerate(shards):
        emit(shard, tmp_path / f"s{i}.json", STATE_ARGS)
    r = run("runner", ["merge", tmp_path / "s0.json", tmp_path / "s1.json", "--emit-state",
                       tmp_path / "s01.json", "-f", "json"])
    assert r.code == 0, r.err
    again = report("runner", ["merge", tmp_path / "s01.json", tmp_path / "s2.json"])
    one = report("runner", ["eval", tmp_path / "shards", *STATE_ARGS])
    assert without_inputs(again) == without_inputs(one)


MISMATCHES = {
    "loss": (["-m", "mse"], ["-m", "mae"]),
    "loss_parameter": (["-m", "huber:delta=2"], ["-m", "huber:delta=3"]),
    "prediction_column": (["-m", "mse", "-p", "p"], ["-m", "mse", "-p", "p2"]),
    "weighted_or_not": (["-m", "mse"], ["-m", "mse", "-w", "w"]),
    "ci_or_not": (["-m", "mse", "--ci"], ["-m", "mse"]),
    "seed": (["-m", "mse", "--ci"], ["-m", "mse", "--ci", "--seed", "1"]),
    "by_or_not": (["-m", "mse", "--by", "seg"], ["-m", "mse"]),
    "by_column": (["-m", "mse", "--by", "seg"], ["-m", "mse", "--by", "dev"]),
    "top": (["-m", "mse", "--top", "3", "mse"], ["-m", "mse", "--top", "4", "mse"]),
    "nan_policy": (["-m", "mse"], ["-m", "mse", "--nan", "skip"]),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_merge_refuses_different_definitions(data: dict, tmp_path: Path, case: str) -> None:
    first, second = MISMATCHES[case]
    shards = make_shards(data["df"], tmp_path / "shards", 2, "parquet")
    base = ["-l", "y"]  # and -p p, unless the case names the column (-p repeated: two models)
    emit(shards[0], tmp_path / "a.json", base + (first if "-p" in first else ["-p", "p", *first]))
    emit(shards[1], tmp_path / "b.json", base + (second if "-p" in second else ["-p", "p", *second]))
    mode = "script" if case == "ci_or_not" else "runner"
    for states in ([tmp_path / "a.json", tmp_path / "b.json"], [tmp_path / "b.json", tmp_path / "a.json"]):
        r = run(mode, ["merge", *states])
        usage_error(r, str(states[1]))
        assert r.out == ""


NOT_STATES = ["csv_data", "parquet_data", "missing", "directory", "eval_report", "empty", "list",
              "truncated", "other_version", "no_state_body"]


@pytest.mark.parametrize("case", NOT_STATES)
def test_merge_rejects_files_that_are_not_states(data: dict, tmp_path: Path, case: str) -> None:
    good = tmp_path / "good.json"
    emit(data["head_csv"], good, ["-l", "y", "-p", "p", "-m", "mse"])
    saved = good.read_text()
    state = json.loads(saved)
    path = tmp_path / f"{case}.json"
    if case in ("csv_data", "parquet_data"):
        path = data[case.split("_")[0]]
    elif case == "directory":
        path = tmp_path
    elif case == "eval_report":  # an easy mistake: the report instead of the state
        path.write_text(run("runner", ["eval", data["head_csv"], "-l", "y", "-p", "p", "-m", "mse",
                                       "-f", "json"]).out)
    elif case != "missing":
        path.write_text({"empty": "", "list": "[1, 2]", "truncated": saved[: len(saved) // 2],
                         "other_version": json.dumps({**state, "version": 999}),
                         "no_state_body": json.dumps({"kind": state["kind"],
                                                      "version": state["version"]})}[case])
    mode = "script" if case in ("truncated", "no_state_body") else "runner"
    r = run(mode, ["merge", good, path])
    usage_error(r, str(path))
    assert r.out == ""


def test_merge_with_checks(data: dict, tmp_path: Path) -> None:
    shards = make_shards(data["df"], tmp_path / "shards", 2, "csv")
    args = ["-l", "y", "-p", "p", "-m", "mse,mae"]
    for i, shard in enumerate(shards):
        emit(shard, tmp_path / f"s{i}.json", args)
    states = [tmp_path / "s0.json", tmp_path / "s1.json"]
    mse = values(report("runner", ["eval", tmp_path / "shards", *args]))["mse"]
    r = run("script", ["merge", *states, "--fail-if", f"mse > {mse / 2}", "-f", "json"])
    assert r.code == 1
    doc = json.loads(r.out)  # the report is still printed
    assert doc["passed"] is False and doc["losses"]["mse"]["value"] == mse
    assert "mse" in r.err and "Traceback" not in r.err
    r = run("runner", ["merge", *states, "--fail-if", f"mse > {mse * 2}", "--fail-if", "mae > 1e9",
                       "-f", "json"])
    assert r.code == 0 and json.loads(r.out)["passed"] is True
    usage_error(run("runner", ["merge", *states, "--fail-if", "huber > 1"]), "huber")


# --------------------------------------------------------------------------
# 4. Labels from a separate file
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def join(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Predictions and labels keyed by id, with every kind of mismatch.

    Labels: some keys twice (the first row wins), some never predicted.
    Predictions: some keys without a label, some keys repeated.
    """
    d = tmp_path_factory.mktemp("join")
    rng = np.random.default_rng(5)
    keys = rng.permutation(np.arange(1, 241))
    pred_keys = np.concatenate([keys[:200], rng.choice(keys[:200], 12)])  # 12 repeats
    rng.shuffle(pred_keys)
    preds = pd.DataFrame({"id": pred_keys, "seg": rng.choice(["a", "b", "c"], len(pred_keys)),
                          "p": rng.normal(0.0, 2.0, len(pred_keys))})
    label_keys = np.concatenate([keys[15:240], rng.choice(keys[15:240], 9, replace=False)])
    labels = pd.DataFrame({"id": label_keys, "y": rng.normal(0.0, 2.0, len(label_keys))})
    labels = labels.sample(frac=1.0, random_state=1).reset_index(drop=True)
    files: dict[str, Any] = {"preds": preds, "labels": labels}
    for fmt in ("csv", "parquet"):
        files[f"preds_{fmt}"] = write(preds, d / f"preds.{fmt}")
        files[f"labels_{fmt}"] = write(labels, d / f"labels.{fmt}")
    first = labels.drop_duplicates("id", keep="first")
    m = preds.reset_index().merge(first, on="id", how="left", sort=False)
    assert m["index"].tolist() == list(range(len(preds)))  # the predictions' order
    files["merged"] = m
    return files


@pytest.mark.parametrize("pfmt,lfmt", [("csv", "csv"), ("parquet", "csv"), ("csv", "parquet"),
                                       ("parquet", "parquet")])
def test_key_join_matches_pandas_merge(join: dict, pfmt: str, lfmt: str) -> None:
    preds, labels, m = join["preds"], join["labels"], join["merged"]
    mode = "script" if pfmt != lfmt else "runner"
    doc = report(mode, ["eval", join[f"preds_{pfmt}"], "--labels", join[f"labels_{lfmt}"],
                        "--key", "id", "-l", "y", "-p", "p", "-m", "mse,mae", "--missing", "skip",
                        "--by", "seg"])
    hit = m[m["y"].notna()]
    d = hit["y"].to_numpy() - hit["p"].to_numpy()
    assert doc["rows"] == len(hit)
    assert close(doc["losses"]["mse"]["value"], float(np.mean(d * d)))
    assert close(doc["losses"]["mae"]["value"], float(np.mean(np.abs(d))))
    j = doc["join"]
    assert j["key"] == "id" and j["file"] == str(join[f"labels_{lfmt}"])
    assert j["rows"] == len(labels)
    assert j["duplicate_keys"] == len(labels) - labels["id"].nunique() > 0
    assert j["unmatched_main"] == int((~preds["id"].isin(labels["id"])).sum()) > 0
    assert j["repeated_matches"] == len(hit) - hit["id"].nunique() > 0
    # --by comes from the prediction file
    sl = {s["key"]["seg"]: s for s in doc["slices"]}
    for seg, g in hit.assign(l=d * d).groupby("seg"):
        assert sl[seg]["rows"] == len(g)
        assert close(sl[seg]["losses"]["mse"], float(g["l"].mean()))


def test_key_join_counts_labels_without_a_prediction(tmp_path: Path) -> None:
    """A label key repeated in the label file has a prediction: it is a duplicate, not unmatched."""
    preds = tmp_path / "preds.csv"
    preds.write_text("id,p\n1,0.5\n2,1.5\n3,2.5\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,y\n1,1\n2,2\n2,7\n3,3\n9,9\n")
    doc = report("runner", ["eval", preds, "--labels", labels, "--key", "id", "-l", "y", "-p", "p",
                            "-m", "mse"])
    assert doc["losses"]["mse"]["value"] == 0.25  # key 2 takes its first label
    j = doc["join"]
    assert (j["rows"], j["duplicate_keys"], j["unmatched_main"], j["repeated_matches"]) == (5, 1, 0, 0)
    assert j["unmatched_other"] == 1  # only key 9 has no prediction


def test_key_types_do_not_matter(join: dict) -> None:
    """Integer keys in Parquet, text keys in CSV: the same join whichever side has which."""
    docs = [report("runner", ["eval", join[f"preds_{p}"], "--labels", join[f"labels_{lf}"], "--key", "id",
                              "-l", "y", "-p", "p", "-m", "mse", "--missing", "skip"])
            for p, lf in (("csv", "csv"), ("parquet", "csv"), ("csv", "parquet"), ("parquet", "parquet"))]
    assert pq.read_schema(join["preds_parquet"]).field("id").type == pa.int64()
    for doc in docs[1:]:
        assert values(doc) == values(docs[0])
        assert {k: v for k, v in doc["join"].items() if k != "file"} == \
            {k: v for k, v in docs[0]["join"].items() if k != "file"}


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_prediction_without_label_is_an_error(join: dict, chunk: int | None) -> None:
    m = join["merged"]
    first = int(np.flatnonzero(m["y"].isna().to_numpy())[0])
    key = int(m["id"][first])
    path = join["preds_csv"]
    args = ["eval", path, "--labels", join["labels_parquet"], "--key", "id", "-l", "y", "-p", "p",
            "-m", "mse"] + ([] if chunk is None else ["--chunk-size", chunk])
    r = run("runner", args)
    usage_error(r, str(path), f"row {first + 1},", "'id'", str(key))
    assert r.out == ""
    if chunk is None:
        usage_error(run("script", args), str(path), f"row {first + 1},")


def test_missing_label_is_located_in_the_second_input_file(join: dict, tmp_path: Path) -> None:
    preds, m = join["preds"], join["merged"]
    matched = m["y"].notna().to_numpy()
    a = write(preds.iloc[:100][matched[:100]], tmp_path / "a.parquet")  # every key has a label
    b = write(preds.iloc[100:], tmp_path / "b.parquet")
    first_b = int(np.flatnonzero(~matched[100:])[0])
    r = run("runner", ["eval", a, b, "--labels", join["labels_csv"], "--key", "id", "-l", "y", "-p", "p",
                       "-m", "mse", "--chunk-size", 16])
    usage_error(r, f"{b}, row {first_b + 1},", str(preds["id"].iloc[100 + first_b]))


def test_rows_with_key_join(join: dict, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    r = run("runner", ["rows", join["preds_csv"], "--labels", join["labels_csv"], "--key", "id",
                       "-l", "y", "-p", "p", "-m", "mse", "--missing", "skip", "--keep", "id",
                       "-o", out, "--chunk-size", 50])
    assert r.code == 0, r.err
    got = read_rows(out)
    hit = join["merged"][join["merged"]["y"].notna()]
    assert got["row"].tolist() == (hit["index"] + 1).tolist()  # rows of the prediction file
    assert [int(v) for v in got["id"]] == hit["id"].tolist()
    d = hit["y"].to_numpy() - hit["p"].to_numpy()
    assert np.array_equal(got["mse"].to_numpy(), d * d)


def test_bad_label_value_names_the_label_file(tmp_path: Path) -> None:
    preds = tmp_path / "preds.csv"
    preds.write_text("id,p\n5,1\n4,2\n2,3\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,y\n1,1\n2,\n3,3\n4,4\n5,5\n")  # key 2 has no label value
    r = run("runner", ["eval", preds, "--labels", labels, "--key", "id", "-l", "y", "-p", "p", "-m", "mse"])
    usage_error(r, "'y'")
    assert str(labels) in r.err  # the file that holds column y and the bad value


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_labels_by_row_position(data: dict, tmp_path: Path, fmt: str) -> None:
    df = data["df"]
    preds = write(df[["id", "seg", "p"]], tmp_path / f"preds.{fmt}")
    labels = write(df[["y"]], tmp_path / "labels.csv")
    args = ["-l", "y", "-p", "p", "-m", "mse,mae", "--by", "seg"]
    doc = report("runner", ["eval", preds, "--labels", labels, *args, "--chunk-size", 100])
    one = report("runner", ["eval", data[fmt], *args])
    assert values(doc) == values(one)
    assert doc["slices"] == one["slices"]
    assert doc["join"]["key"] is None and doc["join"]["rows"] == N


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_labels_by_row_position_need_equal_row_counts(data: dict, tmp_path: Path, mode: str) -> None:
    df = data["df"]
    preds = write(df[["p"]], tmp_path / "preds.csv")
    short = write(df[["y"]].iloc[:-3], tmp_path / "short.parquet")
    r = run(mode, ["eval", preds, "--labels", short, "-l", "y", "-p", "p", "-m", "mse"])
    usage_error(r, str(N), str(N - 3))
    assert r.out == ""
    long = write(pd.concat([df[["y"]], df[["y"]].iloc[:5]]), tmp_path / "long.csv")
    usage_error(run(mode, ["eval", preds, "--labels", long, "-l", "y", "-p", "p", "-m", "mse"]),
                str(N), str(N + 5))


def test_join_option_errors(join: dict, tmp_path: Path) -> None:
    p = join["preds_csv"]
    cols = ["-l", "y", "-p", "p", "-m", "mse"]
    usage_error(run("runner", ["eval", p, "--key", "id", *cols]), "--labels")
    usage_error(run("runner", ["eval", p, "--labels", tmp_path / "nope.csv", "--key", "id", *cols]),
                "nope.csv")
    usage_error(run("runner", ["eval", p, "--labels", join["labels_csv"], "--key", "nope", *cols]),
                "nope")


@pytest.mark.parametrize("ci", [[], ["--ci"]])
def test_a_shard_of_zero_weights_saves_a_state_that_merges_as_nothing(tmp_path: Path,
                                                                     ci: list[str]) -> None:
    """A shard whose weights are all 0 has no values, but its state is saved (with a warning)
    and merging it changes nothing: the merge equals one pass over every shard."""
    zero = tmp_path / "zero.csv"
    write_csv(pd.DataFrame({"y": [1.0, 3.0], "p": [2.0, 4.0], "w": [0.0, 0.0]}), zero)
    some = tmp_path / "some.csv"
    write_csv(pd.DataFrame({"y": [1.0, 3.0, 2.5], "p": [2.0, 5.0, 2.0], "w": [1.0, 2.0, 0.5]}),
              some)
    cols = ["-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae", *ci]
    r = run("runner", ["eval", zero, *cols, "--emit-state", tmp_path / "s0.json", "-f", "json"])
    assert r.code == 0, r.err
    assert "weights of all 2 rows sum to zero" in r.err and "Traceback" not in r.err
    empty = json.loads(r.out)
    assert all(v["value"] is None and "sum to zero" in v["undefined"]
               for v in empty["losses"].values())
    assert all("ci" not in v for v in empty["losses"].values())
    assert run("runner", ["eval", some, *cols, "--emit-state", tmp_path / "s1.json"]).code == 0
    merged = report("runner", ["merge", tmp_path / "s0.json", tmp_path / "s1.json"])
    whole = report("runner", ["eval", zero, some, *cols])
    assert merged["losses"] == whole["losses"] and merged["rows"] == whole["rows"] == 5
    # without --emit-state there is nothing to keep: the run is an error
    r = run("runner", ["eval", zero, *cols])
    assert r.code == 2 and "sum to zero" in r.err
