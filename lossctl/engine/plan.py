"""Planning an evaluation: what to read (inputs, columns, options) and the engine's outcome.

A :class:`Request` is what a command asks for; :func:`resolve_columns`
applies its column specs to a file; :class:`Outcome` is what an engine hands
back (exact states, one per model, and what a report needs to name them).
Every engine (the local thread pool, Dask) takes the same request and gives
the same outcome.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.losses import Loss
from ..core.state import EvalState
from ..errors import InputError, UsageError
from ..io.reader import Reader, is_list
from ..io.sources import DEFAULT_MAX_RECORD

if TYPE_CHECKING:  # pyarrow.compute (imported by joins and slices) costs 40 ms of start-up
    from .joins import JoinStats

DEFAULT_CHUNK_ROWS = 1 << 16
MAX_CHUNK_ROWS = 1 << 30  # a chunk of more rows would not fit in memory anyway (8 GiB a column)
# Without --chunk-size a chunk holds at most this many values (8 MB of float64):
# a row of K=1000 logits makes chunks of 1,024 rows, not 65,536 (a 500 MB chunk).
CHUNK_VALUES = 1 << 20
SAMPLE_ROWS = 10_000  # the automatic loss choice looks at this many first rows of the stream
DEFAULT_MAX_SLICES = 10_000
MODEL_ROLE = "model:"  # roles of several models (eval -p a -p b): model:0 (the reference), ...


@dataclass
class JoinRequest:
    """A second file joined to the main one: by ``key``, or row by row."""

    paths: list[str]
    role: str  # "label" (eval --labels) or "candidate" (compare OLD NEW)
    key: str | None = None
    missing: str = "error"  # main rows without a match: "error" or "skip"


@dataclass
class Request:
    """What to evaluate: inputs, columns, losses and reading options.

    A comparison has two models: ``baseline_pred`` (the baseline's columns in
    the main file) and ``pred`` (the candidate's), or, joined from a second
    file, ``pred`` in both.  A leaderboard has several: ``preds`` (one column
    each, ``eval -p a -p b``) and the columns ``models_glob`` matches
    (``--models``); the plan turns both into column names, the
    ``reference`` model first (see :func:`expand_models`).
    """

    paths: list[str]
    label: str
    pred: str
    losses: list[str] = field(default_factory=list)
    weight: str | None = None
    nan: str = "error"
    chunk_rows: int | None = None  # None: from the row width (chunk_rows_for)
    input_format: str | None = None
    delimiter: str | None = None
    header: bool = True
    max_record: int = DEFAULT_MAX_RECORD  # bytes: the longest CSV record read
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    by: str | None = None
    max_slices: int = DEFAULT_MAX_SLICES
    ci: bool = False
    seed: int = 0
    confidence: float = 0.95
    top: tuple[str, int] | None = None
    keep: str | None = None
    baseline_pred: str | None = None
    join: JoinRequest | None = None
    quantiles: bool = False  # keep per-row distributions (--quantiles, --html)
    calibration: bool = False  # keep reliability bins of probabilities (--html)
    engine: str = "local"  # "local" (this machine's threads) or "dask"
    scheduler: str | None = None  # Dask: scheduler address (None: Dask's config, else a LocalCluster)
    unit_bytes: int = 128 << 20  # Dask: files larger than this are split into units
    client: Any = field(default=None, repr=False, compare=False)  # Dask: a Client of the caller's
    ci_key: str | None = None  # bucket rows by this row id column (--ci-key), not (file, row)
    preds: list[str] = field(default_factory=list)  # several models: one column spec each
    models_glob: str | None = None  # several models: every prediction column this glob matches
    reference: str | None = None  # the model the others are compared with (default: the first)

    @property
    def leaderboard(self) -> bool:
        """Several models scored against the same labels (eval -p a -p b, --models)."""
        return bool(self.preds) or self.models_glob is not None

    @property
    def compare(self) -> bool:
        return self.baseline_pred is not None or (self.join is not None and
                                                  self.join.role == "candidate")

    @property
    def models(self) -> list[str]:
        """The prediction roles, in order."""
        if self.leaderboard:
            return [f"{MODEL_ROLE}{i}" for i in range(len(self.preds))]
        return ["baseline", "candidate"] if self.compare else ["prediction"]

    @property
    def chooser(self) -> int:
        """The model whose predictions the automatic loss choice looks at (a candidate, else the first)."""
        return -1 if self.compare else 0

    def main_specs(self) -> dict[str, str]:
        """Column spec of each role read from the main files."""
        specs: dict[str, str] = {}
        if self.join is None or self.join.role != "label":
            specs["label"] = self.label
        if self.leaderboard:
            specs.update(zip(self.models, self.preds, strict=True))
        elif not self.compare:
            specs["prediction"] = self.pred
        elif self.join is None or self.join.role != "candidate":
            specs["baseline"] = self.baseline_pred or self.pred
            specs["candidate"] = self.pred
        else:
            specs["baseline"] = self.baseline_pred or self.pred
        return specs

    def rows_for(self, reader: Reader, columns: list[str]) -> int:
        """Rows per chunk for ``columns`` of this file: --chunk-size, else by the row width."""
        return self.chunk_rows or chunk_rows_for(reader.row_width(columns))

    def join_specs(self) -> dict[str, str]:
        if self.join is None:
            return {}
        return {"label": self.label} if self.join.role == "label" else {"candidate": self.pred}


@dataclass
class Columns:
    """The columns each role resolved to, and the width (K) each role has."""

    label: list[str]
    pred: list[str]
    weight: str | None
    label_width: int = 1  # K, known from the first chunk (a list column holds K values)
    pred_width: int = 1
    baseline: list[str] | None = None
    by: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    key: str | None = None
    roles: dict[str, list[str]] = field(default_factory=dict)  # main-file roles -> columns
    ci_key: str | None = None  # the row id column of the interval buckets (--ci-key)

    @property
    def _ids(self) -> list[str]:
        return [c for c in (self.key, self.ci_key) if c]

    @property
    def needed(self) -> list[str]:
        cols = [c for cs in self.roles.values() for c in cs] + self.by + self.keep + self._ids
        return list(dict.fromkeys(cols))

    @property
    def text(self) -> list[str]:
        """Columns read as they are (strings in CSV), not as numbers (slice keys aside).

        A role's column that is also kept or a slice key is read as text too;
        its numbers are converted from that text as the CSV reader converts
        them (:func:`lossctl.engine.chunks.text_to_float64`).
        """
        return [c for c in dict.fromkeys(self.keep + self._ids) if c not in self.by]

    def name(self, role: str, index: int | None) -> str:
        cols = self.roles.get(role) or {"label": self.label, "weight": [self.weight or ""],
                                        "key": [self.key or ""]}.get(role, self.pred)
        width = self.label_width if role == "label" else self.pred_width
        if index is None and len(cols) > 1:  # a rule on a whole row of K columns
            return f"{cols[0]}:{cols[-1]}"
        k = index or 0
        if len(cols) == 1 and width > 1:
            return cols[0] if index is None else f"{cols[0]}[{k}]"
        return cols[min(k, len(cols) - 1)]

    def role_of(self, column: str) -> str:
        for role, cols in self.roles.items():
            if column in cols:
                return role
        if column in self.by:
            return "--by column"
        return "key" if column == self.key else "--keep column"

    @property
    def models(self) -> list[str]:
        """The column of each model of a leaderboard, in order (the reference first); else []."""
        return [cs[0] for role, cs in self.roles.items() if role.startswith(MODEL_ROLE)]

    def same_as(self, other: Columns) -> bool:
        return self.roles == other.roles and (self.by, self.keep, self.key, self.ci_key) == \
            (other.by, other.keep, other.key, other.ci_key)


@dataclass
class Binding:
    """What the first chunk (and the sample) decide for a whole run: the losses and widths."""

    losses: list[Loss]
    label_width: int
    pred_width: int


@dataclass
class Outcome:
    """What one pass (or a merge of saved states) produced: exact states and their context."""

    states: list[EvalState]  # one per model: [prediction] or [baseline, candidate]
    inputs: list[str]
    columns: Columns
    losses_chosen: bool  # True when lossctl picked the losses (no -m given)
    join: JoinStats | None = None
    engine: dict[str, Any] | None = None  # which engine ran it: name, tasks, workers...
    # a fingerprint of every file read (see lossctl.io.fingerprint), with its role and rows
    input_files: list[dict] = field(default_factory=list)


Progress = Callable[[int, int], None]  # (done, total): bytes (local engine) or units (Dask)


def chunk_rows_for(width: int) -> int:
    """The default rows per chunk for rows of ``width`` values: memory is bounded by values, not rows."""
    return max(1, min(DEFAULT_CHUNK_ROWS, CHUNK_VALUES // max(1, width)))


def resolve_columns(reader: Reader, req: Request, specs: dict[str, str] | None = None) -> Columns:
    """Apply the column specs to one file's columns."""
    specs = req.main_specs() if specs is None else specs
    roles = {role: reader.select(spec, f"{role} column") for role, spec in specs.items()}
    weight = _one_column(reader, req.weight, "weight column", "the weight")
    if weight:
        roles["weight"] = [weight]
    numeric = [c for cs in roles.values() for c in cs]
    types = reader.schema_types
    for name in numeric:
        t = types.get(name)
        if t is not None and not (_numeric(t) or is_list(t) and _numeric(t.value_type)):
            raise InputError(f"{reader.source.name}: column {name!r} is {t}, not numeric (a role "
                             "takes numbers or a list of numbers)")
    by = reader.select(req.by, "--by column") if req.by else []
    for name in by:
        t = types.get(name)
        if t is not None and pa.types.is_nested(t):
            raise InputError(f"{reader.source.name}: --by column {name!r} is {t}: slices need "
                             "single values (numbers, text, dates)")
    keep = reader.select(req.keep, "--keep column") if req.keep else []
    key = _one_column(reader, req.join.key if req.join else None, "--key column", "the key")
    ci_key = _one_column(reader, req.ci_key, "--ci-key column", "--ci-key")
    if req.compare and key and not ci_key and req.ci:  # the key names the rows: it buckets them
        ci_key = key
    pred = roles.get(req.models[req.chooser]) or roles.get("baseline", [])
    label = roles.get("label", [])
    return Columns(label, pred, weight, baseline=roles.get("baseline"), by=by, keep=keep,
                   key=key, roles=roles, ci_key=ci_key)



def _one_column(reader: Reader, spec: str | None, what: str, name: str) -> str | None:
    """The column of a role that takes exactly one (the weight, a key), or None when not asked."""
    if not spec:
        return None
    cols = reader.select(spec, what)
    if len(cols) != 1:
        raise UsageError(f"{name} is one column; {spec!r} selects {len(cols)}")
    return cols[0]


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
        or pa.types.is_decimal(t) or pa.types.is_null(t)

