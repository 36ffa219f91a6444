"""docs/report.schema.json describes the JSON reports of eval, compare and merge as they are.

Every report made through ``cli_run.run`` anywhere in the suite is validated
against the schema (see tests/cli_run.py); here a broad set of invocations
on ``sample_data/`` covers each optional part of a report on purpose, and
renamed, added and mistyped keys are shown to fail, so the schema is strict
enough to catch a report that changes shape.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cli_run import SCHEMA, check_report, run

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
HOUSES = [SAMPLE / "house_prices.csv", "-l", "price", "-p", "predicted_price"]
CHURN = [SAMPLE / "churn.parquet", "-l", "churned"]
DIGITS = [SAMPLE / "digits10_list.parquet", "-l", "label", "-p", "probs"]
PREDS = [SAMPLE / "preds", "-l", "y"]
V2 = SAMPLE / "house_prices_v2.csv"

# (id, arguments, exit status); "{tmp}" is a fresh directory, "{baseline}" an eval report in it
CASES: list[tuple[str, list[Any], int]] = [
    ("plain", ["eval", *HOUSES], 0),
    ("weighted-params", ["eval", *HOUSES, "-w", "weight", "-m", "mse,mae,huber:delta=50000",
                         "-m", "quantile:q=0.9"], 0),
    ("regression-metrics", ["eval", *HOUSES, "-m", "r2,explained_variance,mape,max_error,mean_bias"], 0),
    ("by-sorted-hidden", ["eval", *PREDS, "-p", "yhat", "-m", "rmse,mae", "--by", "segment,country",
                          "--sort", "rmse", "--min-slice-rows", "100"], 0),
    ("ci", ["eval", *HOUSES, "-m", "rmse,r2", "--ci", "--confidence", "0.9", "--seed", "7"], 0),
    ("ci-by", ["eval", *PREDS, "-p", "yhat", "-m", "rmse", "--ci", "--by", "segment"], 0),
    ("ci-key", ["eval", *PREDS, "-p", "yhat", "-m", "mae", "--ci", "--ci-key", "id"], 0),
    ("fail-if-passes", ["eval", *HOUSES, "-m", "rmse,mae", "--fail-if", "rmse > 60000",
                        "--fail-if", "mae > 4e4"], 0),
    ("fail-if-fails", ["eval", *HOUSES, "-m", "rmse", "--fail-if", "rmse > 1"], 1),
    ("slice-fail-if", ["eval", *PREDS, "-p", "yhat", "-m", "rmse", "--by", "country",
                       "--slice-fail-if", "rmse > 7"], 1),
    ("checks-file", ["eval", *HOUSES, "-w", "weight", "-m", "rmse,mae", "--checks",
                     SAMPLE / "checks.toml"], 0),
    ("baseline", ["eval", *PREDS, "-p", "yhat", "-m", "rmse,mae", "--baseline", "{baseline}",
                  "--max-increase", "rmse=2%", "--max-increase", "0.5%"], 0),
    ("baseline-state", ["eval", *PREDS, "-p", "yhat", "-m", "rmse,mae", "--baseline", "{state}",
                        "--max-increase", "1%"], 0),
    ("binary-metrics", ["eval", *CHURN, "-p", "prob", "-m",
                        "bce,brier,accuracy,f1,precision,recall,mcc,roc_auc,pr_auc,ece:bins=10"], 0),
    ("auc-ci-unsupported", ["eval", *CHURN, "-p", "prob", "-m", "roc_auc,bce", "--ci", "--by",
                            "segment"], 0),
    ("logits", ["eval", *CHURN, "-p", "logit", "-m", "sigmoid_ce,focal:gamma=2,accuracy:threshold=0"], 0),
    ("auto-binary", ["eval", *CHURN, "-p", "prob"], 0),
    ("multiclass", ["eval", *DIGITS, "-m", "cce,accuracy,top_k_accuracy:k=3,macro_f1,ece,brier"], 0),
    ("top-keep", ["eval", *PREDS, "-p", "yhat", "-m", "mae", "--top", "5", "mae", "--keep",
                  "id,segment"], 0),
    ("quantiles", ["eval", *HOUSES, "-m", "mse,rmse,mae,r2", "--quantiles"], 0),
    ("quantiles-binary", ["eval", *CHURN, "-p", "prob", "-m", "bce,accuracy", "--quantiles"], 0),
    ("key-join", ["eval", SAMPLE / "scores.parquet", "--labels", SAMPLE / "labels.csv", "--key", "id",
                  "-l", "y", "-p", "yhat", "-m", "mse", "--missing", "skip", "--by", "segment"], 0),
    ("counts-gzip", ["eval", SAMPLE / "demand.csv.gz", "-l", "units_sold", "-p", "forecast",
                     "-m", "poisson,poisson_deviance"], 0),
    ("compare-one-file", ["compare", *PREDS, "--baseline-pred", "yhat_old", "-p", "yhat",
                          "-m", "rmse,mae", "--max-regression", "rmse=1%"], 0),
    ("compare-key-by", ["compare", SAMPLE / "house_prices.csv", V2, "-l", "price", "-p",
                        "predicted_price", "--key", "id", "-m", "rmse,mae,r2", "--by", "segment",
                        "--sort", "rmse", "--slice-max-regression", "5%", "--quantiles"], 0),
    ("compare-strict-fails", ["compare", *PREDS, "--baseline-pred", "yhat", "-p", "yhat_old",
                              "-m", "rmse", "--max-regression", "1%", "--strict"], 1),
    ("compare-auc", ["compare", *CHURN, "--baseline-pred", "logit", "-p", "score",
                     "-m", "roc_auc,sigmoid_ce"], 0),
    ("models", ["eval", SAMPLE / "house_prices_models.csv", "-l", "price", "-p", "model_a",
                "-p", "model_b", "-p", "model_c", "-m", "rmse,mape", "--ci"], 0),
    ("models-by", ["eval", SAMPLE / "house_prices_models.csv", "-l", "price", "--models", "model_*",
                   "--reference", "model_b", "-m", "mape", "--by", "segment", "--ci",
                   "--fail-if", "mape > 0.5", "--slice-fail-if", "mape > 0.5"], 0),
    ("merge", ["merge", "{tmp}/day1.json", "{tmp}/day2.json", "--fail-if", "rmse > 8",
               "--sort", "rmse"], 0),
    ("merge-baseline", ["merge", "{tmp}/day1.json", "{tmp}/day2.json", "--baseline", "{baseline}",
                        "--max-increase", "10%"], 0),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A baseline report, a saved state and two days' states with slices, intervals and more."""
    tmp = tmp_path_factory.mktemp("schema")
    base = run("runner", ["eval", *PREDS, "-p", "yhat_old", "-m", "rmse,mae", "-f", "json",
                          "--emit-state", tmp / "old.json"])
    assert base.code == 0, base.err
    (tmp / "baseline.json").write_text(base.out)
    for day in ("day1", "day2"):
        r = run("runner", ["eval", SAMPLE / "preds" / day, "-l", "y", "-p", "yhat", "-m", "rmse,mae",
                           "--by", "segment", "--ci", "--quantiles", "--top", "3", "mae",
                           "--keep", "id", "--emit-state", tmp / f"{day}.json", "-f", "json"])
        assert r.code == 0, r.err
    return {"tmp": str(tmp), "baseline": str(tmp / "baseline.json"), "state": str(tmp / "old.json")}


_MADE: dict[tuple[str, ...], str] = {}  # each invocation's report, made once


def _report(args: list[Any], made: dict[str, str], code: int = 0) -> dict:
    args = [str(a).format(**made) for a in args]
    if tuple(args) not in _MADE:
        r = run("runner", [*args, "-f", "json"])
        assert r.code == code, r.err
        _MADE[tuple(args)] = r.out
    doc = json.loads(_MADE[tuple(args)])
    check_report(doc)  # (run validated it already; here it is the point of the test)
    return doc


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(("args", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_report_is_valid_against_the_schema(args: list[Any], code: int,
                                                  made: dict[str, str]) -> None:
    _report(args, made, code)


def test_the_cases_reach_every_optional_part_of_a_report(made: dict[str, str]) -> None:
    """The cases above are broad: each optional key of the schema appears in some report."""
    schema = json.loads(SCHEMA.read_text())
    seen: set[str] = set()
    loss_keys: set[str] = set()
    for _, args, code in CASES:
        doc = _report(args, made, code)
        seen |= set(doc)
        for entry in doc.get("losses", {}).values():
            loss_keys |= set(entry)
    assert set(schema["properties"]) - seen == set(), set(schema["properties"]) - seen
    optional = set(schema["$defs"]["evalLoss"]["properties"]) - {"nonfinite", "undefined"}
    assert optional <= loss_keys, optional - loss_keys


def test_nonfinite_and_undefined_values_are_valid(tmp_path: Path, made: dict[str, str]) -> None:
    f = tmp_path / "edge.csv"
    f.write_text("y,p\n1,1e200\n0,-1e200\n")
    doc = _report(["eval", f, "-l", "y", "-p", "p", "-m", "mse,roc_auc"], made)
    assert doc["losses"]["mse"]["value"] is None and doc["losses"]["mse"]["nonfinite"] == "inf"
    g = tmp_path / "one_class.csv"
    g.write_text("y,p\n1,0.2\n1,0.9\n")
    doc = _report(["eval", g, "-l", "y", "-p", "p", "-m", "roc_auc,pr_auc"], made)
    assert doc["losses"]["roc_auc"]["value"] is None and "undefined" in doc["losses"]["roc_auc"]


def _rename(doc: dict, path: list[Any], new: str) -> dict:
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[new] = node.pop(path[-1])
    return out


@pytest.mark.parametrize("path", [
    ["rows"], ["losses_chosen"], ["input_files", 0, "digest"], ["columns", "label"],
    ["losses", "rmse", "value"], ["losses", "rmse", "higher_is_better"], ["losses", "rmse", "ci"],
    ["losses", "rmse", "quantiles"], ["confidence", "seed"], ["slices", 0, "rows"],
    ["slices", 0, "ci"], ["slices_hidden"], ["top", "rows", 0, "file"], ["checks", 0, "passed"],
    ["residuals", "quantiles"], ["quantiles", "relative_error"],
], ids=lambda p: "/".join(map(str, p)))
def test_a_renamed_key_is_caught(path: list[Any], made: dict[str, str]) -> None:
    doc = _report(["merge", "{tmp}/day1.json", "{tmp}/day2.json", "--fail-if", "rmse > 8"], made)
    check_report(doc)
    with pytest.raises(AssertionError, match="not valid"):
        check_report(_rename(doc, path, path[-1] + "_renamed"))


@pytest.mark.parametrize("path", [
    ["losses", "rmse", "difference"], ["losses", "rmse", "verdict"], ["slices", 0, "losses", "rmse",
                                                                      "worse_ci"],
    ["join", "unmatched_main"], ["engine", "threads"], ["columns", "candidate"],
    ["checks", 0, "tolerance", "origin"], ["checks", 0, "failing_slices"],
], ids=lambda p: "/".join(map(str, p)))
def test_a_renamed_key_of_a_comparison_is_caught(path: list[Any], made: dict[str, str]) -> None:
    doc = _report(CASES[[c[0] for c in CASES].index("compare-key-by")][1], made)
    with pytest.raises(AssertionError, match="not valid"):
        check_report(_rename(doc, path, path[-1] + "_renamed"))


@pytest.mark.parametrize("path", [
    ["models", 0, "rank"], ["models", "other", "losses", "mape", "vs_reference"], ["ranked_by", "loss"],
    ["reference"], ["slices", 0, "models", 0, "ci"], ["checks", 0, "model"],
    ["columns", "models"],
], ids=lambda p: "/".join(map(str, p)))
def test_a_renamed_key_of_several_models_is_caught(path: list[Any], made: dict[str, str]) -> None:
    doc = _report(CASES[[c[0] for c in CASES].index("models-by")][1], made)
    other = next(i for i, m in enumerate(doc["models"]) if m["model"] != doc["reference"])
    path = [other if step == "other" else step for step in path]
    with pytest.raises(AssertionError, match="not valid"):
        check_report(_rename(doc, path, path[-1] + "_renamed"))


def test_added_and_mistyped_keys_are_caught(made: dict[str, str]) -> None:
    doc = _report(["eval", *HOUSES, "-m", "mse", "--by", "segment"], made)
    for change in (lambda d: d.update(extra=1), lambda d: d.update(rows="600"),
                   lambda d: d["losses"]["mse"].update(value="1.0"),
                   lambda d: d["losses"]["mse"].update(kind="average"),
                   lambda d: d["slices"][0]["losses"].update(mse=[1.0]),
                   lambda d: d.update(command="evaluate"),
                   lambda d: d["input_files"][0].update(role="primary"),
                   lambda d: d.pop("passed", None) or d.update(passed=True)):
        bad = copy.deepcopy(doc)
        change(bad)
        with pytest.raises(AssertionError, match="not valid"):
            check_report(bad)


def test_the_readmes_json_example_is_the_report_lossctl_prints(made: dict[str, str]) -> None:
    """The README's example report is valid, and is what lossctl prints for its command (but the
    resolved path and the engine's thread count, which depend on the machine)."""
    import re

    readme = (SAMPLE.parent / "README.md").read_text()
    example = json.loads(re.search(r"^```json\n(.*?)^```$", readme, re.S | re.M)[1])
    check_report(example)
    got = _report(["eval", *HOUSES, "-w", "weight", "-m", "mse,huber:delta=50000"], made)
    for doc in (example, got):
        doc["inputs"] = [Path(p).name for p in doc["inputs"]]
        for f in doc["input_files"]:
            f["name"] = Path(f["name"]).name
            f.pop("path")
        doc["engine"].pop("threads")
    assert example == got
