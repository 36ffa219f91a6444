"""Saved states: ``eval --emit-state FILE`` writes one, ``lossctl merge`` combines them.

A state file holds the exact state (sums as integers, so nothing is rounded)
and what a report needs besides: inputs, columns and how the losses were
chosen.  Its format is versioned; states of different definitions are
refused by :meth:`EvalState.merge`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ..core.state import STATE_VERSION, EvalState
from ..errors import UsageError
from ..io import fs
from ..io.sinks import write_json_atomic
from .plan import Columns, Outcome

KIND = "lossctl-state"


def save_state(path: str, outcome: Outcome) -> None:
    """Write the outcome's state, with its inputs and columns, to ``path`` (atomically)."""
    if len(outcome.states) != 1:
        raise UsageError("--emit-state saves eval states, not comparisons")
    write_json_atomic(path, {
        "kind": KIND,
        "version": STATE_VERSION,
        "inputs": outcome.inputs,
        "columns": asdict(outcome.columns),
        "losses_chosen": outcome.losses_chosen,
        "state": outcome.states[0].to_json(),
    })


def _load(path: str) -> dict:
    try:
        data = json.loads(fs.read_bytes(path))
    except OSError as e:
        raise UsageError(f"{path}: cannot read state: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path}: not a lossctl state (make one with eval --emit-state)") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UsageError(f"{path}: not a lossctl state (make one with eval --emit-state)")
    if data.get("version") != STATE_VERSION:
        raise UsageError(f"{path}: state format version {data.get('version')!r}; this lossctl "
                         f"reads version {STATE_VERSION}")
    return data


def load_states(paths: list[str]) -> Outcome:
    """Merge saved states in the order given into one report."""
    merged: EvalState | None = None
    columns: Columns | None = None
    inputs: list[str] = []
    chosen = False
    for path in paths:
        data = _load(path)
        try:
            state = EvalState.from_json(data["state"])
            cols = Columns(**data["columns"])
            chosen_here, shard_inputs = bool(data["losses_chosen"]), list(data["inputs"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(f"{path}: a damaged lossctl state (missing or malformed fields); "
                             f"make it again with eval --emit-state") from None
        if merged is None or columns is None:
            merged, columns, chosen = state, cols, chosen_here
        else:
            if not cols.same_as(columns) or cols.weight != columns.weight:
                raise UsageError(f"{path}: columns {cols.needed} differ from "
                                 f"{paths[0]}'s {columns.needed}")
            try:
                merged.merge(state)
            except UsageError as e:
                raise UsageError(f"{path}: {e}") from None
        inputs += shard_inputs
    assert merged is not None and columns is not None
    return Outcome([merged], inputs, columns, chosen)
