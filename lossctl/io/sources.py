"""Inputs: which files a command reads, and how to read each.

Handles paths, ``-`` (stdin), pipes, globs and directories of shards (sorted), URIs
of object storage (:mod:`lossctl.io.fs`: the same globs and "directories"), and
decides each file's format: CSV/TSV or JSON Lines (plain, gzip, zstd),
Parquet, Arrow IPC (Feather) or ORC, by the magic bytes of the binary
formats, then extension, then a first ``{`` (JSON Lines), then CSV.  The
readers are in :mod:`lossctl.io.reader`.
"""

from __future__ import annotations

import glob
import os
import stat
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
DEFAULT_MAX_RECORD = 16 << 20  # bytes: the longest CSV record (line) read


@dataclass
class Source:
    """One input file (or stdin) and how to read it."""

    path: str  # "-" for stdin
    format: str  # one of FORMATS but "tsv" (a CSV with a tab delimiter)
    compression: str | None = None
    delimiter: str = ","
    header: bool = True
    data: bytes | None = field(default=None, repr=False)  # stdin or a pipe, read once
    max_record: int = DEFAULT_MAX_RECORD  # bytes (CSV)

    _size: int | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The file as reports and errors name it (a URI without its secrets)."""
        return "<stdin>" if self.path == "-" else fs.display(self.path)

    @property
    def size(self) -> int | None:
        """Bytes on disk or in storage, for progress; None for stdin and pipes."""
        if self.data is not None:
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


def expand_paths(paths: list[str], skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """Expand globs and directories (sorted); ``-`` stands for stdin.

    A directory or a glob yields regular files only (a FIFO or a socket in a
    shard directory would block the run or fail), and a directory only its
    data files by name (see :func:`data_file`); what is left out is appended to
    ``skipped`` as ``(path, reason)``.  A pipe named on its own is read like
    stdin.
    """
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
                dirs[:] = sorted(d for d in dirs if shard_dir(d))
                for f in files:
                    path = os.path.join(root, f)
                    why = _not_a_shard(f, path)
                    if why is None:
                        found.append(path)
                    elif skipped is not None:
                        skipped.append((path, why))
            found.sort()
            if not found:
                raise InputError(f"{p}: directory holds no CSV, TSV, JSON Lines, Parquet, "
                                 "Arrow/Feather or ORC file")
            out.extend(found)
        elif has_magic(p) and not os.path.exists(p):
            found = []
            for f in sorted(glob.glob(p, recursive=True)):
                if os.path.isfile(f):
                    found.append(f)
                elif skipped is not None and not os.path.isdir(f):
                    skipped.append((f, "not a regular file"))
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
    """Whether a file found in a shard directory is read, by its name: a data extension (not
    ``.txt``, which a directory may hold as notes), not ``_`` or ``.`` first."""
    ext, _ = _split_ext(name)
    return not name.startswith(_SKIP_IN_DIRS) and (ext in CSV_EXT and ext != ".txt"
                                                    or ext in FORMAT_EXT)


def shard_dir(name: str) -> bool:
    """Whether a subdirectory of a shard directory is searched (not _temporary/, .git/...)."""
    return not name.startswith(_SKIP_IN_DIRS)


def _not_a_shard(name: str, path: str) -> str | None:
    """Why a file in a shard directory is not read, or None."""
    if name.startswith(_SKIP_IN_DIRS):
        return "hidden or a marker (_SUCCESS, .crc)"
    if not data_file(name):
        return "not a data file name (.csv, .tsv, .jsonl, .parquet, .arrow, .orc, ...)"
    if not os.path.isfile(path):  # follows links; a FIFO, a socket, a dangling link
        return "not a regular file"
    return None


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
                header: bool = True, max_record: int = DEFAULT_MAX_RECORD) -> Source:
    """Decide how to read ``path``: ``input_format``, else the magic bytes of a binary
    format, else the extension, else a first ``{`` (JSON Lines), else CSV."""
    if delimiter is not None:
        check_delimiter(delimiter)
    if max_record < 1:
        raise UsageError("--max-record-size must be at least 1 byte")
    data = None
    if path == "-":
        ext, comp = "", None
        data = _read_stdin()
        head = data[:_HEAD]
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
                    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                        head = f.read(_HEAD)
                    else:  # a pipe (<(zcat x.gz), a FIFO): it cannot be read twice: read it once
                        data = f.read()
                        head = data[:_HEAD]
            except OSError as e:
                raise InputError(f"{path}: cannot read ({e.strerror})") from None
    sniffed_fmt, sniffed_comp = _sniff(head)
    comp = comp or sniffed_comp
    fmt = input_format or sniffed_fmt or FORMAT_EXT.get(ext)
    if fmt is None and ext not in CSV_EXT:
        text = _decompressed_head(path, data, comp) if comp else head
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
    return Source(path, fmt, comp, delimiter or default_delim, header, data, max_record)


def check_delimiter(delimiter: str) -> None:
    """A CSV delimiter is one ASCII character other than a quote or a line end."""
    if len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
        raise UsageError(f"--delimiter must be one ASCII character other than a quote or a line "
                         f"end (got {delimiter!r}; 'tab' for a tab)")


def format_size(n: int) -> str:
    """Bytes as a person reads them: ``16 MiB``, ``1.5 GiB``, ``900 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"


def _read_stdin() -> bytes:
    # stdin cannot be reopened or sought, so it is read once; the data is
    # streamed from memory.  (Use a file path for inputs larger than memory.)
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("<stdin>: empty input")
    return data


def expand_distinct(paths: list[str]) -> list[str]:
    """:func:`expand_paths`, refusing a file reached twice.

    Named twice, reached by a glob and a directory, or through a link: its
    rows would be counted twice.  Local files are told apart by device and
    inode, so a symbolic or hard link to a file already read is caught too;
    remote objects by their URI.
    """
    out: list[str] = []
    seen: dict[tuple, tuple[str, str]] = {}  # file -> (its path, the argument)
    for arg in paths:
        found = expand_paths([arg])
        for p in found if arg != "-" else []:
            if fs.is_remote(p):
                key: tuple = ("uri", p)
            else:
                try:
                    st = os.stat(fs.locate(p).path if fs.is_uri(p) else p)
                except OSError:
                    continue  # (opening it reports the error)
                key = (st.st_dev, st.st_ino)
            if key in seen:
                first, first_arg = seen[key]
                what = f"{p} is given twice" if (p, arg) == (first, first_arg) else \
                    f"{_reached(p, arg)} and {_reached(first, first_arg)} are the same file"
                raise UsageError(f"{what}: its rows would be counted twice; give each input once")
            seen[key] = (p, arg)
        out += found
    if out.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    return out


def _reached(path: str, arg: str) -> str:
    how = [f"from {arg}"] if path != arg else []
    if not fs.is_uri(path) and os.path.islink(path):
        how.append(f"a link to {os.path.realpath(path)}")
    return f"{path} ({', '.join(how)})" if how else path
