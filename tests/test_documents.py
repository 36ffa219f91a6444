"""Files that are not data (issue #11): saved states, baselines, checks files.

Each is validated before use (:mod:`lossctl.io.documents`, the state schema
in :mod:`lossctl.engine.state_schema`, the checks and baseline schemas in
:mod:`lossctl.report.checks`): a damaged or hostile file is one line on stderr
naming the file and the field, exit 2, never a traceback, never a silently
wrong gate, never gigabytes of memory.  And a baseline value ``null`` (a loss
that overflowed) is infinity in the loss's direction, not NaN.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_run import Run, run
from conftest import small_frame

STATE_ARGS = ["-l", "y", "-p", "p", "-w", "w", "-m", "mse,rmse,mae", "--by", "seg", "--ci",
              "--top", "3", "mae", "--keep", "id"]


def error(r: Run, *needles: str) -> str:
    assert r.code == 2, f"exit {r.code}: {r.err}"
    assert "Traceback" not in r.err and r.err.count("\n") == 1, r.err
    assert r.err.startswith("lossctl: error: "), r.err
    for n in needles:
        assert n in r.err, f"{n!r} not in {r.err!r}"
    return r.err


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small data file, a state of every kind of part, a baseline and a checks file."""
    t = tmp_path_factory.mktemp("docs")
    small_frame(300, 3).to_csv(t / "data.csv", index=False)
    # every loss overflows: (1e200 - -1e200)^2 is inf
    (t / "overflow.csv").write_text("y,p\n1e200,-1e200\n1,2\n")
    out = {"dir": t, "csv": t / "data.csv", "overflow": t / "overflow.csv",
           "state": t / "state.json", "plain_state": t / "plain.json",
           "component_state": t / "components.json",
           "baseline": t / "baseline.json"}
    assert run("runner", ["eval", out["csv"], *STATE_ARGS, "--emit-state", out["state"]]).code == 0
    assert run("runner", ["eval", out["csv"], "-l", "y", "-p", "p", "-m", "mse,mae",
                          "--emit-state", out["plain_state"]]).code == 0
    # curve and extreme metrics keep components: reliability bins, score histograms, maxima
    (t / "binary.csv").write_text("seg,z,s\n" + "".join(
        f"{'ab'[i % 2]},{i % 3 == 0:d},{(i * 37 % 101) / 101}\n" for i in range(200)))
    assert run("runner", ["eval", t / "binary.csv", "-l", "z", "-p", "s", "-m",
                          "bce,ece,roc_auc,max_error", "--by", "seg", "--ci", "--quantiles",
                          "--emit-state", out["component_state"]]).code == 0
    # the page's reliability bins (--html, without ece)
    out["calibration_state"] = t / "calibration.json"
    assert run("runner", ["eval", t / "binary.csv", "-l", "z", "-p", "s", "-m", "bce", "--html",
                          "/dev/null", "--emit-state", out["calibration_state"]]).code == 0
    r = run("runner", ["eval", out["csv"], "-l", "y", "-p", "p", "-m", "mse,huber:delta=2",
                       "-f", "json"])
    out["baseline"].write_text(r.out)
    return out


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content, encoding="utf-8", errors="surrogatepass")
    return f


# --------------------------------------------------------------------------
# A baseline value null is infinity (issue #11), in both directions
# --------------------------------------------------------------------------


def _report(tmp_path: Path, value: Any, **extra: Any) -> Path:
    doc = {"lossctl": "0.1.0", "command": "eval",
           "losses": {"mse": {"name": "mse", "params": {}, "value": value, **extra}}}
    return write(tmp_path, "old.json", json.dumps(doc))


def _gate(d: dict[str, Path], baseline: Path, data: str = "csv", *tol: str) -> dict:
    args = ["eval", d[data], "-l", "y", "-p", "p", "-m", "mse", "--baseline", baseline, "-f", "json"]
    for t in tol:
        args += ["--max-increase", t]
    r = run("runner", args)
    assert r.code in (0, 1), r.err
    doc = json.loads(r.out)
    assert doc["passed"] == (r.code == 0)
    return doc


@pytest.mark.parametrize("tol", [(), ("mse=0",), ("mse=2%",), ("mse=0%",)])
def test_null_baseline_is_infinity_so_a_finite_loss_passes(d: dict[str, Path], tmp_path: Path,
                                                           tol: tuple[str, ...]) -> None:
    """Before: null was read as NaN and every check against it failed."""
    doc = _gate(d, _report(tmp_path, None), "csv", *tol)
    assert doc["passed"] is True
    assert "baseline inf" in doc["checks"][0]["detail"]


@pytest.mark.parametrize("tol", [(), ("mse=2%",)])
def test_null_baseline_and_an_overflowing_loss_is_no_change(d: dict[str, Path], tmp_path: Path,
                                                            tol: tuple[str, ...]) -> None:
    doc = _gate(d, _report(tmp_path, None), "overflow", *tol)
    assert doc["losses"]["mse"]["value"] is None
    assert doc["passed"] is True and doc["checks"][0]["value"] == 0.0


@pytest.mark.parametrize("tol", [(), ("mse=1000%",), ("mse=1e300",)])
def test_finite_baseline_and_an_overflowing_loss_fails(d: dict[str, Path], tmp_path: Path,
                                                      tol: tuple[str, ...]) -> None:
    doc = _gate(d, _report(tmp_path, 1.5), "overflow", *tol)
    assert doc["passed"] is False


def test_the_report_says_which_non_finite_value(d: dict[str, Path], tmp_path: Path) -> None:
    r = run("runner", ["eval", d["overflow"], "-l", "y", "-p", "p", "-m", "mse", "-f", "json"])
    entry = json.loads(r.out)["losses"]["mse"]
    assert entry["value"] is None and entry["nonfinite"] == "inf"
    # that report as a baseline: the same data is no worse, finite data is better
    base = write(tmp_path, "over.json", r.out)
    assert _gate(d, base, "overflow")["passed"] is True
    assert _gate(d, base, "csv", "mse=0%")["passed"] is True


def test_a_nan_baseline_never_passes(d: dict[str, Path], tmp_path: Path) -> None:
    for data in ("csv", "overflow"):
        assert _gate(d, _report(tmp_path, None, nonfinite="nan"), data)["passed"] is False


def test_null_baseline_of_a_higher_is_better_metric_is_minus_infinity(d: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """null is the worst value in the metric's direction: -inf for r2 (higher is better)."""
    def gate(**entry: Any) -> dict:
        doc = {"lossctl": "0.1.0", "losses": {"r2": {"name": "r2", "params": {}, **entry}}}
        f = write(tmp_path, "old.json", json.dumps(doc))
        r = run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "r2", "--baseline", f,
                           "--max-increase", "r2=10%", "-f", "json"])
        assert r.code in (0, 1), r.err
        return json.loads(r.out)

    doc = gate(value=None)
    assert doc["passed"] is True and "baseline -inf" in doc["checks"][0]["detail"]
    # a stated +inf is the best value of such a metric: any finite value is worse
    assert gate(value=None, nonfinite="inf")["passed"] is False
    assert gate(value=-1e300)["passed"] is True  # and a finite worst case for comparison


# --------------------------------------------------------------------------
# Checks files and baselines: malformed files are one-line errors naming the field
# --------------------------------------------------------------------------

DEEP = 100_000
BAD_CHECKS: dict[str, tuple[str, str | bytes, list[str]]] = {
    "deep_json": ("c.json", '{"fail_if": ' + "[" * DEEP, ["nested too deeply"]),
    "deep_toml": ("c.toml", "fail_if = " + "[" * DEEP + "]" * DEEP, ["nested too deeply"]),
    "long_int_json": ("c.json", '{"max_increase": {"mse": 1' + "0" * 5000 + "}}",
                      ["an integer of 5001 digits"]),
    "long_int_toml": ("c.toml", "[max_increase]\nmse = 1" + "0" * 5000 + "\n",
                      ["integer with too many digits"]),
    "big_int_toml": ("c.toml", "[max_increase]\nmse = 1" + "0" * 400 + "\n",
                     ["field max_increase.mse: expected a number", "about 401 digits"]),
    "not_utf8": ("c.toml", b'fail_if = ["mse > 1"]\n# caf\xe9\n',
                 ["byte 0xe9 on line 2 is not UTF-8"]),
    "fail_if_many": ("c.toml", 'fail_if = "many"\n', ["field fail_if: cannot read check 'many'"]),
    "fail_if_item": ("c.toml", 'fail_if = ["mse > 1", 2]\n',
                     ["field fail_if[1]: expected a string, got 2"]),
    "fail_if_object": ("c.json", '{"fail_if": {"mse": 1}}', ["field fail_if: expected a string"]),
    "tolerance_bool": ("c.toml", "[max_increase]\nmse = true\n",
                       ["field max_increase.mse: expected a number or a string", "got true"]),
    "tolerance_table": ("c.toml", "[max_increase.mse]\na = 1\n", ["field max_increase.mse"]),
    "tolerance_list": ("c.json", '{"max_regression": ["mse=1%"]}', ["field max_regression"]),
    "tolerance_negative": ("c.toml", '[max_increase]\n"huber:delta=2" = -1\n',
                           ['field max_increase["huber:delta=2"]', ">= 0"]),
    "tolerance_infinite": ("c.json", '{"max_increase": {"mse": 1e999}}',
                           ["field max_increase.mse", "got inf"]),
    "baseline_number": ("c.toml", "baseline = 3\n", ["field baseline: expected a path"]),
    "lone_surrogate": ("c.json", '{"fail_if": ["\\ud800 > 1"]}', ["field fail_if[0]"]),
    "unknown_field": ("c.toml", "fail_iff = []\n", ["field fail_iff: unknown field"]),
    "top_level_list": ("c.json", "[]", ["expected a table (TOML) or an object (JSON)"]),
}


@pytest.mark.parametrize("case", list(BAD_CHECKS))
def test_bad_checks_files(d: dict[str, Path], tmp_path: Path, case: str) -> None:
    name, content, needles = BAD_CHECKS[case]
    f = write(tmp_path, name, content)
    error(run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", "--checks", f]),
          str(f), *needles)


def test_checks_file_with_a_byte_order_mark(d: dict[str, Path], tmp_path: Path) -> None:
    f = write(tmp_path, "c.toml", '\ufefffail_if = ["mse > 1e9"]\n')
    assert run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", "--checks", f]).code == 0


def _loss_entry(**entry: Any) -> str:
    return json.dumps({"lossctl": "0.1.0", "losses": {"mse": {"name": "mse", "params": {},
                                                              "value": 1.0, **entry}}})


BAD_BASELINES: dict[str, tuple[str | bytes, list[str]]] = {
    "deep": ('{"lossctl": "0.1.0", "losses": ' + "[" * DEEP, ["nested too deeply"]),
    "long_int": ('{"lossctl": "0.1.0", "losses": {}, "rows": ' + "9" * 5000 + "}",
                 ["an integer of 5000 digits"]),
    "not_utf8": (b'{"lossctl": "0.1.0", "losses": {"\xff": 1}}', ["byte 0xff on line 1"]),
    "value_many": (_loss_entry(value="many"), ['field losses.mse.value', 'got "many"']),
    "value_list": (_loss_entry(value=[1.0]), ["field losses.mse.value", "a list of 1 item"]),
    "value_bool": (_loss_entry(value=True), ["field losses.mse.value", "got true"]),
    "value_infinity": (_loss_entry(value=1e999), ["field losses.mse.value", "got inf"]),
    "name_unknown": (_loss_entry(name="msee"), ["field losses.mse.name", "unknown loss 'msee'"]),
    "name_number": (_loss_entry(name=3), ["field losses.mse.name: expected a string, got 3"]),
    "params_list": (_loss_entry(params=[]), ["field losses.mse.params: expected an object"]),
    "params_wrong_type": (json.dumps({"lossctl": "0.1.0", "losses": {"huber": {
        "name": "huber", "params": {"delta": "big"}, "value": 1.0}}}),
        ["field losses.huber.params", "delta takes a number"]),
    "nonfinite_unknown": (_loss_entry(value=None, nonfinite="infinity"),
                          ["field losses.mse.nonfinite"]),
    "version_not_text": (json.dumps({"lossctl": 1, "losses": {}}), ["field lossctl"]),
}


@pytest.mark.parametrize("case", list(BAD_BASELINES))
def test_bad_baselines(d: dict[str, Path], tmp_path: Path, case: str) -> None:
    content, needles = BAD_BASELINES[case]
    f = write(tmp_path, "old.json", content)
    error(run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", "--baseline", f]),
          str(f), *needles)


# --------------------------------------------------------------------------
# States: shape, and every count and size against what the definitions imply
# --------------------------------------------------------------------------

Edit = Callable[[dict], Any]


def _set(path: str, value: Any) -> Edit:
    """Set the field at ``path`` (``state.slices.rows.1``) to ``value``."""
    *parents, last = path.split(".")

    def edit(doc: dict) -> None:
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


def _append(path: str, *items: Any) -> Edit:
    def edit(doc: dict) -> None:
        node: Any = doc
        for p in path.split("."):
            node = node[int(p)] if isinstance(node, list) else node[p]
        node.extend(items)

    return edit


def _drop(path: str) -> Edit:
    *parents, last = path.split(".")

    def edit(doc: dict) -> None:
        node: Any = doc
        for p in parents:
            node = node[p]
        del node[last]

    return edit


def _nested(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


BAD_STATES: dict[str, tuple[Edit, list[str]]] = {
    "rows_many": (_set("state.rows", "many"),
                  ['field state.rows: expected a non-negative integer, got "many"']),
    "slice_rows_many": (_set("state.slices.rows.1", "many"),
                        ['field state.slices.rows[1]: expected a non-negative integer, got "many"']),
    "negative_count": (_set("state.rows_skipped", -3), ["field state.rows_skipped", "got -3"]),
    "count_beyond_int64": (_set("state.buckets.rows.0", 2**70),
                           ["field state.buckets.rows[0]: expected at most 9223372036854775807"]),
    "bool_count": (_set("state.rows", True), ["field state.rows", "got true"]),
    "buckets_300000": (_set("state.buckets.count", 300_000),
                       ["field state.buckets.count: expected 1000, got 300000"]),
    "bucket_list_too_long": (_append("state.buckets.rows", *[0] * 5),
                             ["field state.buckets.rows: expected 1000 item(s)", "got 1005"]),
    "bucket_rows_do_not_add_up": (_set("state.buckets.rows.0", 7),
                                  ["field state.buckets.rows: the counts add up to"]),
    "bucket_sums_short": (lambda doc: doc["state"]["buckets"]["sums"]["mse"].pop(),
                          ['field state.buckets.sums.mse: expected 1000 item(s)']),
    "slice_counts_without_keys": (_append("state.slices.rows", 0),
                                  ["field state.slices.rows: 4 groups, more than 3"]),
    "slice_key_twice": (lambda doc: doc["state"]["slices"]["keys"].__setitem__(
        1, doc["state"]["slices"]["keys"][0]), ["field state.slices.keys[1]: a slice key given twice"]),
    "slice_limit": (_set("state.slices.limit", 2), ["field state.slices.keys", "more than the limit 2"]),
    "slice_key_width": (_set("state.slices.keys.0", ["a", "b"]),
                        ["field state.slices.keys[0]: expected 1 item(s)"]),
    "slice_key_object": (_set("state.slices.keys.0", [{"a": 1}]),
                         ["field state.slices.keys[0][0]: expected a string, number"]),
    "slices_list": (_set("state.slices", []), ["field state.slices: expected null or an object"]),
    "top_too_many_rows": (lambda doc: doc["state"]["top"]["rows"].append(
        list(doc["state"]["top"]["rows"][0])), ["field state.top.rows: 4 rows, more than n (3)"]),
    "top_unknown_loss": (_set("state.top.loss", "huber"), ["field state.top.loss"]),
    "top_wrong_sign": (_set("state.top.sign", -1.0), ["field state.top.sign", "direction"]),
    "top_value_not_a_number": (_set("state.top.rows.0.0", "big"), ["field state.top.rows[0][0]"]),
    "top_kept_deep": (_set("state.top.rows.0.3.id", _nested(50)),
                      ["field state.top.rows[0][3].id: expected a JSON value nested at most"]),
    "top_kept_columns": (_set("state.top.rows.0.3", {}), ["state.top.rows[0][3]", "columns.keep"]),
    "sum_too_large": (_set("state.sums.mse.scaled", "0x" + "f" * 2000),
                      ["field state.sums.mse.scaled: expected an integer in hex below 2**3186"]),
    "sum_not_hex": (_set("state.sums.mse.scaled", "12"), ["field state.sums.mse.scaled"]),
    "sum_nonfinite_text": (_set("state.sums.mse.nonfinite", "lots"),
                           ["field state.sums.mse.nonfinite"]),
    "weight_sum_negative": (_set("state.weight_sum.scaled", "-0x10"),
                            ["field state.weight_sum.scaled: expected a non-negative integer in hex"]),
    "weight_sum_infinite": (_set("state.weight_sum.nonfinite", "inf"),
                            ["field state.weight_sum.nonfinite"]),
    "missing_sum": (_drop("state.sums.mae"), ["field state.sums: expected the sums of mse, mae"]),
    "extra_sum": (_set("state.sums.huber", {"scaled": "0x0", "nonfinite": "0.0"}),
                  ["field state.sums: expected the sums of mse, mae"]),
    "rows_seen": (_set("state.rows_seen", 1), ["field state.rows_seen: is not rows + rows_skipped"]),
    "unknown_loss": (_set("state.losses.0.name", "msee"), ["field state.losses[0].name"]),
    "loss_params": (_set("state.losses.0.params", {"delta": 1.0}),
                    ["field state.losses[0].params", "unknown parameter 'delta'"]),
    "losses_object": (_set("state.losses", {}), ["field state.losses: expected a list"]),
    "no_losses": (_set("state.losses", []), ["field state.losses: expected at least 1"]),
    "loss_twice": (lambda doc: doc["state"]["losses"].append(doc["state"]["losses"][0]),
                   ["field state.losses: a loss given twice"]),
    "width_zero": (_set("state.label_width", 0), ["field state.label_width"]),
    "width_for_the_losses": (_set("state.pred_width", 3), ["needs one prediction column, got 3"]),
    "nan_policy": (_set("state.nan", "maybe"), ["field state.nan: expected one of"]),
    "weighted_text": (_set("state.weighted", "yes"), ["field state.weighted: expected true or false"]),
    "columns_weight": (_set("columns.weight", None), ["field columns.weight"]),
    "columns_unknown_field": (_set("columns.extra", 1), ["field columns.extra: unknown field"]),
    "inputs_surrogate": (_set("inputs", ["\ud800"]), ["field inputs[0]: expected a string"]),
    "missing_state": (_drop("state.buckets"), ["field state.buckets: missing"]),
}

RELIABILITY, HISTOGRAM, MAXIMUM = ("component:reliability:15", "component:score_histogram",
                                   "component:max_abs_error")
BAD_COMPONENT_STATES: dict[str, tuple[Edit, list[str]]] = {
    "bins_short": (lambda doc: doc["state"]["components"][RELIABILITY]["rows"].pop(),
                   [f"field state.components[\"{RELIABILITY}\"].rows: expected 15 item(s)"]),
    "groups_huge": (lambda doc: doc["state"]["buckets"]["components"][RELIABILITY].update(
        groups=10**9), ["state.buckets.components", "groups: expected 1000, got 1000000000"]),
    "bins_param_huge": (lambda doc: [l["params"].update(bins=10**6) for l in doc["state"]["losses"]
                                     if l["name"] == "ece"], ["field state.losses[1].params",
                                                              "bins must be"]),
    "histogram_of_no_group": (lambda doc: doc["state"]["slices"]["components"][HISTOGRAM]["hists"]
                              .update({"7": doc["state"]["components"][HISTOGRAM]["hists"]["0"]}),
                              ["a histogram of group '7': groups are 0 to 1"]),
    "histogram_key_beyond_64_bits": (lambda doc: doc["state"]["components"][HISTOGRAM]["hists"]["0"]
                                     ["sides"][0]["keys"].__setitem__(0, "0x1" + "0" * 16),
                                     ["sides[0].keys[0]: expected a non-negative integer in hex "
                                      "below 2**64"]),
    "histogram_shift": (lambda doc: doc["state"]["components"][HISTOGRAM]["hists"]["0"].update(
        shift=64), ["hists[\"0\"].shift: expected at most 63"]),
    "histogram_counts_short": (lambda doc: doc["state"]["components"][HISTOGRAM]["hists"]["0"]
                               ["sides"][1]["counts"].pop(), ["sides[1].counts: expected"]),
    "maximum_long": (lambda doc: doc["state"]["slices"]["components"][MAXIMUM]["max"].append("1.0"),
                     ["max: expected 2 item(s) (one per group), got 3"]),
    "component_missing": (lambda doc: doc["state"]["components"].pop(MAXIMUM),
                          ["field state.components: expected the components"]),
    "histogram_in_buckets": (lambda doc: doc["state"]["buckets"]["components"].update(
        {HISTOGRAM: doc["state"]["components"][HISTOGRAM]}),
        ["field state.buckets.components: expected the components"]),
    "slice_buckets_per_slice": (_set("state.slice_buckets.per_slice", 51),
                                ["field state.slice_buckets.per_slice: expected 50, got 51"]),
    "slice_buckets_too_many": (_append("state.slice_buckets.rows", *[0] * 50),
                               ["field state.slice_buckets.rows: 150 groups, more than 100"]),
    "slice_buckets_without_buckets": (lambda doc: doc["state"].update(buckets=None),
                                      ["field state.slice_buckets: expected null"]),
    "sketch_keys_out_of_order": (lambda doc: doc["state"]["sketches"]["bce:eps=2.220446049250313e-16"]
                                 ["keys"].reverse(), ["keys: not in increasing order"]),
    "sketch_key_too_large": (lambda doc: doc["state"]["sketches"]["residuals" if "residuals" in
                                                                 doc["state"]["sketches"] else
                                                                 "bce:eps=2.220446049250313e-16"]
                             ["keys"].__setitem__(-1, 2**18), ["expected at most 262143"]),
    "sketch_mantissa_bits": (lambda doc: [v.update(mantissa_bits=7)
                                          for v in doc["state"]["sketches"].values()],
                             ["mantissa_bits: expected 6, got 7"]),
    "sketch_rows_short": (lambda doc: [v["rows"].pop() for v in doc["state"]["sketches"].values()],
                          ["rows: expected", "one per key"]),
    "sketch_missing": (lambda doc: doc["state"]["sketches"].clear(),
                       ["field state.sketches: expected the distributions of"]),
}
BAD_CALIBRATION_STATES: dict[str, tuple[Edit, list[str]]] = {
    "calibration_rows": (lambda doc: doc["state"]["calibration"]["rows"].append(0),
                         ["field state.calibration.rows: expected 15 item(s)"]),
    "calibration_groups": (lambda doc: doc["state"]["calibration"].update(groups=5),
                           ["field state.calibration.groups: expected 1, got 5"]),
    "calibration_not_an_object": (_set("state.calibration", [1, 2]),
                                  ["field state.calibration: expected an object"]),
}


@pytest.mark.parametrize("case", [*BAD_STATES, *BAD_COMPONENT_STATES, *BAD_CALIBRATION_STATES])
def test_bad_states(d: dict[str, Path], tmp_path: Path, case: str) -> None:
    edit, needles = {**BAD_STATES, **BAD_COMPONENT_STATES, **BAD_CALIBRATION_STATES}[case]
    source = "component_state" if case in BAD_COMPONENT_STATES else \
        "calibration_state" if case in BAD_CALIBRATION_STATES else \
        "plain_state" if case in ("unknown_loss", "loss_params", "missing_sum", "extra_sum") else "state"
    doc = json.loads(d[source].read_text())
    edit(doc)
    f = write(tmp_path, "s.json", json.dumps(doc))
    before = f.read_bytes()
    out = tmp_path / "merged.json"
    error(run("runner", ["merge", f, "--emit-state", out]), str(f), *needles)
    assert f.read_bytes() == before and not out.exists()


RAW_STATES: dict[str, tuple[str | bytes, list[str]]] = {
    "deep": ("[" * DEEP, ["nested too deeply"]),
    "long_int": ('{"kind": "lossctl-state", "version": 2, "rows": ' + "1" * 5000 + "}",
                 ["an integer of 5000 digits"]),
    "not_utf8": (b'{"kind": "lossctl-state", "inputs": ["\xc3\x28"]}', ["byte 0xc3 on line 1"]),
    "empty": ("", ["invalid JSON"]),
}


@pytest.mark.parametrize("case", list(RAW_STATES))
def test_malformed_state_files(d: dict[str, Path], tmp_path: Path, case: str) -> None:
    content, needles = RAW_STATES[case]
    f = write(tmp_path, "s.json", content)
    error(run("runner", ["merge", f]), str(f), "not a lossctl state", *needles)


def test_every_real_state_is_valid(d: dict[str, Path]) -> None:
    for s in (d["state"], d["plain_state"], d["component_state"], d["calibration_state"]):
        r = run("runner", ["merge", s, "-f", "json"])
        assert r.code == 0, r.err


def test_kept_values_are_plain_json(tmp_path: Path) -> None:
    """Dates, NaN and lists in --keep columns: the report and the state are plain JSON."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"y": [1.0, 2.0, 3.0], "p": [1.5, 0.0, 3.0],
                             "when": [datetime.datetime(2024, 1, i + 1) for i in range(3)],
                             "x": [float("nan"), float("inf"), 1.0], "tags": [[1, 2], [], [3]]}), f)
    state = tmp_path / "s.json"
    r = run("runner", ["eval", f, "-l", "y", "-p", "p", "-m", "mae", "--top", "2", "mae", "--keep",
                       "when,x,tags", "--emit-state", state, "-f", "json"])
    assert r.code == 0, r.err
    for text in (r.out, state.read_text(), run("runner", ["merge", state, "-f", "json"]).out):
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    top = json.loads(r.out)["top"]["rows"]
    assert top[0]["when"] == "2024-01-02 00:00:00" and top[0]["x"] == "inf" and top[0]["tags"] == []


@pytest.mark.parametrize("option", ["--checks", "--baseline", "merge"])
def test_a_device_is_not_a_document(d: dict[str, Path], option: str) -> None:
    """/dev/zero as a checks file, baseline or state: refused at once (it filled the memory)."""
    args = ["merge", "/dev/zero"] if option == "merge" else \
        ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", option, "/dev/zero"]
    error(run("runner", args), "/dev/zero: a device, not a")


def test_an_oversized_checks_file(d: dict[str, Path], tmp_path: Path) -> None:
    f = write(tmp_path, "c.toml", "# padding\n" * (2 << 20))
    error(run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", "--checks", f]),
          str(f), "larger than 16 MiB")


def test_a_checks_file_from_a_pipe(d: dict[str, Path], tmp_path: Path) -> None:
    """A FIFO (as bash's <(...) gives) is read like a file."""
    import os
    import threading

    fifo = tmp_path / "checks.toml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text('fail_if = ["mse > 0"]\n'))
    writer.start()
    r = run("runner", ["eval", d["csv"], "-l", "y", "-p", "p", "-m", "mse", "--checks", fifo,
                       "-f", "json"])
    writer.join(timeout=30)
    assert r.code == 1 and json.loads(r.out)["passed"] is False, r.err
