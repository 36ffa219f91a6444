"""The ``lossctl`` command line: Click commands only.

Options are parsed here, the engine does the work, ``report`` renders.  Heavy
modules (NumPy, pyarrow, Rich) are imported inside the commands so that
``lossctl --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import LossctlError
from .report import FORMATS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"lossctl: error: {message}", err=True)
    sys.exit(code)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn lossctl's exceptions into a clear message and exit status 2 (traceback with --debug)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug") or os.environ.get("LOSSCTL_DEBUG")
        try:
            return f(*args, **kwargs)
        except LossctlError as e:
            if debug:
                raise
            _fail(str(e))
        except MemoryError:
            if debug:
                raise
            _fail("out of memory (try a smaller --chunk-size)")
        except BrokenPipeError:
            _quiet_exit_on_closed_pipe()
        except OSError as e:
            if debug:
                raise
            _fail(f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}")

    return wrapper


debug_option = click.option("--debug", is_flag=True, help="Show a Python traceback on errors.")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="lossctl")
def cli() -> None:
    """Evaluate losses of prediction files: exact, streaming, CSV and Parquet.

    \b
    Examples:
      lossctl eval preds.csv -l y -p yhat                 # mse, rmse, mae
      lossctl eval preds.parquet -l label -p 'logit_*' -m sparse_softmax_ce
      lossctl eval preds.csv -l y -p yhat -m mse -f value # a bare number
      lossctl losses                                      # the catalogue
    """


def _tune_allocator() -> None:
    """Let glibc reuse freed chunk buffers instead of mapping fresh pages for each.

    NumPy temporaries of a chunk are ~0.5 MB; above glibc's default 128 KB
    mmap threshold each is mapped and unmapped, and every page faults again:
    that costs ~30% of the arithmetic.  Done by the command, never on import.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):  # not glibc: keep the defaults
        pass


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _use_color() -> bool:
    return _stdout_is_tty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


@cli.command("eval", context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True)
@click.option("-l", "--label", required=True, metavar="COLS",
              help="Label column(s): name, 1-based index, glob (y_*), range (a:b), or a comma list.")
@click.option("-p", "--pred", required=True, metavar="COLS",
              help="Prediction column(s), same syntax; K columns (or one list column) for multiclass.")
@click.option("-m", "--loss", "losses", multiple=True, metavar="LOSS",
              help="Loss to compute, e.g. mse or huber:delta=2; repeat or comma-separate. "
                   "Default: chosen from the columns (see the report).")
@click.option("-w", "--weight", metavar="COL", help="Sample-weight column (finite, >= 0).")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
              help="Output format. Default: table on a terminal, json otherwise.")
@click.option("--nan", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Missing, NaN or infinite values: fail, or skip the row (counted).")
@click.option("--chunk-size", type=int, default=None, metavar="ROWS",
              help="Rows per chunk (memory bound; results do not depend on it).  [default: 65536]")
@click.option("--input-format", type=click.Choice(["csv", "tsv", "parquet"]),
              help="Read every input as this format (default: by extension or magic bytes).")
@click.option("--delimiter", metavar="CHAR", help="CSV field delimiter (default: by extension).")
@click.option("--no-header", is_flag=True,
              help="CSV without a header line: columns are named 1, 2, ... by position.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@debug_option
@handle_errors
def eval_cmd(files: tuple[str, ...], label: str, pred: str, losses: tuple[str, ...],
             weight: str | None, fmt: str | None, nan: str, chunk_size: int | None,
             input_format: str | None, delimiter: str | None, no_header: bool,
             progress: bool | None, debug: bool) -> None:
    """Compute losses of the predictions in FILE... against their labels.

    FILE is a path, - for stdin, a glob, or a directory of shards (read in
    sorted order): CSV, TSV, gzip/zstd-compressed CSV, or Parquet.  Only the
    needed columns are read, in chunks: memory stays bounded.

    Exit status: 0 success, 2 usage or input error.
    """
    from .engine import DEFAULT_CHUNK_ROWS, Request, evaluate_files
    from .report import render

    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise click.BadParameter("must be one character", param_hint="--delimiter")
    req = Request(
        paths=list(files), label=label, pred=pred, losses=list(losses), weight=weight,
        nan=nan, chunk_rows=DEFAULT_CHUNK_ROWS if chunk_size is None else chunk_size,
        input_format=input_format,
        delimiter=delimiter, header=not no_header,
    )
    _tune_allocator()
    show_progress = sys.stderr.isatty() if progress is None else progress
    if show_progress:
        report = _with_progress(req)
    else:
        report = evaluate_files(req)
    fmt = fmt or ("table" if _stdout_is_tty() else "json")
    click.echo(render(report, fmt, color=_use_color()), nl=False)


def _with_progress(req: Any) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from .engine import evaluate_files

    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("reading", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        return evaluate_files(req, progress=advance)


@cli.command("losses", context_settings=CONTEXT)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              help="Output format. Default: table on a terminal, json otherwise.")
@debug_option
@handle_errors
def losses_cmd(fmt: str | None, debug: bool) -> None:
    """List the loss catalogue: names, aliases, parameters, formulas and columns needed."""
    import json

    from .losses import describe_catalogue

    rows = describe_catalogue()
    fmt = fmt or ("table" if _stdout_is_tty() else "json")
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return

    def params(r: dict) -> str:
        return ", ".join(f"{k}={'(required)' if v is None else v}" for k, v in r["params"].items())

    if fmt == "markdown":
        click.echo("| loss | aliases | task | params | label | prediction | formula |")
        click.echo("|---|---|---|---|---|---|---|")
        for r in rows:
            formula = r["formula"].replace("|", "\\|")
            click.echo(f"| `{r['name']}` | {', '.join(r['aliases'])} | {r['task']} | {params(r)} "
                       f"| {r['label']} | {r['prediction']} | `{formula}` |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(caption="log_loss means bce on one prediction column and cce on K columns.",
                  caption_justify="left")
    for col in ("loss", "aliases", "task", "params", "label", "prediction", "formula"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["aliases"]), r["task"], params(r), r["label"],
                      r["prediction"], r["formula"])
    Console(no_color=not _use_color(), highlight=False).print(table)


def _quiet_exit_on_closed_pipe() -> None:
    """The reader went away (``| head``): stop at once, status 0, no traceback.

    stdout is pointed at /dev/null first so the interpreter's final flush
    cannot raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def main() -> None:
    """Console-script entry point."""
    try:
        cli()
    except BrokenPipeError:
        _quiet_exit_on_closed_pipe()


if __name__ == "__main__":  # pragma: no cover
    main()
