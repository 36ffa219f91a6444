"""Issue 12: intervals that belong to the data, one report whatever the format, readable reports.

Through the real CLI: in-process, as a process, and on a pseudo-terminal of
60, 80 and 200 columns for the table layout.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import run, run_in_pty
from trust_data import Data, error, make, report, write_csv

from lossctl.core.losses import SYNONYMS, all_names, suggest_names
from lossctl.report.numbers import distinct_digits, number


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return make(tmp_path_factory.mktemp("reports"))


# --------------------------------------------------------------------------
# --ci-key: buckets by row id
# --------------------------------------------------------------------------

CI = ["-l", "y", "-p", "worse", "-m", "mse,mae", "--ci", "--seed", "4"]


def intervals(doc: dict) -> dict[str, list]:
    return {k: e["ci"] for k, e in doc["losses"].items()}


def test_ci_key_intervals_survive_renaming_conversion_and_resharding(data: Data, tmp_path: Path) -> None:
    keyed = intervals(report(["eval", data.csv, *CI, "--ci-key", "id"]))
    renamed = tmp_path / "renamed.csv"
    renamed.write_bytes(data.csv.read_bytes())
    assert intervals(report(["eval", renamed, *CI, "--ci-key", "id"])) == keyed
    assert intervals(report(["eval", data.parquet, *CI, "--ci-key", "id", "--chunk-size", "77"])) == keyed
    # shuffled and cut into three shards, merged from states
    shuffled = data.df.sample(frac=1.0, random_state=3)
    states = []
    for i, part in enumerate(np.array_split(np.arange(len(shuffled)), 3)):
        shard = tmp_path / f"part-{i}.parquet"
        pq.write_table(pa.Table.from_pandas(shuffled.iloc[part], preserve_index=False), shard)
        states.append(tmp_path / f"s{i}.json")
        report(["eval", shard, *CI, "--ci-key", "id", "--emit-state", states[-1]])
    merged = report(["merge", *states])
    assert merged["confidence"]["ci_key"] == "id"
    assert intervals(merged) == keyed
    # the default buckets by (file name, row): renaming moves them
    plain = intervals(report(["eval", data.csv, *CI]))
    assert plain != keyed and intervals(report(["eval", renamed, *CI])) != plain


def test_ci_key_accepts_text_ids_and_refuses_missing_ones(data: Data, tmp_path: Path) -> None:
    df = data.df.assign(uid=["u" + str(i) for i in data.df["id"]])
    f = tmp_path / "text_ids.csv"
    write_csv(df, f)
    doc = report(["eval", f, *CI, "--ci-key", "uid"])
    assert all(lo < doc["losses"][k]["value"] < hi for k, (lo, hi) in intervals(doc).items())
    df.loc[17, "uid"] = None
    write_csv(df, f)
    err = error(["eval", f, *CI, "--ci-key", "uid"])
    assert "row 18" in err and "'uid'" in err
    assert "--ci" in error(["eval", data.csv, "-l", "y", "-p", "old", "--ci-key", "id"])
    assert "nope" in error(["eval", data.csv, *CI, "--ci-key", "nope"])


def test_compare_of_two_files_by_key_buckets_by_the_key(data: Data, tmp_path: Path) -> None:
    """The key names the rows, so the candidate's file order does not move the intervals."""
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    write_csv(data.df[["id", "y", "old"]].rename(columns={"old": "yhat"}), old)
    write_csv(data.df[["id", "worse"]].rename(columns={"worse": "yhat"}).sample(frac=1.0, random_state=1),
              new)
    two = report(["compare", old, new, "-l", "y", "-p", "yhat", "--key", "id", "-m", "mse"])
    one = report(["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "worse", "-m", "mse",
                  "--ci-key", "id"])
    assert two["confidence"]["ci_key"] == "id"
    for field in ("difference", "ci", "relative_ci", "verdict"):
        assert two["losses"]["mse"][field] == one["losses"]["mse"][field], field


# --------------------------------------------------------------------------
# One report whatever the format
# --------------------------------------------------------------------------


def gate_scenario(where: Path, baseline: Path, extra: list[str] = ()) -> dict:
    """Every part of a report at once: checks, baseline, slices, intervals, top rows."""
    return report(["eval", "preds", "-l", "y", "-p", "seg7", "-w", "w", "-m", "mse,mae,r2",
                   "--by", "seg,name", "--ci", "--ci-key", "id", "--top", "5", "mse",
                   "--keep", "id,seg,name", "--baseline", baseline, "--max-increase", "mse=50%",
                   "--max-increase", "5%", "--fail-if", "mae > 10",
                   "--slice-fail-if", "mse > 20", *extra], 1, cwd=where)


def test_the_same_gate_report_from_csv_and_parquet(data: Data) -> None:
    baseline = data.dir / "scenario_base.json"
    baseline.write_text(json.dumps(report(["eval", data.csv, "-l", "y", "-p", "old", "-w", "w",
                                           "-m", "mse,mae,r2"])))
    docs = {fmt: gate_scenario(data.dir / fmt, baseline) for fmt in ("csv", "pq")}
    a, b = docs["csv"], docs["pq"]
    assert set(a) == set(b)
    for field in a:
        if field == "input_files":  # other bytes: other sizes and digests
            assert [f["rows"] for f in a[field]] == [f["rows"] for f in b[field]] == [3000]
            continue
        assert a[field] == b[field], field
    assert [s["key"]["seg"] for s in a["slices"]][:3] == [1, 1, 1]  # integers, natural order
    assert all(isinstance(r["id"], int) and isinstance(r["seg"], int) for r in a["top"]["rows"])
    assert {c["kind"] for c in a["checks"]} == {"threshold", "slice_threshold", "baseline"}
    # and not by chance of the chunking
    assert gate_scenario(data.dir / "csv", baseline, ["--chunk-size", "7"]) == a


def test_text_columns_are_typed_over_every_value(tmp_path: Path) -> None:
    """An id that looks numeric in the first blocks but not later stays text throughout."""
    n = 300_000  # several CSV blocks
    df = pd.DataFrame({"id": [str(i) for i in range(n)], "seg": np.arange(n) % 3,
                       "y": np.zeros(n), "p": np.linspace(0.0, 1.0, n)})
    df.loc[n - 1, "id"] = "x-last"
    df.loc[n - 1, "seg"] = 10
    f = tmp_path / "ids.csv"
    write_csv(df, f)
    doc = report(["eval", f, "-l", "y", "-p", "p", "-m", "mae", "--top", "3", "mae", "--keep", "id,seg",
                  "--by", "seg"])
    assert [r["id"] for r in doc["top"]["rows"]] == ["x-last", str(n - 2), str(n - 3)]
    assert [r["seg"] for r in doc["top"]["rows"]] == [10, (n - 2) % 3, (n - 3) % 3]
    assert [s["key"]["seg"] for s in doc["slices"]] == [0, 1, 2, 10]


@pytest.mark.parametrize("values,want", [
    (["1", "10", "2", "3"], [1, 2, 3, 10]),
    (["1.5", "10", "-2"], [-2.0, 1.5, 10.0]),
    (["true", "false"], [False, True]),
    (["a10", "a2", "b1", "a1"], ["a1", "a2", "a10", "b1"]),
    (["1", "01"], ["01", "1"]),  # two texts that would be one number stay text
])
def test_slice_keys_are_typed_and_in_natural_order(tmp_path: Path, values: list[str], want: list) -> None:
    f = tmp_path / "k.csv"
    f.write_text("k,y,p\n" + "".join(f"{v},1,2\n" for v in values))
    doc = report(["eval", f, "-l", "y", "-p", "p", "-m", "mse", "--by", "k"])
    assert [s["key"]["k"] for s in doc["slices"]] == want


def test_rows_output_has_one_schema_for_the_whole_file(tmp_path: Path) -> None:
    n = 200_000
    f = tmp_path / "in.csv"
    ids = [str(i) for i in range(n)]
    ids[-1] = "x"
    write_csv(pd.DataFrame({"id": ids, "y": np.zeros(n), "p": np.ones(n)}), f)
    out = tmp_path / "out.parquet"
    r = run("runner", ["rows", f, "-l", "y", "-p", "p", "-m", "mse", "--keep", "id", "-o", out,
                       "--chunk-size", "1000"])
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string() and table.num_rows == n


# --------------------------------------------------------------------------
# Tables at the terminal's width
# --------------------------------------------------------------------------


def _cells(out: str) -> str:
    return re.sub(r"\s+", " ", out)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
@pytest.mark.parametrize("columns", [60, 80, 200])
def test_table_layout_on_a_terminal(data: Data, columns: int) -> None:
    args = ["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "seg7", "-m", "mse,mae",
            "--by", "seg", "--max-regression", "mse=1%", "--slice-max-regression", "mse=10%"]
    doc = report(args, 1)
    code, out, err = run_in_pty([*args, "-f", "table"], {"NO_COLOR": "1"}, columns=columns)
    assert code == 1, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns, max(lines, key=len)
    text = _cells(out)
    for key, e in doc["losses"].items():  # every value shown whole, with the digits it needs
        d = distinct_digits([e["baseline"], e["candidate"]])
        assert number(e["baseline"], d) in text and number(e["candidate"], d) in text, key
    for s in doc["slices"]:
        e = s["losses"]["mse"]
        assert f"{number(e['relative'] * 100, 3)}%" in text
    failed = sum(not c["passed"] for c in doc["checks"])
    assert f"lossctl: {failed} of {len(doc['checks'])} checks failed" in out
    assert re.search(r"\bsignificant\b", out)  # a verdict wraps at its spaces, never inside a word
    if columns == 200:  # the full table: one header line holds every column
        assert any(all(h in line for h in ("loss", "baseline", "candidate", "difference", "relative",
                                           "verdict")) for line in lines)
    if columns == 60:  # one block per row, a field per line
        assert any(line.strip().startswith("candidate") for line in lines)
    # the paragraph under the tables is cut at word boundaries only
    summary = out[out.index("inputs:"):].split()
    assert " ".join(summary).startswith(f"inputs: {data.csv}; label: y; baseline: old")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
@pytest.mark.parametrize("columns", [60, 80, 200])
def test_eval_table_with_checks_on_a_terminal(data: Data, columns: int) -> None:
    args = ["eval", data.csv, "-l", "y", "-p", "worse", "-w", "w", "-m", "mse,rmse,mae", "--ci",
            "--fail-if", "mse > 1e9", "--by", "seg", "--top", "3", "mse", "--keep", "id,name"]
    doc = report(args)
    code, out, err = run_in_pty([*args, "-f", "table"], {"NO_COLOR": "1"}, columns=columns)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= columns
    text = _cells(out)
    for e in doc["losses"].values():
        assert number(e["value"]) in text
        assert number(e["ci"][0]) in text and number(e["ci"][1]) in text
    assert "3,000" in text  # counts with thousands separators
    assert "lossctl: 1 check passed" in out


def test_numbers_show_the_digits_that_tell_them_apart() -> None:
    assert number(1713219364.3826761) == "1,713,219,364"
    assert number(16.04750371) == "16.0475" and number(0.0000123456) == "1.23456e-05"
    assert distinct_digits([16.0475037, 16.0475091]) == 7
    assert distinct_digits([1.0, 2.0]) == 4
    assert number(2.5) == "2.5" and number(-3.0) == "-3"


# --------------------------------------------------------------------------
# Wording
# --------------------------------------------------------------------------


def test_an_improvement_reads_as_better(data: Data) -> None:
    doc = report(["compare", data.csv, "-l", "y", "--baseline-pred", "old", "-p", "better", "-m", "mse",
                  "--max-regression", "mse=1%"])
    detail = doc["checks"][0]["detail"]
    assert "better" in detail and "worse by -" not in detail and "-" not in detail.split("(")[0]


def test_check_counts_are_worded_for_one_and_many(data: Data) -> None:
    one = run("runner", ["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--fail-if", "mse > 1e9",
                         "-f", "markdown"])
    assert "**lossctl: 1 check passed**" in one.out and "all 1 checks" not in one.out
    two = run("runner", ["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--fail-if", "mse > 1e9",
                         "--fail-if", "mse > 1e8", "-f", "markdown"])
    assert "**lossctl: all 2 checks passed**" in two.out
    failed = run("runner", ["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--fail-if", "mse > 0",
                            "-f", "markdown"])
    assert "**lossctl: 1 check failed**" in failed.out


def test_a_threshold_detail_shows_the_limit_as_written(data: Data) -> None:
    doc = report(["eval", data.csv, "-l", "y", "-p", "old", "-m", "mse", "--fail-if", "mse > 1"], 1)
    assert doc["checks"][0]["detail"].endswith("fails if > 1")


def test_a_row_that_does_not_sum_to_one_names_its_sum(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("y,p0,p1,p2\n0,0.2,0.3,0.5\n1,0.5,0.5,0.3\n")
    err = error(["eval", f, "-l", "y", "-p", "p0:p2", "-m", "cce"])
    assert "row 2" in err and "'p0:p2'" in err and "(row sum: 1.3)" in err
    g = tmp_path / "l.parquet"
    pq.write_table(pa.table({"y": [0, 1], "probs": [[0.2, 0.8], [0.6, 0.7]]}), g)
    err = error(["eval", g, "-l", "y", "-p", "probs", "-m", "cce"])
    assert "column 'probs'" in err and "row sum: 1.2999" in err


def test_inputs_of_other_columns_are_named(data: Data, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    data.df.drop(columns=["name"]).to_csv(other, index=False)
    err = error(["eval", data.csv, other, "-l", "y", "-p", "old", "--keep", "name", "--top", "1", "mse"])
    assert err.startswith(f"lossctl: error: {other}: no --keep column named 'name'")
    third = tmp_path / "third.csv"  # the 5th column is another one
    data.df[["id", "seg", "name", "old", "y"]].to_csv(third, index=False)
    err = error(["eval", data.csv, third, "-l", "y", "-p", "5"])
    assert err.startswith(f"lossctl: error: {third}: columns") and "the first input's" in err


def test_column_names_are_suggested_whatever_their_case(data: Data) -> None:
    assert "Did you mean 'y'?" in error(["eval", data.csv, "-l", "Y", "-p", "old"])


@pytest.mark.parametrize("name,first", [("auroc", "roc_auc"), ("logloss", "log_loss"), ("rmes", "rmse"),
                                        ("mean_squared_error", "mse"), ("AUPRC", "pr_auc"),
                                        ("kld", "kl_div")])
def test_unknown_losses_suggest_the_closest_names(data: Data, name: str, first: str) -> None:
    err = error(["eval", data.csv, "-l", "y", "-p", "old", "-m", name])
    assert f"Did you mean {first!r}" in err


def test_synonyms_only_suggest_names_of_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(target in all_names() for target in SYNONYMS.values())
    monkeypatch.setitem(SYNONYMS, "future_metric", "not_there_yet")
    assert "not_there_yet" not in suggest_names("future_metric")


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_an_option_of_another_command_gets_the_usual_error_line(data: Data, mode: str) -> None:
    r = run(mode, ["eval", data.csv, "-l", "y", "-p", "old", "--max-regression", "mse=1%"])
    assert r.code == 2 and r.out == ""
    first, *rest = r.err.splitlines()
    assert first.startswith("lossctl: error: lossctl eval has no option --max-regression: it is an "
                            "option of lossctl compare")
    assert "--baseline" in first
    assert len(rest) == 1 and rest[0].endswith(" eval --help' for help.")  # (in-process: "cli")
    r = run(mode, ["eval", data.csv, "-p", "old"])
    assert r.code == 2 and r.err.startswith("lossctl: error: missing option '-l'")




def test_dates_and_times_are_reported_as_text(tmp_path: Path) -> None:
    """Parquet values JSON has no type for (a date, a timestamp) were a traceback in --top."""
    import datetime

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"y": [1.0, 2.0], "p": [1.5, 2.5],
                             "d": [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)],
                             "t": pa.array([datetime.datetime(2024, 1, 1, 3), None])}), f)
    state = tmp_path / "s.json"
    doc = report(["eval", f, "-l", "y", "-p", "p", "-m", "mse", "--top", "2", "mse", "--keep", "d,t",
                  "--by", "d", "--emit-state", state])
    assert [(r["d"], r["t"]) for r in doc["top"]["rows"]] == [("2024-01-01", "2024-01-01 03:00:00"),
                                                             ("2024-01-02", None)]
    assert [s["key"]["d"] for s in doc["slices"]] == ["2024-01-01", "2024-01-02"]
    assert report(["merge", state])["top"] == doc["top"]


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_row_id_buckets_are_the_same_in_c_and_numpy(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from lossctl.core import intervals

    rng = np.random.default_rng(seed % 1000)
    ids = ["".join(chr(int(c)) for c in rng.integers(32, 127, int(rng.integers(8, 40))))
           for _ in range(5000)] + ["", "é中", "17"]
    col = pa.array(ids).cast(pa.large_string()).slice(3)  # an offset into the buffers, as chunks have
    _, offsets, data = col.buffers()
    args = (np.frombuffer(offsets, dtype=np.int64, count=len(col) + 1, offset=col.offset * 8),
            np.frombuffer(data, dtype=np.uint8), seed)
    native = intervals.key_bucket_ids(*args)
    monkeypatch.setattr(intervals, "_kernels", None)
    twin = intervals.key_bucket_ids(*args)
    assert np.array_equal(native, twin)
    counts = np.bincount(twin, minlength=intervals.BUCKETS)
    assert twin.min() >= 0 and twin.max() < intervals.BUCKETS and counts.max() < 25


@pytest.mark.parametrize("native", [True, False])
def test_integer_ids_bucket_as_their_text(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """17 in Parquet falls in the bucket of "17" in CSV (the integer path makes no text)."""
    from lossctl.core import intervals

    if not native:
        monkeypatch.setattr(intervals, "_kernels", None)
    values = np.array([0, 1, -1, 9, 10, 17, -17, 99, 100, 2**63 - 1, -2**63, -999]
                      + list(np.random.default_rng(3).integers(-2**62, 2**62, 3000)), dtype=np.int64)
    text = pa.array([str(int(v)) for v in values]).cast(pa.large_string())
    _, offsets, data = text.buffers()
    want = intervals.key_bucket_ids(np.frombuffer(offsets, dtype=np.int64, count=len(text) + 1),
                                    np.frombuffer(data, dtype=np.uint8), 11)
    assert np.array_equal(intervals.int_key_bucket_ids(values, 11), want)
