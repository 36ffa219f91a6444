#!/usr/bin/env python3
"""Regenerate the generated parts of the docs from lossctl itself, or check them for drift.

    python tools/docs.py           # rewrite the generated blocks of README.md and docs/*.md
    python tools/docs.py --check   # list stale blocks and exit 1 (tests/test_docs.py runs this)

A generated block sits between ``<!-- generated: NAME -->`` and
``<!-- end: NAME -->`` on lines of their own; ``BLOCKS`` maps each NAME to
the function that writes its text, from lossctl's own output (``lossctl
losses``) or its code (the kernels' docstrings).  To add a block, add a
function to ``BLOCKS`` and the two markers where the text should go.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/LOSSES.md", "docs/CLI.md"]
HELP_WIDTH = 100  # COLUMNS of the terminal --help is rendered for: the same text on every machine
BLOCK = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- end: (?P=name) -->$",
                   re.S | re.M)

sys.path.insert(0, str(ROOT))  # this checkout's lossctl, whatever is installed


def lossctl(*args: str) -> str:
    """The output of ``lossctl ARGS``, run in-process (as a user would see it off a terminal
    ``HELP_WIDTH`` columns wide)."""
    from click.testing import CliRunner

    from lossctl.cli import cli

    r = CliRunner().invoke(cli, list(args), env={"NO_COLOR": "1", "COLUMNS": str(HELP_WIDTH)},
                           prog_name="lossctl", terminal_width=HELP_WIDTH - 2)
    # (Click fills a terminal's width less 2 columns, and CliRunner would force 80)
    if r.exit_code != 0:
        raise RuntimeError(f"lossctl {' '.join(args)} exited {r.exit_code}: {r.output}")
    return r.output


def catalogue() -> list[dict]:
    return json.loads(lossctl("losses", "-f", "json"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def losses_table() -> str:
    """The catalogue, as ``lossctl losses -f markdown`` prints it."""
    return lossctl("losses", "-f", "markdown")


def parameters_table() -> str:
    """Every parameter: its type, default, valid values and meaning."""
    lines = ["| loss | task | parameter | type | default | valid values | meaning |",
             "|---|---|---|---|---|---|---|"]
    for row in catalogue():
        for p in row["parameters"]:
            default = "required" if p["required"] else f"`{json.dumps(p['default'])}`"
            valid = p["valid"] or ("`true` or `false`" if p["type"] == "boolean" else "any finite number")
            lines.append(f"| `{row['name']}` | {row['task']} | `{p['name']}` | {p['type']} | {default} "
                         f"| {_cell(valid)} | {_cell(p['description'])} |")
    return "\n".join(lines) + "\n"


def checks_table() -> str:
    """Each loss's own bad-input rules (beyond those of every loss)."""
    lines = ["| loss | task | column | an input error when |", "|---|---|---|---|"]
    for row in catalogue():
        rules = row["input_checks"] or [{"role": "", "rule": "(only the rules of every loss)"}]
        for c in rules:
            lines.append(f"| `{row['name']}` | {row['task']} | {c['role']} | {_cell(c['rule'])} |")
    return "\n".join(lines) + "\n"


def _doc(f: object) -> str:
    doc = inspect.getdoc(f)
    if not doc:
        raise RuntimeError(f"{f.__module__}.{f.__qualname__} has no docstring: say what it computes")
    return " ".join(doc.split()).replace("``", "`")


def _where(f: object) -> str:
    return f"`{f.__module__.removeprefix('lossctl.core.')}.{f.__qualname__}`"


def kernels_list() -> str:
    """How each definition is computed: its kernel's (or reducer's) docstring, the form it uses."""
    from lossctl.core.definitions import MEAN
    from lossctl.core.losses import CATALOGUE

    names = [d.name for d in CATALOGUE]
    out = []
    for d in CATALOGUE:
        title = f"`{d.name}`" + (f" ({d.task})" if names.count(d.name) > 1 else "")
        if d.kind == MEAN:
            how = f"{_where(d.kernel)}: {_doc(d.kernel)}"
            if d.shares_rows_with:
                how = f"the per-row values of `{d.shares_rows_with}`, {how}"
            if d.finish is not None:
                how += f" The reported value is `{d.finish.__name__}` of the weighted mean."
        elif d.terms:
            terms = ", ".join(f"`{t.name}`" for t in d.terms)
            how = f"exact weighted sums of {terms}, combined once by {_where(d.reduce)}: {_doc(d.reduce)}"
        else:
            spec = d.component({p.name: p.default or 1 for p in d.params}, 1, 2)
            about = _doc(type(spec)).split(". ")[0].rstrip(".")
            how = (f"a `{type(spec).__name__}` state ({about[0].lower() + about[1:]}), "
                   f"reduced by {_where(d.reduce)}: {_doc(d.reduce)}")
        out.append(f"- {title}: {how}")
    return "\n".join(out) + "\n"


def cli_help() -> str:
    """``lossctl --help`` and the ``--help`` of every command, as sqlite-utils' docs hold theirs."""
    from lossctl.cli import cli

    out = []
    for name in [None, *sorted(cli.commands)]:
        words = ["lossctl"] + ([name] if name else [])
        if name and cli.commands[name].hidden:
            continue
        out.append(f"## {' '.join(words)}\n\n```\n{lossctl(*words[1:], '--help').rstrip()}\n```\n")
    return "\n".join(out)


BLOCKS: dict[str, Callable[[], str]] = {
    "losses-table": losses_table,
    "loss-parameters": parameters_table,
    "loss-checks": checks_table,
    "loss-kernels": kernels_list,
    "cli-help": cli_help,
}


def regenerate(text: str, where: str = "") -> str:
    """``text`` with every generated block rewritten."""

    def body(m: re.Match) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"{where}: unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        return f"<!-- generated: {name} -->\n{BLOCKS[name]()}<!-- end: {name} -->"

    return BLOCK.sub(body, text)


def stale(root: Path = ROOT) -> list[str]:
    """``FILE: BLOCK`` for every generated block whose text is not what lossctl generates now."""
    out = []
    for doc in DOCUMENTS:
        text = (root / doc).read_text()
        now = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
        new = {m["name"]: m["body"] for m in BLOCK.finditer(regenerate(text, doc))}
        out += [f"{doc}: {name}" for name in now if now[name] != new[name]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale blocks (exit 1 if any)")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for b in bad:
            print(f"stale: {b}", file=sys.stderr)
        if bad:
            print("run: python tools/docs.py", file=sys.stderr)
        return 1 if bad else 0
    for doc in DOCUMENTS:
        path = ROOT / doc
        text = path.read_text()
        new = regenerate(text, doc)
        if new != text:
            path.write_text(new)
            print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
