"""Exact, mergeable evaluation state: ``update(chunk)``, ``merge(other)``, ``result()``.

Each loss or metric declares the exact state it needs (sum terms, a
component; see :mod:`lossctl.core.definitions`) and :class:`EvalState`
composes them: one exact sum per distinct term and one state per distinct
component, for the whole stream and, when asked, per slice (``--by``), per
bootstrap bucket (``--ci``) and per bucket of each slice (per-slice
intervals).  A result does not change by a single bit however the rows are
cut into chunks and in whatever order partial states are merged; a value is
computed from exact totals and rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from .distributions import Distributions
from .exact import BLOCK, ExactSum
from .groups import Groups, total
from .losses import Loss, resolve
from .top import RowInfo, TopRows
from .validate import Chunk, check_columns, needs_class_index, prepare, rules
from .views import ExactView, ReplicateView, details_of, value_of

STATE_VERSION = 3
_KERNEL_ROWS = BLOCK  # rows * columns per kernel call: keeps temporaries cache-sized
SLICE_BUCKETS = 50  # bootstrap buckets per slice, for per-slice intervals (--ci with --by)
MAX_SLICE_INTERVALS = 2000  # beyond this many slices, no per-slice intervals (memory)


@dataclass
class Result:
    """Loss and metric values with the row count and weight sum behind them."""

    values: dict[str, float]
    rows: int
    rows_skipped: int
    weight_sum: float
    losses: list[Loss] = field(repr=False, default_factory=list)
    details: dict[str, dict] = field(repr=False, default_factory=dict)  # bins, error bounds

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_skipped": self.rows_skipped,
            "weight_sum": self.weight_sum,
            "losses": {l.key: {"value": self.values[l.key], "name": l.name, "params": l.params,
                               **self.details.get(l.key, {})}
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

    def retype(self, keys: Sequence[tuple]) -> None:
        """Give every slice its key in another type (CSV text typed at the end): codes keep their slices."""
        if len(keys) != len(self.keys) or len(set(keys)) != len(keys):
            raise ValueError("retyped slice keys must stay one per slice")
        self.keys = list(keys)
        self.index = {k: i for i, k in enumerate(self.keys)}


class EvalState:
    """Exact running state of several losses and metrics over one stream of rows.

    ``losses`` are names as on the command line (``"mse"``, ``"huber:delta=2"``)
    or bound :class:`~lossctl.core.losses.Loss` objects.  ``update`` takes one
    chunk: labels ``y`` (n,) or (n, K), predictions ``p`` (n,) or (n, K),
    optional weights ``w`` (n,).  Rows are counted from 0
    across updates so a bad value is reported by its row in the stream.  With
    ``nan="skip"`` a row with a missing, NaN or infinite label or prediction,
    or a missing weight, is dropped for every loss and counted.

    Optional extras, all exact and mergeable: per-slice state (``slices``,
    the codes of each row given to ``update``), per-bucket state for
    bootstrap intervals (``buckets`` > 0, each row's bucket given to
    ``update``; with slices too, per-slice buckets for per-slice intervals),
    and a running top-N of one loss (``top``).  For a visual report
    (:mod:`lossctl.core.distributions`): ``quantiles`` keeps the
    distribution of each mean's per-row values (and of a regression's
    residuals), ``calibration`` reliability bins of probabilities.
    """

    def __init__(self, losses: Sequence[Loss | str], label_width: int = 1, pred_width: int = 1,
                 weighted: bool = False, nan: str = "error", slices: SliceKeys | None = None,
                 buckets: int = 0, seed: int = 0, top: tuple[str, int] | None = None,
                 quantiles: bool = False, calibration: bool = False) -> None:
        if not losses:
            raise UsageError("no loss to compute")
        if nan not in ("error", "skip"):
            raise UsageError(f"nan policy must be 'error' or 'skip', not {nan!r}")
        self.losses = [resolve(l, pred_width) for l in losses]
        check_columns(self.losses, label_width, pred_width)
        self.label_width = label_width
        self.pred_width = pred_width
        self.weighted = weighted
        self.nan = nan
        self.rows_seen = 0
        self.rows = 0
        self.rows_skipped = 0
        self.weight_sum = ExactSum()
        self._terms: dict[tuple, tuple[Any, dict]] = {}  # key -> (Term, the params it binds)
        self._specs: dict[tuple, Any] = {}  # component key -> spec
        self._component_of: dict[str, tuple] = {}  # loss key -> its component's key
        for loss in self.losses:
            for key, term in loss.terms():
                self._terms.setdefault(key, (term, loss.params))
            spec = loss.component(label_width, pred_width)
            if spec is not None:
                self._specs.setdefault(spec.key, spec)
                self._component_of[loss.key] = spec.key
        self.rules = rules(self.losses)  # the domain checks of every loss, once each
        self.class_index = needs_class_index(self.losses, label_width)
        self.sums: dict[tuple, ExactSum] = {k: ExactSum() for k in self._terms}
        self.components = {k: spec.new(1, weighted) for k, spec in self._specs.items()}
        self._on_diff = any(t.on_diff for t, _ in self._terms.values())
        self.slice_keys = slices
        self.slices = self._groups(0, self._specs) if slices is not None else None
        self.buckets = buckets
        self.seed = seed
        with_intervals = {k: s for k, s in self._specs.items() if s.intervals}
        self.bucket_sums = self._groups(buckets, with_intervals) if buckets else None
        self.slice_buckets = self._groups(0, {}) if slices is not None and buckets else None
        self.top: TopRows | None = None
        if top is not None:
            key, n = top
            loss = self.loss(key)
            if not loss.definition.per_row:
                raise UsageError(f"--top {key}: {key} is a {loss.definition.kind} metric, not a "
                                 f"mean of per-row values; rank rows by a loss")
            self.top = TopRows(loss.key, n, loss.definition.higher_is_better)
        self.distributions = Distributions(self.losses, label_width, pred_width, weighted,
                                           self.class_index, quantiles, calibration)

    def _groups(self, groups: int, specs: dict[tuple, Any]) -> Groups:
        return Groups(list(self._terms), self.weighted, groups, specs)

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
        if (self.slices is not None) != (slices is not None):
            raise UsageError("pass slice codes exactly when the state has slices")
        if (self.bucket_sums is not None) != (buckets is not None):
            raise UsageError("pass buckets exactly when the state has buckets")
        if per_row:
            self.check_per_row()
        c = prepare(self, y, p, w, slices, buckets, drop,
                    self.rows_seen if first_row is None else first_row)
        self.rows_skipped += c.n - len(c.y)
        self.rows_seen += c.n
        values = self._accumulate(c, info, per_row)
        if not per_row:
            return None
        out = {}
        for loss in self.losses:
            v = loss.finish_rows(values[loss.rows_key])
            if c.rows is not None:
                full = np.full(c.n, np.nan)
                full[c.rows] = v
                v = full
            out[loss.key] = v
        return out

    def check_per_row(self) -> None:
        """Per-row output needs means: a ratio or curve metric has no per-row values."""
        for loss in self.losses:
            if not loss.definition.per_row:
                raise UsageError(f"{loss.key} is a {loss.definition.kind} metric: it has no "
                                 f"per-row values (per-row output takes means such as mse, bce)")

    def _grouped(self, c: Chunk) -> list[tuple[Groups, np.ndarray]]:
        """Each grouping the chunk's rows go to, with their codes."""
        out = []
        if self.slices is not None and c.slices is not None:
            if self.slice_keys is not None:
                self.slices.grow(len(self.slice_keys.keys))
            out.append((self.slices, c.slices))
        if self.bucket_sums is not None and c.buckets is not None:
            out.append((self.bucket_sums, c.buckets))
        if self.slice_buckets is not None and c.slices is not None and c.buckets is not None:
            if self.slice_keys is not None and len(self.slice_keys.keys) > MAX_SLICE_INTERVALS:
                self.slice_buckets = None  # too many slices: per-slice intervals are dropped
            else:
                codes = c.slices * SLICE_BUCKETS + c.buckets % SLICE_BUCKETS
                size = len(self.slice_keys.keys) if self.slice_keys is not None else 0
                self.slice_buckets.grow(size * SLICE_BUCKETS)
                out.append((self.slice_buckets, codes))
        return out

    def _accumulate(self, c: Chunk, info: RowInfo | None,
                    keep_values: bool) -> dict[tuple, np.ndarray]:
        y, p, w, n = c.y, c.p, c.w, len(c.y)
        groups = self._grouped(c)
        top_loss = self.loss(self.top.key) if self.top is not None else None
        top_key = top_loss.rows_key if top_loss is not None else None
        kept: dict[tuple, list[np.ndarray]] = {}
        step = max(1, _KERNEL_ROWS // max(self.pred_width, self.label_width))
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, n, step):
                ys, ps = y[start:start + step], p[start:start + step]
                ws = w[start:start + step] if w is not None else None
                d = ys - ps if self._on_diff else None
                if self.distributions.residuals:
                    self.distributions.add_residuals(-d if d is not None else ps - ys, ws)
                for key, (term, params) in self._terms.items():
                    bound = {k: params[k] for k in term.params}
                    if term.exact_pieces:
                        pieces, values = term.kernel(ys, ps, ws, **bound), None
                    else:
                        values = term.kernel(d, **bound) if term.on_diff else \
                            term.kernel(ys, ps, **bound)
                        pieces = None
                    self._add(key, values, pieces, ws, groups, start, step)
                    if key == top_key and info is not None and values is not None:
                        assert self.top is not None and top_loss is not None
                        idx = np.arange(start, start + len(values))
                        self.top.add(top_loss.finish_rows(values),
                                     idx if c.rows is None else c.rows[idx], info)
                    if keep_values and values is not None:
                        kept.setdefault(key, []).append(values)
                    if values is not None:
                        self.distributions.add_rows(key, values, ws)
            for comp in self.components.values():
                comp.add(y, p, w, None)
            self.distributions.add_chunk(y, p, w)
            for g, codes in groups:
                for comp in g.components.values():
                    comp.add(y, p, w, codes)
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

    def _add(self, key: tuple, values: np.ndarray | None, pieces: Sequence[np.ndarray] | None,
             w: np.ndarray | None, groups: list[tuple[Groups, np.ndarray]], start: int,
             step: int) -> None:
        """Add one term's values of a kernel step (or its exact pieces) to every sum."""
        if not groups:  # else the overall sums are the groups' sums (_overall)
            if pieces is not None:
                for piece in pieces:
                    self.sums[key].add(piece)
            elif w is not None:
                self.sums[key].add_weighted(values, w)
            else:
                self.sums[key].add(values)
        for g, codes in groups:
            cs = codes[start:start + step]
            if pieces is not None:
                for piece in pieces:
                    g.sums[key].add(piece, cs)
            elif w is not None:
                g.sums[key].add_weighted(values, w, cs)
            else:
                g.sums[key].add(values, cs)

    # -- merge / result -----------------------------------------------------

    def empty_copy(self) -> EvalState:
        """A new, empty state of the same definition (for parallel workers and shards).

        The copy shares this state's slice keys, so worker threads agree on codes.
        """
        top = (self.top.key, self.top.n) if self.top is not None else None
        d = self.distributions
        return EvalState(self.losses, self.label_width, self.pred_width, self.weighted, self.nan,
                         self.slice_keys, self.buckets, self.seed, top, d.quantiles, d.calibration)

    def signature(self) -> dict:
        """What two states must share to be merged."""
        return {"losses": [l.canonical for l in self.losses], "label_width": self.label_width,
                "pred_width": self.pred_width, "weighted": self.weighted, "nan": self.nan,
                "by": self.slice_keys.columns if self.slice_keys is not None else None,
                "buckets": self.buckets, "seed": self.seed,
                "top": [self.top.key, self.top.n] if self.top is not None else None,
                "quantiles": self.distributions.quantiles}

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
        for key, comp in self.components.items():
            comp.merge(other.components[key])
        self.distributions.merge(other.distributions)
        codes = None
        if self.slice_keys is not None and other.slice_keys is not None \
                and other.slice_keys is not self.slice_keys:
            codes = [self.slice_keys.code(k) for k in other.slice_keys.keys]
        if self.slices is not None and other.slices is not None:
            self.slices.merge(other.slices, codes)
        if self.bucket_sums is not None and other.bucket_sums is not None:
            self.bucket_sums.merge(other.bucket_sums)
        self._merge_slice_buckets(other, codes)
        if self.top is not None and other.top is not None:
            self.top.merge(other.top)
        return self

    def _merge_slice_buckets(self, other: EvalState, codes: list[int] | None) -> None:
        if self.slice_buckets is None or other.slice_buckets is None or \
                (self.slice_keys is not None and len(self.slice_keys.keys) > MAX_SLICE_INTERVALS):
            self.slice_buckets = None
            return
        per = np.arange(SLICE_BUCKETS)
        cells = None if codes is None else \
            (np.asarray(codes, dtype=np.int64)[:, None] * SLICE_BUCKETS + per).reshape(-1).tolist()
        self.slice_buckets.merge(other.slice_buckets, cells)

    def _overall(self) -> None:
        """Overall sums as the exact sums of a grouping every row went into (buckets or slices).

        With groups, rows are summed once, per group; adding the groups up
        is exact, so this is the same as summing the rows.
        """
        g = self.bucket_sums if self.bucket_sums is not None else self.slices
        if g is None:
            return
        self.weight_sum = total(g.weight_totals())
        self.sums = {k: total(s.totals()) for k, s in g.sums.items()}

    def empty_reason(self) -> str | None:
        """Why no value is defined (no rows, or weights summing to zero), or None."""
        self._overall()
        if self.rows == 0:
            extra = f" (all {self.rows_skipped} rows were skipped)" if self.rows_skipped else ""
            return f"no rows to evaluate{extra}"
        if self.weight_sum.scaled == 0 and not self.weight_sum.nonfinite:
            return f"the weights of all {self.rows} rows sum to zero"
        return None

    def result(self, allow_empty: bool = False) -> Result:
        """The value of every loss; raises InputError on empty or zero-weight input.

        With ``allow_empty`` (a shard saved for ``merge``: it merges as nothing)
        such input has undefined values instead, and says why.
        """
        empty = self.empty_reason()
        if empty and not allow_empty:
            raise InputError(empty)
        if empty:
            return Result({l.key: math.nan for l in self.losses}, self.rows, self.rows_skipped,
                          self.weight_sum.value, self.losses,
                          {l.key: {"undefined": empty} for l in self.losses})
        view = ExactView(self.sums, self.weight_sum, self.components)
        values = {l.key: value_of(l, view, self._component_of.get(l.key)) for l in self.losses}
        details = {l.key: details_of(l, view, self._component_of.get(l.key)) for l in self.losses}
        return Result(values, self.rows, self.rows_skipped, self.weight_sum.value, self.losses,
                      {k: v for k, v in details.items() if v})

    def slice_results(self) -> list[dict]:
        """One entry per slice: its key, rows, weight sum and values (NaN at zero weight)."""
        if self.slices is None or self.slice_keys is None:
            return []
        g = self.slices
        g.grow(len(self.slice_keys.keys))
        weights = g.weight_totals()
        totals = {k: s.totals() for k, s in g.sums.items()}
        out = []
        for i, key in enumerate(self.slice_keys.keys):
            w = weights[i]
            if w.scaled == 0 and not w.nonfinite:
                values = {l.key: math.nan for l in self.losses}
            else:
                view = ExactView({k: t[i] for k, t in totals.items()}, w, g.components, i)
                values = {l.key: value_of(l, view, self._component_of.get(l.key))
                          for l in self.losses}
            out.append({"key": dict(zip(self.slice_keys.columns, key, strict=True)),
                        "rows": int(g.rows[i]), "weight_sum": w.value, "values": values})
        return out

    # -- bootstrap replicates ------------------------------------------------

    def interval_support(self, loss: Loss) -> bool:
        """Whether ``--ci`` gives this loss an interval (score histograms keep no buckets)."""
        key = self._component_of.get(loss.key)
        return key is None or self._specs[key].intervals

    def interval_note(self, loss: Loss) -> str | None:
        """Why ``--ci`` gives this loss no interval (None: it gets one)."""
        if self.interval_support(loss):
            return None
        return self._specs[self._component_of[loss.key]].no_intervals

    def replicates(self, counts: np.ndarray) -> dict[str, np.ndarray | None]:
        """Every loss's value in each bootstrap replicate (``counts``: replicates x buckets)."""
        if self.bucket_sums is None:
            raise UsageError("this state keeps no buckets (evaluate with --ci)")
        view = ReplicateView(self.bucket_sums, counts)
        return {l.key: value_of(l, view, self._component_of.get(l.key))
                if self.interval_support(l) else None for l in self.losses}

    def bucket_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-bucket sums of each mean's per-row values (by loss key) and per-bucket weights."""
        if self.bucket_sums is None:
            raise UsageError("this state keeps no buckets (evaluate with --ci)")
        g = self.bucket_sums
        weights = np.array([t.value for t in g.weight_totals()])
        sums = {k: np.array([t.value for t in s.totals()]) for k, s in g.sums.items()}
        return {l.key: sums[l.rows_key] for l in self.losses if l.definition.per_row}, weights

    def slice_replicates(self, counts: np.ndarray) -> list[dict[str, np.ndarray | None]] | None:
        """Per slice, every loss's replicates from the slice's buckets (None: not kept)."""
        if self.slice_buckets is None or self.slice_keys is None:
            return None
        g = self.slice_buckets
        g.grow(len(self.slice_keys.keys) * SLICE_BUCKETS)
        out = []
        totals: dict = {}  # every bucket's totals, read once for all slices
        for i in range(len(self.slice_keys.keys)):
            view = ReplicateView(g, counts, i * SLICE_BUCKETS, totals)
            out.append({l.key: value_of(l, view, None)
                        if self._component_of.get(l.key) is None else None for l in self.losses})
        return out

    # -- serialisation ------------------------------------------------------

    def _names(self) -> dict[tuple, str]:
        names = {k: term.label(params) for k, (term, params) in self._terms.items()}
        names.update({k: "component:" + ":".join(map(str, k)) for k in self._specs})
        return names

    def to_json(self) -> dict:
        """A JSON-able, lossless snapshot of the state."""
        names = self._names()
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
            "components": {names[k]: c.to_json() for k, c in self.components.items()},
            "slices": None if self.slices is None or self.slice_keys is None else {
                "by": self.slice_keys.columns, "limit": self.slice_keys.limit,
                "keys": [list(k) for k in self.slice_keys.keys], **self.slices.to_json(names)},
            "buckets": None if self.bucket_sums is None else {
                "count": self.buckets, "seed": self.seed, **self.bucket_sums.to_json(names)},
            "slice_buckets": None if self.slice_buckets is None else {
                "per_slice": SLICE_BUCKETS, **self.slice_buckets.to_json(names)},
            "top": self.top.to_json() if self.top is not None else None,
            **self.distributions.to_json(names),
        }

    @classmethod
    def from_json(cls, data: dict) -> EvalState:
        """The state of :meth:`to_json`, or of a state file that ``eval --emit-state`` wrote."""
        from .components import load_component

        if data.get("kind") == "lossctl-state" and isinstance(data.get("state"), dict):
            data = data["state"]
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
                    (top["loss"], top["n"]) if top else None,
                    data.get("sketches") is not None, data.get("calibration") is not None)
        state.rows_seen = data["rows_seen"]
        state.rows = data["rows"]
        state.rows_skipped = data["rows_skipped"]
        state.weight_sum = ExactSum.from_json(data["weight_sum"])
        names = state._names()
        for key in state._terms:
            state.sums[key] = ExactSum.from_json(data["sums"][names[key]])
        for key, spec in state._specs.items():
            state.components[key] = load_component(spec, data["components"][names[key]],
                                                   state.weighted)
        with_intervals = {k: s for k, s in state._specs.items() if s.intervals}
        if sl is not None:
            state.slices = Groups.from_json(sl, list(state._terms), names, state._specs)
        if bk is not None:
            state.bucket_sums = Groups.from_json(bk, list(state._terms), names, with_intervals)
            state.bucket_sums.grow(state.buckets)
        sb = data.get("slice_buckets")
        state.slice_buckets = Groups.from_json(sb, list(state._terms), names, {}) if sb is not None else None
        if top is not None:
            state.top = TopRows.from_json(top)
        state.distributions.load(data, names)
        return state
