"""Sharded prediction dumps for the object-storage and Dask tests.

A dump is a directory of shards (CSV, Parquet with several row groups, or
both), a label file to join by key, and the same data as one file.  Results
over the shards are compared bit for bit with results over local copies and
with the local engine, so the data only has to be realistic, not checked
against a reference here (the other test files do that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import write_csv

SEGMENTS = ["north", "south", "east", "west, far"]


def frame(n: int, seed: int, first_id: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seg = rng.choice(SEGMENTS, n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    if n:
        seg[rng.choice(n, max(1, n // 50), replace=False)] = None
    y = rng.normal(10.0, 4.0, n)
    return pd.DataFrame({"id": np.arange(first_id, first_id + n), "seg": seg,
                         "dev": rng.integers(0, 3, n), "y": y, "p": y + rng.standard_t(3, n),
                         "p2": y + rng.normal(0.0, 2.0, n), "w": rng.uniform(0.05, 3.0, n),
                         "z": (rng.uniform(size=n) < 0.3).astype(np.float64),
                         "prob": rng.uniform(0.01, 0.99, n)})


def write(df: pd.DataFrame, path: Path, row_group_size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path,
                       row_group_size=row_group_size)
    else:
        write_csv(df, path)
    return path


def dump(root: Path, fmt: str, sizes: list[int], seed: int = 7) -> list[Path]:
    """Shards ``part-00000.FMT``... of the given sizes under ``root``; ids run on across them."""
    paths, first = [], 1
    for i, n in enumerate(sizes):
        df = frame(n, seed + i, first)
        paths.append(write(df, root / f"part-{i:05d}.{fmt}"))
        first += n
    return paths


def labels_of(shards: list[Path], path: Path, seed: int = 99) -> Path:
    """A label file keyed by id, in shuffled order, with a few labels of unknown ids."""
    df = pd.concat([pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
                    for p in shards])
    labels = df[["id", "y"]].rename(columns={"y": "label"})
    extra = pd.DataFrame({"id": [10**9, 10**9 + 1], "label": [1.0, 2.0]})
    labels = pd.concat([labels, extra]).sample(frac=1.0, random_state=seed)
    return write(labels.reset_index(drop=True), path)
