"""Inputs: turn paths into streams of Arrow record batches holding only the needed columns.

Handles paths, ``-`` (stdin), globs, directories of shards (sorted), CSV/TSV
(plain, gzip, zstd) and Parquet, detected by extension or magic bytes; and
the column-selection syntax (name, 1-based index, glob, range, comma list).
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import glob
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import arrow, fastcsv
from .errors import InputError, InvalidInput, UsageError

CSV_EXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
PARQUET_EXT = {".parquet", ".pq", ".parq"}
COMPRESSION_EXT = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAGIC = {b"PAR1": "parquet", b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_SKIP_IN_DIRS = ("_", ".")  # _SUCCESS, _metadata, .crc files in shard directories
_PEEK = 1 << 16
CSV_BLOCK = 4 << 20  # bytes per CSV block parsed on one thread


@dataclass
class Source:
    """One input file (or stdin) and how to read it."""

    path: str  # "-" for stdin
    format: str  # "csv" or "parquet"
    compression: str | None = None
    delimiter: str = ","
    header: bool = True
    _stdin_bytes: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == "-" else self.path

    @property
    def size(self) -> int | None:
        """Bytes on disk, for progress; None for stdin."""
        return None if self.path == "-" else os.path.getsize(self.path)


# --------------------------------------------------------------------------
# Finding inputs
# --------------------------------------------------------------------------


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_paths(paths: list[str]) -> list[str]:
    """Expand globs and directories (sorted); ``-`` stands for stdin."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                # _temporary/, .ipynb_checkpoints/ and the like hold no shard of the data
                dirs[:] = [d for d in dirs if not d.startswith(_SKIP_IN_DIRS)]
                found += [os.path.join(root, f) for f in files
                          if not f.startswith(_SKIP_IN_DIRS) and _known_extension(f)]
            found.sort()
            if not found:
                raise InputError(f"{p}: directory holds no CSV, TSV or Parquet file")
            out.extend(found)
        elif _has_magic(p) and not os.path.exists(p):
            found = sorted(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
            if not found:
                raise InputError(f"{p}: no file matches this pattern")
            out.extend(found)
        elif not os.path.exists(p):
            raise InputError(f"{p}: no such file")
        else:
            out.append(p)
    if out.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    return out


def _split_ext(path: str) -> tuple[str, str | None]:
    base, ext = os.path.splitext(path.lower())
    if ext in COMPRESSION_EXT:
        return os.path.splitext(base)[1], COMPRESSION_EXT[ext]
    return ext, None


def _known_extension(path: str) -> bool:
    ext, _ = _split_ext(path)
    return ext in CSV_EXT or ext in PARQUET_EXT


def _sniff(head: bytes) -> tuple[str | None, str | None]:
    """(format, compression) from a file's first bytes."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return ("parquet", None) if kind == "parquet" else (None, kind)
    return None, None


def open_source(path: str, input_format: str | None = None, delimiter: str | None = None,
                header: bool = True) -> Source:
    """Decide how to read ``path`` (extension, then magic bytes, then CSV)."""
    stdin_bytes = None
    if path == "-":
        ext, comp = "", None
        stdin_bytes = _read_stdin()
        head = stdin_bytes[:4]
    else:
        ext, comp = _split_ext(path)
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
    sniffed_fmt, sniffed_comp = _sniff(head)
    comp = comp or sniffed_comp
    fmt = input_format
    if fmt is None:
        if ext in PARQUET_EXT or sniffed_fmt == "parquet":
            fmt = "parquet"
        else:
            fmt = "tsv" if CSV_EXT.get(ext) == "\t" else "csv"
    if fmt == "tsv":
        fmt, default_delim = "csv", "\t"
    else:
        default_delim = CSV_EXT.get(ext, ",")
    if fmt == "parquet" and comp:
        raise InputError(f"{path}: a compressed Parquet file is not supported "
                         "(Parquet compresses its pages itself)")
    return Source(path, fmt, comp, delimiter or default_delim, header, stdin_bytes)


def _read_stdin() -> bytes:
    # stdin cannot be reopened or sought, so it is read once; the data is
    # streamed from memory.  (Use a file path for inputs larger than memory.)
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("<stdin>: empty input")
    return data


# --------------------------------------------------------------------------
# Column selection: NAME, 1-based INDEX, GLOB, RANGE a:b, comma lists
# --------------------------------------------------------------------------


def select_columns(spec: str, available: list[str], what: str = "column") -> list[str]:
    """Resolve a column spec against the file's columns, in file order for globs/ranges."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in available:
            out.append(item)
        elif ":" in item:
            a, b = item.split(":", 1)
            i, j = _position(a, available, what, item), _position(b, available, what, item)
            if i > j:
                raise UsageError(f"{what} range {item!r} runs backwards")
            out.extend(available[i:j + 1])
        elif _has_magic(item):
            matched = [c for c in available if fnmatch.fnmatchcase(c, item)]
            if not matched:
                raise UsageError(f"no {what} matches {item!r}; {_listing(available)}")
            out.extend(matched)
        else:
            out.append(available[_position(item, available, what, item)])
    if not out:
        raise UsageError(f"empty {what} selection {spec!r}")
    dup = {c for c in out if out.count(c) > 1}
    if dup:
        raise UsageError(f"{what} selection {spec!r} names {', '.join(sorted(dup))} twice")
    return out


def _position(token: str, available: list[str], what: str, item: str) -> int:
    token = token.strip()
    if token in available:
        return available.index(token)
    if token.isdigit():
        i = int(token)
        if 1 <= i <= len(available):
            return i - 1
        raise UsageError(f"{what} {token} is out of range: the file has {len(available)} columns "
                         "(indexes are 1-based)")
    close = difflib.get_close_matches(token, available, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"no {what} named {token!r}.{hint} {_listing(available)}")


def _listing(available: list[str]) -> str:
    shown = ", ".join(available[:40]) + (" ..." if len(available) > 40 else "")
    return f"Available columns: {shown}"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


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


class Reader:
    """Streams record batches of selected columns from one source."""

    def __init__(self, source: Source, batch_rows: int = 1 << 16) -> None:
        self.source = source
        self.batch_rows = batch_rows
        self._pf: pq.ParquetFile | None = None
        self._file: pa.NativeFile | None = None  # the raw file being read, for progress
        self._rows_done = 0
        self._spare: list[bytearray] = []  # CSV block buffers to reuse
        self.columns = self._columns()
        # the C fast path maps columns by name: not for a header that repeats one
        self._fast_columns = len(set(self.columns)) == len(self.columns)

    def bytes_done(self) -> int:
        """How far into the file the reading is, in bytes on disk (for progress bars)."""
        size = self.source.size or 0
        if self._pf is not None:
            total = self._pf.metadata.num_rows or 1
            return int(size * min(1.0, self._rows_done / total))
        try:
            return min(size, self._file.tell()) if self._file is not None else 0
        except (OSError, ValueError):
            return 0

    # -- schema --------------------------------------------------------------

    def _raw(self) -> pa.NativeFile:
        s = self.source
        f: pa.NativeFile
        if s._stdin_bytes is not None:
            f = pa.BufferReader(s._stdin_bytes)
        else:
            # plain reads, not a memory map: mapped pages would count as our memory
            f = pa.OSFile(s.path)
        self._file = f
        return pa.CompressedInputStream(f, s.compression) if s.compression else f

    def _columns(self) -> list[str]:
        s = self.source
        try:
            if s.format == "parquet":
                # no pre-buffering of whole row groups: 4x less memory, and faster here
                self._pf = pq.ParquetFile(self._raw(), pre_buffer=False, buffer_size=1 << 20)
                return list(self._pf.schema_arrow.names)
            with self._raw() as f:
                head = f.read(_PEEK)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{s.name}: cannot read as {s.format}: {_short(e)}") from None
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

    @property
    def parquet_types(self) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in self._pf.schema_arrow} if self._pf else {}

    # -- batches -------------------------------------------------------------

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns``, in file order.

        CSV values are parsed as float64, except the ``text`` columns (kept
        columns, join keys), read as strings: the same value then has the
        same type in every block and file.  ``categories`` (slice keys) come
        dictionary-encoded where the format allows (CSV, Parquet strings),
        which spares hashing every value again.
        """
        s = self.source
        if s.format == "parquet":
            assert self._pf is not None
            pf = self._pf
            strings = [c for c in categories if _is_string(self.parquet_types.get(c))]
            if strings:  # a new reader: read_dictionary is set when the file is opened
                pf = self._pf = pq.ParquetFile(self._raw(), pre_buffer=False, buffer_size=1 << 20,
                                               read_dictionary=strings)
            # decoded on this thread while the kernels run on the pool's: as fast on
            # two cores as pyarrow's own decode threads, and 20-25% less peak memory
            for batch in pf.iter_batches(batch_size=self.batch_rows, columns=columns,
                                         use_threads=False):
                self._rows_done += batch.num_rows
                yield batch
            return
        yield from self._csv_batches(columns, set(text) | set(categories), set(categories))

    # -- CSV: newline-aligned blocks parsed in parallel -----------------------

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
        f = self._raw()
        try:
            carry = b""
            header = self.source.header
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
        rows = 0
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
                raise InputError(f"{self.source.name}: cannot read as CSV: {_short(e)}") from None
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
                             f"{_short(e)}") from None
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


def _is_string(t: pa.DataType | None) -> bool:
    return t is not None and (pa.types.is_string(t) or pa.types.is_large_string(t))


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


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:300]

