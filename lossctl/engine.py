"""The engine: sources -> record batches -> arrays -> kernels -> exact states -> report.

It knows files and columns (to name them in errors) but nothing about the
terminal; the CLI renders what it returns.  One pass serves every command:
``eval`` (one model), ``compare`` (two models on the same rows, same
buckets), ``rows`` (per-row values handed to a sink), and ``merge`` (states
from earlier passes).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import arrow, intervals
from .accumulators import EvalState, Result, RowInfo, SliceKeys
from .errors import InputError, InvalidInput, LossctlError, UsageError
from .losses import Loss, default_losses, parse_loss_list
from .sources import Reader, Source, expand_paths, open_source, select_columns

if TYPE_CHECKING:  # pyarrow.compute (imported by joins and slices) costs 40 ms of start-up
    from .joins import JoinStats, KeyJoin, RowJoin

DEFAULT_CHUNK_ROWS = 1 << 16
SAMPLE_ROWS = 10_000  # the automatic loss choice looks at this many first rows of the stream
DEFAULT_MAX_SLICES = 10_000


@dataclass
class JoinRequest:
    """A second file joined to the main one: by ``key``, or row by row."""

    paths: list[str]
    role: str  # "label" (eval --labels) or "candidate" (compare OLD NEW)
    key: str | None = None
    missing: str = "error"  # main rows without a match: "error" or "skip"


@dataclass
class Request:
    """What to evaluate: inputs, columns, losses and reading options.

    A comparison has two models: ``baseline_pred`` (the baseline's columns in
    the main file) and ``pred`` (the candidate's), or, joined from a second
    file, ``pred`` in both.
    """

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
    by: str | None = None
    max_slices: int = DEFAULT_MAX_SLICES
    ci: bool = False
    seed: int = 0
    confidence: float = 0.95
    top: tuple[str, int] | None = None
    keep: str | None = None
    baseline_pred: str | None = None
    join: JoinRequest | None = None

    @property
    def compare(self) -> bool:
        return self.baseline_pred is not None or (self.join is not None and
                                                  self.join.role == "candidate")

    @property
    def models(self) -> list[str]:
        """The prediction roles, in order."""
        return ["baseline", "candidate"] if self.compare else ["prediction"]

    def main_specs(self) -> dict[str, str]:
        """Column spec of each role read from the main files."""
        specs: dict[str, str] = {}
        if self.join is None or self.join.role != "label":
            specs["label"] = self.label
        if not self.compare:
            specs["prediction"] = self.pred
        elif self.join is None or self.join.role != "candidate":
            specs["baseline"] = self.baseline_pred or self.pred
            specs["candidate"] = self.pred
        else:
            specs["baseline"] = self.baseline_pred or self.pred
        return specs

    def join_specs(self) -> dict[str, str]:
        if self.join is None:
            return {}
        return {"label": self.label} if self.join.role == "label" else {"candidate": self.pred}


@dataclass
class Columns:
    """The columns each role resolved to, and the width (K) each role has."""

    label: list[str]
    pred: list[str]
    weight: str | None
    label_width: int = 1  # K, known from the first chunk (a list column holds K values)
    pred_width: int = 1
    baseline: list[str] | None = None
    by: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    key: str | None = None
    roles: dict[str, list[str]] = field(default_factory=dict)  # main-file roles -> columns

    @property
    def needed(self) -> list[str]:
        extra = self.by + self.keep + ([self.key] if self.key else [])
        cols = [c for cs in self.roles.values() for c in cs] + extra
        return list(dict.fromkeys(cols))

    @property
    def text(self) -> list[str]:
        """Columns read as they are (strings in CSV), not as numbers (slice keys aside)."""
        return [c for c in dict.fromkeys(self.keep + ([self.key] if self.key else []))
                if c not in self.by]

    def name(self, role: str, index: int | None) -> str:
        cols = self.roles.get(role) or {"label": self.label, "weight": [self.weight or ""],
                                        "key": [self.key or ""]}.get(role, self.pred)
        k = index or 0
        if len(cols) == 1 and (self.label_width if role == "label" else self.pred_width) > 1:
            return f"{cols[0]}[{k}]"
        return cols[min(k, len(cols) - 1)]

    def role_of(self, column: str) -> str:
        for role, cols in self.roles.items():
            if column in cols:
                return role
        return "weight"

    def same_as(self, other: Columns) -> bool:
        return self.roles == other.roles and (self.by, self.keep, self.key) == \
            (other.by, other.keep, other.key)


@dataclass
class Report:
    """The outcome of one evaluation, ready to render."""

    result: Result
    state: EvalState
    inputs: list[str]
    columns: Columns
    losses_chosen: bool  # True when lossctl picked the losses (no -m given)
    intervals: dict[str, tuple[float, float]] | None = None
    confidence: float = 0.95
    baseline: Result | None = None  # a comparison's baseline (result is the candidate's)
    baseline_state: EvalState | None = None
    differences: dict[str, dict[str, Any]] | None = None
    join: JoinStats | None = None


Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def resolve_columns(reader: Reader, req: Request, specs: dict[str, str] | None = None) -> Columns:
    """Apply the column specs to one file's columns."""
    avail = reader.columns
    specs = req.main_specs() if specs is None else specs
    roles = {role: select_columns(spec, avail, f"{role} column") for role, spec in specs.items()}
    weight = None
    if req.weight:
        w = select_columns(req.weight, avail, "weight column")
        if len(w) != 1:
            raise UsageError(f"the weight is one column; {req.weight!r} selects {len(w)}")
        weight = w[0]
        roles["weight"] = w
    numeric = [c for cs in roles.values() for c in cs]
    for name, t in reader.parquet_types.items():
        if name in numeric and not _numeric(t):
            raise InputError(f"{reader.source.name}: column {name!r} is {t}, not numeric")
    by = select_columns(req.by, avail, "--by column") if req.by else []
    keep = select_columns(req.keep, avail, "--keep column") if req.keep else []
    key = None
    if req.join is not None and req.join.key:
        key = select_columns(req.join.key, avail, "--key column")
        if len(key) != 1:
            raise UsageError(f"the key is one column; {req.join.key!r} selects {len(key)}")
        key = key[0]
    model = "candidate" if req.compare else "prediction"
    pred = roles.get(model) or roles.get("baseline", [])
    label = roles.get("label", [])
    return Columns(label, pred, weight, baseline=roles.get("baseline"), by=by, keep=keep,
                   key=key, roles=roles)


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


@dataclass
class Chunk:
    """Rows ready for the states: arrays of every role plus where the rows come from."""

    y: np.ndarray
    preds: list[np.ndarray]  # one per model
    w: np.ndarray | None
    first_row: int  # stream row of the chunk's first row (before any rows were dropped)
    info: RowInfo  # file, first data row in it, kept columns, offsets of the rows kept
    slices: np.ndarray | None = None
    bucket_rows: np.ndarray | None = None  # rows in the file to hash into buckets (--ci)
    seed: int = 0
    drops: list[np.ndarray | None] = field(default_factory=list)

    def buckets(self) -> np.ndarray | None:
        if self.bucket_rows is None:
            return None
        return intervals.bucket_ids(self.info.source, self.bucket_rows, self.seed)


Sink = Callable[[Chunk, dict[str, np.ndarray]], None]  # per-row values of a chunk, in order


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


def _slice_codes(batch: pa.RecordBatch, columns: list[str], keys: SliceKeys) -> np.ndarray:
    """Each row's slice code: its tuple of --by values, numbered in order of first appearance."""
    import pyarrow.compute as pc

    local: list[np.ndarray] = []
    values: list[list] = []
    for c in columns:
        col = batch.column(c)
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col)
        codes, vals = _dictionary_codes(col)
        local.append(codes)
        values.append(vals)
    if len(columns) == 1:
        used = np.flatnonzero(np.bincount(local[0], minlength=len(values[0])))
        lookup = np.zeros(len(values[0]), dtype=np.int64)
        lookup[used] = [keys.code((values[0][i],)) for i in used.tolist()]
        return lookup[local[0]]
    combined = np.zeros(batch.num_rows, dtype=np.int64)
    for codes, vals in zip(local, values, strict=True):
        combined = combined * len(vals) + codes
        if combined.size and combined.max() > (1 << 40):  # keep the product small
            _, combined = np.unique(combined, return_inverse=True)
    uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    appearance = np.argsort(first)  # register new slices in the order their rows come
    lookup = np.empty(len(uniq), dtype=np.int64)
    for u in appearance.tolist():
        row = int(first[u])
        lookup[u] = keys.code(tuple(vals[codes[row]] for codes, vals in zip(local, values,
                                                                            strict=True)))
    return lookup[inverse.reshape(-1)]


def _dictionary_codes(col: pa.DictionaryArray) -> tuple[np.ndarray, list]:
    """Indices of a dictionary array as int64 (a null is one more value, None) and its values."""
    values = [_slice_value(v) for v in col.dictionary.to_pylist()]
    idx = col.indices
    codes = np.frombuffer(idx.buffers()[1], dtype=np.dtype(f"int{idx.type.bit_width}"), count=len(idx),
                          offset=idx.offset * idx.type.bit_width // 8).astype(np.int64)
    if col.null_count:
        bits = np.unpackbits(np.frombuffer(idx.buffers()[0], dtype=np.uint8), bitorder="little")
        valid = bits[idx.offset:idx.offset + len(idx)].astype(bool)
        codes = np.where(valid, codes, len(values))
        values.append(None)
    return codes, values


def _slice_value(v: Any) -> Any:
    """A --by value as JSON can hold it (NaN is not equal to itself, so it becomes "nan")."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return "nan" if v != v else v
    return str(v)


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
            parse_loss_list(req.losses)
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

    def run(self) -> Report:
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
        return make_report(states, inputs, self.columns, self.chosen, self.req.confidence, join)

    def _open_join(self) -> None:
        j = self.req.join
        if j is None:
            return
        from .joins import KeyJoin, RowJoin

        if j.missing not in ("error", "skip"):
            raise UsageError("--missing must be 'error' or 'skip'")
        sources = self.join_sources = self._open(j.paths)
        if j.key:
            self.join = KeyJoin(sources, j.key, self.req.join_specs(), _role_array,
                                self.req.chunk_rows)
        else:
            self.join = RowJoin(sources, self.req.join_specs(), _role_array, self.req.chunk_rows)
        self.joined_rows = 0

    def _read_all(self) -> None:
        total = sum(s.size or 0 for s in self.sources)
        done = 0
        for source in self.sources:
            reader = Reader(source, batch_rows=self.req.chunk_rows)
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
                reader = Reader(source, batch_rows=SAMPLE_ROWS)
                cols = resolve_columns(reader, self.req)
                for batch in reader.batches(list(dict.fromkeys(cols.roles["label"] +
                                                               cols.roles[model]))):
                    ys.append(_role_array(batch, cols.roles["label"]))
                    ps.append(_role_array(batch, cols.roles[model]))
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
            for piece in _pieces(batch, self.req.chunk_rows):
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
        arrays = {role: _role_array(piece, cs) for role, cs in cols.roles.items()}
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
            chunk.slices = _slice_codes(piece, cols.by, self.slice_keys)
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
        return [EvalState(losses, label_width, pred_width, weighted=cols.weight is not None,
                          nan=req.nan, slices=self.slice_keys if cols.by else None,
                          buckets=intervals.BUCKETS if req.ci else 0, seed=req.seed,
                          top=req.top)
                for _ in req.models]


def make_report(states: list[EvalState], inputs: list[str], columns: Columns, chosen: bool,
                confidence: float = 0.95, join: JoinStats | None = None) -> Report:
    """Results, and intervals where the states keep buckets, of one model or a comparison."""
    state = states[-1]
    report = Report(state.result(), state, inputs, columns, chosen, confidence=confidence,
                    join=join)
    counts = intervals.poisson_counts(state.buckets, state.seed) if state.buckets else None
    if counts is not None:
        report.intervals = intervals.loss_intervals(state, counts, confidence)
    if len(states) == 2:
        base = states[0]
        report.baseline, report.baseline_state = base.result(), base
        report.differences = intervals.differences(base, state, counts, confidence)
    return report


def evaluate_files(req: Request, progress: Progress | None = None, sink: Sink | None = None
                   ) -> Report:
    """Evaluate a request over its files and return the report."""
    return Evaluation(req, progress, sink).run()
