#!/usr/bin/env python3
"""Generate the lossctl sample data files in this directory.

Deterministic: every file uses its own fixed numpy seed, so rerunning this
script reproduces the files byte-for-byte (CSV/TSV exactly; the gzip file
because its header mtime is fixed to 0; the Parquet files as long as the
pyarrow version, which is recorded in the file footer, is the same).

Dependencies: numpy, pandas, pyarrow only.

    python sample_data/make_samples.py          # writes next to this script
    python sample_data/make_samples.py --check  # also read every file back
"""
from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent

SEED_HOUSE = 20240101
SEED_CHURN = 20240102
SEED_DIGITS = 20240103
SEED_DEMAND = 20240104
SEED_PREDS = 20240106


# ---------------------------------------------------------------- helpers
def fmt(values, decimals: int) -> list[str]:
    """Fixed-decimal strings, never '-0.00'."""
    out = []
    for v in np.asarray(values, dtype=np.float64):
        s = f"{v:.{decimals}f}"
        if s.startswith("-") and float(s) == 0.0:
            s = s[1:]
        out.append(s)
    return out


def fmt_repr(values) -> list[str]:
    """Shortest round-trip representation (full float64 precision)."""
    return [repr(float(v)) for v in np.asarray(values, dtype=np.float64)]


def parsed(strings) -> np.ndarray:
    """The float64 values a reader gets back from the given strings."""
    return np.array([float(s) for s in strings], dtype=np.float64)


def csv_text(columns: dict[str, list[str]], sep: str = ",", header: bool = True) -> str:
    names = list(columns)
    n = len(columns[names[0]])
    lines = [sep.join(names)] if header else []
    for i in range(n):
        lines.append(sep.join(columns[c][i] for c in names))
    return "\n".join(lines) + "\n"


def head(columns: dict[str, list[str]], n: int) -> dict[str, list[str]]:
    return {k: v[:n] for k, v in columns.items()}


def write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("ascii"))


def write_gzip(path: Path, text: str) -> None:
    buf = io.BytesIO()
    # mtime=0 and a fixed embedded name make the gzip header reproducible.
    with gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb",
                       fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("ascii"))
    path.write_bytes(buf.getvalue())


# ---------------------------------------------------------------- 1, 6, 7: house prices
def make_house_prices() -> None:
    rng = np.random.default_rng(SEED_HOUSE)
    n = 600
    segments = np.array(["city", "suburb", "rural"])
    seg_idx = rng.choice(3, size=n, p=[0.35, 0.45, 0.20])
    seg = segments[seg_idx]

    # size distribution and price per sqft depend on segment
    sqft_median = np.array([1150.0, 1900.0, 1700.0])[seg_idx]
    sqft = np.exp(np.log(sqft_median) + rng.normal(0.0, 0.32, n))
    sqft = np.clip(np.round(sqft / 10.0) * 10.0, 450, 5200).astype(np.int64)
    ppsf = np.array([520.0, 260.0, 150.0])[seg_idx] * np.exp(rng.normal(0.0, 0.22, n))
    price = np.clip(sqft * ppsf, 80_000.0, 1_500_000.0)
    price = np.round(price * np.exp(rng.normal(0.0, 0.01, n)), -2)  # list prices end in 00
    price = np.clip(price, 80_000.0, 1_500_000.0)
    price = price + rng.choice([0.0, 0.0, 0.0, 50.0, 99.0, 0.5], size=n)  # a few odd amounts
    price = np.minimum(price, 1_500_000.0)
    price_s = fmt(price, 2)

    # heteroscedastic model error: relative error ~6%, larger in rural areas
    rel_sd = np.array([0.05, 0.06, 0.09])[seg_idx]
    pred = parsed(price_s) * np.exp(rng.normal(0.0, rel_sd) + 0.01)  # slight upward bias
    misses = rng.choice(n, size=8, replace=False)  # a few large misses (25-60%)
    pred[misses] *= np.exp(rng.choice([-1.0, 1.0], size=8) * rng.uniform(0.25, 0.6, size=8))
    pred_s = fmt(pred, 2)

    # recency weight in [0.5, 2.0]: newer sales count more
    age_days = rng.uniform(0, 730, n)
    weight = 0.5 + 1.5 * np.exp(-age_days / 240.0)
    weight_s = fmt(weight, 3)

    cols = {
        "id": [str(i) for i in range(1, n + 1)],
        "segment": list(seg),
        "sqft": [str(v) for v in sqft],
        "price": price_s,
        "predicted_price": pred_s,
        "weight": weight_s,
    }
    write_text(OUT / "house_prices.csv", csv_text(cols))
    write_text(OUT / "house_prices.tsv", csv_text(head(cols, 50), sep="\t"))
    write_text(OUT / "house_prices_noheader.csv", csv_text(head(cols, 20), header=False))
    make_house_prices_v2(parsed(price_s), seg_idx)
    make_house_prices_models(cols)


SEED_HOUSE_V2 = 20240105


def make_house_prices_v2(price: np.ndarray, seg_idx: np.ndarray) -> None:
    """A retrained model's predictions for the same houses, in another row order (join by id).

    Its error is a little smaller in the city and suburbs and a little larger
    in rural areas, with no bias: a candidate to compare with the original.
    """
    rng = np.random.default_rng(SEED_HOUSE_V2)
    n = len(price)
    rel_sd = np.array([0.045, 0.055, 0.10])[seg_idx]
    pred = price * np.exp(rng.normal(0.0, rel_sd))
    order = rng.permutation(n)
    cols = {"id": [str(i + 1) for i in order], "predicted_price": fmt(pred[order], 2)}
    write_text(OUT / "house_prices_v2.csv", csv_text(cols))


SEED_HOUSE_MODELS = 20240106


def make_house_prices_models(house: dict[str, list[str]]) -> None:
    """Three models' predictions for the same houses, side by side (``eval -p a -p b -p c``).

    model_a is house_prices.csv's predicted_price; model_b has no bias and a
    smaller error in the city and suburbs; model_c, a simpler model, errs
    by ~12% everywhere and 3% low.
    """
    rng = np.random.default_rng(SEED_HOUSE_MODELS)
    price = parsed(house["price"])
    seg_idx = np.array([["city", "suburb", "rural"].index(s) for s in house["segment"]])
    model_b = price * np.exp(rng.normal(0.0, np.array([0.04, 0.05, 0.09])[seg_idx]))
    model_c = price * np.exp(rng.normal(-0.03, 0.12, len(price)))
    cols = {"id": house["id"], "segment": house["segment"], "price": house["price"],
            "model_a": house["predicted_price"], "model_b": fmt(model_b, 2),
            "model_c": fmt(model_c, 2)}
    write_text(OUT / "house_prices_models.csv", csv_text(cols))


# ---------------------------------------------------------------- 2: churn
def make_churn() -> None:
    rng = np.random.default_rng(SEED_CHURN)
    n = 1000
    ids = np.sort(rng.choice(np.arange(1, 1_000_000), size=n, replace=False))
    customer_id = [f"C{v:06d}" for v in ids]
    segments = np.array(["consumer", "smb", "enterprise"])
    seg_idx = rng.choice(3, size=n, p=[0.60, 0.30, 0.10])

    # latent true risk: segment baseline + customer features
    base = np.array([-1.3, -1.8, -2.6])[seg_idx]
    tenure = rng.gamma(2.0, 12.0, n)            # months
    tickets = rng.poisson(1.2, n)               # support tickets last quarter
    true_logit = base - 0.035 * (tenure - 24.0) + 0.45 * (tickets - 1.2) + rng.normal(0, 0.6, n)
    churned = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-true_logit))).astype(np.int64)

    # model: sees the features but not the idiosyncratic part; mild overconfidence
    model_logit = 1.1 * (base - 0.035 * (tenure - 24.0) + 0.45 * (tickets - 1.2)) \
        + rng.normal(0, 0.25, n)
    prob = 1.0 / (1.0 + np.exp(-model_logit))
    prob = np.clip(prob, 1e-6, 1 - 1e-6)
    logit = np.log(prob / (1.0 - prob))          # exactly as documented
    score = 0.5 * logit                          # raw SVM-style margin for hinge

    table = pa.table({
        "customer_id": pa.array(customer_id, pa.string()),
        "segment": pa.array(segments[seg_idx].tolist(), pa.string()),
        "churned": pa.array(churned, pa.int64()),
        "prob": pa.array(prob, pa.float64()),
        "logit": pa.array(logit, pa.float64()),
        "score": pa.array(score, pa.float64()),
    })
    pq.write_table(table, OUT / "churn.parquet", compression="snappy",
                   row_group_size=n // 2)


# ---------------------------------------------------------------- 3, 4: digits10
def make_digits() -> None:
    rng = np.random.default_rng(SEED_DIGITS)
    n, k = 500, 10
    label = rng.integers(0, k, size=n)
    # a classifier that is right ~85% of the time; confusions go to look-alikes
    confusable = {0: [6, 8, 9], 1: [7, 4], 2: [7, 3], 3: [5, 8, 9], 4: [9, 1],
                  5: [3, 6, 8], 6: [0, 5], 7: [1, 2, 9], 8: [3, 0, 9], 9: [4, 7, 8]}
    logits = rng.normal(0.0, 1.0, size=(n, k)) - 1.0
    margin = rng.gamma(4.0, 1.1, size=n)                # confidence of the model
    logits[np.arange(n), label] += margin
    for i in range(n):
        rival = rng.choice(confusable[int(label[i])])
        logits[i, rival] += rng.uniform(0.0, 1.5)        # runner-up is a look-alike
        if rng.uniform() < 0.10:                         # hard example: rival wins
            logits[i, rival] = logits[i, label[i]] + rng.uniform(0.1, 2.0)
    logits += rng.normal(0.0, 0.5, size=(n, 1))          # per-row shift (softmax-invariant)

    logit_s = [fmt(logits[:, j], 5) for j in range(k)]
    cols = {"id": [str(i) for i in range(1, n + 1)], "label": [str(v) for v in label]}
    for j in range(k):
        cols[f"logit_{j}"] = logit_s[j]
    write_text(OUT / "digits10.csv", csv_text(cols))

    # the parquet copy holds exactly the values the CSV parses to
    x = np.column_stack([parsed(s) for s in logit_s])
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    probs = e / e.sum(axis=1, keepdims=True)

    def fixed_list(mat: np.ndarray) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(mat).ravel(), pa.float64()), k)

    table = pa.table({
        "id": pa.array(np.arange(1, n + 1), pa.int64()),
        "label": pa.array(label, pa.int64()),
        "logits": fixed_list(x),
        "probs": fixed_list(probs),
    })
    pq.write_table(table, OUT / "digits10_list.parquet", compression="snappy")


# ---------------------------------------------------------------- 5: demand
def make_demand() -> None:
    rng = np.random.default_rng(SEED_DEMAND)
    stores, days = 8, 100
    day = pd.date_range("2024-03-01", periods=days, freq="D")
    dow = day.day_of_week.to_numpy()
    dow_factor = np.array([0.85, 0.80, 0.90, 0.95, 1.15, 1.45, 1.20])[dow]
    trend = 1.0 + 0.002 * np.arange(days)

    rows_store, rows_day, units, forecast = [], [], [], []
    for s in range(stores):
        level = float(rng.choice([1.5, 4.0, 9.0, 18.0, 35.0])) * np.exp(rng.normal(0, 0.2))
        mean = level * dow_factor * trend
        promo = rng.uniform(size=days) < 0.08
        mean_true = mean * np.where(promo, 1.8, 1.0) * np.exp(rng.normal(0, 0.15, days))
        y = rng.poisson(mean_true)
        # forecast knows level/seasonality/promo but smooths the noise
        f = mean * np.where(promo, 1.6, 1.0) * np.exp(rng.normal(0, 0.08, days))
        rows_store += [f"S{s + 1:02d}"] * days
        rows_day += [d.strftime("%Y-%m-%d") for d in day]
        units.append(y)
        forecast.append(f)
    units = np.concatenate(units)
    forecast_s = fmt(np.maximum(np.concatenate(forecast), 0.05), 3)
    # full precision, so poisson and poisson(log_input=true) agree to ~1 ulp
    log_forecast_s = fmt_repr(np.log(parsed(forecast_s)))

    cols = {
        "store": rows_store,
        "day": rows_day,
        "units_sold": [str(v) for v in units],
        "forecast": forecast_s,
        "log_forecast": log_forecast_s,
    }
    write_gzip(OUT / "demand.csv.gz", csv_text(cols))


# ---------------------------------------------------------------- 8: sharded delivery-time predictions
PRED_SEGMENTS = np.array(["grocery", "restaurant", "parcel"])
PRED_COUNTRIES = np.array(["DE", "FR", "US", "JP"])


def delivery_times(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` deliveries: segment, country, the time taken (minutes) and its expected value."""
    seg_idx = rng.choice(3, size=n, p=[0.45, 0.35, 0.20])
    country_idx = rng.choice(4, size=n, p=[0.35, 0.25, 0.25, 0.15])
    distance = rng.gamma(3.0, 1.4, n)                             # km
    expected = (np.array([22.0, 18.0, 35.0])[seg_idx] + 4.0 * distance) \
        * np.array([1.0, 1.05, 1.15, 0.9])[country_idx]
    y = np.round(expected * np.exp(rng.normal(0.0, 0.12, n)), 2)  # the time it took
    return {"segment": seg_idx, "country": country_idx, "expected": expected, "y": y}


def make_preds() -> None:
    """Two days of a delivery-time model's predictions, two Parquet shards a day.

    ``yhat`` is the new model, ``yhat_old`` the released one (a little worse
    overall, better for parcels): a candidate to gate and compare.  ``id`` is
    unique over all shards.  Also ``scores.parquet``, predictions logged when
    they were served (no label yet), and ``labels.csv``, the labels that
    arrived later for most of them (another order, 3% still missing): a key join.
    """
    rng = np.random.default_rng(SEED_PREDS)
    per_shard = 500
    next_id = 100_001
    for day in ("day1", "day2"):
        (OUT / "preds" / day).mkdir(parents=True, exist_ok=True)
        for part in range(2):
            d = delivery_times(rng, per_shard)
            new_sd = np.array([0.10, 0.11, 0.13])[d["segment"]]
            old_sd = np.array([0.12, 0.13, 0.11])[d["segment"]]
            yhat = d["expected"] * np.exp(rng.normal(0.0, new_sd))
            yhat_old = d["expected"] * np.exp(rng.normal(0.03, old_sd))
            table = pa.table({
                "id": pa.array(np.arange(next_id, next_id + per_shard), pa.int64()),
                "segment": pa.array(PRED_SEGMENTS[d["segment"]].tolist(), pa.string()),
                "country": pa.array(PRED_COUNTRIES[d["country"]].tolist(), pa.string()),
                "y": pa.array(d["y"], pa.float64()),
                "yhat": pa.array(np.round(yhat, 2), pa.float64()),
                "yhat_old": pa.array(np.round(yhat_old, 2), pa.float64()),
            })
            pq.write_table(table, OUT / "preds" / day / f"part-{part}.parquet", compression="zstd")
            next_id += per_shard

    n = 800
    d = delivery_times(rng, n)
    ids = np.arange(900_001, 900_001 + n)
    yhat = d["expected"] * np.exp(rng.normal(0.0, 0.11, n))
    pq.write_table(pa.table({
        "id": pa.array(ids, pa.int64()),
        "segment": pa.array(PRED_SEGMENTS[d["segment"]].tolist(), pa.string()),
        "yhat": pa.array(np.round(yhat, 2), pa.float64()),
    }), OUT / "scores.parquet", compression="zstd")
    arrived = np.sort(rng.choice(n, size=n - n * 3 // 100, replace=False))
    order = rng.permutation(arrived)
    write_text(OUT / "labels.csv", csv_text({"id": [str(v) for v in ids[order]],
                                             "y": fmt(d["y"][order], 2)}))


# ---------------------------------------------------------------- check
def check() -> None:
    noheader = pacsv.ReadOptions(autogenerate_column_names=True)
    readers = {
        "house_prices.csv": lambda p: pacsv.read_csv(p),
        "house_prices.tsv": lambda p: pacsv.read_csv(
            p, parse_options=pacsv.ParseOptions(delimiter="\t")),
        "house_prices_noheader.csv": lambda p: pacsv.read_csv(p, read_options=noheader),
        "house_prices_v2.csv": lambda p: pacsv.read_csv(p),
        "house_prices_models.csv": lambda p: pacsv.read_csv(p),
        "churn.parquet": pq.read_table,
        "digits10.csv": lambda p: pacsv.read_csv(p),
        "digits10_list.parquet": pq.read_table,
        "demand.csv.gz": lambda p: pacsv.read_csv(p),
        "scores.parquet": pq.read_table,
        "labels.csv": lambda p: pacsv.read_csv(p),
        **{f"preds/day{d}/part-{k}.parquet": pq.read_table for d in (1, 2) for k in (0, 1)},
    }
    for name, read in readers.items():
        path = OUT / name
        t = read(path)
        print(f"{name:28s} {path.stat().st_size:>7d} B  shape=({t.num_rows}, {t.num_columns})  "
              + ", ".join(f"{f.name}:{f.type}" for f in t.schema))
    md = pq.ParquetFile(OUT / "churn.parquet").metadata
    print(f"churn.parquet row groups: {md.num_row_groups}")


def main() -> None:
    make_house_prices()
    make_churn()
    make_digits()
    make_demand()
    make_preds()
    if "--check" in sys.argv[1:]:
        check()


if __name__ == "__main__":
    main()
