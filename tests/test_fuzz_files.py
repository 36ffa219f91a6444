"""Fuzzing the files lossctl reads that are not data: states, checks files, baselines (issue #11).

Real files made by the CLI are mutated (a field dropped, a value of another
type, huge or negative numbers, deep nesting, lists grown or cut, bad bytes,
truncation) and given back to the real CLI, which must: exit 0, 1 or 2,
never with a traceback; leave every input as it was; and write its outputs
all or nothing (on success a complete, valid file; on failure no file under
the final name and no partial file).  Hypothesis runs derandomized (a fixed
sequence of examples), so CI time and results are stable; set
``LOSSCTL_FUZZ_EXAMPLES`` for a longer session with random examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import LOSSCTL, Run, proc_env, run
from conftest import small_frame
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

# LOSSCTL_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_files.py: a longer, random (not fixed) session
_LONG = int(os.environ.get("LOSSCTL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(derandomize=not _LONG, database=None, deadline=None, max_examples=_LONG or 400,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
COLS = ["-l", "y", "-p", "p"]


class Files(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<the real files>"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real files, as the CLI writes them: states of every part, a baseline, checks files."""
    d = tmp_path_factory.mktemp("fuzzbase")
    small_frame(120, 11).to_csv(d / "data.csv", index=False)
    out: dict[str, Any] = Files(data=d / "data.csv")
    states = {
        "full": ["-w", "w", "-m", "mse,rmse,mae", "--by", "seg", "--ci", "--top", "3", "mae",
                 "--keep", "id"],
        "plain": ["-m", "huber:delta=2,mae", "--nan", "skip", "--quantiles"],
        "slices": ["-m", "mse", "--by", "seg,id", "--max-slices", "500"],
    }
    frame = small_frame(150, 12)
    frame["z"] = (frame["y"] > 0).astype(int)
    frame["s"] = 1 / (1 + np.exp(-frame["p"]))
    frame.to_csv(d / "binary.csv", index=False)
    states["components"] = ["-w", "w", "-m", "bce,ece:bins=5,roc_auc,max_error,accuracy",
                            "--by", "seg", "--ci", "--top", "2", "bce", "--keep", "id",
                            "--quantiles"]
    states["calibration"] = ["-m", "bce", "--html", "/dev/null"]  # the page's reliability bins
    for name, args in states.items():
        path = d / f"{name}.json"
        binary = name in ("components", "calibration")
        cols = ["-l", "z", "-p", "s"] if binary else COLS
        data = d / "binary.csv" if binary else out["data"]
        r = run("runner", ["eval", data, *cols, *args, "--emit-state", path])
        assert r.code == 0, r.err
        out[f"state_{name}"] = json.loads(path.read_text())
    r = run("runner", ["eval", out["data"], *COLS, "-m", "mse,mae,huber:delta=2", "-f", "json"])
    out["baseline"] = json.loads(r.out)
    out["checks_toml"] = ('fail_if = ["mse > 100", "mae > 50"]\nbaseline = "baseline.json"\n'
                          '[max_increase]\nmse = "50%"\nmae = 0.5\n')
    out["checks_json"] = json.dumps({"fail_if": ["mse > 100"], "baseline": "baseline.json",
                                     "max_increase": {"mae": "5%", "huber:delta=2": 1.0}})
    return out


# --------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------


def _nested(depth: int, inner: Any = 1) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


JUNK = st.one_of(
    st.sampled_from(["many", "", "0x", "-0x1", "0x" + "f" * 900, "nan", "inf", "-inf", "1e999",
                     "\ud800", "mse", "mse > 1", "2%", "../x", "/dev/zero", "é" * 3]),
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 1, 2, 999, 1000, 1001, 300_000, 2**31, 2**63 - 1, 2**63, 2**64,
                     10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.just([]), st.just({}),
    st.lists(st.integers(-2, 3), max_size=4),
    st.dictionaries(st.sampled_from(["a", "rows", "scaled", "n"]), st.integers(-1, 2), max_size=2),
    st.integers(1, 60).map(_nested),
)


def _pick(data: st.DataObject, doc: Any) -> tuple[Any, Any]:
    """A node of ``doc``, by walking down from the root: (its container, its key or index)."""
    parent, key, node = None, None, doc
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 9)) < 8:
        k = data.draw(st.sampled_from(sorted(node)) if isinstance(node, dict)
                      else st.integers(0, len(node) - 1))
        parent, key, node = node, k, node[k]
    return parent, key


def mutate_tree(data: st.DataObject, doc: Any) -> Any:
    """One structural change somewhere in the document (a deep copy is changed)."""
    doc = json.loads(json.dumps(doc))
    parent, key = _pick(data, doc)
    if parent is None:
        return data.draw(JUNK)
    op = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate",
                                    "grow", "wrap", "number", "unknown_key"]))
    value = parent[key]
    if op == "replace":
        parent[key] = data.draw(JUNK)
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(value)))
    elif op == "grow" and isinstance(value, list):
        value.extend(json.loads(json.dumps(value[-1:])) * data.draw(st.integers(1, 1200)))
    elif op == "wrap":
        parent[key] = data.draw(st.sampled_from([[value], {"x": value}, _nested(30, value)]))
    elif op == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = data.draw(st.sampled_from([-value, value + 1, value * 1000, value * 2**64,
                                                 float(value), -1]))
    elif op == "unknown_key" and isinstance(value, dict):
        value["extra"] = data.draw(JUNK)
    else:
        parent[key] = data.draw(JUNK)
    return doc


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """One change of the file's bytes: truncated, bad bytes, a long number, deep nesting."""
    op = data.draw(st.sampled_from(["truncate", "bad_bytes", "long_number", "deep", "flip"]))
    at = data.draw(st.integers(0, max(0, len(raw) - 1)))
    if op == "truncate":
        return raw[:at]
    if op == "bad_bytes":
        return raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00",
                                                     b"\\ud800", b'"'])) + raw[at:]
    if op == "long_number":
        return raw[:at] + b"9" * data.draw(st.sampled_from([101, 4301, 20_000])) + raw[at:]
    if op == "deep":
        depth = data.draw(st.sampled_from([50, 2000, 100_000]))
        return b"[" * depth + raw + b"]" * depth
    flipped = bytearray(raw)
    if flipped:
        flipped[at] ^= 1 << data.draw(st.integers(0, 7))
    return bytes(flipped)


def mutated(data: st.DataObject, doc: Any, as_text: str | None = None) -> bytes:
    if data.draw(st.integers(0, 3)) == 0:
        return mutate_bytes(data, (as_text or json.dumps(doc)).encode())
    return json.dumps(mutate_tree(data, doc)).encode()


# --------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------


def digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir() if p.is_file()}


@contextmanager
def workdir(tmp_path: Path) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        yield d
    finally:
        shutil.rmtree(d)


def check_run(r: Run, d: Path, before: dict[str, str], out: Path, kind: str) -> None:
    """Exit 0/1/2 without a traceback; inputs unchanged; the output all or nothing."""
    assert r.code in (0, 1, 2), (r.code, r.err)
    assert "Traceback" not in r.err, r.err
    event(f"exit {r.code}")
    if r.code == 2:
        assert r.err.startswith("lossctl: error: ") and r.err.count("\n") == 1, r.err
        assert "out of memory" not in r.err, "a small file must not take all the memory"
    after = digests(d)
    assert {k: v for k, v in after.items() if k != out.name} == before, "an input changed"
    assert not [p for p in os.listdir(d) if p.endswith(".partial")]
    if r.code == 2:
        assert not out.exists()
    elif kind == "state":
        assert run("runner", ["merge", out, "-f", "json"]).code == 0  # a complete, valid state
    else:
        ET.parse(out)  # complete JUnit XML


@settings(FUZZ, max_examples=_LONG or 300)  # the component states are the slowest to merge
@given(data=st.data(), which=st.sampled_from(["full", "plain", "slices", "components", "calibration"]),
       alone=st.booleans())
def test_fuzzed_states(base: dict[str, Any], tmp_path: Path, data: st.DataObject, which: str,
                       alone: bool) -> None:
    with workdir(tmp_path) as d:
        good = d / "good.json"
        good.write_text(json.dumps(base[f"state_{which}"]))
        bad = d / "bad.json"
        bad.write_bytes(mutated(data, base[f"state_{which}"]))
        out = d / "merged.json"
        before = digests(d)
        r = run("runner", ["merge", *([] if alone else [good]), bad, "--emit-state", out,
                           "-f", "json"])
        check_run(r, d, before, out, "state")


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["toml", "json"]))
def test_fuzzed_checks_files(base: dict[str, Any], tmp_path: Path, data: st.DataObject,
                             fmt: str) -> None:
    with workdir(tmp_path) as d:
        (d / "baseline.json").write_text(json.dumps(base["baseline"]))
        checks = d / f"checks.{fmt}"
        if fmt == "json":
            checks.write_bytes(mutated(data, json.loads(base["checks_json"])))
        else:
            checks.write_bytes(mutate_bytes(data, base["checks_toml"].encode())
                               if data.draw(st.booleans()) else _toml_edit(data, base["checks_toml"]))
        out = d / "junit.xml"
        before = digests(d)
        r = run("runner", ["eval", base["data"], *COLS, "-m", "mse,mae,huber:delta=2", "--checks",
                           checks, "--junit", out, "-f", "json"])
        check_run(r, d, before, out, "junit")


def _toml_edit(data: st.DataObject, text: str) -> bytes:
    """A TOML checks file with one value replaced by another TOML value."""
    value = data.draw(st.sampled_from([
        '"many"', "-1", "1" + "0" * 400, "1" + "0" * 5000, "true", "[]", "{a = 1}", "1e999", "nan",
        "inf", '"\\ud7ff"', "[" * 500 + "]" * 500, '"2%%"', '"-5%"', "2024-01-01", '""']))
    lines = text.splitlines()
    i = data.draw(st.sampled_from([j for j, line in enumerate(lines) if "=" in line]))
    key = lines[i].split("=", 1)[0]
    lines[i] = f"{key}= {value}"
    return ("\n".join(lines) + "\n").encode()


@FUZZ
@given(data=st.data())
def test_fuzzed_baselines(base: dict[str, Any], tmp_path: Path, data: st.DataObject) -> None:
    with workdir(tmp_path) as d:
        baseline = d / "baseline.json"
        baseline.write_bytes(mutated(data, base["baseline"]))
        out = d / "junit.xml"
        before = digests(d)
        r = run("runner", ["eval", base["data"], *COLS, "-m", "mse,mae,huber:delta=2", "--baseline",
                           baseline, "--junit", out, "-f", "json"])
        check_run(r, d, before, out, "junit")


@settings(FUZZ, max_examples=max(8, _LONG // 100))
@given(data=st.data())
def test_fuzzed_states_in_a_real_process(base: dict[str, Any], tmp_path: Path,
                                         data: st.DataObject) -> None:
    """The same property for a few cases as a real process (its own stderr, its own exit)."""
    with workdir(tmp_path) as d:
        bad = d / "bad.json"
        bad.write_bytes(mutated(data, base[data.draw(st.sampled_from(["state_full",
                                                                      "state_components"]))]))
        out = d / "merged.json"
        before = digests(d)
        p = subprocess.run([str(LOSSCTL), "merge", str(bad), "--emit-state", str(out), "-f", "json"],
                           capture_output=True, stdin=subprocess.DEVNULL, env=proc_env(), timeout=120)
        check_run(Run(p.returncode, p.stdout.decode(), p.stderr.decode()), d, before, out, "state")
