"""Writing the archive's Parquet files atomically, and removing the ones no ledger entry holds.

A data file is written under a hidden temporary name and renamed into place, so a reader
never sees half a file. A crash between a batch's files and its ledger entry leaves files
no entry references: :func:`remove_unrecorded_files` deletes them before the batch is
read again, so nothing is archived twice.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from warehouse.archive.layout import DATASETS, batch_file_pattern

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

# DuckDB scans Parquet in parallel by row group and uses 122,880-row groups itself.
ROW_GROUP_ROWS = 122_880
COMPRESSION = "zstd"


def write_parquet_atomically(fs: pafs.FileSystem, path: str, tables: Iterable[pa.Table]) -> int:
    """Write tables as one Parquet file under a hidden name, then rename it into place.

    Small tables are buffered into row groups of :data:`ROW_GROUP_ROWS`; returns the rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory, name = posixpath.split(path)
    fs.create_dir(directory, recursive=True)
    temporary = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    rows = 0
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        with fs.open_output_stream(temporary) as stream:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(stream, table.schema, compression=COMPRESSION)
                pending.append(table)
                pending_rows += table.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    rows += pending_rows
                    pending, pending_rows = [], 0
            if writer is None:
                raise ValueError(f"no rows for {path}")
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                rows += pending_rows
            writer.close()
        fs.move(temporary, path)
    except BaseException:
        _delete_quietly(fs, temporary)
        raise
    return rows


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_file(path)


def remove_unrecorded_files(
    fs: pafs.FileSystem,
    root: str,
    topic: str,
    partition: int,
    recorded: Iterable[tuple[int, int]],
) -> list[str]:
    """Delete this partition's data files whose offset range is not in the ledger.

    They are what a crash between the data files and the ledger entry leaves behind;
    the batch is read again from Kafka, so keeping them would archive it twice. File and
    ledger names both carry the range: a listing of each, no file is read.
    """
    import pyarrow.fs as pafs

    ranges = set(recorded)
    pattern = batch_file_pattern(topic, partition)
    removed = []
    for dataset in DATASETS:
        selector = pafs.FileSelector(
            posixpath.join(root, dataset), recursive=True, allow_not_found=True
        )
        for info in fs.get_file_info(selector):
            match = pattern.match(posixpath.basename(info.path))
            if info.type != pafs.FileType.File or match is None:
                continue
            start, end = match.group("start"), match.group("end")
            if start is None or (int(start), int(end)) not in ranges:  # temporaries: always
                _delete_quietly(fs, info.path)
                removed.append(posixpath.relpath(info.path, root))
    if removed:
        log.warning(
            "removed %d unrecorded file(s) of %s-p%d left by an interrupted run",
            len(removed),
            topic,
            partition,
        )
    return removed
