"""The rows of a url list, a slice at a time: what a crawl shard reads.

A crawl plans its shards as ``(file, start, end)`` slices of the url lists
(:func:`pipeline.crawl.plan_shards`), and each worker reads only its shards' slices. A parquet
file is read by row group, only the columns the crawl uses, and the decoded row groups are kept
per worker process (least recently used, :data:`CACHE_BYTES` in all): a list written as one row
group of a million rows (pyarrow's default up to 1,048,576) is decoded once per worker, not once
per shard. Before this, every 1,000-url shard read the whole file: at a million urls that was
0.33 s of CPU and ~60 MB of memory a shard, a cost that grew with the list. csv, tsv and jsonl
are read record by record (:func:`pipeline.candidates.url_list_rows`), where one ragged row, one
over-long line or one caption of another JSON type would fail pyarrow's reader, and with it the
whole file: a record that does not parse keeps its place, empty.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Callable

import fsspec

CACHE_BYTES = 128 << 20  # decoded row groups kept per worker process (a million urls with captions: ~60 MB)
DECODE_BATCH = 65_536  # rows decoded at a time from a row group


class RowGroupCache:
    """Decoded parquet row groups, least recently used dropped past ``limit`` bytes; a row group
    larger than the limit is decoded for each use and not kept."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit, self.bytes, self.loads = limit, 0, 0
        self.entries: OrderedDict[tuple, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], object]):
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        table = load()
        with self.lock:
            self.loads += 1
            if table.nbytes <= self.limit and key not in self.entries:
                self.entries[key] = table
                self.bytes += table.nbytes
                while self.bytes > self.limit:
                    _, dropped = self.entries.popitem(last=False)
                    self.bytes -= dropped.nbytes
        return table


ROW_GROUPS = RowGroupCache()


def is_parquet(path: str) -> bool:
    return ".parquet" in path.rsplit("/", 1)[-1].lower()


def decode_row_group(parquet, group: int, columns: list[str]):
    """Row group ``group`` of an open ``pyarrow.parquet.ParquetFile``, ``columns`` only, decoded
    :data:`DECODE_BATCH` rows at a time, so that the decode costs little more than the table.
    ``read_row_group`` decodes each column whole into buffers that grow by doubling: for the scale
    benchmark's million urls pyarrow's pool peaked at 1.49x the table (1.08x batch by batch), and the
    crawl worker's peak memory grew with the list."""
    import pyarrow as pa

    schema = pa.schema([parquet.schema_arrow.field(name) for name in columns])
    return pa.Table.from_batches(list(parquet.iter_batches(DECODE_BATCH, row_groups=[group], columns=columns)),
                                 schema=schema)


def read_table(path: str, start: int = 0, end: int | None = None,
               select: Callable[[list[str]], list[str]] | None = None,
               cache: RowGroupCache | None = None) -> tuple[list[str], list[dict]]:
    """The column names of a url list and its rows ``start:end`` as dicts of the values found
    (for csv, tsv and jsonl the names are the keys of those rows). For parquet, ``select(names)``
    names the columns to read (all when None; it may raise for a file without the columns it
    needs), and only the row groups that hold the slice are decoded, through ``cache`` (the
    process's :data:`ROW_GROUPS` when None)."""
    if not is_parquet(path):
        from pipeline.candidates import url_list_rows

        rows = list(itertools.islice(url_list_rows(path), start, end))
        return list(dict.fromkeys(key for row in rows for key in row)), rows
    import pyarrow.parquet as pq

    cache = ROW_GROUPS if cache is None else cache
    with fsspec.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        meta, names = parquet.metadata, parquet.schema_arrow.names
        columns = list(dict.fromkeys(select(names))) if select else names
        stop = meta.num_rows if end is None else min(end, meta.num_rows)
        version = (path, meta.num_rows, meta.serialized_size, meta.num_row_groups, tuple(columns))
        rows, offset = [], 0
        for group in range(meta.num_row_groups):
            size = meta.row_group(group).num_rows
            if offset >= stop:
                break
            if offset + size > start:
                table = cache.get((*version, group), lambda: decode_row_group(parquet, group, columns))
                first = max(start, offset) - offset
                rows.extend(table.slice(first, min(stop, offset + size) - offset - first).to_pylist())
            offset += size
    return names, rows


def row_count(path: str) -> int:
    """Rows of a url list; for parquet from the footer alone, without reading the columns."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    from pipeline.candidates import url_list_rows

    return sum(1 for _ in url_list_rows(path))
