"""Compaction: once a day is closed, merge its small archive files into one per directory.

Every archive run adds one small file per (day, region) it touched; a day read by DuckDB
as hundreds of small files scans slowly. A day is *closed* when no batch added a file to
it for ``archive_compact_after_minutes``; then each of its directories (one per region
for readings, one per day for the other datasets) and topic becomes one file.

The swap must keep "every record exactly once" for readers of both the files and the
ledger, and survive a crash at any point. It is journaled:

1. the merged file is written under a hidden temporary name;
2. an intent (``_compaction/<id>.json``: the new file, the old files, the rewritten
   ledger entries) is written atomically;
3. the merged file is renamed into place, then the old files are deleted;
4. the ledger entries are rewritten (same offsets, so same entry paths: each rewrite
   is one atomic write) to point at the merged file, then the intent is deleted.

A crash before step 3 leaves the old files and the ledger as they were (the
temporary file is removed on recovery); after the rename, recovery rolls the swap
forward from the intent. :func:`recover` runs at the start of every compaction.

Each step is durable before the next one starts (a power loss is a crash too): the
merged file and the intent are fsynced before their renames, the directory after the
rename and again after the deletes, the ledger entries as the archiver writes them
(:mod:`~warehouse.archive.ledger`). One compaction runs at a time: it holds the archive
root's compaction lease (two ``archive run`` commands at once, or one during the DAG's
run, would otherwise merge and delete the same files together); a compaction that finds
it taken waits up to ``lease_wait_s``, then leaves the work to the one that holds it.

Object stores cannot swap several files at once: a query that globs a directory in the
instant between the rename and the deletes of step 3 can see a row twice. Readers that
must never see that (the warehouse's incremental recompute) read the files the ledger
lists. After compaction, an entry's ``files`` name the merged file with the entry's own
row count; the merged file also holds other batches' rows, told apart by their
``kafka_partition``/``kafka_offset`` columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import posixpath
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from warehouse.archive.batch import dataset_schema, rejected_arrow_schema
from warehouse.archive.layout import DATASETS, REJECTED, Kind
from warehouse.archive.ledger import (
    LEASE_WAIT_S,
    ArchivedFile,
    LeaseBusy,
    Ledger,
    LedgerEntry,
    compaction_lease,
    filesystem_for,
    sync_directory,
    write_atomically,
)
from warehouse.archive.parquet import write_parquet_atomically
from warehouse.archive.quarantine import quarantined_ids

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

INTENT_DIR = "_compaction"
# Test-only: exit the process (like kill -9) at this step of the first compaction:
# "merged" (file written, no intent), "renamed", "old_deleted", "ledger_partial".
CRASH_AT_ENV = "CLIMATEWATCH_COMPACTION_CRASH_AT"
CRASH_EXIT_CODE = 86


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT_ENV) == name:
        os._exit(CRASH_EXIT_CODE)


@dataclass(frozen=True)
class CompactedGroup:
    directory: str
    topic: str
    merged: str
    replaced: int  # files merged
    rows: int


@dataclass(frozen=True)
class CompactionResult:
    groups: tuple[CompactedGroup, ...]
    recovered: int  # interrupted compactions finished or undone first

    @property
    def files_before(self) -> int:
        return sum(g.replaced for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [dataclasses.asdict(g) for g in self.groups],
            "files_before": self.files_before,
            "files_after": len(self.groups),
            "recovered": self.recovered,
        }


@dataclass(frozen=True)
class _Group:
    directory: str
    topic: str
    paths: tuple[str, ...]  # distinct files, in (partition, offset) order
    batch_ids: tuple[str, ...]


def closed_groups(
    entries: list[LedgerEntry], *, now: datetime, closed_after: timedelta
) -> list[_Group]:
    """Directories (per topic) holding more than one file and no file newer than the cutoff.

    Pure: decides from the ledger alone (archive times), so it works the same on object
    stores, where file modification times are not reliable.
    """
    cutoff = now - closed_after
    files: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    batches: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    newest: dict[tuple[str, str], datetime] = {}
    for entry in sorted(entries, key=lambda e: (e.topic, e.partition, e.start_offset)):
        archived_at = datetime.fromisoformat(entry.archived_at)
        for archived in entry.files:
            key = (posixpath.dirname(archived.path), entry.topic)
            files[key][archived.path] = None
            batches[key][entry.batch_id] = None
            newest[key] = max(newest.get(key, archived_at), archived_at)
    return [
        _Group(directory, topic, tuple(files[key]), tuple(batches[key]))
        for key in sorted(files)
        for directory, topic in [key]
        if len(files[key]) > 1 and newest[key] <= cutoff
    ]


def merged_name(topic: str, batch_ids: tuple[str, ...]) -> str:
    """A stable name for the merge of these batches (the ledger says which offsets)."""
    digest = hashlib.sha1("\n".join(sorted(batch_ids)).encode()).hexdigest()[:16]
    return f"{topic}-compacted-{digest}.parquet"


def compact(
    root: str,
    *,
    closed_after: timedelta,
    now: datetime | None = None,
    lease_wait_s: float = LEASE_WAIT_S,
) -> CompactionResult:
    """Merge the small files of every closed directory; the ledger stays exactly true.

    Under the compaction lease; when another compaction keeps it for ``lease_wait_s``,
    nothing is done here (that one merges the same closed days).
    """
    fs, base = filesystem_for(root)
    ledger = Ledger(root)
    lease = compaction_lease(root)
    try:
        lease.acquire(lease_wait_s)
    except LeaseBusy as exc:
        log.warning("compaction skipped: %s", exc)
        return CompactionResult((), 0)
    try:
        recovered = recover(root)
        held = quarantined_ids(root)  # their files are in quarantine, not in these directories
        entries = [e for e in ledger.entries() if e.batch_id not in held]
        current = {e.batch_id: e for e in entries}
        done = []
        closed = closed_groups(entries, now=now or datetime.now(UTC), closed_after=closed_after)
        for group in closed:
            lease.check()
            done.append(_compact_group(fs, base, ledger, group, current))
    finally:
        lease.release()
    if done:
        log.info("compacted %d directories (%d files)", len(done), sum(g.replaced for g in done))
    return CompactionResult(tuple(done), recovered)


def _file_schema(directory: str) -> pa.Schema:
    """The schema the archiver writes the files of ``directory`` with today."""
    dataset = directory.split("/", 1)[0]
    if dataset == REJECTED:
        return rejected_arrow_schema()
    return dataset_schema(cast("Kind", dataset))


def _read_tables(
    fs: pafs.FileSystem, base: str, paths: tuple[str, ...], schema: pa.Schema
) -> Iterator[pa.Table]:
    """The files, each cast to ``schema``: files written before a schema change (a column
    marked ``not null`` since) merge with new ones into one file of today's schema."""
    import pyarrow.parquet as pq

    for path in paths:
        with fs.open_input_file(posixpath.join(base, path)) as source:
            yield pq.read_table(source).cast(schema)


def _compact_group(
    fs: pafs.FileSystem,
    base: str,
    ledger: Ledger,
    group: _Group,
    current: dict[str, LedgerEntry],
) -> CompactedGroup:
    old_paths = set(group.paths)
    merged = posixpath.join(group.directory, merged_name(group.topic, group.batch_ids))
    rewritten = []
    for batch_id in group.batch_ids:
        entry = current[batch_id]
        files = tuple(
            ArchivedFile(merged, f.dataset, f.rows, f.date, f.region) if f.path in old_paths else f
            for f in entry.files
        )
        rewritten.append(dataclasses.replace(entry, files=files))

    # 1. the merged file, hidden until step 3
    temporary = posixpath.join(base, group.directory, f".{posixpath.basename(merged)}.compacting")
    tables = _read_tables(fs, base, group.paths, _file_schema(group.directory))
    rows = write_parquet_atomically(fs, temporary, tables)
    _crash_point("merged")
    # 2. the intent
    intent_path = posixpath.join(base, INTENT_DIR, posixpath.basename(merged) + ".json")
    intent = {
        "merged": merged,
        "temporary": temporary,
        "old": sorted(old_paths - {merged}),
        "entries": [json.loads(e.to_json()) for e in rewritten],
    }
    write_atomically(fs, intent_path, json.dumps(intent).encode())
    # 3 and 4
    _roll_forward(fs, base, ledger, intent, intent_path)
    for entry in rewritten:
        current[entry.batch_id] = entry
    return CompactedGroup(group.directory, group.topic, merged, len(group.paths), rows)


def _roll_forward(
    fs: pafs.FileSystem, base: str, ledger: Ledger, intent: dict[str, Any], intent_path: str
) -> None:
    import pyarrow.fs as pafs

    target = posixpath.join(base, intent["merged"])
    directory = posixpath.dirname(target)
    if fs.get_file_info(intent["temporary"]).type == pafs.FileType.File:
        fs.move(intent["temporary"], target)
    sync_directory(fs, directory)  # the merged file is in place before the old ones go
    _crash_point("renamed")
    for old in intent["old"]:
        path = posixpath.join(base, old)
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    for old_directory in sorted(
        {posixpath.dirname(posixpath.join(base, o)) for o in intent["old"]}
    ):
        sync_directory(fs, old_directory)  # deletes durable before the ledger says so
    _crash_point("old_deleted")
    for number, body in enumerate(intent["entries"]):
        ledger.append(LedgerEntry.from_json(json.dumps(body)))
        if number == 0:
            _crash_point("ledger_partial")
    fs.delete_file(intent_path)


def recover(root: str) -> int:
    """Finish (merged file in place) or undo (not yet) compactions a crash interrupted."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    ledger = Ledger(root)
    selector = pafs.FileSelector(posixpath.join(base, INTENT_DIR), allow_not_found=True)
    count = 0
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.path.endswith(".json"):
            continue
        with fs.open_input_stream(info.path) as stream:
            intent = json.loads(stream.read())
        merged_in_place = (
            fs.get_file_info(posixpath.join(base, intent["merged"])).type == pafs.FileType.File
        )
        temporary_there = fs.get_file_info(intent["temporary"]).type == pafs.FileType.File
        if merged_in_place or temporary_there:
            # The intent is written only after the merged file is complete: roll forward.
            _roll_forward(fs, base, ledger, intent, info.path)
            log.warning("finished an interrupted compaction into %s", intent["merged"])
        else:
            fs.delete_file(info.path)
        count += 1
    # merged files written but never journaled (crash during step 1): plain leftovers
    for dataset_dir in DATASETS:
        leftovers = pafs.FileSelector(
            posixpath.join(base, dataset_dir), recursive=True, allow_not_found=True
        )
        for info in fs.get_file_info(leftovers):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.File and name.startswith(".") and ".compacting" in name:
                fs.delete_file(info.path)
    return count
