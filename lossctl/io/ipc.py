"""Arrow IPC input (``.arrow``, ``.feather``, ``.ipc``): the file format and the stream format.

Feather v2 is the Arrow IPC file format.  Only the needed columns' buffers
are read (``included_fields``), one record batch at a time, so memory is
bounded by the writer's batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.ipc as ipc

from .reader import Reader, cannot_read
from .sources import Source

FILE_MAGIC = b"ARROW1"
FEATHER_V1_MAGIC = b"FEA1"


class IpcReader(Reader):
    """Streams record batches of selected columns from an Arrow IPC file or stream."""

    def __init__(self, source: Source, batch_rows: int = 1 << 16) -> None:
        self._batches_done = 0
        self._total_batches = 0
        super().__init__(source, batch_rows)

    def _open(self, fields: Sequence[int] = ()) -> ipc.RecordBatchFileReader | ipc.RecordBatchStreamReader:
        f = self._raw()
        head = f.read(len(FILE_MAGIC))
        f.seek(0)
        options = ipc.IpcReadOptions(included_fields=list(fields))
        if head.startswith(FEATHER_V1_MAGIC):
            raise pa.ArrowInvalid("a Feather v1 file (deprecated): rewrite it as Feather v2, e.g. "
                                  "pyarrow.feather.write_feather(pyarrow.feather.read_table(old), new)")
        if head == FILE_MAGIC:
            reader = ipc.open_file(f, options=options)
            self._total_batches = reader.num_record_batches
            return reader
        return ipc.open_stream(f, options=options)

    def _columns(self) -> list[str]:
        try:
            self._schema = self._open().schema
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
        return list(self._schema.names)

    @property
    def schema_types(self) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in self._schema}

    def bytes_done(self) -> int:
        if not self._total_batches:  # a stream: how far into the bytes
            return super().bytes_done()
        return int((self.source.size or 0) * min(1.0, self._batches_done / self._total_batches))

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        names = self._schema.names
        wanted = sorted({names.index(c) for c in columns})
        try:
            reader = self._open(wanted)
            if isinstance(reader, ipc.RecordBatchFileReader):
                stream: Iterator[pa.RecordBatch] = (reader.get_batch(i)
                                                    for i in range(reader.num_record_batches))
            else:
                stream = iter(reader)
            for batch in stream:
                self._batches_done += 1
                yield batch
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
