"""What a saved state file may hold, checked before :meth:`EvalState.from_json` sees it.

A state file comes from anywhere (another machine, another day, an editor),
so its shape and every count and size in it are checked against what its
loss definitions imply before anything is allocated or added: a 44 KB file
claiming 300,000 bootstrap buckets is refused at once instead of taking
gigabytes.

The state is described part by part: :data:`PARTS` (the top-level parts:
sums, slices, buckets, per-slice buckets, top rows, per-row distributions,
reliability bins), each a schema (its
shape) and a rule (its sizes against the definition); the groupings share
:func:`_groups`; each kind of component (the states of curve and extreme
metrics) has its check in :data:`COMPONENTS`.  A new kind of state adds its
part or its component there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.components import Binned, Maximum
from ..core.exact import _SCALE
from ..core.histogram import MAX_KEYS, ScoreHistogram
from ..core.intervals import BUCKETS
from ..core.losses import CATALOGUE, Loss, bind
from ..core.sketch import _KEYS, MANTISSA_BITS
from ..core.state import SLICE_BUCKETS, STATE_VERSION, EvalState
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

MAX_WIDTH = 1 << 20  # columns (or classes) of a role: a component may keep one cell per class
COUNT = Int(0, 2**63 - 1)  # rows are counted in int64
# An exact sum is an integer in units of 2**-1074 of at most 2**64 values, each below 2**1024
# (a loss or a weight), or below 2**2048 for a weighted loss (a product that overflows float64
# is added exactly).  A weight sum is >= 0 and has no non-finite part (weights are finite).
WEIGHT_SUM = Obj({"scaled": HexInt(_SCALE + 1024 + 64, lo=0),
                  "nonfinite": FloatText(lambda x: x == 0, '"0.0" (weights are finite)')})
LOSS_SUM = Obj({"scaled": HexInt(_SCALE + 2048 + 64),
                "nonfinite": FloatText(lambda x: x == 0 or x != x or abs(x) == float("inf"),
                                       'the sum of non-finite values: "0.0", "inf", "-inf" or "nan"')})
_NAMES = sorted({d.name for d in CATALOGUE})
_TASKS = sorted({d.task for d in CATALOGUE})


@dataclass
class Definition:
    """What the state's header says, which the parts' sizes must agree with."""

    losses: list[Loss]
    terms: list[str]  # the names of the exact sums, one per distinct term
    components: dict[str, Any]  # component name -> spec
    weighted: bool
    rows: int
    sketches: list[str]  # the names of the per-row distributions kept (--quantiles, --html)
    calibration: Any  # the spec of the reliability bins kept for the page, or None

    @property
    def with_intervals(self) -> dict[str, Any]:
        """The components bootstrap buckets keep (score histograms do not)."""
        return {n: s for n, s in self.components.items() if s.intervals}


@dataclass
class Part:
    """One part of a state: its shape, and a rule checking its sizes against the definition."""

    schema: Schema
    rule: Callable[[Any, Definition, str, dict], None] | None = None  # (part, def, where, state)


def _problem(where: str, text: str) -> Invalid:
    return Invalid(where, "", problem=text)


def _length(items: list, n: int, where: str, what: str) -> None:
    if len(items) != n:
        raise _problem(where, f"expected {n} item(s) ({what}), got {len(items)}")


def _names(got: dict, want: list[str], where: str, what: str) -> None:
    if sorted(got) != sorted(want):
        raise _problem(where, f"expected {what} {', '.join(want) or 'none'}, "
                              f"got {', '.join(got) or 'none'}")


# --------------------------------------------------------------------------
# Components: one check per kind, each given the number of groups it must hold
# --------------------------------------------------------------------------

Check = Callable[[Any, Any, int, bool, str], None]  # (data, spec, groups, weighted, where)


def _groups_field(c: dict, groups: int, where: str) -> None:
    if c["groups"] != groups:
        raise Invalid(field(where, "groups"), str(groups), c["groups"])


BINNED = Obj({"groups": COUNT, "rows": List(COUNT), "sums": Map(List(LOSS_SUM)),
              "counts": Map(List(COUNT))})


def _binned(c: Any, spec: Binned, groups: int, weighted: bool, where: str) -> None:
    BINNED.check(c, where)
    _groups_field(c, groups, where)
    cells, what = groups * spec.bins, f"{spec.bins} bins per group"
    _length(c["rows"], cells, field(where, "rows"), what)
    summed = [ch.name for ch in spec.channels if weighted or ch.value is not None]
    counted = [ch.name for ch in spec.channels if not weighted and ch.value is None]
    _names(c["sums"], summed, field(where, "sums"), "the channels")
    _names(c["counts"], counted, field(where, "counts"), "the channels")
    for part in ("sums", "counts"):
        for name, values in c[part].items():
            _length(values, cells, field(field(where, part), name), what)


_HEX64 = HexInt(64, lo=0)
SIDE = Obj({"keys": List(_HEX64), "counts": List(COUNT), "low": List(_HEX64), "high": List(_HEX64),
            "weights": Opt(List(WEIGHT_SUM))})
HISTOGRAM = Obj({"groups": COUNT, "hists": Map(Obj({
    "shift": Int(0, 63), "sides": Tuple(SIDE, SIDE, expected="[negatives, positives]")}))})


def _histogram(c: Any, spec: ScoreHistogram, groups: int, weighted: bool, where: str) -> None:
    HISTOGRAM.check(c, where)
    _groups_field(c, groups, where)
    for g, h in c["hists"].items():
        at = field(field(where, "hists"), g)
        if not g.isdigit() or str(int(g)) != g or int(g) >= groups:
            raise _problem(at, f"a histogram of group {g!r}: groups are 0 to {groups - 1}")
        for i, side in enumerate(h["sides"]):
            s = f"{field(at, 'sides')}[{i}]"
            n = len(side["keys"])
            if n > MAX_KEYS:
                raise _problem(field(s, "keys"), f"{n} scores, more than a histogram keeps "
                                                 f"({MAX_KEYS})")
            for name in ("counts", "low", "high"):
                _length(side[name], n, field(s, name), "one per key")
            if weighted != (side["weights"] is not None):
                raise Invalid(field(s, "weights"), "a list of weight sums" if weighted else "null",
                              side["weights"])
            if side["weights"] is not None:
                _length(side["weights"], n, field(s, "weights"), "one per key")


SKETCH = Obj({"mantissa_bits": Const(MANTISSA_BITS), "keys": List(Int(0, _KEYS - 1)),
               "rows": List(COUNT), "low": List(FloatText()), "high": List(FloatText()),
               "weights": Opt(List(HexInt(_SCALE + 1024 + 64, lo=0)))})


def _sketch(c: Any, weighted: bool, where: str) -> None:
    """A per-row distribution: increasing bucket keys, one count, bound and weight per key."""
    SKETCH.check(c, where)
    keys = c["keys"]
    if any(b <= a for a, b in zip(keys, keys[1:], strict=False)):
        raise _problem(field(where, "keys"), "not in increasing order")
    for name in ("rows", "low", "high"):
        _length(c[name], len(keys), field(where, name), "one per key")
    if weighted != (c["weights"] is not None):
        raise Invalid(field(where, "weights"), "a list of weights" if weighted else "null",
                      c["weights"])
    if c["weights"] is not None:
        _length(c["weights"], len(keys), field(where, "weights"), "one per key")


MAXIMUM = Obj({"groups": COUNT, "max": List(FloatText())})


def _maximum(c: Any, spec: Maximum, groups: int, weighted: bool, where: str) -> None:
    MAXIMUM.check(c, where)
    _groups_field(c, groups, where)
    _length(c["max"], groups, field(where, "max"), "one per group")


COMPONENTS: dict[type, Check] = {Binned: _binned, ScoreHistogram: _histogram, Maximum: _maximum}


def _components(comps: dict, specs: dict[str, Any], groups: int, weighted: bool,
                where: str) -> None:
    _names(comps, list(specs), where, "the components")
    for name, spec in specs.items():
        COMPONENTS[type(spec)](comps[name], spec, groups, weighted, field(where, name))


# --------------------------------------------------------------------------
# The parts of a state
# --------------------------------------------------------------------------


def _groups(g: dict, d: Definition, where: str, n: int, what: str, specs: dict[str, Any],
            at_most: bool = False) -> None:
    """Per-group counts, weight sums, term sums and components: ``n`` groups (or at most ``n``),
    their counts adding up to the state's rows."""
    rows = g["rows"]
    if at_most and len(rows) > n:
        raise _problem(field(where, "rows"), f"{len(rows)} groups, more than {n} ({what})")
    if not at_most:
        _length(rows, n, field(where, "rows"), what)
    if sum(rows) != d.rows:
        raise _problem(field(where, "rows"), f"the counts add up to {sum(rows)}, the state has "
                                             f"{d.rows} rows")
    if d.weighted != (g["weight"] is not None):
        raise Invalid(field(where, "weight"), "a list of weight sums" if d.weighted else "null",
                      g["weight"])
    if g["weight"] is not None:
        _length(g["weight"], len(rows), field(where, "weight"), "one per group")
    _names(g["sums"], d.terms, field(where, "sums"), "the sums of")
    for name, sums in g["sums"].items():
        _length(sums, len(rows), field(field(where, "sums"), name), "one per group")
    _components(g["components"], specs, len(rows), d.weighted, field(where, "components"))


def _sums(sums: dict, d: Definition, where: str, state: dict) -> None:
    _names(sums, d.terms, where, "the sums of")


def _overall_components(comps: dict, d: Definition, where: str, state: dict) -> None:
    _components(comps, d.components, 1, d.weighted, where)


def _weight_sum(w: dict, d: Definition, where: str, state: dict) -> None:
    if not d.weighted and int(w["scaled"], 16) != d.rows << _SCALE:
        raise _problem(field(where, "scaled"), f"an unweighted state's weight sum is its row count "
                                               f"({d.rows})")


def _slices(s: dict, d: Definition, where: str, state: dict) -> None:
    keys = s["keys"]
    if len(keys) > s["limit"]:
        raise _problem(field(where, "keys"), f"{len(keys)} slices, more than the limit {s['limit']}")
    seen = set()
    for i, k in enumerate(keys):
        _length(k, len(s["by"]), field(field(where, "keys"), i), "one value per --by column")
        if tuple(k) in seen:
            raise _problem(field(field(where, "keys"), i), "a slice key given twice")
        seen.add(tuple(k))
    _groups(s, d, where, len(keys), "one per slice", d.components, at_most=True)


def _buckets(b: dict, d: Definition, where: str, state: dict) -> None:
    _groups(b, d, where, b["count"], "one per bucket", d.with_intervals)


def _slice_buckets(b: dict, d: Definition, where: str, state: dict) -> None:
    if state["slices"] is None or state["buckets"] is None:
        raise Invalid(where, "null (per-slice buckets need slices and buckets)", b)
    n = len(state["slices"]["keys"]) * SLICE_BUCKETS
    _groups(b, d, where, n, f"{SLICE_BUCKETS} per slice", {}, at_most=True)


def _top(t: dict, d: Definition, where: str, state: dict) -> None:
    loss = next((l for l in d.losses if l.key == t["loss"]), None)
    if loss is None or not loss.definition.per_row:
        raise Invalid(field(where, "loss"), "one of the losses (a mean): "
                      + ", ".join(l.key for l in d.losses if l.definition.per_row), t["loss"])
    if t["sign"] != (-1.0 if loss.definition.higher_is_better else 1.0):
        raise _problem(field(where, "sign"), f"does not match {loss.key}'s direction")
    if len(t["rows"]) > t["n"]:
        raise _problem(field(where, "rows"), f"{len(t['rows'])} rows, more than n ({t['n']})")


def _sketches(sk: dict, d: Definition, where: str, state: dict) -> None:
    _names(sk, d.sketches, where, "the distributions of")
    for name, c in sk.items():
        _sketch(c, d.weighted, field(where, name))


def _calibration(c: Any, d: Definition, where: str, state: dict) -> None:
    if d.calibration is not None:  # (bins no loss of this state can use are ignored)
        _binned(c, d.calibration, 1, d.weighted, where)


def _group_fields(**extra: Schema) -> dict[str, Schema]:
    return {**extra, "rows": List(COUNT), "weight": Opt(List(WEIGHT_SUM)),
            "sums": Map(List(LOSS_SUM)), "components": Map(Json())}


TOP_ROW = Tuple(FloatText(), Str(), COUNT, Map(Json()),
                expected="a top row: [value, file, row, kept columns]")

# The top-level parts of a state, each with its shape and its rule.  A new kind of state goes here.
PARTS: dict[str, Part] = {
    "weight_sum": Part(WEIGHT_SUM, _weight_sum),
    "sums": Part(Map(LOSS_SUM), _sums),
    "components": Part(Map(Json()), _overall_components),
    "slices": Part(Opt(Obj(_group_fields(by=List(Str(), min_len=1), limit=Int(1),
                                         keys=List(List(Scalar()))))), _slices),
    "buckets": Part(Opt(Obj(_group_fields(count=Const(BUCKETS), seed=Int(0, 2**64 - 1)))),
                    _buckets),
    "slice_buckets": Part(Opt(Obj(_group_fields(per_slice=Const(SLICE_BUCKETS)))), _slice_buckets),
    "top": Part(Opt(Obj({"loss": Str(), "n": Int(1), "sign": OneOf(Const(1.0), Const(-1.0)),
                         "rows": List(TOP_ROW)})), _top),
    "sketches": Part(Opt(Map(Json())), _sketches),
    "calibration": Part(Opt(Json()), _calibration),
}


def _loss(entry: dict, where: str) -> None:
    try:
        bind(Loss.from_json(entry).definition, entry["params"], entry["key"])
    except UsageError as e:
        raise _problem(field(where, "params"), str(e)) from None


LOSS = Obj({"key": Str(max_len=1000), "name": Str(choices=_NAMES), "task": Str(choices=_TASKS),
            "params": Map(Scalar())}, optional=("task",), rules=[_loss],
           expected="a loss: {key, name, task, params}")


def definition(state: dict, where: str) -> Definition:
    """The losses, sums and components of a state whose header fields are each valid."""
    losses = [Loss.from_json(l) for l in state["losses"]]
    try:
        bare = EvalState(losses, state["label_width"], state["pred_width"], state["weighted"],
                         state["nan"], quantiles=state["sketches"] is not None,
                         calibration=state["calibration"] is not None)
    except UsageError as e:  # widths that do not fit the losses
        raise _problem(field(where, "pred_width"), str(e)) from None
    names = bare._names()  # how to_json names each sum, component and distribution
    dist = bare.distributions
    return Definition(losses, [names[k] for k in bare._terms],
                      {names[k]: spec for k, spec in bare._specs.items()}, state["weighted"],
                      state["rows"], [dist._name(k, names) for k in dist.specs], dist._bins_spec)


def _state(state: dict, where: str) -> None:
    keys = [l["key"] for l in state["losses"]]
    if len(set(keys)) != len(keys):
        raise _problem(field(where, "losses"), "a loss given twice")
    if state["rows_seen"] != state["rows"] + state["rows_skipped"]:
        raise _problem(field(where, "rows_seen"), "is not rows + rows_skipped")
    d = definition(state, where)
    for name, part in PARTS.items():
        if part.rule is not None and state[name] is not None:
            part.rule(state[name], d, field(where, name), state)


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
               "roles": Map(NAMES), "ci_key": Opt(Str())},
              optional=("label_width", "pred_width", "baseline", "by", "keep", "key", "roles",
                        "ci_key"))
# the fingerprint of each input read (lossctl.io.fingerprint), refusing a shard merged twice
INPUT_FILE = Obj({"name": Str(), "path": Str(), "size": COUNT,
                  "digest": Str(pattern=r"sha256:[0-9a-f]{64}", expected='"sha256:" and 64 hex digits'),
                  "role": Str(choices=("main", "label", "candidate")), "rows": COUNT})


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
            raise _problem(field(field(field(where, "state"), "top"), "rows") + f"[{i}][3]",
                           "the kept columns are not columns.keep")


def state_file(kind: str) -> Obj:
    """The schema of a whole state file: the state, with its inputs and columns."""
    return Obj({"kind": Const(kind), "version": Const(STATE_VERSION), "inputs": List(Str()),
                "input_files": List(INPUT_FILE), "columns": COLUMNS, "losses_chosen": Bool(),
                "state": STATE}, optional=("input_files",), rules=[_columns])
