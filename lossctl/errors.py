"""Exceptions that lossctl turns into a clear message and exit status 2.

Two kinds: a usage error (the command or its options are wrong) and an input
error (the data is wrong).  An input error carries where the bad value is, so
the CLI can name the file, the row as a person counts it, the column and the
value, without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class LossctlError(Exception):
    """Base class: anything lossctl reports to the user as exit status 2."""


class UsageError(LossctlError):
    """The request is malformed: unknown loss, bad parameter, missing column."""


class OptionError(UsageError):
    """Options that do not go together (``key`` without ``labels``): the CLI adds its --help hint."""


class InputError(LossctlError):
    """The data cannot be evaluated: empty input, unreadable file, zero weight sum."""


@dataclass
class InvalidInput(InputError):
    """A value in the data violates the spec's bad-input rules.

    ``row`` is the 0-based index of the row within the stream of rows given to
    the accumulator; readers translate it into a file and a 1-based data row.
    ``role`` is ``label``, ``prediction`` or ``weight``.
    """

    reason: str
    row: int
    role: str
    value: object
    index: int | None = None  # which of K columns of the role, if several
    column: str | None = None
    source: str | None = None
    line: int | None = None
    via: str | None = None  # where a joined column's value came from ("from labels.csv by key id")
    shown_as: str = "value"  # what ``value`` is: the cell, or the "row sum" of a row rule

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __reduce__(self) -> tuple:
        """Pickled by its fields (a Dask worker's error reaches the client whole)."""
        return (type(self), (self.reason, self.row, self.role, self.value, self.index, self.column,
                             self.source, self.line, self.via))

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"row {self.line}")
        else:
            where.append(f"row {self.row + 1}")
        col = self.column or self.role
        role = f"{self.role}, {self.via}" if self.via else self.role
        where.append(f"column {col!r} ({role})" if self.column else role)
        return f"{', '.join(where)}: {self.reason} ({self.shown_as}: {_show(self.value)})"


def _show(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "missing"
    return repr(value) if isinstance(value, str) else str(value)


class OutputError(LossctlError):
    """An output cannot be written: a missing or read-only directory, a full disk."""
