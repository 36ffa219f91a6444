"""Chunks spread over threads, each thread feeding its own exact states.

Every engine evaluates chunks through a :class:`ChunkPool`: the local
engine with a few threads over the whole stream, a Dask unit inline (one
thread: the cluster's workers are the parallelism).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue

import numpy as np

from ..core.state import EvalState
from ..errors import InvalidInput
from .chunks import Chunk, Sink

_IN_FLIGHT_BYTES = 64 << 20  # chunks of more than 16 MB: only one per thread in flight


class ChunkPool:
    """Chunks spread over worker threads, each feeding its own EvalStates (one per model).

    The states are merged at the end; sums are exact, so the result is the
    same bits as one state fed in order.  At most ``2 * threads`` chunks are
    in flight (bounded memory), and they are collected in submission order,
    so the first failing chunk in the stream is the one reported, and a sink
    sees per-row values in stream order.
    """

    def __init__(self, first: list[EvalState], threads: int, chunk: Chunk,
                 sink: Sink | None = None) -> None:
        self.states = [first] + [[st.empty_copy() for st in first] for _ in range(threads - 1)]
        self.free: SimpleQueue[list[EvalState]] = SimpleQueue()
        for sts in self.states:
            self.free.put(sts)
        self.sink = sink
        self.executor = ThreadPoolExecutor(threads) if threads > 1 else None
        self.pending: deque[tuple[Chunk, Future]] = deque()
        # fewer chunks in flight when they are large (--chunk-size with wide rows): memory by bytes
        size = chunk.y.nbytes + sum(p.nbytes for p in chunk.preds)
        self.limit = max(threads, min(2 * threads, _IN_FLIGHT_BYTES // max(1, size)))

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
