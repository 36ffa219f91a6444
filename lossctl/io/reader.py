"""Readers: one source -> Arrow record batches of the needed columns, in file order.

:func:`open_reader` picks the reader of the source's format, one class per
format (:mod:`lossctl.io.csv`, :mod:`lossctl.io.parquet`, :mod:`lossctl.io.jsonl`,
:mod:`lossctl.io.ipc`, :mod:`lossctl.io.orc`); each knows the file's column
names before any data is read and streams batches in bounded memory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from ..errors import InputError
from . import fs
from .columns import column_keys, select_columns
from .sources import FORMAT_NAMES, Source


class Reader:
    """Streams record batches of selected columns from one source (base class).

    ``names`` are the column names as the file has them; ``columns`` the same
    names made unique (a name that repeats is told apart by its position,
    ``v (column 2)``): every column is asked for, and comes back, by its
    entry in ``columns``.
    """

    def __init__(self, source: Source, batch_rows: int = 1 << 16, first_row: int = 0,
                 row_groups: tuple[int, int] | None = None,
                 byte_range: tuple[int, int] | None = None) -> None:
        self.source = source
        self.batch_rows = batch_rows
        # a part of the file (a work unit): its first data row, row groups or bytes
        self.first_row = first_row
        self.row_groups = row_groups
        self.byte_range = byte_range
        self._file: pa.NativeFile | None = None  # the raw file being read, for progress
        self.names: list[str] = self._names()
        self.columns: list[str] = column_keys(self.names)

    def select(self, spec: str, what: str = "column") -> list[str]:
        """The columns (entries of ``columns``) a column spec selects in this file."""
        return select_columns(spec, self.columns, what, self.names)

    @property
    def schema_types(self) -> dict[str, pa.DataType]:
        """Column types known from the file's schema (none for CSV: its values are parsed)."""
        return {}

    def row_width(self, columns: list[str]) -> int:
        """Values a row holds in ``columns`` (a list column counts its values), for the chunk size."""
        return len(columns)

    def bytes_done(self) -> int:
        """How far into the file the reading is, in bytes on disk (for progress bars)."""
        size = self.source.size or 0
        try:
            return min(size, self._file.tell()) if self._file is not None else 0
        except (OSError, ValueError):
            return 0

    def _raw(self, part: bool = False) -> pa.NativeFile:
        """The source's bytes as a file (decompressed where the source is compressed).

        With ``part``, only the reader's byte range (a CSV work unit).
        """
        s = self.source
        f: pa.NativeFile
        if s.data is not None:  # stdin or a pipe, read once
            f = pa.BufferReader(s.data)
        elif fs.is_uri(s.path):
            f = fs.open_input(s.path)
        else:
            # plain reads, not a memory map: mapped pages would count as our memory
            f = pa.OSFile(s.path)
        self._file = f
        if part and self.byte_range is not None:
            start, end = self.byte_range
            f.seek(start)
            return pa.PythonFile(_Range(f, end - start), mode="r")
        if s.compression == "gzip" and (inflated := _isal_gunzip(f)) is not None:
            return inflated
        return pa.CompressedInputStream(f, s.compression) if s.compression else f

    def _names(self) -> list[str]:
        raise NotImplementedError

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns``, in file order.

        Values are numbers, except the ``text`` columns (kept columns, join
        keys), read as they are (strings in CSV): the same value then has the
        same type in every block and file.  ``categories`` (slice keys) come
        dictionary-encoded where the format allows, which spares hashing
        every value again.
        """
        raise NotImplementedError

    def table(self, columns: list[str], text: Sequence[str] = ()) -> pa.Table:
        """The whole file's ``columns`` at once (a key join's second file), as :meth:`batches` reads them."""
        return pa.Table.from_batches(list(self.batches(columns, text)))


class SchemaReader(Reader):
    """A reader of a format with a schema, read in pieces (IPC record batches, ORC stripes).

    Subclasses open the file in ``_open_schema`` and count ``pieces_done``
    out of ``pieces_total`` (0 when unknown: then progress is in bytes).
    """

    pieces_done = 0
    pieces_total = 0

    def _open_schema(self) -> pa.Schema:
        raise NotImplementedError

    def _names(self) -> list[str]:
        try:
            self._schema = self._open_schema()
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
        return list(self._schema.names)

    @property
    def schema_types(self) -> dict[str, pa.DataType]:
        return {key: f.type for key, f in zip(self.columns, self._schema, strict=True)}

    def positions(self, columns: list[str]) -> list[int]:
        """The file positions of ``columns``, in file order (how the pieces hold them)."""
        return sorted({self.columns.index(c) for c in columns})

    def under_keys(self, batch: pa.RecordBatch, positions: list[int]) -> pa.RecordBatch:
        """A piece of the fields at ``positions`` under their keys (names may repeat)."""
        if self.columns == self.names:
            return batch
        return pa.RecordBatch.from_arrays(batch.columns, names=[self.columns[i] for i in positions])

    def bytes_done(self) -> int:
        if not self.pieces_total:
            return super().bytes_done()
        return int((self.source.size or 0) * min(1.0, self.pieces_done / self.pieces_total))


# format -> (module, class): a reader's module is imported only when a source needs it
READERS = {"csv": ("csv", "CsvReader"), "parquet": ("parquet", "ParquetReader"),
           "jsonl": ("jsonl", "JsonlReader"), "arrow": ("ipc", "IpcReader"), "orc": ("orc", "OrcReader")}


def open_reader(source: Source, batch_rows: int = 1 << 16, first_row: int = 0,
                row_groups: tuple[int, int] | None = None,
                byte_range: tuple[int, int] | None = None) -> Reader:
    """The reader of ``source``'s format (its module is imported only when needed).

    A part of the file may be asked for (a work unit): Parquet
    ``row_groups`` [start, stop), or a CSV ``byte_range`` [start, end) of
    whole records (the header is read from the start of the file), whose
    first row in the file is ``first_row``.
    """
    import importlib

    module, cls = READERS[source.format]
    reader: type[Reader] = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    part = {k: v for k, v in (("first_row", first_row), ("row_groups", row_groups),
                              ("byte_range", byte_range)) if v}
    return reader(source, batch_rows, **part)


def is_list(t: pa.DataType) -> bool:
    """A list column (list, large list or fixed-size list): K values a row."""
    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)


class _Gunzip(io.RawIOBase):
    """A gzip stream inflated by ISA-L (the ``isal`` package), as a raw binary file.

    ISA-L inflates about 2.5x faster than zlib (which pyarrow's
    CompressedInputStream uses); gzip decompression is the one serial step of
    reading a compressed CSV.  Its errors come out as OSError, as pyarrow's do.
    """

    def __init__(self, raw: pa.NativeFile, igzip: Any, errors: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.raw = raw
        self.errors = errors
        self.gz = igzip.IGzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            return self.gz.readinto(buf)
        except self.errors as e:
            raise OSError(f"gzip: {e}") from None

    def close(self) -> None:
        if not self.closed:
            self.gz.close()
            self.raw.close()
        super().close()


def _isal_gunzip(raw: pa.NativeFile) -> pa.NativeFile | None:
    """``raw`` inflated by ISA-L, or None when ``isal`` is not installed (pyarrow's zlib then)."""
    if os.environ.get("LOSSCTL_NATIVE", "1") == "0":
        return None
    try:
        from isal import igzip, igzip_lib
    except ImportError:
        return None
    # as a pyarrow file, so that every reader (pyarrow's JSON reader too) takes it
    return pa.PythonFile(_Gunzip(raw, igzip, (EOFError, igzip_lib.IsalError)), mode="r")


def short(e: Exception) -> str:
    """The first line of an exception's message, for a one-line error."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:300]


def cannot_read(source: Source, e: Exception) -> InputError:
    if isinstance(e, OSError) and source.remote:  # storage, not format: missing, denied, down
        return fs.failure(source.path, e, "read")
    return InputError(f"{source.name}: cannot read as {FORMAT_NAMES[source.format]}: {short(e)}")


class _Range:
    """The next ``size`` bytes of a file, as a file (one CSV work unit)."""

    def __init__(self, f: pa.NativeFile, size: int) -> None:
        self.f, self.left = f, size
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) if n else b""
        self.left -= len(data)
        return data

    def readinto(self, b: memoryview) -> int:
        n = min(len(b), self.left)
        got = self.f.readinto(memoryview(b)[:n]) if n else 0
        self.left -= got
        return got

    def close(self) -> None:
        self.closed = True
        self.f.close()
