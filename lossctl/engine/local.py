"""The local engine: one pass over the inputs on this machine, chunks spread over threads.

sources -> record batches -> arrays (:mod:`.chunks`) -> kernels -> exact
states, one per model.  It knows files and columns (to name them in errors)
but nothing about the terminal or the report.  One pass serves ``eval`` (one
model), ``compare`` (two models on the same rows, same buckets) and ``rows``
(per-row values handed to a sink).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..core import intervals
from ..core.losses import Loss, default_losses, parse_loss_list
from ..core.state import EvalState, SliceKeys
from ..core.top import RowInfo
from ..errors import InputError, InvalidInput, LossctlError, UsageError
from ..io import arrow
from ..io.reader import Reader, open_reader
from ..io.sources import Source, expand_paths, open_source
from .chunks import Chunk, Sink, pieces, role_array, slice_codes
from .plan import SAMPLE_ROWS, Columns, Outcome, Progress, Request, resolve_columns

if TYPE_CHECKING:  # pyarrow.compute (imported by joins and slices) costs 40 ms of start-up
    from .joins import KeyJoin, RowJoin


class _Pool:
    """Chunks spread over worker threads, each feeding its own EvalStates (one per model).

    The states are merged at the end; sums are exact, so the result is the
    same bits as one state fed in order.  At most ``2 * threads`` chunks are
    in flight (bounded memory), and they are collected in submission order,
    so the first failing chunk in the stream is the one reported, and a sink
    sees per-row values in stream order.
    """

    def __init__(self, first: list[EvalState], threads: int, sink: Sink | None = None) -> None:
        self.states = [first] + [[st.empty_copy() for st in first] for _ in range(threads - 1)]
        self.free: SimpleQueue[list[EvalState]] = SimpleQueue()
        for sts in self.states:
            self.free.put(sts)
        self.sink = sink
        self.executor = ThreadPoolExecutor(threads) if threads > 1 else None
        self.pending: deque[tuple[Chunk, Future]] = deque()
        self.limit = 2 * threads

    def _run(self, chunk: Chunk) -> dict[str, np.ndarray] | None:
        sts = self.free.get()
        try:
            out = None
            buckets = chunk.buckets()
            drops = chunk.drops or [None] * len(sts)
            for model, (st, p, drop) in enumerate(zip(sts, chunk.preds, drops, strict=True)):
                try:
                    values = st.update(chunk.y, p, chunk.w, chunk.first_row, slices=chunk.slices,
                                       buckets=buckets, drop=drop, info=chunk.info,
                                       per_row=self.sink is not None)
                except InvalidInput as e:
                    e.model = model  # type: ignore[attr-defined]  # which model's state: its file
                    raise
                out = values if out is None else out
            return out
        except InvalidInput as e:
            if chunk.info.rows is not None:  # rows were dropped by a join: the row in the file
                e.row = chunk.first_row + int(chunk.info.rows[e.row - chunk.first_row])
            raise
        finally:
            self.free.put(sts)

    def submit(self, chunk: Chunk) -> None:
        if self.executor is None:
            self._done(chunk, self._run(chunk))
            return
        self.pending.append((chunk, self.executor.submit(self._run, chunk)))
        while len(self.pending) >= self.limit:
            self._collect()

    def _collect(self) -> None:
        chunk, fut = self.pending.popleft()
        self._done(chunk, fut.result())

    def _done(self, chunk: Chunk, values: dict[str, np.ndarray] | None) -> None:
        if self.sink is not None and values is not None:
            self.sink(chunk, values)

    def drain(self) -> None:
        while self.pending:
            self._collect()

    def abort(self) -> None:
        """Stop after an error: drop pending chunks (their errors come later in the stream)."""
        for _, f in self.pending:
            f.cancel()
        self.pending.clear()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def close(self) -> list[EvalState]:
        """Wait for every chunk and merge the workers' states, model by model."""
        self.drain()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        merged = self.states[0]
        for sts in self.states[1:]:
            for m, st in zip(merged, sts, strict=True):
                m.merge(st)
        return merged


class Evaluation:
    """One pass over the inputs of a request, feeding exact states."""

    def __init__(self, req: Request, progress: Progress | None = None,
                 sink: Sink | None = None) -> None:
        if req.chunk_rows < 1:
            raise UsageError("--chunk-size must be at least 1 row")
        if not 0 < req.confidence < 1:
            raise UsageError("--confidence must be between 0 and 1, e.g. 0.95")
        self.req = req
        self.progress = progress
        self.sink = sink
        if req.losses:  # catch unknown names and bad parameters before reading anything
            named = parse_loss_list(req.losses)
            if sink is not None:
                EvalState(named).check_per_row()
        self.sources = self._open(req.paths)
        self.join: KeyJoin | RowJoin | None = None
        self.pool: _Pool | None = None
        self.columns: Columns | None = None
        self.slice_keys: SliceKeys | None = None
        self.rows = 0  # rows handed out so far: the next chunk's first row
        self.chosen = not req.losses

    def _open(self, paths: list[str]) -> list[Source]:
        req = self.req
        return [open_source(p, req.input_format, req.delimiter, req.header)
                for p in expand_paths(paths)]

    def run(self) -> Outcome:
        self.sample = self._sample() if self.chosen else None
        self._open_join()
        try:
            self._read_all()
        except BaseException:
            if self.pool:
                self.pool.abort()
            raise
        states = self.pool.close() if self.pool else None
        join = None
        if self.join is not None and self.req.join is not None:  # a row count mismatch first
            join = self.join.finish() if self.req.join.key else \
                self.join.finish(self.rows, ", ".join(s.name for s in self.sources))
        if states is None or self.columns is None:
            names = ", ".join(s.name for s in self.sources)
            raise InputError(f"{names}: no data rows to evaluate (the input is empty)")
        inputs = [s.name for s in self.sources]
        if self.req.compare and self.req.join is not None:  # the candidate's file
            inputs += [s.name for s in self.join_sources]
        return Outcome(states, inputs, self.columns, self.chosen, join)

    def _open_join(self) -> None:
        j = self.req.join
        if j is None:
            return
        from .joins import KeyJoin, RowJoin

        if j.missing not in ("error", "skip"):
            raise UsageError("--missing must be 'error' or 'skip'")
        sources = self.join_sources = self._open(j.paths)
        if j.key:
            self.join = KeyJoin(sources, j.key, self.req.join_specs(), role_array,
                                self.req.chunk_rows)
        else:
            self.join = RowJoin(sources, self.req.join_specs(), role_array, self.req.chunk_rows)
        self.joined_rows = 0

    def _read_all(self) -> None:
        total = sum(s.size or 0 for s in self.sources)
        done = 0
        for source in self.sources:
            reader = open_reader(source, self.req.chunk_rows)
            cols = resolve_columns(reader, self.req)
            if self.columns is None:
                self.columns = cols
                self._join_columns(cols)
            elif not cols.same_as(self.columns):
                raise UsageError(f"{source.name}: columns {cols.needed} differ from the first "
                                 f"input's {self.columns.needed}")
            else:
                cols = self.columns  # same names; keeps the widths learnt from the first chunk
            start = self.rows
            try:
                for _ in self._read(reader, cols, start):
                    if self.progress:
                        self.progress(done + reader.bytes_done(), total)
                if self.pool:  # errors of this file must be raised while we know the file
                    self.pool.drain()
            except InvalidInput as e:
                self._locate(e, source, cols, start)
                raise
            done += source.size or 0

    def _join_columns(self, cols: Columns) -> None:
        """Columns that come from the joined file, named in reports and errors."""
        if self.join is None:
            return
        if self.req.join is not None and not self.req.join.key:
            self.join.open()
        if "label" in self.join.columns:
            cols.label = self.join.columns["label"]
        if "candidate" in self.join.columns:
            cols.pred = self.join.columns["candidate"]

    def _locate(self, e: InvalidInput, source: Source, cols: Columns, start: int) -> None:
        """Turn a stream row into the file, data row and column name."""
        if e.source is None:
            e.source = source.name
            e.row -= start
            e.line = e.row + 1
        # a prediction error names its model's role: baseline or candidate in a comparison
        role = self.req.models[getattr(e, "model", 0)] if e.role == "prediction" else e.role
        if e.column is None:
            e.column = cols.name(role, e.index)
        elif not e.role:
            e.role = cols.role_of(e.column)
        j = self.req.join
        if j is not None and role == j.role:  # the value came from the joined file
            files = ", ".join(s.name for s in self.join_sources)
            e.via = f"from {files} by key {j.key}" if j.key else f"from {files}, same row"
        e.args = (str(e),)

    def _sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The first SAMPLE_ROWS rows of the stream, for the automatic loss choice.

        A fixed sample makes the choice independent of --chunk-size and of how
        the data is split into files.  Errors are left for the main pass.
        """
        if self.req.join is not None:
            return None  # the labels are elsewhere: the first chunk decides
        ys: list[np.ndarray] = []
        ps: list[np.ndarray] = []
        n = 0
        model = self.req.models[-1]
        try:
            for source in self.sources:
                reader = open_reader(source, SAMPLE_ROWS)
                cols = resolve_columns(reader, self.req)
                for batch in reader.batches(list(dict.fromkeys(cols.roles["label"] +
                                                               cols.roles[model]))):
                    ys.append(role_array(batch, cols.roles["label"]))
                    ps.append(role_array(batch, cols.roles[model]))
                    n += batch.num_rows
                    if n >= SAMPLE_ROWS:
                        break
                if n >= SAMPLE_ROWS:
                    break
        except LossctlError:
            pass
        if not ys:
            return None
        return np.concatenate(ys)[:SAMPLE_ROWS], np.concatenate(ps)[:SAMPLE_ROWS]

    def _read(self, reader: Reader, cols: Columns, start: int) -> Iterator[None]:
        name = reader.source.name
        for batch in reader.batches(cols.needed, text=cols.text, categories=cols.by):
            for piece in pieces(batch, self.req.chunk_rows):
                if piece.num_rows == 0:
                    continue
                n, file_row = piece.num_rows, self.rows - start
                try:
                    arrays, piece, kept_rows = self._arrays(piece, cols)
                except InvalidInput as e:  # a list of the wrong length: its row in the stream
                    e.row += self.rows
                    raise
                if arrays is not None:  # (None: a row join ran out; count the rest, then fail)
                    chunk = self._chunk(arrays, piece, cols, name, file_row, kept_rows)
                    if self.pool is None:
                        self.pool = _Pool(self._new_states(cols, chunk), self.req.threads,
                                          self.sink)
                    self._check_width(cols, "label", chunk.y)
                    for p in chunk.preds:
                        self._check_width(cols, "prediction", p)
                    self.pool.submit(chunk)
                self.rows += n
            yield

    def _arrays(self, piece: pa.RecordBatch, cols: Columns
                ) -> tuple[dict[str, np.ndarray] | None, pa.RecordBatch, np.ndarray | None]:
        """Each role's values for a piece, with the joined file's roles attached.

        Returns the arrays, the piece (only matched rows, under --missing
        skip) and the offsets of the rows kept (None: all of them).
        """
        arrays = {role: role_array(piece, cs) for role, cs in cols.roles.items()}
        if self.join is None:
            return arrays, piece, None
        if not cols.key:
            other = self.join.take(piece.num_rows)
            if other is None:
                return None, piece, None
            arrays.update(other)
            return arrays, piece, None
        rows = self.join.lookup(piece.column(cols.key))
        missing = rows < 0
        kept_rows = None
        if missing.any():
            self.join.stats.unmatched_main += int(missing.sum())
            if self.req.join is not None and self.req.join.missing == "error":
                i = int(np.flatnonzero(missing)[0])
                from .joins import missing_key

                raise missing_key(i, cols.key, piece.column(cols.key)[i].as_py())
            kept_rows = np.flatnonzero(~missing)
            piece = piece.take(arrow.from_numpy(kept_rows.astype(np.int64)))
            arrays = {role: a[kept_rows] for role, a in arrays.items()}
            rows = rows[kept_rows]
        for role, values in self.join.values.items():
            arrays[role] = values[rows]
        return arrays, piece, kept_rows

    def _chunk(self, arrays: dict[str, np.ndarray], piece: pa.RecordBatch, cols: Columns,
               source: str, file_row: int, kept_rows: np.ndarray | None) -> Chunk:
        req = self.req
        offsets = np.arange(piece.num_rows) if kept_rows is None else kept_rows
        info = RowInfo(source, file_row, piece.select(cols.keep) if cols.keep else None, kept_rows)
        preds = [arrays[m] for m in req.models]
        chunk = Chunk(arrays["label"], preds, arrays.get("weight"), self.rows, info, seed=req.seed)
        if cols.by:
            if self.slice_keys is None:
                self.slice_keys = SliceKeys(cols.by, req.max_slices)
            chunk.slices = slice_codes(piece, cols.by, self.slice_keys)
        if req.ci:  # the hash runs in the worker thread (see _Pool._run)
            chunk.bucket_rows = file_row + offsets
        if len(preds) > 1 and req.nan == "skip":  # a row bad in either model is dropped for both
            bad = [~np.isfinite(p) if p.ndim == 1 else ~np.isfinite(p).all(axis=1) for p in preds]
            chunk.drops = [bad[1], bad[0]]
        return chunk

    def _check_width(self, cols: Columns, role: str, values: np.ndarray) -> None:
        """A list column must hold as many values in every file as in the first chunk."""
        width = 1 if values.ndim == 1 else values.shape[1]
        want = cols.label_width if role == "label" else cols.pred_width
        if width != want:
            raise InvalidInput(f"row holds {width} values, the stream started with {want}",
                               self.rows, role, float(width))

    def _new_states(self, cols: Columns, chunk: Chunk) -> list[EvalState]:
        y, p = chunk.y, chunk.preds[-1]
        label_width = 1 if y.ndim == 1 else y.shape[1]
        pred_width = 1 if p.ndim == 1 else p.shape[1]
        cols.label_width, cols.pred_width = label_width, pred_width
        if self.req.losses:
            losses: list[Loss] = parse_loss_list(self.req.losses, pred_width)
        else:
            losses = default_losses(*(self.sample or (y, p)))
        req = self.req
        if self.sink is not None:  # per-row output of the automatic choice: its means only
            losses = [l for l in losses if l.definition.per_row]
        return [EvalState(losses, label_width, pred_width, weighted=cols.weight is not None,
                          nan=req.nan, slices=self.slice_keys if cols.by else None,
                          buckets=intervals.BUCKETS if req.ci else 0, seed=req.seed,
                          top=req.top, quantiles=req.quantiles, calibration=req.calibration)
                for _ in req.models]




def run_local(req: Request, progress: Progress | None = None, sink: Sink | None = None) -> Outcome:
    """Evaluate a request over its files on this machine."""
    return Evaluation(req, progress, sink).run()
