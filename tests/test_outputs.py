"""Output files (issue #11): never an input, never clobbered, all or nothing, errors that name them.

Every output lossctl writes (``rows -o``, ``--emit-state`` of ``eval`` and
``merge``, ``--junit``) goes through one check and one commit
(:mod:`lossctl.io.sinks`); these tests drive each through the real CLI, in
process (CliRunner) and as real processes, and look at every file of the
directory afterwards: inputs unchanged, no partial file left, the
destination either complete or untouched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cli_run import LOSSCTL, Run, proc_env, run

from lossctl.io import sinks

COLS = ["-l", "y", "-p", "p", "-m", "mse"]


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` (hidden ones too) and its digest."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error(r: Run, *needles: str) -> str:
    """Exit 2 with one line on stderr, no traceback, naming every needle and no partial file."""
    assert r.code == 2, f"exit {r.code}: {r.err}"
    assert "Traceback" not in r.err and r.err.count("\n") == 1, r.err
    assert r.err.startswith("lossctl: error: "), r.err
    assert ".partial" not in r.err, r.err
    for n in needles:
        assert n in r.err, f"{n!r} not in {r.err!r}"
    return r.err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Shards, a label file, a checks file, a baseline and two saved states."""
    rng = np.random.default_rng(5)
    n = 200
    df = pd.DataFrame({"id": np.arange(n), "y": rng.normal(size=n), "p": rng.normal(size=n)})
    shards = tmp_path / "shards"
    shards.mkdir()
    df.iloc[:120].to_csv(shards / "part-0.csv", index=False)
    df.iloc[120:].to_csv(shards / "part-1.csv", index=False)
    f = {"shards": shards, "a": shards / "part-0.csv", "b": shards / "part-1.csv"}
    f["labels"] = tmp_path / "labels.csv"
    df[["id", "y"]].to_csv(f["labels"], index=False)
    f["preds"] = tmp_path / "preds.csv"
    df[["id", "p"]].to_csv(f["preds"], index=False)
    f["baseline"] = tmp_path / "baseline.json"
    r = run("runner", ["eval", f["a"], *COLS, "-f", "json"])
    f["baseline"].write_text(r.out)
    f["checks"] = tmp_path / "checks.toml"
    f["checks"].write_text('fail_if = ["mse > 100"]\nbaseline = "baseline.json"\n'
                           '[max_increase]\nmse = "1000%"\n')
    for i, shard in enumerate((f["a"], f["b"])):
        f[f"s{i}"] = tmp_path / f"s{i}.json"
        assert run("runner", ["eval", shard, *COLS, "--emit-state", f[f"s{i}"]]).code == 0
    return f


# --------------------------------------------------------------------------
# An input is never an output, however it was named
# --------------------------------------------------------------------------

# (command, output option): how each output of each command is asked for
OUTPUTS = {
    "eval --emit-state": lambda f, out: ["eval", f["a"], *COLS, "--emit-state", out],
    "eval --junit": lambda f, out: ["eval", f["a"], *COLS, "--fail-if", "mse > 9", "--junit", out],
    "merge --emit-state": lambda f, out: ["merge", f["s0"], f["s1"], "--emit-state", out],
    "merge --junit": lambda f, out: ["merge", f["s0"], f["s1"], "--fail-if", "mse > 9",
                                     "--junit", out],
    "compare --junit": lambda f, out: ["compare", f["a"], "-l", "y", "--baseline-pred", "p",
                                       "-p", "p", "-m", "mse", "--junit", out],
    "rows -o": lambda f, out: ["rows", f["a"], *COLS, "-o", out],
    "eval --html": lambda f, out: ["eval", f["a"], *COLS, "--html", out],
}


def _link(f: dict[str, Path], kind: str) -> Path:
    link = f["shards"].parent / f"link-to-part-0.{kind}.csv"
    (os.symlink if kind == "symlink" else os.link)(f["a"], link)
    return link


# how the input is named as the output: the input is always f["a"] unless the case adds one
INPUT_AS_OUTPUT: dict[str, Callable[[dict[str, Path]], tuple[list[Any], Path]]] = {
    "same_path": lambda f: ([], f["a"]),
    "other_spelling": lambda f: ([], f["shards"] / "." / ".." / "shards" / "part-0.csv"),
    "symlink_to_input": lambda f: ([], _link(f, "symlink")),
    "hard_link_to_input": lambda f: ([], _link(f, "hardlink")),
    "inside_directory_input": lambda f: ([f["shards"]], f["b"]),
    "matched_by_glob_input": lambda f: ([f["shards"] / "part-*.csv"], f["b"]),
}


@pytest.mark.parametrize("case", list(INPUT_AS_OUTPUT))
@pytest.mark.parametrize("output", [o for o in OUTPUTS if not o.startswith("merge")])
def test_a_data_input_is_never_an_output(files: dict[str, Path], output: str, case: str) -> None:
    extra, out = INPUT_AS_OUTPUT[case](files)
    args = OUTPUTS[output](files, out)
    if extra:  # read the shards another way: a directory or a glob holding the output
        args[1] = extra[0]
    before = snapshot(files["shards"].parent)
    for force in ([], ["--force"]):
        error(run("runner", [*args, *force]), "is an input", output.split()[1])
    assert snapshot(files["shards"].parent) == before


# the non-data inputs: --labels, a checks file, a baseline (named by option or by the checks
# file), a state being merged
OTHER_INPUTS = {
    "labels_file": ("eval", lambda f: ["eval", f["preds"], "--labels", f["labels"], "--key", "id",
                                       *COLS], "labels"),
    "labels_file_by_row": ("rows", lambda f: ["rows", f["preds"], "--labels", f["labels"], *COLS],
                           "labels"),
    "checks_file": ("eval", lambda f: ["eval", f["a"], *COLS, "--checks", f["checks"]], "checks"),
    "baseline_option": ("eval", lambda f: ["eval", f["a"], *COLS, "--baseline", f["baseline"]],
                        "baseline"),
    "baseline_of_the_checks_file": ("eval", lambda f: ["eval", f["a"], *COLS, "--checks",
                                                       f["checks"]], "baseline"),
    "merged_state": ("merge", lambda f: ["merge", f["s0"], f["s1"]], "s1"),
    "merge_baseline": ("merge", lambda f: ["merge", f["s0"], "--baseline", f["baseline"]],
                       "baseline"),
}


@pytest.mark.parametrize("case,option", [
    (case, option) for case, (command, _, _) in OTHER_INPUTS.items()
    for option in (["-o"] if command == "rows" else ["--emit-state", "--junit"])])
def test_a_labels_checks_baseline_or_state_file_is_never_an_output(files: dict[str, Path], case: str,
                                                                  option: str) -> None:
    _, make, victim = OTHER_INPUTS[case]
    before = snapshot(files["shards"].parent)
    for force in ([], ["--force"]):
        error(run("runner", [*make(files), option, files[victim], *force]), "is an input",
              str(files[victim]))
    assert snapshot(files["shards"].parent) == before


def test_stdin_redirected_from_a_file_is_an_input(files: dict[str, Path]) -> None:
    before = snapshot(files["shards"].parent)
    with open(files["a"], "rb") as stdin:
        p = subprocess.run([str(LOSSCTL), "eval", "-", *COLS, "--emit-state", str(files["a"]),
                            "--force"], stdin=stdin, capture_output=True, env=proc_env())
    error(Run(p.returncode, p.stdout.decode(), p.stderr.decode()), "<stdin>")
    assert snapshot(files["shards"].parent) == before


@pytest.mark.parametrize("up", [0, 1])
def test_a_directory_of_parts_never_replaces_the_inputs(files: dict[str, Path], up: int) -> None:
    """rows --engine dask writes a directory: with --force it would replace one holding inputs."""
    before = snapshot(files["shards"].parent)
    out = files["shards"].parents[up - 1] if up else files["shards"]
    r = run("runner", ["rows", files["a"], *COLS, "--engine", "dask", "-o", out, "--force"])
    error(r, "holds an input of this run")
    assert snapshot(files["shards"].parent) == before


def test_one_file_named_for_two_outputs_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    error(run("runner", ["eval", files["a"], *COLS, "--fail-if", "mse > 9", "--emit-state", out,
                         "--junit", tmp_path / "." / "out.json"]), "--emit-state")
    assert not out.exists()


# --------------------------------------------------------------------------
# An existing file is replaced only with --force; the commit never clobbers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_an_existing_output_needs_force(files: dict[str, Path], tmp_path: Path, output: str) -> None:
    out = tmp_path / ("out.csv" if output == "rows -o" else "out.json")
    out.write_text("precious\n")
    error(run("runner", OUTPUTS[output](files, out)), "exists", "--force", str(out))
    assert out.read_text() == "precious\n"
    r = run("runner", [*OUTPUTS[output](files, out), "--force"])
    assert r.code in (0, 1), r.err
    assert out.read_text() != "precious\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


@pytest.fixture(params=["renameat2", "link", "exclusive_create"])
def commit_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way the no-replace commit can be made: renameat2, else link + unlink, else O_EXCL."""
    if request.param == "renameat2":
        assert sinks._renameat2() is not None, "this machine's libc should have renameat2"
    else:
        monkeypatch.setattr(sinks, "_renameat2", lambda: None)
    if request.param == "exclusive_create":
        def no_links(src: Any, dst: Any) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some network file systems
        monkeypatch.setattr(os, "link", no_links)
    return request.param


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_a_file_that_appears_during_the_run_is_never_clobbered(
        files: dict[str, Path], tmp_path: Path, output: str, commit_path: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / ("out.csv" if output == "rows -o" else "out.json")
    real_fsync = os.fsync

    def another_run_wins(fd: int) -> None:  # just before the commit, someone else writes OUT
        if not out.exists():
            out.write_text("theirs\n")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", another_run_wins)
    error(run("runner", OUTPUTS[output](files, out)), "appeared", str(out))
    assert out.read_text() == "theirs\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_each_commit_path_gives_the_complete_file(files: dict[str, Path], tmp_path: Path,
                                                  output: str, commit_path: str) -> None:
    out = tmp_path / ("out.csv" if output == "rows -o" else "out.json")
    r = run("runner", OUTPUTS[output](files, out))
    assert r.code in (0, 1), r.err
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    if output.endswith("--emit-state"):
        assert json.loads(out.read_text())["kind"] == "lossctl-state"
    elif output.endswith("--html"):
        assert out.read_text().startswith("<!DOCTYPE html>")
    elif output.endswith("--junit"):
        assert out.read_text().startswith("<?xml")
    else:
        assert pacsv.read_csv(out).num_rows == 120


def test_with_force_the_appeared_file_is_replaced(files: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.json"
    real_fsync = os.fsync

    def appear(fd: int) -> None:
        if not out.exists():
            out.write_text("theirs\n")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", appear)
    r = run("runner", [*OUTPUTS["eval --emit-state"](files, out), "--force"])
    assert r.code == 0, r.err
    assert json.loads(out.read_text())["kind"] == "lossctl-state"


def test_two_concurrent_runs_one_wins(tmp_path: Path) -> None:
    """Two processes write the same OUT: one succeeds, the other exits 2; OUT is complete."""
    src = tmp_path / "big.csv"
    rng = np.random.default_rng(1)
    n = 300_000
    pd.DataFrame({"y": rng.integers(0, 100, n), "p": rng.integers(0, 100, n)}).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    cmd = [str(LOSSCTL), "rows", str(src), *COLS, "-o", str(out), "--chunk-size", "5000"]
    procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=proc_env()) for _ in range(2)]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        results.append(Run(p.returncode, "", err.decode()))
    assert sorted(r.code for r in results) == [0, 2], results
    loser = next(r for r in results if r.code == 2)
    error(loser, str(out))
    assert "exists" in loser.err or "appeared" in loser.err
    assert pq.read_table(out).num_rows == n
    assert sorted(os.listdir(tmp_path)) == ["big.csv", "out.parquet"]


# --------------------------------------------------------------------------
# Output errors name the path the user gave, exit 2, leave nothing behind
# --------------------------------------------------------------------------


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_missing_directory(files: dict[str, Path], tmp_path: Path, output: str) -> None:
    out = tmp_path / "no" / "such" / ("out.csv" if output == "rows -o" else "out.json")
    error(run("runner", OUTPUTS[output](files, out)), str(out), "does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_output_that_is_a_directory(files: dict[str, Path], tmp_path: Path, output: str) -> None:
    out = tmp_path / ("out.csv" if output == "rows -o" else "out.json")
    out.mkdir()
    for force in ([], ["--force"]):
        error(run("runner", [*OUTPUTS[output](files, out), *force]), str(out), "is a directory")
    assert out.is_dir() and not os.listdir(out)


def test_directory_that_vanishes_during_the_run(files: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The check before the run passed; the error at the end still names --junit's path."""
    from lossctl.report import render

    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    real = render.junit_xml

    def remove_dir_first(doc: dict) -> str:
        out_dir.rmdir()
        return real(doc)

    monkeypatch.setattr(render, "junit_xml", remove_dir_first)
    error(run("runner", OUTPUTS["eval --junit"](files, out_dir / "j.xml")),
          f"--junit {out_dir / 'j.xml'}: ", f"directory {out_dir} does not exist")


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_full_disk_at_the_commit(files: dict[str, Path], tmp_path: Path, output: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC where a full disk (or an NFS quota) often shows first: flushing the file to disk."""
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / ("out.csv" if output == "rows -o" else "out.json")
    before = snapshot(tmp_path)
    error(run("runner", OUTPUTS[output](files, out)), str(out), "No space left on device")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("output", [o for o in OUTPUTS if o != "rows -o"])
def test_dev_full(files: dict[str, Path], output: str) -> None:
    """A real ENOSPC from a real process: /dev/full (a device, so written in place, not renamed)."""
    r = run("script", OUTPUTS[output](files, "/dev/full"))
    error(r, f"{output.split()[1]} /dev/full: cannot write: No space left on device")
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_device_outputs_are_written_in_place(files: dict[str, Path]) -> None:
    r = run("script", [*OUTPUTS["eval --junit"](files, "/dev/null"), "--emit-state", "/dev/stderr"])
    assert r.code == 0, r.err
    assert json.loads(r.err)["kind"] == "lossctl-state"
    assert not os.path.isfile("/dev/null")


def test_file_size_limit_while_writing_rows(tmp_path: Path) -> None:
    """A real write error in the middle of a per-row file (RLIMIT_FSIZE: EFBIG) from a real process."""
    src = tmp_path / "in.csv"
    rng = np.random.default_rng(2)
    n = 100_000
    pd.DataFrame({"y": rng.normal(size=n), "p": rng.normal(size=n)}).to_csv(src, index=False)
    before = snapshot(tmp_path)
    out = tmp_path / "rows.csv"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    p = subprocess.run([str(LOSSCTL), "rows", str(src), *COLS, "-o", str(out)], capture_output=True,
                       stdin=subprocess.DEVNULL, env=proc_env(), preexec_fn=limit, timeout=120)
    error(Run(p.returncode, "", p.stderr.decode()), f"-o {out}: cannot write: File too large")
    assert snapshot(tmp_path) == before


def _without_root_powers() -> None:
    """In the child, before exec: drop the capabilities that let root ignore file permissions."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A directory the lossctl process cannot write in, and how to start such a process.

    As root, permissions apply only once the process has lost CAP_DAC_OVERRIDE
    (dropped from its bounding set before exec).
    """
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    kw: dict[str, Any] = {"preexec_fn": _without_root_powers} if os.geteuid() == 0 else {}
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(ro / 'x')!r}, 'w')"],
                               capture_output=True, **kw)
    except subprocess.SubprocessError:
        probe = None
    if probe is None or probe.returncode == 0:
        os.chmod(ro, 0o755)
        pytest.skip("no way to make a directory read-only for a child process here")
    yield ro, kw
    os.chmod(ro, 0o755)


@pytest.mark.parametrize("option", ["-o", "--emit-state", "--junit"])
def test_read_only_directory(files: dict[str, Path], readonly_dir: tuple[Path, dict[str, Any]],
                             option: str) -> None:
    ro, kw = readonly_dir
    out = ro / ("out.csv" if option == "-o" else "out.json")
    args = ["rows", files["a"], *COLS, "-o", out] if option == "-o" else \
        ["eval", files["a"], *COLS, "--fail-if", "mse > 9", option, out]
    p = subprocess.run([str(LOSSCTL), *map(str, args)], capture_output=True, stdin=subprocess.DEVNULL,
                       env=proc_env(), timeout=120, **kw)
    error(Run(p.returncode, "", p.stderr.decode()), f"{option} {out}", "permission denied")
    assert os.listdir(ro) == []


@pytest.mark.parametrize("option", ["-o", "--emit-state", "--junit"])
def test_permission_denied_when_opening(files: dict[str, Path], tmp_path: Path, option: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory looked writable (os.access) but creating the file is refused (EACCES, EROFS)."""
    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    real_open = open

    def refuse(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if "w" in mode and str(file).endswith(".partial"):
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", refuse)
    out = tmp_path / ("out.csv" if option == "-o" else "out.json")
    args = ["rows", files["a"], *COLS, "-o", out] if option == "-o" else \
        ["eval", files["a"], *COLS, "--fail-if", "mse > 9", option, out]
    error(run("runner", args), f"{option} {out}: cannot write: Read-only file system")
    assert not out.exists()


def test_error_names_the_target_not_the_partial_file(tmp_path: Path) -> None:
    e = sinks.Target(str(tmp_path / "x" / "out.json"), "--junit").error(
        FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "x" / ".out.json.partial")))
    assert str(e) == f"--junit {tmp_path / 'x' / 'out.json'}: cannot write: directory " \
                     f"{tmp_path / 'x'} does not exist"


def test_rename_no_replace_never_replaces(tmp_path: Path, commit_path: str) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("a")
    b.write_text("b")
    with pytest.raises(FileExistsError):
        sinks.rename_no_replace(str(a), str(b))
    assert (a.read_text(), b.read_text()) == ("a", "b")
    sinks.rename_no_replace(str(a), str(c))
    assert not a.exists() and c.read_text() == "a"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize("out", ["out.csv", "out.tsv", "-"])
@pytest.mark.parametrize("column", ["s", "l"])
def test_a_nested_kept_column_in_a_text_file(tmp_path: Path, out: str, column: str) -> None:
    """A struct or list column kept in CSV/TSV is one line naming it; Parquet keeps it."""
    import pyarrow as pa

    data = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"y": [1.0, 2.0], "p": [1.5, 2.0], "s": [{"a": 1}, {"a": 2}],
                             "l": [[1, 2], [3]]}), data)
    target = out if out == "-" else str(tmp_path / out)
    r = run("runner", ["rows", data, *COLS, "--keep", column, "-o", target])
    error(r, f"--keep {column!r}", "Parquet")
    assert not list(tmp_path.glob("out*"))
    kept = tmp_path / "kept.parquet"
    assert run("runner", ["rows", data, *COLS, "--keep", column, "-o", kept]).code == 0
    assert pq.read_table(kept).column(column).to_pylist() == \
        pq.read_table(data).column(column).to_pylist()
