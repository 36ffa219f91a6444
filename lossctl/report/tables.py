"""The tables of a report as header + rows of text, for people (terminal tables and Markdown).

Every text format is a view of the JSON report (:func:`lossctl.report.render.to_dict`).
Values get the digits that tell them apart (:mod:`lossctl.report.numbers`);
counts get thousands separators.
"""

from __future__ import annotations

from typing import Any

from .numbers import count, distinct_digits, number, percent, signed

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def key_text(v: Any) -> str:
    """A slice key or kept value as a cell."""
    return "null" if v is None else str(v)


def _interval(ci: list | None, show: Any = number) -> str:
    if ci is None:
        return ""
    return f"[{show(ci[0])}, {show(ci[1])}]"


def _ci_level(doc: dict) -> str:
    return f"{doc['confidence']['level'] * 100:g}% CI" if "confidence" in doc else ""


def _pair_digits(e: dict) -> int:
    """Digits that tell the baseline's value from the candidate's."""
    return distinct_digits([e["baseline"], e["candidate"]])


def _loss_table(doc: dict, group: str = "loss") -> tuple[list[str], list[list[str]]]:
    """The losses (``group="loss"``) or the metrics of a report, one row each."""
    level = _ci_level(doc)
    entries = {k: e for k, e in doc["losses"].items() if e.get("group", "loss") == group}
    if doc["command"] == "compare":
        header = [group, "baseline", "candidate", "difference", "relative",
                  f"{level} of difference", "verdict"]
        rows = []
        for k, e in entries.items():
            d = _pair_digits(e)
            rows.append([k, number(e["baseline"], d), number(e["candidate"], d),
                         signed(e["difference"]), percent(e["relative"]),
                         "n/a" if "ci_unsupported" in e else _interval(e["ci"], signed),
                         e["verdict"] or ""])
        return header, rows
    header = [group, "value"] + ([level] if level else []) + ["rows", "weight sum"]
    rows = [[k, number(e["value"]) if e["value"] is not None or "undefined" not in e
             else "undefined"]
            + ([_interval(e.get("ci")) if "ci_unsupported" not in e else "n/a"] if level else [])
            + [count(doc["rows"]), number(doc["weight_sum"])] for k, e in entries.items()]
    return header, rows


def _slice_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    by = doc["columns"]["by"]
    if doc["command"] == "compare":
        return _compare_slice_table(doc, by)
    losses = list(doc["losses"])
    header = by + ["rows", "weight sum"] + losses
    rows = [["(all)"] * len(by) + [count(doc["rows"]), number(doc["weight_sum"])]
            + [number(doc["losses"][k]["value"]) for k in losses]]
    for s in doc["slices"]:
        rows.append([key_text(s["key"][c]) for c in by] + [count(s["rows"]),
                    number(s["weight_sum"])] + [number(s["losses"][k]) for k in losses])
    return header, rows


def _compare_slice_table(doc: dict, by: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per slice and loss: baseline, candidate, relative change, its interval, verdict."""
    header = by + ["loss", "rows", "baseline", "candidate", "relative",
                   f"{_ci_level(doc)} of relative", "verdict"]
    overall = [{"key": dict.fromkeys(by, "(all)"), "rows": doc["rows"], "losses": doc["losses"]}]
    rows = []
    for s in overall + doc["slices"]:
        for k, e in s["losses"].items():
            d = _pair_digits(e)
            rows.append([key_text(s["key"][c]) for c in by]
                        + [k, count(s["rows"]), number(e["baseline"], d),
                           number(e["candidate"], d), percent(e["relative"]),
                           "n/a" if "ci_unsupported" in e else
                           _interval(e.get("relative_ci"), percent), e.get("verdict") or ""])
    return header, rows


def _leaderboard_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    """Several models: one row per model and loss, best first, with the difference from the
    reference (its interval and verdict with --ci)."""
    level = _ci_level(doc)
    models = doc["models"]
    header = ["rank", "model", "loss", "value"] + ([level] if level else []) + \
        ["difference", "relative"] + ([f"{level} of difference", "verdict"] if level else [])
    digits = {k: distinct_digits([m["losses"][k]["value"] for m in models])
              for k in models[0]["losses"]}
    rows = []
    for m in models:
        for k, e in m["losses"].items():
            row = [str(m["rank"]), m["model"], k, number(e["value"], digits[k])]
            if level:
                row.append("n/a" if "ci_unsupported" in e else _interval(e.get("ci")))
            d = e.get("vs_reference")
            if d is None:
                row += ["reference", ""] + (["", ""] if level else [])
            else:
                row += [signed(d["difference"]), percent(d["relative"])]
                if level:
                    row += ["n/a" if "ci_unsupported" in d else _interval(d["ci"], signed),
                            d["verdict"] or ""]
            rows.append(row)
    return header, rows


def _leaderboard_slice_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    """Several models per slice: one row per slice and model (best first in the slice)."""
    by = doc["columns"]["by"]
    losses = list(doc["models"][0]["losses"])
    header = by + ["rank", "model", "rows"] + losses
    rows = []
    for s in doc["slices"]:
        digits = {k: distinct_digits([m["losses"][k] for m in s["models"]]) for k in losses}
        rows += [[key_text(s["key"][c]) for c in by] + [str(m["rank"]), m["model"],
                 count(s["rows"])] + [number(m["losses"][k], digits[k]) for k in losses]
                 for m in s["models"]]
    return header, rows


def loss_entries(doc: dict) -> dict[str, dict]:
    """The losses of a report: its own, or (several models) the first model's."""
    return doc["models"][0]["losses"] if "models" in doc else doc["losses"]


def _top_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    rows = doc["top"]["rows"]
    kept = [k for k in (rows[0] if rows else {}) if k not in ("file", "row", "value")]
    header = ["rank", "file", "row", doc["top"]["loss"]] + kept
    return header, [[str(i + 1), r["file"], count(r["row"]), number(r["value"])]
                    + [key_text(r[k]) for k in kept] for i, r in enumerate(rows)]


def _check_cells(c: dict) -> tuple[str, str]:
    """A check's value and limit as people read them (relative tolerances in %)."""
    tol = c.get("tolerance")
    if tol is not None and tol["relative"]:
        return percent(c["value"]), percent(c["limit"]).lstrip("+")
    if tol is not None:
        return signed(c["value"], 4), number(c["limit"])
    d = distinct_digits([c["value"], c["limit"]])
    return number(c["value"], d), number(c["limit"], d)


def _check_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    header = ["check", "value", "limit", "result", "detail"]
    return header, [[c["name"], *_check_cells(c), "PASS" if c["passed"] else "FAIL", c["detail"]]
                    for c in doc["checks"]]


def tables(doc: dict) -> list[Table]:
    """Every table of the report, titled (the first one, the losses, needs no title)."""
    if "models" in doc:
        out = [("leaderboard", *_leaderboard_table(doc))]
        if "slices" in doc:
            out.append(("slices", *_leaderboard_slice_table(doc)))
        return out + ([("checks", *_check_table(doc))] if "checks" in doc else [])
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


def checks_headline(doc: dict) -> str:
    """``1 check passed``, ``all 3 checks passed``, ``1 of 4 checks failed`` ("" without checks)."""
    checks = doc.get("checks")
    if not checks:
        return ""
    n = len(checks)
    failed = sum(not c["passed"] for c in checks)
    plural = "check" if n == 1 else "checks"
    if failed:
        return f"{failed} {plural} failed" if failed == n == 1 else f"{failed} of {n} {plural} failed"
    return "1 check passed" if n == 1 else f"all {n} checks passed"


def _files(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{len(names)} files ({names[0]}, ..., {names[-1]})"


def _direction(direction: str) -> str:
    return "closest to 0 first" if direction == "zero" else f"{direction} first"


def summary(doc: dict) -> str:
    """What the report was computed from, in one paragraph."""
    cols = doc["columns"]
    parts = [f"inputs: {_files(doc['inputs'])}", f"label: {', '.join(cols['label'])}"]
    if doc["command"] == "compare":
        parts += [f"baseline: {', '.join(cols['baseline'])}",
                  f"candidate: {', '.join(cols['candidate'])}", f"rows: {count(doc['rows'])}"]
    elif "models" in cols:
        ranked = doc["ranked_by"]
        parts += [f"models: {', '.join(cols['models'])} (reference: {doc['reference']})",
                  f"ranked by {ranked['loss']}, {_direction(ranked['direction'])}",
                  f"rows: {count(doc['rows'])}"]
    else:
        parts.append(f"prediction: {', '.join(cols['prediction'])}")
    if cols["weight"]:
        parts.append(f"weight: {cols['weight']}")
    if doc["rows_skipped"]:
        parts.append(f"rows skipped: {count(doc['rows_skipped'])}")
    if "confidence" in doc:
        c = doc["confidence"]
        by = f"row id (column {c['ci_key']})" if c.get("ci_key") else "file name and row"
        parts.append(f"intervals: {c['level'] * 100:g}% {c['method']}, {count(c['buckets'])} "
                     f"buckets by {by}, seed {c['seed']}")
    no_ci = [k for k, e in loss_entries(doc).items() if "ci_unsupported" in e]
    if no_ci:
        parts.append(f"no interval for {', '.join(no_ci)} (see ci_unsupported in -f json)")
    if doc.get("slices_hidden"):
        parts.append(f"{count(doc['slices_hidden'])} slices with fewer rows hidden")
    if "join" in doc:
        j = doc["join"]
        parts.append(f"joined {j['file']} by {j['key'] or 'row'}: {count(j['unmatched_main'])} rows "
                     f"without a match, {count(j['unmatched_other'])} unmatched in the joined "
                     f"file, {count(j['duplicate_keys'])} duplicate keys")
    if "baseline" in doc:
        b = doc["baseline"]
        parts.append(f"baseline {b['kind']}: {b['path']} ({count(b['rows'])} rows of "
                     f"{_files(b['inputs']) or '?'})")
    if doc["losses_chosen"] == "auto":
        parts.append("losses chosen by lossctl from the columns (name them with -m)")
    return "; ".join(parts)
