"""CSV input: newline-aligned blocks, cut on one thread and parsed on a pool of threads.

The reading thread cuts the bytes into blocks that end on a record boundary
(quote parity counted with SSE2); each block is parsed by the C fast path
(:mod:`lossctl.io.fastcsv`) when it holds only plain numbers in the wanted
columns, else by pyarrow's CSV reader, whose values and messages are the
reference.
"""

from __future__ import annotations

import csv
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError, InvalidInput
from . import arrow, fastcsv
from .reader import Reader, cannot_read, short
from .sources import Source

_PEEK = 1 << 16
CSV_BLOCK = 4 << 20  # bytes per CSV block parsed on one thread


@dataclass
class _Block:
    """``data[begin:end]``: whole CSV records, parsed on one thread."""

    data: bytearray
    begin: int
    end: int

    @property
    def quoted(self) -> bool:
        return self.data.find(b'"', self.begin, self.end) >= 0

    def view(self) -> memoryview:
        return memoryview(self.data)[self.begin:self.end]

    def buffer(self) -> pa.Buffer:
        return pa.py_buffer(self.view())


class CsvReader(Reader):
    """Streams record batches of selected columns from a CSV or TSV file (plain or compressed)."""

    def __init__(self, source: Source, batch_rows: int = 1 << 16, **part: Any) -> None:
        self._spare: list[bytearray] = []  # block buffers to reuse
        super().__init__(source, batch_rows, **part)
        # the C fast path maps columns by name: not for a header that repeats one
        self._fast_columns = len(set(self.columns)) == len(self.columns)

    def _columns(self) -> list[str]:
        s = self.source
        try:
            with self._raw() as f:
                head = f.read(_PEEK)
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(s, e) from None
        if not head.strip():
            raise InputError(f"{s.name}: empty input")
        if b"\0" in head:
            raise InputError(f"{s.name}: binary data, not CSV text "
                             "(a Parquet file? try --input-format parquet)")
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
        first = text.splitlines()[0] if text.splitlines() else ""
        fields = next(csv.reader([first], delimiter=s.delimiter), [])
        if not s.header:
            return [str(i + 1) for i in range(len(fields))]
        return [f.strip() for f in fields]

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        yield from self._csv_batches(columns, set(text) | set(categories), set(categories))

    def _csv_options(self, columns: list[str], types: dict[str, pa.DataType], block: _Block
                     ) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
        # one pyarrow block per block of ours: it already ends on a record boundary
        read = pacsv.ReadOptions(column_names=self.columns, use_threads=False,
                                 block_size=max(1 << 20, block.end - block.begin + 1))
        parse = pacsv.ParseOptions(delimiter=self.source.delimiter,
                                   newlines_in_values=block.quoted)
        convert = pacsv.ConvertOptions(include_columns=columns,
                                       column_types=types,
                                       strings_can_be_null=True)
        return read, parse, convert

    def _blocks(self) -> Iterator[_Block]:
        """The data (header skipped) in blocks that end on a record boundary.

        Each block is read straight into a buffer after the carried partial
        record of the block before: one copy per byte, and the parser threads
        get zero-copy views.  Buffers come back (``_spare``) once their block
        is parsed (parsed values never point into them), so the pages are
        not cleared and faulted in again for every block.
        """
        f = self._raw(part=True)
        try:
            carry = b""
            # a later part of the file (a work unit) starts on a record, after the header
            header = self.source.header and not (self.byte_range and self.byte_range[0] > 0)
            first = True
            while True:
                need = len(carry) + CSV_BLOCK
                buf = self._spare.pop() if self._spare else bytearray()
                if len(buf) < need:  # (room for the usual carry: a buffer fits again)
                    buf = bytearray(need + (1 << 16))
                buf[:len(carry)] = carry
                got = f.readinto(memoryview(buf)[len(carry):need])
                size = len(carry) + got
                begin = 0
                if first and buf.startswith(b"\xef\xbb\xbf"):
                    begin = 3  # a UTF-8 byte-order mark
                if header:
                    cut = _first_record_end(buf, begin, size)
                    if cut < 0 and got:
                        carry = bytes(buf[:size])
                        continue
                    begin, header = (cut + 1 if cut >= 0 else size), False
                first = False
                if not got:
                    if buf[begin:size].strip():
                        yield _Block(buf, begin, size)
                    return
                cut = _record_end(buf, begin, size)
                if cut < 0:
                    carry = bytes(buf[begin:size])
                    continue
                carry = bytes(buf[cut + 1:size])
                yield _Block(buf, begin, cut + 1)
        finally:
            f.close()

    def _parse_block(self, block: _Block, columns: list[str], text: set[str],
                     categories: set[str]) -> pa.Table:
        if not text and self._fast_columns:
            arrays = fastcsv.parse_floats(block.view(), self.source.delimiter, self.columns, columns)
            if arrays is not None:
                return pa.Table.from_arrays([arrow.from_numpy(a) for a in arrays.values()],
                                            names=list(arrays))
        types = {c: (_CATEGORY if c in categories else pa.string()) if c in text else pa.float64()
                 for c in columns}
        read, parse, convert = self._csv_options(columns, types, block)
        return pacsv.read_csv(block.buffer(), read_options=read, parse_options=parse,
                              convert_options=convert)

    def _csv_batches(self, columns: list[str], text: set[str], categories: set[str]
                     ) -> Iterator[pa.RecordBatch]:
        threads = min(4, os.cpu_count() or 1)
        pending: deque[tuple[_Block, Future]] = deque()
        rows = self.first_row  # rows before this part of the file (a work unit)
        with ThreadPoolExecutor(threads) as pool:
            blocks = self._blocks()
            try:
                for block in blocks:
                    pending.append((block, pool.submit(self._parse_block, block, columns, text, categories)))
                    while len(pending) > threads + 1:
                        rows = yield from self._collect(pending, [c for c in columns if c not in text], rows)
                while pending:
                    rows = yield from self._collect(pending, [c for c in columns if c not in text], rows)
            except (pa.ArrowException, OSError) as e:
                if isinstance(e, OSError) and self.source.remote:  # storage: missing, denied, down
                    raise cannot_read(self.source, e) from None
                raise InputError(f"{self.source.name}: cannot read as CSV: {short(e)}") from None
            finally:
                for _, fut in pending:
                    fut.cancel()
                blocks.close()

    def _collect(self, pending: deque, columns: list[str], rows: int) -> Iterator[pa.RecordBatch]:
        block, fut = pending.popleft()
        try:
            table = fut.result()
        except pa.ArrowInvalid as e:
            if "conversion error" in str(e):
                self._locate_bad_value(block, columns, rows)
            raise InputError(f"{self.source.name}: cannot parse CSV near row {rows + 1}: "
                             f"{short(e)}") from None
        self._spare.append(block.data)
        yield from table.to_batches()
        return rows + table.num_rows

    def _locate_bad_value(self, block: _Block, columns: list[str], first_row: int) -> None:
        """Re-parse a failing block as text to name the row, column and value that is not a number."""
        read, parse, convert = self._csv_options(columns, dict.fromkeys(columns, pa.string()), block)
        table = pacsv.read_csv(block.buffer(), read_options=read, parse_options=parse,
                               convert_options=convert)
        best: tuple[int, str, str] | None = None
        for name in columns:
            i = _first_unparsable(table.column(name).combine_chunks())
            if i is not None and (best is None or i < best[0]):
                best = (i, name, table.column(name)[i].as_py())
        if best is not None:
            i, name, v = best
            raise InvalidInput("not a number", first_row + i, "", v, column=name,
                               source=self.source.name, line=first_row + i + 1)


_CATEGORY = pa.dictionary(pa.int32(), pa.string())


def _first_record_end(data: bytes | bytearray, begin: int, end: int) -> int:
    """Index of the first newline in ``data[begin:end]`` outside quotes (the header's end), or -1."""
    cut = data.find(b"\n", begin, end)
    while cut >= 0 and data.count(b'"', begin, cut) % 2:
        cut = data.find(b"\n", cut + 1, end)
    return cut


def _record_end(data: bytes | bytearray, begin: int, end: int) -> int:
    """Index of the last newline in ``data[begin:end]`` outside quotes, or -1.

    ``data[begin:]`` starts on a record boundary, so a newline is outside
    quotes when the number of quote characters before it is even (RFC 4180
    doubles quotes inside quoted fields, which keeps the parity).  This runs
    on the thread that feeds the parsers, so the count is vectorised.
    """
    cut = data.rfind(b"\n", begin, end)
    if cut < 0 or data.find(b'"', begin, cut) < 0:
        return cut
    quotes = fastcsv.count_byte(data, begin, cut, _QUOTE)
    while quotes % 2:
        prev = data.rfind(b"\n", begin, cut)
        if prev < 0:
            return -1
        quotes -= fastcsv.count_byte(data, prev, cut, _QUOTE)
        cut = prev
    return cut


_QUOTE = ord('"')


def _first_unparsable(col: pa.Array) -> int | None:
    """Index of the first string Arrow cannot read as float64 (bisection: O(log n) casts)."""

    def ok(a: pa.Array) -> bool:
        try:
            a.cast(pa.float64())
            return True
        except pa.ArrowInvalid:
            return False

    if ok(col):
        return None
    lo, hi = 0, len(col)  # the first bad index is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(col.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo
