"""CSV input: newline-aligned blocks, cut on one thread and parsed on a pool of threads.

The reading thread cuts the bytes into blocks that end on a record boundary
(:mod:`lossctl.io.records`, by the tokenizer's own quoting rules); each block
is parsed by the C fast path (:mod:`lossctl.io.fastcsv`) when it holds only
plain numbers in the wanted columns, else by pyarrow's CSV reader, whose
values and messages are the reference.  No record may be longer than the
source's ``max_record`` bytes: a stray quote or a file without line ends
fails there instead of growing one block to the size of the file.  A file
that ends inside a quoted field is malformed.  Errors name the exact data
row: the rows of earlier blocks plus the row within the block.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError, InvalidInput
from . import arrow, fastcsv
from .reader import Reader, cannot_read, short
from .records import record_end, split_record
from .sources import Source, format_size

_PEEK = 1 << 16
CSV_BLOCK = 4 << 20  # bytes per CSV block parsed on one thread
_BOM = b"\xef\xbb\xbf"


@dataclass
class _Block:
    """``data[begin:end]``: whole CSV records, parsed on one thread."""

    data: bytearray
    begin: int
    end: int
    problem: str | None = None  # the record at ``begin`` cannot be read: why (raised in order)

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

    def _names(self) -> list[str]:
        s = self.source
        head = bytearray()
        try:
            with self._raw() as f:
                while True:  # to the end of the first record (header or first row), or of the file
                    more = f.read(max(_PEEK, len(head)))
                    head += more
                    found = _header_end(head, len(head), s.delimiter, not more)
                    if found is not None:
                        break
                    if len(head) > s.max_record + len(_BOM):
                        raise InputError(f"{s.name}: the first line is longer than "
                                         f"{format_size(s.max_record)} (--max-record-size raises "
                                         "the limit)")
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(s, e) from None
        start, cut = found
        if not head[start:].strip():
            raise InputError(f"{s.name}: empty input")
        if b"\0" in head[:_PEEK]:
            raise InputError(f"{s.name}: binary data, not CSV text "
                             "(a Parquet file? try --input-format parquet)")
        if cut < 0:
            raise InputError(f"{s.name}: the {'header' if s.header else 'first row'} ends inside "
                             "a quoted field (an unterminated quote)")
        fields = split_record(bytes(head[start:cut + 1]), s.delimiter)
        self._data_start = cut + 1 if s.header else start
        if not s.header:
            return [str(i + 1) for i in range(len(fields))]
        return [f.decode("utf-8", errors="replace").strip() for f in fields]

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
        not cleared and faulted in again for every block.  A record longer
        than a block is read on in reads as large as what is held (so it is
        copied O(1) times per byte), and no further than ``max_record``.
        """
        s = self.source
        limit = s.max_record
        f = self._raw(part=True)
        try:
            # the header, measured when the reader was made; a later part of the file (a work
            # unit) starts on a record
            skip = 0 if self.byte_range and self.byte_range[0] > 0 else self._data_start
            while skip > 0:
                got = len(f.read(min(skip, CSV_BLOCK)))
                if not got:
                    return
                skip -= got
            carry = b""
            # a small plain file gets a buffer of its size, not a whole block
            size = None if s.compression else s.size  # (None for stdin and pipes)
            block = CSV_BLOCK if size is None else max(1, min(CSV_BLOCK, size + 1))
            while True:
                need = len(carry) + min(max(block, len(carry)), limit + 1 - len(carry))
                buf = self._spare.pop() if self._spare else bytearray()
                if len(buf) < need:  # (room for the usual carry: a buffer fits again)
                    buf = bytearray(need + (1 << 16))
                buf[:len(carry)] = carry
                got = f.readinto(memoryview(buf)[len(carry):need])
                size = len(carry) + got
                if not got:  # the rest, unless only empty lines (a line of spaces is a row)
                    if buf[:size].strip(b"\r\n"):
                        yield from _last_blocks(buf, size, s.delimiter)
                    return
                cut, inside = record_end(buf, 0, size, s.delimiter)
                if cut < 0:
                    if size > limit:  # no record end within the limit
                        yield _Block(buf, 0, size, _UNCLOSED_LONG if inside else _LONG)
                        return
                    carry = bytes(buf[:size])
                    continue
                carry = bytes(buf[cut + 1:size])
                yield _Block(buf, 0, cut + 1)
        finally:
            f.close()

    def _parse_block(self, block: _Block, columns: list[str], text: set[str],
                     categories: set[str]) -> pa.Table:
        if not text:
            arrays = fastcsv.parse_floats(block.view(), self.source.delimiter, self.columns, columns)
            if arrays is not None:
                return pa.Table.from_arrays([arrow.from_numpy(a) for a in arrays.values()],
                                            names=list(arrays))
        elif len(text) == 1 and text == categories:  # --by one column
            table = self._fast_with_category(block, columns, next(iter(text)))
            if table is not None:
                return table
        types = {c: (_CATEGORY if c in categories else pa.string()) if c in text else pa.float64()
                 for c in columns}
        read, parse, convert = self._csv_options(columns, types, block)
        return pacsv.read_csv(block.buffer(), read_options=read, parse_options=parse,
                              convert_options=convert)

    def _fast_with_category(self, block: _Block, columns: list[str], category: str) -> pa.Table | None:
        """The C fast path for the numbers plus one slice column, dictionary-encoded as pyarrow would."""
        import pyarrow.compute as pc  # (30 ms of start-up: only for --by)

        numbers = [c for c in columns if c != category]
        got = fastcsv.parse_with_text(block.view(), self.source.delimiter, self.columns, numbers, category)
        if got is None:
            return None
        floats, strings = got
        codes = pc.dictionary_encode(strings)
        if pc.any(pc.is_in(codes.dictionary, value_set=_null_values())).as_py():
            return None  # a null marker ("", "NA", ...): pyarrow's nulls
        arrays = {name: arrow.from_numpy(a) for name, a in floats.items()}
        arrays[category] = codes
        return pa.Table.from_arrays([arrays[c] for c in columns], names=columns)

    def _csv_batches(self, columns: list[str], text: set[str], categories: set[str]
                     ) -> Iterator[pa.RecordBatch]:
        threads = min(4, os.cpu_count() or 1)
        pending: deque[tuple[_Block, Future | None]] = deque()
        rows = self.first_row  # rows before this part of the file (a work unit)
        with ThreadPoolExecutor(threads) as pool:
            blocks = self._blocks()
            try:
                for block in blocks:
                    fut = None if block.problem else pool.submit(self._parse_block, block, columns,
                                                                 text, categories)
                    pending.append((block, fut))
                    while len(pending) > threads + 1:
                        rows = yield from self._collect(pending, columns, text, rows)
                while pending:
                    rows = yield from self._collect(pending, columns, text, rows)
            except (pa.ArrowException, OSError) as e:
                if isinstance(e, OSError) and self.source.remote:  # storage: missing, denied, down
                    raise cannot_read(self.source, e) from None
                raise InputError(f"{self.source.name}: cannot read as CSV: {short(e)}") from None
            finally:
                for _, fut in pending:
                    if fut is not None:
                        fut.cancel()
                blocks.close()

    def _collect(self, pending: deque, columns: list[str], text: set[str], rows: int
                 ) -> Iterator[pa.RecordBatch]:
        block, fut = pending.popleft()
        name = self.source.name
        if fut is None:
            limit = format_size(self.source.max_record)
            raise InputError(f"{name}, row {rows + 1}: " + block.problem.format(limit=limit))
        try:
            table = fut.result()
        except pa.ArrowInvalid as e:
            self._locate_bad_value(block, columns, text, rows)
            self._locate_bad_row(block, rows)
            raise InputError(f"{name}: cannot parse CSV after row {rows}: {short(e)}") from None
        self._spare.append(block.data)
        yield from table.to_batches()
        return rows + table.num_rows

    def _locate_bad_row(self, block: _Block, first_row: int) -> None:
        """Re-parse a failing block to name the row with the wrong number of fields."""
        bad = []

        def handler(row: pacsv.InvalidRow) -> str:
            bad.append(row)
            return "error"

        first = self.columns[:1]
        read, parse, convert = self._csv_options(first, dict.fromkeys(first, pa.binary()), block)
        parse.invalid_row_handler = handler
        try:
            pacsv.read_csv(block.buffer(), read_options=read, parse_options=parse,
                           convert_options=convert)
        except pa.ArrowInvalid:
            pass
        if bad:
            row = bad[0]
            what = "the header" if self.source.header else "the first row"
            text = row.text if len(row.text) <= 200 else row.text[:200] + "..."
            raise InputError(f"{self.source.name}, row {first_row + row.number}: "
                             f"{row.actual_columns} fields where {what} has {row.expected_columns} "
                             f"(the row: {text!r})")

    def _locate_bad_value(self, block: _Block, columns: list[str], text: set[str],
                          first_row: int) -> None:
        """Re-parse a failing block as bytes to name the row, column and value that is bad.

        Bad: not a number in a number column, not UTF-8 in a text column.
        """
        read, parse, convert = self._csv_options(columns, dict.fromkeys(columns, pa.binary()),
                                                 block)
        try:
            table = pacsv.read_csv(block.buffer(), read_options=read, parse_options=parse,
                                   convert_options=convert)
        except pa.ArrowInvalid:
            return  # not a value: a malformed row
        best: tuple[int, str] | None = None
        for name in columns:
            i = _first_unparsable(table.column(name).combine_chunks(), name not in text)
            if i is not None and (best is None or i < best[0]):
                best = (i, name)
        if best is not None:
            i, name = best
            value = table.column(name)[i].as_py().decode(errors="backslashreplace")
            reason = "not UTF-8 text" if name in text else "not a number"
            raise InvalidInput(reason, first_row + i, "", value, column=name,
                               source=self.source.name, line=first_row + i + 1)


_CATEGORY = pa.dictionary(pa.int32(), pa.string())


_LONG = ("the record is longer than {limit} without a line end (--max-record-size raises the "
         "limit)")
_UNCLOSED_LONG = ("a quoted field opened in this row runs on for more than {limit}: an unterminated "
                  "quote? (--max-record-size raises the limit)")
_UNCLOSED = "a quoted field opened in this row is not closed before the end of the file"


@lru_cache(maxsize=1)
def _null_values() -> pa.Array:
    """The strings pyarrow's CSV reader takes for null (strings_can_be_null)."""
    return arrow.strings(pacsv.ConvertOptions().null_values)


def _header_end(head: bytearray, size: int, delimiter: str, eof: bool) -> tuple[int, int] | None:
    """Where the first record (header or first row) is in ``head[:size]``: ``(start, end)``.

    ``start`` skips a byte-order mark and empty lines; ``end`` is the index of
    its last byte (its line end), or -1 when the file ends inside a quoted
    field.  None: not known before more is read.
    """
    start = len(_BOM) if head.startswith(_BOM) else 0
    while start < size and head[start] in b"\r\n":  # empty lines are skipped, as pyarrow does
        start += 1
    if start >= size and not eof:
        return None
    cut, inside = record_end(head, start, size, delimiter, first=True, eof=eof)
    if cut >= 0:
        return start, cut
    if not eof:
        return None
    return (start, -1) if inside else (start, size - 1)


def _last_blocks(buf: bytearray, size: int, delimiter: str) -> Iterator[_Block]:
    """The rest of the file as the last block, or as its whole records and an unclosed quote."""
    cut, inside = record_end(buf, 0, size, delimiter, eof=True)
    if not inside:
        yield _Block(buf, 0, size)
        return
    if cut >= 0:
        yield _Block(buf, 0, cut + 1)
    yield _Block(buf, cut + 1, size, _UNCLOSED)


def _first_unparsable(col: pa.Array, number: bool) -> int | None:
    """Index of the first value that is not UTF-8 (or, for a ``number``, not a float64).

    By bisection: O(log n) casts of the column read as bytes.
    """
    def ok(a: pa.Array) -> bool:
        try:
            a = a.cast(pa.string())
            if number:
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
