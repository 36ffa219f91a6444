"""Object storage (issue #13): every input and output as a URI, against a real S3 server.

The server is moto in server mode on localhost (the ``s3`` fixture); lossctl
reaches it through its ordinary S3 path, configured by ``AWS_ENDPOINT_URL``.
Reports over s3:// are compared bit for bit with reports over the same files
on local disk (the report's ``inputs`` aside).  http:// inputs are served by
a small local server with Range support; fsspec's memory:// stands for a
protocol pyarrow lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shards
from cli_run import report, run
from storage import HttpFiles, free_port

from lossctl.io import fs

COMMANDS = ("eval", "compare", "rows", "merge")


def with_command(args: list) -> list:
    return list(args) if str(args[0]) in COMMANDS else ["eval", *args]


def rep(args: list, **kw: Any) -> dict:
    """The JSON report of ``lossctl [eval] ARGS`` run in-process."""
    return report("runner", with_command(args), **kw)


def cli(args: list, mode: str = "runner", **kw: Any) -> Any:
    return run(mode, with_command(args), **kw)


def same_report(a: dict, b: dict) -> None:
    """Bit-identical reports, but for where the inputs are."""
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    assert [Path(p).name for p in a.pop("inputs")] == [Path(p).name for p in b.pop("inputs")]
    # the same bytes, wherever they are: the same fingerprints but for the names
    assert [{k: f[k] for k in ("size", "digest", "rows", "role")} for f in a.pop("input_files")] == \
        [{k: f[k] for k in ("size", "digest", "rows", "role")} for f in b.pop("input_files")]
    a.pop("engine", None), b.pop("engine", None)  # (a merge of states names no engine)
    if "join" in a:
        a["join"].pop("file"), b["join"].pop("file")
    for doc in (a, b):
        for row in doc.get("top", {}).get("rows", []):
            row["file"] = Path(row["file"]).name
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def one_line_error(r: Any, *needles: str) -> None:
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossctl: error:"), r.err
    for n in needles:
        assert n in r.err, (n, r.err)


@pytest.fixture(scope="module")
def remote(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dump (CSV and Parquet shards, a label file) on local disk and the same in s3://dumps/."""
    d = tmp_path_factory.mktemp("dump")
    s3.bucket("dumps")
    out: dict[str, Any] = {"dir": d}
    for fmt in ("csv", "parquet"):
        out[fmt] = shards.dump(d / fmt, fmt, [230, 170, 301], seed=11 if fmt == "csv" else 12)
        out[f"s3_{fmt}"] = s3.put_tree(d / fmt, f"dumps/day1/{fmt}")
    (d / "parquet" / "_SUCCESS").write_bytes(b"")  # skipped in a directory, as on disk
    s3.put(d / "parquet" / "_SUCCESS", "dumps/day1/parquet/_SUCCESS")
    out["labels"] = shards.labels_of(out["parquet"], d / "labels.csv")
    out["s3_labels"] = s3.put(out["labels"], "dumps/labels/labels.csv")
    return out


EVAL = ["-l", "y", "-p", "p", "-w", "w", "-m", "mse,mae,huber:delta=2"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_eval_of_a_prefix_is_the_local_report_bit_for_bit(remote: dict, fmt: str) -> None:
    extra = ["--by", "seg", "--ci", "--top", "5", "mae", "--keep", "id,seg"]
    local = rep([remote["dir"] / fmt, *EVAL, *extra])
    got = rep([remote[f"s3_{fmt}"] + "/", *EVAL, *extra])
    same_report(got, local)
    assert got["inputs"] == [f"{remote[f's3_{fmt}']}/part-{i:05d}.{fmt}" for i in range(3)]
    assert [r["file"] for r in got["top"]["rows"]][0].startswith("s3://dumps/")


def test_globs_files_and_plain_prefixes(remote: dict) -> None:
    base = remote["s3_parquet"]
    local = rep([*remote["parquet"][1:], *EVAL])
    for args in ([f"{base}/part-0000[12].parquet"], [f"{base}/part-00001.parquet",
                                                      f"{base}/part-00002.parquet"]):
        same_report(rep([*args, *EVAL]), local)
    whole = rep(["s3://dumps/day1/**/*.parquet", *EVAL])
    same_report(whole, rep([*remote["parquet"], *EVAL]))
    assert whole["inputs"] == sorted(whole["inputs"])


def test_labels_compare_and_rows_read_from_s3(remote: dict, s3: Any, tmp_path: Path) -> None:
    join = ["--labels", remote["s3_labels"], "--key", "id", "-l", "label", "-p", "p", "-m", "mse"]
    same_report(rep([remote["s3_parquet"], *join]),
                rep([remote["dir"] / "parquet", "--labels", remote["labels"],
                                  "--key", "id", "-l", "label", "-p", "p", "-m", "mse"]))
    a, b = remote["parquet"][0], remote["csv"][0]
    cmp = ["-l", "y", "-p", "p", "--key", "id", "-m", "mse"]
    same_report(rep(["compare", f"{remote['s3_parquet']}/{a.name}",
                                  f"{remote['s3_csv']}/{b.name}", *cmp]),
                rep(["compare", a, b, *cmp]))
    out = tmp_path / "rows.parquet"
    r = cli(["rows", remote["s3_csv"], "-l", "y", "-p", "p", "-m", "mse", "--keep", "id",
                       "-o", "s3://dumps/out/rows.parquet"])
    assert r.code == 0, r.err
    assert "s3://dumps/out/rows.parquet" in r.err
    assert cli(["rows", remote["dir"] / "csv", "-l", "y", "-p", "p", "-m", "mse",
                          "--keep", "id", "-o", out]).code == 0
    got = pq.read_table(pa.BufferReader(s3.get("dumps/out/rows.parquet")))
    want = pq.read_table(out)
    assert got.drop_columns(["file"]).equals(want.drop_columns(["file"]))
    assert [Path(f).name for f in got.column("file").to_pylist()] == \
        [Path(f).name for f in want.column("file").to_pylist()]
    assert s3.list("dumps/out") == ["dumps/out/rows.parquet"]  # no temporary object left
    r = cli(["rows", remote["s3_csv"], "-l", "y", "-p", "p", "-m", "mse",
                       "-o", "s3://dumps/out/rows.parquet"])
    one_line_error(r, "-o s3://dumps/out/rows.parquet: exists", "--force")


def test_states_checks_baselines_and_junit_on_s3(remote: dict, s3: Any, tmp_path: Path) -> None:
    states = []
    for i, part in enumerate(remote["parquet"]):
        uri = f"s3://dumps/states/s{i}.json"
        r = cli([f"{remote['s3_parquet']}/{part.name}", *EVAL, "--by", "seg", "--ci",
                           "--emit-state", uri, "-f", "json"])
        assert r.code == 0, r.err
        states.append(uri)
    merged = rep(["merge", *states])
    same_report(merged, rep([remote["dir"] / "parquet", *EVAL, "--by", "seg", "--ci"]))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(merged))
    s3.put(baseline, "dumps/ci/baseline.json")
    checks = tmp_path / "checks.toml"
    checks.write_text('fail_if = ["mse > 1e9"]\nbaseline = "baseline.json"\n')
    s3.put(checks, "dumps/ci/checks.toml")
    r = cli([remote["s3_parquet"], *EVAL, "--checks", "s3://dumps/ci/checks.toml",
                       "--junit", "s3://dumps/ci/junit.xml", "-f", "json"])
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["passed"] and len(doc["checks"]) == 4  # one threshold, a baseline check per loss
    xml = s3.get("dumps/ci/junit.xml").decode()
    assert xml.startswith("<?xml") and "testcase" in xml
    r = cli([remote["s3_parquet"], *EVAL, "--baseline", "s3://dumps/ci/missing.json"])
    one_line_error(r, "s3://dumps/ci/missing.json", "no such file or object")


def test_missing_objects_buckets_and_a_dead_endpoint(remote: dict, s3: Any) -> None:
    one_line_error(cli(["s3://dumps/nothing.csv", *EVAL]),
                   "s3://dumps/nothing.csv: no such file or object")
    one_line_error(cli(["s3://no-such-bucket/x.csv", *EVAL]),
                   "s3://no-such-bucket/x.csv: no such bucket 'no-such-bucket'")
    one_line_error(cli(["s3://dumps/nothing/*.csv", *EVAL]), "no file matches")
    one_line_error(cli(["merge", "s3://dumps/none.json"]), "s3://dumps/none.json")
    one_line_error(cli(["rows", remote["s3_csv"], *EVAL[:4], "-m", "mse",
                                  "-o", "s3://no-such-bucket/rows.csv"]),
                   "bucket no-such-bucket does not exist")
    dead = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    for args in ([remote["s3_parquet"], *EVAL], ["merge", "s3://dumps/x.json"]):
        r = cli(args, "script", env=dead)
        one_line_error(r, "cannot reach the storage endpoint", "attempts")
        assert args[0] in r.err or "s3://dumps/x.json" in r.err


def test_a_write_that_fails_midway_leaves_no_object(remote: dict, s3: Any, tmp_path: Path) -> None:
    """A bad value in the last shard: rows has written two shards' rows when it fails."""
    bad = shards.frame(50, 3)
    bad.loc[40, "p"] = float("nan")
    shards.write(bad, tmp_path / "bad" / "part-9.parquet")
    prefix = s3.put_tree(tmp_path / "bad", "dumps/bad")
    for out in ("s3://dumps/failed/rows.parquet", "s3://dumps/failed/rows.csv"):
        r = cli(["rows", remote["s3_parquet"] + "/part-00000.parquet", prefix,
                           "-l", "y", "-p", "p", "-m", "mse", "--chunk-size", "16", "-o", out])
        one_line_error(r, "part-9.parquet, row 41", "'p'")
    assert s3.list("dumps/failed") == []  # neither the object nor its temporary


def test_no_credential_in_any_output(remote: dict, s3: Any, tmp_path: Path) -> None:
    """Secrets in the environment appear in no stdout, stderr, report, state or written file."""
    secret = {"AWS_ACCESS_KEY_ID": "AKIAUNIQUEKEYID4242", "AWS_SECRET_ACCESS_KEY": "s3cr3t-Xy9-vALUE",
              "AWS_SESSION_TOKEN": "tok-SESSION-777"}
    texts = []
    r = cli([remote["s3_csv"], *EVAL, "--by", "seg", "--emit-state",
                       "s3://dumps/sec/state.json", "--junit", "s3://dumps/sec/j.xml",
             "--fail-if", "mse > 0", "-f", "json", "--debug"], "script", env=secret)
    assert r.code == 1, r.err
    texts += [r.out, r.err]
    r = cli(["rows", remote["s3_csv"], *EVAL[:4], "-m", "mse", "-o", "s3://dumps/sec/rows.csv"],
            "script", env=secret)
    assert r.code == 0, r.err
    texts += [r.out, r.err]
    for args in (["s3://dumps/none.csv", *EVAL], ["s3://no-bucket-x/a.csv", *EVAL],
                 ["merge", "s3://dumps/sec/none.json"]):
        r = cli(args, "script", env=secret)
        assert r.code == 2
        texts += [r.out, r.err]
    r = cli([remote["s3_csv"], *EVAL], "script", env={**secret, "AWS_ENDPOINT_URL":
                                                      f"http://127.0.0.1:{free_port()}"})
    texts += [r.out, r.err]
    texts += [s3.get(k).decode() for k in s3.list("dumps/sec")]
    assert len(texts) > 12
    for text in texts:
        for value in secret.values():
            assert value not in text


def test_parquet_over_s3_reads_only_the_needed_column_chunks(s3: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """40 wide columns, 2 needed: far less than the file crosses the network."""
    import numpy as np

    rng = np.random.default_rng(5)
    cols = {f"c{i}": rng.normal(size=20_000) for i in range(40)}
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=5_000, compression="none")
    uri = s3.put(path, "dumps/wide/wide.parquet")
    read = [0]
    real = fs.open_input

    def counting(u: str) -> Any:
        f = real(u)

        class Counted:  # a file-like view counting every byte read
            def __getattr__(self, name: str) -> Any:
                return getattr(f, name)

            def read(self, n: int = -1) -> bytes:
                b = f.read(n)
                read[0] += len(b)
                return b

            def read_at(self, n: int, offset: int) -> bytes:
                b = f.read_at(n, offset)
                read[0] += len(b)
                return b

        return pa.PythonFile(Counted(), mode="r")

    monkeypatch.setattr(fs, "open_input", counting)
    doc = rep([uri, "-l", "c3", "-p", "c17", "-m", "mse"])
    want = rep([path, "-l", "c3", "-p", "c17", "-m", "mse"])
    same_report(doc, want)
    size = path.stat().st_size
    assert 0 < read[0] < size * 0.15, (read[0], size)


def test_http_inputs_read_with_ranges_and_retries(remote: dict, tmp_path: Path) -> None:
    server = HttpFiles(remote["dir"])
    try:
        for fmt in ("csv", "parquet"):
            url = f"{server.url}/{fmt}/part-00001.{fmt}"
            same_report(rep([url, *EVAL]), rep([remote[fmt][1], *EVAL]))
        assert any(rng for path, rng in server.handler.requests if path.endswith(".parquet"))
        server.handler.fail_first = 2  # two 503s, then the answer: retried
        url = f"{server.url}/parquet/part-00002.parquet"
        same_report(rep([url, *EVAL]), rep([remote["parquet"][2], *EVAL]))
        one_line_error(cli([f"{server.url}/csv/none.csv", *EVAL]), "no such file")
        one_line_error(cli([f"{server.url}/csv/*.csv", *EVAL]), "one file")
        r = cli(["rows", f"{server.url}/csv/part-00001.csv", *EVAL[:4], "-m", "mse",
                           "-o", f"{server.url}/out.csv"])
        one_line_error(r, "read-only")
        secret = f"http://user:pa55word@127.0.0.1:{server.url.rsplit(':', 1)[1]}/csv/part-00001.csv"
        r = cli([secret + "?sig=SIGNATURE", *EVAL, "-f", "json"])
        assert r.code == 0, r.err
        assert "pa55word" not in r.out and "SIGNATURE" not in r.out
    finally:
        server.stop()


def test_file_uris_and_an_fsspec_protocol(remote: dict) -> None:
    local = rep([remote["dir"] / "csv", *EVAL])
    same_report(rep([f"file://{remote['dir'] / 'csv'}", *EVAL]), local)
    same_report(rep([f"file://{remote['dir']}/csv/part-*.csv", *EVAL]), local)
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    for p in remote["csv"]:
        mem.pipe(f"/dump/{p.name}", p.read_bytes())
    same_report(rep(["memory://dump/", *EVAL]), local)
    one_line_error(cli(["nosuchproto://x/y.csv", *EVAL]), "no file system for nosuchproto://")


def test_display_hides_credentials() -> None:
    assert fs.display("https://u:p@host/a.csv?X-Amz-Signature=abc") == "https://***@host/a.csv"
    assert fs.display("https://token@host/a.csv") == "https://***@host/a.csv"
    assert fs.display("abfs://c@acct.dfs.core.windows.net/x") == "abfs://c@acct.dfs.core.windows.net/x"
    assert fs.display("s3://bucket/key.csv") == "s3://bucket/key.csv"


def test_access_denied_is_one_line(tmp_path: Path) -> None:
    """A server that checks credentials (moto with auth on) and does not know ours."""
    from storage import MotoS3

    strict = MotoS3({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        for target in ("s3://dumps/a.csv", "s3://dumps/day1/"):
            r = cli([target, *EVAL], "script", env=strict.env)
            one_line_error(r, target, "access denied")
        r = cli(["rows", "s3://dumps/a.csv", *EVAL[:4], "-o", "s3://dumps/o.csv"], "script",
                env=strict.env)
        one_line_error(r, "access denied")
    finally:
        strict.stop()
