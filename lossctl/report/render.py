"""Rendering: a Report -> JSON, table, CSV/TSV, Markdown, bare values, JUnit XML.

The JSON document is the stable, documented schema (see README); every other
format is a view of the same dict, made by :func:`to_dict`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:  # importing the engine would load NumPy and pyarrow
    from .gate import CheckResult
    from .model import Report

FORMATS = ("table", "json", "csv", "tsv", "markdown", "value")
METHOD = "poisson bootstrap over row buckets (percentile interval)"


def _num(v: float | None) -> float | None:
    """JSON has no inf/nan: they become null."""
    return v if v is not None and math.isfinite(v) else None


def _pair(ci: tuple[float, float] | None) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def to_dict(report: Report, checks: Sequence[CheckResult] = (), min_slice_rows: int = 0,
            sort: str | None = None) -> dict[str, Any]:
    """The JSON report: inputs, columns, counts, every loss value, and what else was asked for.

    ``min_slice_rows`` hides smaller slices (counted in ``slices_hidden``);
    ``sort`` orders slices by that loss, worst first (else by slice value).
    """
    r = report.result
    c = report.columns
    cols: dict[str, Any] = {"label": c.label, "prediction": c.pred, "weight": c.weight}
    if report.baseline is not None:
        cols = {"label": c.label, "baseline": c.baseline or c.pred, "candidate": c.pred,
                "weight": c.weight}
    if c.by:
        cols["by"] = c.by
    if c.key:
        cols["key"] = c.key
    doc: dict[str, Any] = {
        "lossctl": __version__,
        "command": "compare" if report.baseline is not None else "eval",
        "inputs": report.inputs,
        "columns": cols,
        "rows": r.rows,
        "rows_skipped": r.rows_skipped,
        "weight_sum": _num(r.weight_sum),
        "losses_chosen": "auto" if report.losses_chosen else "user",
        "losses": {},
    }
    state = report.state
    for loss in r.losses:
        d = loss.definition
        entry: dict[str, Any] = {"name": loss.name, "params": loss.params, "task": d.task,
                                 "kind": d.kind, "group": d.group,
                                 "higher_is_better": d.higher_is_better}
        if report.differences is not None:
            d = report.differences[loss.key]
            entry.update({"baseline": _num(d["baseline"]), "candidate": _num(d["candidate"]),
                          "difference": _num(d["difference"]), "relative": _num(d["relative"]),
                          "ci": _pair(d.get("ci")), "relative_ci": _pair(d.get("relative_ci")),
                          "verdict": d.get("verdict")})
            if "ci_unsupported" in d:
                entry["ci_unsupported"] = d["ci_unsupported"]
        else:
            entry["value"] = _num(r.values[loss.key])
            if report.intervals is not None:
                entry["ci"] = _pair(report.intervals[loss.key])
                note = state.interval_note(loss)
                if note is not None:
                    entry["ci_unsupported"] = note
            entry.update(r.details.get(loss.key, {}))
        doc["losses"][loss.key] = entry
    if state.buckets:
        doc["confidence"] = {"level": report.confidence, "method": METHOD,
                             "buckets": state.buckets, "seed": state.seed}
    if state.slice_keys is not None:
        _add_slices(doc, state, report.slice_intervals, min_slice_rows, sort)
    if state.distributions.quantiles:
        _add_quantiles(doc, report)
    if state.top is not None:
        t = state.top
        doc["top"] = {"loss": t.key, "rows": [
            {"file": f, "row": row + 1, "value": _num(v), **kept} for v, f, row, kept in t.rows]}
    if report.join is not None:
        doc["join"] = report.join.to_dict()
    if report.outcome.engine is not None:
        doc["engine"] = report.outcome.engine
    if checks:
        doc["checks"] = [ch.to_dict() for ch in checks]
        doc["passed"] = all(ch.passed for ch in checks)
    return doc


def _add_quantiles(doc: dict, report: Report) -> None:
    """Quantiles of each mean's per-row values, and of a regression's residuals (per model)."""
    from ..core.sketch import MANTISSA_BITS, RELATIVE_ERROR

    models = {"baseline": report.baseline_state, "candidate": report.state} \
        if report.baseline_state is not None else {None: report.state}

    def per_model(loss: Any) -> Any:
        """A loss's quantiles (residuals': ``loss`` None), one dict per model in a comparison."""
        got = {}
        for m, st in models.items():
            d = st.distributions
            q = d.residual_quantiles() if loss is None else d.row_quantiles(loss)
            got[m] = None if q is None else {k: _num(v) for k, v in q.items()}
        return got[None] if None in got else got

    doc["quantiles"] = {"method": f"log-bucketed histogram, {1 << MANTISSA_BITS} buckets per "
                                  f"power of two; exact max and min", "relative_error": RELATIVE_ERROR}
    for loss in report.result.losses:
        if loss.definition.per_row:
            doc["losses"][loss.key]["quantiles"] = per_model(loss)
    if report.state.distributions.residuals:
        doc["residuals"] = {"of": "prediction - label", "quantiles": per_model(None)}


def by_key(s: dict) -> list:
    """A slice's order by its key values (missing last, then by type, then by value)."""
    return [(v is None, str(type(v)), v if v is not None else 0) for v in s["key"].values()]


def _add_slices(doc: dict, state: Any, cis: list | None, min_rows: int, sort: str | None) -> None:
    slices = state.slice_results()
    if cis is not None:
        for s, ci in zip(slices, cis, strict=True):
            s["ci"] = ci
    shown = [s for s in slices if s["rows"] >= min_rows]
    if sort is not None:
        loss = state.loss(sort)
        sign = 1.0 if loss.definition.higher_is_better else -1.0

        def worst(s: dict) -> tuple:  # ties by key: the order never depends on the rows' order
            v = s["values"][loss.key]
            return (math.isnan(v), sign * v if not math.isnan(v) else 0.0, by_key(s))

        shown.sort(key=worst)
    else:
        shown.sort(key=by_key)
    doc["slices"] = [{"key": s["key"], "rows": s["rows"], "weight_sum": _num(s["weight_sum"]),
                      "losses": {k: _num(v) for k, v in s["values"].items()},
                      **({"ci": {k: _pair(v) for k, v in s["ci"].items()}} if "ci" in s else {})}
                     for s in shown]
    doc["slices_hidden"] = len(slices) - len(shown)
    doc["slices_sort"] = state.loss(sort).key if sort is not None else None


def _display(v: float | None) -> str:
    if v is None:
        return "nan"
    return f"{v:.10g}"


def _ci_text(ci: list | None) -> str:
    if ci is None:
        return ""
    return f"[{_display(ci[0])}, {_display(ci[1])}]"


def _pct(v: float | None) -> str:
    return "nan" if v is None else f"{v * 100:+.3g}%"


def render(doc: dict, fmt: str, color: bool = False) -> str:
    """Render a report dict (from :func:`to_dict`) in one of :data:`FORMATS`."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "value":
        key = "candidate" if doc["command"] == "compare" else "value"
        return "".join(f"{entry[key]!r}\n" if entry[key] is not None else "nan\n"
                       for entry in doc["losses"].values())
    if fmt in ("csv", "tsv"):
        return _csv(doc, "," if fmt == "csv" else "\t")
    if fmt == "markdown":
        return _markdown(doc)
    return _table(doc, color)


# -- the tables of a report, as header + rows of text (shared by every text format) --

def _loss_table(doc: dict, group: str = "loss") -> tuple[list[str], list[list[str]]]:
    """The losses (``group="loss"``) or the metrics of a report, one row each."""
    ci = "confidence" in doc
    level = f"{doc['confidence']['level'] * 100:g}% CI" if ci else ""
    entries = {k: e for k, e in doc["losses"].items() if e.get("group", "loss") == group}
    if doc["command"] == "compare":
        header = [group, "baseline", "candidate", "difference", "relative"]
        header += [f"{level} of difference", "verdict"]
        rows = [[k, _display(e["baseline"]), _display(e["candidate"]), _display(e["difference"]),
                 _pct(e["relative"]), "n/a" if "ci_unsupported" in e else _ci_text(e["ci"]),
                 e["verdict"] or ""]
                for k, e in entries.items()]
        return header, rows
    header = [group, "value"] + ([level] if ci else []) + ["rows", "weight sum"]
    rows = [[k, _display(e["value"]) if e["value"] is not None or "undefined" not in e
             else "undefined"] + ([_ci_text(e.get("ci")) if "ci_unsupported" not in e else "n/a"]
                                  if ci else [])
            + [str(doc["rows"]), _display(doc["weight_sum"])] for k, e in entries.items()]
    return header, rows


def _slice_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    by = doc["columns"]["by"]
    losses = list(doc["losses"])
    header = by + ["rows", "weight sum"] + losses
    rows = [["(all)"] * len(by) + [str(doc["rows"]), _display(doc["weight_sum"])]
            + [_display(doc["losses"][k]["value"]) for k in losses]]
    for s in doc["slices"]:
        rows.append([_key_text(s["key"][c]) for c in by] + [str(s["rows"]),
                    _display(s["weight_sum"])] + [_display(s["losses"][k]) for k in losses])
    return header, rows


def _key_text(v: Any) -> str:
    return "null" if v is None else str(v)


def _top_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    rows = doc["top"]["rows"]
    kept = [k for k in (rows[0] if rows else {}) if k not in ("file", "row", "value")]
    header = ["rank", "file", "row", doc["top"]["loss"]] + kept
    return header, [[str(i + 1), r["file"], str(r["row"]), _display(r["value"])]
                    + [_key_text(r[k]) for k in kept] for i, r in enumerate(rows)]


def _check_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    header = ["check", "value", "limit", "result", "detail"]
    return header, [[c["name"], _display(c["value"]), repr(c['limit']),
                     "PASS" if c["passed"] else "FAIL", c["detail"]] for c in doc["checks"]]


def _tables(doc: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    groups = {e.get("group", "loss") for e in doc["losses"].values()}
    out = [("losses", *_loss_table(doc))] if "loss" in groups else []
    if "metric" in groups:
        out.append(("metrics" if out else "losses", *_loss_table(doc, "metric")))
    if "slices" in doc:
        out.append(("slices", *_slice_table(doc)))
    if "top" in doc:
        out.append((f"top {len(doc['top']['rows'])} rows by {doc['top']['loss']}", *_top_table(doc)))
    if "checks" in doc:
        out.append(("checks", *_check_table(doc)))
    return out


def _csv(doc: dict, delimiter: str) -> str:
    """The main table only (one schema per file): slices if any, else one row per loss.

    Without slices, checks add columns to their loss's row (one row per check).
    """
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")

    def raw(v: float | None) -> str:
        return repr(v) if v is not None else "nan"

    if "slices" in doc:
        by = doc["columns"]["by"]
        losses = list(doc["losses"])
        w.writerow(by + ["rows", "weight_sum"] + losses)
        w.writerow([""] * len(by) + [doc["rows"], raw(doc["weight_sum"])]
                   + [raw(doc["losses"][k]["value"]) for k in losses])
        for s in doc["slices"]:
            w.writerow([_key_text(s["key"][c]) for c in by] + [s["rows"], raw(s["weight_sum"])]
                       + [raw(s["losses"][k]) for k in losses])
        return buf.getvalue()
    compare = doc["command"] == "compare"
    ci = "confidence" in doc
    if compare:
        header = ["loss", "baseline", "candidate", "difference", "relative", "ci_low", "ci_high",
                  "verdict"]
    else:
        header = ["loss", "value", "rows", "weight_sum"] + (["ci_low", "ci_high"] if ci else [])
    checks = doc.get("checks", [])
    if checks:
        header += ["check", "check_value", "limit", "passed"]
    w.writerow(header)
    for key, e in doc["losses"].items():
        if compare:
            row = [key, raw(e["baseline"]), raw(e["candidate"]), raw(e["difference"]),
                   raw(e["relative"])] + [raw(v) for v in (e["ci"] or [None, None])] + [e["verdict"]]
        else:
            row = [key, raw(e["value"]), doc["rows"], raw(doc["weight_sum"])]
            if ci:
                row += [raw(v) for v in (e.get("ci") or [None, None])]
        mine = [c for c in checks if c["loss"] == key]
        if not checks:
            w.writerow(row)
        elif not mine:
            w.writerow(row + ["", "", "", ""])
        for c in mine:
            w.writerow(row + [c["name"], raw(c["value"]), c["limit"], str(c["passed"]).lower()])
    return buf.getvalue()


def _numeric_column(rows: list[list[str]], i: int) -> bool:
    """Right-align a column whose cells are numbers (Markdown tables)."""
    try:
        for r in rows:
            float(r[i].rstrip("%") or "0")
    except ValueError:
        return False
    return True


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(doc: dict) -> str:
    """GitHub-flavoured Markdown: reads well appended to a CI job summary."""
    lines: list[str] = []
    if "checks" in doc:
        failed = sum(not c["passed"] for c in doc["checks"])
        lines.append(f"**lossctl: {failed} of {len(doc['checks'])} checks failed**" if failed
                     else f"**lossctl: all {len(doc['checks'])} checks passed**")
        lines.append("")
    for title, header, rows in _tables(doc):
        if title != "losses":
            lines += [f"**{title}**", ""]
        if title == "checks":
            rows = [r[:3] + ["✅ pass" if r[3] == "PASS" else "❌ FAIL"] + r[4:] for r in rows]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---:" if i and _numeric_column(rows, i) else "---"
                                    for i in range(len(header))) + "|")
        for r in rows:
            cells = [f"`{_md_cell(r[0])}`" if title in ("losses", "metrics", "checks")
                     else _md_cell(r[0])]
            lines.append("| " + " | ".join(cells + [_md_cell(x) for x in r[1:]]) + " |")
        lines.append("")
        if title == "slices":
            lines += _mermaid_slices(doc)
    lines.append(_summary(doc))
    return "\n".join(lines) + "\n"


MERMAID_SLICES = 20  # bars in the Markdown chart of the slices


def _mermaid_slices(doc: dict) -> list[str]:
    """A Mermaid bar chart of the slices (GitHub renders ``xychart-beta`` in Markdown)."""
    key = doc.get("slices_sort") or next(iter(doc["losses"]))
    slices = [s for s in doc["slices"] if isinstance(s["losses"].get(key), (int, float))]
    if not slices:
        return []
    shown = slices[:MERMAID_SLICES]
    by = ", ".join(doc["columns"]["by"])
    title = f"{key} by {by}" + (", worst first" if doc.get("slices_sort") else "")
    if len(slices) > len(shown):
        title += f" (the first {len(shown)} of {len(slices)})"

    def text(t: str) -> str:  # a Mermaid string: no double quotes or brackets inside
        return '"' + "".join(c for c in t if c not in '"[]') + '"'

    def number(v: float) -> str:  # 6 significant digits, positional (no exponent for the parser)
        from decimal import Decimal

        return format(Decimal(f"{v:.6g}"), "f")

    labels = ", ".join(text(", ".join(_key_text(v) for v in s["key"].values())) for s in shown)
    values = ", ".join(number(s["losses"][key]) for s in shown)
    return ["```mermaid", "xychart-beta", f"    title {text(title)}", f"    x-axis [{labels}]",
            f"    y-axis {text(key)}", f"    bar [{values}]", "```", ""]


def _summary(doc: dict) -> str:
    cols = doc["columns"]
    parts = [f"inputs: {', '.join(doc['inputs'])}", f"label: {', '.join(cols['label'])}"]
    if doc["command"] == "compare":
        parts += [f"baseline: {', '.join(cols['baseline'])}",
                  f"candidate: {', '.join(cols['candidate'])}", f"rows: {doc['rows']}"]
    else:
        parts.append(f"prediction: {', '.join(cols['prediction'])}")
    if cols["weight"]:
        parts.append(f"weight: {cols['weight']}")
    if doc["rows_skipped"]:
        parts.append(f"rows skipped: {doc['rows_skipped']}")
    if "confidence" in doc:
        c = doc["confidence"]
        parts.append(f"intervals: {c['level'] * 100:g}% {c['method']}, {c['buckets']} buckets, "
                     f"seed {c['seed']}")
    no_ci = [k for k, e in doc["losses"].items() if "ci_unsupported" in e]
    if no_ci:
        parts.append(f"no interval for {', '.join(no_ci)} (see ci_unsupported in -f json)")
    if doc.get("slices_hidden"):
        parts.append(f"{doc['slices_hidden']} slices with fewer rows hidden")
    if "join" in doc:
        j = doc["join"]
        parts.append(f"joined {j['file']} by {j['key'] or 'row'}: {j['unmatched_main']} rows without "
                     f"a match, {j['unmatched_other']} unmatched in the joined file, "
                     f"{j['duplicate_keys']} duplicate keys")
    if doc["losses_chosen"] == "auto":
        parts.append("losses chosen by lossctl from the columns (name them with -m)")
    return "; ".join(parts)


def _table(doc: dict, color: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=120,
                      highlight=False)
    for title, header, rows in _tables(doc):
        table = Table(title=None if title == "losses" else title, title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, style="bold cyan" if i == 0 else None,
                             justify="left" if i == 0 or h in ("file", "detail", "verdict") else "right")
        for r in rows:
            if title == "checks":
                r = r[:3] + [("[green]PASS[/]" if r[3] == "PASS" else "[bold red]FAIL[/]")] + r[4:]
            table.add_row(*r)
        console.print(table)
    console.print(_summary(doc), style="dim", soft_wrap=True)
    return buf.getvalue()


def failed_checks_text(doc: dict) -> str:
    """One line per failed check, for stderr (CI logs show it whatever the stdout format)."""
    return "".join(f"lossctl: check failed: {c['name']}: {c['detail']}\n"
                   for c in doc.get("checks", []) if not c["passed"])


def junit_xml(doc: dict) -> str:
    """JUnit XML with one test case per check (CI servers render it as a test report)."""
    from xml.etree import ElementTree as ET

    checks = doc.get("checks", [])
    suite = ET.Element("testsuite", name="lossctl", tests=str(len(checks)),
                       failures=str(sum(not c["passed"] for c in checks)), errors="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="inputs", value=", ".join(doc["inputs"]))
    ET.SubElement(props, "property", name="rows", value=str(doc["rows"]))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"lossctl.{c['kind']}", name=c["name"])
        if not c["passed"]:
            fail = ET.SubElement(case, "failure", message=c["detail"], type="CheckFailed")
            fail.text = f"{c['name']}: {c['detail']} (value {_display(c['value'])}, " \
                        f"limit {c['limit']!r})"
        else:
            ET.SubElement(case, "system-out").text = c["detail"]
    root = ET.Element("testsuites", name="lossctl", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
