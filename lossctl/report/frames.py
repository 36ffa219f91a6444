"""A report as a pandas DataFrame (:meth:`lossctl.report.model.Report.to_pandas`).

Made from the JSON report, so that the table and ``to_dict()`` never
disagree: a row per loss (``loss`` is its key, as in ``losses``), or a row
per slice and loss with the slice's ``by`` columns first; several models (a
leaderboard) have a row per model and loss, best first.  An interval
``[low, high]`` becomes two columns, ``ci_low`` and ``ci_high``; JSON's
null for a non-finite overall value is the value again (inf, -inf, nan).
pandas is imported here only, when a frame is asked for.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# the fields of a loss in the table, in order; pairs split into _low/_high
_EVAL = ("value", "ci")
_COMPARE = ("baseline", "candidate", "difference", "relative", "ci", "relative_ci", "worse_by",
            "relative_worse", "worse_ci", "verdict")


def _fields(entry: Any, names: tuple[str, ...], ci: Any = None) -> dict[str, Any]:
    """One loss's columns: ``entry`` is its JSON dict (a comparison's) or its bare value (a slice's)."""
    if not isinstance(entry, dict):
        entry = {"value": entry, **({"ci": ci} if ci is not None else {})}
    out: dict[str, Any] = {}
    for name in names:
        if name not in entry:
            continue
        v = entry[name]
        if name.endswith("ci"):
            low, high = v if v is not None else (None, None)
            out[f"{name}_low"], out[f"{name}_high"] = _float(low), _float(high)
        elif name == "verdict":
            out[name] = v
        else:
            out[name] = _float(v)
    if "nonfinite" in entry:
        out["value"] = float(entry["nonfinite"])
    return out


def _float(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def report_frame(doc: dict[str, Any], slices: bool | None = None) -> pd.DataFrame:
    """The DataFrame of a JSON report (:func:`lossctl.report.render.to_dict`)."""
    import pandas as pd

    from ..errors import UsageError

    has_slices = "slices" in doc
    if slices is None:
        slices = has_slices
    if slices and not has_slices:
        raise UsageError("the report has no slices (evaluate with by=COLS)")
    if "models" in doc:
        return _leaderboard_frame(doc, slices)
    names = _COMPARE if doc["command"] == "compare" else _EVAL
    if not slices:
        rows = [{"loss": key, **_fields(entry, names)} for key, entry in doc["losses"].items()]
        columns = ["loss", *_columns(names, rows)]
        return pd.DataFrame(rows, columns=columns)
    by = list(doc["slices"][0]["key"]) if doc["slices"] else list(doc["columns"]["by"])
    rows = []
    for s in doc["slices"]:
        cis = s.get("ci", {})
        for key, entry in s["losses"].items():
            rows.append({**s["key"], "rows": s["rows"], "weight_sum": _float(s["weight_sum"]),
                         "loss": key, **_fields(entry, names, cis.get(key))})
    columns = [*by, "rows", "weight_sum", "loss", *_columns(names, rows)]
    return pd.DataFrame(rows, columns=columns)


def _model_fields(model: dict[str, Any], key: str, entry: Any, ci: Any, vs: Any) -> dict[str, Any]:
    """A model's loss in a leaderboard: its value (and interval), and its paired difference
    from the reference (``difference_ci``: that difference's interval; none for the reference)."""
    out = {"model": model["model"], "rank": model["rank"], "loss": key,
           **_fields(entry, _EVAL, ci)}
    if vs is not None:
        diff = _fields(vs, ("difference", "relative", "ci", "verdict"))
        diff["difference_ci_low"] = diff.pop("ci_low", math.nan)
        diff["difference_ci_high"] = diff.pop("ci_high", math.nan)
        out.update(diff)
    return out


def _leaderboard_frame(doc: dict[str, Any], slices: bool) -> pd.DataFrame:
    """Several models: a row per model and loss (best first), or per slice, model and loss."""
    import pandas as pd

    names = ("model", "rank", "loss", "value", "ci_low", "ci_high", "difference", "relative",
             "difference_ci_low", "difference_ci_high", "verdict")
    rows = []
    if not slices:
        for m in doc["models"]:
            rows += [_model_fields(m, k, e, None, e.get("vs_reference"))
                     for k, e in m["losses"].items()]
        return pd.DataFrame(rows, columns=[n for n in names if any(n in r for r in rows)])
    for s in doc["slices"]:
        for m in s["models"]:
            cis, vs = m.get("ci", {}), m.get("vs_reference", {})
            rows += [{**s["key"], "rows": s["rows"], "weight_sum": _float(s["weight_sum"]),
                      **_model_fields(m, k, v, cis.get(k), vs.get(k))}
                     for k, v in m["losses"].items()]
    by = list(doc["columns"]["by"])
    return pd.DataFrame(rows, columns=[*by, "rows", "weight_sum",
                                       *(n for n in names if any(n in r for r in rows))])


def _columns(names: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    """The loss columns present in any row, in the order of ``names``."""
    present = {k for r in rows for k in r}
    out = []
    for name in names:
        out += [c for c in ((f"{name}_low", f"{name}_high") if name.endswith("ci") else (name,))
                if c in present]
    return out
