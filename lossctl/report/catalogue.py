"""The loss catalogue (``lossctl losses``) as Markdown or a Rich table.

The rows are :func:`lossctl.core.losses.describe_catalogue`'s; JSON is those
rows as they are.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

COLUMNS = ("loss", "aliases", "task", "kind", "better", "params", "label", "prediction", "formula")


def params_text(row: dict[str, Any]) -> str:
    """Parameters as written after ``-m NAME:`` (true/false, not Python's)."""
    return ", ".join(f"{k}={'(required)' if v is None else json.dumps(v)}"
                     for k, v in row["params"].items())


def catalogue_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        formula = r["formula"].replace("|", "\\|")
        lines.append(f"| `{r['name']}` | {', '.join(r['aliases'])} | {r['task']} | {r['kind']} "
                     f"| {r['better']} | {params_text(r)} | {r['label']} | {r['prediction']} "
                     f"| `{formula}` |")
    return "\n".join(lines)


def catalogue_table(rows: list[dict[str, Any]]) -> Table:
    """A Rich table of the catalogue, its caption naming the names of two definitions."""
    from rich.table import Table

    spellings = [n for r in rows for n in dict.fromkeys([r["name"], *r["aliases"]])]
    both = sorted({n for n in spellings if spellings.count(n) > 1})
    table = Table(caption=f"{', '.join(both)}: a binary or a multiclass definition, by the "
                          "prediction columns (one, or K).", caption_justify="left")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["aliases"]), r["task"], r["kind"], r["better"],
                      params_text(r), r["label"], r["prediction"], r["formula"])
    return table
