"""Running the lossctl CLI from tests: in-process (CliRunner) or as a real process.

Shared by the CLI test files.  In-process, an exception that escapes the
command (a traceback for the user) fails the test at once.  Every JSON report
that ``eval``, ``compare`` or ``merge`` prints through :func:`run` is validated
against docs/report.schema.json, so a key renamed or added without the schema
fails whichever test made the report.
"""

from __future__ import annotations

import functools
import json
import os
import select
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from lossctl.cli import cli

LOSSCTL = Path(sys.executable).with_name("lossctl")
SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "report.schema.json"
REPORTING = ("eval", "compare", "merge")  # the commands whose JSON output is a report
CLEAN_ENV = ("LOSSCTL_DEBUG", "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE")


@dataclass
class Run:
    code: int
    out: str
    err: str
    exception: BaseException | None = None


def proc_env(env: dict[str, str] | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    out.update(env or {})
    return out


def command(mode: str) -> list[str]:
    return [str(LOSSCTL)] if mode == "script" else [sys.executable, "-m", "lossctl"]


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_report(doc: Any) -> None:
    """Fail unless ``doc`` (a parsed JSON report) is valid against docs/report.schema.json."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(doc))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise AssertionError(f"JSON report not valid against {SCHEMA.name} at {where}: {error.message}")


def _check_output(args: list[str], r: Run) -> Run:
    """Validate ``r.out`` when it is the JSON report of a command that makes one."""
    if r.code in (0, 1) and args[:1] and args[0] in REPORTING and r.out.lstrip().startswith("{"):
        try:
            doc = json.loads(r.out)
        except ValueError:  # not JSON after all (a test of another format may print braces)
            return r
        check_report(doc)
    return r


def run(mode: str, args: list[Any], *, input: bytes | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, allow_exception: bool = False) -> Run:
    """Run ``lossctl ARGS`` in-process (``runner``) or as a process (``script``, ``module``)."""
    args = [str(a) for a in args]
    if mode == "runner":
        runner_env: dict[str, str | None] = {k: None for k in CLEAN_ENV}
        runner_env.update(env or {})
        old = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        old_term = signal.getsignal(signal.SIGTERM)  # `rows` installs its own handler
        try:
            r = CliRunner().invoke(cli, args, input=input, env=runner_env)
        finally:
            os.chdir(old)
            signal.signal(signal.SIGTERM, old_term)
        exc = r.exception if not isinstance(r.exception, SystemExit) else None
        if exc is not None and not allow_exception:
            tb = "".join(traceback.format_exception(*r.exc_info)) if r.exc_info else repr(exc)
            raise AssertionError(f"lossctl raised instead of exiting cleanly:\n{tb}")
        return _check_output(args, Run(r.exit_code, r.stdout, r.stderr, exc))
    assert LOSSCTL.exists(), f"console script not installed at {LOSSCTL}"
    p = subprocess.run(command(mode) + args, input=input,
                       stdin=subprocess.DEVNULL if input is None else None,
                       capture_output=True, env=proc_env(env), cwd=cwd, timeout=120)
    return _check_output(args, Run(p.returncode, p.stdout.decode(), p.stderr.decode()))


def report(mode: str, args: list[Any], **kw: Any) -> dict:
    """Run with ``-f json``, require success and a quiet stderr, return the parsed report."""
    r = run(mode, [*args, "-f", "json"], **kw)
    assert r.code == 0, f"exit {r.code}: {r.err}"
    assert r.err == ""
    return json.loads(r.out)


def run_in_pty(args: list[Any], env: dict[str, str] | None = None,
               columns: int | None = None) -> tuple[int, str, str]:
    """Run lossctl with stdout on a pseudo-terminal (stderr a pipe), ``columns`` wide if given.

    The width is the terminal's own (TIOCSWINSZ), as a real terminal sets it:
    COLUMNS is removed from the environment.
    """
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    if columns is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in proc_env({"TERM": "xterm-256color", **(env or {})}).items()
               if columns is None or k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([str(LOSSCTL), *map(str, args)], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=environ)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"), err
