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

from . import __version__, native
from .errors import LossctlError, OptionError
from .report.render import FORMATS
from .usage import UsageGroup

# = lossctl.io.sources.FORMATS (not imported here: --version and --help start fast)
INPUT_FORMATS = ["csv", "tsv", "parquet", "jsonl", "arrow", "orc"]
COMPLETE_VAR = "_LOSSCTL_COMPLETE"  # also under python -m lossctl
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    from .io.fs import redact  # (light: no pyarrow) no credential in any message

    click.echo(f"lossctl: error: {redact(message)}", err=True)
    sys.exit(code)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn lossctl's exceptions into a clear message and exit status 2 (traceback with --debug)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug") or os.environ.get("LOSSCTL_DEBUG")
        try:
            return f(*args, **kwargs)
        except OptionError as e:  # options that do not go together: Click's usage error
            raise click.UsageError(str(e)) from None
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
        except KeyboardInterrupt:  # Ctrl-C or kill: 128 + SIGINT, as shells report it
            if debug:
                raise
            _fail("interrupted", 130)
        except OSError as e:
            if debug:
                raise
            _fail(f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}")

    return wrapper


debug_option = click.option("--debug", is_flag=True, help="Show a Python traceback on errors.")

def _complete(name: str) -> Callable[..., Any]:
    """A shell-completion callback of :mod:`lossctl.completion`, imported only when completing."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> Any:
        from . import completion

        return getattr(completion, name)(ctx, param, incomplete)

    return complete


COLUMNS, LOSSES, FILES = (_complete(f"complete_{n}") for n in ("columns", "losses", "files"))
files_argument = click.argument("files", nargs=-1, required=True, shell_complete=FILES)


class _Group(UsageGroup):
    """The command group; keeps the arguments it was given, for the HTML report's command line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["lossctl.argv"] = list(args)
        return super().parse_args(ctx, args)


def _command_line() -> str:
    import shlex

    ctx = click.get_current_context(silent=True)
    args = ctx.meta.get("lossctl.argv", sys.argv[1:]) if ctx is not None else sys.argv[1:]
    return shlex.join(["lossctl", *args])


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="lossctl",
                      message=f"%(prog)s, version %(version)s ({native.status()})")
def cli() -> None:
    """Evaluate losses of prediction files: exact, streaming, CSV, Parquet, JSON Lines and more.

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


def _options(*decorators: Callable[..., Any]) -> Callable[..., Any]:
    """Apply a group of Click options (shared by several commands) in the order written."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


columns_options = _options(
    click.option("-l", "--label", required=True, metavar="COLS", shell_complete=COLUMNS,
                 help="Label column(s): name, 1-based index, glob (y_*), range (a:b), or a comma list."),
    click.option("-p", "--pred", multiple=True, metavar="COLS", shell_complete=COLUMNS,
                 help="Prediction column(s), same syntax; K columns (or one list column) for "
                      "multiclass.  eval: repeat for several models (one column each)."),
    click.option("-m", "--loss", "losses", multiple=True, metavar="LOSS", shell_complete=LOSSES,
                 help="Loss to compute, e.g. mse or huber:delta=2; repeat or comma-separate. "
                      "Default: chosen from the columns (see the report)."),
    click.option("-w", "--weight", metavar="COL", shell_complete=COLUMNS,
                 help="Sample-weight column (finite, >= 0)."),
)

def _size(ctx: Any, param: Any, value: str | None) -> int | None:
    """A size in bytes: 134217728, 128MiB, 128M, 1.5GB."""
    if value is None:
        return None
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", value)
    if not m:
        raise click.BadParameter("a size such as 134217728, 128MiB or 1GB", param=param)
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    size = int(float(m.group(1)) * scale)
    if size < 1:
        raise click.BadParameter("must be at least 1 byte", param=param)
    return size


reading_options = _options(
    click.option("--nan", type=click.Choice(["error", "skip"]), default="error", show_default=True,
                 help="Missing, NaN or infinite values: fail, or skip the row (counted)."),
    click.option("--chunk-size", type=int, default=None, metavar="ROWS",
                 help="Rows per chunk (memory bound; results do not depend on it).  "
                      "[default: 65536, fewer for wide rows: at most 2**20 values a chunk, "
                      "e.g. 1,024 rows of 1,000 logits]"),
    click.option("--input-format", type=click.Choice(INPUT_FORMATS),
                 help="Read every input as this format (default: by magic bytes or extension; "
                      "jsonl is JSON Lines, arrow is Arrow IPC/Feather)."),
    click.option("--delimiter", metavar="CHAR", help="CSV field delimiter (default: by extension)."),
    click.option("--no-header", is_flag=True,
                 help="CSV without a header line: columns are named 1, 2, ... by position."),
    click.option("--max-record-size", callback=_size, metavar="SIZE",
                 help="Longest CSV record (line) read, e.g. 64M or 1G; a longer one is an error "
                      "naming its row (a stray quote or a file without line ends stops there).  "
                      "[default: 16M]"),
    click.option("--progress/--no-progress", default=None,
                 help="Progress bar on stderr (default: only when stderr is a terminal)."),
    click.option("--verbose", is_flag=True,
                 help="List on stderr the files read, and those a directory or glob left out "
                      "(and why)."),
)

engine_options = _options(
    click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                 help="Where to run: this machine's threads, or a Dask cluster (pip install "
                      "'lossctl[dask]'). The report is the same, bit for bit."),
    click.option("--scheduler", metavar="ADDRESS",
                 help="Dask scheduler, e.g. tcp://host:8786. Default: Dask's configuration "
                      "(DASK_SCHEDULER_ADDRESS), else a local cluster on this machine."),
    click.option("--unit-size", callback=_size, metavar="SIZE",
                 help="Dask: split files larger than this into work units (Parquet row groups, "
                      "CSV byte ranges).  [default: 128MiB]"),
)

join_options = _options(
    click.option("--key", metavar="COL", shell_complete=COLUMNS,
                 help="Join the files by this column (same name in both) instead of row by row. "
                      "The joined file's key and joined columns are held in memory, with a hash "
                      "index of 10-18 bytes a row: memory grows with that file (peak: those "
                      "columns plus 150-200 MB), not with FILE."),
    click.option("--missing", type=click.Choice(["error", "skip"]), default="error",
                 show_default=True,
                 help="Rows of FILE whose key is not in the joined file: fail, or skip them "
                      "(counted)."),
)

format_option = click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
                             help="Output format. Default: table on a terminal, json otherwise.")

check_options = _options(
    click.option("--fail-if", "fail_if", multiple=True, metavar="'LOSS OP N'",
                 help="Exit 1 if the check holds, e.g. 'mse > 0.25' (OP: < <= > >=). Repeatable."),
    click.option("--slice-fail-if", "slice_fail_if", multiple=True, metavar="'LOSS OP N'",
                 help="With --by: exit 1 if the check holds for any slice shown. Repeatable."),
    click.option("--checks", "checks_file", metavar="FILE", shell_complete=FILES,
                 help="Checks from a TOML or JSON file (fail_if, slice_fail_if, max_increase, "
                      "max_regression, slice_max_regression, baseline)."),
    click.option("--junit", metavar="FILE", shell_complete=FILES,
                 help="Write the checks as JUnit XML to FILE."),
    click.option("--force", is_flag=True,
                 help="Replace existing output files (--junit, --emit-state, --html); never an "
                      "input."),
)

interval_options = _options(
    click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 default=0.95, show_default=True, help="Confidence level of the intervals."),
    click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True,
                 help="Seed of the row buckets and the bootstrap (same seed: same intervals)."),
    click.option("--ci-key", metavar="COL", shell_complete=COLUMNS,
                 help="Bucket rows by this row id column (integer or string) instead of (file "
                      "name, row): the same interval after renaming, converting or re-sharding."),
)

slice_options = _options(
    click.option("--by", metavar="COLS", shell_complete=COLUMNS,
                 help="Report every loss per slice: each value (or combination) of these columns."),
    click.option("--min-slice-rows", type=click.IntRange(min=0), default=0, metavar="N",
                 help="Hide slices with fewer rows (they are counted in the report)."),
    click.option("--sort", "sort_by", metavar="LOSS", shell_complete=LOSSES,
                 help="Order slices by this loss, worst first."),
    click.option("--max-slices", type=click.IntRange(min=1), default=10_000, show_default=True,
                 metavar="N", help="Fail (exit 2) when --by finds more distinct slices."),
)

baseline_options = _options(
    click.option("--baseline", metavar="REPORT.json", shell_complete=FILES,
                 help="Gate every loss against an earlier `lossctl eval -f json` report or "
                      "--emit-state file: no loss may get worse (beyond --max-increase)."),
    click.option("--max-increase", multiple=True, metavar="LOSS=TOL",
                 help="With --baseline: how much worse LOSS may get, relative (mse=2%) or "
                      "absolute (mse=0.01); 2% alone (or *=2%) for every other loss. Repeatable."),
)

labels_option = click.option("--labels", "labels_file", metavar="FILE", shell_complete=FILES,
                             help="Read the labels (-l) from FILE, joined by --key or row by row.")

top_option = click.option("--top", nargs=2, type=(click.IntRange(min=1), str), metavar="N LOSS",
                          help="List the N rows with the worst LOSS (with --keep columns).")
html_option = click.option(
    "--html", metavar="FILE", shell_complete=FILES,
    help="Also write a self-contained HTML report (figures inline, nothing fetched) to FILE. "
         "Needs the extra lossctl[report] (matplotlib).")
quantiles_option = click.option(
    "--quantiles", is_flag=True,
    help="Add p50, p90, p99 and max of every loss's per-row values (within 0.79%) to the report.")
keep_option = click.option("--keep", metavar="COLS", shell_complete=COLUMNS,
                           help="Columns carried to per-row output and --top lists (an id, a segment).")


def _list_inputs(paths: list[str | None]) -> None:
    """--verbose: the files that will be read, and those left out of directories and globs."""
    from .io.sources import expand_paths

    skipped: list[tuple[str, str]] = []
    found = expand_paths([p for p in paths if p], skipped)
    for path in found:
        click.echo(f"lossctl: reading {'<stdin>' if path == '-' else path}", err=True)
    for path, why in skipped:
        click.echo(f"lossctl: skipped {path}: {why}", err=True)


_API_NAMES = {"checks_file": "checks", "labels_file": "labels", "sort_by": "sort"}
_CLI_ONLY = ("debug", "verbose", "progress")


def _run(call: Callable[..., Any], paths: list[str], o: dict[str, Any], *extra_inputs: str | None,
         **kwargs: Any) -> Any:
    """Call the API function with the command's options (Click's names -> the API's), with a
    progress bar on stderr when asked for (or on a terminal)."""
    if o.get("verbose"):
        _list_inputs([*paths, *extra_inputs])
    _tune_allocator()
    args = {_API_NAMES.get(k, k): v for k, v in o.items() if k not in _CLI_ONLY}
    if "no_header" in args:
        args["header"] = not args.pop("no_header")
    if "html" in args:
        args["command"] = _command_line()
    show = sys.stderr.isatty() if o.get("progress") is None else o["progress"]
    if not show:
        return call(paths, **args, **kwargs)
    from .report.terminal import progress_bar

    with progress_bar(units=o.get("engine") == "dask") as advance:
        return call(paths, **args, **kwargs, progress=advance)


def _finish(report: Any, fmt: str | None) -> None:
    """Print the warnings and the report; exit 1 if a check failed."""
    from .report.render import failed_checks_text, render

    for warning in report.warnings:
        click.echo(f"lossctl: warning: {warning}", err=True)
    doc = report.to_dict()
    fmt = fmt or ("table" if _stdout_is_tty() else "json")
    click.echo(render(doc, fmt, color=_use_color(), width=_width()), nl=False)
    if not report.passed:
        sys.stdout.flush()
        click.echo(failed_checks_text(doc), err=True, nl=False)
        sys.exit(1)


def _width() -> int:
    """The width of tables: COLUMNS, else stdout's terminal, else 120 (a pipe or a file)."""
    try:
        return max(20, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        pass
    try:
        if sys.stdout.isatty():
            return os.get_terminal_size(sys.stdout.fileno()).columns or 120
    except (OSError, ValueError, AttributeError):
        pass
    return 120


@cli.command("eval", context_settings=CONTEXT)
@files_argument
@columns_options
@format_option
@reading_options
@engine_options
@check_options
@baseline_options
@click.option("--ci", is_flag=True,
              help="Add a bootstrap confidence interval to every loss (one pass, constant memory).")
@click.option("--models", metavar="GLOB", shell_complete=COLUMNS,
              help="Score every prediction column GLOB matches as a model (with those of -p): "
                   "a leaderboard, best first, differences against the reference.")
@click.option("--reference", metavar="MODEL", shell_complete=COLUMNS,
              help="Several models: the one the others are compared with (default: the first).")
@interval_options
@slice_options
@top_option
@keep_option
@labels_option
@join_options
@quantiles_option
@html_option
@click.option("--emit-state", metavar="FILE", shell_complete=FILES,
              help="Also save the exact state to FILE, for `lossctl merge` of shards.")
@debug_option
@handle_errors
def eval_cmd(files: tuple[str, ...], fmt: str | None, **o: Any) -> None:
    """Compute losses of the predictions in FILE... against their labels.

    FILE is a path, - for stdin, a glob, or a directory of shards (read in
    sorted order): CSV, TSV or JSON Lines (.jsonl, .ndjson; each may be
    gzip/zstd-compressed), Parquet, Arrow IPC/Feather (.arrow, .feather,
    .ipc) or ORC.  Only the needed columns are read, in chunks: memory stays
    bounded.  Several models (-p a -p b, or --models 'yhat_*') are scored
    in the same pass, as a leaderboard: best first, each with its paired
    difference from the reference model.

    Exit status: 0 success, 1 a check failed, 2 usage or input error.
    """
    from .api import evaluate_files

    _finish(_run(evaluate_files, list(files), o, o["labels_file"]), fmt)


@cli.command("compare", context_settings=CONTEXT)
@files_argument
@columns_options
@click.option("--baseline-pred", metavar="COLS", shell_complete=COLUMNS,
              help="The baseline's prediction column(s) in FILE (then -p is the candidate's). "
                   "With two files: the baseline's columns in the first, if not named as -p.")
@format_option
@reading_options
@engine_options
@check_options
@click.option("--max-regression", multiple=True, metavar="LOSS=TOL",
              help="Exit 1 if the candidate is worse than the baseline by more than TOL "
                   "(mse=1% or mse=0.01) with confidence. Repeatable.")
@click.option("--slice-max-regression", multiple=True, metavar="LOSS=TOL",
              help="With --by: exit 1 if the candidate is worse by more than TOL with confidence "
                   "in any slice shown (each slice's own interval). Repeatable.")
@click.option("--strict", is_flag=True,
              help="--max-regression fails on the point value alone, not the interval.")
@interval_options
@slice_options
@join_options
@quantiles_option
@html_option
@debug_option
@handle_errors
def compare_cmd(files: tuple[str, ...], fmt: str | None, **o: Any) -> None:
    """Paired comparison of a baseline and a candidate on the same labels.

    \b
    One file, two prediction columns:
      lossctl compare preds.parquet -l y --baseline-pred old -p new -m mse
    Two files, aligned row by row or by --key (labels from the first):
      lossctl compare old.parquet new.parquet -l y -p yhat --key id -m mse

    Every loss gets the baseline and candidate values, their difference
    (candidate - baseline) and relative difference ((c - b) / |b|), a
    confidence interval of the difference (paired bootstrap: the same row
    buckets for both), and a verdict: better, worse or no significant change.
    With --by, every slice too (--sort LOSS: the most regressed first).

    Exit status: 0 success, 1 a check failed, 2 usage or input error.
    """
    from .api import compare_files

    _finish(_run(compare_files, list(files), o), fmt)


@cli.command("rows", context_settings=CONTEXT)
@files_argument
@columns_options
@click.option("-o", "--output", required=True, metavar="OUT", shell_complete=FILES,
              help="Where to write: OUT.parquet, OUT.csv, OUT.tsv, or - (CSV on stdout).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never an input).")
@keep_option
@top_option
@reading_options
@engine_options
@labels_option
@join_options
@debug_option
@handle_errors
def rows_cmd(files: tuple[str, ...], output: str, **o: Any) -> None:
    """Write the loss of every row (no averaging) to OUT, with row numbers and --keep columns.

    The inputs are never touched.  OUT is written under a temporary name and
    renamed when complete: an interrupted run leaves no OUT behind.  Rows
    skipped by --nan skip have empty (null) losses; rows dropped by
    --missing skip are not written.

    Exit status: 0 success, 2 usage or input error.
    """
    from .api import write_rows

    _on_sigterm_interrupt()
    written = _run(write_rows, list(files), o, o["labels_file"], output=output)
    click.echo(f"lossctl: wrote {written.rows} rows to {written.where}", err=True)
    if written.report.state.top is not None:
        from .report.render import render

        click.echo(render(written.report.to_dict(), "table" if sys.stderr.isatty() else "json"),
                   err=True, nl=False)


def _on_sigterm_interrupt() -> None:
    """Let SIGTERM unwind like Ctrl-C, so partial outputs are removed."""
    import signal

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (tests calling the command in a thread)
        pass


@cli.command("merge", context_settings=CONTEXT)
@click.argument("states", nargs=-1, required=True, shell_complete=FILES)
@format_option
@check_options
@baseline_options
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Confidence level (states made with --ci).")
@click.option("--min-slice-rows", type=click.IntRange(min=0), default=0, metavar="N",
              help="Hide slices with fewer rows.")
@click.option("--sort", "sort_by", metavar="LOSS", shell_complete=LOSSES,
              help="Order slices by this loss, worst first.")
@click.option("--emit-state", metavar="FILE", shell_complete=FILES, help="Save the merged state too.")
@html_option
@debug_option
@handle_errors
def merge_cmd(states: tuple[str, ...], fmt: str | None, **o: Any) -> None:
    """Combine states saved by `eval --emit-state` (shards, other machines, other days).

    The report is the one a single run over all the shards gives, bit for
    bit, slices and intervals included.  States of different losses,
    parameters, columns or options are refused.

    Exit status: 0 success, 1 a check failed, 2 usage or input error.
    """
    from .api import merge_states

    _finish(_run(merge_states, list(states), o), fmt)


@cli.command("losses", context_settings=CONTEXT)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              help="Output format. Default: table on a terminal, json otherwise.")
@debug_option
@handle_errors
def losses_cmd(fmt: str | None, debug: bool) -> None:
    """List the loss catalogue: names, aliases, parameters, formulas and columns needed."""
    import json

    from .core.losses import describe_catalogue
    from .report.catalogue import catalogue_markdown, catalogue_table

    rows = describe_catalogue()
    fmt = fmt or ("table" if _stdout_is_tty() else "json")
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "markdown":
        click.echo(catalogue_markdown(rows))
    else:
        from rich.console import Console

        Console(no_color=not _use_color(), highlight=False).print(catalogue_table(rows))


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
    # before NumPy loads: lossctl does no linear algebra, and idle OpenBLAS threads spin
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if os.environ.get(COMPLETE_VAR):  # shell completion (see lossctl.completion)
        from .completion import register

        register()
    try:
        cli(complete_var=COMPLETE_VAR)
    except BrokenPipeError:
        _quiet_exit_on_closed_pipe()


if __name__ == "__main__":  # pragma: no cover
    main()
