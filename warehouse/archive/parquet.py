"""Writing the archive's Parquet files atomically, and removing the ones no ledger entry holds.

A data file is written under a hidden temporary name and renamed into place, so a reader
never sees half a file; on a local filesystem it is fsynced before the rename and its
directory after (:func:`~warehouse.archive.ledger.sync_file`), so it is on the disk
before the ledger entry that records it is written. A batch's files go through
:class:`DurableFiles`, which overlaps their fsyncs with encoding and with each other. A crash between a batch's files and
its ledger entry leaves files no entry references: :func:`remove_unrecorded_files`
deletes them before the batch is read again, so nothing is archived twice. It must run
only under the partition's lease (another run's files are unrecorded while it writes).
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from warehouse.archive.layout import DATASETS, batch_file_pattern
from warehouse.archive.ledger import create_dir_durably, is_local, sync_directory, sync_file

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pyarrow as pa
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

# DuckDB scans Parquet in parallel by row group and uses 122,880-row groups itself.
ROW_GROUP_ROWS = 122_880
COMPRESSION = "zstd"


def write_parquet_atomically(fs: pafs.FileSystem, path: str, tables: Iterable[pa.Table]) -> int:
    """Write tables as one Parquet file under a hidden name, then rename it into place.

    Small tables are buffered into row groups of :data:`ROW_GROUP_ROWS`; returns the rows.
    Durable when it returns: the file is fsynced before the rename, its directory after.
    """
    with DurableFiles(fs) as files:
        rows = files.write(path, tables)
        files.publish()
    return rows


class DurableFiles:
    """Parquet files put in place together, durably: what must precede a ledger entry.

    :meth:`write` writes each file under a hidden temporary name beside its path and, on
    a local filesystem, starts its fsync in a background thread while the next file is
    encoded; :meth:`publish` waits for those fsyncs, renames every file into place, then
    fsyncs their directories (in parallel). When it returns, every file's bytes and name
    are on the disk, for about the time of two fsyncs rather than two per file. Leaving
    the ``with`` block without publishing (an error) deletes the temporaries.
    """

    _SYNC_THREADS = 8

    def __init__(self, fs: pafs.FileSystem) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.fs = fs
        self._staged: list[tuple[str, str]] = []  # (temporary, path)
        self._syncs: list[Future[None]] = []
        self._pool = (
            ThreadPoolExecutor(self._SYNC_THREADS, thread_name_prefix="archive-fsync")
            if is_local(fs)
            else None  # an object store's PUT is durable: no fsync
        )

    def __enter__(self) -> DurableFiles:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for temporary, _path in self._staged:  # not published: an error
            _delete_quietly(self.fs, temporary)

    def write(self, path: str, tables: Iterable[pa.Table]) -> int:
        """Write ``path``'s file under its temporary name (not in place yet); its rows."""
        directory, name = posixpath.split(path)
        create_dir_durably(self.fs, directory)
        temporary = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        self._staged.append((temporary, path))
        rows = _write_parquet(self.fs, temporary, tables, path)
        if self._pool is not None:
            self._syncs.append(self._pool.submit(sync_file, self.fs, temporary))
        return rows

    def publish(self, on_moved: Callable[[str], None] | None = None) -> None:
        """Every file's bytes on the disk, then in place (``on_moved(path)`` after each
        rename), then every directory's names on the disk."""
        for sync in self._syncs:
            sync.result()
        for temporary, path in self._staged:
            self.fs.move(temporary, path)
            if on_moved is not None:
                on_moved(path)
        directories = sorted({posixpath.dirname(path) for _, path in self._staged})
        if self._pool is not None:
            for sync in [self._pool.submit(sync_directory, self.fs, d) for d in directories]:
                sync.result()
        self._staged, self._syncs = [], []


def _write_parquet(
    fs: pafs.FileSystem, temporary: str, tables: Iterable[pa.Table], path: str
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0
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
    *,
    fence: Callable[[], None] | None = None,
) -> list[str]:
    """Delete this partition's data files whose offset range is not in the ledger.

    They are what a crash between the data files and the ledger entry leaves behind;
    the batch is read again from Kafka, so keeping them would archive it twice. File and
    ledger names both carry the range: a listing of each, no file is read. ``fence``
    (the run's lease check) is called before the first deletion, after the listings.
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
                if fence is not None and not removed:
                    fence()
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
