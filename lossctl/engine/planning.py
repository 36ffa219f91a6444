"""Planning a run: inputs -> files -> work units, the joined file, and the losses bound.

:class:`Plan` checks a request before anything is read, opens its files
(globs, directories and prefixes expanded in sorted order), reads the fixed
sample of first rows that the automatic loss choice looks at, opens the
joined file, and cuts the files into work units (:mod:`.units`).  The local
engine reads the units itself, in order; the Dask engine first binds the
losses from the stream's first chunk (:meth:`Plan.bind`), exactly as the
local engine's first chunk would, then ships the plan's units to workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.losses import parse_loss_list
from ..core.state import EvalState
from ..errors import UsageError
from ..io import fs
from ..io.reader import open_reader
from ..io.sources import Source, expand_distinct, open_source
from .chunks import role_array
from .plan import DEFAULT_CHUNK_ROWS, MAX_CHUNK_ROWS, Binding, Columns, Request
from .scan import Scan, sample
from .units import Unit, count_csv_range, csv_ranges, parquet_parts, whole_files

if TYPE_CHECKING:
    from .joins import JoinStats, KeyJoin, RowJoin

# (source, cut, next cut) -> (start, end, records, safe), run where the engine runs
RangeCounter = Callable[[list[tuple[Source, int, int]]], list[tuple[int, int, int, bool]]]


class Plan:
    """A request checked and its inputs opened: files, sample, joined file, units."""

    def __init__(self, req: Request, per_row: bool = False) -> None:
        if req.chunk_rows is not None and not 1 <= req.chunk_rows <= MAX_CHUNK_ROWS:
            raise UsageError(f"--chunk-size must be between 1 and {MAX_CHUNK_ROWS:,} rows")
        if not 0 < req.confidence < 1:
            raise UsageError("--confidence must be between 0 and 1, e.g. 0.95")
        if req.ci_key and not req.ci:
            raise UsageError("--ci-key names the rows of the interval buckets; add --ci")
        if req.join is not None and req.join.missing not in ("error", "skip"):
            raise UsageError("--missing must be 'error' or 'skip'")
        if req.losses:  # catch unknown names and bad parameters before reading anything
            named = parse_loss_list(req.losses)
            if per_row:
                EvalState(named).check_per_row()
        if req.reference is not None and not req.leaderboard:
            raise UsageError("--reference names one of several models (-p A -p B, or --models)")
        if req.leaderboard:
            _refuse_with_models(req, per_row)
        self.req = req
        self.per_row = per_row
        self.sources = self._open(req.paths)
        if req.leaderboard and self.sources:
            self.req = expand_models(req, self.sources[0])
        self.join_sources = self._open(req.join.paths) if req.join is not None else []
        self.chosen = not req.losses

    def _open(self, paths: list[str]) -> list[Source]:
        """Every file, opened to decide its format; remote ones a few at a time (latency)."""
        req = self.req
        found = expand_distinct(paths)  # (a file reached twice would count its rows twice)

        def one(p: str) -> Source:
            return open_source(p, req.input_format, req.delimiter, req.header, req.max_record)

        if len(found) > 4 and any(fs.is_remote(p) for p in found):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16) as pool:
                return list(pool.map(one, found))
        return [one(p) for p in found]

    @property
    def inputs(self) -> list[str]:
        """The files a report names: the main files, and a comparison's candidate file."""
        names = [s.name for s in self.sources]
        if self.req.compare and self.req.join is not None:
            names += self.join_names
        return names

    @property
    def join_names(self) -> list[str]:
        return [s.name for s in self.join_sources]

    def sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        return sample(self.req, self.sources)

    def open_join(self, sources: Sequence[Source] | None = None) -> KeyJoin | RowJoin | None:
        """The joined file (or ``sources``): in memory by key, or streamed row by row."""
        j = self.req.join
        if j is None:
            return None
        from .joins import KeyJoin, RowJoin

        sources = list(self.join_sources if sources is None else sources)
        if j.key:
            return KeyJoin(sources, j.key, self.req.join_specs(), role_array,
                           self.req.chunk_rows or DEFAULT_CHUNK_ROWS)
        return RowJoin(sources, self.req.join_specs(), role_array, self.req.rows_for)

    def whole_files(self) -> list[Unit]:
        return whole_files(self.sources)

    def units(self, count: RangeCounter | None = None) -> list[Unit]:
        """The work units: files, with large ones split where their rows can be located.

        A row join (no ``--key``) pairs the files one to one and keeps them
        whole.  ``count`` runs the CSV counting pass (default: here).
        """
        req = self.req
        units = self.whole_files()
        if req.join is not None and not req.join.key:
            if len(self.join_sources) != len(self.sources):
                raise UsageError(
                    f"a row join on the Dask engine pairs the files one to one: "
                    f"{len(self.sources)} main file(s), {len(self.join_sources)} joined; "
                    f"join by --key, or use --engine local")
            return [replace(u, join=j) for u, j in zip(units, self.join_sources, strict=True)]
        out: list[Unit] = []
        todo: list[tuple[Unit, list[int]]] = []
        for u in units:
            s = u.source
            size = s.size or 0
            if s.path == "-" or size <= req.unit_bytes:
                out.append(u)
            elif s.format == "parquet":
                out.extend(parquet_parts(u, req.unit_bytes))
            elif s.compression is None:
                todo.append((u, csv_ranges(size, req.unit_bytes)))
                out.append(u)  # replaced below
            else:
                out.append(u)  # a compressed stream cannot be entered midway
        if todo:
            jobs = [(u.source, cuts[k], cuts[k + 1]) for u, cuts in todo for k in range(len(cuts) - 1)]
            counted = iter((count or _count_here)(jobs))
            for u, cuts in todo:
                parts = [next(counted) for _ in range(len(cuts) - 1)]
                i = out.index(u)
                out[i:i + 1] = _csv_parts(u, parts)
        return [replace(u, index=i) for i, u in enumerate(out)]

    def bind(self, units: list[Unit], join: KeyJoin | RowJoin | None
             ) -> tuple[Binding | None, Columns | None]:
        """The losses and widths of the run, from the stream's first chunk, and its columns.

        Reads only until the first chunk, as the local engine's first chunk
        decides (with the sample, when no loss is named).
        """
        scan = Scan(self.req, sample=self.sample(), join=join, join_names=self.join_names,
                    threads=1, per_row=self.per_row)
        scan.bind_only = True
        for unit in units:
            scan.read(unit)
            if scan.binding is not None:
                break
        return scan.binding, scan.columns


def _refuse_with_models(req: Request, per_row: bool) -> None:
    """What a leaderboard does not do (one model's views); said before anything is read."""
    if req.compare:
        raise UsageError("lossctl compare takes one -p (the candidate); score several models "
                         "against each other with lossctl eval -p A -p B --ci")
    given = [name for name, on in (("lossctl rows", per_row), ("--top", req.top),
                                   ("--quantiles", req.quantiles), ("--html", req.calibration))
             if on]
    if given:
        raise UsageError(f"{given[0]} works on one model, not on several (-p repeated, "
                         f"--models): run it once per model")


def expand_models(req: Request, source: Source) -> Request:
    """A leaderboard's models as column names of the first file, the reference first.

    Each ``-p`` selects one column (a list column holds a multiclass model's
    K values); ``--models`` adds every column its glob matches that is not
    a model named with ``-p`` or a column of another role (label, weight,
    ``--by``, ``--key``, ``--ci-key``).
    """
    reader = open_reader(source)
    models: list[str] = []
    for spec in req.preds:
        cols = reader.select(spec, "prediction column")
        if len(cols) != 1:
            raise UsageError(f"-p {spec!r} selects {len(cols)} columns; with several models "
                             f"each -p is one model's column (a multiclass model's K values: "
                             f"one list column, or evaluate it alone)")
        if cols[0] in models:
            raise UsageError(f"model {cols[0]!r} is given twice")
        models += cols
    if req.models_glob is not None:
        taken = set(models)
        others = [req.weight, req.by, req.ci_key, req.join.key if req.join else None]
        if req.join is None or req.join.role != "label":
            others.append(req.label)
        for spec in filter(None, others):
            taken.update(reader.select(spec))
        matched = [c for c in reader.select(req.models_glob, "prediction column") if c not in taken]
        if not matched:
            raise UsageError(f"--models {req.models_glob!r} matches no prediction column besides "
                             f"the -p models and the columns of other roles (label, weight, "
                             f"--by, --key, --ci-key)")
        models += matched
    reference = models[0] if req.reference is None else req.reference
    if reference not in models:
        raise UsageError(f"--reference {reference!r} is not one of the models: "
                         f"{', '.join(models)}")
    models = [reference] + [m for m in models if m != reference]
    return replace(req, pred=reference, preds=models, models_glob=None, reference=reference)


def joined_files(plan: Plan, stats: JoinStats | None) -> list[dict]:
    """Fingerprints of the joined file(s), their role and rows (known for one file)."""
    if plan.req.join is None or stats is None:
        return []
    from ..io.fingerprint import fingerprint

    rows = stats.rows if len(plan.join_sources) == 1 else None
    return [{**fingerprint(s), "role": plan.req.join.role, "rows": rows}
            for s in plan.join_sources]


def _count_here(jobs: list[tuple[Source, int, int]]) -> list[tuple[int, int, int, bool]]:
    return [count_csv_range(*job) for job in jobs]


def _csv_parts(unit: Unit, parts: list[tuple[int, int, int, bool]]) -> list[Unit]:
    """Byte-range units of one CSV, or the whole file when a range is unsafe to cut."""
    if not all(safe for *_, safe in parts) or len(parts) < 2:
        return [unit]
    out, first = [], 0
    for k, (start, end, records, _) in enumerate(parts):
        if k == 0 and unit.source.header:
            records = max(0, records - 1)  # the header line
        if end > start:
            out.append(replace(unit, first_row=first, byte_range=(start, end), rows=records))
        first += records
    return out


def ship(req: Request) -> Any:
    """The request as it travels to workers (without the caller's Dask client)."""
    return replace(req, client=None)
