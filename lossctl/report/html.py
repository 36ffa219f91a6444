"""The HTML report: one self-contained page per evaluation or comparison (``--html FILE``).

Built from the report dict (:func:`lossctl.report.render.to_dict`) and the
states' aggregates (per-row distributions, reliability bins), never from
rows, so its size does not grow with the data.  Nothing on the page is
fetched: no script, font or style sheet from elsewhere; figures are inline
SVG (:mod:`lossctl.report.plots`).  Each section appears only where it
applies: summary and checks always; slices with ``--by``; distributions
with sketches (``--html`` keeps them; a merged state only if its shards
were made with ``--quantiles`` or ``--html``); calibration for probability
outputs; the comparison for ``compare``; the worst rows with ``--top``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from . import plots

if TYPE_CHECKING:
    from ..core.sketch import Buckets
    from .model import Report

MAX_SLICE_BARS = 25  # bars per slice chart: the worst ones
MAX_SLICE_CHARTS = 6
MAX_TABLE_ROWS = 500  # rows of the slice table on the page (the JSON report has them all)


@dataclass
class Distribution:
    """One per-row distribution to draw: a mean's per-row values, or the residuals."""

    title: str
    xlabel: str
    signed: bool
    series: list[plots.Series]
    quantiles: dict[str, Any] | None  # as in the JSON report: per model in a comparison


@dataclass
class PageData:
    """What the page needs beyond the report dict: aggregates read off the states."""

    distributions: list[Distribution] = field(default_factory=list)
    sketches_kept: bool = False
    calibration: dict[str, list[dict]] = field(default_factory=dict)  # model -> bins
    top_label: bool = False  # multiclass: the reliability of the highest probability


def html_page(report: Report, doc: dict, command: str) -> str:
    """The page for ``report`` (``doc`` is its :func:`to_dict`), as text."""
    plots.require()
    return render_page(doc, page_data(report, doc), command)


# --------------------------------------------------------------------------
# Aggregates from the states
# --------------------------------------------------------------------------


def _models(report: Report) -> dict[str, Any]:
    base = report.baseline_state
    return {"": report.state} if base is None else {"baseline": base, "candidate": report.state}


def _series(name: str, b: Buckets) -> plots.Series:
    return plots.Series(name, int(b.rows.sum()), b.lower, b.upper, b.low, b.high, b.weight)


def _same(a: list[plots.Series], b: list[plots.Series]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.lower, y.lower) and np.array_equal(x.weight, y.weight)
        and np.array_equal(x.low, y.low) and np.array_equal(x.high, y.high)
        for x, y in zip(a, b, strict=True))


def page_data(report: Report, doc: dict) -> PageData:
    """Distributions and reliability bins of every model, read off the report's states."""
    models = _models(report)
    data = PageData(sketches_kept=report.state.distributions.quantiles,
                    top_label=report.state.pred_width > 1)
    label = ", ".join(doc["columns"]["label"])
    for loss in report.result.losses:
        if not loss.definition.per_row:
            continue
        series = [_series(name, b) for name, st in models.items()
                  if (b := st.distributions.buckets(loss)) is not None
                  and int((b.weight > 0).sum()) > 2]  # (0/1 values: no distribution to see)
        if not series:
            continue
        same = next((d for d in data.distributions if _same(d.series, series)), None)
        if same is not None:  # rmse's per-row values are mae's: one figure for both
            same.title += f" and {loss.key}"
            continue
        unit = _UNITS.get(loss.name, "").format(label=label)
        data.distributions.append(Distribution(
            f"Per-row {loss.key}", f"{loss.key} of a row" + (f" ({unit})" if unit else ""),
            False, series, doc["losses"][loss.key].get("quantiles")))
    residuals = [_series(name, b) for name, st in models.items()
                 if (b := st.distributions.buckets(None)) is not None and b.weight.sum() > 0]
    if residuals:
        pred = ", ".join(doc["columns"]["prediction"]) if "prediction" in doc["columns"] else "prediction"
        data.distributions.append(Distribution(
            "Residuals", f"residual: {pred} − {label} (units of {label}; > 0: over-predicted)",
            True, residuals, doc.get("residuals", {}).get("quantiles")))
    results = {"": report.result} if report.baseline is None else \
        {"baseline": report.baseline, "candidate": report.result}
    for name, st in models.items():
        bins = _ece_bins(results[name]) or (st.distributions.calibration_details(st.weight_sum)
                                            or {}).get("bins")
        if bins:
            data.calibration[name] = bins
    return data


_UNITS = {"mse": "squared units of {label}", "rmse": "units of {label}", "mae": "units of {label}",
          "bce": "nats", "sigmoid_ce": "nats", "cce": "nats", "softmax_ce": "nats",
          "sparse_softmax_ce": "nats", "brier": "squared probability"}


def _ece_bins(result: Any) -> list[dict] | None:
    for loss in result.losses:
        if loss.name == "ece" and "bins" in result.details.get(loss.key, {}):
            return result.details[loss.key]["bins"]
    return None


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


def fmt(v: Any) -> str:
    """A number for a reader: grouped digits for large values, 5 significant digits otherwise."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return "∞" if v > 0 else "−∞" if v < 0 else "nan"
    a = abs(v)
    if v == 0:
        return "0"
    if 1e3 <= a < 1e15:  # 5 significant digits at least, digits grouped
        return f"{v:,.{max(0, 4 - int(math.log10(a)))}f}".replace("-", "−")
    if a < 1e-4 or a >= 1e15:
        return f"{v:.4e}".replace("-", "−")
    return f"{v:.5g}".replace("-", "−")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:+.3g}%".replace("-", "−")


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "–"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _table(header: list[str], rows: list[list[str]], numeric: Any = None) -> str:
    """An HTML table; cells are HTML (escaped by the caller).  ``numeric``: the columns of
    numbers, right-aligned (default: all but the first)."""
    num = set(range(1, len(header)) if numeric is None else numeric)
    head = "".join(f"<th{' class=num' if i in num else ''}>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>\n" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>\n"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>\n"


def _key_text(key: dict) -> str:
    return ", ".join(f"{k}={'null' if v is None else v}" for k, v in key.items())


def render_page(doc: dict, data: PageData, command: str) -> str:
    """The whole page from the report dict and the aggregates."""
    sections = [_summary(doc, command)]
    if "checks" in doc:
        sections.append(_checks(doc))
    if doc["command"] == "compare":
        sections.append(_comparison(doc))
    if doc.get("slices") is not None:
        sections.append(_slices(doc))
    sections.append(_distributions(doc, data))
    if data.calibration:
        sections.append(_calibration(data))
    if "top" in doc:
        sections.append(_top(doc))
    body = plots.number_ids("".join(s for s in sections if s))
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title in _SECTIONS if f'id="{sid}"' in body)
    title = f"lossctl {doc['command']}: {', '.join(doc['inputs'])}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta name=\"generator\" content=\"lossctl {escape(doc['lossctl'])}\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<header><h1>{escape(title)}</h1>{_banner(doc)}<nav>{nav}</nav></header>\n"
            f"{body}"
            f"<footer>Made by lossctl {escape(doc['lossctl'])} from exact aggregates: this page "
            f"holds no data rows and fetches nothing.</footer>\n</main>\n</body>\n</html>\n")


_SECTIONS = [("summary", "Summary"), ("checks", "Checks"), ("comparison", "Comparison"),
             ("slices", "Slices"), ("distributions", "Distributions"),
             ("calibration", "Calibration"), ("top", "Worst rows")]


def _banner(doc: dict) -> str:
    if "checks" not in doc:
        return ""
    failed = sum(not c["passed"] for c in doc["checks"])
    n = len(doc["checks"])
    if failed:
        return f'<p class="banner fail">✘ {failed} of {n} check{"s" if n > 1 else ""} failed</p>'
    return f'<p class="banner pass">✔ {f"all {n} checks" if n > 1 else "the check"} passed</p>'


def _summary(doc: dict, command: str) -> str:
    out = ['<section id="summary"><h2>Summary</h2>']
    groups = {"loss": "Losses", "metric": "Metrics"}
    for group, title in groups.items():
        entries = {k: e for k, e in doc["losses"].items() if e.get("group", "loss") == group}
        if not entries:
            continue
        out.append(f"<h3>{title}</h3>")
        out.append(_compare_table(doc, entries) if doc["command"] == "compare"
                   else _value_table(doc, entries, quantiles=group == "loss"))
    out.append(_facts(doc, command))
    out.append("</section>\n")
    return "".join(out)


def _direction(e: dict) -> str:
    return "higher is better" if e.get("higher_is_better") else "lower is better"


def _value_table(doc: dict, entries: dict, quantiles: bool) -> str:
    ci = "confidence" in doc
    quant = quantiles and any(e.get("quantiles") for e in entries.values())
    header = ["", "value"] + ([f"{doc['confidence']['level'] * 100:g}% interval"] if ci else [])
    header += ["per-row p50", "p90", "p99", "max"] if quant else []
    rows = []
    for k, e in entries.items():
        value = fmt(e["value"]) if e["value"] is not None else \
            f'<span class="note">{escape(e.get("undefined", "undefined"))}</span>'
        row = [f"<code>{escape(k)}</code> <span class=dir>{_direction(e)}</span>", value]
        if ci:
            row.append(_ci(e.get("ci")) if e.get("kind") != "curve" or e.get("ci") else
                       '<span class=note title="a score histogram keeps no bootstrap buckets">'
                       'no interval</span>')
        if quant:
            q = e.get("quantiles") or {}
            row += [fmt(q.get(n)) for n in ("p50", "p90", "p99", "max")]
        rows.append(row)
    return _table(header, rows)


def _compare_table(doc: dict, entries: dict) -> str:
    level = f"{doc['confidence']['level'] * 100:g}%" if "confidence" in doc else ""
    header = ["", "baseline", "candidate", "difference", "relative", f"{level} interval of "
              "difference", "verdict"]
    rows = [[f"<code>{escape(k)}</code> <span class=dir>{_direction(e)}</span>",
             fmt(e["baseline"]), fmt(e["candidate"]), fmt(e["difference"]), _pct(e["relative"]),
             _ci(e.get("ci")), _verdict(e.get("verdict"))] for k, e in entries.items()]
    return _table(header, rows, numeric=range(1, 6))


def _verdict(v: str | None) -> str:
    if not v:
        return "–"
    cls = {"better": "pass", "worse": "fail"}.get(v, "same")
    mark = {"better": "▲ ", "worse": "▼ "}.get(v, "")
    return f'<span class="{cls} verdict">{mark}{escape(v)}</span>'


def _facts(doc: dict, command: str) -> str:
    cols = doc["columns"]
    facts = [("inputs", "<br>".join(f"<code>{escape(i)}</code>" for i in doc["inputs"]))]
    rows = fmt(doc["rows"])
    if doc.get("rows_skipped"):
        rows += f" ({fmt(doc['rows_skipped'])} skipped: missing or non-finite values)"
    facts.append(("rows", rows))
    if cols.get("weight"):
        facts.append(("weight sum", f"{fmt(doc['weight_sum'])} (column <code>"
                                    f"{escape(cols['weight'])}</code>)"))
    for role in ("label", "prediction", "baseline", "candidate", "by", "key"):
        if cols.get(role):
            value = cols[role] if isinstance(cols[role], list) else [cols[role]]
            facts.append((role, ", ".join(f"<code>{escape(str(c))}</code>" for c in value)))
    if "confidence" in doc:
        c = doc["confidence"]
        facts.append(("intervals", escape(f"{c['level'] * 100:g}% {c['method']}, {c['buckets']} "
                                          f"buckets, seed {c['seed']}")))
    if "quantiles" in doc:
        q = doc["quantiles"]
        facts.append(("quantiles", escape(f"{q['method']}: within {q['relative_error'] * 100:.3g}% "
                                          f"of the value")))
    if "join" in doc:
        j = doc["join"]
        facts.append(("join", escape(f"{j['file']} by {j['key'] or 'row'}: {j['unmatched_main']} "
                                     f"rows without a match, {j['unmatched_other']} unmatched in "
                                     f"the joined file, {j['duplicate_keys']} duplicate keys")))
    if doc.get("losses_chosen") == "auto":
        facts.append(("losses", "chosen by lossctl from the columns (name them with -m)"))
    if doc.get("engine"):
        engine = doc["engine"]
        facts.append(("engine", escape(engine if isinstance(engine, str) else
                                       ", ".join(f"{k}: {v}" for k, v in engine.items()))))
    facts.append(("lossctl", escape(doc["lossctl"])))
    facts.append(("command", f"<code>{escape(command)}</code>"))
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>\n"


def _checks(doc: dict) -> str:
    rows = [[f"<code>{escape(c['name'])}</code>", fmt(c["value"]), escape(repr(c["limit"])),
             '<span class="pass">✔ pass</span>' if c["passed"] else '<span class="fail">✘ FAIL</span>',
             escape(c["detail"])] for c in doc["checks"]]
    return '<section id="checks"><h2>Checks</h2>' + \
        _table(["check", "value", "limit", "result", "detail"], rows, numeric=(1, 2)) + "</section>\n"


# -- slices --------------------------------------------------------------------


def _badness(entry: dict, v: float) -> float:
    """A value ordered from best to worst by its loss's direction (the JSON's ``direction``)."""
    direction = entry.get("direction") or ("higher" if entry.get("higher_is_better") else "lower")
    return abs(v) if direction == "zero" else -v if direction == "higher" else v


def _worst_first(slices: list[dict], entry: dict, value: Any) -> list[dict]:
    """``slices`` ordered by ``value(slice)``, the worst first, those without a value last."""

    def order(s: dict) -> tuple:
        v = value(s)
        return (v is None, -_badness(entry, v) if v is not None else 0.0)

    return sorted(slices, key=order)


def _slices(doc: dict) -> str:
    slices = doc["slices"]
    if doc["command"] == "compare":
        return _compare_slices(doc)
    out = ['<section id="slices"><h2>Slices</h2>']
    hidden = doc.get("slices_hidden") or 0
    out.append(f"<p>{fmt(len(slices))} slices by {', '.join(doc['columns']['by'])}"
               + (f"; {fmt(hidden)} smaller slices hidden (--min-slice-rows)" if hidden else "")
               + ". Each chart shows the worst slices first; the dashed line is the value over "
                 "all rows" + ("; whiskers are the slices' intervals" if "confidence" in doc else "")
               + ".</p>")
    charts = 0
    for k, e in doc["losses"].items():
        if charts >= MAX_SLICE_CHARTS or e.get("value") is None:
            continue
        ordered = _worst_first(slices, e,
                               lambda s, k=k: s["losses"].get(k))
        valued = [s for s in ordered if s["losses"].get(k) is not None]
        shown = valued[:MAX_SLICE_BARS]
        if not shown:
            continue
        charts += 1
        bars = plots.Bars([_key_text(s["key"]) for s in shown], [s["losses"][k] for s in shown],
                          [tuple((s.get("ci") or {}).get(k) or ()) or None for s in shown],
                          e["value"], f"{k} ({_direction(e)})")
        notes = []
        if len(valued) > len(shown):
            notes.append(f"The {len(shown)} worst of {fmt(len(valued))} slices; the others are in "
                         f"the table below.")
        if len(ordered) > len(valued):
            n = len(ordered) - len(valued)
            notes.append(f"{fmt(n)} slice{' has' if n == 1 else 's have'} no value (no weight, or "
                         f"undefined) and {'is' if n == 1 else 'are'} left out.")
        out.append(f"<h3><code>{escape(k)}</code> by slice</h3>")
        out.append(_figure(plots.slice_bars(bars), " ".join(notes)))
    out.append(_slice_table(doc))
    out.append("</section>\n")
    return "".join(out)


def _slice_table(doc: dict) -> str:
    slices = doc["slices"]
    losses = list(doc["losses"])
    by = doc["columns"]["by"]
    rows = [["<b>(all)</b>"] * len(by) + [fmt(doc["rows"])]
            + [fmt(doc["losses"][k].get("value")) for k in losses]]
    for s in slices[:MAX_TABLE_ROWS]:
        rows.append([escape("null" if s["key"][c] is None else str(s["key"][c])) for c in by]
                    + [fmt(s["rows"])] + [fmt(s["losses"].get(k)) for k in losses])
    note = f"<p class=note>The first {MAX_TABLE_ROWS} of {fmt(len(slices))} slices; the JSON " \
           f"report (-f json) has them all.</p>" if len(slices) > MAX_TABLE_ROWS else ""
    return "<details><summary>All slices as a table</summary>" + \
        _table([escape(c) for c in by] + ["rows"] + [f"<code>{escape(k)}</code>" for k in losses],
               rows, numeric=range(len(by), len(by) + 1 + len(losses))) + note + "</details>"


def _compare_slices(doc: dict) -> str:
    """Per slice, the candidate's relative difference from the baseline (when the report has it)."""
    slices = doc["slices"]
    out = ['<section id="slices"><h2>Slices</h2>']
    for k, e in doc["losses"].items():
        entries = [(s, s["losses"].get(k)) for s in slices]
        entries = [(s, v) for s, v in entries if isinstance(v, dict) and v.get("relative") is not None]
        if not entries:
            continue
        # the worst first: the largest relative change for the worse (a rise of a loss)
        entries = sorted(entries, key=lambda sv: -(sv[1]["relative_worse"] or 0.0))[:MAX_SLICE_BARS]
        f = plots.Forest([_key_text(s["key"]) for s, _ in entries], [v["relative"] for _, v in entries],
                         [tuple(v["relative_ci"]) if v.get("relative_ci") else None for _, v in entries],
                         [v.get("verdict") for _, v in entries],
                         f"{k}: candidate vs baseline, relative difference ({_direction(e)})")
        out.append(f"<h3><code>{escape(k)}</code> by slice</h3>")
        out.append(_figure(plots.forest(f), "dots: relative difference (candidate − baseline) / "
                                            "|baseline|; bars: its interval"))
    if len(out) == 1:
        return ""
    out.append("</section>\n")
    return "".join(out)


# -- comparison ----------------------------------------------------------------


def _comparison(doc: dict) -> str:
    entries = {k: e for k, e in doc["losses"].items() if e.get("relative") is not None}
    if not entries:
        return ""
    f = plots.Forest([f"{k} ({_direction(e)})" for k, e in entries.items()],
                     [e["relative"] for e in entries.values()],
                     [tuple(e["relative_ci"]) if e.get("relative_ci") else None
                      for e in entries.values()],
                     [e.get("verdict") for e in entries.values()],
                     "candidate vs baseline: relative difference (candidate − baseline) / |baseline|")
    level = f"{doc['confidence']['level'] * 100:g}% " if "confidence" in doc else ""
    return '<section id="comparison"><h2>Comparison</h2>' + _figure(
        plots.forest(f), f"Dots: the relative difference of each loss; bars: its {level}paired "
                         f"bootstrap interval. Colour is the verdict: better, worse, or no "
                         f"significant change (the interval holds 0).") + "</section>\n"


# -- distributions ---------------------------------------------------------------


def _distributions(doc: dict, data: PageData) -> str:
    if not data.distributions:
        if data.sketches_kept or not any(e.get("kind") == "mean" for e in doc["losses"].values()):
            return ""
        return ('<section id="distributions"><h2>Distributions</h2><p class=note>The state was '
                "saved without per-row distributions: make the shards with <code>eval --quantiles "
                "--emit-state</code> (or <code>--html</code>) to see them here.</p></section>\n")
    weighted = bool(doc["columns"].get("weight"))
    out = ['<section id="distributions"><h2>Distributions</h2>',
           "<p>How the per-row values spread: the histograms show the share of "
           + ("weight" if weighted else "rows") + " in each bin; dotted lines mark quantiles.</p>"]
    for d in data.distributions:
        out.append(f"<h3>{escape(d.title)}</h3>")
        out.append(_histogram(d, weighted))
    out.append("</section>\n")
    return "".join(out)


def _histogram(d: Distribution, weighted: bool) -> str:
    edges, log, outside = plots.plot_range(d.series, d.signed)
    single = d.series[0] if len(d.series) == 1 else None
    q = d.quantiles or {}
    per_model = {s.name: (q.get(s.name) if s.name else q) or {} for s in d.series}
    marks = {}
    if single is not None:
        names = ("p10", "p50", "p90") if d.signed else ("p50", "p90", "p99")
        marks = {n: per_model[""][n] for n in names if per_model[""].get(n) is not None}
    share = "share of weight (%)" if weighted else "share of rows (%)"
    svg = plots.histogram(plots.Histogram(d.series, d.xlabel + (", log scale" if log else ""),
                                          share, log, edges, marks))
    notes = []
    what = "weight" if weighted else "rows"
    at_zero = 0.0
    if log:
        for s in d.series:
            share = float(s.weight[s.high <= 0].sum()) / float(s.weight.sum())
            at_zero = max(at_zero, share)
            if share > 0:
                who = f"{s.name}: " if s.name else ""
                notes.append(f"{who}{share * 100:.3g}% of the {what} at 0 (not on the log axis)")
    if outside - at_zero > 1e-12:
        notes.append(f"the axis leaves out the outermost {(outside - at_zero) * 100:.2g}% of the "
                     f"{what} (see the quantiles below)")
    names = ["min", "p1", "p10", "p50", "p90", "p99", "max"] if d.signed else ["p50", "p90", "p99",
                                                                              "max"]
    if single is not None:
        rows, header = [[fmt(per_model[""].get(n)) for n in names]], names
    else:
        rows = [[escape(name)] + [fmt(per_model[name].get(n)) for n in names] for name in per_model]
        header = [""] + names
    table = _table(header, rows, numeric=range(len(header)) if single is not None else None) \
        if any(per_model.values()) else ""
    return _figure(svg, "; ".join(notes).capitalize() + ("." if notes else "")) + table


# -- calibration ----------------------------------------------------------------


def _calibration(data: PageData) -> str:
    r = plots.Reliability(data.calibration,
                          "confidence: the highest class probability of a row" if data.top_label
                          else "predicted probability",
                          "accuracy (top class is the label)" if data.top_label
                          else "observed frequency of label 1")
    rows = []
    for name, bins in data.calibration.items():
        for b in bins:
            rows.append(([escape(name)] if len(data.calibration) > 1 else [])
                        + [f"{b['lower']:.3g}–{b['upper']:.3g}", fmt(b["rows"]),
                           fmt(b["mean_prediction"]), fmt(b["observed"])])
    header = (["model"] if len(data.calibration) > 1 else []) + \
        ["bin", "rows", "mean prediction", "observed"]
    return ('<section id="calibration"><h2>Calibration</h2>'
            + _figure(plots.reliability(r), "Reliability diagram: the mean prediction against "
                      "what was observed, per equal-width bin (points on the diagonal are well "
                      "calibrated); below, how many rows fall in each bin.")
            + "<details><summary>Bins as a table</summary>"
            + _table(header, rows, numeric=range(len(header) - 3, len(header)))
            + "</details></section>\n")


# -- top rows -------------------------------------------------------------------


def _top(doc: dict) -> str:
    top = doc["top"]
    rows = top["rows"]
    kept = [k for k in (rows[0] if rows else {}) if k not in ("file", "row", "value")]
    files = len({r["file"] for r in rows}) > 1 or len(doc["inputs"]) > 1
    table_rows = [[str(i + 1)] + ([f"<code>{escape(r['file'])}</code>"] if files else [])
                  + [fmt(r["row"]), fmt(r["value"])]
                  + [escape("null" if r[k] is None else str(r[k])) for k in kept]
                  for i, r in enumerate(rows)]
    header = ["rank"] + (["file"] if files else []) + ["row", f"<code>{escape(top['loss'])}</code>"] \
        + [escape(k) for k in kept]
    first = 2 if files else 1
    where = "" if files else f" of <code>{escape(doc['inputs'][0])}</code>"
    return (f'<section id="top"><h2>Worst rows by <code>{escape(top["loss"])}</code></h2>'
            f"<p>The {len(rows)} rows with the worst {escape(top['loss'])}{where} (row: the data "
            f"row in its file, 1-based).</p>"
            + _table(header, table_rows, numeric=(0, first, first + 1)) + "</section>\n")


_CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #e3e3e3; --pass: #00734d; --fail: #b33c00; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 22px; margin: 0 0 6px; overflow-wrap: anywhere; }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 10px 0 4px; font-size: 14px; }
nav a { color: #0060a0; text-decoration: none; }
nav a:hover { text-decoration: underline; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px 4px 0; text-align: left; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
td.num, th.num { text-align: right; padding-left: 12px; white-space: nowrap; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13.5px; }
.dir { color: var(--muted); font-size: 12px; white-space: nowrap; }
.note { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 14px 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.banner { display: inline-block; padding: 4px 12px; border-radius: 4px; font-weight: 600; margin: 4px 0; }
.banner.pass { background: #e3f4ec; color: var(--pass); }
.banner.fail { background: #fbe9e1; color: var(--fail); }
span.pass { color: var(--pass); font-weight: 600; }
span.fail { color: var(--fail); font-weight: 600; }
span.same { color: var(--muted); }
.verdict { white-space: nowrap; }
figure { margin: 8px 0 16px; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13.5px; max-width: 768px; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; color: #0060a0; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line);
  padding-top: 10px; }
"""
