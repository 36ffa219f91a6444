"""A running top-N of one loss: the worst rows, in bounded memory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RowInfo:
    """Where a chunk's rows come from, for ``--top``: file, first row in it, kept columns."""

    source: str
    first_row: int  # 0-based data row of the chunk's first row in its file
    kept: Any = None  # an Arrow batch of the --keep columns, or None
    rows: np.ndarray | None = None  # offsets of the chunk's rows from first_row, if not 0..n-1


def _kept_rows(batch: Any, rows: np.ndarray) -> list[dict]:
    """The kept columns of a few rows, as plain JSON (``batch.take`` of a NumPy array imports
    pandas)."""
    columns = list(zip(batch.schema.names, batch.columns, strict=True))
    return [{name: json_value(col[i].as_py()) for name, col in columns} for i in rows.tolist()]


def json_value(v: Any) -> Any:
    """A kept column's value as plain JSON holds it (reports and states are plain JSON).

    Non-finite floats become ``"nan"``, ``"inf"``, ``"-inf"``; dates, times,
    decimals and other Arrow scalars their text; lists and structs item by item.
    """
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return str(v)


class TopRows:
    """The N worst rows of one loss, kept in bounded memory (a running top-N).

    Ties are broken by file name and row, so the list does not depend on
    chunking, threads or the order states are merged in.
    """

    def __init__(self, key: str, n: int, higher_is_better: bool = False) -> None:
        self.key = key
        self.n = n
        self.sign = -1.0 if higher_is_better else 1.0
        self.rows: list[tuple[float, str, int, dict]] = []  # (value, file, row, kept)

    def _order(self, r: tuple) -> tuple:
        v = r[0] * self.sign
        return (-(math.inf if math.isnan(v) else v), r[1], r[2])

    def add(self, values: np.ndarray, idx: np.ndarray, info: RowInfo) -> None:
        """Offer per-row ``values`` of rows ``idx`` (indices in the chunk) of ``info``."""
        n = min(self.n, len(values))
        if n == 0:
            return
        score = np.where(np.isnan(values), np.inf, values * self.sign)
        if len(values) > n:
            cand = np.argpartition(-score, n - 1)[:n]
            # every row tied with the n-th best is a candidate, so ties resolve by row
            cand = np.flatnonzero(score >= score[cand].min())
        else:
            cand = np.arange(len(values))
        rows = idx[cand]
        kept = _kept_rows(info.kept, rows) if info.kept is not None else [{}] * len(rows)
        offsets = rows if info.rows is None else info.rows[rows]
        for v, r, k in zip(values[cand].tolist(), offsets.tolist(), kept, strict=True):
            self.rows.append((v, info.source, info.first_row + r, k))
        self._trim()

    def _trim(self) -> None:
        self.rows.sort(key=self._order)
        del self.rows[self.n:]

    def merge(self, other: TopRows) -> None:
        self.rows.extend(other.rows)
        self._trim()

    def to_json(self) -> dict:
        return {"loss": self.key, "n": self.n, "sign": self.sign,
                "rows": [[repr(v), f, r, k] for v, f, r, k in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> TopRows:
        t = cls(data["loss"], data["n"], data["sign"] < 0)
        t.rows = [(float(v), f, r, k) for v, f, r, k in data["rows"]]
        return t
