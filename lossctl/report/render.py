"""Rendering: a Report -> JSON, table, CSV/TSV, Markdown, bare values, JUnit XML.

The JSON document is the stable, documented schema (see README); every other
format is a view of the same dict, made by :func:`to_dict`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from .tables import checks_headline, key_text, summary, tables

if TYPE_CHECKING:  # importing the engine would load NumPy and pyarrow
    from .baseline import Baseline
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
            sort: str | None = None, baseline: Baseline | None = None) -> dict[str, Any]:
    """The JSON report: inputs, columns, counts, every loss value, and what else was asked for.

    ``min_slice_rows`` hides smaller slices (counted in ``slices_hidden``);
    ``sort`` orders slices by that loss, worst first (else by slice value).
    """
    if report.leaderboard is not None:
        return _leaderboard(report, checks, min_slice_rows, sort)
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
        "input_files": report.outcome.input_files,
        "columns": cols,
        "rows": r.rows,
        "rows_skipped": r.rows_skipped,
        "weight_sum": _num(r.weight_sum),
        "losses_chosen": "auto" if report.losses_chosen else "user",
        "losses": {},
    }
    state = report.state
    for loss in r.losses:
        entry = _described(loss)
        if report.differences is not None:
            entry.update(_compared(report.differences[loss.key]))
        else:
            entry.update(_valued(loss, r, report.intervals, state))
        doc["losses"][loss.key] = entry
    if state.buckets:
        _add_confidence(doc, report)
    if state.slice_keys is not None:
        _add_slices(doc, report, min_slice_rows, sort)
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
    if baseline is not None:
        doc["baseline"] = {"path": baseline.path, "kind": baseline.kind,
                           "inputs": baseline.inputs, "rows": baseline.rows}
    if checks:
        doc["checks"] = [ch.to_dict() for ch in checks]
        doc["passed"] = all(ch.passed for ch in checks)
    return doc


def _described(loss: Any) -> dict[str, Any]:
    """What a loss is: name, parameters, task, kind and direction."""
    d = loss.definition
    return {"name": loss.name, "params": loss.params, "task": d.task, "kind": d.kind,
            "group": d.group, "higher_is_better": d.higher_is_better, "direction": d.direction}


def _valued(loss: Any, r: Any, ivals: dict | None, state: Any) -> dict[str, Any]:
    """One model's value of a loss, its interval (if asked for) and the loss's details."""
    entry: dict[str, Any] = {"value": _num(r.values[loss.key])}
    if entry["value"] is None:  # which of inf, -inf, nan (a baseline needs to know)
        entry["nonfinite"] = repr(r.values[loss.key])
    if ivals is not None:
        entry["ci"] = _pair(ivals[loss.key])
        note = state.interval_note(loss)
        if note is not None:
            entry["ci_unsupported"] = note
    entry.update(r.details.get(loss.key, {}))
    return entry


def _add_confidence(doc: dict, report: Report) -> None:
    state = report.state
    doc["confidence"] = {"level": report.confidence, "method": METHOD, "buckets": state.buckets,
                         "seed": state.seed, "ci_key": report.columns.ci_key}


def _leaderboard(report: Report, checks: Sequence[CheckResult], min_slice_rows: int = 0,
                 sort: str | None = None) -> dict[str, Any]:
    """The JSON report of several models: each model's losses as a single model's report
    holds them, best first, with ``vs_reference`` (as ``lossctl compare`` reports a loss)."""
    board = report.leaderboard
    assert board is not None
    r, c = report.result, report.columns
    cols: dict[str, Any] = {"label": c.label, "models": c.models, "weight": c.weight}
    if c.by:
        cols["by"] = c.by
    if c.key:
        cols["key"] = c.key
    first = r.losses[0]
    doc: dict[str, Any] = {
        "lossctl": __version__, "command": "eval", "inputs": report.inputs,
        "input_files": report.outcome.input_files, "columns": cols, "rows": r.rows,
        "rows_skipped": r.rows_skipped, "weight_sum": _num(r.weight_sum),
        "losses_chosen": "auto" if report.losses_chosen else "user",
        "reference": board.reference,
        "ranked_by": {"loss": first.key, "direction": first.definition.direction},
        "models": [{"model": e.name, "rank": rank, "losses": {
            loss.key: {**_described(loss), **_valued(loss, e.result, e.intervals, e.state),
                       **({"vs_reference": _compared(e.differences[loss.key])}
                          if e.differences is not None else {})}
            for loss in e.result.losses}} for rank, e in enumerate(board.entries, 1)],
    }
    if report.state.buckets:
        _add_confidence(doc, report)
    if report.state.slice_keys is not None:
        _leaderboard_slices(doc, report, min_slice_rows, sort)
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


def _compared(d: dict[str, Any]) -> dict[str, Any]:
    """A paired difference as the JSON report holds it."""
    return {"baseline": _num(d["baseline"]), "candidate": _num(d["candidate"]),
            "difference": _num(d["difference"]), "relative": _num(d["relative"]),
            "ci": _pair(d.get("ci")), "relative_ci": _pair(d.get("relative_ci")),
            "worse_by": _num(d["worse_by"]), "relative_worse": _num(d["relative_worse"]),
            "worse_ci": _pair(d.get("worse_ci")), "verdict": d.get("verdict"),
            **({"ci_unsupported": d["ci_unsupported"]} if "ci_unsupported" in d else {})}


def natural_key(key: dict[str, Any]) -> list[tuple]:
    """Slices in natural order: numbers by value, text with its digits as numbers (a2 < a10), null last."""
    out = []
    for v in key.values():
        if v is None:
            out.append((3, ()))
        elif isinstance(v, (bool, int, float)):
            out.append((0 if isinstance(v, bool) else 1, (v,)))
        else:
            text = str(v)
            parts = tuple((0, int(t), "") if t.isdigit() else (1, 0, t)
                          for t in re.split(r"(\d+)", text) if t)
            out.append((2, (parts, text)))
    return out


def _add_slices(doc: dict, report: Report, min_rows: int, sort: str | None) -> None:
    """Every slice shown (at least ``min_rows`` rows), worst first with ``sort``, else in natural order.

    A comparison's slices hold each loss's paired difference; sorted, the
    most regressed slice comes first.
    """
    state = report.state
    compare = report.slice_differences is not None
    slices = report.slice_differences if compare else state.slice_results()
    if not compare and report.slice_intervals is not None:
        for s, ci in zip(slices, report.slice_intervals, strict=True):
            s["ci"] = ci
    loss = state.loss(sort) if sort is not None else None
    shown = _shown(slices, min_rows, None if loss is None else
                   (lambda s: s["losses"][loss.key]["relative_worse"]) if compare else
                   (lambda s: loss.definition.badness(s["values"][loss.key])))
    doc["slices"] = [{"key": s["key"], "rows": s["rows"], "weight_sum": _num(s["weight_sum"]),
                      "losses": {k: _compared(d) for k, d in s["losses"].items()} if compare
                      else {k: _num(v) for k, v in s["values"].items()},
                      **({"ci": {k: _pair(v) for k, v in s["ci"].items()}} if "ci" in s else {})}
                     for s in shown]
    doc["slices_hidden"] = len(slices) - len(shown)
    doc["slices_sort"] = state.loss(sort).key if sort is not None else None


def _shown(slices: list[dict], min_rows: int, worse: Any = None) -> list[dict]:
    """The slices of at least ``min_rows`` rows, worst first by ``worse(slice)`` (NaN last),
    else in natural order; ties by key, so the order never depends on the rows' order."""
    def worst(s: dict) -> tuple:
        v = worse(s)
        return (math.isnan(v), -v if not math.isnan(v) else 0.0, natural_key(s["key"]))

    return sorted((s for s in slices if s["rows"] >= min_rows),
                  key=worst if worse is not None else lambda s: natural_key(s["key"]))


def _leaderboard_slices(doc: dict, report: Report, min_rows: int, sort: str | None) -> None:
    """Several models' slices: every slice with each model's values (a single model's report
    holds them so), interval and ``vs_reference``, best first in that slice by the first loss.

    ``sort`` orders the slices by the reference model's value, worst first.
    """
    from .model import ranked

    board = report.leaderboard
    assert board is not None
    first = report.result.losses[0]
    per_model = [(m, m.state.slice_results()) for m in board.entries]
    ref = next(sl for m, sl in per_model if m.name == board.reference)
    loss = report.state.loss(sort) if sort is not None else None
    order = _shown([{**s, "i": i} for i, s in enumerate(ref)], min_rows,
                   None if loss is None else lambda s: loss.definition.badness(s["values"][loss.key]))

    def model(m: Any, slices: list[dict], i: int) -> dict:
        out: dict[str, Any] = {"model": m.name,
                               "losses": {k: _num(v) for k, v in slices[i]["values"].items()}}
        if m.slice_intervals is not None:
            out["ci"] = {k: _pair(v) for k, v in m.slice_intervals[i].items()}
        if m.slice_differences is not None:
            out["vs_reference"] = {k: _compared(d)
                                   for k, d in m.slice_differences[i]["losses"].items()}
        return out

    doc["slices"] = []
    for s in order:
        i = s["i"]
        models = ranked(per_model, first, lambda ms, i=i: ms[1][i]["values"][first.key])
        doc["slices"].append({"key": s["key"], "rows": s["rows"],
                              "weight_sum": _num(s["weight_sum"]),
                              "models": [{"rank": rank, **model(m, sl, i)}
                                         for rank, (m, sl) in enumerate(models, 1)]})
    doc["slices_hidden"] = len(ref) - len(order)
    doc["slices_sort"] = loss.key if loss is not None else None


def render(doc: dict, fmt: str, color: bool = False, width: int = 120) -> str:
    """Render a report dict (from :func:`to_dict`) in one of :data:`FORMATS`."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "value" and "models" in doc:  # best first: MODEL<TAB>value, one line per loss
        return "".join(f"{m['model']}\t{e['value']!r}\n" if e["value"] is not None else
                       f"{m['model']}\tnan\n" for m in doc["models"] for e in m["losses"].values())
    if fmt == "value":
        key = "candidate" if doc["command"] == "compare" else "value"
        return "".join(f"{entry[key]!r}\n" if entry[key] is not None else "nan\n"
                       for entry in doc["losses"].values())
    if fmt in ("csv", "tsv"):
        return _csv(doc, "," if fmt == "csv" else "\t")
    if fmt == "markdown":
        return _markdown(doc)
    from .terminal import render_table

    return render_table(doc, color, width)


def _csv(doc: dict, delimiter: str) -> str:
    """The main table only (one schema per file): slices if any, else one row per loss.

    Without slices, checks add columns to their loss's row (one row per check).
    """
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")

    raw = _raw
    if "models" in doc:
        _leaderboard_csv(doc, w)
        return buf.getvalue()
    if "slices" in doc and doc["command"] == "compare":  # one row per slice and loss
        by = doc["columns"]["by"]
        w.writerow(by + ["loss", "rows", "weight_sum", "baseline", "candidate", "difference",
                         "relative", "ci_low", "ci_high", "verdict"])
        for s in [{"key": dict.fromkeys(by, ""), "rows": doc["rows"],
                   "weight_sum": doc["weight_sum"], "losses": doc["losses"]}, *doc["slices"]]:
            for k, e in s["losses"].items():
                w.writerow([key_text(s["key"][c]) for c in by] + [k, s["rows"], raw(s["weight_sum"])]
                           + [raw(e[f]) for f in ("baseline", "candidate", "difference", "relative")]
                           + [raw(v) for v in (e["ci"] or [None, None])] + [e["verdict"]])
        return buf.getvalue()
    if "slices" in doc:
        by = doc["columns"]["by"]
        losses = list(doc["losses"])
        w.writerow(by + ["rows", "weight_sum"] + losses)
        w.writerow([""] * len(by) + [doc["rows"], raw(doc["weight_sum"])]
                   + [raw(doc["losses"][k]["value"]) for k in losses])
        for s in doc["slices"]:
            w.writerow([key_text(s["key"][c]) for c in by] + [s["rows"], raw(s["weight_sum"])]
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
        _with_checks(w, row, checks, [c for c in checks if c["loss"] == key])
    return buf.getvalue()


def _raw(v: float | None) -> str:
    return repr(v) if v is not None else "nan"


def _with_checks(w: Any, row: list, checks: list[dict], mine: list[dict]) -> None:
    """A row as it is (no checks), or once per check of its own, with the check's columns."""
    if not checks:
        w.writerow(row)
    elif not mine:
        w.writerow(row + ["", "", "", ""])
    for c in mine:
        w.writerow(row + [c["name"], _raw(c["value"]), c["limit"], str(c["passed"]).lower()])


def _leaderboard_rows(doc: dict) -> Any:
    """(slice key, rows, weight sum, model, rank, loss, value, ci, vs_reference) of every model
    and loss, overall (key None) then per slice."""
    for m in doc["models"]:
        for k, e in m["losses"].items():
            yield (None, doc["rows"], doc["weight_sum"], m["model"], m["rank"], k, e["value"],
                   e.get("ci"), e.get("vs_reference"))
    for s in doc.get("slices", []):
        for m in s["models"]:
            for k, v in m["losses"].items():
                yield (s["key"], s["rows"], s["weight_sum"], m["model"], m["rank"], k, v,
                       m.get("ci", {}).get(k), m.get("vs_reference", {}).get(k))


def _leaderboard_csv(doc: dict, w: Any) -> None:
    """Several models: one row per model and loss, best first, with the difference from the
    reference (empty on the reference's rows); with --by, then per slice (the --by columns
    first, empty on the overall rows).  Without slices, checks add columns as for one model."""
    ci = "confidence" in doc
    by = doc["columns"].get("by", []) if "slices" in doc else []
    checks = doc.get("checks", []) if not by else []
    w.writerow(by + ["model", "rank", "loss", "value", "rows", "weight_sum"]
               + (["ci_low", "ci_high"] if ci else []) + ["difference", "relative"]
               + (["difference_ci_low", "difference_ci_high", "verdict"] if ci else [])
               + (["check", "check_value", "limit", "passed"] if checks else []))
    for key, rows, weight_sum, model, rank, loss, value, interval, d in _leaderboard_rows(doc):
        row = [("" if key is None else key_text(key[c])) for c in by] + \
            [model, rank, loss, _raw(value), rows, _raw(weight_sum)]
        if ci:
            row += [_raw(v) for v in (interval or [None, None])]
        row += ["", ""] if d is None else [_raw(d["difference"]), _raw(d["relative"])]
        if ci:
            row += ["", "", ""] if d is None else \
                [_raw(v) for v in (d["ci"] or [None, None])] + [d["verdict"] or ""]
        _with_checks(w, row, checks, [c for c in checks if c["loss"] == loss and
                                      c.get("model") == model])


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
        lines += [f"**lossctl: {checks_headline(doc)}**", ""]
    for title, header, rows in tables(doc):
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
        if title == "slices" and "models" not in doc:
            lines += _mermaid_slices(doc)
    lines.append(summary(doc))
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

    labels = ", ".join(text(", ".join(key_text(v) for v in s["key"].values())) for s in shown)
    values = ", ".join(number(s["losses"][key]) for s in shown)
    return ["```mermaid", "xychart-beta", f"    title {text(title)}", f"    x-axis [{labels}]",
            f"    y-axis {text(key)}", f"    bar [{values}]", "```", ""]


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
            fail.text = f"{c['name']}: {c['detail']} (value {c['value']!r}, limit {c['limit']!r})"
        else:
            ET.SubElement(case, "system-out").text = c["detail"]
    root = ET.Element("testsuites", name="lossctl", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
