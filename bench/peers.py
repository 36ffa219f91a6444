"""Peer implementations timed by ``bench/run.py``, one per subprocess.

Usage: ``python bench/peers.py TOOL KIND FILE [LABELS]`` where TOOL is one of
polars, duckdb, pandas, naive and KIND is

* ``csv``, ``parquet``: mse, rmse, mae of y vs p (the format comes from the
  file's extension: ``.csv``, ``.csv.gz`` or ``.parquet``);
* ``multiclass``: sparse softmax cross-entropy of ``label`` vs ``logit_0..9``;
* ``slices``: mse, rmse, mae of y vs p per value of the ``slice`` column;
* ``wide``: sparse softmax cross-entropy of ``label`` vs a ``logits`` list column;
* ``join``: mse, rmse, mae of ``y`` from LABELS vs ``p`` from FILE, joined on ``id``.

slices, wide and join: polars and duckdb only.
Prints ``{"tool", "versions", "rows", "values"}`` as JSON on stdout; slices
also ``"slices": {VALUE: {"rows", "mse", "rmse", "mae"}}`` (``values`` empty).

Only the standard library is imported at module level: each tool imports its
own libraries, so a child's wall time and peak RSS cover that tool alone.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

N_CLASSES = 10
LOGITS = [f"logit_{k}" for k in range(N_CLASSES)]
REGRESSION_COLUMNS = ["y", "p"]

Result = dict[str, Any]


def _regression(rows: int, mse: float, mae: float) -> Result:
    """Package regression values the same way for every peer."""
    return {"rows": rows, "values": {"mse": mse, "rmse": math.sqrt(mse), "mae": mae}}


def _multiclass(rows: int, ce: float) -> Result:
    """Package the multiclass value the same way for every peer."""
    return {"rows": rows, "values": {"sparse_softmax_ce": ce}}


def _slices(keys: list[str], rows: list[int], mse: list[float], mae: list[float]) -> Result:
    """Package per-slice values the same way for every peer."""
    slices = {
        str(k): {"rows": int(n), "mse": m, "rmse": math.sqrt(m), "mae": a}
        for k, n, m, a in zip(keys, rows, mse, mae, strict=True)
    }
    return {"rows": sum(int(n) for n in rows), "values": {}, "slices": slices}


def _sql_string(text: str) -> str:
    """Quote a string literal for SQL."""
    return "'" + text.replace("'", "''") + "'"


def _is_csv(path: str) -> bool:
    return path.endswith((".csv", ".csv.gz"))


# kinds only polars and DuckDB implement (the others are skipped there)
POLARS_DUCKDB_ONLY = ("slices", "wide", "join")


# --- polars: lazy scan + streaming engine ------------------------------------


def run_polars(kind: str, path: str, labels: str | None = None) -> Result:
    """Lazy scan_csv/scan_parquet collected with the streaming engine."""
    import polars as pl

    scan = pl.scan_csv(path) if _is_csv(path) else pl.scan_parquet(path)
    if kind == "join":
        scan = scan.join(pl.scan_parquet(labels), on="id", how="inner")
    if kind == "wide":
        logits = pl.col("logits")
        lse = logits.list.eval(
            pl.element().max() + (pl.element() - pl.element().max()).exp().sum().log()
        ).list.first()
        out = scan.select(rows=pl.len(), ce=(lse - logits.list.get(pl.col("label"))).mean()).collect(
            engine="streaming"
        )
        result = _multiclass(out["rows"][0], out["ce"][0])
    elif kind == "slices":
        diff = pl.col("y") - pl.col("p")
        out = (
            scan.group_by("slice")
            .agg(rows=pl.len(), mse=(diff * diff).mean(), mae=diff.abs().mean())
            .collect(engine="streaming")
        )
        result = _slices(
            out["slice"].to_list(), out["rows"].to_list(), out["mse"].to_list(), out["mae"].to_list()
        )
    elif kind in ("csv", "parquet", "join"):
        diff = pl.col("y") - pl.col("p")
        out = scan.select(rows=pl.len(), mse=(diff * diff).mean(), mae=diff.abs().mean()).collect(
            engine="streaming"
        )
        result = _regression(out["rows"][0], out["mse"][0], out["mae"][0])
    else:
        logits = [pl.col(name) for name in LOGITS]
        row_max = pl.max_horizontal(logits)
        lse = row_max + pl.sum_horizontal([(c - row_max).exp() for c in logits]).log()
        picked = pl.coalesce([pl.when(pl.col("label") == k).then(c) for k, c in enumerate(logits)])
        out = scan.select(rows=pl.len(), ce=(lse - picked).mean()).collect(engine="streaming")
        result = _multiclass(out["rows"][0], out["ce"][0])
    result["versions"] = {"polars": pl.__version__}
    return result


# --- DuckDB: one SQL query ----------------------------------------------------


def run_duckdb(kind: str, path: str, labels: str | None = None) -> Result:
    """A single aggregate SQL query over read_csv/read_parquet."""
    import duckdb

    reader = f"read_csv({_sql_string(path)})" if _is_csv(path) else f"read_parquet({_sql_string(path)})"
    if kind == "join":
        assert labels is not None
        reader = f"{reader} JOIN read_parquet({_sql_string(labels)}) USING (id)"
    con = duckdb.connect()
    if kind == "wide":
        sql = (
            "SELECT count(*), avg(m + ln(list_sum(list_transform(logits, lambda v: exp(v - m)))) "
            f"- logits[label + 1]) FROM (SELECT label, logits, list_max(logits) AS m FROM {reader})"
        )
        rows, ce = con.execute(sql).fetchone()
        result = _multiclass(rows, ce)
    elif kind == "slices":
        sql = f"SELECT slice, count(*), avg((y-p)^2), avg(abs(y-p)) FROM {reader} GROUP BY slice"
        keys, rows, mse, mae = zip(*con.execute(sql).fetchall(), strict=True)
        result = _slices(list(keys), list(rows), list(mse), list(mae))
    elif kind in ("csv", "parquet", "join"):
        sql = f"SELECT count(*), avg((y-p)^2), sqrt(avg((y-p)^2)), avg(abs(y-p)) FROM {reader}"
        rows, mse, rmse, mae = con.execute(sql).fetchone()
        result: Result = {
            "rows": rows,
            "values": {"mse": mse, "rmse": rmse, "mae": mae},
        }
    else:
        exps = " + ".join(f"exp({name} - m)" for name in LOGITS)
        picked = " ".join(f"WHEN {k} THEN {name}" for k, name in enumerate(LOGITS))
        sql = (
            f"SELECT count(*), avg(m + ln({exps}) - CASE label {picked} END) "
            f"FROM (SELECT *, greatest({', '.join(LOGITS)}) AS m FROM {reader})"
        )
        rows, ce = con.execute(sql).fetchone()
        result = _multiclass(rows, ce)
    result["versions"] = {"duckdb": duckdb.__version__}
    return result


# --- pandas + scikit-learn: load everything, then sklearn.metrics ------------


def run_pandas(kind: str, path: str, labels: str | None = None) -> Result:
    """pandas.read_csv/read_parquet, then scikit-learn metrics in memory."""
    import pandas as pd
    import scipy
    import sklearn
    from sklearn import metrics

    if kind in ("csv", "parquet"):
        if _is_csv(path):
            frame = pd.read_csv(path, usecols=REGRESSION_COLUMNS)
        else:
            frame = pd.read_parquet(path, columns=REGRESSION_COLUMNS)
        y, p = frame["y"].to_numpy(), frame["p"].to_numpy()
        result: Result = {
            "rows": len(frame),
            "values": {
                "mse": float(metrics.mean_squared_error(y, p)),
                "rmse": float(metrics.root_mean_squared_error(y, p)),
                "mae": float(metrics.mean_absolute_error(y, p)),
            },
        }
    else:
        from scipy.special import softmax

        frame = pd.read_parquet(path)
        proba = softmax(frame[LOGITS].to_numpy(), axis=1)
        ce = metrics.log_loss(frame["label"].to_numpy(), proba, labels=range(N_CLASSES))
        result = _multiclass(len(frame), float(ce))
    result["versions"] = {
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
    }
    return result


# --- naive pyarrow: batch reader + numpy --------------------------------------


def run_naive(kind: str, path: str, labels: str | None = None) -> Result:
    """pyarrow.csv.open_csv / ParquetFile.iter_batches with numpy per batch."""
    import numpy as np
    import pyarrow as pa

    if _is_csv(path):
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            include_columns=REGRESSION_COLUMNS,
            column_types={name: pa.float64() for name in REGRESSION_COLUMNS},
        )
        batches = pacsv.open_csv(path, convert_options=convert)
    else:
        import pyarrow.parquet as pq

        columns = REGRESSION_COLUMNS if kind == "parquet" else ["label", *LOGITS]
        batches = pq.ParquetFile(path).iter_batches(columns=columns)

    rows = 0
    if kind in ("csv", "parquet"):
        sq_sum = abs_sum = 0.0
        for batch in batches:
            diff = batch.column("y").to_numpy() - batch.column("p").to_numpy()
            sq_sum += float(np.sum(diff * diff))
            abs_sum += float(np.sum(np.abs(diff)))
            rows += batch.num_rows
        result = _regression(rows, sq_sum / rows, abs_sum / rows)
    else:
        ce_sum = 0.0
        for batch in batches:
            logits = np.stack([batch.column(name).to_numpy() for name in LOGITS])
            label = batch.column("label").to_numpy()
            row_max = logits.max(axis=0)
            lse = row_max + np.log(np.exp(logits - row_max).sum(axis=0))
            ce_sum += float(np.sum(lse - logits[label, np.arange(batch.num_rows)]))
            rows += batch.num_rows
        result = _multiclass(rows, ce_sum / rows)
    result["versions"] = {"pyarrow": pa.__version__, "numpy": np.__version__}
    return result


PEERS: dict[str, Callable[[str, str, str | None], Result]] = {
    "polars": run_polars,
    "duckdb": run_duckdb,
    "pandas": run_pandas,
    "naive": run_naive,
}


def main(argv: list[str]) -> int:
    """Run one peer on one file (two for a join) and print its result as JSON."""
    kinds = ("csv", "parquet", "multiclass", "slices", "wide", "join")
    if len(argv) not in (3, 4) or argv[0] not in PEERS or argv[1] not in kinds \
            or (len(argv) == 4) != (argv[1] == "join"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] in POLARS_DUCKDB_ONLY and argv[0] not in ("polars", "duckdb"):
        print(f"{argv[0]}: no {argv[1]} implementation", file=sys.stderr)
        return 2
    tool, kind, path = argv[:3]
    result = PEERS[tool](kind, path, argv[3] if len(argv) == 4 else None)
    result["tool"] = tool
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
