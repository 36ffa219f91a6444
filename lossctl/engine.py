"""The engine: sources -> record batches -> arrays -> kernels -> exact state -> report.

It knows files and columns (to name them in errors) but nothing about the
terminal; the CLI renders what it returns.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue

import numpy as np
import pyarrow as pa

from .accumulators import EvalState, Result
from .errors import InputError, InvalidInput, LossctlError, UsageError
from .losses import Loss, default_losses, parse_loss_list
from .sources import Reader, Source, expand_paths, open_source, select_columns

DEFAULT_CHUNK_ROWS = 1 << 16
SAMPLE_ROWS = 10_000  # the automatic loss choice looks at this many first rows of the stream


@dataclass
class Request:
    """What to evaluate: inputs, columns, losses and reading options."""

    paths: list[str]
    label: str
    pred: str
    losses: list[str] = field(default_factory=list)
    weight: str | None = None
    nan: str = "error"
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    input_format: str | None = None
    delimiter: str | None = None
    header: bool = True
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))


@dataclass
class Columns:
    """The columns each role resolved to, and the width (K) each role has."""

    label: list[str]
    pred: list[str]
    weight: str | None
    label_width: int = 1  # K, known from the first chunk (a list column holds K values)
    pred_width: int = 1

    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys(self.label + self.pred + ([self.weight] if self.weight else [])))

    def name(self, role: str, index: int | None) -> str:
        cols = {"label": self.label, "prediction": self.pred, "weight": [self.weight or ""]}[role]
        k = index or 0
        if len(cols) == 1 and (self.label_width if role == "label" else self.pred_width) > 1:
            return f"{cols[0]}[{k}]"
        return cols[min(k, len(cols) - 1)]

    def role_of(self, column: str) -> str:
        if column in self.label:
            return "label"
        if column in self.pred:
            return "prediction"
        return "weight"


@dataclass
class Report:
    """The outcome of one evaluation, ready to render."""

    result: Result
    state: EvalState
    inputs: list[str]
    columns: Columns
    losses_chosen: bool  # True when lossctl picked the losses (no -m given)


Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def resolve_columns(reader: Reader, req: Request) -> Columns:
    """Apply the column specs to one file's columns."""
    avail = reader.columns
    label = select_columns(req.label, avail, "label column")
    pred = select_columns(req.pred, avail, "prediction column")
    weight = None
    if req.weight:
        w = select_columns(req.weight, avail, "weight column")
        if len(w) != 1:
            raise UsageError(f"the weight is one column; {req.weight!r} selects {len(w)}")
        weight = w[0]
    for name, t in reader.parquet_types.items():
        if name in label + pred + ([weight] if weight else []) and not _numeric(t):
            raise InputError(f"{reader.source.name}: column {name!r} is {t}, not numeric")
    return Columns(label, pred, weight)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)


def _numeric(t: pa.DataType) -> bool:
    if _is_list(t):
        return _numeric(t.value_type)
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
        or pa.types.is_decimal(t) or pa.types.is_null(t)


def _column_array(batch: pa.RecordBatch, name: str) -> np.ndarray:
    col = batch.column(name)
    if _is_list(col.type):
        return _list_to_2d(col, name)
    return _float64(col)


def _float64(col: pa.Array) -> np.ndarray:
    """A float64 NumPy view of an Arrow array, nulls as NaN.

    Zero-copy from the Arrow buffer: pyarrow's ``to_numpy`` imports pandas
    when it is installed, which costs half a second of start-up.
    """
    if col.type != pa.float64():
        col = col.cast(pa.float64())
    validity, data = col.buffers()
    values = np.frombuffer(data, dtype=np.float64, count=len(col), offset=col.offset * 8)
    if col.null_count:  # (pyarrow's fill_null would import pandas too)
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        valid = bits[col.offset:col.offset + len(col)].astype(bool)
        values = np.where(valid, values, np.nan)
    return values


def _list_to_2d(col: pa.Array, name: str) -> np.ndarray:
    n = len(col)
    if col.null_count:
        raise InputError(f"list column {name!r} holds a missing (null) list")
    if pa.types.is_fixed_size_list(col.type):
        k = col.type.list_size
    else:
        lengths = np.diff(col.offsets.to_numpy())
        k = int(lengths[0]) if n else 0
        if n and (lengths != k).any():
            i = int(np.flatnonzero(lengths != k)[0])
            raise InvalidInput(f"list has {int(lengths[i])} values, expected {k}", i, "", None,
                               column=name)
    values = _float64(col.flatten())
    return values.reshape(n, k)


def _role_array(batch: pa.RecordBatch, cols: list[str]) -> np.ndarray:
    """One role's values: (n,) for one column, (n, K) column-major for K columns.

    Column-major keeps each class contiguous, so the kernels' per-row
    reductions over K run as K contiguous elementwise passes (2x faster for
    small K than a row-major copy).
    """
    if len(cols) == 1:
        return _column_array(batch, cols[0])
    out = np.empty((batch.num_rows, len(cols)), order="F")
    for k, c in enumerate(cols):
        out[:, k] = _column_array(batch, c)
    return out


def _pieces(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


class _Pool:
    """Chunks spread over worker threads, each feeding its own EvalState.

    The states are merged at the end; sums are exact, so the result is the
    same bits as one state fed in order.  At most ``2 * threads`` chunks are
    in flight (bounded memory), and they are collected in submission order,
    so the first failing chunk in the stream is the one reported.
    """

    def __init__(self, first: EvalState, threads: int) -> None:
        self.states = [first] + [first.empty_copy() for _ in range(max(0, threads - 1))]
        self.free: SimpleQueue[EvalState] = SimpleQueue()
        for st in self.states:
            self.free.put(st)
        self.executor = ThreadPoolExecutor(threads) if threads > 1 else None
        self.pending: deque[Future] = deque()
        self.limit = 2 * threads

    def _run(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None, first_row: int) -> None:
        st = self.free.get()
        try:
            st.update(y, p, w, first_row=first_row)
        finally:
            self.free.put(st)

    def submit(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None, first_row: int) -> None:
        if self.executor is None:
            self._run(y, p, w, first_row)
            return
        self.pending.append(self.executor.submit(self._run, y, p, w, first_row))
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def abort(self) -> None:
        """Stop after an error: drop pending chunks (their errors come later in the stream)."""
        for f in self.pending:
            f.cancel()
        self.pending.clear()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def close(self) -> EvalState:
        """Wait for every chunk and merge the workers' states."""
        self.drain()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        merged = self.states[0]
        for st in self.states[1:]:
            merged.merge(st)
        return merged


class Evaluation:
    """One pass over the inputs of a request, feeding exact states."""

    def __init__(self, req: Request, progress: Progress | None = None) -> None:
        if req.chunk_rows < 1:
            raise UsageError("--chunk-size must be at least 1 row")
        self.req = req
        self.progress = progress
        if req.losses:  # catch unknown names and bad parameters before reading anything
            parse_loss_list(req.losses)
        paths = expand_paths(req.paths)
        self.sources: list[Source] = [
            open_source(p, req.input_format, req.delimiter, req.header) for p in paths
        ]
        self.pool: _Pool | None = None
        self.columns: Columns | None = None
        self.rows = 0  # rows handed out so far: the next chunk's first row
        self.chosen = not req.losses

    def run(self) -> Report:
        self.sample = self._sample() if self.chosen else None
        try:
            self._read_all()
        except BaseException:
            if self.pool:
                self.pool.abort()
            raise
        state = self.pool.close() if self.pool else None
        if state is None or self.columns is None:
            names = ", ".join(s.name for s in self.sources)
            raise InputError(f"{names}: no data rows to evaluate (the input is empty)")
        return Report(state.result(), state, [s.name for s in self.sources], self.columns,
                      self.chosen)

    def _read_all(self) -> None:
        total = sum(s.size or 0 for s in self.sources)
        done = 0
        for source in self.sources:
            reader = Reader(source, batch_rows=self.req.chunk_rows)
            cols = resolve_columns(reader, self.req)
            if self.columns is None:
                self.columns = cols
            elif (cols.label, cols.pred, cols.weight) != (self.columns.label, self.columns.pred,
                                                           self.columns.weight):
                raise UsageError(f"{source.name}: columns {cols.needed} differ from the first "
                                 f"input's {self.columns.needed}")
            else:
                cols = self.columns  # same names; keeps the widths learnt from the first chunk
            start = self.rows
            try:
                for _ in self._read(reader, cols):
                    if self.progress:
                        self.progress(done + reader.bytes_done(), total)
                if self.pool:  # errors of this file must be raised while we know the file
                    self.pool.drain()
            except InvalidInput as e:
                self._locate(e, source, cols, start)
                raise
            done += source.size or 0

    def _locate(self, e: InvalidInput, source: Source, cols: Columns, start: int) -> None:
        """Turn a stream row into the file, data row and column name."""
        if e.source is None:
            e.source = source.name
            e.row -= start
            e.line = e.row + 1
        if e.column is None:
            e.column = cols.name(e.role, e.index)
        elif not e.role:
            e.role = cols.role_of(e.column)
        e.args = (str(e),)

    def _sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The first SAMPLE_ROWS rows of the stream, for the automatic loss choice.

        A fixed sample makes the choice independent of --chunk-size and of how
        the data is split into files.  Errors are left for the main pass.
        """
        ys: list[np.ndarray] = []
        ps: list[np.ndarray] = []
        n = 0
        try:
            for source in self.sources:
                reader = Reader(source, batch_rows=SAMPLE_ROWS)
                cols = resolve_columns(reader, self.req)
                for batch in reader.batches(cols.needed):
                    ys.append(_role_array(batch, cols.label))
                    ps.append(_role_array(batch, cols.pred))
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

    def _read(self, reader: Reader, cols: Columns) -> Iterator[None]:
        for batch in reader.batches(cols.needed):
            for piece in _pieces(batch, self.req.chunk_rows):
                if piece.num_rows == 0:
                    continue
                try:
                    y = _role_array(piece, cols.label)
                    p = _role_array(piece, cols.pred)
                    w = _column_array(piece, cols.weight) if cols.weight else None
                except InvalidInput as e:  # a list of the wrong length: its row in the stream
                    e.row += self.rows
                    raise
                if self.pool is None:
                    self.pool = _Pool(self._new_state(cols, y, p), self.req.threads)
                self._check_width(cols, "label", y)
                self._check_width(cols, "prediction", p)
                self.pool.submit(y, p, w, self.rows)
                self.rows += piece.num_rows
            yield

    def _check_width(self, cols: Columns, role: str, values: np.ndarray) -> None:
        """A list column must hold as many values in every file as in the first chunk."""
        width = 1 if values.ndim == 1 else values.shape[1]
        want = cols.label_width if role == "label" else cols.pred_width
        if width != want:
            raise InvalidInput(f"row holds {width} values, the stream started with {want}",
                               self.rows, role, float(width))

    def _new_state(self, cols: Columns, y: np.ndarray, p: np.ndarray) -> EvalState:
        label_width = 1 if y.ndim == 1 else y.shape[1]
        pred_width = 1 if p.ndim == 1 else p.shape[1]
        cols.label_width, cols.pred_width = label_width, pred_width
        if self.req.losses:
            losses: list[Loss] = parse_loss_list(self.req.losses, pred_width)
        else:
            losses = default_losses(*(self.sample or (y, p)))
        return EvalState(losses, label_width, pred_width, weighted=cols.weight is not None,
                         nan=self.req.nan)


def evaluate_files(req: Request, progress: Progress | None = None) -> Report:
    """Evaluate a request over its files and return the report."""
    return Evaluation(req, progress).run()
