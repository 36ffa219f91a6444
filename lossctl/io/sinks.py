"""Outputs that are files: per-row losses (``lossctl rows``), saved states, JUnit and HTML reports.

Every output goes through the same door:

- :meth:`Outputs.claim`, before the run reads anything, refuses a destination
  that is an input of the run (compared as files, same device and inode,
  however it was named: inside a directory or glob input, the ``--labels``
  file, a checks file, a baseline, a state being merged), a directory, a
  missing or unwritable directory, and an existing file unless ``force``;
- :class:`OutputFile` writes ``.NAME.lossctl-PID.partial`` beside ``NAME``,
  flushes it to disk and only then gives it its name, by a rename that never
  replaces a file (``renameat2(RENAME_NOREPLACE)``, else ``link`` + ``unlink``)
  unless ``force``: an interrupted run leaves no ``NAME``, and a file that
  appears at ``NAME`` meanwhile (a second run) is never clobbered;
- a write error (a full disk, a vanished directory) names the path the user
  gave, never the partial file, and the partial file is removed.

A destination that exists and is not a regular file (``/dev/stdout``, a FIFO)
is written in place: there is no file to lose.  Destinations may be URIs
(:mod:`lossctl.io.fs`): the object is uploaded under the temporary name and
moved to its name when complete; on failure or Ctrl-C the temporary object
is deleted.  Object stores have no rename that refuses to replace: there the
destination is checked just before the move (a window of one request).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa

from ..errors import LossctlError, OutputError, UsageError
from . import arrow, fs

Identity = tuple[int, int]  # (st_dev, st_ino): one file, whatever it is called


@dataclass(frozen=True)
class Inputs:
    """Every file a run reads: local ones by identity, remote ones (URIs) by name."""

    files: Mapping[Identity, str] = field(default_factory=dict)  # identity -> a name of it
    remote: tuple[str, ...] = ()

    @classmethod
    def of(cls, paths: Iterable[str]) -> Inputs:
        """Directories, globs and prefixes expanded as the run expands them."""
        from .sources import expand_paths

        files: dict[Identity, str] = {}
        remote: list[str] = []
        for p in paths:
            if p == "-":
                try:
                    st = os.fstat(sys.stdin.fileno())
                except (OSError, ValueError):  # no real stdin (a test runner's)
                    continue
                if stat.S_ISREG(st.st_mode):  # `< file`: read into memory, still the user's file
                    files.setdefault((st.st_dev, st.st_ino), "<stdin>")
                continue
            try:
                found = expand_paths([p])
            except LossctlError:  # missing or empty: the run itself says so
                found = [p]
            for f in found:
                if _remote(f):
                    remote.append(f)
                elif (st := _stat(_local(f))) is not None:
                    files.setdefault((st.st_dev, st.st_ino), f)
        return cls(files, tuple(remote))

    def holding(self, path: str) -> str | None:
        """The input that ``path`` is (same file, or same object), if any."""
        if _remote(path):
            return next((r for r in self.remote if fs.same_file(r, path)), None)
        st = _stat(_local(path))
        return None if st is None else self.files.get((st.st_dev, st.st_ino))

    def inside(self, directory: str) -> str | None:
        """An input inside ``directory`` (which a replaced directory output would delete)."""
        top = os.path.realpath(_local(directory)) + os.sep
        return next((f for f in self.files.values()
                     if f != "<stdin>" and os.path.realpath(_local(f)).startswith(top)), None)


def _remote(path: str) -> bool:
    return fs.is_remote(path)


def _local(path: str) -> str:
    """A plain path, or the path of a ``file://`` URI."""
    return fs.locate(path).path if fs.is_uri(path) else path


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


@dataclass(frozen=True)
class Target:
    """A file (or, for parts, a directory) a command writes: its path, the option that named
    it, and the inputs it must never replace."""

    path: str
    option: str = ""  # "--junit": errors say which output they are about
    force: bool = False  # replace an existing file (never an input)
    inputs: Inputs = field(default_factory=Inputs)
    directory: bool = False  # a directory of parts (rows --engine dask)

    def __str__(self) -> str:
        shown = fs.display(self.path)
        return f"{self.option} {shown}" if self.option else shown

    @property
    def local(self) -> str:
        return _local(self.path)

    @property
    def parent(self) -> str:
        return os.path.dirname(self.local) or "."

    def check(self) -> None:
        """Refuse what could not or must not be written (before the run, and again at open)."""
        if self.path == "-":
            return
        src = self.inputs.holding(self.path)
        if src is not None:
            same = "" if os.path.abspath(src) == os.path.abspath(self.path) else f" ({src})"
            raise UsageError(f"{self}: is an input of this run{same}; write the output elsewhere")
        if _remote(self.path):
            return self._check_remote()
        st = _stat(self.local)
        if self.directory and st is not None and stat.S_ISDIR(st.st_mode):
            held = self.inputs.inside(self.path)
            if held is not None:
                raise UsageError(f"{self}: holds an input of this run ({held}); write the "
                                 f"output elsewhere")
        elif st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{self}: is a directory; name a file")
        elif st is not None and not stat.S_ISREG(st.st_mode):
            return  # a device or a pipe: written in place
        if os.path.lexists(self.local) and not self.force:
            raise UsageError(f"{self}: exists; use --force to replace it")
        if not os.path.isdir(self.parent):
            raise OutputError(f"{self}: directory {self.parent} does not exist")
        if not os.access(self.parent, os.W_OK | os.X_OK):
            raise OutputError(f"{self}: cannot write in directory {self.parent} "
                              f"(permission denied)")

    def _check_remote(self) -> None:
        loc = fs.locate(self.path)
        if loc.readonly:
            raise UsageError(f"{self}: http(s) URLs are read-only; write elsewhere")
        if self.exists() and not self.force:
            raise UsageError(f"{self}: exists; use --force to replace it")
        if fs.is_object_store(self.path):  # no directories there: the bucket must exist
            what, parent = "bucket", loc.path.split("/", 1)[0]
        else:
            what, parent = "directory", loc.path.rpartition("/")[0] or "/"
        if fs.info(loc.uri(parent)).type.name == "NotFound":
            raise OutputError(f"{self}: {what} {parent} does not exist")

    def exists(self) -> bool:
        """Whether something is at the destination (for a directory of parts on object
        storage: any object under it)."""
        if not _remote(self.path):
            return os.path.lexists(self.local)
        kind = fs.info(self.path).type.name
        return kind == "File" or (self.directory and kind == "Directory")

    def error(self, e: OSError) -> OutputError:
        """An OSError while writing, told with the path the user gave (not the partial file's)."""
        if _remote(self.path):
            return OutputError(fs.redact(f"{self}: cannot write: {fs.cause(e)}"))
        reason = e.strerror or str(e)
        if e.errno == errno.ENOENT:
            reason = f"directory {self.parent} does not exist"
        return OutputError(f"{self}: cannot write: {reason}")

    def appeared(self) -> UsageError:
        return UsageError(f"{self}: a file appeared there while lossctl was writing it (another "
                          f"run?); it was left alone (use --force to replace it)")


class Outputs:
    """The files one command writes, checked together against its inputs before it reads any."""

    def __init__(self, inputs: Iterable[str | None], force: bool = False) -> None:
        self.force = force
        self.inputs = Inputs.of(p for p in inputs if p)
        self._claimed: dict[str, str] = {}

    def claim(self, path: str, option: str = "", directory: bool = False) -> Target:
        target = Target(path, option, self.force, self.inputs, directory)
        if path != "-":
            name = path if _remote(path) else os.path.realpath(_local(path))
            if name in self._claimed:
                raise UsageError(f"{target}: also the {self._claimed[name]} output; give each "
                                 f"output its own file")
            self._claimed[name] = option or path
        target.check()
        return target


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_NOT_SUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


@functools.lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    """libc's renameat2 (Linux, glibc >= 2.28), or None."""
    try:
        import ctypes

        f = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    f.restype = ctypes.c_int
    return f


def rename_no_replace(src: str, dst: str) -> None:
    """Give ``src`` (a file or a directory) the name ``dst``; FileExistsError if ``dst`` exists.

    ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it,
    else a hard link and an unlink, else (no hard links: FAT, some network
    file systems; or a directory) the name reserved with ``O_EXCL`` (or
    ``mkdir``) and then replaced: ``dst`` is never another's file.
    """
    f = _renameat2()
    if f is not None:
        import ctypes

        if f(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NOT_SUPPORTED:
            raise OSError(err, os.strerror(err), dst)
    if os.path.isdir(src):
        os.mkdir(dst)  # FileExistsError if taken; an empty directory is replaced by a rename
        os.replace(src, dst)
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(src, dst)
        return
    os.unlink(src)


def _temporary(path: str) -> str:
    """``dir/.NAME.lossctl-PID.partial`` beside ``dir/NAME`` (skipped by directory listings)."""
    head, _, tail = path.rpartition("/")
    name = f".{tail}.lossctl-{os.getpid()}.partial"
    return f"{head}/{name}" if head else name


@contextlib.contextmanager
def _committing(output: OutputFile | RowParts) -> Iterator[None]:
    """The last step of an output: on any error its partial file or directory goes, and an
    OSError names the user's path (``FileExistsError``: another run or file got there first)."""
    try:
        yield
    except FileExistsError:
        output.abort()
        raise output.target.appeared() from None
    except OSError as e:
        output.abort()
        raise output.target.error(e) from None
    except BaseException:
        output.abort()
        raise


class OutputFile:
    """One output being written: ``.NAME.lossctl-PID.partial`` beside it until :meth:`commit`.

    ``direct`` writes straight to the destination (a part inside a directory
    that is itself committed whole, :class:`RowParts`).
    """

    def __init__(self, target: Target | str, direct: bool = False) -> None:
        self.target = target if isinstance(target, Target) else Target(target)
        self.loc = fs.locate(self.target.path) if _remote(self.target.path) else None
        self.direct = direct
        if not direct:
            self.target.check()
        try:
            if self.loc is not None:
                self.tmp: str | None = None if direct else _temporary(self.loc.path)
                self.file: IO[bytes] = self.loc.fs.open_output_stream(  # type: ignore[assignment]
                    self.tmp or self.loc.path)
                return
            path = self.target.local
            st = _stat(path)
            if direct or (st is not None and not stat.S_ISREG(st.st_mode)):
                self.tmp = None  # a part, a device or a pipe: written in place
            else:
                self.tmp = _temporary(os.path.abspath(path))
            self.file = open(self.tmp or path, "wb")  # noqa: SIM115 (commit/abort close it)
        except OSError as e:
            raise self.target.error(e) from None

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:
            self.abort()
            raise self.target.error(e) from None

    def commit(self) -> None:
        """Flush to disk and give the file its name; on any error remove it and say why."""
        with _committing(self):
            self.file.flush()
            if self.tmp is not None and self.loc is None:
                os.fsync(self.file.fileno())  # a full disk can first show here
            self.file.close()  # (an object: completes the upload, under the temporary name)
            if self.tmp is not None:
                self._name()

    def _name(self) -> None:
        assert self.tmp is not None
        if self.target.inputs.holding(self.target.path) is not None:  # became an input (a link)
            self.target.check()
        if self.loc is not None:
            if not self.target.force and self.target.exists():
                raise FileExistsError(errno.EEXIST, "exists", self.target.path)
            self.loc.fs.move(self.tmp, self.loc.path)
            return
        path = self.target.local
        if self.target.force:
            os.replace(self.tmp, path)
        else:
            rename_no_replace(self.tmp, path)
        _sync_directory(os.path.dirname(os.path.abspath(path)))

    def abort(self) -> None:
        """Drop the partial file (the destination is untouched)."""
        try:
            self.file.close()
        except OSError:  # flushing the buffer failed again (a full disk): it goes anyway
            pass
        written = self.tmp if self.tmp is not None else \
            (self.loc.path if self.loc is not None else self.target.local) if self.direct else None
        if written is None:  # a device or a pipe: nothing of ours to remove
            return
        try:
            if self.loc is None:
                os.unlink(written)
            else:
                self.loc.fs.delete_file(written)
        except OSError:
            pass


def _sync_directory(path: str) -> None:
    """Make a new name in ``path`` durable too (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_bytes(target: Target | str, data: bytes) -> None:
    """Write a whole (small) output at once, all or nothing."""
    out = OutputFile(target)
    try:
        out.write(data)
        out.commit()
    except BaseException:
        out.abort()
        raise


def write_json(target: Target | str, data: Any) -> None:
    write_bytes(target, json.dumps(data, separators=(",", ":")).encode())


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

    ``direct`` writes straight to the destination (a part inside a directory
    that is itself committed whole, :class:`RowParts`).
    """

    def __init__(self, target: Target | str, many_files: bool, direct: bool = False) -> None:
        self.target = target if isinstance(target, Target) else Target(target)
        self.format = output_format(self.target.path)
        self.many_files = many_files
        self.rows = 0
        self._out = OutputFile(self.target, direct) if self.target.path != "-" else None
        self._writer: Any = None

    @property
    def path(self) -> str:
        return self.target.path

    @property
    def _sink(self) -> IO[bytes]:
        return self._out.file if self._out is not None else sys.stdout.buffer

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
                if self.format != "parquet" and pa.types.is_nested(col.type):
                    raise UsageError(f"--keep {name!r} is {col.type}, which a "
                                     f"{self.format.upper()} file cannot hold; write Parquet "
                                     f"(-o FILE.parquet) to keep it")
                arrays.append(col)
                names.append(name)
        for key, v in values.items():
            arrays.append(arrow.from_numpy(np.asarray(v, dtype=np.float64), valid=~np.isnan(v)))
            names.append(key)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        with self._errors():
            if self._writer is None:
                self._open(batch.schema)
            elif batch.schema != self._writer_schema:
                batch = batch.cast(self._writer_schema)
            self._writer.write_batch(batch)
        self.rows += len(rows)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A write error of the file (not of stdout) names the output the user gave."""
        try:
            yield
        except OSError as e:
            if self._out is None:
                raise
            raise self.target.error(e) from None

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
        with self._errors():
            if self._writer is not None:
                self._writer.close()
        if self._out is not None:
            self._out.commit()
        else:
            sys.stdout.buffer.flush()

    def abort(self) -> None:
        """Drop the partial file (the destination is untouched)."""
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:  # the run already failed; the partial file goes anyway
            pass
        if self._out is not None:
            self._out.abort()


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

    def __init__(self, target: Target | str, many_files: bool) -> None:
        self.target = target if isinstance(target, Target) else Target(target, directory=True)
        self.path = self.target.path.rstrip("/") or self.target.path
        low = self.path.lower()
        self.ext = next((e for e in (".csv", ".tsv") if low.endswith(e)), ".parquet")
        self.many_files = many_files
        self.force = self.target.force
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
        """Every part is written: give the directory its name (never over another's, unless
        ``force``)."""
        self.names, self.rows = names, rows
        with _committing(self):
            if not self.force and self.target.exists():
                raise FileExistsError(errno.EEXIST, "exists", self.path)
            if self.target.inputs.holding(self.path) or (self.loc is None and
                                                         self.target.inputs.inside(self.path)):
                self.target.check()  # an input appeared there meanwhile: refused
            if self.loc is None:
                if self.force and os.path.isdir(self.path):
                    shutil.rmtree(self.path)
                elif self.force and os.path.lexists(self.path):
                    os.unlink(self.path)
                rename_no_replace(self.tmp, self.path)
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

    def abort(self) -> None:
        """Remove the temporary directory and every part in it."""
        try:
            if self.loc is None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.loc.fs.delete_dir(self.tmp)
        except OSError:
            pass
