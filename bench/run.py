#!/usr/bin/env python3
"""Benchmark ``lossctl eval`` against polars, DuckDB, pandas+scikit-learn and a
naive pyarrow loop.

Generates deterministic data files (``bench/generate.py``) in a temporary
directory, runs every tool in its own subprocess (wall time and the child's
peak RSS via ``os.wait4``), prints a table per task and checks that all tools
agree with a near-exact ``math.fsum`` reference.

Every task's wall-time target is against the fastest of polars and DuckDB
measured in the same run.  The ``memory`` task runs lossctl alone on the
regression CSV and Parquet files at ``--rows`` and a tenth of that: streaming
means its peak RSS must not grow with the file.  The report ends with a
summary of the performance targets measured in the run (``met``/``MISSED``),
also saved with ``--json``.

The driver uses only the standard library, numpy and pyarrow; the peers live in
``bench/peers.py`` and import their libraries in their own process.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from generate import (
    Dataset,
    log,
    make_join,
    make_multiclass,
    make_regression,
    make_slices,
    make_wide,
    write_tiny_csv,
)

HERE = Path(__file__).resolve().parent
PEERS_SCRIPT = HERE / "peers.py"

TOOLS = ("lossctl", "polars", "duckdb", "pandas", "naive")
TASKS = (
    "csv", "parquet", "multiclass", "memory", "startup", "slices",
    "join", "wide", "gzip", "rowgroups", "csv-by", "ci",
)
TOOL_LABELS = {"pandas": "pandas+sklearn", "naive": "naive pyarrow"}
# The peers every wall-time target is measured against (the fastest of them).
FAST_PEERS = ("polars", "duckdb")
# Task kinds only polars and DuckDB implement (group-by, list column, join);
# the tasks added for issue 14 run these two peers only.
FAST_PEER_KINDS = ("slices", "wide", "join")
# Modules a peer needs; the driver only looks them up, it never imports them.
PEER_MODULES = {
    "polars": ["polars"],
    "duckdb": ["duckdb"],
    "pandas": ["pandas", "sklearn", "scipy"],
    "naive": ["pyarrow", "numpy"],
}
REGRESSION_METRICS = ("mse", "rmse", "mae")
MULTICLASS_METRICS = ("sparse_softmax_ce",)

STARTUP_RUNS = 10
REL_TOL = 1e-12
# Targets: `eval --by` (100 slices, 10M rows) peaks at most 1.5x the RSS of
# plain eval; `--ci` adds at most 30% to the wall time.
BY_RSS_TARGET = 1.5
CI_WALL_TARGET = 1.3
# Every timed task: lossctl's median wall at most WALL_TARGET times the
# fastest peer's (FAST_PEERS), peak RSS at most RSS_TARGETS_MIB (default
# DEFAULT_RSS_MIB); a key join may add the label file's key and label columns
# in memory to JOIN_RSS_EXTRA_MIB.
WALL_TARGET = 1.0
DEFAULT_RSS_MIB = 250
RSS_TARGETS_MIB = {"csv": 200, "parquet": 200}
JOIN_RSS_EXTRA_MIB = 150
# `memory`: the file is MEMORY_SHRINK times smaller than --rows; the two peak
# RSS values must be within 20% of each other (max / min <= 1.2).
MEMORY_SHRINK = 10
MEMORY_RSS_TARGET = 1.2
# `startup`: `lossctl --version` strictly below this; eval of the 10-row CSV
# at most DuckDB's (python + import duckdb + the query).
VERSION_WALL_TARGET_S = 0.1
STARTUP_PEER = "duckdb"
# sizes of the tasks added for issue 14
WIDE_CLASSES = 1000
WIDE_CHUNK = 4096


# --- running and measuring children -------------------------------------------


@dataclass
class Run:
    """One measured child process."""

    ok: bool
    wall_s: float
    maxrss_kib: int
    stdout: str
    error: str = ""


# A direct child of this (numpy/pyarrow-laden) driver would report the driver's
# RSS as its own ru_maxrss: Linux keeps the pre-exec high-water mark across
# exec.  So a tiny launcher (python -I -S, ~10 MB) spawns the command, reaps it
# with os.wait4 and reports wall time and rusage through a pipe; its own start-up
# is not timed.
LAUNCHER = """
import json, os, signal, sys, time
fd, timeout, argv = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
os.set_inheritable(fd, False)
started = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as exc:
    os.write(fd, json.dumps({"error": f"cannot start: {exc}"}).encode())
    sys.exit(0)
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
signal.setitimer(signal.ITIMER_REAL, 0)
os.write(fd, json.dumps({"wall": wall, "maxrss_kib": usage.ru_maxrss,
                         "code": os.waitstatus_to_exitcode(status)}).encode())
"""


def measure(cmd: list[str], timeout: float) -> Run:
    """Run ``cmd`` via the launcher; return its wall time and own peak RSS."""
    read_fd, write_fd = os.pipe()
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(write_fd), str(timeout), *cmd]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            subprocess.run(
                launcher,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(write_fd,),
                timeout=timeout + 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Run(False, 0.0, 0, "", "launcher hung")
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            report = json.loads(pipe.read() or b'{"error": "launcher failed"}')
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace").strip()
    if "error" in report:
        return Run(False, 0.0, 0, stdout, report["error"])
    run = Run(report["code"] == 0, report["wall"], report["maxrss_kib"], stdout)
    if run.wall_s >= timeout:
        run.ok, run.error = False, f"timed out after {timeout:.0f} s"
    elif not run.ok:
        tail = stderr.splitlines()[-1] if stderr else "(no stderr)"
        run.error = f"exit {report['code']}: {tail[:200]}"
    return run


def find_lossctl() -> str | None:
    """The lossctl console script of this venv, else the one on PATH."""
    local = Path(sys.executable).parent / "lossctl"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("lossctl")


def precompile_lossctl() -> None:
    """Byte-compile lossctl's modules, as pip does for a regular install.

    An editable install run with PYTHONDONTWRITEBYTECODE set would otherwise
    compile its sources on every start (~60 ms), which no installed peer pays.
    """
    spec = importlib.util.find_spec("lossctl")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


def lossctl_args(kind: str, path: str, labels: str | None = None) -> list[str]:
    """Arguments of ``lossctl eval`` for a task kind (``labels``: the label file of a join)."""
    if kind == "multiclass":
        cols = ["-l", "label", "-p", "logit_*", "-m", "sparse_softmax_ce"]
    elif kind == "wide":
        cols = ["-l", "label", "-p", "logits", "-m", "sparse_softmax_ce"]
    else:
        cols = ["-l", "y", "-p", "p", "-m", ",".join(REGRESSION_METRICS)]
        if kind == "slices":
            cols += ["--by", "slice"]
        if kind == "join":
            assert labels is not None
            cols += ["--labels", labels, "--key", "id"]
    return ["eval", path, *cols, "-f", "json", "--no-progress"]


def parse_output(tool: str, stdout: str) -> dict[str, Any]:
    """Normalise a tool's JSON stdout to {rows, values, versions, slices}.

    ``slices`` maps a slice key ("/"-joined values) to {"rows": n, LOSS: value};
    it is present only when the output has slices.
    """
    data = json.loads(stdout)
    if tool != "lossctl":
        return {k: data[k] for k in ("rows", "values", "versions", "slices") if k in data}
    values = {}
    for name, entry in data["losses"].items():
        values[name] = float(entry["value"] if isinstance(entry, dict) else entry)
    parsed = {"rows": data.get("rows"), "values": values, "versions": {"lossctl": data.get("lossctl")}}
    if "slices" in data:
        slices: dict[str, dict[str, float]] = {}
        for item in data["slices"]:
            key = "/".join(str(v) for v in item["key"].values())
            if key in slices:
                raise ValueError(f"slice {key!r} reported twice")
            losses = {k: float(v["value"] if isinstance(v, dict) else v) for k, v in item["losses"].items()}
            slices[key] = {"rows": item["rows"], **losses}
        parsed["slices"] = slices
    return parsed


@dataclass
class Entry:
    """All measurements of one tool (or variant) on one task."""

    label: str
    cmd: list[str]
    tool: str | None = None  # whose JSON output to parse; None: don't parse
    status: str = "ok"
    walls_s: list[float] = field(default_factory=list)
    maxrss_kib: list[int] = field(default_factory=list)
    rows: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)  # max run-to-run rel diff
    slices: dict[str, dict[str, float]] | None = None  # last run's slices, if any

    @property
    def wall_s(self) -> float | None:
        """Median wall time."""
        return statistics.median(self.walls_s) if self.ok else None

    @property
    def rss_mib(self) -> float | None:
        """Max peak RSS over the repeats, in MiB."""
        return max(self.maxrss_kib) / 1024 if self.ok else None

    @property
    def ok(self) -> bool:
        """True if every run succeeded."""
        return self.status == "ok" and bool(self.walls_s)


def run_entries(task: str, entries: dict[str, Entry], repeat: int, timeout: float) -> None:
    """Run every entry ``repeat`` times, interleaved, stopping an entry on failure."""
    for rep in range(repeat):
        for entry in entries.values():
            if entry.status != "ok":
                continue
            run = measure(entry.cmd, timeout)
            if run.ok and entry.tool:
                try:
                    parsed = parse_output(entry.tool, run.stdout)
                except (ValueError, KeyError, TypeError) as exc:
                    run.ok, run.error = False, f"unreadable output: {exc!r}"[:200]
                else:
                    for name, value in parsed["values"].items():
                        if name in entry.values:
                            diff = rel_diff(value, entry.values[name])
                            entry.spread[name] = max(entry.spread.get(name, 0.0), diff)
                    if entry.slices is not None and parsed.get("slices") is not None:
                        diff = slice_diff(parsed["slices"], entry.slices)
                        entry.spread["slices"] = max(entry.spread.get("slices", 0.0), diff)
                    entry.rows, entry.values = parsed["rows"], parsed["values"]
                    entry.versions = parsed["versions"]
                    entry.slices = parsed.get("slices")
            if not run.ok:
                entry.status = f"FAILED ({run.error})"
                log(f"  {task:<10} {entry.label:<26} run {rep + 1}/{repeat}: {entry.status}")
                continue
            entry.walls_s.append(run.wall_s)
            entry.maxrss_kib.append(run.maxrss_kib)
            log(
                f"  {task:<10} {entry.label:<26} run {rep + 1}/{repeat}: "
                f"{run.wall_s:8.3f} s {run.maxrss_kib / 1024:8.1f} MiB"
            )


def tool_entries(
    tools: list[str], kind: str, path: str, lossctl: str | None, labels: str | None = None
) -> dict[str, Entry]:
    """Build the entries (command lines) for the selected tools on one file (two for a join)."""
    entries: dict[str, Entry] = {}
    for tool in tools:
        label = TOOL_LABELS.get(tool, tool)
        if tool == "lossctl":
            entry = Entry(label, [lossctl or "lossctl", *lossctl_args(kind, path, labels)], tool)
            if lossctl is None:
                entry.status = "FAILED (lossctl executable not found)"
        else:
            cmd = [sys.executable, str(PEERS_SCRIPT), tool, kind, path, *([labels] if labels else [])]
            entry = Entry(label, cmd, tool)
            missing = [m for m in PEER_MODULES[tool] if not importlib.util.find_spec(m)]
            if kind in FAST_PEER_KINDS and tool not in FAST_PEERS:
                entry.status = f"skipped (no {kind} peer)"
            elif missing:
                entry.status = f"skipped (not importable: {', '.join(missing)})"
        entries[tool] = entry
    return entries


# --- reporting ------------------------------------------------------------------


def load_average() -> str:
    """1/5/15-minute load average as text."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(value: float | None, spec: str) -> str:
    """Format a number, '-' for missing."""
    return "-" if value is None else format(value, spec)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Render a plain-text table with left-aligned first column."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = []
    for i, row in enumerate([headers, *rows]):
        cells = [
            c.ljust(w) if j in (0, len(row) - 1) else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def timing_table(entries: dict[str, Entry], base_key: str) -> str:
    """Per-tool wall, RSS, ratios against ``base_key`` and the computed values."""
    base = entries.get(base_key)
    base_wall = base.wall_s if base and base.ok else None
    rows = []
    for entry in entries.values():
        wall = entry.wall_s
        ratio = wall / base_wall if wall and base_wall else None
        inverse = base_wall / wall if wall and base_wall else None
        values = " ".join(f"{k}={v:.10g}" for k, v in entry.values.items())
        if entry.slices is not None:
            values = f"{values} + {len(entry.slices)} slices".strip(" +")
        rows.append(
            [
                entry.label,
                fmt(wall, ".3f"),
                fmt(entry.rss_mib, ".0f"),
                fmt(ratio, ".2f"),
                fmt(inverse, ".2f"),
                "-" if entry.rows is None else f"{entry.rows:,}",
                values if entry.ok else entry.status,
            ]
        )
    headers = ["tool", "wall s", "peak RSS MiB", "wall/lossctl", "lossctl/wall", "rows", "values"]
    return table(headers, rows)


def rel_diff(a: float, b: float) -> float:
    """Symmetric relative difference."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def slice_diff(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> float:
    """Max relative difference over the slices and losses both have (inf if keys differ)."""
    if a.keys() != b.keys():
        return math.inf
    diffs = [rel_diff(a[k][m], b[k][m]) for k in a for m in a[k] if m in b[k]]
    return max(diffs, default=0.0)


def agreement(
    entries: dict[str, Entry], reference: dict[str, float], expected_rows: int
) -> tuple[str, dict[str, Any]]:
    """Compare every tool's values with the fsum reference and with each other."""
    done = [e for e in entries.values() if e.ok and e.tool]
    lines, summary = [], {}
    for metric, ref in reference.items():
        have = [(e, e.values[metric]) for e in done if metric in e.values]
        missing = [e.label for e in done if metric not in e.values]
        pairwise = max((rel_diff(a, b) for _, a in have for _, b in have), default=0.0)
        verdict = "agree" if pairwise <= REL_TOL and not missing else "DISAGREE"
        lines.append(
            f"  {metric}: reference (fsum) {ref!r}; max pairwise rel diff "
            f"{pairwise:.2e} -> {verdict} (tol {REL_TOL:g})"
        )
        for e, value in have:
            diff = rel_diff(value, ref)
            flag = "" if diff <= REL_TOL else "   <-- DISAGREES"
            if e.spread.get(metric):
                flag += f"   (varies between runs by {e.spread[metric]:.2e})"
            lines.append(f"    {e.label:<26} {value!r:<24} rel diff vs ref {diff:.2e}{flag}")
        for label in missing:
            lines.append(f"    {label:<26} (no {metric} in output)   <-- DISAGREES")
        summary[metric] = {
            "reference": ref,
            "max_pairwise_rel_diff": pairwise,
            "verdict": verdict,
            "missing": missing,
        }
    for e in done:
        if e.rows is not None and e.rows != expected_rows:
            lines.append(f"  {e.label}: rows {e.rows:,} != {expected_rows:,}   <-- DISAGREES")
    return "\n".join(lines), summary


def check_slices(entries: dict[str, Entry], dataset: Dataset) -> tuple[str, dict[str, Any]]:
    """Check every tool's slices against the per-slice fsum reference.

    The ``lossctl --by`` entry must also report exactly the plain run's overall
    values; that check is done by the caller.
    """
    expected = dataset.slices
    lines, summary = [], {}
    for key, entry in entries.items():
        if not entry.ok or not entry.tool or entry.slices is None:
            continue
        got = entry.slices
        missing = sorted(expected.keys() - got.keys())
        extra = sorted(got.keys() - expected.keys())
        bad_rows = [k for k in expected.keys() & got.keys() if got[k].get("rows") != expected[k]["rows"]]
        worst, worst_at = 0.0, ""
        for name in sorted(expected.keys() & got.keys()):
            for metric in REGRESSION_METRICS:
                if metric not in got[name]:
                    missing.append(f"{name}:{metric}")
                    continue
                diff = rel_diff(got[name][metric], expected[name][metric])
                if diff > worst or not worst_at:
                    worst, worst_at = diff, f"{name} {metric}"
        ok = not (missing or extra or bad_rows) and worst <= REL_TOL
        verdict = "agree" if ok else "DISAGREE"
        text = (
            f"  {entry.label:<26} {len(got)} slices (expected {len(expected)}); "
            f"max rel diff vs ref {worst:.2e} ({worst_at}) -> {verdict} (tol {REL_TOL:g})"
        )
        if entry.spread.get("slices"):
            text += f"   (slices vary between runs by {entry.spread['slices']:.2e})"
        lines.append(text)
        for what, items in (("missing", missing), ("unexpected", extra), ("wrong row count", bad_rows)):
            if items:
                lines.append(f"    {what}: {', '.join(items[:10])}{' ...' if len(items) > 10 else ''}")
        summary[key] = {
            "slices": len(got),
            "expected_slices": len(expected),
            "max_rel_diff": worst,
            "worst": worst_at,
            "missing": missing,
            "unexpected": extra,
            "wrong_rows": bad_rows,
            "verdict": verdict,
        }
    return "\n".join(lines), summary


def ratios(num: Entry, den: Entry) -> tuple[float, float] | None:
    """(median wall, max peak RSS) of ``num`` relative to ``den``; None if either failed."""
    if not (num.ok and den.ok and num.wall_s and den.wall_s and num.rss_mib and den.rss_mib):
        return None
    return num.wall_s / den.wall_s, num.rss_mib / den.rss_mib


def within(value: float, target: float, strict: bool = False) -> str:
    """'met' or 'MISSED' against an upper bound (``strict``: the value must be below it)."""
    return "met" if (value < target if strict else value <= target) else "MISSED"


@dataclass
class Target:
    """One performance target and this run's value for it (None: not measured)."""

    name: str
    limit: float
    unit: str  # "x" (a ratio), "MiB" or "s"
    value: float | None = None
    strict: bool = False  # the value must be below the limit (else at most the limit)
    note: str = ""  # why it was not measured

    @property
    def verdict(self) -> str:
        """'met', 'MISSED' or 'not measured'."""
        return "not measured" if self.value is None else within(self.value, self.limit, self.strict)

    def cells(self) -> list[str]:
        """Name, measured value, bound and verdict as table cells."""
        spec = {"x": ".2f", "MiB": ".0f", "s": ".3f"}[self.unit]
        sep = "" if self.unit == "x" else " "
        value = "-" if self.value is None else f"{self.value:{spec}}{sep}{self.unit}"
        limit = {"x": f"{self.limit:.2f}", "s": f"{self.limit:g}"}.get(self.unit, f"{self.limit:.0f}")
        bound = f"{'<' if self.strict else '<='} {limit}{sep}{self.unit}"
        verdict = f"{self.verdict} ({self.note})" if self.value is None and self.note else self.verdict
        return [self.name, value, bound, verdict]


def measured(results: dict[str, Any], task: str, key: str, what: str) -> tuple[float | None, str]:
    """``what`` ("wall_s" or "rss_mib") of one entry of a stored task, or None and why not."""
    record = results.get(task, {}).get("tools", {}).get(key)
    if record is None:
        return None, f"{key.split()[0]} not among --tools"
    if record[what] is None:
        return None, f"{TOOL_LABELS.get(key, key)} {record['status']}"
    return record[what], ""


def measured_ratio(
    results: dict[str, Any], task: str, num: str, den: str, what: str
) -> tuple[float | None, str]:
    """``what`` of entry ``num`` over that of ``den`` in a stored task, or None and why not."""
    (a, why_a), (b, why_b) = measured(results, task, num, what), measured(results, task, den, what)
    if a is None or b is None or not b:
        return None, "; ".join(dict.fromkeys(w for w in (why_a, why_b) if w))
    return a / b, ""


def fastest_peer(results: dict[str, Any], task: str) -> tuple[str | None, float | None, str]:
    """(label, median wall) of the fastest of FAST_PEERS in a stored task, or why there is none."""
    tools = results.get(task, {}).get("tools", {})
    walls = {k: tools[k]["wall_s"] for k in FAST_PEERS if k in tools and tools[k]["wall_s"]}
    if not walls:
        why = "; ".join(f"{k} {tools[k]['status']}" for k in FAST_PEERS if k in tools)
        return None, None, why or "no peer among --tools"
    best = min(walls, key=walls.__getitem__)
    return TOOL_LABELS.get(best, best), walls[best], ""


def peer_targets(results: dict[str, Any], task: str) -> list[Target]:
    """Wall vs the fastest peer and peak RSS of each lossctl entry a task marked for targets."""
    record = results[task]
    peer, peer_wall, why = fastest_peer(results, task)
    targets = []
    for key in record["targets"]["entries"]:
        label = record["tools"][key]["label"] if key in record["tools"] else key
        wall, note = measured(results, task, key, "wall_s")
        ratio = wall / peer_wall if wall is not None and peer_wall else None
        name = f"{task}: {label} wall / fastest peer ({peer or '-'})"
        targets.append(Target(name, WALL_TARGET, "x", ratio, note=note or why))
        value, note = measured(results, task, key, "rss_mib")
        targets.append(Target(f"{task}: {label} peak RSS", record["targets"]["rss_mib"], "MiB", value,
                              note=note))
    return targets


def collect_targets(args: argparse.Namespace, results: dict[str, Any]) -> list[Target]:
    """The targets of the tasks selected in this run, from the stored results.

    A task that was not selected has no line; a selected one whose tool did not
    run or failed is 'not measured', with the reason.
    """
    targets = []
    for task, record in results.items():
        if isinstance(record, dict) and "targets" in record and task != "startup":
            targets += peer_targets(results, task)
    if "memory" in args.tasks:
        memory = results.get("memory", {})
        for kind in ("csv", "parquet"):
            result = memory.get("formats", {}).get(kind, {})
            name = f"memory: {kind} peak RSS, max/min of 2 sizes"
            note = result.get("note") or memory.get("note", "")
            targets.append(Target(name, MEMORY_RSS_TARGET, "x", result.get("spread"), note=note))
    if "startup" in args.tasks:
        value, note = measured(results, "startup", "lossctl --version", "wall_s")
        targets.append(Target("startup: lossctl --version", VERSION_WALL_TARGET_S, "s", value, True, note))
        value, note = measured_ratio(results, "startup", "lossctl", STARTUP_PEER, "wall_s")
        name = f"startup: lossctl eval of the 10-row CSV / {STARTUP_PEER}'s"
        targets.append(Target(name, WALL_TARGET, "x", value, note=note))
    if "ci" in args.tasks:
        for kind in ("parquet", "csv"):
            value, note = measured_ratio(results, f"ci_overhead_{kind}", "lossctl --ci", "lossctl", "wall_s")
            name = f"--ci: wall / plain eval wall, {kind}"
            targets.append(Target(name, CI_WALL_TARGET, "x", value, note=note))
    if "slices" in args.tasks:
        value, note = measured_ratio(results, "slices", "lossctl --by", "lossctl", "rss_mib")
        targets.append(Target("--by slice: peak RSS / plain eval RSS", BY_RSS_TARGET, "x", value, note=note))
    return targets


def report_targets(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Print the closing targets summary and store it as ``results["targets"]``."""
    targets = collect_targets(args, results)
    results["targets"] = [{**asdict(t), "verdict": t.verdict} for t in targets]
    if not targets:
        return
    print("\n== targets (median wall time, largest peak RSS of the runs)")
    print(table(["target", "measured", "bound", "verdict"], [t.cells() for t in targets]))
    counts = [(v, sum(t.verdict == v for t in targets)) for v in ("met", "MISSED", "not measured")]
    print(", ".join(f"{n} {v}" for v, n in counts if n))


# --- tasks ------------------------------------------------------------------------


def report_task(
    title: str,
    entries: dict[str, Entry],
    dataset: Dataset | None,
    base_key: str,
    results: dict[str, Any],
    name: str,
    overall: list[str] | None = None,
    targets: list[str] | None = None,
    rss_mib: float = DEFAULT_RSS_MIB,
) -> None:
    """Print one task's table and agreement check; store it in ``results``.

    ``overall`` restricts the check of the overall values to these entries
    (default: all).  ``targets`` names the entries whose wall time (against
    the fastest peer) and peak RSS (at most ``rss_mib``) are targets.
    """
    print(f"\n== {title}")
    print(timing_table(entries, base_key))
    summary = None
    checked = entries if overall is None else {k: e for k, e in entries.items() if k in overall}
    if dataset is not None and checked:
        text, summary = agreement(checked, dataset.reference, dataset.rows)
        labels = ", ".join(e.label for e in checked.values())
        print("agreement:" if overall is None else f"agreement ({labels}):")
        print(text)
        exact_text, summary["exact"] = exactness(checked, dataset.reference)
        if exact_text:
            print(exact_text)
    results[name] = {
        "title": title,
        "rows": dataset.rows if dataset else None,
        "reference": dataset.reference if dataset else None,
        "agreement": summary,
        "tools": {k: {**asdict(e), "wall_s": e.wall_s, "rss_mib": e.rss_mib} for k, e in entries.items()},
    }
    if targets:
        results[name]["targets"] = {"entries": targets, "rss_mib": rss_mib}


def exactness(entries: dict[str, Entry], reference: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """lossctl's values against the exact reference, bit for bit, and its variants against each other.

    The regression means are exact sums rounded once, so they must be the very
    float of the reference.  A softmax loss goes through ``exp``, which is not
    correctly rounded (per row, in C or libm): its check is the 1e-12 one
    above, plus every lossctl variant (chunk sizes) giving the same bits.
    """
    ours = [e for e in entries.values() if e.ok and e.tool == "lossctl"]
    if not ours:
        return "", {}
    lines, summary = [], {}
    exact_keys = [k for k in reference if k in REGRESSION_METRICS]
    for e in ours:
        differ = [k for k in exact_keys if e.values.get(k) != reference[k]]
        if exact_keys:
            verdict = "identical" if not differ else "DIFFER"
            extra = "" if not differ else f" ({', '.join(differ)})"
            lines.append(f"  {e.label}: values bit-identical to the exact reference: {verdict}{extra}")
            summary[e.label] = verdict
    if len(ours) > 1:
        same = all(e.values == ours[0].values for e in ours[1:])
        lines.append(f"  lossctl variants ({', '.join(e.label for e in ours)}): "
                     f"{'identical bits' if same else 'DIFFERENT bits'}")
        summary["variants_identical"] = same
    return "\n".join(lines), summary


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Parse a comma-separated option against the allowed names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})"
        )
    return items


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of positive row counts."""
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of row counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"row counts must be positive: {text!r}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line interface."""
    ap = argparse.ArgumentParser(
        description="Time lossctl against polars, DuckDB, pandas+sklearn and naive "
        "pyarrow on generated CSV/Parquet files.",
        epilog="Tasks: csv, parquet (mse/rmse/mae of y vs p on the regression files), multiclass "
        "(sparse softmax cross-entropy), memory (lossctl only: peak RSS on the regression CSV and "
        f"Parquet at --rows and --rows/{MEMORY_SHRINK} rows, within {MEMORY_RSS_TARGET - 1:.0%} of each "
        "other), startup (lossctl --version, eval of a 10-row CSV), slices (eval vs eval --by on "
        "100 slices, Parquet), join (--labels --key id, int and string keys, --join-rows), wide "
        f"(sparse_softmax_ce on a K={WIDE_CLASSES} list column in one row group, default chunk and "
        f"--chunk-size {WIDE_CHUNK}), gzip (CSV.gz), rowgroups (Parquet in 10 row groups), csv-by "
        "(--by 100 slices on CSV), ci (eval --ci vs eval on the regression Parquet and CSV). "
        "The report ends with a summary of the targets measured (met/MISSED).",
    )
    ap.add_argument(
        "--tasks",
        default=",".join(TASKS),
        type=lambda s: parse_list(s, TASKS, "task"),
        help="comma-separated subset of %(default)s",
    )
    ap.add_argument(
        "--tools",
        default=",".join(TOOLS),
        type=lambda s: parse_list(s, TOOLS, "tool"),
        help="comma-separated subset of %(default)s",
    )
    ap.add_argument(
        "--rows",
        type=int,
        default=20_000_000,
        help=f"regression rows (default %(default)s); memory also uses --rows/{MEMORY_SHRINK}",
    )
    ap.add_argument("--mc-rows", type=int, default=5_000_000, help="multiclass rows (default %(default)s)")
    ap.add_argument(
        "--slice-rows", type=int, default=10_000_000, help="rows of the slices task (default %(default)s)"
    )
    ap.add_argument(
        "--join-rows", type=parse_sizes, default=[2_000_000, 5_000_000],
        help="rows of both files of the join task, comma-separated sizes (default 2000000,5000000)",
    )
    for name, rows in (("wide", 100_000), ("gzip", 2_000_000)):
        help_ = f"rows of the {name} task (default {rows})"
        ap.add_argument(f"--{name}-rows", type=int, default=rows, help=help_)
    ap.add_argument(
        "--rowgroup-rows", type=int, default=10_000_000,
        help="rows of the rowgroups task, in 10 row groups (default %(default)s)",
    )
    ap.add_argument(
        "--csv-by-rows", type=int, default=2_000_000, help="rows of the csv-by task (default %(default)s)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per tool and task; median wall, max RSS (default 3)"
    )
    ap.add_argument(
        "--keep", metavar="DIR", type=Path, help="generate into / reuse files from DIR instead of a temp dir"
    )
    ap.add_argument("--json", metavar="OUT", type=Path, help="also save results as JSON")
    ap.add_argument("--ci-overhead", action="store_true", help="the same as adding 'ci' to --tasks")
    ap.add_argument(
        "--report-overhead",
        action="store_true",
        help="time 'lossctl eval --quantiles' and '--html' against plain eval on the regression Parquet file",
    )
    ap.add_argument("--seed", type=int, default=20240607, help="data seed")
    ap.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds before a single run is killed (default %(default)s)",
    )
    args = ap.parse_args(argv)
    sizes = (args.rows, args.mc_rows, args.slice_rows, args.repeat, args.wide_rows, args.gzip_rows,
             args.rowgroup_rows, args.csv_by_rows)
    if min(sizes) < 1:
        ap.error("row counts and --repeat must be positive")
    if args.ci_overhead and "ci" not in args.tasks:
        args.tasks.append("ci")
    return args


def run_peer_task(
    args: argparse.Namespace,
    results: dict[str, Any],
    name: str,
    entries: dict[str, Entry],
    dataset: Dataset,
    files: list[str],
    targets: list[str],
    rss_mib: float = DEFAULT_RSS_MIB,
    note: str = "",
    overall: list[str] | None = None,
) -> None:
    """Run and report one task whose lossctl entries (``targets``) are held against the fastest peer.

    ``overall``: the entries whose overall values are checked (group-by peers have none).
    """
    run_entries(name, entries, args.repeat, args.timeout)
    size = sum(Path(f).stat().st_size for f in files) / 1e6
    shown = " + ".join(Path(f).name for f in files)
    title = f"{name}: {shown} ({dataset.rows:,} rows, {size:,.0f} MB{note})"
    report_task(title, entries, dataset, "lossctl", results, name, overall, targets, rss_mib)


def label_columns_mib(path: str) -> float:
    """The label file's key and label columns as Arrow holds them in memory, in MiB."""
    return pq.read_table(path, columns=["id", "y"]).nbytes / 2**20


def run_new_tasks(
    args: argparse.Namespace, directory: Path, lossctl: str | None, results: dict[str, Any]
) -> None:
    """The tasks of issue 14, each against polars and DuckDB only."""
    tools = [t for t in args.tools if t in ("lossctl", *FAST_PEERS)]
    if "join" in args.tasks:
        for rows in args.join_rows:
            for key in ("int", "str"):
                data = make_join(directory, rows, args.seed, key)
                preds, labels = data.files["preds"], data.files["labels"]
                entries = tool_entries(tools, "join", preds, lossctl, labels)
                limit = label_columns_mib(labels) + JOIN_RSS_EXTRA_MIB
                run_peer_task(args, results, f"join {key} {rows:,}", entries, data, [preds, labels],
                              ["lossctl"], limit, f"; {key} keys; RSS bound {limit:.0f} MiB")
    if "wide" in args.tasks:
        data = make_wide(directory, args.wide_rows, WIDE_CLASSES, args.seed)
        path = data.files["wide"]
        entries = tool_entries(tools, "wide", path, lossctl)
        if "lossctl" in entries:
            plain = entries.pop("lossctl")
            cmd = [*plain.cmd, "--chunk-size", str(WIDE_CHUNK)]
            chunked = Entry(f"lossctl --chunk-size {WIDE_CHUNK}", cmd, "lossctl", plain.status)
            entries = {"lossctl": plain, "lossctl chunked": chunked, **entries}
        run_peer_task(args, results, "wide", entries, data, [path], ["lossctl", "lossctl chunked"],
                      note=f"; K={WIDE_CLASSES} list column, one row group")
    if "gzip" in args.tasks:
        data = make_regression(directory, args.gzip_rows, args.seed, f"regression-{args.gzip_rows}-gz",
                               formats=("csv.gz",))
        path = data.files["csv.gz"]
        run_peer_task(args, results, "gzip", tool_entries(tools, "csv", path, lossctl), data, [path],
                      ["lossctl"])
    if "rowgroups" in args.tasks:
        rows = args.rowgroup_rows
        data = make_regression(directory, rows, args.seed, f"regression-{rows}-rg10", formats=("parquet",),
                               row_group=max(1, -(-rows // 10)))
        path = data.files["parquet"]
        entries = tool_entries(tools, "parquet", path, lossctl)
        run_peer_task(args, results, "rowgroups", entries, data, [path], ["lossctl"], note="; 10 row groups")
    if "csv-by" in args.tasks:
        data = make_slices(directory, args.csv_by_rows, args.seed, formats=("csv",))
        path = data.files["csv"]
        entries = tool_entries(tools, "slices", path, lossctl)
        for entry in entries.values():
            entry.label += " --by slice" if entry.tool == "lossctl" else " group-by"
        run_peer_task(args, results, "csv-by", entries, data, [path], ["lossctl"], note="; 100 slices",
                      overall=["lossctl"])
        text, summary = check_slices(entries, data)
        if text:
            print("slices vs per-slice reference (fsum):")
            print(text)
        results["csv-by"]["slice_agreement"] = summary


def run_benchmark(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Generate what the tasks need, run them and print the report."""
    lossctl = find_lossctl()
    results: dict[str, Any] = {}
    reg = None
    lossctl_only = ({"ci", "memory"} & set(args.tasks) or args.report_overhead) and "lossctl" in args.tools
    if {"csv", "parquet"} & set(args.tasks) or lossctl_only:
        reg = make_regression(directory, args.rows, args.seed, f"regression-{args.rows}")
    mc = make_multiclass(directory, args.mc_rows, args.seed) if "multiclass" in args.tasks else None

    for task in ("csv", "parquet", "multiclass"):
        if task not in args.tasks:
            continue
        dataset = mc if task == "multiclass" else reg
        assert dataset is not None
        path = dataset.files[task]
        entries = tool_entries(args.tools, task, path, lossctl)
        run_entries(task, entries, args.repeat, args.timeout)
        size = Path(path).stat().st_size / 1e6
        title = f"{task}: {Path(path).name} ({dataset.rows:,} rows, {size:,.0f} MB)"
        report_task(title, entries, dataset, "lossctl", results, task, targets=["lossctl"],
                    rss_mib=RSS_TARGETS_MIB.get(task, DEFAULT_RSS_MIB))

    if "memory" in args.tasks and "lossctl" not in args.tools:
        print("\nmemory not measured: lossctl is not among --tools")
        results["memory"] = {"verdict": "not measured", "note": "lossctl not among --tools"}
    elif "memory" in args.tasks:
        assert reg is not None
        run_memory(args, directory, reg, lossctl, results)

    if "startup" in args.tasks:
        tiny = write_tiny_csv(directory, args.seed)
        entries = {"python": Entry("python -c pass", [sys.executable, "-c", "pass"])}
        if "lossctl" in args.tools:
            version = Entry("lossctl --version", [lossctl or "lossctl", "--version"])
            if lossctl is None:
                version.status = "FAILED (lossctl executable not found)"
            entries["lossctl --version"] = version
        entries.update(tool_entries(args.tools, "csv", tiny.files["csv"], lossctl))
        # lossctl, polars, DuckDB and the bare interpreter get STARTUP_RUNS runs,
        # interleaved; pandas+sklearn (context only: seconds to import) --repeat.
        slow = {k: e for k, e in entries.items() if k in ("pandas", "naive")}
        fast = {k: e for k, e in entries.items() if k not in slow}
        run_entries("startup", fast, STARTUP_RUNS, args.timeout)
        run_entries("startup", slow, args.repeat, args.timeout)
        title = (
            f"startup: {Path(tiny.files['csv']).name}; median of {STARTUP_RUNS} runs "
            f"(lossctl, polars, duckdb, python), {args.repeat} (pandas, naive)"
        )
        report_task(title, entries, tiny, "lossctl", results, "startup")

    if "slices" in args.tasks:
        run_slices(args, directory, lossctl, results)

    run_new_tasks(args, directory, lossctl, results)

    if "ci" in args.tasks and "lossctl" not in args.tools:
        print("\n--ci overhead not measured: lossctl is not among --tools")
    elif "ci" in args.tasks:
        assert reg is not None
        run_ci_overhead(args, reg, lossctl, results)
    if args.report_overhead and "lossctl" not in args.tools:
        print("\nreport overhead not measured: lossctl is not among --tools")
    elif args.report_overhead:
        assert reg is not None
        run_report_overhead(args, directory, reg, lossctl, results)
    report_targets(args, results)
    return results


def run_memory(
    args: argparse.Namespace, directory: Path, large: Dataset, lossctl: str | None, results: dict[str, Any]
) -> None:
    """lossctl's peak RSS on the regression CSV and Parquet at --rows and MEMORY_SHRINK times fewer rows.

    lossctl streams in fixed-size chunks, so memory must not grow with the file:
    per format, the larger peak is at most MEMORY_RSS_TARGET times the smaller.
    Only lossctl runs (peers are irrelevant here); the four commands are
    interleaved so both sizes see the same machine state.
    """
    rows = max(1, args.rows // MEMORY_SHRINK)
    small = make_regression(directory, rows, args.seed, f"regression-{rows}")
    sizes = {"small": small, "large": large}
    groups: dict[str, dict[str, Entry]] = {}
    for kind in ("csv", "parquet"):
        groups[kind] = {}
        for size, dataset in sizes.items():
            entry = tool_entries(["lossctl"], kind, dataset.files[kind], lossctl)["lossctl"]
            entry.label = f"lossctl {kind} {dataset.rows:,}"
            groups[kind][size] = entry
    everything = {f"{kind} {size}": e for kind, group in groups.items() for size, e in group.items()}
    run_entries("memory", everything, args.repeat, args.timeout)

    runs: dict[str, Any] = {}
    formats: dict[str, dict[str, Any]] = {}
    lines = []
    for kind, group in groups.items():
        for size, entry in group.items():
            path = Path(sizes[size].files[kind])
            title = f"memory: {path.name} ({sizes[size].rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB)"
            report_task(title, {"lossctl": entry}, sizes[size], "lossctl", runs, f"{kind} {size}")
        formats[kind], line = memory_verdict(kind, group["small"], group["large"], small.rows, large.rows)
        lines.append(line)
    verdicts = [f["verdict"] for f in formats.values()]
    overall = "MISSED" if "MISSED" in verdicts else "met" if set(verdicts) == {"met"} else "not measured"
    results["memory"] = {
        "title": f"memory: lossctl peak RSS at {small.rows:,} and {large.rows:,} rows",
        "rows": {"small": small.rows, "large": large.rows},
        "target": MEMORY_RSS_TARGET,
        "formats": formats,
        "verdict": overall,
        "runs": runs,
    }
    print()
    print("\n".join(lines))


def memory_verdict(
    kind: str, small: Entry, large: Entry, small_rows: int, large_rows: int
) -> tuple[dict[str, Any], str]:
    """Compare the peak RSS of one format at two sizes; return the result record and its report line."""
    if not (small.ok and large.ok and small.rss_mib and large.rss_mib):
        note = f"{small_rows:,} rows {small.status}, {large_rows:,} rows {large.status}"
        return {"verdict": "not measured", "note": note}, f"memory on {kind} not measured: {note}"
    x, y = small.rss_mib, large.rss_mib
    spread = max(x, y) / min(x, y)
    verdict = within(spread, MEMORY_RSS_TARGET)
    shown = f"{y / x:.2f}" if y >= x else f"{y / x:.2f} (max/min {spread:.2f})"
    line = (
        f"{kind} peak RSS: {small_rows:,} rows {x:.1f} MiB, {large_rows:,} rows {y:.1f} MiB "
        f"-> {y:.1f}/{x:.1f} = {shown} (target: within {MEMORY_RSS_TARGET - 1:.0%}: {verdict})"
    )
    record = {
        "small_rss_mib": x,
        "large_rss_mib": y,
        "ratio": y / x,
        "spread": spread,
        "target": MEMORY_RSS_TARGET,
        "verdict": verdict,
    }
    return record, line


def run_slices(
    args: argparse.Namespace, directory: Path, lossctl: str | None, results: dict[str, Any]
) -> None:
    """``eval`` vs ``eval --by slice`` (100 slices) on one Parquet file, plus group-by peers."""
    dataset = make_slices(directory, args.slice_rows, args.seed)
    path = dataset.files["parquet"]
    found = tool_entries(args.tools, "slices", path, lossctl)
    entries: dict[str, Entry] = {}
    if "lossctl" in found:
        by = found.pop("lossctl")
        by.label = "lossctl eval --by slice"
        cmd = [lossctl or "lossctl", *lossctl_args("parquet", path)]
        plain = Entry("lossctl eval", cmd, "lossctl", by.status)
        entries = {"lossctl": plain, "lossctl --by": by}
    for tool, entry in found.items():
        entry.label = f"{entry.label} group-by"
        entries[tool] = entry
    run_entries("slices", entries, args.repeat, args.timeout)
    size = Path(path).stat().st_size / 1e6
    title = f"slices: {Path(path).name} ({dataset.rows:,} rows, {len(dataset.slices)} slices, {size:,.0f} MB)"
    report_task(title, entries, dataset, "lossctl", results, "slices", overall=["lossctl", "lossctl --by"])
    text, summary = check_slices(entries, dataset)
    if text:
        print("slices vs per-slice reference (fsum):")
        print(text)
    results["slices"]["slice_agreement"] = summary
    if "lossctl" not in entries:
        return
    plain, by = entries["lossctl"], entries["lossctl --by"]
    measured = ratios(by, plain)
    if measured is None:
        print(f"--by overhead not measured: eval {plain.status}, --by {by.status}")
        return
    wall, rss = measured
    same = plain.values == by.values and plain.rows == by.rows
    slices_ok = summary.get("lossctl --by", {}).get("verdict") == "agree"
    print(
        f"--by slice ({len(by.slices or {})} slices) costs {rss:.2f}x the peak RSS "
        f"(target <= {BY_RSS_TARGET}x: {within(rss, BY_RSS_TARGET)}) and {wall:.2f}x the wall time "
        f"of plain eval; overall values {'identical to' if same else 'DIFFER from'} plain eval; "
        f"slices {'agree with' if slices_ok else 'DISAGREE with'} the reference"
    )
    results["slices"]["by_vs_plain"] = {
        "wall_ratio": wall,
        "rss_ratio": rss,
        "rss_target": BY_RSS_TARGET,
        "overall_identical": same,
        "slices_agree": slices_ok,
    }


def run_ci_overhead(
    args: argparse.Namespace, reg: Dataset, lossctl: str | None, results: dict[str, Any]
) -> None:
    """``eval --ci`` vs plain ``eval`` on the regression Parquet and CSV files, interleaved."""
    groups: dict[str, dict[str, Entry]] = {}
    for kind in ("parquet", "csv"):
        base = [lossctl or "lossctl", *lossctl_args(kind, reg.files[kind])]
        groups[kind] = {
            "lossctl": Entry(f"lossctl eval {kind}", base, "lossctl"),
            "lossctl --ci": Entry(f"lossctl eval --ci {kind}", [*base, "--ci"], "lossctl"),
        }
    everything = {f"{kind} {key}": e for kind, group in groups.items() for key, e in group.items()}
    if lossctl is None:
        for entry in everything.values():
            entry.status = "FAILED (lossctl executable not found)"
    run_entries("ci", everything, args.repeat, args.timeout)
    lines = []
    for kind, entries in groups.items():
        name = f"ci_overhead_{kind}"
        report_task(f"ci-overhead: {Path(reg.files[kind]).name}", entries, reg, "lossctl", results, name)
        plain, ci = entries["lossctl"], entries["lossctl --ci"]
        measured = ratios(ci, plain)
        if measured is None:
            lines.append(f"--ci overhead on {kind} not measured: eval {plain.status}, --ci {ci.status}")
            continue
        wall, rss = measured
        same = plain.values == ci.values
        lines.append(
            f"--ci costs {wall:.2f}x the wall time of plain eval on {kind} "
            f"(target <= {CI_WALL_TARGET}x: {within(wall, CI_WALL_TARGET)}), {rss:.2f}x the peak RSS; "
            f"point values {'identical' if same else 'DIFFER'}"
        )
        results[name]["ci_vs_plain"] = {
            "wall_ratio": wall,
            "rss_ratio": rss,
            "wall_target": CI_WALL_TARGET,
            "values_identical": same,
        }
    print()
    print("\n".join(lines))


def run_report_overhead(
    args: argparse.Namespace, directory: Path, reg: Dataset, lossctl: str | None, results: dict[str, Any]
) -> None:
    """``eval --quantiles`` and ``eval --html`` vs plain ``eval`` on the regression Parquet file.

    Context, not a target: the per-row sketches cost a pass over each loss's
    per-row values, the page a few matplotlib figures (a fixed cost).
    """
    base = [lossctl or "lossctl", *lossctl_args("parquet", reg.files["parquet"])]
    page = directory / "report-overhead.html"
    entries = {
        "lossctl": Entry("lossctl eval parquet", base, "lossctl"),
        "lossctl --quantiles": Entry("lossctl eval --quantiles parquet", [*base, "--quantiles"], "lossctl"),
        "lossctl --html": Entry("lossctl eval --html parquet", [*base, "--html", str(page)], "lossctl"),
    }
    if lossctl is None:
        for entry in entries.values():
            entry.status = "FAILED (lossctl executable not found)"
    run_entries("report", entries, args.repeat, args.timeout)
    name = "report_overhead_parquet"
    report_task(f"report-overhead: {Path(reg.files['parquet']).name}", entries, reg, "lossctl", results, name)
    plain = entries["lossctl"]
    lines = []
    for key in ("lossctl --quantiles", "lossctl --html"):
        measured = ratios(entries[key], plain)
        if measured is None:
            lines.append(f"{key} not measured: eval {plain.status}, {key} {entries[key].status}")
            continue
        wall, rss = measured
        same = "identical" if plain.values == entries[key].values else "DIFFER"
        lines.append(f"{key.split()[1]} costs {wall:.2f}x the wall time of plain eval, {rss:.2f}x the "
                     f"peak RSS; point values {same}")
        results[name][key.split()[1].lstrip("-") + "_vs_plain"] = {"wall_ratio": wall, "rss_ratio": rss}
    if page.exists():
        lines.append(f"the page is {page.stat().st_size / 1e3:,.0f} kB")
        results[name]["page_bytes"] = page.stat().st_size
        page.unlink()
    print()
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        directory = args.keep.resolve()
    else:
        directory = Path(tempfile.mkdtemp(prefix="lossctl-bench-"))
    print(
        f"lossctl benchmark: python {platform.python_version()}, "
        f"{platform.platform()}, {os.cpu_count()} cpus; "
        f"numpy {np.__version__}, pyarrow {pa.__version__}; repeat {args.repeat}; "
        f"data in {directory}{'' if args.keep else ' (temporary)'}"
        f"; load average {load_average()}"
    )
    precompile_lossctl()
    try:
        results = run_benchmark(args, directory)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"\nload average at the end: {load_average()} (other work on the machine skews timings)")
    if args.json:
        meta = {
            "argv": sys.argv,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "repeat": args.repeat,
            "rows": args.rows,
            "mc_rows": args.mc_rows,
            "slice_rows": args.slice_rows,
            "seed": args.seed,
            "rel_tol": REL_TOL,
            "load_average_end": os.getloadavg(),
        }
        args.json.write_text(json.dumps({"meta": meta, "tasks": results}, indent=1))
        log(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
