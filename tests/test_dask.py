"""The Dask engine (issue #13): the local engine's report, bit for bit, from work units on a cluster.

Every test runs lossctl twice on the same files, ``--engine local`` and
``--engine dask`` against a two-process LocalCluster (the ``dask_cluster``
fixture), and compares the JSON reports whole (the ``engine`` key aside):
values, slices and their order, intervals, top rows, join counts and
error messages.  Small ``--unit-size`` values force files to be split into
Parquet row-group ranges and CSV byte ranges.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shards
from cli_run import run

pytestmark = pytest.mark.dask


def lossctl(args: list, dask: Any = None, unit: str | None = None, mode: str = "runner",
            **kw: Any) -> Any:
    cmd = list(args) if str(args[0]) in ("eval", "compare", "rows") else ["eval", *args]
    if dask is not None:
        cmd += ["--engine", "dask", "--scheduler", dask.scheduler_address]
        if unit:
            cmd += ["--unit-size", unit]
    return run(mode, cmd, **kw)


def both(args: list, dask: Any, unit: str | None = None, workers: int | None = 2
         ) -> tuple[dict, dict]:
    """The JSON reports of the local and the Dask engine (the engine key removed)."""
    out = []
    for engine in (None, dask):
        r = lossctl([*args, "-f", "json"], engine, unit)
        assert r.code in (0, 1), r.err
        doc = json.loads(r.out)
        out.append(doc.pop("engine"))
        out.append(doc)
    local_engine, local, dask_engine, got = out
    assert local_engine["name"] == "local" and dask_engine["name"] == "dask"
    assert dask_engine["scheduler"] == dask.scheduler_address
    assert workers is None or dask_engine["workers"] == workers
    got["_tasks"] = dask_engine["tasks"]
    return local, got


def same(args: list, dask: Any, unit: str | None = None, tasks: int | None = None) -> dict:
    local, got = both(args, dask, unit)
    n = got.pop("_tasks")
    assert json.dumps(got) == json.dumps(local)  # key order too: the rendered report is the same
    if tasks is not None:
        assert n == tasks
    return got


def same_error(args: list, dask: Any, unit: str | None = None) -> str:
    a, b = lossctl(args, None), lossctl(args, dask, unit)
    assert a.code == 2 and b.code == 2, (a.err, b.err)
    assert b.err == a.err and "Traceback" not in b.err
    return b.err


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("dask")
    out: dict[str, Any] = {"dir": d}
    sizes = [400, 1, 250, 0, 333, 520]  # an empty shard and a one-row shard too
    out["parquet"] = shards.dump(d / "parquet", "parquet", sizes, seed=3)
    out["csv"] = shards.dump(d / "csv", "csv", sizes, seed=3)
    out["labels"] = shards.labels_of(out["parquet"], d / "labels.parquet")
    big = shards.frame(3000, 8)
    out["big_parquet"] = shards.write(big, d / "big" / "big.parquet", row_group_size=250)
    out["big_csv"] = shards.write(big.drop(columns=["seg"]), d / "bigcsv" / "big.csv")
    out["quoted_csv"] = shards.write(big, d / "quoted" / "big.csv")  # "west, far" is quoted
    return out


EVAL = ["-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae,huber:delta=2,r2"]
EXTRAS = ["--by", "seg,dev", "--ci", "--top", "7", "mae", "--keep", "id,seg"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_shards_give_the_local_report(dump: dict, dask_cluster: Any, fmt: str) -> None:
    doc = same([dump["dir"] / fmt, *EVAL, *EXTRAS], dask_cluster, tasks=6)
    assert doc["slices"] and doc["top"]["rows"] and doc["losses"]["mse"]["ci"]
    same([dump["dir"] / fmt, "-l", "z", "-p", "prob"], dask_cluster)  # the automatic choice
    same([dump["dir"] / fmt, *EVAL, "--by", "seg", "--sort", "mae", "--min-slice-rows", "2"],
         dask_cluster)


def test_large_files_are_split_and_give_the_same_bits(dump: dict, dask_cluster: Any) -> None:
    same([dump["big_parquet"], *EVAL, *EXTRAS], dask_cluster, "8KiB", tasks=None)
    _, got = both([dump["big_parquet"], *EVAL], dask_cluster, "8KiB")
    assert got["_tasks"] > 4  # row-group ranges
    _, got = both([dump["big_csv"], *EVAL, "--ci", "--top", "3", "mse"], dask_cluster, "20KiB")
    assert got["_tasks"] > 4  # byte ranges
    same([dump["big_csv"], *EVAL, "--ci", "--top", "3", "mse", "--by", "dev"], dask_cluster,
         "20KiB")
    # a CSV holding quotes may have newlines inside fields: it stays one unit
    _, got = both([dump["quoted_csv"], *EVAL, *EXTRAS], dask_cluster, "20KiB")
    assert got["_tasks"] == 1
    same([dump["quoted_csv"], *EVAL, *EXTRAS], dask_cluster, "20KiB")


METRICS = ["-l", "z", "-p", "prob", "-w", "w", "-m",
           "accuracy,precision,f1,mcc,balanced_accuracy,brier,roc_auc,pr_auc,ece,bce"]


def test_metrics_give_the_local_report(dump: dict, dask_cluster: Any) -> None:
    """Ratios, the score histogram and reliability bins merge across workers bit for bit."""
    doc = same([dump["dir"] / "parquet", *METRICS, "--by", "seg", "--ci"], dask_cluster)
    assert doc["losses"]["roc_auc"]["error_bound"] == 0.0 and doc["losses"]["ece"]["bins"]
    same([dump["big_parquet"], *METRICS, "--ci"], dask_cluster, "8KiB")
    same([dump["big_csv"], "-l", "y", "-p", "p", "-m", "r2,explained_variance,max_error,mape",
          "--ci", "--by", "dev"], dask_cluster, "20KiB")


def test_compare_and_label_joins(dump: dict, dask_cluster: Any, tmp_path: Path) -> None:
    parts = dump["parquet"]
    same(["compare", dump["dir"] / "parquet", "-l", "y", "--baseline-pred", "p2", "-p", "p",
          "-m", "mse,mae"], dask_cluster)
    same(["compare", parts[0], dump["csv"][0], "-l", "y", "-p", "p",
          "--key", "id", "-m", "mse"], dask_cluster)
    join = ["--labels", dump["labels"], "--key", "id", "-l", "label", "-p", "p"]
    doc = same([dump["dir"] / "parquet", *join, "-m", "mse", "--ci", "--by", "seg"], dask_cluster)
    assert doc["join"]["unmatched_other"] == 2
    same([dump["dir"] / "parquet", *join], dask_cluster)  # losses chosen from the first chunk
    # duplicate keys, repeated matches, predictions without a label (skipped)
    labels = pq.read_table(dump["labels"]).to_pandas()
    labels = labels[labels["id"] % 7 != 0]
    dup = labels.iloc[:40].assign(label=0.0)
    path = shards.write(pd.concat([labels, dup]), tmp_path / "labels_dup.parquet")
    again = tmp_path / "again.parquet"  # the first shard's rows once more, under another name
    again.write_bytes(Path(parts[0]).read_bytes())  # (the same file twice is refused)
    preds = list(dump["parquet"]) + [again]  # its keys match again
    doc = same([*preds, "--labels", path, "--key", "id", "-l", "label", "-p", "p", "-m", "mse",
                "--missing", "skip"], dask_cluster)
    j = doc["join"]
    assert j["duplicate_keys"] == 40 and j["repeated_matches"] > 0 and j["unmatched_main"] > 0
    err = same_error([*preds, "--labels", path, "--key", "id", "-l", "label", "-p", "p"],
                     dask_cluster)
    assert "no row with this key" in err


def test_row_joins_pair_files_one_to_one(dump: dict, dask_cluster: Any, tmp_path: Path) -> None:
    labels = []
    for p in dump["parquet"]:
        t = pq.read_table(p).select(["y"]).rename_columns(["label"])
        out = tmp_path / "labels" / p.name
        out.parent.mkdir(exist_ok=True)
        pq.write_table(t, out)
        labels.append(out)
    same([*dump["parquet"], "--labels", tmp_path / "labels", "-l", "label", "-p", "p", "-m",
          "mse", "--ci"], dask_cluster)
    r = lossctl([*dump["parquet"], "--labels", labels[0], "-l", "label", "-p", "p"], dask_cluster)
    assert r.code == 2 and "pairs the files one to one" in r.err


def test_errors_are_the_earliest_in_the_stream(dump: dict, dask_cluster: Any,
                                               tmp_path: Path) -> None:
    files = []
    for i, n in enumerate([300, 300, 300]):
        df = shards.frame(n, 40 + i)
        if i >= 1:  # bad values in the second and the third shard: the second's is reported
            df.loc[n - 5 - 100 * (i - 1), "p"] = float("nan")
        files.append(shards.write(df, tmp_path / "bad" / f"part-{i}.parquet"))
    err = same_error([tmp_path / "bad", *EVAL], dask_cluster)
    assert "part-1.parquet, row 296" in err
    big = shards.frame(3000, 9)
    big.loc[[2100, 2900], "w"] = -1.0
    shards.write(big.drop(columns=["seg"]), tmp_path / "badcsv" / "big.csv")
    err = same_error([tmp_path / "badcsv" / "big.csv", *EVAL], dask_cluster, "20KiB")
    assert "row 2101" in err
    shards.write(shards.frame(10, 1).drop(columns=["p"]), tmp_path / "bad" / "part-3.parquet")
    same_error([tmp_path / "bad" / "part-0.parquet", tmp_path / "bad" / "part-3.parquet", *EVAL],
               dask_cluster)
    same_error([dump["dir"] / "parquet", *EVAL, "--by", "id", "--max-slices", "1000"], dask_cluster)


def test_rows_writes_one_part_per_unit(dump: dict, dask_cluster: Any, tmp_path: Path) -> None:
    args = ["rows", dump["dir"] / "parquet", "-l", "y", "-p", "p", "-m", "mse,mae", "--keep",
            "id,seg"]
    assert lossctl([*args, "-o", tmp_path / "local.parquet"]).code == 0
    r = lossctl([*args, "-o", tmp_path / "parts"], dask_cluster)
    assert r.code == 0, r.err
    names = sorted(os.listdir(tmp_path / "parts"))
    assert names == [f"part-{i:05d}.parquet" for i in (0, 1, 2, 4, 5)]  # the empty shard: none
    # (a part's kept columns have its shard's types: the one-row shard's seg is all null)
    got = pa.concat_tables([pq.read_table(tmp_path / "parts" / n) for n in names],
                           promote_options="permissive")
    want = pq.read_table(tmp_path / "local.parquet")
    assert got.cast(want.schema).equals(want)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    r = lossctl([*args, "-o", tmp_path / "parts"], dask_cluster)
    assert r.code == 2 and "--force" in r.err
    # a failure leaves neither the directory nor its temporary
    bad = shards.frame(50, 2)
    bad.loc[30, "p"] = float("inf")
    shards.write(bad, tmp_path / "in" / "part-9.parquet")
    r = lossctl(["rows", dump["parquet"][0], tmp_path / "in", "-l", "y", "-p", "p", "-m", "mse",
                 "-o", tmp_path / "failed"], dask_cluster)
    assert r.code == 2 and "part-9.parquet, row 31" in r.err
    assert not (tmp_path / "failed").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_s3_dump_on_dask_is_the_local_report(dump: dict, dask_cluster: Any, s3: Any) -> None:
    s3.bucket("daskdump")
    prefix = s3.put_tree(dump["dir"] / "parquet", "daskdump/day1")
    big = s3.put(dump["big_csv"], "daskdump/big/big.csv")
    local = lossctl([dump["dir"] / "parquet", *EVAL, *EXTRAS, "-f", "json"])
    r = lossctl([prefix + "/", *EVAL, *EXTRAS, "-f", "json"], dask_cluster)
    assert r.code == 0, r.err
    a, b = json.loads(local.out), json.loads(r.out)
    for doc in (a, b):
        doc.pop("engine")
        doc["inputs"] = [Path(p).name for p in doc["inputs"]]
        doc["input_files"] = [{k: f[k] for k in ("size", "digest", "rows", "role")}
                              for f in doc["input_files"]]  # (the same bytes, named elsewhere)
        for row in doc["top"]["rows"]:
            row["file"] = Path(row["file"]).name
    assert json.dumps(a) == json.dumps(b)
    a, b = both([dump["big_csv"], *EVAL], dask_cluster, "20KiB")[0], \
        json.loads(lossctl([big, *EVAL, "-f", "json"], dask_cluster, "20KiB").out)
    assert b.pop("engine")["tasks"] > 4
    assert a["losses"] == b["losses"]
    r = lossctl(["rows", prefix, "-l", "y", "-p", "p", "-m", "mse", "-o",
                 "s3://daskdump/out/rows.parquet"], dask_cluster)
    assert r.code == 0, r.err
    assert s3.list("daskdump/out") == [f"daskdump/out/rows.parquet/{n}" for n in
                                       ["_SUCCESS"] + [f"part-{i:05d}.parquet" for i in (0, 1, 2, 4, 5)]]
    assert not [k for k in s3.list("daskdump") if ".partial" in k]


def test_a_worker_killed_mid_run_does_not_change_the_report(dump: dict, dask_cluster: Any,
                                                            tmp_path: Path) -> None:
    """A worker process is killed (SIGKILL) as it starts a unit: Dask runs that unit again."""
    from distributed import Client, WorkerPlugin

    marker = tmp_path / "killed"

    class KillOnce(WorkerPlugin):
        name = "lossctl-kill-once"

        def transition(self, key: Any, start: str, finish: str, **kw: Any) -> None:
            if finish == "executing" and "lossctl-unit" in str(key) and str(key).endswith("-2"):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)

    with Client(dask_cluster.scheduler_address) as client:
        client.register_plugin(KillOnce())
        try:
            local, got = both([dump["dir"] / "csv", *EVAL, *EXTRAS], dask_cluster, workers=None)
        finally:
            client.unregister_worker_plugin(KillOnce.name)
        client.wait_for_workers(2, timeout=60)
    assert marker.exists()  # a worker did die during the run
    got.pop("_tasks")
    assert json.dumps(got) == json.dumps(local)


def test_python_api_with_a_client_of_ones_own(dump: dict, dask_cluster: Any) -> None:
    from distributed import Client

    import lossctl

    with Client(dask_cluster.scheduler_address) as client:
        r = lossctl.evaluate_files(str(dump["dir"] / "parquet"), "y", "p", ["mse", "mae"],
                                   weight="w", engine="dask", client=client, by="seg", ci=True)
        assert r.outcome.engine["name"] == "dask" and r.outcome.engine["tasks"] == 6
    local = lossctl.evaluate_files(str(dump["dir"] / "parquet"), "y", "p", "mse,mae", weight="w",
                                   by="seg", ci=True)
    assert r.result.values == local.result.values and r.intervals == local.intervals
    assert r.state.slice_results() == local.state.slice_results()


def test_usage_errors(dump: dict, dask_cluster: Any) -> None:
    r = run("runner", ["eval", "-", *EVAL, "--engine", "dask", "--scheduler",
                       dask_cluster.scheduler_address], input=b"y,p,w\n1,2,1\n")
    assert r.code == 2 and "stdin" in r.err
    r = lossctl([dump["parquet"][0], *EVAL, "--engine", "dask", "--scheduler",
                 "tcp://127.0.0.1:1"], mode="script")
    assert r.code == 2 and "cannot reach the Dask scheduler" in r.err and "Traceback" not in r.err
    r = lossctl(["rows", dump["parquet"][0], *EVAL[:4], "-o", "-"], dask_cluster)
    assert r.code == 2 and "directory of parts" in r.err


def test_issue_12_features_are_the_local_report(dump: dict, dask_cluster: Any) -> None:
    """CSV text typed over every unit, --ci-key buckets, fingerprints with each file's rows."""
    args = [dump["dir"] / "csv", "-l", "y", "-p", "p", "-m", "mse,mae", "--by", "dev", "--top", "3",
            "mse", "--keep", "id,dev,seg", "--ci", "--ci-key", "id", "--slice-fail-if", "mse > 1e9"]
    doc = same(args, dask_cluster, "2KiB")  # CSV files cut into byte ranges
    assert [s["key"]["dev"] for s in doc["slices"]] == [0, 1, 2]
    assert all(isinstance(r["id"], int) and isinstance(r["dev"], int) for r in doc["top"]["rows"])
    assert doc["confidence"]["ci_key"] == "id"
    assert [f["rows"] for f in doc["input_files"]] == [400, 1, 250, 0, 333, 520]
