"""Fingerprints of input files: which bytes a state was computed from.

A fingerprint is the file's resolved path, size and a digest of its first
and last 64 KiB (for a Parquet file the end holds the footer: the schema,
row groups and their statistics).  Two states holding the same fingerprint
hold the same rows, and merging them would count those rows twice.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from . import fs
from .sources import Source

EDGE = 64 << 10  # bytes read at each end of a file


def _edges(data: bytes) -> bytes:
    return data if len(data) <= 2 * EDGE else data[:EDGE] + data[-EDGE:]


def fingerprint(source: Source) -> dict[str, object]:
    """``{name, path, size, digest}`` of one input (stdin or a pipe: of the bytes it gave)."""
    if source.data is not None:  # stdin or a pipe: the bytes it gave, read once
        data = source.data
        size, edges = len(data), _edges(data)
        path = "-" if source.path == "-" else os.path.realpath(source.path)
    elif fs.is_uri(source.path):  # ranged reads: two requests, whatever the object's size
        path = fs.display(source.path)
        with fs.open_input(source.path) as f:
            size = f.size()
            edges = _read_edges(f, size)
    else:
        path = os.path.realpath(source.path)
        with open(source.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            edges = _read_edges(f, size)
    digest = hashlib.sha256(size.to_bytes(8, "little") + edges).hexdigest()
    return {"name": source.name, "path": path, "size": size, "digest": f"sha256:{digest}"}


def _read_edges(f: Any, size: int) -> bytes:
    """The first and last EDGE bytes of a file of ``size`` bytes (all of it when small)."""
    if size <= 2 * EDGE:
        return f.read()
    head = f.read(EDGE)
    f.seek(size - EDGE)
    return head + f.read(EDGE)
