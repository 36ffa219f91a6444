"""ORC input: only the needed columns, stripe by stripe (memory bounded by the stripe size)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from ..errors import InputError
from .reader import Reader, cannot_read
from .sources import Source


def _orc():  # type: ignore[no-untyped-def]
    try:
        import pyarrow.orc as orc
    except ImportError:  # pyarrow built without ORC (some Windows builds)
        raise InputError("this pyarrow build cannot read ORC files (pyarrow.orc is missing)") from None
    return orc


class OrcReader(Reader):
    """Streams record batches of selected columns from an ORC file."""

    def __init__(self, source: Source, batch_rows: int = 1 << 16) -> None:
        self._stripes_done = 0
        super().__init__(source, batch_rows)

    def _columns(self) -> list[str]:
        try:
            self._orc = _orc().ORCFile(self._raw())
            self._schema = self._orc.schema
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
        return list(self._schema.names)

    @property
    def schema_types(self) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in self._schema}

    def bytes_done(self) -> int:
        stripes = self._orc.nstripes or 1
        return int((self.source.size or 0) * min(1.0, self._stripes_done / stripes))

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        for i in range(self._orc.nstripes):
            try:
                stripe = self._orc.read_stripe(i, columns=columns)
            except (pa.ArrowException, OSError) as e:
                raise cannot_read(self.source, e) from None
            self._stripes_done += 1
            yield stripe
