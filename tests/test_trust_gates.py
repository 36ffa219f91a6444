"""Issue 12: gates that fail closed, baselines of the same evaluation, per-slice gates, no row twice.

Through the real CLI (in-process; exit paths also as a process), against
NumPy / scikit-learn on the arrays written to the files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from trust_data import Data, error, make, report

from lossctl.core import losses as catalogue
from lossctl.core.definitions import LossDef

REL = 1e-12


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    d = make(tmp_path_factory.mktemp("trust"))
    base = report(["eval", d.csv, "-l", "y", "-p", "old", "-m", "mse,rmse,mae"])
    (d.dir / "base.json").write_text(json.dumps(base))
    return d


def base(data: Data) -> Path:
    return data.dir / "base.json"


def mse(data: Data, pred: str, rows: object = slice(None)) -> float:
    return float(mean_squared_error(data.col("y", rows), data.col(pred, rows)))


def mae(data: Data, pred: str) -> float:
    return float(mean_absolute_error(data.col("y"), data.col(pred)))


def by_loss(doc: dict) -> dict[str, dict]:
    return {c["loss"]: c for c in doc["checks"] if c["kind"] == "baseline"}


# --------------------------------------------------------------------------
# Every loss computed and in the baseline is checked
# --------------------------------------------------------------------------

EVAL_WORSE = ["-l", "y", "-p", "worse", "-m", "mse,rmse,mae"]


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_tolerance_for_one_loss_leaves_the_others_at_no_increase(data: Data, mode: str) -> None:
    """The issue's case: --max-increase rmse=... used to let mae regress while passing."""
    rmse_change = math.sqrt(mse(data, "worse")) / math.sqrt(mse(data, "old")) - 1
    r = run(mode, ["eval", data.csv, *EVAL_WORSE, "--baseline", base(data),
                   "--max-increase", f"rmse={rmse_change * 200}%", "-f", "json"])
    assert r.code == 1, r.err
    doc = json.loads(r.out)
    checks = by_loss(doc)
    assert set(checks) == {"mse", "rmse", "mae"}  # every loss computed, each listed
    assert checks["rmse"]["passed"] and checks["rmse"]["tolerance"]["origin"] == \
        f"--max-increase rmse={rmse_change * 200}%"
    for key in ("mse", "mae"):
        assert checks[key]["passed"] is False
        assert checks[key]["limit"] == 0.0
        assert checks[key]["tolerance"] == {"text": "0", "relative": False, "for": "*",
                                            "origin": "default: no loss may get worse"}
    assert checks["mae"]["value"] == pytest.approx(mae(data, "worse") - mae(data, "old"), rel=1e-9)
    assert "mae increase <= 0 vs baseline" in r.err


@pytest.mark.parametrize("given", [["--max-increase", "100%"], ["--max-increase", "*=100%"]])
def test_a_default_tolerance_for_every_loss(data: Data, given: list[str]) -> None:
    doc = report(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), *given])
    assert all(c["passed"] and c["limit"] == 1.0 and c["tolerance"]["for"] == "*"
               for c in doc["checks"])
    assert len(doc["checks"]) == 3


def test_a_loss_of_its_own_beats_the_default(data: Data) -> None:
    doc = report(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), "--max-increase", "100%",
                  "--max-increase", "mae=0.01"], 1)
    checks = by_loss(doc)
    assert checks["mae"]["limit"] == 0.01 and not checks["mae"]["passed"]
    assert checks["mse"]["limit"] == 1.0 and checks["mse"]["passed"]


@pytest.mark.parametrize("suffix,text", [
    ("toml", 'baseline = "base.json"\n[max_increase]\n"*" = "100%"\nmae = 0.01\n'),
    ("json", '{"baseline": "base.json", "max_increase": {"*": "100%", "mae": 0.01}}'),
])
def test_a_default_in_a_checks_file(data: Data, tmp_path: Path, suffix: str, text: str) -> None:
    shutil.copy(base(data), tmp_path / "base.json")
    f = tmp_path / f"checks.{suffix}"
    f.write_text(text)
    doc = report(["eval", data.csv, *EVAL_WORSE, "--checks", f], 1)
    checks = by_loss(doc)
    assert (checks["mse"]["limit"], checks["rmse"]["limit"], checks["mae"]["limit"]) == (1, 1, 0.01)
    assert checks["mse"]["tolerance"]["origin"] == f'{f}: max_increase * = "100%"'


def test_the_command_line_replaces_a_checks_file_tolerance(data: Data, tmp_path: Path) -> None:
    shutil.copy(base(data), tmp_path / "base.json")
    f = tmp_path / "checks.toml"
    f.write_text('baseline = "base.json"\n[max_increase]\n"*" = "100%"\n')
    doc = report(["eval", data.csv, *EVAL_WORSE, "--checks", f, "--max-increase", "0%"], 1)
    assert all(c["limit"] == 0 and c["tolerance"]["origin"] == "--max-increase 0%"
               for c in doc["checks"])


@pytest.mark.parametrize("tol", ["2", "2%", "0.5", "*=3%"])
def test_tolerance_forms_without_a_loss(data: Data, tol: str) -> None:
    doc = report(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), "--max-increase", tol], 1)
    assert len(doc["checks"]) == 3
    assert {c["tolerance"]["text"] for c in doc["checks"]} == {tol.removeprefix("*=")}


@pytest.mark.parametrize("tol", ["mse", "abc", "2%%", "-1%", "=2%", "*="])
def test_bad_tolerances_without_a_loss_are_usage_errors(data: Data, tol: str) -> None:
    error(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), "--max-increase", tol])


def test_no_combination_passes_a_loss_worse_beyond_its_tolerance(data: Data) -> None:
    """Every loss, every way a tolerance can be given: a regression past it always fails."""
    old = {k: v["value"] for k, v in json.loads(base(data).read_text())["losses"].items()}
    new = report(["eval", data.csv, *EVAL_WORSE])["losses"]
    for loss in ("mse", "rmse", "mae"):
        change = new[loss]["value"] / old[loss] - 1
        assert change > 0
        for tol in (f"{loss}={change * 50}%", f"{change * 50}%", f"*={change * 50}%",
                    f"{loss}={(new[loss]['value'] - old[loss]) / 2!r}"):
            others = [t for other in ("mse", "rmse", "mae") if other != loss
                      for t in ("--max-increase", f"{other}=1000%")]
            doc = report(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), *others,
                          "--max-increase", tol], 1)
            assert by_loss(doc)[loss]["passed"] is False, tol


# --------------------------------------------------------------------------
# The baseline describes the same evaluation
# --------------------------------------------------------------------------


def test_a_baseline_of_other_labels_is_refused(data: Data, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report(["eval", data.csv, "-l", "better", "-p", "old",
                                        "-m", "mse,rmse,mae"])))
    err = error(["eval", data.csv, *EVAL_WORSE, "--baseline", other])
    assert "label" in err and "better" in err and "y" in err and str(other) in err


@pytest.mark.parametrize("then,now", [([], ["-w", "w"]), (["-w", "w"], []), (["-w", "w"], ["-w", "old"])])
def test_a_baseline_of_other_weights_is_refused(data: Data, tmp_path: Path, then: list[str],
                                                now: list[str]) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(report(["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", *then])))
    err = error(["eval", data.csv, "-l", "y", "-p", "worse", "-m", "mse", *now, "--baseline", f])
    assert "weighted" in err or "unweighted" in err


def test_a_baseline_with_other_parameters_is_refused(data: Data, tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(report(["eval", data.csv, "-l", "y", "-p", "old", "-m", "huber:delta=2"])))
    err = error(["eval", data.csv, "-l", "y", "-p", "worse", "-m", "huber", "--baseline", f])
    assert "huber" in err and "delta=2" in err


def test_a_loss_missing_from_the_baseline_is_refused(data: Data) -> None:
    err = error(["eval", data.csv, "-l", "y", "-p", "worse", "-m", "mse,huber", "--baseline", base(data)])
    assert "huber" in err and "every loss computed is checked" in err


def test_other_rows_are_allowed_named_and_warned_about(data: Data, tmp_path: Path) -> None:
    part = tmp_path / "part.csv"
    data.df.iloc[:2000].to_csv(part, index=False)
    r = run("runner", ["eval", part, *EVAL_WORSE, "--baseline", base(data), "--max-increase", "100%",
                       "-f", "json"])
    assert r.code == 0
    assert r.err.startswith("lossctl: warning: the baseline") and "3,000 rows" in r.err \
        and "2,000" in r.err and "-33%" in r.err
    detail = json.loads(r.out)["checks"][0]["detail"]
    assert f"on 3,000 rows of {data.csv}" in detail and f"on 2,000 rows of {part}" in detail
    doc = json.loads(r.out)
    assert doc["baseline"] == {"path": str(base(data)), "kind": "report", "inputs": [str(data.csv)],
                               "rows": 3000}
    # within 10%: no warning, and the same data is said so
    near = tmp_path / "near.csv"
    data.df.iloc[:2800].to_csv(near, index=False)
    r = run("runner", ["eval", near, *EVAL_WORSE, "--baseline", base(data), "--max-increase", "100%",
                       "-f", "json"])
    assert r.code == 0 and r.err == ""
    same = report(["eval", data.csv, *EVAL_WORSE, "--baseline", base(data), "--max-increase", "100%"])
    assert f"(both on 3,000 rows of {data.csv})" in same["checks"][0]["detail"]


def test_a_saved_state_is_a_baseline(data: Data, tmp_path: Path) -> None:
    state = tmp_path / "old.state.json"
    report(["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse,rmse,mae", "--emit-state", state])
    args = ["eval", data.csv, *EVAL_WORSE, "--max-increase", "30%"]
    from_state = report([*args, "--baseline", state], 1)
    from_report = report([*args, "--baseline", base(data)], 1)
    strip = ("detail", "tolerance")
    assert [{k: v for k, v in c.items() if k not in strip} for c in from_state["checks"]] == \
        [{k: v for k, v in c.items() if k not in strip} for c in from_report["checks"]]
    assert from_state["baseline"]["kind"] == "state" and from_state["baseline"]["rows"] == 3000
    # a state of other labels is refused as a report would be
    other = tmp_path / "other.state.json"
    report(["eval", data.csv, "-l", "better", "-p", "old", "-m", "mse", "--emit-state", other])
    error(["eval", data.csv, "-l", "y", "-p", "worse", "-m", "mse", "--baseline", other])


def test_baseline_options_on_compare_are_usage_errors(data: Data, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('baseline = "x.json"\n')
    err = error(["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse",
                 "--checks", f])
    assert "--max-regression" in err


# --------------------------------------------------------------------------
# Direction from the definition: higher-is-better metrics
# --------------------------------------------------------------------------


def _neg_squared(d: np.ndarray) -> np.ndarray:
    return -(d * d)


NEG_MSE = LossDef("neg_mse", "regression", _neg_squared, "-(y - p)^2", "value", "value",
                  on_diff=True, higher_is_better=True, doc="a score: higher is better (tests only)")


@pytest.fixture
def neg_mse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake higher-is-better mean (its slices, top rows and per-row values work like mse's)."""
    monkeypatch.setitem(catalogue._BY_NAME, "neg_mse", [NEG_MSE])


@pytest.mark.parametrize("metric", ["neg_mse", "r2"])
def test_a_score_that_went_down_fails_its_baseline(data: Data, tmp_path: Path, neg_mse: None,
                                                   metric: str) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(report(["eval", data.csv, "-l", "y", "-p", "old", "-m", metric])))
    down = report(["eval", data.csv, "-l", "y", "-p", "worse", "-m", metric, "--baseline", f], 1)
    [check] = down["checks"]
    assert check["name"] == f"{metric} decrease <= 0 vs baseline"
    assert check["value"] > 0 and " worse" in check["detail"]
    up = report(["eval", data.csv, "-l", "y", "-p", "better", "-m", metric, "--baseline", f])
    [check] = up["checks"]
    assert check["passed"] and check["value"] < 0 and " better" in check["detail"]
    if metric == "r2":
        y = data.col("y")
        assert check["value"] == pytest.approx(r2_score(y, data.col("old"))
                                               - r2_score(y, data.col("better")), rel=1e-9)


def test_a_score_in_compare_and_slices(data: Data, neg_mse: None) -> None:
    args = ["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-m", "neg_mse,r2", "--by", "seg"]
    worse = report([*args, "-p", "worse", "--max-regression", "1%", "--slice-max-regression", "1%"], 1)
    assert worse["losses"]["neg_mse"]["verdict"] == "worse" and worse["losses"]["r2"]["verdict"] == "worse"
    assert all(not c["passed"] for c in worse["checks"])
    better = report([*args, "-p", "better", "--max-regression", "0%", "--slice-max-regression", "0%"])
    assert better["losses"]["neg_mse"]["verdict"] == "better"
    assert all(c["passed"] for c in better["checks"])
    # the worst slice of a score is its lowest
    doc = report(["eval", data.csv, "-l", "y", "-p", "seg7", "-m", "neg_mse", "--by", "seg",
                  "--sort", "neg_mse", "--slice-fail-if", f"neg_mse < {-mse(data, 'old') * 2}"], 1)
    assert doc["slices"][0]["key"] == {"seg": 7}
    [check] = doc["checks"]
    assert [s["key"] for s in check["failing_slices"]] == [{"seg": 7}]
    assert check["value"] == doc["slices"][0]["losses"]["neg_mse"]


# --------------------------------------------------------------------------
# --slice-fail-if
# --------------------------------------------------------------------------


def test_slice_fail_if_names_every_failing_slice(data: Data) -> None:
    seg = data.df["seg"].to_numpy()
    per = {s: mse(data, "seg7", seg == s) for s in range(1, 13)}
    limit = (per[7] + max(v for s, v in per.items() if s != 7)) / 2
    r = run("runner", ["eval", data.csv, "-l", "y", "-p", "seg7", "-m", "mse,mae", "--by", "seg",
                       "--slice-fail-if", f"mse > {limit}", "--slice-fail-if", "mae > 1e9",
                       "-f", "json"])
    assert r.code == 1
    doc = json.loads(r.out)
    fail, ok = doc["checks"]
    assert (fail["kind"], fail["passed"], ok["passed"]) == ("slice_threshold", False, True)
    assert fail["slices_checked"] == 12
    [bad] = fail["failing_slices"]
    assert bad["key"] == {"seg": 7} and bad["value"] == pytest.approx(per[7], rel=REL)
    assert fail["value"] == bad["value"]
    assert "seg=7" in fail["detail"] and "seg=7" in r.err
    assert ok["failing_slices"] == [] and "all 12 slices pass" in ok["detail"]


def test_slice_fail_if_skips_slices_hidden_by_min_slice_rows(data: Data, tmp_path: Path) -> None:
    df = data.df.copy()
    df.loc[:4, "seg"] = 99  # a slice of 5 rows
    df.loc[:4, "seg7"] = df.loc[:4, "y"] + 100.0  # hopeless
    f = tmp_path / "small.csv"
    df.to_csv(f, index=False)
    args = ["eval", f, "-l", "y", "-p", "seg7", "-m", "mse", "--by", "seg", "--slice-fail-if", "mse > 100"]
    doc = report(args, 1)
    assert doc["checks"][0]["failing_slices"][0]["key"] == {"seg": 99}
    doc = report([*args, "--min-slice-rows", 6])
    assert doc["checks"][0]["slices_checked"] == 12 and doc["slices_hidden"] == 1


def test_slice_fail_if_needs_by_and_a_computed_loss(data: Data) -> None:
    assert "--by" in error(["eval", data.csv, "-l", "y", "-p", "old", "--slice-fail-if", "mse > 1"])
    assert "mae" in error(["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--by", "seg",
                           "--slice-fail-if", "mae > 1"])


def test_slice_fail_if_from_a_checks_file_and_on_merge(data: Data, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('slice_fail_if = ["mse > 1e9"]\n')
    doc = report(["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--by", "seg", "--checks", f])
    assert doc["checks"][0]["kind"] == "slice_threshold" and doc["passed"]
    state = tmp_path / "s.json"
    report(["eval", data.csv, "-l", "y", "-p", "seg7", "-m", "mse", "--by", "seg", "--emit-state", state])
    merged = report(["merge", state, "--slice-fail-if", f"mse > {mse(data, 'old') * 2}"], 1)
    assert [s["key"] for s in merged["checks"][0]["failing_slices"]] == [{"seg": 7}]


# --------------------------------------------------------------------------
# compare --by and --slice-max-regression
# --------------------------------------------------------------------------

COMPARE = ["-l", "y", "--baseline-pred", "old", "-m", "mse,mae", "--by", "seg"]


def test_compare_by_gives_every_slice_its_paired_difference(data: Data) -> None:
    doc = report(["compare", data.csv, *COMPARE, "-p", "seg7"])
    seg = data.df["seg"].to_numpy()
    assert [s["key"]["seg"] for s in doc["slices"]] == list(range(1, 13))  # natural order
    for s in doc["slices"]:
        rows = seg == s["key"]["seg"]
        assert s["rows"] == int(rows.sum())
        e = s["losses"]["mse"]
        assert e["baseline"] == pytest.approx(mse(data, "old", rows), rel=REL)
        assert e["candidate"] == pytest.approx(mse(data, "seg7", rows), rel=REL)
        assert e["difference"] == e["candidate"] - e["baseline"]
        assert e["relative"] == e["difference"] / abs(e["baseline"])
        assert set(e) == {"baseline", "candidate", "difference", "relative", "ci", "relative_ci",
                          "worse_by", "relative_worse", "worse_ci", "verdict"}
        assert e["worse_by"] == e["difference"]  # mse: lower is better
        if s["key"]["seg"] == 7:
            assert e["verdict"] == "worse" and e["ci"][0] > 0
        else:
            assert e["difference"] == 0 and e["verdict"] == "no significant change"
    # sorted by the loss: the most regressed slice first
    assert report(["compare", data.csv, *COMPARE, "-p", "seg7", "--sort", "mse"])["slices"][0]["key"] == \
        {"seg": 7}


@pytest.mark.parametrize("fmt", ["csv", "table", "markdown"])
def test_compare_by_in_text_formats(data: Data, fmt: str) -> None:
    r = run("runner", ["compare", data.csv, *COMPARE, "-p", "seg7", "-f", fmt])
    assert r.code == 0, r.err
    assert "worse" in r.out and "no significant change" in r.out
    if fmt == "csv":
        lines = r.out.splitlines()
        assert lines[0].startswith("seg,loss,rows,weight_sum,baseline,candidate,difference,relative")
        assert len(lines) == 1 + 2 * 13  # the overall rows and every slice, per loss


def test_slice_max_regression_gates_each_slice_on_its_interval(data: Data) -> None:
    args = ["compare", data.csv, *COMPARE, "-p", "seg7"]
    one = ["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "seg7", "--by", "seg"]
    overall = report([*one, "-m", "mse", "--max-regression", "mse=200%"])  # overall: within it
    assert overall["passed"]
    r = run("runner", [*args, "--slice-max-regression", "mse=50%", "-f", "json"])
    assert r.code == 1
    doc = json.loads(r.out)
    mse_check, mae_check = doc["checks"]  # every loss, the others with no regression allowed
    assert mse_check["kind"] == "slice_regression" and mse_check["loss"] == "mse"
    assert [s["key"] for s in mse_check["failing_slices"]] == [{"seg": 7}]
    s7 = next(s for s in doc["slices"] if s["key"] == {"seg": 7})
    assert mse_check["failing_slices"][0]["value"] == s7["losses"]["mse"]["relative_ci"][0]
    assert "seg=7" in r.err
    assert mae_check["tolerance"]["origin"] == "default: no loss may get worse"
    # a tolerance past the whole interval passes; --strict judges the point value
    lo, hi = s7["losses"]["mse"]["relative_ci"]
    point = s7["losses"]["mse"]["relative"]
    only = [*one, "-m", "mse", "--slice-max-regression"]
    assert lo < point < hi
    report([*only, f"{lo * 100 * 0.99}%"], 1)
    between = (lo + point) / 2
    report([*only, f"{between * 100}%"], 0)
    report([*only, f"{between * 100}%", "--strict"], 1)
    report([*only, f"{point * 100 * 1.01}%", "--strict"], 0)


def test_slice_max_regression_usage_errors(data: Data) -> None:
    error(["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse",
           "--slice-max-regression", "mse=1%"])
    err = error(["eval", data.csv, "-l", "y", "-p", "worse", "--by", "seg", "--slice-max-regression",
                 "mse=1%"])
    assert "lossctl compare" in err


# --------------------------------------------------------------------------
# No row counted twice
# --------------------------------------------------------------------------


def test_the_same_file_twice_is_refused(data: Data, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    data.df.iloc[:1500].to_csv(shards / "a.csv", index=False)
    data.df.iloc[1500:].to_csv(shards / "b.csv", index=False)
    os.symlink(shards / "a.csv", tmp_path / "link.csv")
    args = ["-l", "y", "-p", "old", "-m", "mse"]
    assert f"{shards / 'a.csv'} is given twice" in error(["eval", shards / "a.csv", shards / "a.csv", *args])
    err = error(["eval", shards, str(shards / "*.csv"), *args])
    assert f"(from {shards})" in err and f"(from {shards / '*.csv'})" in err
    err = error(["eval", shards, tmp_path / "link.csv", *args])
    assert "link.csv" in err and "a link to" in err and "a.csv" in err
    err = error(["rows", shards / "a.csv", tmp_path / "link.csv", *args, "-o", tmp_path / "out.csv"],
                mode="script", fmt=False)
    assert "same file" in err
    assert not (tmp_path / "out.csv").exists()
    assert report(["eval", shards, *args])["rows"] == 3000


def test_states_carry_fingerprints_and_merge_refuses_overlaps(data: Data, tmp_path: Path) -> None:
    parts = [tmp_path / f"part-{i}.parquet" for i in range(2)]
    data.df.iloc[:1000].to_parquet(parts[0])
    data.df.iloc[1000:].to_parquet(parts[1])
    args = ["-l", "y", "-p", "old", "-m", "mse"]
    s0, s1, s01 = (tmp_path / n for n in ("s0.json", "s1.json", "s01.json"))
    one = report(["eval", parts[0], *args, "--emit-state", s0])
    report(["eval", parts[1], *args, "--emit-state", s1])
    report(["eval", *parts, *args, "--emit-state", s01])
    [fp] = one["input_files"]
    assert one["inputs"] == [str(parts[0])]  # still a list of names
    assert fp["name"] == str(parts[0]) and fp["path"] == os.path.realpath(parts[0])
    assert (fp["size"], fp["rows"], fp["role"]) == (parts[0].stat().st_size, 1000, "main")
    assert fp["digest"].startswith("sha256:") and len(fp["digest"]) == 7 + 64
    assert json.loads(s0.read_text())["input_files"] == one["input_files"]
    merged = report(["merge", s0, s1])
    assert merged["rows"] == 3000 and [f["rows"] for f in merged["input_files"]] == [1000, 2000]
    assert f"{s0} and {s0} are the same state" in error(["merge", s0, s0])
    err = error(["merge", s01, s1])
    assert err.startswith(f"lossctl: error: {s1}: its input {parts[1]} (2,000 rows) is already in {s01}")
    copy = tmp_path / "copy.json"
    shutil.copy(s0, copy)
    assert str(copy) in error(["merge", s0, copy])  # the same content under another name
    renamed = tmp_path / "renamed.parquet"
    shutil.copy(parts[0], renamed)
    s_renamed = tmp_path / "sr.json"
    report(["eval", renamed, *args, "--emit-state", s_renamed])
    assert "already in" in error(["merge", s0, s_renamed])


def test_a_state_without_fingerprints_still_merges(data: Data, tmp_path: Path) -> None:
    """States written before fingerprints existed: merged, with nothing to compare."""
    data.df.iloc[:1000].to_csv(tmp_path / "a.csv", index=False)
    data.df.iloc[1000:].to_csv(tmp_path / "b.csv", index=False)
    states = []
    for name in ("a", "b"):
        states.append(tmp_path / f"{name}.json")
        report(["eval", tmp_path / f"{name}.csv", "-l", "y", "-p", "old", "-m", "mse",
                "--emit-state", states[-1]])
        doc = json.loads(states[-1].read_text())
        del doc["input_files"]
        states[-1].write_text(json.dumps(doc))
    assert report(["merge", *states])["rows"] == 3000


def test_a_shared_labels_file_is_not_an_overlap(data: Data, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    data.df[["id", "y"]].to_csv(labels, index=False)
    states = []
    for i, rows in enumerate((slice(0, 1000), slice(1000, None))):
        shard = tmp_path / f"p{i}.csv"
        data.df[["id", "old"]].iloc[rows].to_csv(shard, index=False)
        states.append(tmp_path / f"s{i}.json")
        report(["eval", shard, "--labels", labels, "--key", "id", "-l", "y", "-p", "old", "-m", "mse",
                "--emit-state", states[-1]])
    merged = report(["merge", *states])
    assert merged["rows"] == 3000
    assert [f["role"] for f in merged["input_files"]] == ["main", "label", "main", "label"]


def test_a_metric_without_interval_is_gated_on_its_point_value(tmp_path: Path) -> None:
    """roc_auc keeps no buckets: its regression check judges the point value, and says so."""
    rng = np.random.default_rng(8)
    n = 2000
    z = (rng.uniform(size=n) < 0.4).astype(float)
    good = np.clip(0.5 * z + rng.uniform(0, 0.5, n), 0, 1)
    bad = np.clip(0.2 * z + rng.uniform(0, 0.8, n), 0, 1)
    f = tmp_path / "scores.csv"
    pd.DataFrame({"z": z, "good": good, "bad": bad}).to_csv(f, index=False)
    args = ["compare", f, "-l", "z", "--baseline-pred", "good", "-p", "bad", "-m", "bce,roc_auc",
            "--max-regression", "1%"]
    doc = report(args, 1)
    auc = next(c for c in doc["checks"] if c["loss"] == "roc_auc")
    assert auc["passed"] is False and "no interval" in auc["detail"] and "point value" in auc["detail"]
    assert auc["value"] == pytest.approx(-doc["losses"]["roc_auc"]["relative"], rel=1e-12)
    assert doc["losses"]["roc_auc"]["verdict"] is None and "ci_unsupported" in doc["losses"]["roc_auc"]
    report([*args[:-1], "90%"])  # within a wide tolerance: passes


# --------------------------------------------------------------------------
# mean_bias: best at zero, whatever the sign
# --------------------------------------------------------------------------


def test_mean_bias_gates_on_its_size_not_its_sign(tmp_path: Path) -> None:
    """A bias that moves from +0.1 to -0.3 got worse; from -0.3 to +0.1 better."""
    y = np.linspace(0.0, 10.0, 400)
    paths = {}
    for name, shift in (("small", 0.1), ("large", -0.3)):
        paths[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"y": y, "p": y + shift}).to_csv(paths[name], index=False)
    args = ["-l", "y", "-p", "p", "-m", "mean_bias", "-f", "json"]
    base = tmp_path / "base.json"
    base.write_text(run("runner", ["eval", paths["small"], *args]).out)
    worse = run("runner", ["eval", paths["large"], *args, "--baseline", base])
    assert worse.code == 1, worse.err
    check = json.loads(worse.out)["checks"][0]
    assert check["value"] == pytest.approx(0.2) and "away from 0" in check["name"]
    back = tmp_path / "back.json"
    back.write_text(run("runner", ["eval", paths["large"], *args]).out)
    assert run("runner", ["eval", paths["small"], *args, "--baseline", back]).code == 0
    # compare: the paired verdict reads |candidate| - |baseline|
    both = tmp_path / "both.csv"
    pd.DataFrame({"y": y, "old": y + 0.1, "new": y - 0.3}).to_csv(both, index=False)
    doc = json.loads(run("runner", ["compare", both, "-l", "y", "--baseline-pred", "old", "-p",
                                    "new", "-m", "mean_bias", "-f", "json"]).out)
    e = doc["losses"]["mean_bias"]
    assert e["difference"] == pytest.approx(-0.4) and e["worse_by"] == pytest.approx(0.2)
    assert e["verdict"] == "worse"
