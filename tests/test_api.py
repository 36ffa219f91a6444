"""The Python API for files (issue 17): the same report as the CLI, option for option.

``evaluate_files``/``compare_files``/``merge_states``/``write_rows`` against
``lossctl eval``/``compare``/``merge``/``rows`` run in-process on the same
files (sample_data/ and small files written here), ``to_pandas`` against the
JSON report, errors against the CLI's message, and the docstrings' examples
as doctests.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cli_run import run
from sklearn.metrics import log_loss

import lossctl
from lossctl.errors import InputError, LossctlError, OptionError, UsageError

ROOT = Path(__file__).resolve().parent.parent
HOUSE = "sample_data/house_prices.csv"
COLS = ["-l", "price", "-p", "predicted_price"]


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths as the README writes them: relative to the repository (the report names them)."""
    monkeypatch.chdir(ROOT)


def cli_json(args: list[Any], code: int = 0) -> dict:
    r = run("runner", [*args, "-f", "json"])
    assert r.code == code, r.err
    return json.loads(r.out)


# (CLI arguments after the command, evaluate_files arguments, the CLI's exit status)
EVAL_CASES = [
    ([HOUSE, *COLS], dict(paths=HOUSE, label="price", pred="predicted_price"), 0),
    ([HOUSE, *COLS, "-m", "rmse,mae", "-w", "weight", "--by", "segment", "--ci", "--seed", "3",
      "--confidence", "0.9"],
     dict(paths=[HOUSE], label="price", pred="predicted_price", losses="rmse,mae",
          weight="weight", by="segment", ci=True, seed=3, confidence=0.9), 0),
    ([HOUSE, *COLS, "-m", "mse", "-m", "mae", "--by", "segment", "--min-slice-rows", "150",
      "--sort", "mae", "--slice-fail-if", "mae > 28500"],
     dict(paths=HOUSE, label="price", pred="predicted_price", losses=["mse", "mae"],
          by="segment", min_slice_rows=150, sort="mae", slice_fail_if=["mae > 28500"]), 1),
    ([HOUSE, *COLS, "-m", "rmse,mae", "-w", "weight", "--checks", "sample_data/checks.toml"],
     dict(paths=HOUSE, label="price", pred="predicted_price", losses="rmse,mae", weight="weight",
          checks="sample_data/checks.toml"), 0),
    ([HOUSE, *COLS, "-m", "rmse,mae", "-w", "weight", "--baseline",
      "sample_data/house_prices_baseline.json", "--max-increase", "mae=1%",
      "--max-increase", "0.5%", "--fail-if", "rmse > 40000"],
     dict(paths=HOUSE, label="price", pred="predicted_price", losses="rmse,mae",
          weight="weight", baseline="sample_data/house_prices_baseline.json",
          max_increase=["mae=1%", "0.5%"], fail_if="rmse > 40000"), 1),
    ([HOUSE, *COLS, "-m", "mae", "--top", "3", "mae", "--keep", "id,segment", "--quantiles"],
     dict(paths=HOUSE, label="price", pred="predicted_price", losses="mae", top=(3, "mae"),
          keep="id,segment", quantiles=True), 0),
    ([HOUSE, *COLS, "-m", "mae", "--ci", "--ci-key", "id", "--chunk-size", "64"],
     dict(paths=HOUSE, label="price", pred="predicted_price", losses="mae", ci=True,
          ci_key="id", chunk_size=64), 0),
    (["sample_data/house_prices_v2.csv", "-l", "price", "-p", "predicted_price", "--labels",
      HOUSE, "--key", "id", "-m", "mae"],
     dict(paths="sample_data/house_prices_v2.csv", label="price", pred="predicted_price",
          labels=HOUSE, key="id", losses="mae"), 0),
    (["sample_data/house_prices_noheader.csv", "--no-header", "-l", "4", "-p", "5", "-m", "mse"],
     dict(paths="sample_data/house_prices_noheader.csv", header=False, label="4", pred="5",
          losses="mse"), 0),
    (["sample_data/house_prices.tsv", "--delimiter", "tab", "--input-format", "csv", *COLS],
     dict(paths="sample_data/house_prices.tsv", delimiter="tab", input_format="csv",
          label="price", pred="predicted_price"), 0),
    (["sample_data/house_prices_models.csv", "-l", "price", "-p", "model_a", "-p", "model_c",
      "-m", "mae,rmse", "--ci", "--by", "segment", "--reference", "model_c",
      "--fail-if", "mae > 30000"],
     dict(paths="sample_data/house_prices_models.csv", label="price",
          pred=["model_a", "model_c"], losses="mae,rmse", ci=True, by="segment",
          reference="model_c", fail_if="mae > 30000"), 1),
    (["sample_data/house_prices_models.csv", "-l", "price", "--models", "model_*", "-m", "mae"],
     dict(paths="sample_data/house_prices_models.csv", label="price", models="model_*",
          losses="mae"), 0),
    (["sample_data/digits10.csv", "-l", "label", "-p", "logit_*", "-m", "sparse_softmax_ce",
      "--max-record-size", "1M"],
     dict(paths="sample_data/digits10.csv", label="label", pred="logit_*",
          losses="sparse_softmax_ce", max_record_size=1 << 20), 0),
]


@pytest.mark.parametrize(("args", "kwargs", "code"), EVAL_CASES)
def test_evaluate_files_is_the_cli_report(args: list[str], kwargs: dict, code: int) -> None:
    report = lossctl.evaluate_files(**kwargs)
    assert report.to_dict() == cli_json(["eval", *args], code)
    assert report.passed is (code == 0)


def test_checks_and_warnings_are_readable(tmp_path: Path) -> None:
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "rmse,mae",
                               fail_if=["rmse > 40000", "mae > 40000"])
    assert [(c.name, c.passed) for c in r.checks] == [("fail if rmse > 40000", False),
                                                      ("fail if mae > 40000", True)]
    assert r.passed is False and r.to_dict()["passed"] is False
    unchecked = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae")
    assert unchecked.checks == [] and unchecked.passed and "passed" not in unchecked.to_dict()
    # a baseline of other rows: the CLI's warning, kept on the report
    head = tmp_path / "head.csv"
    head.write_text("".join(open(HOUSE).readlines()[:301]))
    base = lossctl.evaluate_files(str(head), "price", "predicted_price", "mae").to_dict()
    (tmp_path / "base.json").write_text(json.dumps(base))
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae",
                               baseline=str(tmp_path / "base.json"), max_increase="100%")
    cli = run("runner", ["eval", HOUSE, *COLS, "-m", "mae", "--baseline", tmp_path / "base.json",
                         "--max-increase", "100%", "-f", "json"])
    assert r.warnings and "".join(f"lossctl: warning: {w}\n" for w in r.warnings) == cli.err


def test_outputs_are_those_of_the_cli(tmp_path: Path) -> None:
    api, cli = tmp_path / "api", tmp_path / "cli"
    api.mkdir(), cli.mkdir()
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae", fail_if="mae > 1",
                               junit=str(api / "j.xml"), emit_state=str(api / "s.json"))
    assert not r.passed
    cli_json(["eval", HOUSE, *COLS, "-m", "mae", "--fail-if", "mae > 1", "--junit",
              cli / "j.xml", "--emit-state", cli / "s.json"], 1)
    assert (api / "j.xml").read_bytes() == (cli / "j.xml").read_bytes()
    assert json.loads((api / "s.json").read_text()) == json.loads((cli / "s.json").read_text())
    with pytest.raises(UsageError, match="exists"):  # never over a file, unless force
        lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae",
                               emit_state=str(api / "s.json"))
    lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae", force=True,
                           emit_state=str(api / "s.json"))


@pytest.fixture
def two_models(tmp_path: Path) -> str:
    rng = np.random.default_rng(17)
    n = 400
    y = rng.normal(size=n)
    df = pd.DataFrame({"y": y, "old": y + rng.normal(0, 1.0, n), "new": y + rng.normal(0, 0.9, n),
                       "seg": rng.choice(["a", "b", "c"], n)})
    path = tmp_path / "models.csv"
    df.to_csv(path, index=False)
    return str(path)


COMPARE_CASES = [
    (["sample_data/house_prices.csv", "sample_data/house_prices_v2.csv", *COLS, "--key", "id",
      "-m", "mae,rmse"],
     dict(paths=[HOUSE, "sample_data/house_prices_v2.csv"], label="price",
          pred="predicted_price", key="id", losses="mae,rmse"), None),
    (["sample_data/house_prices.csv", "sample_data/house_prices_v2.csv", *COLS, "--key", "id",
      "-m", "mae", "--by", "segment", "--sort", "mae", "--max-regression", "mae=1%",
      "--strict", "--slice-max-regression", "mae=5%", "--confidence", "0.8", "--seed", "5"],
     dict(paths=[HOUSE, "sample_data/house_prices_v2.csv"], label="price",
          pred="predicted_price", key="id", losses="mae", by="segment", sort="mae",
          max_regression="mae=1%", strict=True, slice_max_regression=["mae=5%"],
          confidence=0.8, seed=5), None),
]


@pytest.mark.parametrize(("args", "kwargs", "_"), COMPARE_CASES)
def test_compare_files_is_the_cli_report(args: list[str], kwargs: dict, _: None) -> None:
    report = lossctl.compare_files(**kwargs)
    r = run("runner", ["compare", *args, "-f", "json"])
    assert r.code == (0 if report.passed else 1), r.err
    assert report.to_dict() == json.loads(r.out)


def test_compare_one_file_two_columns(two_models: str) -> None:
    report = lossctl.compare_files(two_models, "y", "new", ["mse", "mae"], baseline_pred="old",
                                   by="seg", min_slice_rows=10, fail_if="mse > 10")
    assert report.to_dict() == cli_json(["compare", two_models, "-l", "y", "-p", "new",
                                         "--baseline-pred", "old", "-m", "mse,mae", "--by", "seg",
                                         "--min-slice-rows", "10", "--fail-if", "mse > 10"])
    frame = report.to_pandas(slices=False)
    doc = report.to_dict()["losses"]
    assert list(frame["loss"]) == ["mse", "mae"]
    for _, row in frame.iterrows():
        d = doc[row["loss"]]
        assert row["baseline"] == d["baseline"] and row["candidate"] == d["candidate"]
        assert (row["ci_low"], row["ci_high"]) == tuple(d["ci"]) and row["verdict"] == d["verdict"]
    slices = report.to_pandas()
    assert list(slices.columns[:4]) == ["seg", "rows", "weight_sum", "loss"]
    assert len(slices) == 3 * 2 and set(slices["seg"]) == {"a", "b", "c"}


def test_merge_states_is_the_cli_report(tmp_path: Path) -> None:
    states = []
    for name in ("house_prices.csv", "house_prices.tsv"):
        states.append(str(tmp_path / f"{name}.json"))
        lossctl.evaluate_files(f"sample_data/{name}", "price", "predicted_price", "mae,rmse",
                               by="segment", ci=True, emit_state=states[-1])
    report = lossctl.merge_states(states, 0.9, fail_if="mae > 20000", sort="mae",
                                  emit_state=str(tmp_path / "merged.json"))
    cli = cli_json(["merge", *states, "--confidence", "0.9", "--fail-if", "mae > 20000",
                    "--sort", "mae"], 1)
    assert report.to_dict() == cli and not report.passed
    assert isinstance(report, lossctl.Report)
    # the merged state reads back as an EvalState, with the same values
    saved = json.loads((tmp_path / "merged.json").read_text())
    state = lossctl.EvalState.from_json(saved)
    assert state.result().values == report.result.values
    assert lossctl.merge_states(str(tmp_path / "merged.json"), 0.9).result.values == \
        report.result.values


def test_write_rows_writes_what_the_cli_writes(tmp_path: Path) -> None:
    w = lossctl.write_rows(HOUSE, "price", "predicted_price", "mae,mse", output=str(tmp_path / "a.csv"),
                           keep="id", top=(2, "mae"))
    r = run("runner", ["rows", HOUSE, *COLS, "-m", "mae,mse", "-o", tmp_path / "b.csv", "--keep",
                       "id", "--top", "2", "mae"])
    assert r.code == 0, r.err
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert w.rows == 600 and w.where == str(tmp_path / "a.csv")
    assert r.err.startswith(f"lossctl: wrote 600 rows to {tmp_path / 'b.csv'}\n")
    assert json.loads(r.err.split("\n", 1)[1]) == w.report.to_dict()


def test_to_pandas_rows_per_loss_and_per_slice() -> None:
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", ["rmse", "mae"],
                               weight="weight", by="segment", ci=True)
    doc = r.to_dict()
    overall = r.to_pandas(slices=False)
    assert list(overall.columns) == ["loss", "value", "ci_low", "ci_high"]
    assert list(overall["loss"]) == ["rmse", "mae"]
    for _, row in overall.iterrows():
        e = doc["losses"][row["loss"]]
        assert row["value"] == e["value"] and [row["ci_low"], row["ci_high"]] == e["ci"]
    per_slice = r.to_pandas()
    assert list(per_slice.columns) == ["segment", "rows", "weight_sum", "loss", "value", "ci_low",
                                       "ci_high"]
    assert per_slice.shape == (len(doc["slices"]) * 2, 7)
    for s in doc["slices"]:
        got = per_slice[per_slice["segment"] == s["key"]["segment"]].set_index("loss")
        for loss, value in s["losses"].items():
            assert got.loc[loss, "value"] == value and got.loc[loss, "rows"] == s["rows"]
            assert [got.loc[loss, "ci_low"], got.loc[loss, "ci_high"]] == s["ci"][loss]
    assert r.to_pandas(slices=False).equals(overall)
    plain = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae")
    assert plain.to_pandas().shape == (1, 2)
    with pytest.raises(UsageError, match="no slices"):
        plain.to_pandas(slices=True)


def test_to_pandas_keeps_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("y,p\n1,1e300\n1,-1e300\n")
    r = lossctl.evaluate_files(str(path), "y", "p", "mse,mae")
    assert r.to_dict()["losses"]["mse"]["value"] is None  # JSON has no inf
    assert list(r.to_pandas()["value"]) == [math.inf, 1e300]


def cli_error(args: list[Any]) -> str:
    r = run("runner", args)
    assert r.code == 2 and r.err.startswith("lossctl: error: ")
    return r.err.splitlines()[0].removeprefix("lossctl: error: ")


@pytest.mark.parametrize(("args", "call", "kind"), [
    (["eval", HOUSE, *COLS, "-m", "msee"],
     lambda: lossctl.evaluate_files(HOUSE, "price", "predicted_price", "msee"), UsageError),
    (["eval", HOUSE, *COLS, "--key", "id"],
     lambda: lossctl.evaluate_files(HOUSE, "price", "predicted_price", key="id"), OptionError),
    (["eval", HOUSE, "-l", "nope", "-p", "predicted_price"],
     lambda: lossctl.evaluate_files(HOUSE, "nope", "predicted_price"), UsageError),
    (["eval", HOUSE, *COLS, "--fail-if", "mse >> 3"],
     lambda: lossctl.evaluate_files(HOUSE, "price", "predicted_price", fail_if="mse >> 3"),
     UsageError),
    (["eval", HOUSE, *COLS, "--max-increase", "2%"],
     lambda: lossctl.evaluate_files(HOUSE, "price", "predicted_price", max_increase="2%"),
     UsageError),
    (["eval", "sample_data/missing.csv", *COLS],
     lambda: lossctl.evaluate_files("sample_data/missing.csv", "price", "predicted_price"),
     LossctlError),
    (["eval", HOUSE, "-l", "price", "-m", "mae"],
     lambda: lossctl.evaluate_files(HOUSE, "price", losses="mae"), OptionError),
    (["eval", "sample_data/house_prices_models.csv", "-l", "price", "-p", "model_a", "-p",
      "model_b", "--emit-state", "never.json"],
     lambda: lossctl.evaluate_files("sample_data/house_prices_models.csv", "price",
                                    ["model_a", "model_b"], emit_state="never.json"),
     OptionError),
    (["compare", HOUSE, *COLS],
     lambda: lossctl.compare_files(HOUSE, "price", "predicted_price"), OptionError),
    (["merge", HOUSE],
     lambda: lossctl.merge_states(HOUSE), UsageError),
])
def test_errors_carry_the_cli_message(args: list[Any], call: Any, kind: type) -> None:
    message = cli_error(args)
    with pytest.raises(kind) as e:
        call()
    assert str(e.value) == message


def test_bad_data_names_the_file_row_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("y,p\n1,2\n3,abc\n")
    message = cli_error(["eval", path, "-l", "y", "-p", "p", "-m", "mse"])
    with pytest.raises(InputError) as e:
        lossctl.evaluate_files(str(path), "y", "p", "mse")
    assert str(e.value) == message and "abc" in message and "row 2" in message


def test_eval_state_takes_loss_names_and_state_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y, p = rng.normal(size=100), rng.normal(size=100)
    s = lossctl.EvalState(["mse", "huber:delta=0.5"])
    s.update(y[:60], p[:60])
    t = lossctl.EvalState(["mse", "huber:delta=0.5"])
    t.update(y[60:], p[60:])
    s.merge(t)
    assert s.result()["mse"] == pytest.approx(np.mean((y - p) ** 2), rel=1e-15)
    assert s.result().values == lossctl.evaluate(y, p, ["mse", "huber:delta=0.5"]).values
    # the state file of --emit-state (its "state" inside) and the state's own JSON
    state = tmp_path / "s.json"
    assert run("runner", ["eval", HOUSE, *COLS, "-m", "mae", "--emit-state", state]).code == 0
    loaded = lossctl.EvalState.from_json(json.loads(state.read_text()))
    assert loaded.result().values == lossctl.evaluate_files(HOUSE, "price", "predicted_price",
                                                            "mae").result.values
    assert lossctl.EvalState.from_json(s.to_json()).result().values == s.result().values


def test_evaluate_takes_k_columns_as_2d_arrays_and_series_of_arrays() -> None:
    rng = np.random.default_rng(5)
    z = rng.integers(0, 4, 50)
    probs = rng.dirichlet(np.ones(4), 50)
    want = log_loss(z, probs, labels=range(4))
    by_matrix = lossctl.evaluate(z, probs, ["log_loss"])
    by_series = lossctl.evaluate(pd.Series(z), pd.Series(list(probs)), ["log_loss"])
    by_frame = lossctl.evaluate(z, pd.DataFrame(probs), ["log_loss"])
    assert by_matrix["log_loss"] == pytest.approx(want, rel=1e-12)
    assert by_series.values == by_matrix.values == by_frame.values
    ragged = pd.Series([np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5])])
    with pytest.raises(InputError, match="row holds 3 values"):
        lossctl.evaluate([0, 1], ragged, ["log_loss"])


def test_the_api_is_exported_lazily() -> None:
    from lossctl import api
    from lossctl.engine import plan

    assert api.DEFAULT_MAX_SLICES == plan.DEFAULT_MAX_SLICES  # (a copy: plan loads pyarrow)
    for name in lossctl.__all__:
        assert getattr(lossctl, name) is not None
        assert name in dir(lossctl)
    with pytest.raises(AttributeError):
        lossctl.nothing  # noqa: B018


@pytest.mark.parametrize("module", ["lossctl", "lossctl.api", "lossctl.report.model"])
def test_docstring_examples(module: str) -> None:
    """The examples in the public docstrings run as written, from the repository root."""
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or module == "lossctl.report.model")


def test_the_readme_python_examples_run() -> None:
    """The Python API section of the README runs as written, from the repository root."""
    import re

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_progress_and_html_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    seen: list[tuple[int, int]] = []
    page = tmp_path / "r.html"
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae", html=str(page),
                               progress=lambda done, total: seen.append((done, total)))
    assert seen and {t for _, t in seen} == {Path(HOUSE).stat().st_size}  # bytes to read
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "lossctl.evaluate_files(" in page.read_text()  # the call, where the CLI shows its command
    assert "quantiles" in r.to_dict()  # as with --html: the page's distributions are kept


def test_a_report_shows_itself_briefly() -> None:
    r = lossctl.evaluate_files(HOUSE, "price", "predicted_price", "mae", fail_if="mae > 1")
    assert repr(r) == "<lossctl.Report eval: 600 rows; mae=27364.8; checks FAILED>"
    c = lossctl.compare_files([HOUSE, "sample_data/house_prices_v2.csv"], "price",
                              "predicted_price", "mae", key="id")
    assert repr(c).startswith("<lossctl.Report compare: 600 rows; mae=27364.8 -> ")


def test_to_pandas_of_a_leaderboard() -> None:
    r = lossctl.evaluate_files("sample_data/house_prices_models.csv", "price",
                               ["model_a", "model_b", "model_c"], ["mae", "rmse"], ci=True,
                               by="segment")
    doc = r.to_dict()
    board = r.to_pandas(slices=False)
    assert list(board["model"]) == [m["model"] for m in doc["models"] for _ in range(2)]
    assert list(board.columns) == ["model", "rank", "loss", "value", "ci_low", "ci_high",
                                   "difference", "relative", "difference_ci_low",
                                   "difference_ci_high", "verdict"]
    for _, row in board.iterrows():
        m = next(m for m in doc["models"] if m["model"] == row["model"])
        e = m["losses"][row["loss"]]
        assert row["value"] == e["value"] and row["rank"] == m["rank"]
        if "vs_reference" in e:
            assert row["difference"] == e["vs_reference"]["difference"]
            assert [row["difference_ci_low"], row["difference_ci_high"]] == \
                e["vs_reference"]["ci"]
        else:  # the reference
            assert row["model"] == doc["reference"] and math.isnan(row["difference"])
    per_slice = r.to_pandas()
    assert per_slice.shape[0] == len(doc["slices"]) * 3 * 2
    assert list(per_slice.columns[:4]) == ["segment", "rows", "weight_sum", "model"]
    assert repr(r).startswith("<lossctl.Report eval: 600 rows; 3 models by mae: ")
