"""Arrow IPC input (``.arrow``, ``.feather``, ``.ipc``): the file format and the stream format.

Feather v2 is the Arrow IPC file format.  Only the needed columns' buffers
are read (``included_fields``), one record batch at a time, so memory is
bounded by the writer's batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.ipc as ipc

from .reader import SchemaReader, cannot_read

FILE_MAGIC = b"ARROW1"
FEATHER_V1_MAGIC = b"FEA1"


class IpcReader(SchemaReader):
    """Streams record batches of selected columns from an Arrow IPC file or stream."""

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
            self.pieces_total = reader.num_record_batches  # (a stream's count is unknown)
            return reader
        return ipc.open_stream(f, options=options)

    def _open_schema(self) -> pa.Schema:
        return self._open().schema

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        wanted = self.positions(columns)
        try:
            reader = self._open(wanted)
            if isinstance(reader, ipc.RecordBatchFileReader):
                stream: Iterator[pa.RecordBatch] = (reader.get_batch(i)
                                                    for i in range(reader.num_record_batches))
            else:
                stream = iter(reader)
            for batch in stream:
                self.pieces_done += 1
                yield self.under_keys(batch, wanted)
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
