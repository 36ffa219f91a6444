"""Exact, mergeable evaluation state: ``update(chunk)``, ``merge(other)``, ``result()``.

The state keeps exact sums (see :mod:`lossctl.core.exact`) of every loss's
per-row values, overall, per slice and per bootstrap bucket, and a running
top-N; so a result does not change by a single bit however the rows are cut
into chunks and in whatever order partial states are merged.  The reported
mean is the correctly rounded quotient of two exact sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from .exact import _SCALE, BLOCK, ExactSum, GroupedSum, _all_finite
from .losses import Check, Loss
from .top import RowInfo, TopRows
from .validate import _as_float, _needs_class_index, _nonfinite_rows, _Problems, check_columns

STATE_VERSION = 2
_KERNEL_ROWS = BLOCK  # rows * columns per kernel call: keeps temporaries cache-sized


@dataclass
class Result:
    """Weighted-mean loss values with the row count and weight sum behind them."""

    values: dict[str, float]
    rows: int
    rows_skipped: int
    weight_sum: float
    losses: list[Loss] = field(repr=False, default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_skipped": self.rows_skipped,
            "weight_sum": self.weight_sum,
            "losses": {l.key: {"value": self.values[l.key], "name": l.name, "params": l.params}
                       for l in self.losses},
        }


class SliceKeys:
    """The slices of ``--by`` columns: each distinct value tuple gets a code, in order of appearance.

    One object is shared by the per-thread states of a run (codes are given
    out by the reader thread); states from other runs are merged by key.
    """

    def __init__(self, columns: Sequence[str], limit: int = 10_000) -> None:
        self.columns = list(columns)
        self.limit = limit
        self.keys: list[tuple] = []
        self.index: dict[tuple, int] = {}

    def code(self, key: tuple) -> int:
        c = self.index.get(key)
        if c is None:
            if len(self.keys) >= self.limit:
                cols = ", ".join(self.columns)
                raise UsageError(f"--by {cols} has more than {self.limit} distinct values; "
                                 f"raise --max-slices or slice by a coarser column")
            c = self.index[key] = len(self.keys)
            self.keys.append(key)
        return c


class _Groups:
    """Exact per-group state of every kernel: rows, weight sum and loss sums."""

    def __init__(self, kernels: Sequence[tuple], weighted: bool, groups: int = 0) -> None:
        self.rows = np.zeros(groups, dtype=np.int64)
        self.weight = GroupedSum(groups) if weighted else None
        self.sums = {k: GroupedSum(groups) for k in kernels}

    @property
    def size(self) -> int:
        return len(self.rows)

    def grow(self, groups: int) -> None:
        if groups > self.size:
            self.rows = np.pad(self.rows, (0, groups - self.size))
            for s in self._all():
                s.grow(groups)

    def _all(self) -> list[GroupedSum]:
        return list(self.sums.values()) + ([self.weight] if self.weight is not None else [])

    def add_rows(self, codes: np.ndarray, w: np.ndarray | None) -> None:
        self.rows += np.bincount(codes, minlength=self.size)
        if self.weight is not None:
            self.weight.add(w, codes)

    def weight_totals(self) -> list[ExactSum]:
        if self.weight is not None:
            return self.weight.totals()
        return [ExactSum(int(n) << _SCALE) for n in self.rows.tolist()]

    def merge(self, other: _Groups, codes: Sequence[int] | None = None) -> None:
        """Add ``other``'s groups (``codes`` maps them to ours; default: the same codes)."""
        idx = np.arange(other.size) if codes is None else np.asarray(codes, dtype=np.int64)
        self.grow(int(idx.max()) + 1 if idx.size else 0)
        np.add.at(self.rows, idx, other.rows)
        for mine, theirs in zip(self._all(), other._all(), strict=True):
            mine.add_totals(theirs.totals(), idx.tolist())

    def to_json(self, names: dict[tuple, str]) -> dict:
        return {"rows": self.rows.tolist(),
                "weight": self.weight.to_json() if self.weight is not None else None,
                "sums": {names[k]: s.to_json() for k, s in self.sums.items()}}

    @classmethod
    def from_json(cls, data: dict, names: dict[tuple, str]) -> _Groups:
        g = cls(list(names), data["weight"] is not None, len(data["rows"]))
        g.rows = np.array(data["rows"], dtype=np.int64)
        if g.weight is not None:
            g.weight = GroupedSum.from_json(data["weight"])
            g.weight.grow(g.size)
        for k, name in names.items():
            g.sums[k] = GroupedSum.from_json(data["sums"][name])
            g.sums[k].grow(g.size)
        return g


def _total(sums: Sequence[ExactSum]) -> ExactSum:
    out = ExactSum()
    for t in sums:
        out.merge(t)
    return out



class EvalState:
    """Exact running state of several losses over one stream of rows.

    ``update`` takes one chunk: labels ``y`` (n,) or (n, K), predictions ``p``
    (n,) or (n, K), optional weights ``w`` (n,).  Rows are counted from 0
    across updates so a bad value is reported by its row in the stream.  With
    ``nan="skip"`` a row with a missing, NaN or infinite label or prediction,
    or a missing weight, is dropped for every loss and counted.

    Optional extras, all exact and mergeable: per-slice sums (``slices``, the
    codes of each row given to ``update``), per-bucket sums for bootstrap
    intervals (``buckets`` > 0, each row's bucket given to ``update``), and a
    running top-N of one loss (``top``).
    """

    def __init__(self, losses: Sequence[Loss], label_width: int = 1, pred_width: int = 1,
                 weighted: bool = False, nan: str = "error", slices: SliceKeys | None = None,
                 buckets: int = 0, seed: int = 0, top: tuple[str, int] | None = None) -> None:
        if not losses:
            raise UsageError("no loss to compute")
        if nan not in ("error", "skip"):
            raise UsageError(f"nan policy must be 'error' or 'skip', not {nan!r}")
        check_columns(losses, label_width, pred_width)
        self.losses = list(losses)
        self.label_width = label_width
        self.pred_width = pred_width
        self.weighted = weighted
        self.nan = nan
        self.rows_seen = 0
        self.rows = 0
        self.rows_skipped = 0
        self.weight_sum = ExactSum()
        self._kernels: dict[tuple, Loss] = {}
        for loss in self.losses:
            self._kernels.setdefault(loss.rows_key, loss)
        self.sums: dict[tuple, ExactSum] = {k: ExactSum() for k in self._kernels}
        checks: dict[tuple, tuple[Check, dict]] = {}
        for loss in self.losses:
            for c in loss.definition.checks:
                checks.setdefault((id(c), tuple(sorted(loss.params.items()))), (c, loss.params))
        self._checks = list(checks.values())
        self._class_index = _needs_class_index(self.losses, label_width)
        self._on_diff = any(l.definition.on_diff for l in self._kernels.values())
        self.slice_keys = slices
        self.slices = _Groups(list(self._kernels), weighted) if slices is not None else None
        self.buckets = buckets
        self.seed = seed
        self.bucket_sums = _Groups(list(self._kernels), weighted, buckets) if buckets else None
        self.top: TopRows | None = None
        if top is not None:
            key, n = top
            loss = self.loss(key)
            self.top = TopRows(loss.key, n, loss.definition.higher_is_better)

    def loss(self, key: str) -> Loss:
        """The loss this state computes under ``key`` (as written, or canonical)."""
        for l in self.losses:
            if key in (l.key, l.canonical):
                return l
        raise UsageError(f"{key!r} is not one of the losses computed "
                         f"({', '.join(l.key for l in self.losses)})")

    # -- update -------------------------------------------------------------

    def update(self, y: Any, p: Any, w: Any = None, first_row: int | None = None, *,
               slices: np.ndarray | None = None, buckets: np.ndarray | None = None,
               drop: np.ndarray | None = None, info: RowInfo | None = None,
               per_row: bool = False) -> dict[str, np.ndarray] | None:
        """Add one chunk of rows.

        ``first_row`` is the chunk's row index in the stream (for error
        messages), by default the number of rows this state has seen; give it
        when chunks of one stream are spread over several states.
        ``slices``/``buckets`` are each row's slice code and bucket;
        ``drop`` marks rows to skip like non-finite ones (with ``nan="skip"``:
        a paired comparison drops a row bad in either model); ``info`` names
        the rows for ``--top``.  With ``per_row`` the per-row losses are
        returned (NaN for skipped rows).
        """
        y = _as_float(y, "label", self.label_width)
        p = _as_float(p, "prediction", self.pred_width)
        if len(y) != len(p):
            raise UsageError(f"label and prediction lengths differ: {len(y)} != {len(p)}")
        if self.weighted:
            if w is None:
                raise UsageError("this state is weighted: pass weights")
            w = _as_float(w, "weight", 1)
            if len(w) != len(y):
                raise UsageError(f"weight length {len(w)} != {len(y)} rows")
        elif w is not None:
            raise UsageError("this state is unweighted: create it with weighted=True")
        if (self.slices is not None) != (slices is not None):
            raise UsageError("pass slice codes exactly when the state has slices")
        if (self.bucket_sums is not None) != (buckets is not None):
            raise UsageError("pass buckets exactly when the state has buckets")
        n = len(y)
        problems = _Problems(self.rows_seen if first_row is None else first_row)
        rows = None
        # a weight of +-inf is never "missing": it is always an input error
        if w is not None and not _all_finite(w):
            problems.check("weight must be finite", "weight", w, np.isinf(w))
        arrays = [("label", y), ("prediction", p)] + ([("weight", w)] if w is not None else [])
        if drop is not None or not all(_all_finite(a) for _, a in arrays):
            if self.nan == "error" and not all(_all_finite(a) for _, a in arrays):
                for role, a in arrays:
                    problems.check("missing or non-finite value (use --nan skip to drop such rows)",
                                   role, a, ~np.isfinite(a))
                self._validate(y, p, w, problems)
                problems.raise_first()
            keep = np.ones(n, dtype=bool) if drop is None else ~drop
            for _, a in arrays:
                keep &= ~_nonfinite_rows(a)
            rows = np.flatnonzero(keep)
            y, p = y[keep], p[keep]
            w = w[keep] if w is not None else None
            slices = slices[keep] if slices is not None else None
            buckets = buckets[keep] if buckets is not None else None
            self.rows_skipped += n - len(y)
        self._validate(y, p, w, problems, rows)
        problems.raise_first()
        self.rows_seen += n
        values = self._accumulate(y, p, w, slices, buckets, info, rows, per_row)
        if not per_row:
            return None
        out = {}
        for loss in self.losses:
            v = loss.finish_rows(values[loss.rows_key])
            if rows is not None:
                full = np.full(n, np.nan)
                full[rows] = v
                v = full
            out[loss.key] = v
        return out

    def _validate(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None, problems: _Problems,
                  rows: np.ndarray | None = None) -> None:
        """The spec's domain rules (NaN compares false, so it never trips them)."""
        if w is not None:
            problems.check("weight must be >= 0", "weight", w, w < 0, rows)
        if self._class_index:
            bad = (y < 0) | (y >= self.pred_width) | (y != np.floor(y))
            problems.check(f"class index must be an integer in [0, {self.pred_width})",
                           "label", y, bad, rows)
        for check, params in self._checks:
            values = y if check.role == "label" else p
            problems.check(check.reason, check.role, values, check.bad(values, params), rows)

    def _accumulate(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None,
                    slices: np.ndarray | None, buckets: np.ndarray | None, info: RowInfo | None,
                    rows: np.ndarray | None, keep_values: bool) -> dict[tuple, np.ndarray]:
        n = len(y)
        groups = [(g, c) for g, c in ((self.slices, slices), (self.bucket_sums, buckets))
                  if g is not None]
        if self.slices is not None and self.slice_keys is not None:
            self.slices.grow(len(self.slice_keys.keys))
        top_loss = self.loss(self.top.key) if self.top is not None else None
        top_key = top_loss.rows_key if top_loss is not None else None
        kept: dict[tuple, list[np.ndarray]] = {}
        step = max(1, _KERNEL_ROWS // max(self.pred_width, self.label_width))
        with np.errstate(over="ignore", under="ignore"):
            for start in range(0, n, step):
                ys, ps = y[start:start + step], p[start:start + step]
                ws = w[start:start + step] if w is not None else None
                d = ys - ps if self._on_diff else None
                for key, loss in self._kernels.items():
                    values = loss.per_row(ys, ps, d)
                    if not groups:  # else the overall sums are the groups' sums (_overall)
                        if ws is not None:
                            self.sums[key].add_weighted(values, ws)
                        else:
                            self.sums[key].add(values)
                    for g, codes in groups:
                        cs = codes[start:start + step]
                        if ws is not None:
                            g.sums[key].add_weighted(values, ws, cs)
                        else:
                            g.sums[key].add(values, cs)
                    if key == top_key and info is not None:
                        idx = np.arange(start, start + len(values))
                        self.top.add(top_loss.finish_rows(values), idx if rows is None else rows[idx],
                                     info)
                    if keep_values:
                        kept.setdefault(key, []).append(values)
        if not groups:
            if w is not None:
                self.weight_sum.add(w)
            else:
                self.weight_sum.add_count(n)
        for g, codes in groups:
            g.add_rows(codes, w)
        self.rows += n
        return {k: (np.concatenate(v) if v else np.empty(0)) for k, v in kept.items()} \
            if keep_values else {}

    # -- merge / result -----------------------------------------------------

    def empty_copy(self) -> EvalState:
        """A new, empty state of the same definition (for parallel workers and shards).

        The copy shares this state's slice keys, so worker threads agree on codes.
        """
        top = (self.top.key, self.top.n) if self.top is not None else None
        return EvalState(self.losses, self.label_width, self.pred_width, self.weighted, self.nan,
                         self.slice_keys, self.buckets, self.seed, top)

    def signature(self) -> dict:
        """What two states must share to be merged."""
        return {"losses": [l.canonical for l in self.losses], "label_width": self.label_width,
                "pred_width": self.pred_width, "weighted": self.weighted, "nan": self.nan,
                "by": self.slice_keys.columns if self.slice_keys is not None else None,
                "buckets": self.buckets, "seed": self.seed,
                "top": [self.top.key, self.top.n] if self.top is not None else None}

    def merge(self, other: EvalState) -> EvalState:
        """Fold ``other`` into this state (exact: order does not matter)."""
        mine, theirs = self.signature(), other.signature()
        if mine != theirs:
            diff = ", ".join(f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k])
            raise UsageError(f"cannot merge states of different definitions ({diff})")
        self.rows_seen += other.rows_seen
        self.rows += other.rows
        self.rows_skipped += other.rows_skipped
        self.weight_sum.merge(other.weight_sum)
        for key, s in self.sums.items():
            s.merge(other.sums[key])
        if self.slices is not None and other.slices is not None:
            if other.slice_keys is self.slice_keys:
                self.slices.merge(other.slices)
            else:
                codes = [self.slice_keys.code(k) for k in other.slice_keys.keys]
                self.slices.merge(other.slices, codes)
        if self.bucket_sums is not None and other.bucket_sums is not None:
            self.bucket_sums.merge(other.bucket_sums)
        if self.top is not None and other.top is not None:
            self.top.merge(other.top)
        return self

    def _overall(self) -> None:
        """Overall sums as the exact sums of a grouping every row went into (buckets or slices).

        With groups, rows are summed once, per group; adding the groups up
        is exact, so this is the same as summing the rows.
        """
        g = self.bucket_sums if self.bucket_sums is not None else self.slices
        if g is None:
            return
        self.weight_sum = _total(g.weight_totals())
        self.sums = {k: _total(s.totals()) for k, s in g.sums.items()}

    def _values(self, sums: dict[tuple, ExactSum], weight: ExactSum) -> dict[str, float]:
        return {l.key: l.finish(sums[l.rows_key].mean(weight)) for l in self.losses}

    def result(self) -> Result:
        """The weighted mean of every loss; raises InputError on empty or zero-weight input."""
        self._overall()
        if self.rows == 0:
            extra = f" (all {self.rows_skipped} rows were skipped)" if self.rows_skipped else ""
            raise InputError(f"no rows to evaluate{extra}")
        if self.weight_sum.scaled == 0 and not self.weight_sum.nonfinite:
            raise InputError(f"the weights of all {self.rows} rows sum to zero")
        return Result(self._values(self.sums, self.weight_sum), self.rows, self.rows_skipped,
                      self.weight_sum.value, self.losses)

    def slice_results(self) -> list[dict]:
        """One entry per slice: its key, rows, weight sum and loss values (NaN at zero weight)."""
        if self.slices is None or self.slice_keys is None:
            return []
        g = self.slices
        g.grow(len(self.slice_keys.keys))
        weights = g.weight_totals()
        totals = {k: s.totals() for k, s in g.sums.items()}
        out = []
        for i, key in enumerate(self.slice_keys.keys):
            w = weights[i]
            zero = w.scaled == 0 and not w.nonfinite
            values = {l.key: math.nan for l in self.losses} if zero else \
                self._values({k: t[i] for k, t in totals.items()}, w)
            out.append({"key": dict(zip(self.slice_keys.columns, key, strict=True)),
                        "rows": int(g.rows[i]), "weight_sum": w.value, "values": values})
        return out

    def bucket_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-bucket loss sums (per loss key) and weight sums, as float arrays, for the bootstrap."""
        if self.bucket_sums is None:
            raise UsageError("this state keeps no buckets (evaluate with --ci)")
        g = self.bucket_sums
        weights = np.array([t.value for t in g.weight_totals()])
        sums = {k: np.array([t.value for t in s.totals()]) for k, s in g.sums.items()}
        return {l.key: sums[l.rows_key] for l in self.losses}, weights

    # -- serialisation ------------------------------------------------------

    def to_json(self) -> dict:
        """A JSON-able, lossless snapshot of the state."""
        names = {k: l.canonical for k, l in self._kernels.items()}
        self._overall()
        return {
            "version": STATE_VERSION,
            "losses": [l.to_json() for l in self.losses],
            "label_width": self.label_width,
            "pred_width": self.pred_width,
            "weighted": self.weighted,
            "nan": self.nan,
            "rows_seen": self.rows_seen,
            "rows": self.rows,
            "rows_skipped": self.rows_skipped,
            "weight_sum": self.weight_sum.to_json(),
            "sums": {names[k]: s.to_json() for k, s in self.sums.items()},
            "slices": None if self.slices is None or self.slice_keys is None else {
                "by": self.slice_keys.columns, "limit": self.slice_keys.limit,
                "keys": [list(k) for k in self.slice_keys.keys], **self.slices.to_json(names)},
            "buckets": None if self.bucket_sums is None else {
                "count": self.buckets, "seed": self.seed, **self.bucket_sums.to_json(names)},
            "top": self.top.to_json() if self.top is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> EvalState:
        if data.get("version") != STATE_VERSION:
            raise UsageError(f"unsupported state version {data.get('version')!r} "
                             f"(this lossctl reads version {STATE_VERSION})")
        losses = [Loss.from_json(d) for d in data["losses"]]
        sl, bk, top = data.get("slices"), data.get("buckets"), data.get("top")
        keys = None
        if sl is not None:
            keys = SliceKeys(sl["by"], sl["limit"])
            for k in sl["keys"]:
                keys.code(tuple(k))
        state = cls(losses, data["label_width"], data["pred_width"], data["weighted"], data["nan"],
                    keys, bk["count"] if bk else 0, bk["seed"] if bk else 0,
                    (top["loss"], top["n"]) if top else None)
        state.rows_seen = data["rows_seen"]
        state.rows = data["rows"]
        state.rows_skipped = data["rows_skipped"]
        state.weight_sum = ExactSum.from_json(data["weight_sum"])
        names = {k: l.canonical for k, l in state._kernels.items()}
        for key, name in names.items():
            state.sums[key] = ExactSum.from_json(data["sums"][name])
        if sl is not None:
            state.slices = _Groups.from_json(sl, names)
        if bk is not None:
            state.bucket_sums = _Groups.from_json(bk, names)
            state.bucket_sums.grow(state.buckets)
        if top is not None:
            state.top = TopRows.from_json(top)
        return state
