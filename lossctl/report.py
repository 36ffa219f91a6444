"""Rendering: a Report -> JSON, table, CSV/TSV, Markdown or bare values.

The JSON document is the stable, documented schema (see README); the other
formats are views of the same dict.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:  # importing the engine would load NumPy and pyarrow
    from .engine import Report

FORMATS = ("table", "json", "csv", "tsv", "markdown", "value")


def _num(v: float) -> float | None:
    """JSON has no inf/nan: they become null."""
    return v if math.isfinite(v) else None


def to_dict(report: Report) -> dict[str, Any]:
    """The JSON report: ``lossctl`` version, inputs, columns, counts and every loss value."""
    r = report.result
    c = report.columns
    return {
        "lossctl": __version__,
        "inputs": report.inputs,
        "columns": {"label": c.label, "prediction": c.pred, "weight": c.weight},
        "rows": r.rows,
        "rows_skipped": r.rows_skipped,
        "weight_sum": _num(r.weight_sum),
        "losses_chosen": "auto" if report.losses_chosen else "user",
        "losses": {
            loss.key: {"name": loss.name, "params": loss.params, "value": _num(r.values[loss.key])}
            for loss in r.losses
        },
    }


def _display(v: float | None) -> str:
    if v is None:
        return "nan"
    return f"{v:.10g}"


def _rows(doc: dict) -> list[list[str]]:
    return [[key, _display(entry["value"]), str(doc["rows"]), _display(doc["weight_sum"])]
            for key, entry in doc["losses"].items()]


HEADER = ["loss", "value", "rows", "weight_sum"]


def render(report: Report, fmt: str, color: bool = False) -> str:
    """Render a report in one of :data:`FORMATS`."""
    doc = to_dict(report)
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "value":
        return "".join(f"{entry['value']!r}\n" if entry["value"] is not None else "nan\n"
                       for entry in doc["losses"].values())
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        w.writerow(HEADER)
        for key, entry in doc["losses"].items():
            v = entry["value"]
            w.writerow([key, repr(v) if v is not None else "nan", doc["rows"], doc["weight_sum"]])
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| loss | value | rows | weight sum |", "|---|---:|---:|---:|"]
        lines += [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in _rows(doc)]
        lines.append("")
        lines.append(_summary(doc))
        return "\n".join(lines) + "\n"
    return _table(doc, color)


def _summary(doc: dict) -> str:
    cols = doc["columns"]
    parts = [f"inputs: {', '.join(doc['inputs'])}",
             f"label: {', '.join(cols['label'])}",
             f"prediction: {', '.join(cols['prediction'])}"]
    if cols["weight"]:
        parts.append(f"weight: {cols['weight']}")
    if doc["rows_skipped"]:
        parts.append(f"rows skipped: {doc['rows_skipped']}")
    if doc["losses_chosen"] == "auto":
        parts.append("losses chosen by lossctl from the columns (name them with -m)")
    return "; ".join(parts)


def _table(doc: dict, color: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("loss", style="bold cyan")
    table.add_column("value", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("weight sum", justify="right")
    for row in _rows(doc):
        table.add_row(*row)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=100,
                      highlight=False)
    console.print(table)
    console.print(_summary(doc), style="dim", soft_wrap=True)
    return buf.getvalue()
