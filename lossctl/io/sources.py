"""Inputs: which files a command reads, and how to read each.

Handles paths, ``-`` (stdin), globs and directories of shards (sorted), URIs
of object storage (:mod:`lossctl.io.fs`: the same globs and "directories"), and
decides each file's format: CSV/TSV or JSON Lines (plain, gzip, zstd),
Parquet, Arrow IPC (Feather) or ORC, by the magic bytes of the binary
formats, then extension, then a first ``{`` (JSON Lines), then CSV.  The
readers are in :mod:`lossctl.io.reader`.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field

from ..errors import InputError, UsageError
from . import fs
from .columns import has_magic

CSV_EXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
FORMAT_EXT = {".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
              ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow",
              ".orc": "orc"}
FORMATS = ("csv", "tsv", "parquet", "jsonl", "arrow", "orc")  # --input-format
FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON Lines", "arrow": "Arrow IPC",
                "orc": "ORC"}
TEXT_FORMATS = {"csv", "jsonl"}  # read through a decompressing stream when gzip/zstd
COMPRESSION_EXT = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
# Arrow IPC: the file format (Feather v2) starts with ARROW1, the stream format
# with a continuation marker; ORC with ORC and binary data (a CSV header may say "ORC")
MAGIC = {b"PAR1": "parquet", b"ARROW1": "arrow", b"\xff\xff\xff\xff": "arrow", b"ORC": "orc",
         b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_HEAD = 16  # bytes read to sniff the format
_SKIP_IN_DIRS = ("_", ".")  # _SUCCESS, _metadata, .crc files in shard directories


@dataclass
class Source:
    """One input file (or stdin) and how to read it."""

    path: str  # "-" for stdin
    format: str  # one of FORMATS but "tsv" (a CSV with a tab delimiter)
    compression: str | None = None
    delimiter: str = ","
    header: bool = True
    _stdin_bytes: bytes | None = field(default=None, repr=False)

    _size: int | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The file as reports and errors name it (a URI without its secrets)."""
        return "<stdin>" if self.path == "-" else fs.display(self.path)

    @property
    def size(self) -> int | None:
        """Bytes on disk or in storage, for progress; None for stdin."""
        if self.path == "-":
            return None
        if self._size is None:
            self._size = fs.size(self.path) if fs.is_uri(self.path) else os.path.getsize(self.path)
        return self._size

    @property
    def remote(self) -> bool:
        """Read over the network: fewer, larger requests pay off."""
        return fs.is_remote(self.path)


# --------------------------------------------------------------------------
# Finding inputs
# --------------------------------------------------------------------------


def expand_paths(paths: list[str]) -> list[str]:
    """Expand globs and directories (sorted); ``-`` stands for stdin."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif fs.is_uri(p):
            out.extend(fs.expand(p, data_file))
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                # _temporary/, .ipynb_checkpoints/ and the like hold no shard of the data
                dirs[:] = [d for d in dirs if shard_dir(d)]
                found += [os.path.join(root, f) for f in files if data_file(f)]
            found.sort()
            if not found:
                raise InputError(f"{p}: directory holds no CSV, TSV, JSON Lines, Parquet, "
                                 "Arrow/Feather or ORC file")
            out.extend(found)
        elif has_magic(p) and not os.path.exists(p):
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


def data_file(name: str) -> bool:
    """Whether a file found in a shard directory is read: a data extension, not _ or . first."""
    ext, _ = _split_ext(name)
    return not name.startswith(_SKIP_IN_DIRS) and (ext in CSV_EXT or ext in FORMAT_EXT)


def shard_dir(name: str) -> bool:
    """Whether a subdirectory of a shard directory is searched (not _temporary/, .git/...)."""
    return not name.startswith(_SKIP_IN_DIRS)


def _sniff(head: bytes) -> tuple[str | None, str | None]:
    """(format, compression) from a file's first bytes."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            if kind == "orc" and not any(b < 9 for b in head[3:]):
                continue  # text that starts with "ORC"
            return (None, kind) if kind in ("gzip", "zstd") else (kind, None)
    return None, None


def _looks_like_jsonl(head: bytes) -> bool:
    """Text whose first character (after a byte-order mark and blanks) opens a JSON object."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{"


def _decompressed_head(path: str, data: bytes | None, compression: str) -> bytes:
    """The first bytes of a compressed source, to sniff JSON Lines inside gzip or zstd."""
    import pyarrow as pa

    try:
        raw = pa.BufferReader(data) if data is not None else \
            fs.open_input(path) if fs.is_uri(path) else pa.OSFile(path)
        with pa.CompressedInputStream(raw, compression) as f:
            return f.read(_HEAD)
    except (pa.ArrowException, OSError):
        return b""  # the reader reports a corrupt stream, naming the format


def open_source(path: str, input_format: str | None = None, delimiter: str | None = None,
                header: bool = True) -> Source:
    """Decide how to read ``path``: ``input_format``, else the magic bytes of a binary
    format, else the extension, else a first ``{`` (JSON Lines), else CSV."""
    stdin_bytes = None
    if path == "-":
        ext, comp = "", None
        stdin_bytes = _read_stdin()
        head = stdin_bytes[:_HEAD]
    else:
        ext, comp = _split_ext(fs.display(path))
        if fs.is_uri(path):
            with fs.open_input(path) as f:
                try:
                    head = f.read(_HEAD)
                except OSError as e:
                    raise fs.failure(path, e, "read") from None
        else:
            try:
                with open(path, "rb") as f:
                    head = f.read(_HEAD)
            except OSError as e:
                raise InputError(f"{path}: cannot read ({e.strerror})") from None
    sniffed_fmt, sniffed_comp = _sniff(head)
    comp = comp or sniffed_comp
    fmt = input_format or sniffed_fmt or FORMAT_EXT.get(ext)
    if fmt is None and ext not in CSV_EXT:
        text = _decompressed_head(path, stdin_bytes, comp) if comp else head
        fmt = "jsonl" if _looks_like_jsonl(text) else None
    if fmt is None:
        fmt = "tsv" if CSV_EXT.get(ext) == "\t" else "csv"
    if fmt == "tsv":
        fmt, default_delim = "csv", "\t"
    else:
        default_delim = CSV_EXT.get(ext, ",")
    if fmt not in TEXT_FORMATS and comp:
        name = FORMAT_NAMES[fmt]
        raise InputError(f"{path}: a compressed {name} file is not supported "
                         f"({name} compresses its pages itself)")
    return Source(path, fmt, comp, delimiter or default_delim, header, stdin_bytes)


def _read_stdin() -> bytes:
    # stdin cannot be reopened or sought, so it is read once; the data is
    # streamed from memory.  (Use a file path for inputs larger than memory.)
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("<stdin>: empty input")
    return data
