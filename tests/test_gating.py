"""CI model-regression gating (issue #4), end to end: checks, baselines, intervals, compare, reports.

Every path runs through Click's CliRunner; the exit-status paths also run as a
real process (the installed console script).  Values are checked against
scikit-learn / NumPy on the very arrays written to the files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import Run, run
from sklearn.metrics import mean_absolute_error, mean_squared_error

REL = 1e-12
BOTH = ["runner", "script"]
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


# --------------------------------------------------------------------------
# Running the CLI (in-process and as a process)
# --------------------------------------------------------------------------


def clean(r: Run) -> None:
    assert "Traceback" not in r.err, r.err
    assert "Traceback" not in r.out


def expect(mode: str, args: list[Any], code: int, cwd: Path | None = None) -> dict:
    """Run with ``-f json``, require exit ``code`` (0 or 1) and return the report."""
    r = run(mode, [*args, "-f", "json"], cwd=cwd)
    clean(r)
    assert r.code == code, f"exit {r.code} (wanted {code}): {r.err}"
    if code == 0:
        assert r.err == ""
    return json.loads(r.out)


def usage_error(mode: str, args: list[Any], cwd: Path | None = None) -> str:
    """Run, require exit 2, nothing on stdout and no traceback; return stderr."""
    r = run(mode, [*args, "-f", "json"], cwd=cwd)
    clean(r)
    assert r.code == 2, f"exit {r.code} (wanted 2): out={r.out[:300]!r} err={r.err!r}"
    assert r.out == ""
    assert r.err.strip()
    return r.err


def checks_by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"]}


# --------------------------------------------------------------------------
# Data: one file holding the labels and several models' predictions
# --------------------------------------------------------------------------

N = 2000


@dataclass
class Gate:
    dir: Path
    df: pd.DataFrame
    csv: Path  # preds.csv: id, seg, y, old, worse, better, slight, w
    parquet: Path  # preds.parquet: the same rows
    parquet_same_name: Path  # pq/preds.csv: Parquet bytes under the CSV's base name
    baseline: Path  # `lossctl eval preds.csv -l y -p old -m mse,mae -f json`
    base_file: Path  # base.csv: id, y, yhat (= old), w
    cand_aligned: Path  # cand.csv: id, yhat (= worse), same row order
    cand_shuffled: Path  # cand_shuffled.csv: id, y (wrong labels), yhat (= worse), shuffled
    nan_file: Path  # three rows whose poisson:log_input=true loss is NaN

    def col(self, name: str) -> np.ndarray:
        return self.df[name].to_numpy(np.float64)


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.normal(100.0, 15.0, N)
    e_old = rng.normal(0.0, 4.0, N)
    raw = rng.normal(0.0, 4.0, N)  # another model of the same quality, independent errors
    scale = math.sqrt(1.01 * np.mean(e_old**2) / np.mean(raw**2))  # mse exactly ~1% higher
    return pd.DataFrame({
        "id": np.arange(1, N + 1),
        "seg": rng.choice(["a", "b"], N),
        "y": y,
        "old": y + e_old,
        "worse": y + e_old + rng.normal(0.0, 3.0, N),  # mse ~25 against ~16: clearly worse
        "better": y + 0.6 * e_old + rng.normal(0.0, 1.0, N),  # mse ~6.8: clearly better
        "slight": y + scale * raw,  # +1%, far inside the noise of 2000 rows
        "w": rng.uniform(0.5, 2.0, N),
    })


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n")
    back = pacsv.read_csv(path)
    for c in df.columns:
        if df[c].dtype == np.float64:
            assert np.array_equal(back.column(c).to_numpy(), df[c].to_numpy()), c


@pytest.fixture(scope="module")
def g(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    d = tmp_path_factory.mktemp("gate")
    df = _frame(4)
    _write_csv(df, d / "preds.csv")
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, d / "preds.parquet", row_group_size=333)
    (d / "pq").mkdir()
    pq.write_table(table, d / "pq" / "preds.csv", row_group_size=500)  # read by its magic bytes
    _write_csv(df[["id", "y", "old", "w"]].rename(columns={"old": "yhat"}), d / "base.csv")
    _write_csv(df[["id", "worse"]].rename(columns={"worse": "yhat"}), d / "cand.csv")
    shuffled = df.sample(frac=1.0, random_state=5)
    shuffled = pd.DataFrame({"id": shuffled["id"], "y": shuffled["y"] + 1000.0,
                             "yhat": shuffled["worse"]})
    _write_csv(shuffled, d / "cand_shuffled.csv")
    # exp(800) - 0 = +inf and exp(700) - 1e308 * 700 = -inf: the mean is NaN
    (d / "nan.csv").write_text("y,p\n0,800\n1e308,700\n1,1\n")
    gate = Gate(d, df, d / "preds.csv", d / "preds.parquet", d / "pq" / "preds.csv",
                d / "baseline.json", d / "base.csv", d / "cand.csv", d / "cand_shuffled.csv",
                d / "nan.csv")
    r = run("runner", ["eval", gate.csv, "-l", "y", "-p", "old", "-m", "mse,mae", "-f", "json"])
    assert r.code == 0, r.err
    gate.baseline.write_text(r.out)
    return gate


def mse(g: Gate, pred: str, weighted: bool = False) -> float:
    return float(mean_squared_error(g.col("y"), g.col(pred), sample_weight=g.col("w") if weighted else None))


def mae(g: Gate, pred: str) -> float:
    return float(mean_absolute_error(g.col("y"), g.col(pred)))


def test_the_data_sets_are_what_the_tests_assume(g: Gate) -> None:
    base = mse(g, "old")
    assert mse(g, "worse") / base - 1 > 0.3
    assert mse(g, "better") / base - 1 < -0.3
    assert 0.005 < mse(g, "slight") / base - 1 < 0.015


# --------------------------------------------------------------------------
# --fail-if thresholds
# --------------------------------------------------------------------------

EVAL_NEW = ["-l", "y", "-p", "worse", "-m", "mse,mae"]


@pytest.mark.parametrize("mode", BOTH)
def test_fail_if_passes_and_fails(g: Gate, mode: str) -> None:
    v = mse(g, "worse")
    doc = expect(mode, ["eval", g.csv, *EVAL_NEW, "--fail-if", f"mse > {2 * v}"], 0)
    assert doc["passed"] is True
    [check] = doc["checks"]
    assert check == {"name": check["name"], "kind": "threshold", "loss": "mse",
                     "value": pytest.approx(v, rel=REL), "limit": 2 * v, "passed": True,
                     "detail": check["detail"]}
    assert "mse" in check["name"] and "mse" in check["detail"]

    r = run(mode, ["eval", g.csv, *EVAL_NEW, "--fail-if", f"mse > {v / 2}", "-f", "json"])
    clean(r)
    assert r.code == 1
    doc = json.loads(r.out)  # the report is still printed
    assert doc["passed"] is False
    assert doc["losses"]["mse"]["value"] == pytest.approx(v, rel=REL)
    [check] = doc["checks"]
    assert check["passed"] is False and check["value"] == pytest.approx(v, rel=REL)
    assert r.err.startswith("lossctl: check failed: ")
    assert check["name"] in r.err


@pytest.mark.parametrize("op,fails_at_equality", [("<", False), ("<=", True), (">", False), (">=", True)])
def test_threshold_operators_at_and_around_the_value(g: Gate, op: str, fails_at_equality: bool) -> None:
    v = expect("runner", ["eval", g.csv, *EVAL_NEW], 0)["losses"]["mse"]["value"]
    assert v == pytest.approx(mse(g, "worse"), rel=REL)
    below, above = math.nextafter(v, -math.inf), math.nextafter(v, math.inf)
    cases = {repr(v): fails_at_equality, repr(below): op in (">", ">="), repr(above): op in ("<", "<=")}
    args = ["eval", g.csv, *EVAL_NEW]
    for limit in cases:
        args += ["--fail-if", f"mse {op} {limit}"]
    doc = expect("runner", args, 1)
    got = [not c["passed"] for c in doc["checks"]]
    assert got == list(cases.values())
    assert [c["limit"] for c in doc["checks"]] == [float(x) for x in cases]


def test_any_failed_check_fails_the_run(g: Gate) -> None:
    v, a = mse(g, "worse"), mae(g, "worse")
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, "--fail-if", f"mse > {2 * v}",
                            "--fail-if", f"mae >= {a / 2}", "--fail-if", f"mae < {a / 3}"], 1)
    assert [c["passed"] for c in doc["checks"]] == [True, False, True]
    assert [c["loss"] for c in doc["checks"]] == ["mse", "mae", "mae"]
    assert doc["passed"] is False


def test_checks_accept_the_loss_as_written_aliases_and_canonical_forms(g: Gate) -> None:
    forms = ["huber > 1e9", "huber:delta=1 > 1e9", "huber:delta=1.0 > 1e9", "mad > 1e9", "mae > 1e9",
             "l1 > 1e9", "quantile:q=0.9 > 1e9", "pinball:q=0.90 > 1e9", "mse>1e9", "  mse  <=  -1  "]
    args = ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "huber,mad,quantile:q=0.9,mse"]
    for f in forms:
        args += ["--fail-if", f]
    doc = expect("runner", args, 0)
    assert [c["loss"] for c in doc["checks"]] == ["huber"] * 3 + ["mad"] * 3 + ["quantile:q=0.9"] * 2 \
        + ["mse"] * 2
    assert all(c["passed"] for c in doc["checks"])


@pytest.mark.parametrize("mode", BOTH)
def test_check_naming_a_loss_not_computed_is_a_usage_error(g: Gate, mode: str) -> None:
    err = usage_error(mode, ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "mse", "--fail-if", "mae > 1"])
    assert err.startswith("lossctl: error: ")
    assert "'mae'" in err
    err = usage_error(mode, ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "huber",
                             "--fail-if", "huber:delta=2 > 1"])  # another parameter: another loss
    assert err.startswith("lossctl: error: ")


@pytest.mark.parametrize("expr", ["mse == 1", "mse > abc", "mse > inf", "mse > -inf", "mse > nan",
                                  "mse > 1e999", "mse", "> 1", "mse >", "mse > 1 2", "mse => 1",
                                  "mse ! 1", "mse > 0x10", ""])
def test_bad_check_expressions_are_usage_errors(g: Gate, expr: str) -> None:
    err = usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--fail-if", expr])
    assert err.startswith("lossctl: error: ")


def test_bad_check_expression_in_a_process(g: Gate) -> None:
    err = usage_error("script", ["eval", g.csv, *EVAL_NEW, "--fail-if", "mse == 1"])
    assert err.startswith("lossctl: error: ")
    assert "mse == 1" in err


def test_nan_value_never_passes(g: Gate) -> None:
    loss = "poisson:log_input=true"
    doc = expect("runner", ["eval", g.nan_file, "-l", "y", "-p", "p", "-m", loss,
                            "--fail-if", f"{loss} > 1e300", "--fail-if", f"{loss} < -1e300",
                            "--fail-if", f"{loss} >= -1e300", "--fail-if", f"{loss} <= 1e300"], 1)
    assert doc["losses"][loss]["value"] is None
    assert [c["passed"] for c in doc["checks"]] == [False] * 4
    assert all(c["value"] is None for c in doc["checks"])


def test_check_names_show_the_limit_as_given(g: Gate) -> None:
    """Two different limits must not be shown as the same check (JUnit test case names, logs)."""
    v = mse(g, "worse")
    lo, hi = f"{v * (1 - 1e-9):.12g}", f"{v * (1 + 1e-9):.12g}"
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, "--fail-if", f"mse > {lo}",
                            "--fail-if", f"mse > {hi}"], 1)
    failed, passed = doc["checks"]
    assert (failed["passed"], passed["passed"]) == (False, True)
    assert failed["name"] != passed["name"]
    assert lo in failed["name"] and hi in passed["name"]


# --------------------------------------------------------------------------
# --checks FILE
# --------------------------------------------------------------------------

TOML = """\
fail_if = ["mse > {big}", "mae > {small}"]
baseline = "../baseline.json"

[max_increase]
mse = "100%"
mae = 0.01
"""


def _checks_files(g: Gate, tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "ci"
    cfg.mkdir()
    (tmp_path / "baseline.json").write_bytes(g.baseline.read_bytes())
    big, small = 2 * mse(g, "worse"), mae(g, "worse") / 2
    toml = cfg / "checks.toml"
    toml.write_text(TOML.format(big=big, small=small))
    js = cfg / "checks.json"
    js.write_text(json.dumps({"fail_if": [f"mse > {big}", f"mae > {small}"], "baseline": "../baseline.json",
                              "max_increase": {"mse": "100%", "mae": 0.01}}))
    return toml, js


@pytest.mark.parametrize("mode", BOTH)
def test_checks_file_toml_and_json(g: Gate, tmp_path: Path, mode: str) -> None:
    toml, js = _checks_files(g, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # the baseline path is relative to the checks file, not to the working directory
    docs = [expect(mode, ["eval", g.csv, *EVAL_NEW, "--checks", f], 1, cwd=elsewhere) for f in (toml, js)]

    def same(c: dict) -> dict:  # the tolerances' origins name their files
        return {k: v for k, v in c.items() if k not in ("detail", "tolerance")}

    assert [same(c) for c in docs[0]["checks"]] == [same(c) for c in docs[1]["checks"]]
    assert [c["tolerance"]["origin"] for c in docs[0]["checks"][2:]] == [
        f"{toml}: max_increase mse = \"100%\"", f"{toml}: max_increase mae = 0.01"]
    checks = docs[0]["checks"]
    assert [(c["kind"], c["loss"], c["passed"]) for c in checks] == [
        ("threshold", "mse", True), ("threshold", "mae", False),
        ("baseline", "mse", True), ("baseline", "mae", False)]
    rel = (mse(g, "worse") - mse(g, "old")) / mse(g, "old")
    assert checks[2]["value"] == pytest.approx(rel, rel=1e-9)
    assert checks[2]["limit"] == 1.0
    assert checks[3]["value"] == pytest.approx(mae(g, "worse") - mae(g, "old"), rel=1e-9)
    assert checks[3]["limit"] == 0.01


def test_checks_file_and_options_combine(g: Gate, tmp_path: Path) -> None:
    toml, _ = _checks_files(g, tmp_path)
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, "--checks", toml, "--fail-if", "mse < 0",
                            "--max-increase", "mae=1000%"], 1)
    kinds = sorted((c["kind"], c["loss"], c["limit"]) for c in doc["checks"])
    # one tolerance per loss: the command line's replaces the checks file's
    assert kinds == sorted([("threshold", "mse", 2 * mse(g, "worse")),
                            ("threshold", "mae", mae(g, "worse") / 2), ("threshold", "mse", 0.0),
                            ("baseline", "mse", 1.0), ("baseline", "mae", 10.0)])
    mae_check = next(c for c in doc["checks"] if c["kind"] == "baseline" and c["loss"] == "mae")
    assert mae_check["tolerance"]["origin"] == "--max-increase mae=1000%"


def test_checks_file_fail_if_may_be_one_string(g: Gate, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('fail_if = "mse > 1e9"\n')
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, "--checks", f], 0)
    assert [(c["kind"], c["loss"], c["limit"]) for c in doc["checks"]] == [("threshold", "mse", 1e9)]
    assert doc["passed"] is True


def test_sample_checks_file() -> None:
    doc = expect("runner", ["eval", SAMPLE_DIR / "house_prices.csv", "-l", "price", "-p", "predicted_price",
                            "-w", "weight", "-m", "rmse,mae", "--checks", SAMPLE_DIR / "checks.toml"], 0)
    assert [(c["kind"], c["loss"]) for c in doc["checks"]] == [
        ("threshold", "rmse"), ("threshold", "mae"), ("baseline", "rmse"), ("baseline", "mae")]
    assert all(c["passed"] for c in doc["checks"])


BAD_CHECK_FILES = {
    "unknown_key": ("c.toml", 'fail_if = ["mse > 1"]\nfail_iff = ["mse > 2"]\n', "fail_iff"),
    "unknown_key_json": ("c.json", '{"max_increse": {"mse": "1%"}}', "max_increse"),
    "fail_if_not_strings": ("c.toml", "fail_if = [1, 2]\n", "fail_if"),
    "bad_expression": ("c.toml", 'fail_if = ["mse = 1"]\n', "mse = 1"),
    "max_increase_not_a_table": ("c.toml", "max_increase = 3\n", "max_increase"),
    "bad_tolerance": ("c.toml", '[max_increase]\nmse = "two percent"\n', "max_increase"),
    "negative_tolerance": ("c.toml", "[max_increase]\nmse = -1\n", "max_increase"),
    "baseline_not_a_string": ("c.toml", "baseline = 3\n", "baseline"),
    "not_toml": ("c.toml", "fail_if = [\n", "TOML"),
    "not_json": ("c.json", '{"fail_if": [', "JSON"),
    "json_not_an_object": ("c.json", '["mse > 1"]', "c.json"),
}


@pytest.mark.parametrize("case", BAD_CHECK_FILES)
def test_bad_checks_files_are_usage_errors(g: Gate, tmp_path: Path, case: str) -> None:
    name, text, fragment = BAD_CHECK_FILES[case]
    f = tmp_path / name
    f.write_text(text)
    err = usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--checks", f, "--baseline", g.baseline])
    assert err.startswith("lossctl: error: ")
    assert fragment in err


def test_missing_checks_file_is_a_usage_error(g: Gate, tmp_path: Path) -> None:
    err = usage_error("script", ["eval", g.csv, *EVAL_NEW, "--checks", tmp_path / "nope.toml"])
    assert err.startswith("lossctl: error: ") and "nope.toml" in err


def test_max_regression_from_a_checks_file(g: Gate, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[max_regression]\nmse = "1%"\n')
    doc = expect("runner", ["compare", g.csv, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse",
                            "--checks", f], 1)
    [check] = doc["checks"]
    assert (check["kind"], check["loss"], check["limit"]) == ("regression", "mse", 0.01)
    assert check["passed"] is False
    # eval has no candidate to compare: a usage error, not a silent pass
    usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--checks", f])


# --------------------------------------------------------------------------
# --baseline and --max-increase
# --------------------------------------------------------------------------

EVAL_OLD = ["-l", "y", "-p", "old", "-m", "mse,mae"]


@pytest.mark.parametrize("mode", BOTH)
def test_identical_data_passes_its_own_baseline(g: Gate, mode: str) -> None:
    doc = expect(mode, ["eval", g.csv, *EVAL_OLD, "--baseline", g.baseline], 0)
    assert [(c["kind"], c["loss"], c["value"], c["passed"]) for c in doc["checks"]] == [
        ("baseline", "mse", 0.0, True), ("baseline", "mae", 0.0, True)]
    assert doc["passed"] is True


@pytest.mark.parametrize("extra", [["--chunk-size", "7"], ["--chunk-size", "1"], ["--ci"]])
def test_own_baseline_whatever_the_chunk_size_and_format(g: Gate, extra: list[str]) -> None:
    for path in (g.csv, g.parquet, g.parquet_same_name):
        doc = expect("runner", ["eval", path, *EVAL_OLD, "--baseline", g.baseline, *extra], 0)
        assert all(c["value"] == 0.0 for c in doc["checks"])


@pytest.mark.parametrize("mode", BOTH)
def test_a_worse_model_fails_a_plain_baseline(g: Gate, mode: str) -> None:
    doc = expect(mode, ["eval", g.csv, *EVAL_NEW, "--baseline", g.baseline], 1)
    checks = doc["checks"]
    assert [(c["kind"], c["loss"], c["limit"], c["passed"]) for c in checks] == [
        ("baseline", "mse", 0.0, False), ("baseline", "mae", 0.0, False)]
    assert checks[0]["value"] == pytest.approx(mse(g, "worse") - mse(g, "old"), rel=1e-9)
    assert checks[1]["value"] == pytest.approx(mae(g, "worse") - mae(g, "old"), rel=1e-9)


def test_a_better_model_passes_a_plain_baseline(g: Gate) -> None:
    doc = expect("runner", ["eval", g.csv, "-l", "y", "-p", "better", "-m", "mse,mae",
                            "--baseline", g.baseline], 0)
    assert all(c["passed"] and c["value"] < 0 for c in doc["checks"])


@pytest.mark.parametrize("relative", [True, False])
def test_max_increase_tolerance(g: Gate, relative: bool) -> None:
    old, new = mse(g, "old"), mse(g, "worse")
    change = (new - old) / abs(old) if relative else new - old

    def tol(x: float) -> str:
        return f"mse={x * 100!r}%" if relative else f"mse={x!r}"

    only_mse = ["-l", "y", "-p", "worse", "-m", "mse"]  # (the baseline's mae is not computed)
    above = expect("runner", ["eval", g.csv, *only_mse, "--baseline", g.baseline,
                              "--max-increase", tol(change * 1.001)], 0)
    below = expect("runner", ["eval", g.csv, *only_mse, "--baseline", g.baseline,
                              "--max-increase", tol(change * 0.999)], 1)
    for doc in (above, below):
        [check] = doc["checks"]
        assert (check["kind"], check["loss"]) == ("baseline", "mse")
        assert check["value"] == pytest.approx(change, rel=1e-9)
    assert above["checks"][0]["limit"] == pytest.approx(change * 1.001, rel=1e-12)


def test_baseline_matches_aliases_and_canonical_forms(g: Gate, tmp_path: Path) -> None:
    r = run("runner", ["eval", g.csv, "-l", "y", "-p", "old", "-m", "mad,huber", "-f", "json"])
    assert r.code == 0
    base = tmp_path / "aliases.json"
    base.write_text(r.out)
    doc = expect("runner", ["eval", g.csv, "-l", "y", "-p", "old", "-m", "mae,huber:delta=1.0",
                            "--baseline", base], 0)
    assert [(c["loss"], c["value"]) for c in doc["checks"]] == [("mae", 0.0), ("huber:delta=1.0", 0.0)]
    usage_error("runner", ["eval", g.csv, "-l", "y", "-p", "old", "-m", "huber:delta=2", "--baseline", base])


@pytest.mark.parametrize("mode", BOTH)
def test_loss_missing_from_the_baseline_is_a_usage_error(g: Gate, mode: str) -> None:
    err = usage_error(mode, ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "mse,mae,rmse",
                             "--baseline", g.baseline])
    assert err.startswith("lossctl: error: ") and "rmse" in err
    err = usage_error(mode, ["eval", g.csv, *EVAL_NEW, "--baseline", g.baseline, "--max-increase", "rmse=1%"])
    assert err.startswith("lossctl: error: ") and "rmse" in err


def test_max_increase_needs_a_baseline(g: Gate) -> None:
    usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--max-increase", "mse=1%"])


@pytest.mark.parametrize("tol", ["mse", "mse=", "=1%", "mse=-1%", "mse=abc", "mse=inf%", "mse=nan",
                                 "mse=1%%"])
def test_bad_tolerances_are_usage_errors(g: Gate, tol: str) -> None:
    err = usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--baseline", g.baseline, "--max-increase", tol])
    assert err.startswith("lossctl: error: ")


NOT_REPORTS = {
    "json_list": "[1, 2, 3]",
    "not_json": "mse,1.0\n",
    "empty_file": "",
    "object_without_losses": '{"lossctl": "0.1.0", "rows": 3}',
    "not_made_by_lossctl": '{"losses": {"mse": {"name": "mse", "params": {}, "value": 1.0}}}',
    "loss_without_name": '{"lossctl": "0.1.0", "losses": {"mse": {"value": 1.0}}}',
    "loss_entry_not_an_object": '{"lossctl": "0.1.0", "losses": {"mse": 1.0}}',
}


@pytest.mark.parametrize("case", NOT_REPORTS)
def test_baseline_that_is_not_a_report_is_a_usage_error(g: Gate, tmp_path: Path, case: str) -> None:
    f = tmp_path / "old.json"
    f.write_text(NOT_REPORTS[case])
    err = usage_error("runner", ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "mse", "--baseline", f])
    assert err.startswith("lossctl: error: ") and "old.json" in err


@pytest.mark.parametrize("mode", BOTH)
def test_baseline_that_does_not_exist_is_a_usage_error(g: Gate, tmp_path: Path, mode: str) -> None:
    err = usage_error(mode, ["eval", g.csv, *EVAL_NEW, "--baseline", tmp_path / "nope.json"])
    assert err.startswith("lossctl: error: ") and "nope.json" in err


@pytest.mark.parametrize("value", ['"abc"', "[1.0]", '{"x": 1}'])
def test_baseline_with_a_value_that_is_not_a_number_is_a_usage_error(g: Gate, tmp_path: Path,
                                                                      value: str) -> None:
    f = tmp_path / "old.json"
    entry = f'{{"name": "mse", "params": {{}}, "value": {value}}}'
    f.write_text(f'{{"lossctl": "0.1.0", "losses": {{"mse": {entry}}}}}')
    err = usage_error("runner", ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "mse", "--baseline", f])
    assert err.startswith("lossctl: error: ")


def test_a_compare_report_is_not_an_eval_baseline(g: Gate, tmp_path: Path) -> None:
    """A compare report has no loss values: it must be refused, not read as NaN (a failed check)."""
    r = run("runner", ["compare", g.csv, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse,mae",
                       "-f", "json"])
    assert r.code == 0
    f = tmp_path / "compare.json"
    f.write_text(r.out)
    usage_error("runner", ["eval", g.csv, *EVAL_NEW, "--baseline", f])


def test_nan_value_never_passes_a_baseline(g: Gate, tmp_path: Path) -> None:
    loss = "poisson:log_input=true"
    r = run("runner", ["eval", g.nan_file, "-l", "y", "-p", "y", "-m", loss, "-f", "json"])
    assert r.code == 0, r.err
    f = tmp_path / "old.json"
    f.write_text(r.out)
    doc = expect("runner", ["eval", g.nan_file, "-l", "y", "-p", "p", "-m", loss, "--baseline", f,
                            "--max-increase", f"{loss}=1e300"], 1)
    [check] = doc["checks"]
    assert check["passed"] is False and check["value"] is None


# --------------------------------------------------------------------------
# --ci intervals through the command line
# --------------------------------------------------------------------------

CI_ARGS = ["-l", "y", "-p", "worse", "-w", "w", "-m", "mse,rmse,mae", "--ci"]


@pytest.mark.parametrize("mode", BOTH)
def test_ci_adds_intervals_and_the_confidence_object(g: Gate, mode: str) -> None:
    doc = expect(mode, ["eval", g.csv, *CI_ARGS, "--seed", "3", "--confidence", "0.9"], 0)
    assert set(doc["confidence"]) == {"level", "method", "buckets", "seed", "ci_key"}
    assert doc["confidence"]["ci_key"] is None  # buckets by (file name, row)
    conf = doc["confidence"]
    assert (conf["level"], conf["buckets"], conf["seed"]) == (0.9, 1000, 3)
    assert "bootstrap" in doc["confidence"]["method"]
    assert doc["losses"]["mse"]["value"] == pytest.approx(mse(g, "worse", weighted=True), rel=REL)
    for key, entry in doc["losses"].items():
        lo, hi = entry["ci"]
        assert lo < entry["value"] < hi, key  # reasonable data: the point value is inside
        assert hi - lo < 0.5 * entry["value"], key  # and the interval is not absurdly wide
    lo, hi = doc["losses"]["mse"]["ci"]
    r_lo, r_hi = doc["losses"]["rmse"]["ci"]  # the root of every replicate
    assert (r_lo, r_hi) == (pytest.approx(math.sqrt(lo), rel=1e-3), pytest.approx(math.sqrt(hi), rel=1e-3))


def test_no_intervals_without_ci(g: Gate) -> None:
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW], 0)
    assert "confidence" not in doc
    assert all("ci" not in e for e in doc["losses"].values())


def test_ci_in_csv_table_and_markdown(g: Gate) -> None:
    doc = expect("runner", ["eval", g.csv, *CI_ARGS], 0)
    r = run("runner", ["eval", g.csv, *CI_ARGS, "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [row["loss"] for row in rows] == ["mse", "rmse", "mae"]
    for row in rows:
        assert [float(row["ci_low"]), float(row["ci_high"])] == doc["losses"][row["loss"]]["ci"]
    for fmt in ("table", "markdown"):
        out = run("runner", ["eval", g.csv, *CI_ARGS, "-f", fmt]).out
        assert "95% CI" in out, fmt


def test_ci_is_the_same_whatever_the_chunk_size(g: Gate) -> None:
    outs = {size: run("runner", ["eval", g.csv, *CI_ARGS, "-f", "json"]
                      + (["--chunk-size", size] if size else [])).out for size in ("1", "7", "1000", "")}
    assert len(set(outs.values())) == 1, "the JSON report depends on --chunk-size"
    assert json.loads(outs[""])["losses"]["mse"]["ci"][0] is not None
    r = run("script", ["eval", g.csv, *CI_ARGS, "--chunk-size", "7", "-f", "json"])
    assert r.code == 0 and r.out == outs[""]


def test_ci_is_the_same_for_csv_and_parquet_of_the_same_name(g: Gate) -> None:
    a = expect("runner", ["eval", g.csv, *CI_ARGS], 0)
    b = expect("runner", ["eval", g.parquet_same_name, *CI_ARGS, "--chunk-size", "100"], 0)
    assert a["losses"] == b["losses"]
    # buckets hash the base name: another name gives other (equally valid) intervals, same values
    c = expect("runner", ["eval", g.parquet, *CI_ARGS], 0)
    assert {k: e["value"] for k, e in c["losses"].items()} == {k: e["value"] for k, e in a["losses"].items()}
    assert c["losses"]["mse"]["ci"] != a["losses"]["mse"]["ci"]


def test_ci_seeds(g: Gate) -> None:
    docs = {s: expect("runner", ["eval", g.csv, *CI_ARGS, "--seed", s], 0) for s in ("0", "1", "2")}
    cis = [tuple(d["losses"]["mse"]["ci"]) for d in docs.values()]
    assert len(set(cis)) == 3
    assert [d["confidence"]["seed"] for d in docs.values()] == [0, 1, 2]
    again = expect("runner", ["eval", g.csv, *CI_ARGS, "--seed", "1"], 0)
    assert again == docs["1"]
    assert expect("runner", ["eval", g.csv, *CI_ARGS], 0) == docs["0"]  # the default seed is 0


def test_ci_seeds_beyond_32_bits_are_distinct_or_refused(g: Gate) -> None:
    r = run("runner", ["eval", g.csv, *CI_ARGS, "--seed", str(2**32), "-f", "json"])
    clean(r)
    if r.code == 2:
        return
    assert r.code == 0
    big = json.loads(r.out)
    zero = expect("runner", ["eval", g.csv, *CI_ARGS, "--seed", "0"], 0)
    assert big["losses"]["mse"]["ci"] != zero["losses"]["mse"]["ci"], \
        "--seed 4294967296 silently gives the intervals of --seed 0"


def test_ci_confidence_levels_are_nested(g: Gate) -> None:
    cis = [expect("runner", ["eval", g.csv, *CI_ARGS, "--confidence", c], 0)["losses"]["mse"]["ci"]
           for c in ("0.5", "0.8", "0.95", "0.99")]
    for (lo1, hi1), (lo2, hi2) in zip(cis, cis[1:], strict=False):
        assert lo2 < lo1 < hi1 < hi2


@pytest.mark.parametrize("conf", ["0", "1", "1.5", "-0.1", "abc"])
def test_ci_bad_confidence_is_a_usage_error(g: Gate, conf: str) -> None:
    usage_error("runner", ["eval", g.csv, *CI_ARGS, "--confidence", conf])


def test_ci_of_shards_merged_equals_one_pass(g: Gate, tmp_path: Path) -> None:
    parts = [tmp_path / "part-0.csv", tmp_path / "part-1.csv"]
    _write_csv(g.df.iloc[:777], parts[0])
    _write_csv(g.df.iloc[777:], parts[1])
    one = expect("runner", ["eval", *parts, *CI_ARGS], 0)
    for i, p in enumerate(parts):
        r = run("runner", ["eval", p, *CI_ARGS, "--emit-state", tmp_path / f"s{i}.json", "-f", "json"])
        assert r.code == 0, r.err
    merged = expect("runner", ["merge", tmp_path / "s1.json", tmp_path / "s0.json"], 0)
    assert merged["losses"] == one["losses"]
    assert one["losses"]["mse"]["value"] == pytest.approx(mse(g, "worse", weighted=True), rel=REL)


# --------------------------------------------------------------------------
# lossctl compare
# --------------------------------------------------------------------------


def compare_args(g: Gate, cand: str, *extra: str, weighted: bool = False) -> list[Any]:
    return ["compare", g.csv, "-l", "y", "--baseline-pred", "old", "-p", cand, "-m", "mse",
            *(["-w", "w"] if weighted else []), *extra]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("cand", ["worse", "better", "slight"])
def test_compare_values_match_scikit_learn(g: Gate, cand: str, weighted: bool) -> None:
    doc = expect("runner", [*compare_args(g, cand, weighted=weighted), "-m", "mae"], 0)
    assert doc["command"] == "compare"
    assert doc["columns"]["baseline"] == ["old"] and doc["columns"]["candidate"] == [cand]
    assert doc["rows"] == N
    w = g.col("w") if weighted else None
    y = g.col("y")
    refs = {"mse": (mean_squared_error(y, g.col("old"), sample_weight=w),
                    mean_squared_error(y, g.col(cand), sample_weight=w)),
            "mae": (mean_absolute_error(y, g.col("old"), sample_weight=w),
                    mean_absolute_error(y, g.col(cand), sample_weight=w))}
    assert list(doc["losses"]) == ["mse", "mae"]
    for key, (b_ref, c_ref) in refs.items():
        e = doc["losses"][key]
        assert set(e) >= {"baseline", "candidate", "difference", "relative", "ci", "relative_ci", "verdict"}
        b, c = e["baseline"], e["candidate"]
        assert b == pytest.approx(float(b_ref), rel=REL, abs=0.0), key
        assert c == pytest.approx(float(c_ref), rel=REL, abs=0.0), key
        assert e["difference"] == c - b
        assert e["relative"] == (c - b) / abs(b)
        assert e["ci"][0] < e["difference"] < e["ci"][1], key
        assert e["relative_ci"][0] < e["relative"] < e["relative_ci"][1], key
        want = "worse" if e["ci"][0] > 0 else "better" if e["ci"][1] < 0 else "no significant change"
        assert e["verdict"] == want, key
    assert doc["confidence"]["buckets"] == 1000


@pytest.mark.parametrize("mode", BOTH)
def test_compare_clearly_worse_fails_max_regression(g: Gate, mode: str) -> None:
    doc = expect(mode, compare_args(g, "worse", "--max-regression", "mse=1%"), 1)
    e = doc["losses"]["mse"]
    assert e["verdict"] == "worse" and e["ci"][0] > 0 and e["relative_ci"][0] > 0.01
    [check] = doc["checks"]
    assert (check["kind"], check["loss"], check["limit"]) == ("regression", "mse", 0.01)
    assert check["passed"] is False
    assert check["value"] == e["relative_ci"][0]  # the least bad end of the interval
    assert doc["passed"] is False


def test_compare_clearly_worse_within_a_large_tolerance_passes(g: Gate) -> None:
    doc = expect("runner", compare_args(g, "worse", "--max-regression", "mse=500%"), 0)
    assert doc["losses"]["mse"]["verdict"] == "worse"
    assert doc["checks"][0]["passed"] is True


def test_compare_slightly_worse_but_not_significant(g: Gate) -> None:
    doc = expect("runner", compare_args(g, "slight", "--max-regression", "mse=1%"), 0)
    e = doc["losses"]["mse"]
    assert e["difference"] > 0 and 0.005 < e["relative"] < 0.015
    assert e["verdict"] == "no significant change"
    assert e["ci"][0] < 0 < e["ci"][1]
    assert doc["checks"][0]["value"] == e["relative_ci"][0]
    # even a zero tolerance passes: the interval is not past it
    assert expect("runner", compare_args(g, "slight", "--max-regression", "mse=0%"), 0)["passed"] is True
    assert expect("runner", compare_args(g, "slight", "--max-regression", "mse=0"), 0)["passed"] is True


@pytest.mark.parametrize("mode", BOTH)
def test_compare_strict_fails_on_the_point_value(g: Gate, mode: str) -> None:
    doc = expect(mode, compare_args(g, "slight", "--max-regression", "mse=0%", "--strict"), 1)
    [check] = doc["checks"]
    assert check["passed"] is False
    assert check["value"] == doc["losses"]["mse"]["relative"]
    # the point value (+1%) is within 2%, and past 0.5%
    expect("runner", compare_args(g, "slight", "--max-regression", "mse=2%", "--strict"), 0)
    expect("runner", compare_args(g, "slight", "--max-regression", "mse=0.5%", "--strict"), 1)
    expect("runner", compare_args(g, "slight", "--max-regression", "mse=0.5%"), 0)


def test_compare_absolute_tolerance_uses_the_difference(g: Gate) -> None:
    diff = mse(g, "worse") - mse(g, "old")
    doc = expect("runner", compare_args(g, "worse", "--max-regression", "mse=0.01"), 1)
    assert doc["checks"][0]["value"] == doc["losses"]["mse"]["ci"][0]
    ok = expect("runner", compare_args(g, "worse", "--max-regression", f"mse={10 * diff!r}"), 0)
    assert ok["checks"][0]["limit"] == pytest.approx(10 * diff, rel=1e-15)
    strict = expect("runner", compare_args(g, "worse", "--max-regression", f"mse={diff * 0.999!r}",
                                           "--strict"), 1)
    assert strict["checks"][0]["value"] == pytest.approx(diff, rel=1e-9)


@pytest.mark.parametrize("strict", [[], ["--strict"]])
def test_compare_better_passes(g: Gate, strict: list[str]) -> None:
    doc = expect("runner", compare_args(g, "better", "--max-regression", "mse=0%", *strict), 0)
    e = doc["losses"]["mse"]
    assert e["verdict"] == "better"
    assert e["ci"][1] < 0 and e["relative"] < 0
    assert doc["checks"][0]["passed"] is True


def test_compare_without_max_regression_only_reports(g: Gate) -> None:
    doc = expect("runner", compare_args(g, "worse"), 0)
    assert doc["losses"]["mse"]["verdict"] == "worse"
    assert "checks" not in doc and "passed" not in doc


def test_compare_fail_if_applies_to_the_candidate(g: Gate) -> None:
    limit = (mse(g, "old") + mse(g, "worse")) / 2  # between the two models' values
    doc = expect("runner", compare_args(g, "worse", "--fail-if", f"mse > {limit}"), 1)
    assert doc["checks"][0]["value"] == pytest.approx(mse(g, "worse"), rel=REL)
    expect("runner", compare_args(g, "better", "--fail-if", f"mse > {limit}"), 0)


def test_compare_two_files_joined_by_key(g: Gate) -> None:
    one = expect("runner", compare_args(g, "worse", "-m", "mae", weighted=True), 0)
    two = expect("runner", ["compare", g.base_file, g.cand_shuffled, "-l", "y", "-p", "yhat", "--key", "id",
                            "-w", "w", "-m", "mse,mae"], 0)
    assert two["command"] == "compare"
    assert two["inputs"] == [str(g.base_file), str(g.cand_shuffled)]
    assert two["rows"] == N
    for key in ("mse", "mae"):
        a, b = one["losses"][key], two["losses"][key]
        # labels and weights from the first file (the second file's y is off by 1000)
        for field in ("baseline", "candidate", "difference", "relative"):
            assert b[field] == a[field], (key, field)
    assert two["losses"]["mse"]["candidate"] == pytest.approx(mse(g, "worse", weighted=True), rel=REL)


@pytest.mark.parametrize("mode", BOTH)
def test_compare_two_files_row_by_row(g: Gate, mode: str) -> None:
    one = expect("runner", compare_args(g, "worse"), 0)
    r = run(mode, ["compare", g.base_file, g.cand_aligned, "-l", "y", "-p", "yhat", "-m", "mse",
                   "-f", "json"])
    clean(r)
    assert r.code == 0, r.err
    two = json.loads(r.out)
    for field in ("baseline", "candidate", "difference", "relative"):
        assert two["losses"]["mse"][field] == one["losses"]["mse"][field], field


def test_compare_key_join_with_a_missing_key(g: Gate, tmp_path: Path) -> None:
    part = tmp_path / "cand_part.csv"
    _write_csv(pd.read_csv(g.cand_shuffled).iloc[:1500], part)
    err = usage_error("runner", ["compare", g.base_file, part, "-l", "y", "-p", "yhat", "--key", "id",
                                 "-m", "mse"])
    assert err.startswith("lossctl: error: ")
    doc = expect("runner", ["compare", g.base_file, part, "-l", "y", "-p", "yhat", "--key", "id", "-m", "mse",
                            "--missing", "skip"], 0)
    assert doc["rows"] == 1500


def test_compare_nan_skip_drops_a_row_bad_in_either_model(g: Gate, tmp_path: Path) -> None:
    df = g.df.copy()
    df.loc[5, "worse"] = np.nan
    df.loc[9, "old"] = np.nan
    f = tmp_path / "holes.csv"
    df.to_csv(f, index=False)
    doc = expect("runner", ["compare", f, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse",
                            "--nan", "skip"], 0)
    keep = df[["old", "worse"]].notna().all(axis=1).to_numpy()
    y = g.col("y")[keep]
    assert (doc["rows"], doc["rows_skipped"]) == (N - 2, 2)
    e = doc["losses"]["mse"]
    assert e["baseline"] == pytest.approx(mean_squared_error(y, g.col("old")[keep]), rel=REL)
    assert e["candidate"] == pytest.approx(mean_squared_error(y, g.col("worse")[keep]), rel=REL)


COMPARE_USAGE = {
    "one_file_without_baseline_pred": lambda g: ["compare", g.csv, "-l", "y", "-p", "worse", "-m", "mse"],
    "three_files": lambda g: ["compare", g.csv, g.csv, g.csv, "-l", "y", "-p", "worse", "-m", "mse"],
    "key_with_one_file": lambda g: [*compare_args(g, "worse"), "--key", "id"],
    "regression_loss_not_computed": lambda g: [*compare_args(g, "worse"), "--max-regression", "mae=1%"],
    "bad_tolerance": lambda g: [*compare_args(g, "worse"), "--max-regression", "mse=1 %x"],
    "missing_baseline_column": lambda g: ["compare", g.csv, "-l", "y", "--baseline-pred", "nope",
                                          "-p", "worse", "-m", "mse"],
}


@pytest.mark.parametrize("case", COMPARE_USAGE)
def test_compare_usage_errors(g: Gate, case: str) -> None:
    usage_error("runner", COMPARE_USAGE[case](g))


# --------------------------------------------------------------------------
# Reports of the checks: JUnit, Markdown, table, CSV/TSV, stderr
# --------------------------------------------------------------------------


def three_checks(g: Gate) -> list[Any]:
    """mse > big (pass), mae > small (fail), mse and mae vs baseline +1000% (pass)."""
    return ["--fail-if", f"mse > {2 * mse(g, 'worse')}", "--fail-if", f"mae > {mae(g, 'worse') / 2}",
            "--baseline", g.baseline, "--max-increase", "1000%"]


@pytest.mark.parametrize("mode", BOTH)
def test_junit_xml(g: Gate, tmp_path: Path, mode: str) -> None:
    junit = tmp_path / "out" / "lossctl.xml"
    junit.parent.mkdir()
    doc = expect(mode, ["eval", g.csv, *EVAL_NEW, *three_checks(g), "--junit", junit], 1)
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 4
    assert int(suite.get("failures")) == 1
    assert [c.get("name") for c in cases] == [c["name"] for c in doc["checks"]]
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [c["name"] for c in doc["checks"] if not c["passed"]]
    assert all(c.find("error") is None for c in cases)
    if root.tag == "testsuites":
        assert (int(root.get("tests")), int(root.get("failures"))) == (4, 1)


def test_junit_xml_all_passing(g: Gate, tmp_path: Path) -> None:
    junit = tmp_path / "ok.xml"
    expect("runner", ["eval", g.csv, *EVAL_OLD, "--baseline", g.baseline, "--junit", junit], 0)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert (int(suite.get("tests")), int(suite.get("failures"))) == (2, 0)
    assert not suite.findall(".//failure")


def test_junit_xml_for_compare(g: Gate, tmp_path: Path) -> None:
    junit = tmp_path / "cmp.xml"
    doc = expect("runner", [*compare_args(g, "worse", "--max-regression", "mse=1%"), "--junit", junit], 1)
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == [doc["checks"][0]["name"]]
    assert cases[0].find("failure") is not None


def test_markdown_shows_the_checks(g: Gate) -> None:
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, *three_checks(g)], 1)
    r = run("runner", ["eval", g.csv, *EVAL_NEW, *three_checks(g), "-f", "markdown"])
    assert r.code == 1
    md = r.out
    assert "1 of 4 checks failed" in md
    for c in doc["checks"]:
        line = next(line for line in md.splitlines() if line.startswith("|") and c["name"] in line)
        assert ("FAIL" in line) == (not c["passed"]), line
    assert "lossctl: check failed" in r.err and "lossctl: check failed" not in md
    ok = run("runner", ["eval", g.csv, *EVAL_OLD, "--baseline", g.baseline, "-f", "markdown"])
    assert ok.code == 0 and "all 2 checks passed" in ok.out


def test_compare_markdown_shows_verdict_and_checks(g: Gate) -> None:
    r = run("runner", [*compare_args(g, "worse", "--max-regression", "mse=1%"), "-f", "markdown"])
    assert r.code == 1
    assert "worse" in r.out and "regression" in r.out and "FAIL" in r.out


def test_table_shows_the_checks(g: Gate) -> None:
    doc = expect("runner", ["eval", g.csv, *EVAL_NEW, *three_checks(g)], 1)
    r = run("runner", ["eval", g.csv, *EVAL_NEW, *three_checks(g), "-f", "table"])
    assert r.code == 1
    assert r.out.count("PASS") == 3 and r.out.count("FAIL") == 1
    for c in doc["checks"]:
        assert c["name"] in r.out


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_csv_adds_check_columns_to_each_loss_row(g: Gate, fmt: str, sep: str) -> None:
    # (no baseline: it would check rmse too)
    args = ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "mse,mae,rmse", *three_checks(g)[:4],
            "--fail-if", "mse < 0"]
    doc = expect("runner", args, 1)
    r = run("runner", [*args, "-f", fmt])
    assert r.code == 1
    rows = list(csv.DictReader(io.StringIO(r.out), delimiter=sep))
    assert {"loss", "value", "check", "check_value", "limit", "passed"} <= set(rows[0])
    by_check = {row["check"]: row for row in rows if row["check"]}
    assert len(by_check) == len(doc["checks"]) == 3
    for c in doc["checks"]:
        row = by_check[c["name"]]
        assert row["loss"] == c["loss"]
        assert float(row["value"]) == doc["losses"][c["loss"]]["value"]
        assert float(row["check_value"]) == c["value"]
        assert float(row["limit"]) == c["limit"]
        assert row["passed"] == str(c["passed"]).lower()
    unchecked = [row for row in rows if row["loss"] == "rmse"]
    assert len(unchecked) == 1 and unchecked[0]["check"] == ""  # a loss without checks keeps its row


@pytest.mark.parametrize("fmt", ["json", "csv", "table", "markdown", "value"])
def test_failed_checks_are_listed_on_stderr_in_every_format(g: Gate, fmt: str) -> None:
    r = run("runner", ["eval", g.csv, *EVAL_NEW, *three_checks(g), "-f", fmt])
    assert r.code == 1
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossctl: check failed: fail if mae > ")


# --------------------------------------------------------------------------
# Exit statuses: 0 success, 1 a failed check, 2 usage or input error
# --------------------------------------------------------------------------

EXIT_CASES: dict[str, tuple[Any, int]] = {
    "eval_no_checks": (lambda g: ["eval", g.csv, *EVAL_NEW], 0),
    "eval_threshold_pass": (lambda g: ["eval", g.csv, *EVAL_NEW, "--fail-if", "mse > 1e9"], 0),
    "eval_threshold_fail": (lambda g: ["eval", g.csv, *EVAL_NEW, "--fail-if", "mse > 1"], 1),
    "eval_own_baseline": (lambda g: ["eval", g.csv, *EVAL_OLD, "--baseline", g.baseline], 0),
    "eval_worse_than_baseline": (lambda g: ["eval", g.csv, *EVAL_NEW, "--baseline", g.baseline,
                                            "--max-increase", "mse=2%"], 1),
    "eval_ci_with_failed_check": (lambda g: ["eval", g.csv, *CI_ARGS, "--fail-if", "mae > 0.1"], 1),
    "eval_loss_not_computed": (lambda g: ["eval", g.csv, *EVAL_NEW, "--fail-if", "rmse > 1"], 2),
    "eval_bad_expression": (lambda g: ["eval", g.csv, *EVAL_NEW, "--fail-if", "mse == 1"], 2),
    "eval_baseline_missing_loss": (lambda g: ["eval", g.csv, *EVAL_NEW, "-m", "huber", "--baseline",
                                              g.baseline], 2),
    "eval_baseline_not_a_report": (lambda g: ["eval", g.csv, *EVAL_NEW, "--baseline", g.csv], 2),
    "eval_unknown_loss_with_checks": (lambda g: ["eval", g.csv, "-l", "y", "-p", "worse", "-m", "msee",
                                                 "--fail-if", "msee > 1"], 2),
    "eval_missing_column_with_checks": (lambda g: ["eval", g.csv, "-l", "y", "-p", "nope", "-m", "mse",
                                                   "--fail-if", "mse > 1"], 2),
    "compare_report_only": (lambda g: compare_args(g, "worse"), 0),
    "compare_better": (lambda g: compare_args(g, "better", "--max-regression", "mse=1%"), 0),
    "compare_not_significant": (lambda g: compare_args(g, "slight", "--max-regression", "mse=0%"), 0),
    "compare_not_significant_strict": (lambda g: compare_args(g, "slight", "--max-regression", "mse=0%",
                                                              "--strict"), 1),
    "compare_worse": (lambda g: compare_args(g, "worse", "--max-regression", "mse=1%"), 1),
    "compare_regression_loss_not_computed": (lambda g: compare_args(g, "worse", "--max-regression",
                                                                    "rmse=1%"), 2),
    "compare_without_baseline_pred": (lambda g: ["compare", g.csv, "-l", "y", "-p", "worse", "-m", "mse"], 2),
}


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize("case", EXIT_CASES)
def test_exit_status(g: Gate, case: str, mode: str) -> None:
    make, code = EXIT_CASES[case]
    r = run(mode, [*make(g), "-f", "json"])
    clean(r)
    assert r.code == code, (r.code, r.err)
    if code == 0:
        assert r.err == ""
        json.loads(r.out)
    elif code == 1:
        assert json.loads(r.out)["passed"] is False  # the report is printed, then the status
        assert r.err.startswith("lossctl: check failed: ")
    else:
        assert r.out == ""
        assert r.err.startswith(("lossctl: error: ", "Usage: "))
        assert r.err.count("\n") <= 4
