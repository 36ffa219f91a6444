#!/usr/bin/env python3
"""Scale-out benchmark: the local engine vs the Dask engine, on local disk and on S3 (moto).

Data: the regression data of ``bench/run.py`` (``id, segment, y, p, w``),
``--rows`` rows split into ``--shards`` Parquet shards.  Runs, each in its
own process, median of ``--repeat``:

* ``lossctl eval`` of the shards with ``--engine local`` and with
  ``--engine dask`` on a LocalCluster of ``--workers`` worker processes
  (started here, one thread each), from a local directory and from a moto S3
  server on localhost (``moto_server``, started here);
* Dask's overhead per unit: the same evaluation of many tiny shards, whose
  time is almost all scheduling;
* exact state size (pickled, as a worker ships it) and merge time as a
  function of the number of slices and of ``--ci``.

Peak memory is reported per process: the lossctl process (the client) from
``wait4``, the workers from their own ``VmHWM`` (Linux), reset before each
run through ``/proc/self/clear_refs``.

    pip install -e '.[bench,dask,test]' && python bench/scale.py
    python bench/scale.py --rows 2000000 --repeat 1     # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import regression_batch  # noqa: E402
from run import find_lossctl, measure, precompile_lossctl  # noqa: E402

LOSSES = "mse,rmse,mae"


def write_shards(directory: Path, rows: int, shards: int, seed: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "manifest.json"
    want = {"rows": rows, "shards": shards, "seed": seed}
    paths = [directory / f"part-{i:05d}.parquet" for i in range(shards)]
    if manifest.exists() and json.loads(manifest.read_text()) == want and all(p.exists() for p in paths):
        return paths
    per = rows // shards
    for i, path in enumerate(paths):
        n = per if i < shards - 1 else rows - per * (shards - 1)
        batch = regression_batch(seed, i, i * per, n)
        pq.write_table(pa.Table.from_batches([batch]), path, row_group_size=250_000)
    manifest.write_text(json.dumps(want))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, dict[str, str], pafs.S3FileSystem]:
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    s3 = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                           access_key="bench", secret_key="bench", allow_bucket_creation=True)
    return proc, env, s3


def upload(s3: pafs.S3FileSystem, paths: list[Path], prefix: str) -> str:
    bucket = prefix.split("/")[0]
    s3.create_dir(bucket)
    for p in paths:
        pafs.copy_files(str(p), f"{prefix}/{p.name}", destination_filesystem=s3)
    return f"s3://{prefix}/"


def _reset_peak() -> None:
    """Linux: reset this process's peak RSS (VmHWM) to its current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def worker_peaks(client: Any) -> list[int]:
    return sorted(client.run(_peak_kib).values())


def timed(cmd: list[str], repeat: int, client: Any = None, timeout: float = 1800) -> dict[str, Any]:
    walls, rss, workers, out = [], [], [], None
    for _ in range(repeat):
        if client is not None:
            client.run(_reset_peak)  # each run's own peak, in the same worker processes
        run = measure(cmd, timeout)
        if not run.ok:
            raise SystemExit(f"failed: {' '.join(cmd)}: {run.error}")
        walls.append(run.wall_s)
        rss.append(run.maxrss_kib)
        out = json.loads(run.stdout)
        if client is not None:
            workers.append(max(worker_peaks(client)))
    return {"wall_s": statistics.median(walls), "walls": walls, "client_rss_mib": max(rss) / 1024,
            "worker_rss_mib": max(workers) / 1024 if workers else None,
            "values": {k: v["value"] for k, v in out["losses"].items()}, "engine": out.get("engine")}


def state_costs() -> list[dict[str, Any]]:
    """Pickled size and merge time of an exact state, by slices and --ci."""
    from lossctl.core import intervals
    from lossctl.core.state import EvalState, SliceKeys

    rng = np.random.default_rng(1)
    n = 200_000
    y = rng.normal(size=n)
    p = y + rng.normal(size=n)
    out = []
    for slices in (0, 10, 100, 1000, 10_000):
        for ci in (False, True):
            states = []
            for part in range(2):
                keys = SliceKeys(["s"], 100_000) if slices else None
                st = EvalState(LOSSES.split(","), slices=keys, buckets=intervals.BUCKETS if ci else 0)
                codes = None
                if keys is not None:
                    for k in range(slices):
                        keys.code((f"s{k:05d}",))
                    codes = rng.integers(0, slices, n)
                buckets = intervals.bucket_ids(f"part-{part}", np.arange(n), 0) if ci else None
                st.update(y, p, slices=codes, buckets=buckets)
                states.append(st)
            blob = pickle.dumps(states[1], protocol=5)
            times = []
            for _ in range(5):
                a, b = pickle.loads(pickle.dumps(states[0])), pickle.loads(blob)
                t = time.perf_counter()
                a.merge(b)
                times.append(time.perf_counter() - t)
            out.append({"slices": slices, "ci": ci, "state_kib": len(blob) / 1024,
                        "merge_ms": statistics.median(times) * 1000})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--shards", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tiny", type=int, default=200, help="tiny shards for the per-unit overhead")
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the data in this directory")
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--json", type=Path, help="also save the results as JSON")
    ap.add_argument("--no-s3", action="store_true", help="skip the moto S3 runs")
    args = ap.parse_args(argv)

    import logging

    from distributed import Client, LocalCluster

    lossctl = find_lossctl()
    if lossctl is None:
        raise SystemExit("lossctl is not installed")
    precompile_lossctl()
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    root = Path(tmp.name) if tmp else args.keep
    paths = write_shards(root / "shards", args.rows, args.shards, args.seed)
    tiny = write_shards(root / "tiny", args.tiny * 100, args.tiny, args.seed)
    results: dict[str, Any] = {"rows": args.rows, "shards": args.shards, "workers": args.workers,
                               "cpus": os.cpu_count(), "runs": {}}
    moto = None
    if not args.no_s3:
        moto, env, s3 = start_moto()
        os.environ.update(env)  # lossctl, and the workers started below, read this endpoint
        s3_prefix = upload(s3, paths, "bench/shards")
        s3_tiny = upload(s3, tiny, "bench-tiny/tiny")
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        base = [lossctl, "eval", "-l", "y", "-p", "p", "-m", LOSSES, "-f", "json", "--no-progress"]
        dask = ["--engine", "dask", "--scheduler", cluster.scheduler_address]
        where = {"local disk": str(root / "shards")}
        if moto is not None:
            where["S3 (moto)"] = s3_prefix
        for name, target in where.items():
            for engine, extra, cl in (("local", [], None), ("dask", dask, client)):
                key = f"{engine} engine, {name}"
                print(f"running {key} ...", file=sys.stderr, flush=True)
                results["runs"][key] = timed([*base, target, *extra], args.repeat, cl)
        for name, target in {"local disk": str(root / "tiny"), **(
                {"S3 (moto)": s3_tiny} if moto is not None else {})}.items():
            key = f"{args.tiny} tiny units, {name}"
            print(f"running {key} ...", file=sys.stderr, flush=True)
            one = timed([*base, str(tiny[0]) if name == "local disk" else s3_tiny + tiny[0].name,
                         *dask], args.repeat, client)
            many = timed([*base, target, *dask], args.repeat, client)
            results["runs"][key] = {"one_unit_s": one["wall_s"], "all_units_s": many["wall_s"],
                                    "overhead_per_unit_ms":
                                        (many["wall_s"] - one["wall_s"]) / (args.tiny - 1) * 1000}
    finally:
        client.close()
        cluster.close()
        if moto is not None:
            moto.terminate()
        if tmp is not None:
            tmp.cleanup()
    results["state"] = state_costs()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    rows = results["rows"]
    print(f"\n{rows:,} rows in {results['shards']} Parquet shards; Dask: {results['workers']} "
          f"worker processes, 1 thread each; {results['cpus']} CPUs\n")
    print("| run | wall (median) | rows/s | peak RSS, lossctl process | peak RSS, each worker |")
    print("|---|---|---|---|---|")
    values = None
    for key, r in results["runs"].items():
        if "wall_s" not in r:
            continue
        worker = f"{r['worker_rss_mib']:.0f} MiB" if r["worker_rss_mib"] else "-"
        print(f"| {key} | {r['wall_s']:.2f} s | {rows / r['wall_s'] / 1e6:.1f} M | "
              f"{r['client_rss_mib']:.0f} MiB | {worker} |")
        if values is not None and r["values"] != values:
            print(f"  VALUES DIFFER: {r['values']} vs {values}")
        values = r["values"]
    print()
    for key, r in results["runs"].items():
        if "overhead_per_unit_ms" in r:
            print(f"{key}: 1 unit {r['one_unit_s']:.2f} s, all {r['all_units_s']:.2f} s: "
                  f"{r['overhead_per_unit_ms']:.1f} ms per unit (wall, {results['workers']} workers)")
    print("\n| slices | --ci | state (pickled) | merge of two states |")
    print("|---|---|---|---|")
    for s in results["state"]:
        print(f"| {s['slices']} | {'yes' if s['ci'] else 'no'} | {s['state_kib']:.1f} KiB | "
              f"{s['merge_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
