"""What a saved state file may hold, checked before :meth:`EvalState.from_json` sees it.

A state file comes from anywhere (another machine, another day, an editor),
so its shape and every count and size in it are checked against what its
loss definitions imply before anything is allocated or added: a 44 KB file
claiming 300,000 bootstrap buckets is refused at once instead of taking
gigabytes.  The state is described part by part in :data:`PARTS`: each part
is a schema (its shape) and a rule (its sizes against the definition); a new
kind of state adds its part there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.exact import _SCALE
from ..core.intervals import BUCKETS
from ..core.losses import CATALOGUE, Loss, bind
from ..core.state import STATE_VERSION
from ..core.validate import check_columns
from ..errors import UsageError
from ..io.documents import (
    Bool,
    Const,
    FloatText,
    HexInt,
    Int,
    Invalid,
    Json,
    List,
    Map,
    Obj,
    OneOf,
    Opt,
    Scalar,
    Schema,
    Str,
    Tuple,
    field,
)

MAX_WIDTH = 1 << 24  # columns (or classes) of a role
COUNT = Int(0, 2**63 - 1)  # rows are counted in int64
# An exact sum is an integer in units of 2**-1074 of at most 2**64 values, each below 2**1024
# (a loss or a weight), or below 2**2048 for a weighted loss (a product that overflows float64
# is added exactly).  A weight sum is >= 0 and has no non-finite part (weights are finite).
WEIGHT_SUM = Obj({"scaled": HexInt(_SCALE + 1024 + 64, lo=0),
                  "nonfinite": FloatText(lambda x: x == 0, '"0.0" (weights are finite)')})
LOSS_SUM = Obj({"scaled": HexInt(_SCALE + 2048 + 64),
                "nonfinite": FloatText(lambda x: x == 0 or x != x or abs(x) == float("inf"),
                                       'the sum of non-finite values: "0.0", "inf", "-inf" or "nan"')})
_BY_NAME = {d.name: d for d in CATALOGUE}


@dataclass
class Definition:
    """What the state's header says, which the parts' sizes must agree with."""

    losses: list[Loss]
    kernels: list[str]  # the names of the exact sums: one per kernel (mse and rmse share one)
    weighted: bool
    rows: int


@dataclass
class Part:
    """One part of a state: its shape, and a rule checking its sizes against the definition."""

    schema: Schema
    rule: Callable[[Any, Definition, str], None] | None = None


def _length(items: list, n: int, where: str, what: str) -> None:
    if len(items) != n:
        raise Invalid(where, "", problem=f"expected {n} item(s) ({what}), got {len(items)}")


def _sum_names(sums: dict, d: Definition, where: str) -> None:
    if sorted(sums) != sorted(d.kernels):
        raise Invalid(where, "", problem=f"expected the sums of {', '.join(d.kernels)}, "
                                         f"got {', '.join(sums) or 'none'}")


def _weight_sum(w: dict, d: Definition, where: str) -> None:
    if not d.weighted and int(w["scaled"], 16) != d.rows << _SCALE:
        raise Invalid(field(where, "scaled"), "", problem=f"an unweighted state's weight sum is its "
                                                          f"row count ({d.rows})")


def _groups(g: dict, d: Definition, where: str, n: int, what: str) -> None:
    """Per-group counts, weight sums and loss sums: ``n`` groups, adding up to the state's rows."""
    _length(g["rows"], n, field(where, "rows"), what)
    if sum(g["rows"]) != d.rows:
        raise Invalid(field(where, "rows"), "", problem=f"the counts add up to {sum(g['rows'])}, "
                                                        f"the state has {d.rows} rows")
    if d.weighted != (g["weight"] is not None):
        raise Invalid(field(where, "weight"), "a list of weight sums" if d.weighted else "null",
                      g["weight"])
    if g["weight"] is not None:
        _length(g["weight"], n, field(where, "weight"), what)
    _sum_names(g["sums"], d, field(where, "sums"))
    for name, sums in g["sums"].items():
        _length(sums, n, field(field(where, "sums"), name), what)


def _slices(s: dict, d: Definition, where: str) -> None:
    keys = s["keys"]
    if len(keys) > s["limit"]:
        raise Invalid(field(where, "keys"), "", problem=f"{len(keys)} slices, more than the limit "
                                                        f"{s['limit']}")
    seen = set()
    for i, k in enumerate(keys):
        _length(k, len(s["by"]), field(field(where, "keys"), i), "one value per --by column")
        if tuple(k) in seen:
            raise Invalid(field(field(where, "keys"), i), "", problem="a slice key given twice")
        seen.add(tuple(k))
    _groups(s, d, where, len(keys), "one per slice")


def _buckets(b: dict, d: Definition, where: str) -> None:
    _groups(b, d, where, b["count"], "one per bucket")


def _top(t: dict, d: Definition, where: str) -> None:
    loss = next((l for l in d.losses if l.key == t["loss"]), None)
    if loss is None:
        raise Invalid(field(where, "loss"), "one of the losses: "
                      + ", ".join(l.key for l in d.losses), t["loss"])
    if t["sign"] != (-1.0 if loss.definition.higher_is_better else 1.0):
        raise Invalid(field(where, "sign"), "", problem=f"does not match {loss.key}'s direction")
    if len(t["rows"]) > t["n"]:
        raise Invalid(field(where, "rows"), "", problem=f"{len(t['rows'])} rows, more than n "
                                                        f"({t['n']})")


def _groups_schema(**extra: Schema) -> dict[str, Schema]:
    return {**extra, "rows": List(COUNT), "weight": Opt(List(WEIGHT_SUM)), "sums": Map(List(LOSS_SUM))}


TOP_ROW = Tuple(FloatText(), Str(), COUNT, Map(Json()),
                expected="a top row: [value, file, row, kept columns]")

# The parts of a state, each with its shape and its rule.  A new kind of state goes here.
PARTS: dict[str, Part] = {
    "weight_sum": Part(WEIGHT_SUM, _weight_sum),
    "sums": Part(Map(LOSS_SUM), _sum_names),
    "slices": Part(Opt(Obj(_groups_schema(by=List(Str(), min_len=1), limit=Int(1),
                                          keys=List(List(Scalar()))))), _slices),
    "buckets": Part(Opt(Obj(_groups_schema(count=Const(BUCKETS), seed=Int(0, 2**64 - 1)))),
                    _buckets),
    "top": Part(Opt(Obj({"loss": Str(), "n": Int(1), "sign": OneOf(Const(1.0), Const(-1.0)),
                         "rows": List(TOP_ROW)})), _top),
}


def _loss(entry: dict, where: str) -> None:
    try:
        bind(_BY_NAME[entry["name"]], entry["params"], entry["key"])
    except UsageError as e:
        raise Invalid(field(where, "params"), "", problem=str(e)) from None


LOSS = Obj({"key": Str(max_len=1000), "name": Str(choices=_BY_NAME), "params": Map(Scalar())},
           rules=[_loss], expected="a loss: {key, name, params}")


def definition(state: dict) -> Definition:
    """The losses and counts of a state whose fields are each valid."""
    losses = [Loss.from_json(l) for l in state["losses"]]
    kernels: dict[tuple, str] = {}
    for l in losses:  # as EvalState names its sums
        kernels.setdefault(l.rows_key, l.canonical)
    return Definition(losses, list(kernels.values()), state["weighted"], state["rows"])


def _state(state: dict, where: str) -> None:
    keys = [l["key"] for l in state["losses"]]
    if len(set(keys)) != len(keys):
        raise Invalid(field(where, "losses"), "", problem="a loss given twice")
    if state["rows_seen"] != state["rows"] + state["rows_skipped"]:
        raise Invalid(field(where, "rows_seen"), "", problem="is not rows + rows_skipped")
    d = definition(state)
    try:
        check_columns(d.losses, state["label_width"], state["pred_width"])
    except UsageError as e:
        raise Invalid(field(where, "pred_width"), "", problem=str(e)) from None
    for name, part in PARTS.items():
        if part.rule is not None and state[name] is not None:
            part.rule(state[name], d, field(where, name))


STATE = Obj({
    "version": Const(STATE_VERSION),
    "losses": List(LOSS, min_len=1),
    "label_width": Int(1, MAX_WIDTH),
    "pred_width": Int(1, MAX_WIDTH),
    "weighted": Bool(),
    "nan": Str(choices=("error", "skip")),
    "rows_seen": COUNT,
    "rows": COUNT,
    "rows_skipped": COUNT,
    **{name: part.schema for name, part in PARTS.items()},
}, rules=[_state])

NAMES = List(Str())
COLUMNS = Obj({"label": NAMES, "pred": NAMES, "weight": Opt(Str()),
               "label_width": Int(1, MAX_WIDTH), "pred_width": Int(1, MAX_WIDTH),
               "baseline": Opt(NAMES), "by": NAMES, "keep": NAMES, "key": Opt(Str()),
               "roles": Map(NAMES)},
              optional=("label_width", "pred_width", "baseline", "by", "keep", "key", "roles"))


def _columns(doc: dict, where: str) -> None:
    """The columns agree with the state: weight, widths, --by, the kept columns of --top rows."""
    cols, state = doc["columns"], doc["state"]
    at = field(where, "columns")
    if (cols["weight"] is not None) != state["weighted"]:
        raise Invalid(field(at, "weight"), "a column name" if state["weighted"] else "null",
                      cols["weight"])
    for width in ("label_width", "pred_width"):
        if width in cols and cols[width] != state[width]:
            raise Invalid(field(at, width), str(state[width]), cols[width])
    by = state["slices"]["by"] if state["slices"] is not None else []
    if cols.get("by", []) != by:
        raise Invalid(field(at, "by"), "the --by columns of state.slices", cols.get("by"))
    keep = set(cols.get("keep", []))
    top = state["top"]["rows"] if state["top"] is not None else []
    for i, row in enumerate(top):
        if set(row[3]) != keep:
            raise Invalid(field(field(field(where, "state"), "top"), "rows") + f"[{i}][3]", "",
                          problem="the kept columns are not columns.keep")


def state_file(kind: str) -> Obj:
    """The schema of a whole state file: the state, with its inputs and columns."""
    return Obj({"kind": Const(kind), "version": Const(STATE_VERSION), "inputs": List(Str()),
                "columns": COLUMNS, "losses_chosen": Bool(), "state": STATE}, rules=[_columns])

