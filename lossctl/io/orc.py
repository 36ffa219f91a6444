"""ORC input: only the needed columns, stripe by stripe (memory bounded by the stripe size)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from ..errors import InputError
from .reader import SchemaReader, cannot_read


def _orc():  # type: ignore[no-untyped-def]
    try:
        import pyarrow.orc as orc
    except ImportError:  # pyarrow built without ORC (some Windows builds)
        raise InputError("this pyarrow build cannot read ORC files (pyarrow.orc is missing)") from None
    return orc


class OrcReader(SchemaReader):
    """Streams record batches of selected columns from an ORC file."""

    def _open_schema(self) -> pa.Schema:
        self._orc = _orc().ORCFile(self._raw())
        self.pieces_total = self._orc.nstripes
        return self._orc.schema

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        wanted = self.positions(columns)
        # pyarrow's ORC reader picks columns by name even when given positions (with a name
        # that repeats, the wrong column): such a file is read whole, stripe by stripe
        alike = self.columns != self.names
        for i in range(self._orc.nstripes):
            try:
                stripe = self._orc.read_stripe(i) if alike else \
                    self._orc.read_stripe(i, columns=wanted)
                if alike:
                    stripe = stripe.select(wanted)
            except (pa.ArrowException, OSError) as e:
                raise cannot_read(self.source, e) from None
            self.pieces_done += 1
            yield self.under_keys(stripe, wanted)
