"""Exact state per group: the rows of a slice, or of a bootstrap bucket.

A :class:`Groups` keeps, for every group, the row count, the exact weight
sum, the exact sum of every term and the state of every component (see
:mod:`lossctl.core.components`).  Codes are dense group numbers given with
each chunk; merging maps another state's codes onto ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .components import load_component
from .exact import _SCALE, ExactSum, GroupedSum


class Groups:
    """Rows, weight sum, term sums and component states of each of ``groups`` groups."""

    def __init__(self, terms: Sequence[tuple], weighted: bool, groups: int = 0,
                 components: Mapping[tuple, Any] | None = None) -> None:
        self.rows = np.zeros(groups, dtype=np.int64)
        self.weight = GroupedSum(groups) if weighted else None
        self.sums = {k: GroupedSum(groups) for k in terms}
        self.specs = dict(components or {})
        self.components = {k: spec.new(groups, weighted) for k, spec in self.specs.items()}

    @property
    def size(self) -> int:
        return len(self.rows)

    def grow(self, groups: int) -> None:
        if groups > self.size:
            self.rows = np.pad(self.rows, (0, groups - self.size))
            for s in self._sums():
                s.grow(groups)
            for c in self.components.values():
                c.grow(groups)

    def _sums(self) -> list[GroupedSum]:
        return list(self.sums.values()) + ([self.weight] if self.weight is not None else [])

    def add_rows(self, codes: np.ndarray, w: np.ndarray | None) -> None:
        self.rows += np.bincount(codes, minlength=self.size)
        if self.weight is not None:
            self.weight.add(w, codes)

    def weight_totals(self) -> list[ExactSum]:
        if self.weight is not None:
            return self.weight.totals()
        return [ExactSum(int(n) << _SCALE) for n in self.rows.tolist()]

    def merge(self, other: Groups, codes: Sequence[int] | None = None) -> None:
        """Add ``other``'s groups (``codes`` maps them to ours; default: the same codes)."""
        idx = np.arange(other.size) if codes is None else np.asarray(codes, dtype=np.int64)
        self.grow(int(idx.max()) + 1 if idx.size else 0)
        np.add.at(self.rows, idx, other.rows)
        for mine, theirs in zip(self._sums(), other._sums(), strict=True):
            mine.add_totals(theirs.totals(), idx.tolist())
        for k, c in self.components.items():
            c.merge(other.components[k], None if codes is None else idx.tolist())

    def to_json(self, names: Mapping[tuple, str]) -> dict:
        return {"rows": self.rows.tolist(),
                "weight": self.weight.to_json() if self.weight is not None else None,
                "sums": {names[k]: s.to_json() for k, s in self.sums.items()},
                "components": {names[k]: c.to_json() for k, c in self.components.items()}}

    @classmethod
    def from_json(cls, data: dict, terms: Sequence[tuple], names: Mapping[tuple, str],
                  components: Mapping[tuple, Any] | None = None) -> Groups:
        weighted = data["weight"] is not None
        g = cls(terms, weighted, len(data["rows"]), components)
        g.rows = np.array(data["rows"], dtype=np.int64)
        if g.weight is not None:
            g.weight = GroupedSum.from_json(data["weight"])
            g.weight.grow(g.size)
        for k in terms:
            g.sums[k] = GroupedSum.from_json(data["sums"][names[k]])
            g.sums[k].grow(g.size)
        for k, spec in g.specs.items():
            g.components[k] = load_component(spec, data["components"][names[k]], weighted)
            g.components[k].grow(g.size)
        return g


def total(sums: Sequence[ExactSum]) -> ExactSum:
    """The exact sum of exact sums."""
    out = ExactSum()
    for t in sums:
        out.merge(t)
    return out
