"""The HTML report (``--html``): valid, self-contained, the right sections, flat in size.

Every page is made through the real CLI and parsed with html5lib in strict
mode (a parse error fails the test).  "Self-contained" is checked on the
text: no URL of any scheme, no protocol-relative ``//host``, no ``@import``,
no script or link element, no ``src`` attribute, no ``url()`` but to an
element of the page.
"""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import html5lib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import report, run
from conftest import write_csv

from lossctl.report.html import PageData, render_page

MAX_PAGE = 3 << 20


class _Ids(HTMLParser):
    """Element ids, headings and figures of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.svgs = 0
        self.h3: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.ids += [v for k, v in attrs if k == "id"]
        self.svgs += tag == "svg"
        if tag == "h3":
            self._in_h3 = True
            self.h3.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._in_h3 = False

    def handle_data(self, data: str) -> None:
        if self._in_h3:
            self.h3[-1] += data


def check_page(path: Path) -> _Ids:
    """Valid HTML, nothing fetched, unique ids, within the size limit."""
    text = path.read_text(encoding="utf-8")
    assert len(text.encode()) < MAX_PAGE
    html5lib.HTMLParser(strict=True).parse(text)  # raises on any parse error
    assert text.startswith("<!DOCTYPE html>")
    for pattern in (r"[a-z][a-z0-9+.-]*://", r"""["'(\s]//[^\s"')]""", r"@import", r"<script",
                    r"<link", r"\bsrc\s*=", r"url\((?!#)", r"<iframe", r"<object"):
        found = re.search(pattern, text, re.IGNORECASE)
        assert found is None, f"{pattern!r} at {text[max(0, found.start() - 60):found.end() + 60]!r}"
    ids = _Ids()
    ids.feed(text)
    assert len(ids.ids) == len(set(ids.ids)), "duplicate element ids"
    for ref in set(re.findall(r'(?:href="#|url\(#)([^")]+)', text)):
        assert ref in ids.ids, f"reference to a missing element #{ref}"
    return ids


def sections(path: Path) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)"', path.read_text()))


def html_run(args: list, out: Path, code: int = 0) -> dict:
    """Run with ``--html out`` and ``-f json``: the JSON report (exit ``code``: 1 a failed check)."""
    if code == 0:
        doc = report("runner", [*args, "--html", out])
    else:
        r = run("runner", [*args, "--html", out, "-f", "json"])
        assert r.code == code, r.err
        doc = json.loads(r.out)
    assert out.exists()
    return doc


@pytest.fixture(scope="module")
def pair_file(reg, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regression set with a second, better model: for comparisons."""
    df = reg.df.copy()
    rng = np.random.default_rng(3)
    df["better"] = df["y"] + 3.0 * rng.standard_t(4, len(df))
    path = tmp_path_factory.mktemp("pair") / "pair.csv"
    write_csv(df, path)
    return path


def test_regression_page(reg, tmp_path: Path) -> None:
    out = tmp_path / "reg.html"
    html_run(["eval", reg["csv"], "-l", "y", "-p", "pred", "-w", "w", "--by", "segment", "--ci",
              "--top", "5", "mse", "--keep", "id,segment", "--fail-if", "mse > 1e9"], out)
    page = check_page(out)
    assert sections(out) == {"summary", "checks", "slices", "distributions", "top"}
    text = out.read_text()
    # one slice chart per loss and metric, mse's distribution, mae's (= rmse's), residuals
    assert {"mse by slice", "rmse by slice", "mae by slice", "r2 by slice", "Per-row mse",
            "Per-row rmse and mae", "Residuals"} <= set(page.h3)
    assert page.svgs == 7
    assert "rural, far" in text and "✔ the check passed" in text
    assert "95% interval" in text and "lossctl eval " in text  # intervals, the command line
    assert "<th>id</th>" in text  # a kept column in the worst rows


def test_binary_page_has_a_reliability_diagram_without_ece(binary, tmp_path: Path) -> None:
    out = tmp_path / "bin.html"
    doc = html_run(["eval", binary["csv"], "-l", "z", "-p", "prob", "-m", "bce,brier,accuracy,roc_auc",
                    "--fail-if", "bce > 0.01"], out, code=1)
    assert "ece" not in doc["losses"]  # the page's bins are not a loss of the report
    page = check_page(out)
    assert sections(out) == {"summary", "checks", "distributions", "calibration"}
    assert {"Per-row bce", "Per-row brier"} <= set(page.h3)
    assert "Per-row accuracy" not in page.h3  # 0/1 values: no histogram
    text = out.read_text()
    assert "observed frequency of label 1" in text and "✘ 1 of 1 check failed" in text


def test_binary_page_uses_the_ece_bins_when_asked(binary, tmp_path: Path) -> None:
    out = tmp_path / "ece.html"
    doc = html_run(["eval", binary["csv"], "-l", "z", "-p", "prob", "-m", "bce,ece:bins=8"], out)
    check_page(out)
    rows = re.findall(r"<td>([\d.]+–[\d.]+)</td><td class=num>([\d,]+)</td>", out.read_text())
    assert [int(n.replace(",", "")) for _, n in rows] == \
        [b["rows"] for b in doc["losses"]["ece:bins=8"]["bins"]]


def test_logits_get_no_reliability_diagram(binary, tmp_path: Path) -> None:
    out = tmp_path / "logit.html"
    html_run(["eval", binary["csv"], "-l", "z", "-p", "logit", "-m", "sigmoid_ce"], out)
    check_page(out)
    assert "calibration" not in sections(out)


def test_multiclass_page(multiclass, tmp_path: Path) -> None:
    out = tmp_path / "mc.html"
    html_run(["eval", multiclass["parquet"], "-l", "label", "-p", "prob_*", "-m", "cce,accuracy",
              "--top", "3", "cce"], out)
    page = check_page(out)
    assert sections(out) == {"summary", "distributions", "calibration", "top"}
    assert "Per-row cce" in page.h3
    assert "highest class probability" in out.read_text()


def test_compare_page(pair_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp.html"
    doc = html_run(["compare", pair_file, "-l", "y", "--baseline-pred", "pred", "-p", "better",
                    "-m", "mse,mae,r2", "--max-regression", "mse=1%"], out)
    page = check_page(out)
    assert sections(out) == {"summary", "checks", "comparison", "distributions"}
    text = out.read_text()
    assert doc["losses"]["mse"]["verdict"] == "better" and "▲ better" in text
    assert page.svgs == 1 + 3  # the comparison; mse, mae and residual distributions
    assert text.count("<td>baseline</td>") == 3 and text.count("<td>candidate</td>") == 3


def test_compare_page_of_two_files_joined_by_key(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp2.html"
    html_run(["compare", sample_dir / "house_prices.csv", sample_dir / "house_prices_v2.csv",
              "-l", "price", "-p", "predicted_price", "--key", "id", "-m", "mse,mae"], out)
    check_page(out)
    assert "house_prices_v2.csv by id" in out.read_text()


def test_compare_slices_are_drawn_when_the_report_has_them() -> None:
    """``compare --by`` (per-slice baseline, candidate and verdict): one forest plot per loss."""
    loss = {"name": "mse", "params": {}, "task": "regression", "kind": "mean", "group": "loss",
            "higher_is_better": False, "baseline": 2.0, "candidate": 1.5, "difference": -0.5,
            "relative": -0.25, "ci": [-0.8, -0.2], "relative_ci": [-0.4, -0.1], "verdict": "better"}

    def per_slice(rel: float, verdict: str) -> dict:
        return {**loss, "relative": rel, "relative_ci": [rel - 0.1, rel + 0.1], "verdict": verdict,
                "relative_worse": rel}

    doc = {"lossctl": "0", "command": "compare", "inputs": ["a.csv"], "rows": 10, "rows_skipped": 0,
           "weight_sum": 10.0, "losses_chosen": "user", "losses": {"mse": loss},
           "columns": {"label": ["y"], "baseline": ["b"], "candidate": ["c"], "weight": None,
                       "by": ["segment"]},
           "slices": [{"key": {"segment": "north"}, "rows": 6, "weight_sum": 6.0,
                       "losses": {"mse": per_slice(-0.3, "better")}},
                      {"key": {"segment": "south"}, "rows": 4, "weight_sum": 4.0,
                       "losses": {"mse": per_slice(0.2, "worse")}}],
           "slices_hidden": 0}
    text = render_page(doc, PageData(), "lossctl compare a.csv")
    html5lib.HTMLParser(strict=True).parse(text)
    assert 'id="slices"' in text and "segment=south" in text and text.count("<svg ") == 2


def test_merge_page(reg, tmp_path: Path) -> None:
    """merge --html: distributions when the shards kept them, else a note how to get them."""
    states = {True: [], False: []}
    for quantiles in (True, False):
        for i, shard in enumerate(reg["shard_list"][:3]):
            path = tmp_path / f"s{i}{quantiles}.json"
            r = run("runner", ["eval", shard, "-l", "y", "-p", "pred", "-m", "mse", "--by", "segment",
                               *(["--quantiles"] if quantiles else []), "--emit-state", path,
                               "-f", "json"])
            assert r.code == 0, r.err
            states[quantiles].append(path)
    with_q, without = tmp_path / "with.html", tmp_path / "without.html"
    html_run(["merge", *states[True]], with_q)
    html_run(["merge", *states[False]], without)
    assert check_page(with_q).svgs == 3  # slices, mse and residual distributions
    assert check_page(without).svgs == 1
    assert "saved without per-row distributions" in without.read_text()


def test_merged_calibration_needs_every_shard_to_keep_it(binary, tmp_path: Path) -> None:
    """Reliability bins are kept by --html only: merged with a --quantiles shard, they are dropped."""
    df = binary.df
    parts = [tmp_path / "a.csv", tmp_path / "b.csv"]
    write_csv(df.iloc[:700], parts[0])
    write_csv(df.iloc[700:], parts[1])
    states = {}
    for i, extra in enumerate((["--html", tmp_path / "a.html"], ["--html", tmp_path / "b.html"],
                               ["--quantiles"])):
        states[i] = tmp_path / f"s{i}.json"
        r = run("runner", ["eval", parts[min(i, 1)], "-l", "z", "-p", "prob", "-m", "bce", *extra,
                           "--emit-state", states[i], "-f", "json"])
        assert r.code == 0, r.err
    both, mixed = tmp_path / "both.html", tmp_path / "mixed.html"
    html_run(["merge", states[0], states[1]], both)
    html_run(["merge", states[0], states[2]], mixed)
    assert "calibration" in sections(both) and "calibration" not in sections(mixed)
    assert "distributions" in sections(mixed)
    whole = tmp_path / "whole.html"
    html_run(["eval", binary["csv"], "-l", "z", "-p", "prob", "-m", "bce"], whole)
    bins = re.compile(r"<summary>Bins as a table</summary>.*?</table>", re.S)
    assert bins.search(both.read_text()).group(0) == bins.search(whole.read_text()).group(0)


def test_text_from_the_data_is_escaped(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text('seg,y,p\n"<b>bold</b>",1,2\n"a&b",2,2.5\n"<script>x</script>",3,1\n')
    out = tmp_path / "x.html"
    html_run(["eval", data, "-l", "y", "-p", "p", "-m", "mse", "--by", "seg", "--top", "2", "mse",
              "--keep", "seg"], out)
    check_page(out)
    text = out.read_text()
    assert "<b>bold" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text and "a&amp;b" in text


def test_the_page_is_deterministic(reg, tmp_path: Path) -> None:
    args = ["eval", reg["parquet"], "-l", "y", "-p", "pred", "--by", "segment", "--html"]
    pages = []
    for name in ("a.html", "b.html"):
        r = run("runner", [*args, tmp_path / name, "-f", "json"])
        assert r.code == 0, r.err
        pages.append((tmp_path / name).read_text().replace(name, ""))
    assert pages[0] == pages[1]


def test_outputs_are_all_or_nothing(reg, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    r = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse", "--html", out])
    assert r.code == 2 and "--force" in r.err and out.read_text() == "old"  # kept
    html_run(["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse", "--force"], out)  # replaced
    assert out.read_text().startswith("<!DOCTYPE html>")
    r = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse", "--html", reg["csv"]])
    assert r.code == 2 and "is an input" in r.err
    bad = tmp_path / "bad.csv"
    bad.write_text("y,p\n1,2\n3,oops\n")
    r = run("runner", ["eval", bad, "-l", "y", "-p", "p", "--html", tmp_path / "none.html"])
    assert r.code == 2 and not (tmp_path / "none.html").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_without_matplotlib_one_clear_line(reg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    r = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "--html", tmp_path / "x.html"])
    assert r.code == 2 and not (tmp_path / "x.html").exists()
    assert r.err.strip().splitlines() == [
        "lossctl: error: --html needs matplotlib, the optional extra lossctl[report]: "
        "pip install 'lossctl[report]'"]


def test_page_size_is_flat_in_the_rows(tmp_path: Path) -> None:
    """From 10k to 2M rows the page stays the same size (aggregates only), far below 3 MB."""
    sizes = []
    for n in (10_000, 2_000_000):
        rng = np.random.default_rng(n)
        y = rng.normal(100, 20, n)
        seg = pa.array(rng.integers(0, 12, n).astype(str)).dictionary_encode()
        pq.write_table(pa.table({"y": y, "p": y + rng.standard_t(3, n) * 5, "seg": seg}),
                       tmp_path / f"d{n}.parquet")
        out = tmp_path / f"d{n}.html"
        r = run("runner", ["eval", tmp_path / f"d{n}.parquet", "-l", "y", "-p", "p", "--by", "seg",
                           "--ci", "--top", "10", "mse", "--html", out, "-f", "json"])
        assert r.code == 0, r.err
        check_page(out)
        sizes.append(out.stat().st_size)
    assert sizes[1] < 1.25 * sizes[0] and sizes[1] < 600_000, sizes


def test_many_slices_stay_under_the_limit(tmp_path: Path) -> None:
    n = 60_000
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, n)
    df = pd.DataFrame({"seg": [f"store-{i:05d}" for i in rng.integers(0, 5000, n)], "y": y,
                       "p": y + rng.normal(0, 1, n)})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "s.parquet")
    out = tmp_path / "s.html"
    html_run(["eval", tmp_path / "s.parquet", "-l", "y", "-p", "p", "-m", "mse", "--by", "seg"], out)
    check_page(out)
    assert "The first 500 of 5,000 slices" in out.read_text()


def test_markdown_gains_a_mermaid_chart_of_the_slices(reg) -> None:
    r = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mae,mse", "--by", "segment",
                       "--sort", "mse", "-f", "markdown"])
    assert r.code == 0, r.err
    block = r.out.split("```mermaid\n", 1)[1].split("```", 1)[0].splitlines()
    doc = report("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mae,mse", "--by",
                            "segment", "--sort", "mse"])
    assert block[0] == "xychart-beta"
    assert block[1] == '    title "mse by segment, worst first"'
    labels = re.findall(r'"([^"]*)"', block[2])
    assert labels == [s["key"]["segment"] for s in doc["slices"]]
    values = [float(v) for v in block[4].split("[", 1)[1].rstrip("]").split(",")]
    assert values == pytest.approx([s["losses"]["mse"] for s in doc["slices"]], rel=1e-5)
    assert "| segment | rows |" in r.out  # the slice table is still there
    plain = run("runner", ["eval", reg["csv"], "-l", "y", "-p", "pred", "-m", "mse", "-f", "markdown"])
    assert "mermaid" not in plain.out
