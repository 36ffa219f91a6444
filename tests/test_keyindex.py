"""The key join's index (``lossctl/engine/keyindex.py``, C side ``_keyindex.c``).

Against a plain Python dict (first row of a key wins), for integer and string
keys with repeats, nulls, keys of different widths and types; the C index and
its NumPy/pyarrow twin must give the same rows and the same statistics.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossctl.engine import keyindex
from lossctl.engine.keyindex import KeyIndex

NATIVE = [True, False] if keyindex._native is not None else [False]


def reference(table: list, queries_chunks: list[list]) -> tuple[list[list[int]], int, int, int]:
    """Rows per query (first occurrence wins, -1 for none/null), duplicates, unmatched, repeated."""
    first: dict = {}
    dups = 0
    for i, k in enumerate(table):
        if k is None:
            continue
        if k in first:
            dups += 1
        else:
            first[k] = i
    found: dict[int, int] = {}
    out = []
    for chunk in queries_chunks:
        rows = [-1 if q is None or q not in first else first[q] for q in chunk]
        for r in rows:
            if r >= 0:
                found[r] = found.get(r, 0) + 1
        out.append(rows)
    used = [i for i, k in enumerate(table) if k is None or first[k] == i]
    unmatched = sum(1 for i in used if i not in found)
    repeated = sum(n - 1 for n in found.values())
    return out, dups, unmatched, repeated


def check(table: pa.Array, chunks: list[pa.Array], native: bool, monkeypatch) -> None:
    if not native:
        monkeypatch.setattr(keyindex, "_native", None)
    index = KeyIndex(table)
    assert index.native == native
    want_rows, dups, unmatched, repeated = reference(table.to_pylist(), [c.to_pylist() for c in chunks])
    for chunk, want in zip(chunks, want_rows, strict=True):
        assert index.lookup(keyindex.normalise(chunk)).tolist() == want
    assert (index.duplicates, index.unmatched(), index.repeated()) == (dups, unmatched, repeated)


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("kind", ["int64", "int32", "string", "large_string"])
@pytest.mark.parametrize("seed", range(4))
def test_random_keys_against_a_dict(native: bool, kind: str, seed: int, monkeypatch) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = rng.integers(-50, 2 * n, n)  # repeats, negatives
    nulls = rng.random(n) < 0.05

    def arr(v: np.ndarray, null: np.ndarray) -> pa.Array:
        items = [None if z else int(x) for x, z in zip(v.tolist(), null.tolist(), strict=True)]
        if kind.endswith("string"):
            items = [None if x is None else f"k{x}" * (1 + x % 3) for x in items]  # lengths 2..30
        return pa.array(items, type=getattr(pa, kind)())

    table = arr(values, nulls)
    q = rng.integers(-60, 2 * n + 10, 4000)
    queries = arr(q, rng.random(4000) < 0.03)
    chunks = [queries.slice(s, 700) for s in range(0, 4000, 700)]  # sliced arrays: offsets != 0
    check(table.slice(0) if seed % 2 else table, chunks, native, monkeypatch)


@pytest.mark.parametrize("native", NATIVE)
def test_sliced_table_and_empty_strings(native: bool, monkeypatch) -> None:
    table = pa.array(["", "a", None, "", "bb", "a", "ccc"]).slice(1)
    chunks = [pa.array(["a", "", None, "zz", "bb", "a"]), pa.array([], type=pa.string())]
    check(table, chunks, native, monkeypatch)


@pytest.mark.parametrize("native", NATIVE)
def test_extreme_integers(native: bool, monkeypatch) -> None:
    big = [-(2**63), 2**63 - 1, 0, -1, 2**63 - 1]
    check(pa.array(big, pa.int64()), [pa.array([2**63 - 1, -(2**63), 5, None], pa.int64())], native,
          monkeypatch)


@pytest.mark.parametrize("native", NATIVE)
def test_integer_index_looked_up_by_text(native: bool, monkeypatch) -> None:
    """A key read as text on one side (CSV) and as integers on the other compares as text."""
    if not native:
        monkeypatch.setattr(keyindex, "_native", None)
    index = KeyIndex(pa.array([3, 1, 3, 7]))
    assert index.lookup(keyindex.normalise(pa.array([1, 9]))).tolist() == [1, -1]
    index = index.as_strings()
    assert index.lookup(pa.array(["7", "3", "x"])).tolist() == [3, 0, -1]
    assert (index.duplicates, index.unmatched(), index.repeated()) == (1, 0, 0)


def test_uint64_beyond_int64_compares_as_text() -> None:
    keys = keyindex.normalise(pa.array([2**64 - 1, 1], pa.uint64()))
    assert keys.type == pa.string()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=1, max_size=60),
       st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=60))
def test_native_and_twin_agree_on_any_text(table: list, queries: list) -> None:
    want, dups, unmatched, repeated = reference(table, [queries])
    for native in NATIVE:
        saved = keyindex._native
        try:
            if not native:
                keyindex._native = None
            index = KeyIndex(pa.array(table, pa.string()))
            assert index.lookup(pa.array(queries, pa.string())).tolist() == want[0]
            assert (index.duplicates, index.unmatched(), index.repeated()) == (dups, unmatched, repeated)
        finally:
            keyindex._native = saved


@pytest.mark.skipif(keyindex._native is None, reason="the optional C extension is not built")
def test_c_side_refuses_bad_buffers() -> None:
    c = keyindex._native
    keys = np.arange(10, dtype=np.int64)
    first = np.zeros(10, dtype=np.uint8)
    for slots in (np.zeros(24, dtype=np.int32), np.zeros(8, dtype=np.int32)):  # not a power of two; full
        with pytest.raises(ValueError):
            c.build_int(keys, None, slots, first)
    with pytest.raises(ValueError):
        c.build_str(np.zeros(5, dtype=np.int32), b"", None, np.zeros(16, dtype=np.uint64), first)
    slots = np.zeros(16, dtype=np.int32)
    assert c.build_int(keys, None, slots, first) == 0
    with pytest.raises(ValueError):  # out not as long as the queries
        c.lookup_int(keys, slots, keys, None, np.empty(3, dtype=np.int64), np.zeros(10, dtype=np.uint8))
