"""One data set for the tests of issue 12 (trustworthy gates), written as CSV and as Parquet.

Columns: ``id`` (int row id), ``seg`` (int 1..12: natural order matters),
``name`` (text), ``y`` (label), ``old`` (the released model), ``worse``
(worse everywhere), ``seg7`` (as good as ``old`` except much worse in
slice 7), ``better`` (better everywhere), ``w`` (weights).  Files named
``preds`` (no extension: read by their bytes) sit in ``csv/`` and ``pq/`` so
that a report names the same input whatever the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conftest
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from cli_run import run

N = 3000


@dataclass
class Data:
    dir: Path
    df: pd.DataFrame
    csv: Path  # csv/preds
    parquet: Path  # pq/preds (Parquet bytes, the same base name)

    def col(self, name: str, rows: Any = slice(None)) -> np.ndarray:
        return self.df[name].to_numpy(np.float64)[rows]


def frame(seed: int = 12, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.normal(50.0, 10.0, n)
    seg = rng.integers(1, 13, n)
    e = rng.normal(0.0, 2.0, n)
    return pd.DataFrame({
        "id": rng.permutation(n) + 1000,
        "seg": seg,
        "name": rng.choice(["north", "south", "east"], n),
        "y": y,
        "old": y + e,
        "worse": y + e + rng.normal(0.0, 2.0, n),
        "seg7": y + np.where(seg == 7, 2.0 * e + rng.normal(0.0, 2.0, n), e),
        "better": y + 0.5 * e,
        "w": rng.uniform(0.5, 2.0, n),
    })


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV whose floats parse back to the very same bits (checked with pyarrow)."""
    conftest.write_csv(df, path)
    conftest.check_roundtrip(path, df, [c for c in df.columns if df[c].dtype == np.float64])


def make(d: Path, df: pd.DataFrame | None = None) -> Data:
    df = frame() if df is None else df
    (d / "csv").mkdir(parents=True)
    (d / "pq").mkdir()
    write_csv(df, d / "csv" / "preds")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / "pq" / "preds",
                   row_group_size=700)
    return Data(d, df, d / "csv" / "preds", d / "pq" / "preds")


def report(args: list[Any], code: int = 0, cwd: Path | None = None) -> dict:
    """Run in-process with ``-f json``, require exit ``code``, return the report."""
    r = run("runner", [*args, "-f", "json"], cwd=cwd)
    assert "Traceback" not in r.err
    assert r.code == code, f"exit {r.code} (wanted {code}): {r.err}"
    return json.loads(r.out)


def error(args: list[Any], mode: str = "runner", cwd: Path | None = None, fmt: bool = True) -> str:
    """Run, require exit 2, nothing on stdout, one ``lossctl: error:`` message; return it."""
    r = run(mode, [*args, "-f", "json"] if fmt else args, cwd=cwd)
    assert "Traceback" not in r.err
    assert r.code == 2, f"exit {r.code} (wanted 2): {r.out[:300]!r} {r.err!r}"
    assert r.out == ""
    assert r.err.startswith("lossctl: error: "), r.err
    return r.err
