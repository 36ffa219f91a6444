"""The docs agree with lossctl: ``lossctl losses``, the README's catalogue and docs/LOSSES.md.

The README table and the generated parts of docs/LOSSES.md come from
``tools/docs.py``; these tests fail when they drift, and when a loss of the
catalogue has no definition in docs/LOSSES.md, so a new loss cannot ship
undocumented.  The tables are parsed back here independently of the
generator and compared with ``lossctl losses -f json`` as a user runs it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import proc_env, run

from lossctl.core import losses
from lossctl.core.definitions import Param
from lossctl.core.kernels import squared_error

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SPEC = ROOT / "docs" / "LOSSES.md"


def _load_tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("docs_tool", ROOT / "tools" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_tool = _load_tool()


def catalogue(mode: str = "runner") -> list[dict]:
    r = run(mode, ["losses", "-f", "json"])
    assert r.code == 0, r.err
    return json.loads(r.out)


def block(text: str, name: str) -> str:
    m = re.search(rf"^<!-- generated: {name} -->\n(.*?)^<!-- end: {name} -->$", text, re.S | re.M)
    assert m, f"no generated block {name!r}"
    return m.group(1)


Key = tuple[str, str]  # (name, task): accuracy, brier, ece have a binary and a multiclass definition


def parse_catalogue_table(text: str) -> dict[Key, tuple[list[str], str, str, dict]]:
    """``| `name` | aliases | task | kind | better | params | ...`` rows -> {(name, task):
    (aliases, kind, better, {param: default})}."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        name, aliases, task, kind, better, params = cells[0].strip("`"), *cells[1:6]
        parsed = {}
        for item in filter(None, (p.strip() for p in params.split(","))):
            k, _, v = item.partition("=")
            parsed[k] = None if v == "(required)" else json.loads(v)
        out[(name, task)] = ([a.strip() for a in aliases.split(",") if a.strip()], kind, better,
                             parsed)
    return out


def expected(rows: list[dict]) -> dict[Key, tuple[list[str], str, str, dict]]:
    return {(r["name"], r["task"]): (r["aliases"], r["kind"], r["better"], r["params"]) for r in rows}


# --------------------------------------------------------------------------
# generated blocks
# --------------------------------------------------------------------------


def test_generated_blocks_are_up_to_date() -> None:
    assert docs_tool.stale() == [], "run: python tools/docs.py"


def test_the_tool_checks_from_the_command_line() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "docs.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_the_tool_rewrites_a_stale_block_and_refuses_unknown_ones() -> None:
    stale = "intro\n<!-- generated: losses-table -->\nold table\n<!-- end: losses-table -->\nrest\n"
    new = docs_tool.regenerate(stale)
    assert new.startswith("intro\n<!-- generated: losses-table -->\n| loss | aliases |")
    assert new.endswith("<!-- end: losses-table -->\nrest\n") and "old table" not in new
    assert docs_tool.regenerate(new) == new
    with pytest.raises(KeyError, match="unknown generated block 'nope'"):
        docs_tool.regenerate("<!-- generated: nope -->\n<!-- end: nope -->\n")


# --------------------------------------------------------------------------
# lossctl losses == README == docs/LOSSES.md
# --------------------------------------------------------------------------


def spec_problems(rows: list[dict], spec: str) -> list[str]:
    """What docs/LOSSES.md lacks for the catalogue ``rows`` (empty: all documented)."""
    problems = []
    generated = parse_catalogue_table(block(spec, "losses-table"))
    if generated != expected(rows):
        problems.append("the catalogue table differs from lossctl losses")
    params_rows = {(m[1], m[2], m[3]): m[4] for m in
                   re.finditer(r"^\| `(\w+)` \| (\w+) \| `(\w+)` \| \w+ \| (required|`[^`]+`) \|",
                               block(spec, "loss-parameters"), re.M)}
    want = {(r["name"], r["task"], p): "required" if d is None else f"`{json.dumps(d)}`"
            for r in rows for p, d in r["params"].items()}
    if params_rows != want:
        problems.append(f"the parameters table differs: {params_rows} != {want}")
    definitions = spec[spec.index("## Definitions"):spec.index("## Reductions")]
    sections = {m[1].lower(): m[2] for m in re.finditer(r"^### (\w+)[^\n]*\n(.*?)(?=^### |\Z)",
                                                         definitions, re.S | re.M)}
    for r in rows:  # hand-written: one definition row per loss, in its task's section
        lines = sections.get(r["task"], "").splitlines()
        row = next((ln for ln in lines if ln.startswith(f"| `{r['name']}`")), None)
        if row is None:
            problems.append(f"{r['name']} ({r['task']}): no definition row in docs/LOSSES.md "
                            f"'### {r['task'].capitalize()}'")
            continue
        problems += [f"{r['name']}: alias {a} not in its definition" for a in r["aliases"]
                     if f"`{a}`" not in row]
        for p, d in r["params"].items():
            text = f"`{p}=" if d is None else f"`{p}={json.dumps(d)}`"
            if text not in row:
                problems.append(f"{r['name']}: {text} not in its definition")
    kernels = block(spec, "loss-kernels")
    problems += [f"{r['name']}: no stable form" for r in rows
                 if f"- `{r['name']}`:" not in kernels and f"- `{r['name']}` ({r['task']}):" not in kernels]
    return problems


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_lossctl_losses_readme_and_spec_agree(mode: str) -> None:
    rows = catalogue(mode)
    assert [(r["name"], r["task"]) for r in rows] == [(d.name, d.task) for d in losses.CATALOGUE]
    assert parse_catalogue_table(block(README.read_text(), "losses-table")) == expected(rows)
    assert spec_problems(rows, SPEC.read_text()) == []


def test_the_parameters_json_matches_the_catalogue() -> None:
    types = {float: "number", int: "integer", bool: "boolean"}
    for r, d in zip(catalogue(), losses.CATALOGUE, strict=True):
        assert (r["name"], r["task"]) == (d.name, d.task)
        assert [p["name"] for p in r["parameters"]] == [p.name for p in d.params] == list(r["params"])
        for p, param in zip(r["parameters"], d.params, strict=True):
            assert p["default"] == param.default and p["required"] == (param.default is None)
            assert p["type"] == types[param.kind] and p["valid"] == (param.valid_doc or None)
        assert r["higher_is_better"] is d.higher_is_better
        assert r["better"] == ("higher" if d.higher_is_better else "nearer 0" if d.best_at_zero
                               else "lower")
        assert [c["rule"] for c in r["input_checks"]][:len(d.checks)] == [c.reason for c in d.checks]


def test_a_new_loss_makes_the_docs_tests_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of these tests: a loss added to CATALOGUE alone is caught."""
    new = losses.LossDef("cubed_error", "regression", squared_error, "|y - p|^3", "value", "value",
                         aliases=("l3",), params=(Param("scale", float, 2.0, "a scale"),),
                         on_diff=True, doc="a loss nobody documented")
    monkeypatch.setattr(losses, "CATALOGUE", (*losses.CATALOGUE, new))
    assert set(docs_tool.stale()) >= {"README.md: losses-table", "docs/LOSSES.md: losses-table",
                                      "docs/LOSSES.md: loss-parameters", "docs/LOSSES.md: loss-kernels"}
    rows = catalogue()
    assert rows[-1]["name"] == "cubed_error"
    # regenerating fixes the generated parts, not the missing definition
    regenerated = docs_tool.regenerate(SPEC.read_text())
    assert spec_problems(rows, regenerated) == [
        "cubed_error (regression): no definition row in docs/LOSSES.md '### Regression'"]
    assert spec_problems(rows, SPEC.read_text())[0] == "the catalogue table differs from lossctl losses"


def test_docs_metrics_lists_each_metric_under_its_kind_and_repeats_no_definition() -> None:
    """docs/METRICS.md holds what the spec (docs/LOSSES.md, checked above) does not: its table of
    kinds names every metric under the kind the catalogue gives it, and it has no definition
    rows of its own (each definition is written once, in the spec)."""
    from lossctl.core.catalogue import _METRICS

    text = (ROOT / "docs" / "METRICS.md").read_text()
    kinds = {m[1]: {n.strip() for n in m[2].split(",")}
             for m in re.finditer(r"^\| \*\*(\w+)\*\* \|.*\| ([\w, ]+) \|$", text, re.M)}
    assert kinds == {k: {d.name for d in _METRICS if d.kind == k} for k in {d.kind for d in _METRICS}}
    names = {n for d in losses.CATALOGUE for n in (d.name, *d.aliases)}
    repeated = [ln for ln in text.splitlines() if (m := re.match(r"\| `(\w+)`", ln)) and m[1] in names]
    assert repeated == []


# --------------------------------------------------------------------------
# links
# --------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for m in re.finditer(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/LOSSES.md", "docs/METRICS.md",
                                 "sample_data/README.md", "bench/README.md"])
def test_links_point_inside_the_repository(doc: str) -> None:
    path = ROOT / doc
    text = path.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.is_relative_to(ROOT), f"{doc}: {target} points outside the repository"
        assert dest.exists(), f"{doc}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(dest.read_text()), f"{doc}: no heading for #{anchor}"


# --------------------------------------------------------------------------
# docs/CLI.md: the --help of every command
# --------------------------------------------------------------------------


def test_the_cli_reference_holds_every_commands_help_as_a_user_sees_it() -> None:
    """docs/CLI.md is the ``--help`` of lossctl and each command, the text a real process prints
    at the width the tool renders it (so a drift fails test_generated_blocks_are_up_to_date)."""
    from lossctl.cli import cli

    text = (ROOT / "docs" / "CLI.md").read_text()
    sections = dict(re.findall(r"^## (lossctl[\w ]*)\n\n```\n(.*?)\n```$", block(text, "cli-help"),
                               re.S | re.M))
    assert list(sections) == ["lossctl", *(f"lossctl {c}" for c in sorted(cli.commands))]
    for title, body in sections.items():
        p = subprocess.run([sys.executable, "-m", "lossctl", *title.split()[1:], "--help"],
                           capture_output=True, text=True, timeout=60,
                           env={**proc_env(), "COLUMNS": str(docs_tool.HELP_WIDTH)})
        assert p.returncode == 0, p.stderr
        # the process names itself `python -m lossctl`; the reference names the console script
        assert p.stdout.rstrip().replace("Usage: python -m lossctl", "Usage: lossctl") == body


def test_the_readme_links_the_cli_reference() -> None:
    assert "](docs/CLI.md)" in README.read_text()
