"""Saved states: ``eval --emit-state FILE`` writes one, ``lossctl merge`` combines them.

A state file holds the exact state (sums as integers, so nothing is rounded)
and what a report needs besides: inputs, columns and how the losses were
chosen.  Its format is versioned; states of different definitions are
refused by :meth:`EvalState.merge`.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from ..core.state import STATE_VERSION, EvalState
from ..errors import UsageError
from ..io.documents import parse_json, read_text, show, validate
from ..io.sinks import Target, write_json
from .plan import Columns, Outcome
from .state_schema import state_file

KIND = "lossctl-state"
_SCHEMA = state_file(KIND)


def save_state(target: Target | str, outcome: Outcome) -> None:
    """Write the outcome's state, with its inputs and columns, to ``target`` (all or nothing)."""
    if len(outcome.states) != 1:
        raise UsageError("--emit-state saves eval states, not comparisons")
    write_json(target, {
        "kind": KIND,
        "version": STATE_VERSION,
        "inputs": outcome.inputs,
        "input_files": outcome.input_files,
        "columns": asdict(outcome.columns),
        "losses_chosen": outcome.losses_chosen,
        "state": outcome.states[0].to_json(),
    })


def _load(path: str) -> dict:
    """Read and validate a state file (see :mod:`.state_schema`) before anything uses it."""
    hint = " (make one with eval --emit-state)"
    data = parse_json(read_text(path, "lossctl state", 1 << 30), path, "lossctl state", hint)
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UsageError(f"{path}: not a lossctl state{hint}")
    if data.get("version") != STATE_VERSION:
        raise UsageError(f"{path}: state format version {show(data.get('version'))}; this lossctl "
                         f"reads version {STATE_VERSION}")
    validate(data, _SCHEMA, path)
    return data


def load_states(paths: list[str]) -> Outcome:
    """Merge saved states in the order given into one report.

    A state file given twice, or two states holding the same input (by its
    fingerprint), are refused: their rows would be counted twice.
    """
    merged: EvalState | None = None
    columns: Columns | None = None
    inputs: list[str] = []
    files: list[dict] = []
    held: dict[tuple, tuple[str, str]] = {}  # input identity -> (state path, input name)
    chosen = False
    _refuse_same_state_twice(paths)
    for path in paths:
        data = _load(path)  # validated: every field below is there, of its type and size
        cols = Columns(**data["columns"])
        shard_files = [dict(f) for f in data.get("input_files", [])]
        try:
            state = EvalState.from_json(data["state"])
            if merged is None or columns is None:
                merged, columns, chosen = state, cols, data["losses_chosen"]
            elif not cols.same_as(columns) or cols.weight != columns.weight:
                raise UsageError(f"columns {cols.needed} differ from {paths[0]}'s {columns.needed}")
            else:
                merged.merge(state)
        except UsageError as e:
            raise UsageError(f"{path}: {e}") from None
        _refuse_overlaps(path, shard_files, held)  # (states of other definitions: said first)
        inputs += data["inputs"]
        files += shard_files
    assert merged is not None and columns is not None
    return Outcome([merged], inputs, columns, chosen, input_files=files)


def _refuse_same_state_twice(paths: list[str]) -> None:
    seen: dict[str, str] = {}
    for p in paths:
        first = seen.get(os.path.realpath(p))
        seen.setdefault(os.path.realpath(p), p)
        if first is not None:
            raise UsageError(f"{first} and {p} are the same state: its rows would be counted "
                             f"twice; give each state once")


def _refuse_overlaps(path: str, files: list[dict], held: dict[tuple, tuple[str, str]]) -> None:
    """Refuse a state holding an input an earlier state holds (the same bytes, any name)."""
    for f in files:
        if f.get("role", "main") != "main" or not f.get("rows"):
            continue  # a shared labels file, or an input without rows, counts nothing twice
        identity = (f.get("size"), f.get("digest"), f.get("rows"))
        if identity in held:
            other, name = held[identity]
            raise UsageError(f"{path}: its input {f.get('name')} ({f.get('rows'):,} rows) is "
                             f"already in {other} (as {name}): merging would count these rows "
                             f"twice; merge each shard's state once")
        held[identity] = (path, str(f.get("name")))
