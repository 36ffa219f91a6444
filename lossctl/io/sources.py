"""Inputs: which files a command reads, and how to read each.

Handles paths, ``-`` (stdin), globs and directories of shards (sorted), and
decides each file's format: CSV/TSV (plain, gzip, zstd) or Parquet, by
extension, then magic bytes, then CSV.  The readers are in
:mod:`lossctl.io.reader`.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field

from ..errors import InputError, UsageError
from .columns import has_magic

CSV_EXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
PARQUET_EXT = {".parquet", ".pq", ".parq"}
COMPRESSION_EXT = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAGIC = {b"PAR1": "parquet", b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_SKIP_IN_DIRS = ("_", ".")  # _SUCCESS, _metadata, .crc files in shard directories


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
