"""Parquet input: only the needed columns, row group by row group.

Columns are asked for by key (see :mod:`lossctl.io.columns`); in a file
whose field names repeat, the fields are read by position and come back
under their keys.  A corrupt page or an unreadable value is an error that
names the file and the rows read before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from .reader import Reader, cannot_read, is_list, short
from .sources import Source


class ParquetReader(Reader):
    """Streams record batches of selected columns from a Parquet file."""

    def __init__(self, source: Source, batch_rows: int = 1 << 16, **part: Any) -> None:
        self._rows_done = 0
        super().__init__(source, batch_rows, **part)

    def _open(self, read_dictionary: Sequence[str] = ()) -> pq.ParquetFile:
        # Local files: no pre-buffering of whole row groups (4x less memory, and
        # faster).  Over the network: pre-buffering fetches a row group's needed
        # column chunks in a few large concurrent range requests, not one per 1 MiB.
        remote = self.source.remote
        return pq.ParquetFile(self._raw(), pre_buffer=remote,
                              buffer_size=0 if remote else 1 << 20,
                              read_dictionary=list(read_dictionary) or None)

    def _names(self) -> list[str]:
        try:
            self._pf = self._open()
            return list(self._pf.schema_arrow.names)
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None

    @property
    def schema_types(self) -> dict[str, pa.DataType]:
        return {key: f.type for key, f in zip(self.columns, self._pf.schema_arrow, strict=True)}

    def row_width(self, columns: list[str]) -> int:
        """A list column counts its average number of values a row, from the file's metadata."""
        meta = self._pf.metadata
        width = 0
        for name in columns:
            if not is_list(self.schema_types.get(name, pa.null())):
                width += 1
                continue
            leaves = [j for j in range(meta.num_columns)
                      if meta.schema.column(j).path.startswith(name + ".")]
            values = sum(meta.row_group(g).column(j).num_values
                         for g in range(meta.num_row_groups) for j in leaves)
            width += max(1, -(-values // (meta.num_rows or 1)))
        return width

    def bytes_done(self) -> int:
        size = self.source.size or 0
        total = self._pf.metadata.num_rows or 1
        return int(size * min(1.0, self._rows_done / total))

    def batches(self, columns: list[str], text: Sequence[str] = (),
                categories: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        types = self.schema_types
        strings = [c for c in categories if _is_string(types.get(c)) and c in self.names]
        groups = range(*self.row_groups) if self.row_groups else None  # a work unit's
        try:
            pf = self._pf
            if strings:  # a new reader: read_dictionary is set when the file is opened
                pf = self._pf = self._open(strings)
            # decoded on this thread while the kernels run on the pool's: as fast on
            # two cores as pyarrow's own decode threads, and 20-25% less peak memory
            if self.columns == self.names:
                batches = pf.iter_batches(batch_size=self.batch_rows, columns=columns,
                                          row_groups=groups, use_threads=False)
            else:
                batches = self._by_position(pf, columns, groups)
            for batch in batches:
                self._rows_done += batch.num_rows
                yield batch
        except OSError as e:  # storage failed mid-read (network, credentials)
            if self.source.remote:
                raise cannot_read(self.source, e) from None
            raise self._corrupt(e) from None
        except pa.ArrowException as e:
            raise self._corrupt(e) from None

    def _corrupt(self, e: Exception) -> InputError:
        return InputError(f"{self.source.name}: cannot read as Parquet after row "
                          f"{self.first_row + self._rows_done}: {short(e)}")

    def _by_position(self, pf: pq.ParquetFile, columns: list[str], groups: range | None
                     ) -> Iterator[pa.RecordBatch]:
        """Batches of fields chosen by position (field names repeat), under their keys."""
        fields = sorted(self.columns.index(c) for c in columns)
        leaves, first = [], 0
        for i, f in enumerate(pf.schema_arrow):
            n = _leaves(f.type)
            if i in fields:
                leaves.extend(range(first, first + n))
            first += n
        if first != pf.metadata.num_columns:
            raise InputError(f"{self.source.name}: cannot tell apart the fields named alike "
                             "in this file's nested schema; rename them")
        keys = [self.columns[i] for i in fields]
        groups = range(pf.num_row_groups) if groups is None else groups
        for batch in pf.reader.iter_batches(self.batch_rows, row_groups=groups,
                                            column_indices=leaves, use_threads=False):
            yield pa.RecordBatch.from_arrays(batch.columns, names=keys)


def _leaves(t: pa.DataType) -> int:
    """How many Parquet leaf columns an Arrow type is stored as."""
    if pa.types.is_struct(t):
        return sum(_leaves(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _leaves(t.key_type) + _leaves(t.item_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaves(t.value_type)
    return 1


    def table(self, columns: list[str], text: Sequence[str] = ()) -> pa.Table:
        # read whole (nothing else runs meanwhile): pyarrow's threads decode the row groups
        try:
            table = self._pf.read(columns=columns, use_threads=True)
        except (pa.ArrowException, OSError) as e:
            raise cannot_read(self.source, e) from None
        self._rows_done = table.num_rows
        return table


def _is_string(t: pa.DataType | None) -> bool:
    return t is not None and (pa.types.is_string(t) or pa.types.is_large_string(t))
