"""The Dask engine: work units evaluated on a cluster, exact states merged by a tree reduction.

The client plans (:class:`~.planning.Plan`): files, units, the losses bound
from the stream's first chunk, a key join's lookup built once and broadcast
to the workers.  Each unit runs the same :class:`~.scan.Scan` as the local
engine, on one worker thread, and returns a :class:`UnitResult`: exact
states, or the unit's first error as a value.  Results are merged pairwise
in unit order (a tree of Dask tasks), so slices come in the order the local
engine sees them, and the error reported is the earliest in the stream,
whichever worker saw it first.  A worker that dies has its units run again
by Dask; each unit's result is one task's output, merged once.

Dask is an optional extra (``pip install 'lossctl[dask]'``), imported only here.
"""

from __future__ import annotations

import copy
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.state import EvalState
from ..errors import InputError, LossctlError, UsageError
from ..io.fingerprint import fingerprint
from ..io.inference import widest
from .chunks import rows_sink
from .plan import Binding, Columns, Outcome, Progress, Request
from .planning import Plan, joined_files, ship
from .scan import Scan
from .texts import type_text
from .units import Unit, count_csv_range

if TYPE_CHECKING:
    from ..io.sinks import RowParts
    from .joins import KeyJoin, RowJoin


@dataclass
class UnitResult:
    """What one unit (or a merged run of consecutive units) produced."""

    states: list[EvalState] | None = None
    error: LossctlError | None = None  # the earliest error of these units (then no states)
    rows: int = 0
    units: int = 1
    matched: tuple[np.ndarray, int] | None = None  # key join: label rows hit, and lookups that hit
    unmatched_main: int = 0
    parts: list[str] = field(default_factory=list)  # rows: the part files written
    part_rows: int = 0
    unit_rows: dict[int, int] = field(default_factory=dict)  # rows of each unit, for fingerprints
    kept_kinds: dict[str, str] | None = None  # kinds of CSV's text --keep columns (see Tracker)


def run_unit(req: Request, binding: Binding | None, columns: Columns | None, unit: Unit,
             join: KeyJoin | None, join_names: list[str], parts: RowParts | None) -> UnitResult:
    """Evaluate one unit (on a worker): its exact states, or its first error."""
    own = _own_join(req, join, unit)
    writer = parts.writer(unit.index) if parts is not None else None
    scan = Scan(req, binding=binding, join=own, join_names=join_names, threads=1,
                columns=copy.deepcopy(columns), sink=rows_sink(writer) if writer else None)
    try:
        rows = scan.read(unit)
        states = scan.states()
        if unit.rows is not None and rows != unit.rows:
            raise InputError(f"{unit.name}: {rows} rows in bytes {unit.byte_range}, the counting "
                             f"pass found {unit.rows} (please report this; --engine local reads "
                             f"the file whole)")
        if own is not None and req.join is not None and not req.join.key:
            own.finish(rows, unit.name)  # a row join: both files of the pair have as many rows
        if writer is not None:
            writer.close()
    except LossctlError as e:
        scan.abort()
        if writer is not None:
            writer.abort()
        return UnitResult(error=e)
    out = UnitResult(states, rows=rows, unit_rows={unit.index: rows},
                     kept_kinds=scan.kept_kinds.kinds if scan.kept_kinds else None)
    if own is not None and req.join is not None and req.join.key:
        out.matched = own.matched()
        out.unmatched_main = own.stats.unmatched_main
    if writer is not None and writer.rows:
        out.parts, out.part_rows = [writer.path.rsplit("/", 1)[-1]], writer.rows
    elif writer is not None:
        writer.abort()  # (an empty unit writes no part)
    return out


def _own_join(req: Request, join: KeyJoin | None, unit: Unit) -> KeyJoin | RowJoin | None:
    """This unit's view of the join: the shared lookup with counts of its own, or its pair."""
    if req.join is None:
        return None
    if join is not None:
        return join.fork()
    from .chunks import role_array
    from .joins import RowJoin

    assert unit.join is not None
    return RowJoin([unit.join], req.join_specs(), role_array, req.rows_for)


def merge_results(a: UnitResult, b: UnitResult) -> UnitResult:
    """Two consecutive runs of units as one (exact; the earlier error wins)."""
    if a.error is not None:
        return a
    if b.error is not None:
        return b
    if a.states is None:
        states = b.states
    elif b.states is None:
        states = a.states
    else:
        try:
            for x, y in zip(a.states, b.states, strict=True):
                x.merge(y)  # slices by key: b's new slices come after a's, as in the stream
        except LossctlError as e:  # more slices than --max-slices
            return UnitResult(error=e)
        states = a.states
    matched = a.matched if b.matched is None else b.matched if a.matched is None else \
        _add_counts(a.matched, b.matched)
    return UnitResult(states, None, a.rows + b.rows, a.units + b.units, matched,
                      a.unmatched_main + b.unmatched_main, a.parts + b.parts,
                      a.part_rows + b.part_rows, {**a.unit_rows, **b.unit_rows},
                      widest(a.kept_kinds, b.kept_kinds))


def _add_counts(a: tuple[np.ndarray, int], b: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    return np.union1d(a[0], b[0]), a[1] + b[1]


# --------------------------------------------------------------------------
# The client side
# --------------------------------------------------------------------------


def connect(req: Request) -> tuple[Any, Any]:
    """(client, what to close after the run): the caller's client, a scheduler, or a LocalCluster."""
    try:
        import dask
        import distributed
    except ImportError:
        raise UsageError("--engine dask needs Dask: pip install 'lossctl[dask]'") from None
    if req.client is not None:
        return req.client, None
    address = req.scheduler or dask.config.get("scheduler-address", None)
    if address:
        try:
            client = distributed.Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise UsageError(f"cannot reach the Dask scheduler at {address} "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return client, client
    import logging

    cluster = distributed.LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                                       processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster, set_as_default=False)
    return client, _Both(client, cluster)


@dataclass
class _Both:
    client: Any
    cluster: Any

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def run_dask(req: Request, progress: Progress | None = None, parts: RowParts | None = None
             ) -> Outcome:
    """Evaluate a request on a Dask cluster: the local engine's outcome, bit for bit."""
    plan = Plan(req, per_row=parts is not None)
    if any(s.path == "-" for s in plan.sources + plan.join_sources):
        raise UsageError("--engine dask reads files, not stdin (workers cannot read this "
                         "process's stdin)")
    client, owned = connect(req)
    try:
        return _Run(plan, client, progress, parts).run()
    finally:
        if owned is not None:
            owned.close()


class _Run:
    def __init__(self, plan: Plan, client: Any, progress: Progress | None,
                 parts: RowParts | None) -> None:
        self.plan, self.client, self.progress, self.parts = plan, client, progress, parts
        self.token = uuid.uuid4().hex[:12]
        self.futures: list[Any] = []

    def _count(self, jobs: list) -> list:
        """The CSV counting pass, one task per range, on the cluster."""
        futures = [self.client.submit(count_csv_range, *job, pure=False,
                                      key=f"lossctl-count-{self.token}-{i}")
                   for i, job in enumerate(jobs)]
        self.futures += futures
        return self.client.gather(futures)

    def run(self) -> Outcome:
        plan, client, req = self.plan, self.client, self.plan.req
        try:
            units = plan.units(self._count)
            join = plan.open_join() if req.join is not None and req.join.key else None
            first = plan.open_join([units[0].join]) if units and units[0].join is not None \
                else _own_join(req, join, units[0]) if units else None
            binding, columns = plan.bind(units, first)
            shared = client.scatter(join, broadcast=True, hash=False) if join is not None else None
            if self.parts is not None:
                self.parts.start()
            result = self._evaluate(units, binding, columns, shared)
        except BaseException:
            self._cancel()
            raise
        if result.error is not None:
            if self.parts is not None:
                self.parts.abort()
            raise result.error
        stats = None
        if join is not None:
            if result.matched is not None:
                join.add_matched(*result.matched)
            join.stats.unmatched_main = result.unmatched_main
            stats = join.finish()
        elif req.join is not None:  # row joins: both sides' rows, pair by pair, were equal
            stats = _row_join_stats(plan, result.rows)
        if result.states is None or columns is None:
            if self.parts is not None:
                self.parts.abort()
            names = ", ".join(s.name for s in plan.sources)
            raise InputError(f"{names}: no data rows to evaluate (the input is empty)")
        if self.parts is not None:
            self.parts.commit(result.parts, result.part_rows)
        type_text(result.states, plan.sources, result.kept_kinds)
        info = client.scheduler_info()
        return Outcome(result.states, plan.inputs, columns, plan.chosen, stats,
                       {"name": "dask", "scheduler": client.scheduler.address,
                        "tasks": len(units), "workers": len(info.get("workers", {}))},
                       _input_files(plan, units, result) + joined_files(plan, stats))

    def _evaluate(self, units: list[Unit], binding: Binding | None, columns: Columns | None,
                  join: Any) -> UnitResult:
        """Submit every unit and the merge tree; wait, counting units done."""
        from distributed import as_completed

        client, req = self.client, ship(self.plan.req)
        names = self.plan.join_names
        level = [client.submit(run_unit, req, binding, columns, u, join, names, self.parts,
                               pure=False, key=f"lossctl-unit-{self.token}-{u.index}")
                 for u in units]
        self.futures += level
        done = 0
        if self.progress:
            self.progress(0, len(units))
        tree, depth = list(level), 0
        while len(tree) > 1:  # pairwise, in unit order: (0 1) (2 3) ..., then again
            depth += 1
            merged = [client.submit(merge_results, tree[i], tree[i + 1], pure=False,
                                    key=f"lossctl-merge-{self.token}-{depth}-{i}")
                      if i + 1 < len(tree) else tree[i] for i in range(0, len(tree), 2)]
            self.futures += merged
            tree = merged
        for _ in as_completed(level, loop=client.loop):
            done += 1
            if self.progress:
                self.progress(done, len(units))
        return tree[0].result() if tree else UnitResult(units=0)

    def _cancel(self) -> None:
        """Ctrl-C or a failure: cancel everything submitted, drop partial output."""
        try:
            if self.futures:
                self.client.cancel(self.futures, force=True)
        finally:
            if self.parts is not None:
                self.parts.abort()


def _input_files(plan: Plan, units: list[Unit], result: UnitResult) -> list[dict]:
    """Fingerprints of the main files (read here: a few KiB each), with the rows of their units."""
    rows: dict[str, int] = {}
    for u in units:
        rows[u.name] = rows.get(u.name, 0) + result.unit_rows.get(u.index, 0)
    return [{**fingerprint(s), "role": "main", "rows": rows.get(s.name, 0)} for s in plan.sources]


def _row_join_stats(plan: Plan, rows: int) -> Any:
    from .joins import JoinStats

    return JoinStats(", ".join(plan.join_names), None, rows)
