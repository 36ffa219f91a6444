"""Deterministic data files for ``bench/run.py`` and the reference values computed while writing.

Every file kind has a JSON manifest (sizes, seed, references); a file is
reused (``--keep DIR``) only if its manifest matches.  The references are
near-exact (:class:`FsumMean`), computed from the generated float64 values
independently of any tool under test.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

GENERATOR_VERSION = 1  # bump when the generated data changes (invalidates --keep)
BATCH_ROWS = 1_000_000  # generation batch == Parquet row group
N_CLASSES = 10
SEGMENTS = [f"s{k:02d}" for k in range(16)]
SLICES = [f"s{k:03d}" for k in range(100)]


def log(message: str) -> None:
    """Progress output goes to stderr, the report to stdout."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Dataset:
    """Generated files of one kind plus reference values computed while writing."""

    rows: int
    files: dict[str, str]
    reference: dict[str, float]
    # slices task only: per-slice {"rows": n, "mse": ..., "rmse": ..., "mae": ...}
    slices: dict[str, dict[str, float]] = field(default_factory=dict)


class FsumMean:
    """Mean of float64 terms, correctly rounded in practice.

    Each chunk's sum is kept as ``math.fsum`` plus the fsum of its residual
    (together exact to ~1e-32 relative); the mean is their exact rational sum
    divided by the count, rounded once.
    """

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.count = 0

    def add(self, terms: np.ndarray) -> None:
        """Add a chunk of terms."""
        values = terms.tolist()
        total = math.fsum(values)
        values.append(-total)
        self.partials += [total, math.fsum(values)]
        self.count += terms.size

    def mean(self) -> float:
        """Return the mean of all terms added so far."""
        return float(sum(map(Fraction, self.partials), Fraction(0)) / self.count)


class RegressionRef:
    """mse, rmse and mae of y vs p, accumulated batch by batch."""

    def __init__(self) -> None:
        self.sq, self.ab = FsumMean(), FsumMean()

    def add(self, y: np.ndarray, p: np.ndarray) -> None:
        diff = y - p
        self.sq.add(diff * diff)
        self.ab.add(np.abs(diff))

    def values(self) -> dict[str, float]:
        mse = self.sq.mean()
        return {"mse": mse, "rmse": math.sqrt(mse), "mae": self.ab.mean()}


def _batches(rows: int, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, int, int]]:
    """Yield (index, start, length) of the generation batches."""
    for index, start in enumerate(range(0, rows, batch_rows)):
        yield index, start, min(batch_rows, rows - start)


def regression_batch(seed: int, index: int, start: int, n: int) -> pa.RecordBatch:
    """One deterministic batch of id, segment, y, p, w."""
    rng = np.random.default_rng([seed, 0, index])
    y = rng.normal(100.0, 25.0, n)
    p = y + rng.normal(0.0, 5.0, n)
    w = rng.uniform(0.5, 2.0, n)
    codes = pa.array(rng.integers(0, len(SEGMENTS), n, dtype=np.int8))
    segment = pa.DictionaryArray.from_arrays(codes, pa.array(SEGMENTS))
    return pa.record_batch(
        {
            "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "segment": segment.dictionary_decode(),
            "y": pa.array(y),
            "p": pa.array(p),
            "w": pa.array(w),
        }
    )


def slices_batch(seed: int, index: int, start: int, n: int) -> pa.RecordBatch:
    """One deterministic batch of id, slice (100 values, random per row), y, p."""
    rng = np.random.default_rng([seed, 2, index])
    y = rng.normal(100.0, 25.0, n)
    p = y + rng.normal(0.0, 5.0, n)
    codes = pa.array(rng.integers(0, len(SLICES), n, dtype=np.int8))
    slice_ = pa.DictionaryArray.from_arrays(codes, pa.array(SLICES))
    return pa.record_batch(
        {
            "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "slice": slice_.dictionary_decode(),
            "y": pa.array(y),
            "p": pa.array(p),
        }
    )


def multiclass_batch(
    seed: int, index: int, n: int, classes: int = N_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic batch: labels (n,) and logits (classes, n)."""
    rng = np.random.default_rng([seed, 1, index] if classes == N_CLASSES else [seed, 1, index, classes])
    label = rng.integers(0, classes, n, dtype=np.int64)
    logits = rng.normal(0.0, 2.0, (classes, n))
    logits[label, np.arange(n)] += 2.0  # make the true class more likely
    return label, logits


def softmax_ce(label: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-row sparse softmax cross-entropy of logits laid out (classes, n)."""
    row_max = logits.max(axis=0)
    lse = row_max + np.log(np.exp(logits - row_max).sum(axis=0))
    return lse - logits[label, np.arange(label.size)]


def _load_manifest(path: Path, rows: int, seed: int) -> Dataset | None:
    """Return the cached dataset described by ``path`` if it is still valid."""
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    if (meta.get("version"), meta.get("rows"), meta.get("seed")) != (
        GENERATOR_VERSION,
        rows,
        seed,
    ):
        return None
    if not all(Path(f).exists() for f in meta["files"].values()):
        return None
    return Dataset(rows, meta["files"], meta["reference"], meta.get("slices", {}))


def _save_manifest(path: Path, seed: int, dataset: Dataset) -> None:
    """Write the manifest last, so a crash mid-generation is never cached."""
    meta = {"version": GENERATOR_VERSION, "seed": seed, **asdict(dataset)}
    path.write_text(json.dumps(meta, indent=1))


def _cached(directory: Path, stem: str, rows: int, seed: int, what: str) -> tuple[Path, Dataset | None]:
    manifest = directory / f"{stem}.json"
    cached = _load_manifest(manifest, rows, seed)
    if cached:
        log(f"reusing {what} in {directory}")
    return manifest, cached


def _gzip(path: Path) -> Path:
    """``path`` compressed to ``path.gz`` (level 6, as gzip's default); the plain file is removed."""
    out = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    path.unlink()
    return out


def make_regression(
    directory: Path,
    rows: int,
    seed: int,
    stem: str,
    formats: tuple[str, ...] = ("csv", "parquet"),
    row_group: int = BATCH_ROWS,
) -> Dataset:
    """Write the regression file in ``formats`` (csv, csv.gz, parquet) or reuse them.

    Parquet row groups hold ``row_group`` rows.  Same seed, same values in
    every format and size prefix.
    """
    names = {f: directory / f"{stem}.{f}" for f in formats}
    manifest, cached = _cached(directory, stem, rows, seed, ", ".join(p.name for p in names.values()))
    if cached and set(cached.files) == set(formats):
        return cached
    log(f"generating {rows:,} regression rows -> {', '.join(p.name for p in names.values())}")
    started = time.perf_counter()
    ref = RegressionRef()
    schema = regression_batch(seed, 0, 0, 1).schema
    plain = directory / f"{stem}.tmp.csv"  # compressed once written
    csv_path = names.get("csv") or (plain if "csv.gz" in names else None)
    csv_writer = pacsv.CSVWriter(csv_path, schema) if csv_path else None
    pq_writer = pq.ParquetWriter(names["parquet"], schema) if "parquet" in names else None
    try:
        for index, start, n in _batches(rows):
            batch = regression_batch(seed, index, start, n)
            if csv_writer:
                csv_writer.write_batch(batch)
            if pq_writer:
                pq_writer.write_batch(batch, row_group_size=row_group)
            ref.add(batch.column("y").to_numpy(), batch.column("p").to_numpy())
    finally:
        for w in (csv_writer, pq_writer):
            if w:
                w.close()
    if "csv.gz" in names:
        if csv_path != plain:
            shutil.copyfile(csv_path, plain)
        _gzip(plain).rename(names["csv.gz"])
    files = {f: str(p) for f, p in names.items()}
    dataset = Dataset(rows, files, ref.values())
    _save_manifest(manifest, seed, dataset)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    return dataset


def make_multiclass(directory: Path, rows: int, seed: int) -> Dataset:
    """Write the multiclass Parquet file (or reuse it) and compute the reference."""
    stem = f"multiclass-{rows}"
    manifest, cached = _cached(directory, stem, rows, seed, f"{stem}.parquet")
    if cached:
        return cached
    log(f"generating {rows:,} multiclass rows -> {stem}.parquet")
    started = time.perf_counter()
    path = directory / f"{stem}.parquet"
    ce = FsumMean()
    names = ["label"] + [f"logit_{k}" for k in range(N_CLASSES)]
    schema = pa.schema([(name, pa.int64() if k == 0 else pa.float64()) for k, name in enumerate(names)])
    with pq.ParquetWriter(path, schema) as writer:
        for index, _, n in _batches(rows):
            label, logits = multiclass_batch(seed, index, n)
            writer.write_batch(
                pa.record_batch([label, *logits], schema=schema),
                row_group_size=BATCH_ROWS,
            )
            ce.add(softmax_ce(label, logits))
    dataset = Dataset(rows, {"multiclass": str(path)}, {"sparse_softmax_ce": ce.mean()})
    _save_manifest(manifest, seed, dataset)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    return dataset


def make_wide(directory: Path, rows: int, classes: int, seed: int) -> Dataset:
    """``label`` and a ``logits`` list column of ``classes`` values per row, in ONE row group.

    The file's single row group is as large as the data (800 MB of values at
    100k x 1000): a reader that takes a row group whole cannot bound memory.
    """
    stem = f"wide-{rows}x{classes}"
    manifest, cached = _cached(directory, stem, rows, seed, f"{stem}.parquet")
    if cached:
        return cached
    log(f"generating {rows:,} rows x {classes} logits (one row group) -> {stem}.parquet")
    started = time.perf_counter()
    path = directory / f"{stem}.parquet"
    ce = FsumMean()
    schema = pa.schema([("label", pa.int64()), ("logits", pa.list_(pa.float64()))])
    step = max(1, (1 << 22) // classes)  # generate 32 MB at a time
    with pq.ParquetWriter(path, schema) as writer:
        parts = []
        for index, _, n in _batches(rows, step):
            label, logits = multiclass_batch(seed, index, n, classes)
            values = pa.array(np.ascontiguousarray(logits.T).reshape(-1))
            offsets = pa.array(np.arange(n + 1, dtype=np.int32) * classes)
            parts.append(
                pa.record_batch([pa.array(label), pa.ListArray.from_arrays(offsets, values)], schema=schema)
            )
            ce.add(softmax_ce(label, logits))
        writer.write_table(pa.Table.from_batches(parts, schema), row_group_size=rows)
    dataset = Dataset(rows, {"wide": str(path)}, {"sparse_softmax_ce": ce.mean()})
    _save_manifest(manifest, seed, dataset)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    return dataset


def make_join(directory: Path, rows: int, seed: int, key: str) -> Dataset:
    """Predictions ``id, p`` and labels ``id, y`` in two Parquet files, rows in different orders.

    ``key`` is ``int`` (int64 ids) or ``str`` (ids as text, ``"u000001234"``).
    Every prediction has exactly one label: the reference is mse/rmse/mae of
    the joined pairs.
    """
    stem = f"join-{key}-{rows}"
    manifest, cached = _cached(directory, stem, rows, seed, f"{stem}-preds/labels.parquet")
    if cached:
        return cached
    log(f"generating {rows:,} x {rows:,} join rows ({key} keys) -> {stem}-preds/labels.parquet")
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 3, rows])
    y = rng.normal(100.0, 25.0, rows)  # by id
    p = y + rng.normal(0.0, 5.0, rows)
    ref = RegressionRef()
    ref.add(y, p)
    files = {}
    for name, values, column in (("preds", p, "p"), ("labels", y, "y")):
        order = rng.permutation(rows)
        ids = pa.array(order.astype(np.int64))
        if key == "str":
            ids = pc.binary_join_element_wise("u", pc.utf8_lpad(ids.cast(pa.string()), 9, "0"), "")
        path = directory / f"{stem}-{name}.parquet"
        table = pa.table({"id": ids, column: pa.array(values[order])})
        pq.write_table(table, path, row_group_size=BATCH_ROWS)
        files[name] = str(path)
    dataset = Dataset(rows, files, ref.values())
    _save_manifest(manifest, seed, dataset)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    return dataset


def make_slices(directory: Path, rows: int, seed: int, formats: tuple[str, ...] = ("parquet",)) -> Dataset:
    """Write the slices file(s) (or reuse them); overall and per-slice references."""
    stem = f"slices-{rows}" if formats == ("parquet",) else f"slices-{rows}-{'-'.join(formats)}"
    manifest = directory / f"{stem}.json"
    cached = _load_manifest(manifest, rows, seed)
    names = {f: directory / f"{stem}.{f}" for f in formats}
    if cached and cached.slices and set(cached.files) == set(formats):
        log(f"reusing {', '.join(p.name for p in names.values())} in {directory}")
        return cached
    log(f"generating {rows:,} rows with {len(SLICES)} slices -> {', '.join(p.name for p in names.values())}")
    started = time.perf_counter()
    ref = RegressionRef()
    per_slice = [RegressionRef() for _ in SLICES]
    schema = slices_batch(seed, 0, 0, 1).schema
    pq_writer = pq.ParquetWriter(names["parquet"], schema) if "parquet" in names else None
    csv_writer = pacsv.CSVWriter(names["csv"], schema) if "csv" in names else None
    try:
        for index, start, n in _batches(rows):
            batch = slices_batch(seed, index, start, n)
            if pq_writer:
                pq_writer.write_batch(batch, row_group_size=BATCH_ROWS)
            if csv_writer:
                csv_writer.write_batch(batch)
            y, p = batch.column("y").to_numpy(), batch.column("p").to_numpy()
            ref.add(y, p)
            # Group the terms by slice: codes are re-derived from the strings.
            codes = pc.index_in(batch.column("slice"), pa.array(SLICES)).to_numpy()
            order = np.argsort(codes, kind="stable")
            bounds = np.cumsum(np.bincount(codes, minlength=len(SLICES)))[:-1]
            for k, (ys, ps) in enumerate(
                zip(np.split(y[order], bounds), np.split(p[order], bounds), strict=True)
            ):
                per_slice[k].add(ys, ps)
    finally:
        for w in (csv_writer, pq_writer):
            if w:
                w.close()
    slices = {}
    for name, r in zip(SLICES, per_slice, strict=True):
        if r.sq.count:
            slices[name] = {"rows": r.sq.count, **r.values()}
    dataset = Dataset(rows, {f: str(p) for f, p in names.items()}, ref.values(), slices)
    _save_manifest(manifest, seed, dataset)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    return dataset


def write_tiny_csv(directory: Path, seed: int) -> Dataset:
    """A 10-row CSV for the start-up task (same schema as the big one)."""
    batch = regression_batch(seed, 10**6, 0, 10)
    path = directory / "tiny-10.csv"
    pacsv.write_csv(pa.Table.from_batches([batch]), path)
    ref = RegressionRef()
    ref.add(batch.column("y").to_numpy(), batch.column("p").to_numpy())
    return Dataset(10, {"csv": str(path)}, ref.values())
