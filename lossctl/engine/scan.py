"""Reading work units into exact states: the code every engine runs.

A :class:`Scan` reads units (:mod:`.units`) one after another: record
batches of the needed columns -> arrays, with a joined file's columns
(:mod:`.joins`) -> chunks -> a :class:`~.pool.ChunkPool` of exact states.
It knows files, rows and columns (to name them in errors) but nothing about
where it runs: the local engine runs one scan over every file, the Dask
engine one scan per unit on a worker.  Rows are counted within each file,
from the unit's first row, so a unit read alone gives the same buckets,
top rows and error messages as the whole stream read in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..core import intervals
from ..core.losses import default_losses, parse_loss_list
from ..core.state import EvalState, SliceKeys
from ..core.top import RowInfo
from ..errors import InvalidInput, LossctlError, UsageError
from ..io import arrow
from ..io.inference import Tracker
from ..io.reader import Reader, open_reader
from ..io.sources import Source
from .chunks import Chunk, Sink, pieces, role_array, slice_codes
from .plan import (
    DEFAULT_CHUNK_ROWS,
    SAMPLE_ROWS,
    Binding,
    Columns,
    Request,
    chunk_rows_for,
    resolve_columns,
)
from .pool import ChunkPool
from .units import Unit

if TYPE_CHECKING:  # pyarrow.compute (imported by joins and slices) costs 40 ms of start-up
    from .joins import KeyJoin, RowJoin


class _Bound(Exception):
    """The first chunk bound the losses (a scan run only to learn them stops here)."""


class Scan:
    """Units read in order into one pool of exact states (one state per model)."""

    def __init__(self, req: Request, binding: Binding | None = None,
                 sample: tuple[np.ndarray, np.ndarray] | None = None,
                 join: KeyJoin | RowJoin | None = None, join_names: list[str] | None = None,
                 sink: Sink | None = None, threads: int | None = None,
                 columns: Columns | None = None, per_row: bool = False) -> None:
        self.req = req
        self.binding = binding
        self.sample = sample
        self.join = join
        self.join_names = join_names or []
        self.sink = sink
        self.per_row = per_row or sink is not None  # per-row output: means only
        self.threads = req.threads if threads is None else threads
        self.columns = columns
        self.pool: ChunkPool | None = None
        self.slice_keys: SliceKeys | None = None
        self.rows = 0  # rows read, all units
        self.bind_only = False
        self.kept_kinds: Tracker | None = None  # kinds of CSV's text --keep columns (--top)

    # -- reading --------------------------------------------------------------

    def read(self, unit: Unit, progress: Callable[[int], None] | None = None) -> int:
        """Read one unit into the pool; returns its rows.  ``progress(bytes read)``."""
        source = unit.source
        reader = open_reader(source, DEFAULT_CHUNK_ROWS, unit.first_row, unit.row_groups,
                             unit.byte_range)
        try:
            cols = resolve_columns(reader, self.req)
        except UsageError as e:  # which file: the first, or one whose columns differ
            raise UsageError(f"{source.name}: {e}") from None
        reader.batch_rows = self.req.rows_for(reader, cols.needed)
        if self.columns is None:
            self.columns = cols
            self._join_columns(cols)
        elif not cols.same_as(self.columns):
            raise UsageError(f"{source.name}: columns {cols.needed} differ from the first "
                             f"input's {self.columns.needed}")
        else:
            cols = self.columns  # same names; keeps the widths learnt from the first chunk
        if self.req.top and cols.keep and source.format == "csv" and self.kept_kinds is None:
            self.kept_kinds = Tracker(cols.keep)
        start = self.rows
        try:
            for _ in self._read(reader, cols, unit.first_row):
                if progress:
                    progress(reader.bytes_done())
            if self.pool:  # errors of this unit must be raised while we know the file
                self.pool.drain()
        except _Bound:
            return self.rows - start
        except InvalidInput as e:
            self._locate(e, source, cols)
            raise
        return self.rows - start

    def states(self) -> list[EvalState] | None:
        """Wait for every chunk; the merged states (None: no row was read)."""
        return self.pool.close() if self.pool else None

    def abort(self) -> None:
        if self.pool:
            self.pool.abort()

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

    def _locate(self, e: InvalidInput, source: Source, cols: Columns) -> None:
        """Name the file, data row and column of a bad value."""
        if e.source is None:
            e.source = source.name
            e.line = e.row + 1
        # a prediction error names its model's role: baseline or candidate in a comparison
        role = self.req.models[getattr(e, "model", 0)] if e.role == "prediction" else e.role
        if e.column is None:
            e.column = cols.name(role, e.index)
        elif not e.role:
            e.role = cols.role_of(e.column)
        j = self.req.join
        if j is not None and role == j.role:  # the value came from the joined file
            files = ", ".join(self.join_names)
            e.via = f"from {files} by key {j.key}" if j.key else f"from {files}, same row"
        e.args = (str(e),)

    def _read(self, reader: Reader, cols: Columns, first_row: int) -> Iterator[None]:
        name = reader.source.name
        file_row = first_row
        for batch in reader.batches(cols.needed, text=cols.text, categories=cols.by):
            for piece in pieces(batch, reader.batch_rows):
                if piece.num_rows == 0:
                    continue
                n = piece.num_rows
                try:
                    arrays, piece, kept_rows = self._arrays(piece, cols)
                except InvalidInput as e:  # a list of the wrong length: its row in the file
                    e.row += file_row
                    raise
                if arrays is not None:  # (None: a row join ran out; count the rest, then fail)
                    chunk = self._chunk(arrays, piece, cols, name, file_row, kept_rows)
                    if self.pool is None:
                        self.pool = ChunkPool(self._new_states(cols, chunk), self.threads, chunk,
                                              self.sink)
                        if self.bind_only:
                            raise _Bound
                    self._check_width(cols, "label", chunk.y, file_row)
                    for p in chunk.preds:
                        self._check_width(cols, "prediction", p, file_row)
                    self.pool.submit(chunk)
                self.rows += n
                file_row += n
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
        if self.kept_kinds is not None and info.kept is not None:
            self.kept_kinds.add(info.kept)
        preds = [arrays[m] for m in req.models]
        chunk = Chunk(arrays["label"], preds, arrays.get("weight"), file_row, info, seed=req.seed)
        if cols.by:
            if self.slice_keys is None:
                self.slice_keys = SliceKeys(cols.by, req.max_slices)
            chunk.slices = slice_codes(piece, cols.by, self.slice_keys)
        if req.ci and cols.ci_key:  # the hash runs in the worker thread (see ChunkPool._run)
            chunk.bucket_keys, chunk.bucket_key_name = piece.column(cols.ci_key), cols.ci_key
        elif req.ci:
            chunk.bucket_rows = file_row + offsets
        if len(preds) > 1 and req.nan == "skip":  # a row bad in any model is dropped for all
            bad = np.logical_or.reduce([~np.isfinite(p) if p.ndim == 1 else
                                        ~np.isfinite(p).all(axis=1) for p in preds])
            chunk.drops = [bad] * len(preds)
        return chunk

    def _check_width(self, cols: Columns, role: str, values: np.ndarray, file_row: int) -> None:
        """A list column must hold as many values in every file as in the first chunk."""
        width = 1 if values.ndim == 1 else values.shape[1]
        want = cols.label_width if role == "label" else cols.pred_width
        if width != want:
            raise InvalidInput(f"row holds {width} values, the stream started with {want}",
                               file_row, role, float(width))

    def _new_states(self, cols: Columns, chunk: Chunk) -> list[EvalState]:
        if self.binding is None:
            self.binding = bind(self.req, chunk.y, chunk.preds[self.req.chooser], self.sample,
                                self.per_row)
        b, req = self.binding, self.req
        cols.label_width, cols.pred_width = b.label_width, b.pred_width
        return [EvalState(b.losses, b.label_width, b.pred_width, weighted=cols.weight is not None,
                          nan=req.nan, slices=self.slice_keys if cols.by else None,
                          buckets=intervals.BUCKETS if req.ci else 0, seed=req.seed,
                          top=req.top, quantiles=req.quantiles, calibration=req.calibration)
                for _ in req.models]


def bind(req: Request, y: np.ndarray, p: np.ndarray,
         sample: tuple[np.ndarray, np.ndarray] | None, per_row: bool) -> Binding:
    """The losses and widths of a run, from its first chunk (and the sample, if no -m)."""
    label_width = 1 if y.ndim == 1 else y.shape[1]
    pred_width = 1 if p.ndim == 1 else p.shape[1]
    losses = parse_loss_list(req.losses, pred_width) if req.losses else \
        default_losses(*(sample or (y, p)))
    if per_row:  # per-row output of the automatic choice: its means only
        losses = [l for l in losses if l.definition.per_row]
    return Binding(losses, label_width, pred_width)


def sample(req: Request, sources: list[Source]) -> tuple[np.ndarray, np.ndarray] | None:
    """The first SAMPLE_ROWS rows of the stream, for the automatic loss choice.

    A fixed sample makes the choice independent of --chunk-size and of how
    the data is split into files.  Errors are left for the main pass.
    """
    if req.losses or req.join is not None:
        return None  # losses named; or the labels are elsewhere: the first chunk decides
    ys: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    n = 0
    limit = 0  # SAMPLE_ROWS, fewer for wide rows (from the first file: the same for any split)
    model = req.models[req.chooser]
    try:
        for source in sources:
            reader = open_reader(source)
            cols = resolve_columns(reader, req)
            needed = list(dict.fromkeys(cols.roles["label"] + cols.roles[model]))
            limit = limit or min(SAMPLE_ROWS, chunk_rows_for(reader.row_width(needed)))
            reader.batch_rows = limit
            for batch in reader.batches(needed):
                ys.append(role_array(batch, cols.roles["label"]))
                ps.append(role_array(batch, cols.roles[model]))
                n += batch.num_rows
                if n >= limit:
                    break
            if n >= limit:
                break
    except LossctlError:
        pass
    if not ys:
        return None
    return np.concatenate(ys)[:limit], np.concatenate(ps)[:limit]
