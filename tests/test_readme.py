"""Every ``lossctl`` command of the README runs as written, from a copy of the repository.

The commands are read from the README's shell blocks (```` ```sh ````): ``\\``
continuations joined, ``$`` prompts and comment lines dropped, and the parts
of a line joined by ``&&`` that do not run lossctl (``pip install .``)
dropped too.  Each runs in a real shell (``bash -c``) with this venv's
``lossctl`` first on ``PATH``, from a temporary copy of ``sample_data/``,
so the repository is never written to.  The commands of one block run in
order in one copy (a later command may read what an earlier one wrote: a
baseline, saved states).  A command passes when it exits 0, or 1 when its
comment says ``exits 1`` (an example of a check that fails), with no
traceback on stderr; exit 2 (a usage or input error) never passes.

A block fenced ```` ```sh no-run ```` holds commands that cannot run here
(object storage, a Dask cluster, an http server): it is left out, and
``test_every_block_that_is_not_run_says_why`` keeps that list short.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELLS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```$", re.S | re.M)
EXPECT_FAIL = re.compile(r"#.*\bexits 1\b")
TO_COPY = ["sample_data"]


@dataclass(frozen=True)
class Command:
    block: int  # the block's line in the README (1-based)
    line: int  # the command's first line
    text: str  # as bash runs it
    expect: int  # the exit status it must have

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text}"


def _lossctl_part(part: str) -> bool:
    return re.search(r"(^|[\s|(;$`])lossctl\s", part + " ") is not None


def _drop_other_steps(text: str) -> str:
    """``pip install . && lossctl eval ...`` -> ``lossctl eval ...``: the steps joined by
    ``&&`` that do not run lossctl (installs, test runs) are not the README's examples."""
    parts = [p.strip() for p in re.split(r"\s&&\s", text)]
    return " && ".join(p for p in parts if _lossctl_part(p))


def blocks(markdown: str) -> list[tuple[int, str, str]]:
    """``(line, info, body)`` of every fenced block."""
    return [(markdown.count("\n", 0, m.start()) + 1, m["info"].strip(), m["body"])
            for m in FENCE.finditer(markdown)]


def commands(markdown: str) -> list[Command]:
    """Every lossctl command of the shell blocks meant to run."""
    out = []
    for start, info, body in blocks(markdown):
        words = info.split()
        if not words or words[0] not in SHELLS or "no-run" in words[1:]:
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            first = i
            text = lines[i]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            text = re.sub(r"^\s*\$\s+", "", text).strip()
            if not text or text.startswith("#") or not _lossctl_part(text):
                continue
            expect = 1 if EXPECT_FAIL.search(text) else 0
            text = _drop_other_steps(text)
            out.append(Command(start, start + 1 + first, text, expect))
    return out


COMMANDS = commands(README.read_text())


class Workspace:
    """A copy of the repository's sample files per README block, where its commands run in order.

    The blocks run side by side (one thread each, as many at a time as there
    are cores), each command once; a test waits for its own command.
    """

    def __init__(self, root: Path, wanted: list[Command]) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LOSSCTL_DEBUG", "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE")}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["COLUMNS"] = "100"
        last = {c.block: c.line for c in wanted}
        todo: dict[int, list[Command]] = {}
        for c in COMMANDS:  # every command of a block up to the last one wanted
            if c.line <= last.get(c.block, 0):
                todo.setdefault(c.block, []).append(c)
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
        self.futures = {block: self.pool.submit(self._run_block, block, cmds)
                        for block, cmds in todo.items()}

    def _run_block(self, block: int, cmds: list[Command]) -> dict[Command, subprocess.CompletedProcess]:
        d = self.root / f"block-{block}"
        d.mkdir()
        for name in TO_COPY:
            shutil.copytree(ROOT / name, d / name)
        return {c: subprocess.run(["bash", "-o", "pipefail", "-c", c.text], cwd=d, env=self.env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=120)
                for c in cmds}

    def result(self, cmd: Command) -> subprocess.CompletedProcess:
        return self.futures[cmd.block].result()[cmd]


@pytest.fixture(scope="module")
def workspace(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    wanted = [item.callspec.params["cmd"] for item in request.session.items
              if getattr(item, "callspec", None) and "cmd" in item.callspec.params
              and item.module is request.module]
    ws = Workspace(tmp_path_factory.mktemp("readme"), wanted)
    yield ws
    ws.pool.shutdown(cancel_futures=True)


def test_the_readme_has_its_examples() -> None:
    assert len(COMMANDS) >= 40
    assert shutil.which("bash")


@pytest.mark.parametrize("cmd", COMMANDS, ids=str)
def test_readme_command_runs(cmd: Command, workspace: Workspace) -> None:
    p = workspace.result(cmd)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == cmd.expect, (f"{cmd}\nexit {p.returncode}, expected {cmd.expect}\n"
                                        f"stderr: {p.stderr[-2000:]}")


def test_every_block_that_is_not_run_says_why() -> None:
    """Few blocks are left out, each after a sentence saying it needs storage or a cluster."""
    text = README.read_text()
    skipped = [(line, body) for line, info, body in blocks(text)
               if info.split()[:1] and info.split()[0] in SHELLS and "no-run" in info.split()[1:]]
    assert len(skipped) <= 3, [line for line, _ in skipped]
    for _, body in skipped:
        assert re.search(r"://|--engine dask", body), body


def test_the_extraction_handles_continuations_prompts_and_steps() -> None:
    md = ("```sh\n$ lossctl eval a.csv \\\n    -l y -p p   # comment\n# lossctl in a comment\n"
          "pip install . && lossctl losses\nx=$(lossctl eval b.csv -l y -p p -f value)\n"
          "lossctl eval c.csv -l y -p p --fail-if 'mse > 0'   # exits 1: too strict\n```\n"
          "```sh no-run\nlossctl eval s3://b/ -l y -p p\n```\n```toml\nlossctl = 1\n```\n")
    got = [(c.line, c.text, c.expect) for c in commands(md)]
    assert got == [(2, "lossctl eval a.csv -l y -p p   # comment", 0),
                   (5, "lossctl losses", 0),
                   (6, "x=$(lossctl eval b.csv -l y -p p -f value)", 0),
                   (7, "lossctl eval c.csv -l y -p p --fail-if 'mse > 0'   # exits 1: too strict", 1)]


def test_the_readme_links_only_to_files_in_the_repository() -> None:
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'href="([^"]+)"', text)
    assert links
    for target in links:
        assert not re.match(r"[a-z]+://", target), f"README links outside the repository: {target}"
        file = target.partition("#")[0]
        if file:
            dest = (ROOT / file).resolve()
            assert dest.is_relative_to(ROOT) and dest.exists(), target
