"""Shared fixtures for the CLI tests: data sets written once per session in every input format.

Every data set is generated with NumPy (fixed seeds) and written with pandas /
pyarrow, then read back with pyarrow to make sure the files hold exactly the
float64 values the reference computations use.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.special import expit, softmax

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


def write_csv(df: pd.DataFrame, path: Path, sep: str = ",", header: bool = True) -> None:
    """Plain CSV/TSV with round-trip float precision (pandas writes repr(float))."""
    df.to_csv(path, sep=sep, index=False, header=header, lineterminator="\n")


def write_gzip(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, gzip.open(dst, "wb") as g:
        g.write(f.read())


def write_zstd(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, pa.CompressedOutputStream(str(dst), "zstd") as out:
        out.write(f.read())


def check_roundtrip(path: Path, df: pd.DataFrame, columns: list[str], sep: str = ",") -> None:
    """The CSV parses back (with pyarrow, as lossctl does) to the very same float64 bits."""
    back = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=sep))
    for c in columns:
        got = back.column(c).to_numpy()
        assert np.array_equal(got.astype(np.float64), df[c].to_numpy(np.float64)), c


@dataclass
class DataSet:
    """Arrays of one synthetic data set and the files holding it."""

    df: pd.DataFrame
    dir: Path
    files: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.files[key]

    def col(self, name: str) -> np.ndarray:
        return self.df[name].to_numpy(np.float64)


# --------------------------------------------------------------------------
# Regression: id, segment (text), y, pred, w
# --------------------------------------------------------------------------

REG_ROWS = 2000


def make_regression(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.normal(50.0, 20.0, n)
    p = y + 5.0 * rng.standard_t(3, n)  # heavy tails: huber/mae/mse differ clearly
    w = rng.uniform(0.05, 3.0, n)
    seg = rng.choice(["city", "suburb", "rural, far"], n)  # a quoted field with a comma
    return pd.DataFrame({"id": np.arange(1, n + 1), "segment": seg, "y": y, "pred": p, "w": w})


def small_frame(n: int, seed: int) -> pd.DataFrame:
    """id, seg (three values), y, p, w: a small frame for tests of the files around the data."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "seg": rng.choice(["a", "b", "c"], n),
                         "y": rng.normal(size=n), "p": rng.normal(size=n),
                         "w": rng.uniform(0.1, 2, n)})


@pytest.fixture(scope="session")
def reg(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    d = tmp_path_factory.mktemp("reg")
    df = make_regression(REG_ROWS, 20240601)
    ds = DataSet(df, d)
    f = ds.files
    num = ["y", "pred", "w"]

    f["csv"] = d / "reg.csv"
    write_csv(df, f["csv"])
    check_roundtrip(f["csv"], df, num)
    f["tsv"] = d / "reg.tsv"
    write_csv(df, f["tsv"], sep="\t")
    check_roundtrip(f["tsv"], df, num, sep="\t")
    f["tab_txt"] = d / "reg_tab.txt"  # .txt reads as comma CSV: needs --delimiter
    write_csv(df, f["tab_txt"], sep="\t")
    f["tab_data"] = d / "reg_tab.data"  # unknown extension: needs --input-format tsv
    write_csv(df, f["tab_data"], sep="\t")
    f["semicolon"] = d / "reg_semicolon.csv"
    write_csv(df, f["semicolon"], sep=";")
    f["gz"] = d / "reg.csv.gz"
    write_gzip(f["csv"], f["gz"])
    f["zst"] = d / "reg.csv.zst"
    write_zstd(f["csv"], f["zst"])
    f["zst_noext"] = d / "reg_zstd_csv_no_extension"
    write_zstd(f["csv"], f["zst_noext"])
    f["noheader"] = d / "reg_noheader.csv"
    write_csv(df, f["noheader"], header=False)

    table = pa.Table.from_pandas(df, preserve_index=False)
    f["parquet"] = d / "reg.parquet"
    pq.write_table(table, f["parquet"], row_group_size=700)  # several row groups
    f["parquet_as_csv"] = d / "reg_parquet_really.csv"  # misleading extension
    pq.write_table(table, f["parquet_as_csv"])
    f["parquet_noext"] = d / "reg_parquet_no_extension"
    pq.write_table(table, f["parquet_noext"])

    # the same rows cut into uneven shards of mixed formats, plus files a
    # shard directory typically holds that are not data
    shards = d / "shards"
    (shards / "sub").mkdir(parents=True)
    cuts = [("part-0.csv", 0, 7), ("part-1.parquet", 7, 900), ("part-10.csv.gz", 900, 1500),
            ("part-2.tsv", 1500, 1800), ("sub/part-0.csv.zst", 1800, REG_ROWS)]
    for name, a, b in cuts:
        path = shards / name
        part = df.iloc[a:b]
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path)
        elif name.endswith(".gz"):
            write_csv(part, d / "tmp.csv")
            write_gzip(d / "tmp.csv", path)
        elif name.endswith(".zst"):
            write_csv(part, d / "tmp.csv")
            write_zstd(d / "tmp.csv", path)
        else:
            write_csv(part, path, sep="\t" if name.endswith(".tsv") else ",")
    bad = "id,segment,y,pred,w\n1,x,1,not-a-number,1\n"
    (shards / "_SUCCESS").write_bytes(b"")
    (shards / "_tmp_part.csv").write_text(bad)
    (shards / ".hidden.csv").write_text(bad)
    (shards / ".part-0.csv.crc").write_bytes(os.urandom(16))
    (shards / "_metadata").write_bytes(os.urandom(64))
    (shards / "notes.md").write_text("# not data\n")
    ds.files["shards"] = shards
    ds.files["shard_list"] = [shards / name for name, _, _ in cuts]

    # a flat set for globs: shard_000.csv ... shard_003.csv, and a file the glob must not match
    flat = d / "flat"
    flat.mkdir()
    for i, (a, b) in enumerate([(0, 500), (500, 1000), (1000, 1501), (1501, REG_ROWS)]):
        write_csv(df.iloc[a:b], flat / f"shard_{i:03d}.csv")
    write_csv(df.iloc[:3], flat / "other.csv")
    ds.files["flat"] = flat
    return ds


# --------------------------------------------------------------------------
# Binary: z (0/1), prob, logit, score, w
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    d = tmp_path_factory.mktemp("bin")
    rng = np.random.default_rng(7)
    n = 1500
    logit = rng.normal(0.0, 2.5, n)
    z = (rng.uniform(size=n) < expit(logit + rng.normal(0, 1.5, n))).astype(np.int64)
    df = pd.DataFrame({"z": z, "prob": expit(logit), "logit": logit, "score": 0.5 * logit,
                       "w": rng.uniform(0.1, 2.0, n)})
    ds = DataSet(df, d)
    ds.files["csv"] = d / "binary.csv"
    write_csv(df, ds.files["csv"])
    check_roundtrip(ds.files["csv"], df, ["prob", "logit", "score", "w"])
    ds.files["parquet"] = d / "binary.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), ds.files["parquet"])
    return ds


# --------------------------------------------------------------------------
# Multiclass: label, logit_0..logit_{K-1}, prob_*, t_* (soft labels), w
# --------------------------------------------------------------------------

MC_K = 4


@pytest.fixture(scope="session")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    d = tmp_path_factory.mktemp("mc")
    rng = np.random.default_rng(11)
    n, k = 1500, MC_K
    label = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.5, (n, k))
    logits[np.arange(n), label] += 1.5
    probs = softmax(logits, axis=1)
    t = rng.dirichlet(np.ones(k), n)
    cols: dict[str, np.ndarray] = {"id": np.arange(n), "label": label}
    cols.update({f"logit_{j}": logits[:, j] for j in range(k)})
    cols.update({f"prob_{j}": probs[:, j] for j in range(k)})
    cols.update({f"t_{j}": t[:, j] for j in range(k)})
    cols["w"] = rng.uniform(0.1, 2.0, n)
    df = pd.DataFrame(cols)
    ds = DataSet(df, d)
    f = ds.files
    f["csv"] = d / "mc.csv"
    write_csv(df, f["csv"])
    check_roundtrip(f["csv"], df, [c for c in df.columns if c not in ("id", "label")])
    f["parquet"] = d / "mc.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f["parquet"], row_group_size=400)

    def fixed(a: np.ndarray) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), k)

    def var(a: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(np.arange(0, a.size + 1, k, dtype=np.int32)),
                                        pa.array(a.ravel()))

    lists = pa.table({"label": pa.array(label), "logits": fixed(logits), "logits_var": var(logits),
                      "probs": fixed(probs), "t": fixed(t), "w": pa.array(cols["w"])})
    assert pa.types.is_fixed_size_list(lists.schema.field("logits").type)
    assert pa.types.is_list(lists.schema.field("logits_var").type)
    f["lists"] = d / "mc_lists.parquet"
    pq.write_table(lists, f["lists"], row_group_size=400)
    return ds


# --------------------------------------------------------------------------
# Object storage: a moto S3 server on localhost for the whole session
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3() -> Any:
    """A moto S3 server (subprocess, free port), with lossctl's AWS variables pointing at it.

    The variables are set for the session so in-process runs and real
    subprocesses alike reach this server, and only it.
    """
    pytest.importorskip("moto", reason="the S3 tests need the test extra (moto[server])")
    from storage import MotoS3

    server = MotoS3()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def dask_cluster(s3: Any) -> Any:
    """A two-worker Dask LocalCluster (separate processes), shared by the Dask tests.

    Started after the S3 server: workers read storage with their own
    environment (credentials, endpoint), as on a real cluster.
    """
    distributed = pytest.importorskip("distributed", reason="the Dask tests need lossctl[dask]")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield cluster
    finally:
        cluster.close()
