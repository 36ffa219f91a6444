"""Outputs that are files: per-row losses (``lossctl rows``) and saved states.

A file is written under a temporary name beside its destination and renamed
only when complete, so an interrupted run never leaves a half-written file
under the name asked for.  An existing file is replaced only with ``force``,
and never when it is one of the inputs.  Destinations may be URIs
(:mod:`lossctl.io.fs`): the object is uploaded under the temporary name and
moved to its name when complete; on failure or Ctrl-C the temporary object
is deleted, so no object ever appears under the final name half-written.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from . import arrow, fs


def check_destination(path: str, force: bool, inputs: list[str]) -> None:
    """Refuse to overwrite without ``force``, and refuse always to overwrite an input."""
    if path == "-":
        return
    if fs.is_uri(path):
        _check_uri_destination(path, force, inputs)
        return
    if os.path.exists(path):
        for src in inputs:
            try:
                if src != "-" and os.path.exists(src) and os.path.samefile(src, path):
                    raise UsageError(f"{path} is an input; write the output elsewhere")
            except OSError:
                continue
        if not force:
            raise UsageError(f"{path} exists; use --force to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: directory {parent} does not exist")


def _check_uri_destination(uri: str, force: bool, inputs: list[str]) -> None:
    loc = fs.locate(uri)
    if loc.readonly:
        raise UsageError(f"{fs.display(uri)}: http(s) URLs are read-only; write elsewhere")
    if fs.info(uri).type.name == "File":
        if any(src != "-" and fs.same_file(src, uri) for src in inputs if fs.is_uri(src)):
            raise UsageError(f"{fs.display(uri)} is an input; write the output elsewhere")
        if not force:
            raise UsageError(f"{fs.display(uri)} exists; use --force to replace it")
    if fs.is_object_store(uri):  # no directories there: the bucket must exist
        what, parent = "bucket", loc.path.split("/", 1)[0]
    else:
        what, parent = "directory", loc.path.rpartition("/")[0] or "/"
    if fs.info(loc.uri(parent)).type.name == "NotFound":
        raise UsageError(f"{fs.display(uri)}: {what} {parent} does not exist")


def _temporary(path: str) -> str:
    """``dir/.NAME.lossctl-PID.partial`` beside ``dir/NAME`` (skipped by directory listings)."""
    head, _, tail = path.rpartition("/")
    return f"{head}/.{tail}.lossctl-{os.getpid()}.partial" if head else \
        f".{tail}.lossctl-{os.getpid()}.partial"


class AtomicFile:
    """A file written as ``.NAME.lossctl-PID.partial`` and renamed to ``NAME`` on commit.

    For a URI the temporary name is an object beside the destination, moved
    to it (a server-side copy on object storage) once complete.
    """

    def __init__(self, path: str, direct: bool = False) -> None:
        self.path = path
        self.loc = fs.locate(path) if fs.is_uri(path) else None
        if self.loc is not None:
            self.tmp = self.loc.path if direct else _temporary(self.loc.path)
            try:
                self.file: IO[bytes] = self.loc.fs.open_output_stream(self.tmp)  # type: ignore[assignment]
            except OSError as e:
                raise fs.failure(path, e, "write") from None
            return
        head, tail = os.path.split(os.path.abspath(path))
        self.tmp = path if direct else os.path.join(head, f".{tail}.lossctl-{os.getpid()}.partial")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by commit/abort)

    def commit(self) -> None:
        if self.loc is None:
            self.file.close()
            if self.tmp != self.path:
                os.replace(self.tmp, self.path)
            return
        try:
            self.file.close()  # completes the upload, under the temporary name
            if self.tmp != self.loc.path:
                self.loc.fs.move(self.tmp, self.loc.path)
        except OSError as e:
            self.abort()
            raise fs.failure(self.path, e, "write") from None

    def abort(self) -> None:
        """Drop what was written; the destination is untouched."""
        try:
            self.file.close()
        except OSError:  # a failed upload: nothing to complete
            pass
        try:
            if self.loc is None:
                os.unlink(self.tmp)
            else:
                self.loc.fs.delete_file(self.tmp)
        except (FileNotFoundError, OSError):
            pass


def write_json_atomic(path: str, data: Any) -> None:
    out = AtomicFile(path)
    try:
        out.file.write(json.dumps(data, separators=(",", ":")).encode())
        out.commit()
    except BaseException:
        out.abort()
        raise


def output_format(path: str) -> str:
    """parquet, csv or tsv, from the destination's extension (stdout: csv)."""
    low = path.lower()
    if low in ("-", ""):
        return "csv"
    for ext, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".tsv", "tsv")):
        if low.endswith(ext):
            return fmt
    raise UsageError(f"{path}: write per-row output to .parquet, .csv, .tsv or - (stdout)")


class RowWriter:
    """Streams per-row losses, with the row numbers and kept columns, to Parquet or CSV.

    ``direct`` writes straight to ``path`` (a part inside a directory that is
    itself committed whole, :class:`RowParts`).
    """

    def __init__(self, path: str, many_files: bool, direct: bool = False) -> None:
        self.path = path
        self.format = output_format(path)
        self.many_files = many_files
        self.rows = 0
        self._atomic = AtomicFile(path, direct) if path != "-" else None
        self._writer: Any = None
        self._names: list[str] | None = None

    @property
    def _sink(self) -> IO[bytes]:
        return self._atomic.file if self._atomic is not None else sys.stdout.buffer

    def write(self, source: str, rows: np.ndarray, kept: pa.RecordBatch | None,
              values: dict[str, np.ndarray]) -> None:
        """One chunk: ``rows`` are 1-based data rows of ``source``; NaN losses become null."""
        arrays: list[pa.Array] = []
        names: list[str] = []
        if self.many_files:
            arrays.append(arrow.repeated(source, len(rows)))
            names.append("file")
        arrays.append(arrow.from_numpy(np.asarray(rows, dtype=np.int64)))
        names.append("row")
        if kept is not None:
            for name, col in zip(kept.schema.names, kept.columns, strict=True):
                if name in names or name in values:
                    raise UsageError(f"--keep {name!r} clashes with an output column; "
                                     f"output columns are file, row and the loss names")
                arrays.append(col)
                names.append(name)
        for key, v in values.items():
            arrays.append(arrow.from_numpy(np.asarray(v, dtype=np.float64), valid=~np.isnan(v)))
            names.append(key)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        if self._writer is None:
            self._open(batch.schema)
        elif batch.schema != self._writer_schema:
            batch = batch.cast(self._writer_schema)
        self._writer.write_batch(batch)
        self.rows += len(rows)

    def _open(self, schema: pa.Schema) -> None:
        self._writer_schema = schema
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._sink, schema)
        else:
            import pyarrow.csv as pacsv

            options = pacsv.WriteOptions(delimiter="\t" if self.format == "tsv" else ",")
            self._writer = pacsv.CSVWriter(self._sink, schema, write_options=options)

    def close(self) -> None:
        """Finish the file and give it its name."""
        if self._writer is not None:
            self._writer.close()
        if self._atomic is not None:
            self._atomic.commit()
        else:
            sys.stdout.buffer.flush()

    def abort(self) -> None:
        """Drop the partial file (the destination is untouched)."""
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:  # the run already failed; the partial file goes anyway
            pass
        if self._atomic is not None:
            self._atomic.abort()


class RowParts:
    """Per-row output of a distributed run: one part per work unit, in a directory ``OUT``.

    Parts are written into ``.OUT.lossctl-PID.partial/`` beside ``OUT`` and
    the directory is renamed to ``OUT`` once every part is done (on object
    storage, where a prefix cannot be renamed, the parts are moved under
    ``OUT/`` and an empty ``OUT/_SUCCESS`` marks the set complete, as Hadoop
    and Spark do).  On failure the temporary directory goes, and ``OUT`` is
    untouched.  The parts' format comes from OUT's extension (Parquet when it
    has none).
    """

    def __init__(self, path: str, many_files: bool, force: bool = False) -> None:
        self.path = path.rstrip("/") or path
        low = self.path.lower()
        self.ext = next((e for e in (".csv", ".tsv") if low.endswith(e)), ".parquet")
        self.many_files = many_files
        self.force = force
        self.loc = fs.locate(self.path) if fs.is_uri(self.path) else None
        base = self.loc.path if self.loc is not None else os.path.abspath(self.path)
        self.tmp = _temporary(base)
        self.rows = 0
        self.names: list[str] = []

    def _uri(self, path: str) -> str:
        return self.loc.uri(path) if self.loc is not None else path

    def start(self) -> None:
        """Make the temporary directory (before any worker writes a part)."""
        if self.loc is None:
            os.makedirs(self.tmp)
        elif not fs.is_object_store(self.path):
            self.loc.fs.create_dir(self.tmp)

    def writer(self, index: int) -> RowWriter:
        """The writer of unit ``index``'s part (run on a worker)."""
        name = f"part-{index:05d}{self.ext}"
        return RowWriter(self._uri(f"{self.tmp}/{name}"), self.many_files, direct=True)

    def commit(self, names: list[str], rows: int) -> None:
        """Every part is written: give the directory its name."""
        self.names, self.rows = names, rows
        try:
            if self.loc is None:
                if os.path.isdir(self.path) and self.force:
                    import shutil

                    shutil.rmtree(self.path)
                elif os.path.exists(self.path) and self.force:
                    os.unlink(self.path)
                os.replace(self.tmp, self.path)
                return
            lfs, dest = self.loc.fs, self.loc.path
            if not fs.is_object_store(self.path):  # HDFS and the like rename a directory
                if self.force and lfs.get_file_info(dest).type.name != "NotFound":
                    lfs.delete_dir(dest)
                lfs.move(self.tmp, dest)
                return
            if self.force:
                lfs.delete_dir_contents(dest, missing_dir_ok=True)
            for name in names:
                lfs.move(f"{self.tmp}/{name}", f"{dest}/{name}")
            with lfs.open_output_stream(f"{dest}/_SUCCESS"):
                pass
        except OSError as e:
            self.abort()
            raise fs.failure(self.path, e, "write") from None

    def abort(self) -> None:
        """Remove the temporary directory and every part in it."""
        try:
            if self.loc is None:
                import shutil

                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.loc.fs.delete_dir(self.tmp)
        except OSError:
            pass
