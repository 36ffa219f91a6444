"""The report as terminal tables (Rich), laid out for the terminal's real width.

A table that fits is drawn as a table: numbers are never broken, text cells
(an interval, a check's detail) wrap at word boundaries.  A table that
cannot fit even so (a comparison on a 60-column terminal) is drawn as one
block per row, a field per line, which reads at any width.  The paragraph
under the tables wraps at word boundaries too.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .tables import checks_headline, summary, tables

_TEXT = ("file", "detail", "verdict", "check", "loss", "model")  # left-aligned columns besides the first


def _is_text(header: str) -> bool:
    return header in _TEXT or "CI" in header


def _markup(title: str, col: int, header: list[str], cell: str) -> str:
    from rich.markup import escape

    if title == "checks" and header[col] == "result":
        return "[green]PASS[/]" if cell == "PASS" else "[bold red]FAIL[/]"
    return escape(cell)


def _table(title: str, header: list[str], rows: list[list[str]], widths: list[int],  # noqa: ANN202
           compact: bool = False):
    from rich import box
    from rich.table import Table

    frame = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False} if compact else {}
    table = Table(title=None if title == "losses" else title, title_justify="left", **frame)
    for i, h in enumerate(header):
        text = i == 0 or _is_text(h)
        # numbers stay whole; names and text wrap at word boundaries (a long word folds)
        table.add_column(h, style="bold cyan" if i == 0 else None,
                         justify="left" if text else "right", no_wrap=not text,
                         overflow="fold", width=widths[i])
    for r in rows:
        table.add_row(*(_markup(title, i, header, c) for i, c in enumerate(r)))
    return table


def _blocks(title: str, header: list[str], rows: list[list[str]], names: int) -> list:
    """One block per row: its naming cells as a heading, then a field per line."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    out: list = [Text(title, style="italic")] if title != "losses" else []
    for r in rows:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for i in range(names, len(header)):
            grid.add_row(header[i], _markup(title, i, header, r[i]))
        heading = " · ".join(f"{h}={c}" if names > 1 or title == "slices" else c
                             for h, c in zip(header[:names], r[:names], strict=True))
        out += [Text(heading, style="bold cyan"), Padding(grid, (0, 0, 0, 2))]
    return out


def _least(i: int, header: list[str], rows: list[list[str]]) -> int:
    """A column's least width: its longest word (text), or its longest cell (numbers)."""
    cells = [header[i]] + [r[i] for r in rows]
    if i == 0 or _is_text(header[i]):
        return max(len(w) for c in cells for w in c.split() or [""])
    return max(len(c) for c in cells)


def _widths(header: list[str], rows: list[list[str]], width: int, compact: bool
            ) -> list[int] | None:
    """Each column's width for a table ``width`` wide, or None when it cannot fit.

    Columns start at their natural width; while too wide, the text column
    with the most room above its least width (its longest word) gives up a
    character, the first column (what names the row) last.  Framed, a
    column costs 3 characters besides its text and the frame 1; compact
    (no frame), 3 between columns.
    """
    n = len(header)
    room = width - (3 * (n - 1) if compact else 3 * n + 1)
    least = [_least(i, header, rows) for i in range(n)]
    widths = [max(len(c) for c in [header[i]] + [r[i] for r in rows]) for i in range(n)]
    if sum(least) > room:
        return None
    while sum(widths) > room:  # (the first column, the row's name, wraps last)
        others = [k for k in range(1, n) if widths[k] > least[k]]
        i = max(others, key=lambda k: widths[k] - least[k]) if others else 0
        widths[i] -= 1
    return widths


def _names(title: str, doc: dict) -> int:
    """How many leading cells name a row (slice columns, and the loss in a comparison)."""
    if title == "leaderboard":
        return 3  # rank, model, loss
    if title != "slices":
        return 1
    return len(doc["columns"]["by"]) + (2 if "models" in doc else doc["command"] == "compare")


def render_table(doc: dict, color: bool, width: int) -> str:
    """Every table of the report, then its checks' verdict and where it comes from."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=max(width, 20),
                      highlight=False, soft_wrap=False)
    for title, header, rows in tables(doc):
        framed = _widths(header, rows, console.width, False)
        compact = _widths(header, rows, console.width, True)
        if framed is not None:
            console.print(_table(title, header, rows, framed))
        elif compact is not None:
            console.print(_table(title, header, rows, compact, compact=True))
        else:
            for block in _blocks(title, header, rows, _names(title, doc)):
                console.print(block)
            console.print()
    headline = checks_headline(doc)
    if headline:
        failed = not doc["passed"]
        console.print(f"lossctl: {headline}", style="bold red" if failed else "bold green")
    console.print(summary(doc), style="dim")
    return "".join(line.rstrip(" ") + "\n" for line in buf.getvalue().splitlines())


@contextmanager
def progress_bar(units: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while the block runs; yields its ``progress(done, total)``.

    The local engine counts bytes read (over the network too); Dask counts
    ``units`` done.  The bar is gone when the block ends.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (MofNCompleteColumn(),) if units else (DownloadColumn(), TransferSpeedColumn())
    with Progress("[progress.description]{task.description}", BarColumn(), *columns,
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("units" if units else "reading", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield advance
