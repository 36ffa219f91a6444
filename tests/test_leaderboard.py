"""Several models in one pass (issue 17): ``eval -p a -p b``, ``--models GLOB``, ``--reference``.

Every model's values and intervals must be those of ``lossctl eval -p MODEL``
alone, bit for bit, and its paired difference against the reference the one
``lossctl compare --baseline-pred REF -p MODEL`` reports; values are checked
against scikit-learn on the arrays written to the files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import run
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

MODELS = ["p_a", "p_b", "p_c"]
REG = ["-l", "y", "-w", "w", "-m", "mse,mae,mean_bias,huber:delta=0.5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("board")
    rng = np.random.default_rng(17)
    n = 1800
    y = rng.normal(2.0, 1.0, n)
    df = pd.DataFrame({
        "id": np.arange(n), "seg": rng.choice(["x", "y", "z"], n), "y": y,
        "p_a": y + rng.normal(0.1, 0.6, n), "p_b": y + rng.normal(0.0, 0.3, n),
        "p_c": y + rng.normal(-0.2, 0.9, n), "w": rng.uniform(0.2, 2.0, n),
    })
    label = rng.integers(0, 2, n)
    fair = rng.normal(0, 1, n) + 1.2 * (label - 0.5)
    good = rng.normal(0, 0.6, n) + 2 * (label - 0.5)
    bdf = pd.DataFrame({"label": label, "good": 1 / (1 + np.exp(-good)),
                        "fair": 1 / (1 + np.exp(-fair)), "noise": rng.uniform(0.01, 0.99, n)})
    out = {"df": df, "csv": d / "reg.csv", "parquet": d / "reg.parquet", "bdf": bdf,
           "binary": d / "binary.parquet", "dir": d}
    df.to_csv(out["csv"], index=False, float_format="%.17g")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out["parquet"],
                   row_group_size=500)
    pq.write_table(pa.Table.from_pandas(bdf, preserve_index=False), out["binary"])
    return out


def report(args: list[Any], mode: str = "runner", code: int = 0) -> dict:
    r = run(mode, ["eval", *args, "-f", "json"])
    assert r.code == code, r.err
    assert "Traceback" not in r.err
    return json.loads(r.out)


def error(args: list[Any], command: str = "eval") -> str:
    """Exit 2 with a one-line message, nothing on stdout."""
    r = run("runner", [command, *args])
    assert r.code == 2, (r.code, r.out, r.err)
    assert r.out == "" and "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossctl: error: "), r.err
    return lines[0]


def models_of(doc: dict) -> dict[str, dict]:
    return {m["model"]: m for m in doc["models"]}


def without_difference(losses: dict) -> dict:
    return {k: {f: v for f, v in e.items() if f != "vs_reference"} for k, e in losses.items()}


# -- the values are those of each model alone ----------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("ci", [False, True])
def test_every_model_as_alone(data: dict, fmt: str, ci: bool) -> None:
    extra = ["--ci", "--seed", "5"] if ci else []
    doc = report([data[fmt], *REG, *[a for m in MODELS for a in ("-p", m)], *extra])
    assert doc["columns"] == {"label": ["y"], "models": MODELS, "weight": "w"}
    assert doc["reference"] == "p_a"
    assert [m["rank"] for m in doc["models"]] == [1, 2, 3]
    for name, m in models_of(doc).items():
        alone = report([data[fmt], *REG, "-p", name, *extra])
        assert json.dumps(without_difference(m["losses"])) == json.dumps(alone["losses"])
        assert (doc["rows"], doc["weight_sum"], doc["rows_skipped"]) == \
            (alone["rows"], alone["weight_sum"], alone["rows_skipped"])
        if ci:
            assert doc["confidence"] == alone["confidence"]
        assert ("vs_reference" in m["losses"]["mse"]) == (name != "p_a")


def test_values_against_scikit_learn(data: dict) -> None:
    df = data["df"]
    doc = report([data["parquet"], *REG, "--models", "p_*"])
    for name, m in models_of(doc).items():
        v = m["losses"]
        assert v["mse"]["value"] == pytest.approx(
            mean_squared_error(df.y, df[name], sample_weight=df.w), rel=1e-12)
        assert v["mae"]["value"] == pytest.approx(
            mean_absolute_error(df.y, df[name], sample_weight=df.w), rel=1e-12)
        bias = np.average(df[name] - df.y, weights=df.w)
        assert v["mean_bias"]["value"] == pytest.approx(bias, rel=1e-12)
    bdf = data["bdf"]
    doc = report([data["binary"], "-l", "label", "-p", "fair", "-p", "good", "-p", "noise",
                  "-m", "roc_auc,log_loss"])
    for name, m in models_of(doc).items():
        assert m["losses"]["roc_auc"]["value"] == pytest.approx(
            roc_auc_score(bdf.label, bdf[name]), rel=1e-12)
        assert m["losses"]["log_loss"]["value"] == pytest.approx(
            log_loss(bdf.label, bdf[name]), rel=1e-12)
    # ranked by roc_auc, higher first: the better model leads, noise last
    assert [m["model"] for m in doc["models"]] == ["good", "fair", "noise"]
    assert doc["ranked_by"] == {"loss": "roc_auc", "direction": "higher"}


def test_ranked_by_the_first_loss_in_its_direction(data: dict) -> None:
    df = data["df"]
    for loss, badness in (("mse", lambda p: np.average((p - df.y) ** 2, weights=df.w)),
                          ("mean_bias", lambda p: abs(np.average(p - df.y, weights=df.w)))):
        doc = report([data["parquet"], "-l", "y", "-w", "w", "-m", f"{loss},mae",
                      "--models", "p_*"])
        want = sorted(MODELS, key=lambda m: badness(df[m]))
        assert [m["model"] for m in doc["models"]] == want
        assert doc["ranked_by"]["loss"] == loss


def test_paired_intervals_are_those_of_compare(data: dict) -> None:
    args = [data["csv"], "-l", "y", "-w", "w", "-m", "mse,mae,mean_bias", "--seed", "3"]
    doc = report([*args, "-p", "p_b", "-p", "p_a", "-p", "p_c", "--ci"])
    assert doc["reference"] == "p_b"
    for name in ("p_a", "p_c"):
        r = run("runner", ["compare", *args, "--baseline-pred", "p_b", "-p", name, "-f", "json"])
        assert r.code == 0, r.err
        cmp = json.loads(r.out)
        for k, e in models_of(doc)[name]["losses"].items():
            got = e["vs_reference"]
            assert json.dumps(got) == json.dumps({f: cmp["losses"][k][f] for f in got})
            assert got["verdict"] in ("better", "worse", "no significant change")
    # without --ci: the differences, no interval, no verdict
    doc = report([*args, "-p", "p_b", "-p", "p_a"])
    d = models_of(doc)["p_a"]["losses"]["mse"]["vs_reference"]
    assert d["ci"] is None and d["verdict"] is None and d["difference"] is not None


def test_models_glob_and_reference(data: dict) -> None:
    listed = report([data["parquet"], *REG, "-p", "p_a", "-p", "p_b", "-p", "p_c"])
    globbed = report([data["parquet"], *REG, "--models", "p_*"])
    assert json.dumps(globbed) == json.dumps(listed)
    # '*' leaves out the label and the weight (and keeps -p models first)
    doc = report([data["parquet"], "-l", "y", "-w", "w", "-m", "mse", "-p", "p_c",
                  "--models", "p*,id"])
    assert doc["columns"]["models"] == ["p_c", "p_a", "p_b", "id"]
    doc = report([data["parquet"], "-l", "y", "-w", "w", "-m", "mse", "--models", "*",
                  "--by", "seg", "--ci", "--ci-key", "id"])  # every other role's column left out
    assert doc["columns"]["models"] == MODELS
    doc = report([data["parquet"], *REG, "--models", "p_*", "--reference", "p_c"])
    assert doc["reference"] == "p_c" and doc["columns"]["models"][0] == "p_c"
    for name, m in models_of(doc).items():
        d = m["losses"]["mse"].get("vs_reference")
        assert (d is None) == (name == "p_c")
        if d is not None:
            assert d["baseline"] == models_of(doc)["p_c"]["losses"]["mse"]["value"]
            assert d["candidate"] == m["losses"]["mse"]["value"]
    # one model matched: still a leaderboard (the shape a script asked for)
    doc = report([data["parquet"], *REG, "--models", "p_b"])
    assert [m["model"] for m in doc["models"]] == ["p_b"]


def test_one_pred_gives_the_single_model_report(data: dict) -> None:
    doc = report([data["parquet"], *REG, "-p", "p_a", "--ci"])
    assert "models" not in doc and "reference" not in doc
    assert doc["columns"] == {"label": ["y"], "prediction": ["p_a"], "weight": "w"}
    assert set(doc["losses"]["mse"]) >= {"value", "ci"}


def test_multiclass_list_columns(multiclass: Any) -> None:
    f = multiclass.files["lists"]
    args = [f, "-l", "label", "-m", "sparse_softmax_ce,accuracy", "--ci"]
    doc = report([*args, "-p", "logits", "-p", "logits_var"])
    for name, m in models_of(doc).items():
        alone = report([*args, "-p", name])
        assert json.dumps(without_difference(m["losses"])) == json.dumps(alone["losses"])
    assert "several models" in error([multiclass.files["csv"], "-l", "label", "-p",
                                      "logit_*", "-p", "prob_*"])


def test_nan_skip_drops_a_row_for_every_model(tmp_path: Path) -> None:
    f = tmp_path / "nan.csv"
    f.write_text("y,a,b\n1,1.5,2\n2,,2.5\n3,3,nan\n4,4.5,4\n")
    doc = report([f, "-l", "y", "-p", "a", "-p", "b", "-m", "mse", "--nan", "skip"])
    assert doc["rows"] == 2 and doc["rows_skipped"] == 2
    m = models_of(doc)
    assert m["a"]["losses"]["mse"]["value"] == 0.25 and m["b"]["losses"]["mse"]["value"] == 0.5
    err = error([f, "-l", "y", "-p", "a", "-p", "b", "-m", "mse"])
    assert "'a'" in err and "row 2" in err


def test_fail_if_checks_every_model(data: dict) -> None:
    args = [data["parquet"], *REG, "--models", "p_*"]
    doc = report([*args, "--fail-if", "mse > 0.5"], code=1)
    assert [(c["model"], c["passed"]) for c in doc["checks"]] == \
        [("p_b", True), ("p_a", True), ("p_c", False)]
    assert doc["checks"][2]["name"] == "p_c: fail if mse > 0.5" and doc["passed"] is False
    r = run("runner", ["eval", *args, "--fail-if", "mse > 0.5", "-f", "csv"])
    assert r.code == 1 and "p_c: fail if mse > 0.5" in r.err
    doc = report([*args, "--fail-if", "mse > 5"])
    assert doc["passed"] is True


@pytest.mark.parametrize("ci", [False, True])
def test_slices_as_alone_and_as_compare(data: dict, ci: bool) -> None:
    args = [data["parquet"], "-l", "y", "-w", "w", "-m", "mse,mean_bias", "--by", "seg"]
    extra = ["--ci"] if ci else []
    doc = report([*args, "--models", "p_*", *extra])
    assert doc["columns"]["by"] == ["seg"] and [s["key"]["seg"] for s in doc["slices"]] == \
        ["x", "y", "z"]
    for name in MODELS:
        alone = report([*args, "-p", name, *extra])
        mine = [next(m for m in s["models"] if m["model"] == name) for s in doc["slices"]]
        assert [s["rows"] for s in doc["slices"]] == [s["rows"] for s in alone["slices"]]
        assert json.dumps([m["losses"] for m in mine]) == \
            json.dumps([s["losses"] for s in alone["slices"]])
        if ci:
            assert json.dumps([m["ci"] for m in mine]) == json.dumps([s["ci"] for s in alone["slices"]])
        if name == "p_a":
            assert all("vs_reference" not in m for m in mine)
            continue
        r = run("runner", ["compare", *args, "--baseline-pred", "p_a", "-p", name, "-f", "json",
                           *([] if ci else ["--seed", "0"])])
        cmp = json.loads(r.out)
        for m, s in zip(mine, cmp["slices"], strict=True):
            for k, d in m["vs_reference"].items():
                want = {f: s["losses"][k][f] for f in d}
                if not ci:  # compare always has intervals; without --ci only the point values
                    want = {f: (None if f in ("ci", "relative_ci", "worse_ci", "verdict") else v)
                            for f, v in want.items()}
                assert json.dumps(d) == json.dumps(want)
    for s in doc["slices"]:  # best first within each slice, by its own mse
        values = [m["losses"]["mse"] for m in s["models"]]
        assert values == sorted(values) and [m["rank"] for m in s["models"]] == [1, 2, 3]
    rows = list(csv.DictReader(io.StringIO(
        run("runner", ["eval", *args, "--models", "p_*", *extra, "-f", "csv"]).out)))
    assert len(rows) == 2 * 3 * 4 and rows[0]["seg"] == "" and rows[6]["seg"] == "x"
    assert float(rows[6]["value"]) == doc["slices"][0]["models"][0]["losses"]["mse"]
    table = run("runner", ["eval", *args, "--models", "p_*", *extra, "-f", "table"],
                env={"COLUMNS": "160"}).out
    assert "slices" in table and "seg" in table


def test_slice_fail_if_every_model(data: dict) -> None:
    args = [data["parquet"], "-l", "y", "-m", "mse", "--by", "seg", "--models", "p_*"]
    doc = report([*args, "--slice-fail-if", "mse > 0.5", "--min-slice-rows", "1"], code=1)
    assert [(c["model"], c["passed"], c["slices_checked"]) for c in doc["checks"]] == \
        [("p_b", True, 3), ("p_a", True, 3), ("p_c", False, 3)]
    doc = report([*args, "--sort", "mse", "--min-slice-rows", "580"])  # y has 572 rows
    assert doc["slices_sort"] == "mse" and doc["slices_hidden"] == 1 and len(doc["slices"]) == 2
    ref = [next(m for m in s["models"] if m["model"] == "p_a")["losses"]["mse"]
           for s in doc["slices"]]
    assert ref == sorted(ref, reverse=True)  # by the reference's value, worst first


# -- output formats ------------------------------------------------------------


def test_table_markdown_csv_value(data: dict) -> None:
    args = ["eval", data["parquet"], "-l", "y", "-m", "mse,mae", "--models", "p_*", "--ci"]
    r = run("runner", [*args, "-f", "table"], env={"COLUMNS": "160"})
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    first = [i for i, line in enumerate(lines) if " p_b " in line][0]
    assert "better" in r.out and "reference" in r.out and "worse" in r.out
    assert first < [i for i, line in enumerate(lines) if " p_a " in line][0]
    assert "models: p_a, p_b, p_c (reference: p_a)" in r.out and "ranked by mse" in r.out
    narrow = run("runner", [*args, "-f", "table"], env={"COLUMNS": "50"})
    assert "rank=1 · model=p_b · loss=mse" in narrow.out
    md = run("runner", [*args, "-f", "markdown"]).out
    assert "| rank | model | loss | value | 95% CI |" in md
    doc = report(args[1:])
    rows = list(csv.DictReader(io.StringIO(run("runner", [*args, "-f", "csv"]).out)))
    pairs = [(m, k) for m in doc["models"] for k in m["losses"]]
    assert [(r["model"], r["loss"]) for r in rows] == [(m["model"], k) for m, k in pairs]
    for row, (m, k) in zip(rows, pairs, strict=True):
        e = m["losses"][k]
        assert float(row["value"]) == e["value"] and int(row["rank"]) == m["rank"]
        assert [float(row["ci_low"]), float(row["ci_high"])] == e["ci"]
        d = e.get("vs_reference")
        assert row["difference"] == ("" if d is None else repr(d["difference"]))
        assert row["verdict"] == ("" if d is None else d["verdict"])
    value = run("runner", [*args, "-f", "value"]).out.splitlines()
    assert value == [f"{m['model']}\t{e['value']!r}" for m in doc["models"]
                     for e in m["losses"].values()]


def test_real_process(data: dict) -> None:
    doc = report([data["csv"], *REG, "-p", "p_a", "-p", "p_b", "--ci"], mode="script")
    assert [m["model"] for m in doc["models"]] == ["p_b", "p_a"]
    r = run("script", ["eval", data["csv"], "-l", "y", "--models", "q_*"])
    assert r.code == 2 and r.err.startswith("lossctl: error: no prediction column matches 'q_*'")


def test_python_api(data: dict) -> None:
    import lossctl.api as api
    from lossctl.report.render import to_dict

    got = api.evaluate_files(str(data["parquet"]), "y", ["p_a", "p_b"], ["mse"], "w", ci=True)
    doc = report([data["parquet"], "-l", "y", "-w", "w", "-m", "mse", "-p", "p_a", "-p", "p_b",
                  "--ci"])
    mine = to_dict(got)
    mine.pop("engine"), doc.pop("engine")
    assert json.dumps(mine) == json.dumps(doc)
    assert got.leaderboard is not None and got.leaderboard.reference == "p_a"


# -- what is refused, before reading -------------------------------------------


def test_errors_are_one_line(data: dict) -> None:
    f = data["parquet"]
    base = [f, "-l", "y", "-m", "mse"]
    assert "no prediction column named 'nope'" in error([*base, "-p", "p_a", "-p", "nope"])
    assert "no prediction column matches 'q_*'" in error([*base, "--models", "q_*"])
    assert "matches no prediction column besides the -p models" in error([*base, "--models", "y"])
    assert "--reference 'p_z' is not one of the models: p_a, p_b, p_c" in \
        error([*base, "--models", "p_*", "--reference", "p_z"])
    assert "--reference names one of several models" in \
        error([*base, "-p", "p_a", "--reference", "p_a"])
    assert "model 'p_a' is given twice" in error([*base, "-p", "p_a", "-p", "p_a"])
    assert "selects 2 columns" in error([*base, "-p", "p_a:p_b", "-p", "p_c"])
    for option in (["--top", "3", "mse"], ["--quantiles"]):
        assert "works on one model" in error([*base, "--models", "p_*", *option])
    assert "--baseline gates one model" in \
        error([*base, "--models", "p_*", "--baseline", data["dir"] / "none.json"])
    assert "compare takes one -p" in \
        error([f, "-l", "y", "--baseline-pred", "p_a", "-p", "p_b", "-p", "p_c"], "compare")
    assert "lossctl rows works on one model" in \
        error([f, "-l", "y", "-p", "p_b", "-p", "p_c", "-o", data["dir"] / "r.csv"], "rows")
    assert not (data["dir"] / "r.csv").exists()


def test_emit_state_refused(data: dict, tmp_path: Path) -> None:
    r = run("runner", ["eval", data["parquet"], "-l", "y", "--models", "p_*",
                       "--emit-state", tmp_path / "s.json"])
    assert r.code == 2 and "--emit-state saves one model's state" in r.err
    assert not (tmp_path / "s.json").exists()


@pytest.mark.dask
def test_dask_engine_gives_the_local_leaderboard(data: dict, dask_cluster: Any) -> None:
    args = ["eval", data["parquet"], *REG, "--models", "p_*", "--ci", "-f", "json"]
    docs = []
    for extra in ([], ["--engine", "dask", "--scheduler", dask_cluster.scheduler_address,
                       "--unit-size", "48KiB"]):
        r = run("runner", [*args, *extra])
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        doc.pop("engine")
        docs.append(doc)
    assert json.dumps(docs[0]) == json.dumps(docs[1])
    assert not math.isnan(docs[0]["models"][0]["losses"]["mse"]["value"])
