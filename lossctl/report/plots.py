"""The figures of the HTML report, drawn with matplotlib as static, self-contained SVG.

Every function takes plain numbers (from the report dict and the states'
aggregates, never rows) and returns an ``<svg>`` element ready to inline:
text stays text in a generic font stack (``svg.fonttype: none``), the XML
prolog, namespace URLs and metadata are dropped, and element ids get a
per-figure prefix so several figures can share one page.  Colours are the
Okabe-Ito palette (safe for colour-blind readers).

matplotlib is the optional extra ``lossctl[report]``: :func:`require`
says so in one line when it is missing.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError

BLUE, ORANGE, GREEN, VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, GREY, INK = "#56B4E9", "#CC79A7", "#8C8C8C", "#222222"
MODEL_COLOURS = {"": BLUE, "baseline": GREY, "candidate": BLUE}
VERDICT_COLOURS = {"better": GREEN, "worse": VERMILLION}
WIDTH = 8.0  # inches: 768 CSS pixels, readable on a laptop, text at 10 pt
FONTS = ["DejaVu Sans", "Helvetica", "Arial"]  # then the generic sans-serif
_RC = {
    # text as text (no glyph paths), fixed ids (the same page every run), never a linked image
    "svg.fonttype": "none", "svg.hashsalt": "lossctl", "svg.image_inline": True,
    "font.family": "sans-serif", "font.sans-serif": FONTS, "font.size": 10,
    "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#555555",
    "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.8, "axes.axisbelow": True,
    "axes.titlesize": 11, "axes.titleweight": "bold", "axes.titlelocation": "left",
    "axes.labelcolor": INK, "xtick.color": "#444444", "ytick.color": "#444444",
    "legend.frameon": False, "lines.solid_capstyle": "butt",
}
ID_PREFIX = "fig-"  # element ids of a figure; the page numbers them (see :func:`number_ids`)


def require() -> None:
    """Fail with one clear line (exit 2) when the plotting extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--html needs matplotlib, the optional extra lossctl[report]: "
                         "pip install 'lossctl[report]'") from None


def _figure(height: float, rows: int = 1, **kw: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=True, **kw)


def _svg(fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (see the module docstring)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                 "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = re.sub(r'<g id="[^"]*">', "<g>", text)  # (group ids are never referenced)
    text = re.sub(r'\bid="', f'id="{ID_PREFIX}', text)
    text = text.replace("url(#", f"url(#{ID_PREFIX}").replace('href="#', f'href="#{ID_PREFIX}')
    text = re.sub(r"\n\s*", "\n", text)
    return text.replace("<svg ", '<svg role="img" ', 1)


def number_ids(page: str) -> str:
    """Give each figure of a page its own id prefix (``f1-``, ``f2-``...): ids stay unique."""
    parts = page.split("<svg ")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], 1):
        for lead in ('id="', "url(#", 'href="#'):
            part = part.replace(lead + ID_PREFIX, f"{lead}f{i}-")
        out.append(part)
    return "<svg ".join(out)


def _draw(draw: Callable[..., None], height: float, *args: Any, rows: int = 1, **kw: Any) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, ax = _figure(height, rows, **kw)
        draw(fig, ax, *args)
        return _svg(fig)


def _number_axis(axis: Any, log: bool = False) -> None:
    """Tick labels a reader takes in at once: 0.25, 1500, 20k, 1.5M, 1e8 (never an offset text)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: short(v, log)))


_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def short(v: float, log: bool = False) -> str:
    """A compact number for a tick or an annotation; a minus sign, not a hyphen."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if log and (a >= 1e4 or a < 1e-3):
        exp = math.log10(a)
        if abs(exp - round(exp)) < 1e-9:
            return f"{'−' if v < 0 else ''}1e{round(exp)}".replace("e-", "e−")
    if 1e4 <= a < 1e15:
        scale, suffix = next((m, x) for m, x in _SUFFIXES if a >= m)
        text = f"{v / scale:.3g}{suffix}"
    elif a < 1e-3 or a >= 1e15:
        text = f"{v:.2g}"
    else:
        text = f"{v:.4g}"
    return text.replace("-", "−")


def _label(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --------------------------------------------------------------------------
# Per-slice bars
# --------------------------------------------------------------------------


@dataclass
class Bars:
    labels: list[str]
    values: list[float]
    intervals: list[tuple[float, float] | None]
    overall: float | None
    xlabel: str


def slice_bars(bars: Bars) -> str:
    """Horizontal bars, first row on top, interval whiskers, the overall value as a line."""
    n = len(bars.labels)
    return _draw(_slice_bars, 0.9 + 0.27 * max(n, 2), bars)


def _slice_bars(fig: Any, ax: Any, b: Bars) -> None:
    y = np.arange(len(b.labels))
    values = np.array(b.values, dtype=float)
    ax.barh(y, values, height=0.62, color=SKY, edgecolor=BLUE, linewidth=0.6)
    have = [i for i, ci in enumerate(b.intervals) if ci is not None and None not in ci]
    if have:
        lo = np.array([values[i] - b.intervals[i][0] for i in have])  # type: ignore[index]
        hi = np.array([b.intervals[i][1] - values[i] for i in have])  # type: ignore[index]
        ax.errorbar(values[have], y[have], xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="none",
                    ecolor=INK, elinewidth=1.0, capsize=3)
    if b.overall is not None:
        ax.axvline(b.overall, color=VERMILLION, linestyle="--", linewidth=1.4)
        ax.annotate(f"all rows {short(b.overall)}", (b.overall, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9, color=VERMILLION)
    ax.set_yticks(y, [_label(t) for t in b.labels])
    ax.set_ylim(len(y) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    if values.min() >= 0:  # bars of values >= 0 start at 0; all zero: a unit axis
        ax.set_xlim(0, None if ax.get_xlim()[1] > 0 and values.max() > 0 else 1)
    ax.set_xlabel(b.xlabel)
    _number_axis(ax.xaxis)


# --------------------------------------------------------------------------
# Distributions (from sketch buckets)
# --------------------------------------------------------------------------


@dataclass
class Series:
    """One model's distribution: sketch buckets (value bounds, extremes, weights)."""

    name: str  # "" for a single model, else "baseline" / "candidate"
    rows: int
    lower: np.ndarray
    upper: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray


@dataclass
class Histogram:
    series: list[Series]
    xlabel: str
    ylabel: str
    log: bool
    edges: np.ndarray
    marks: dict[str, float]  # p50, p90, p99 of the (single) model, drawn as lines


def cumulative(s: Series, at: np.ndarray, log: bool) -> np.ndarray:
    """Weight of values <= each of ``at``, each bucket's weight spread evenly over its values.

    A bucket's values lie in ``[max(lower, low), min(upper, high)]``; one
    holding a single value is a step.  On a log axis the spread is even in
    log space.  Exact at the bucket ends, so a histogram drawn from it is
    faithful at any bin width wider than the buckets (2**-6 relative).
    """
    a = np.maximum(s.lower, s.low)
    b = np.minimum(s.upper, s.high)
    x = at[None, :]
    a, b = a[:, None], b[:, None]
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b, x = np.log(a), np.log(b), np.log(x)
    width = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(width > 0, np.clip((x - a) / np.where(width > 0, width, 1), 0, 1),
                        (x >= a).astype(float))
    return (s.weight[:, None] * frac).sum(axis=0)


def histogram(h: Histogram) -> str:
    return _draw(_histogram, 3.1, h)


def _histogram(fig: Any, ax: Any, h: Histogram) -> None:
    edges = h.edges
    top = 0.0
    for s in h.series:
        total = float(s.weight.sum())
        share = np.diff(cumulative(s, edges, h.log)) / total * 100 if total > 0 else \
            np.zeros(len(edges) - 1)
        top = max(top, float(share.max()) if len(share) else 0.0)
        colour = MODEL_COLOURS.get(s.name, BLUE)
        if len(h.series) == 1:
            ax.stairs(share, edges, fill=True, color=SKY, alpha=0.9)
            ax.stairs(share, edges, color=BLUE, linewidth=1.0)
        else:
            ax.stairs(share, edges, color=colour, linewidth=1.6, label=s.name)
    if h.log:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    for i, (name, v) in enumerate(h.marks.items()):
        if edges[0] <= v <= edges[-1]:  # labels stepped down, so close lines stay readable
            ax.axvline(v, color=INK, linestyle=":", linewidth=1.0)
            x = ax.transLimits.transform(ax.transScale.transform((v, 0)))[0]
            right = x > 0.75  # near the right edge: the label goes left of its line
            ax.annotate(f"{name} {short(v)}", (v, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-3 if right else 3, -2 - 12 * i), textcoords="offset points",
                        fontsize=8.5, va="top", ha="right" if right else "left", color=INK,
                        backgroundcolor=(1, 1, 1, 0.8))
    ax.set_ylim(0, top * (1.1 + 0.1 * len(h.marks)) if top > 0 else 1)
    ax.set_xlabel(h.xlabel)
    ax.set_ylabel(h.ylabel)
    _number_axis(ax.xaxis, h.log)
    if len(h.series) > 1:
        ax.legend(loc="upper right")


def plot_range(series: Sequence[Series], signed: bool) -> tuple[np.ndarray, bool, float]:
    """Bin edges for a distribution: log-spaced when values are positive and span decades.

    Returns the edges, whether the axis is logarithmic, and the share of the
    weight outside them: a log axis starts at the 0.1% quantile (not at a
    smallest value 10 decades below the bulk) and leaves out values at 0; a
    linear axis of a signed distribution leaves out 0.5% on each side, so
    the bulk stays readable.
    """
    rows = max(s.rows for s in series)
    bins = int(min(60, max(10, round(2 * rows ** (1 / 3)))))  # Rice's rule: 17 for 600 rows
    used = [(s.weight > 0) & np.isfinite(s.low) & np.isfinite(s.high) for s in series]
    lows = np.concatenate([s.low[u] for s, u in zip(series, used, strict=True)])
    highs = np.concatenate([s.high[u] for s, u in zip(series, used, strict=True)])
    if not lows.size:  # (only infinite values: an axis around 0; the caption says the rest)
        lows = highs = np.zeros(1)
    lo, hi = float(lows.min()), float(highs.max())
    positive = lows[lows > 0]
    log = not signed and positive.size and hi > 0 and hi / float(positive.min()) > 100
    if log:
        low = max(float(positive.min()), min(_weight_quantiles(s, (0.001,))[0] for s in series))
        edges = np.geomspace(low, hi, bins + 1)
        return edges, True, _outside(series, edges, True)
    if signed:
        qs = [_weight_quantiles(s, (0.005, 0.995)) for s in series]
        lo, hi = min(q[0] for q in qs), max(q[1] for q in qs)
    if not hi > lo:  # one value: in the middle of the middle bin of an odd count
        bins += 1 - bins % 2
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    edges = np.linspace(lo, hi, bins + 1)
    return edges, False, _outside(series, edges, False)


def _outside(series: Sequence[Series], edges: np.ndarray, log: bool) -> float:
    """The share of the weight (of the heaviest series) outside the edges."""
    out = 0.0
    for s in series:
        total = float(s.weight.sum())
        if total > 0:
            inside = float(np.diff(cumulative(s, edges[[0, -1]], log))[0]) + _mass_at(s, edges[0])
            out = max(out, 1 - inside / total)
    return max(0.0, out)


def _mass_at(s: Series, x: float) -> float:
    """Weight of buckets holding the single value ``x`` (a step exactly at the left edge)."""
    one = (s.low == s.high) & (s.low == x)
    return float(s.weight[one].sum())


def _weight_quantiles(s: Series, levels: Sequence[float]) -> list[float]:
    cum = np.cumsum(s.weight)
    total = cum[-1]
    mid = np.clip((np.maximum(s.lower, s.low) + np.minimum(s.upper, s.high)) / 2, s.low, s.high)
    return [float(mid[min(int(np.searchsorted(cum, q * total)), len(mid) - 1)]) for q in levels]


# --------------------------------------------------------------------------
# Reliability diagram
# --------------------------------------------------------------------------


@dataclass
class Reliability:
    models: dict[str, list[dict]]  # model name -> ece bins (lower, upper, rows, mean_prediction, observed)
    xlabel: str
    ylabel: str


def reliability(r: Reliability) -> str:
    return _draw(_reliability, 5.2, r, rows=2, sharex=True, height_ratios=[3, 1])


def _reliability(fig: Any, axes: Any, r: Reliability) -> None:
    top, bottom = axes
    top.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    n = len(r.models)
    for i, (name, bins) in enumerate(r.models.items()):
        colour = MODEL_COLOURS.get(name, BLUE)
        used = [b for b in bins if b["mean_prediction"] is not None and b["rows"] > 0]
        x = [b["mean_prediction"] for b in used]
        y = [b["observed"] for b in used]
        rows = np.array([b["rows"] for b in used], dtype=float)
        top.plot(x, y, color=colour, linewidth=1.2, alpha=0.8)
        # a point's area grows with its rows: a bin of 3 rows is not read like one of 300
        area = 12 + 140 * np.sqrt(rows / rows.max()) if len(rows) else rows
        top.scatter(x, y, s=area, color=colour, edgecolor="white", linewidth=0.6, zorder=3,
                    label=name or "model (point area: rows in the bin)")
        width = (bins[0]["upper"] - bins[0]["lower"]) if bins else 0.1
        centres = np.array([(b["lower"] + b["upper"]) / 2 for b in bins])
        offset = (i - (n - 1) / 2) * width / n
        bars = bottom.bar(centres + offset, [b["rows"] for b in bins], width=width / n * 0.9,
                          color=colour if n > 1 else SKY, edgecolor=colour, linewidth=0.5,
                          label=name or None)
        if n == 1 and len(bins) <= 20:  # small counts stay readable
            bottom.bar_label(bars, labels=[f"{b['rows']:,}" if b["rows"] else "" for b in bins],
                             fontsize=7.5, padding=1.5, color=INK)
    top.set_xlim(0, 1)
    top.set_ylim(-0.03, 1.03)
    top.set_ylabel(r.ylabel)
    top.legend(loc="upper left")
    bottom.set_xlabel(r.xlabel)
    bottom.set_ylabel("rows per bin")
    bottom.set_ylim(0, bottom.get_ylim()[1] * 1.2)
    _number_axis(bottom.yaxis)


# --------------------------------------------------------------------------
# Comparison: relative differences with their intervals
# --------------------------------------------------------------------------


@dataclass
class Forest:
    labels: list[str]
    relative: list[float | None]
    intervals: list[tuple[float, float] | None]
    verdicts: list[str | None]
    xlabel: str


def forest(f: Forest) -> str:
    return _draw(_forest, 1.0 + 0.32 * max(len(f.labels), 2), f)


def _forest(fig: Any, ax: Any, f: Forest) -> None:
    y = np.arange(len(f.labels))
    ax.axvline(0, color=INK, linewidth=1)
    seen: set[str] = set()
    for i, (rel, ci, verdict) in enumerate(zip(f.relative, f.intervals, f.verdicts, strict=True)):
        if rel is None:
            continue
        colour = VERDICT_COLOURS.get(verdict or "", GREY)
        label = None if (verdict or "") in seen else (verdict or "no interval")
        seen.add(verdict or "")
        if ci is not None and None not in ci:
            ax.plot([ci[0] * 100, ci[1] * 100], [i, i], color=colour, linewidth=2.2,
                    solid_capstyle="round")
        ax.plot([rel * 100], [i], "o", color=colour, markersize=6, label=label)
    ax.set_yticks(y, [_label(t, 40) for t in f.labels])
    ax.set_ylim(len(y) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f.xlabel)
    lo, hi = ax.get_xlim()
    span = max(abs(lo), abs(hi))
    ax.set_xlim(-span, span)  # zero in the middle: left and right read the same way
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"{v:+.3g}%".replace("-", "−") if v else "0"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32 if len(y) < 4 else -0.12),
              ncol=3, fontsize=9)
