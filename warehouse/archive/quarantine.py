"""Quarantine: archive readings kept out of the warehouse until a person releases them.

Two scopes, one record per batch (``<archive>/quarantine/<batch_id>/_quarantine.json``):

* **rows** — a critical *row-level* expectation failed (a duplicate, a humidity outside
  its band, a null, a time too far ahead …): only the failing readings are set aside.
  They go to ``quarantine/<batch_id>/rows.parquet`` — the reading's columns, its
  ``region`` (from the Hive path), the ``file`` it came from, and the failed
  ``expectation`` with a ``reason`` — and each of the batch's data files that held one is
  rewritten without them, *at the same path*, atomically (a hidden temporary renamed over
  it); a file left without a reading is deleted instead (the record keeps its ledger
  description, for the release). The ledger entry is then rewritten (same offsets, so the
  same entry path: one atomic write) with each file's new row count, without the deleted
  files. So the ledger keeps describing exactly the files that hold the batch, the
  archiver's clean-up (which matches file names against ledger ranges) and the
  warehouse's views (which glob the dataset directories) need no change, and the batch's
  good rows stay in the warehouse.
* **batch** — a *batch-wide* expectation failed (the schema: a file of the wrong columns or
  types): the batch's files move from ``<archive>/<dataset>/…`` to
  ``<archive>/quarantine/<batch_id>/<dataset>/…`` (same relative path below). The ledger
  is left as it is: it still lists the batch (it *is* archived: the next archive run must
  not read it again).

Why rewrite rather than keep the files and list excluded ``(partition, offset)`` pairs for
the views to filter out: rows are set aside rarely and a batch is small, while every
warehouse query reads the views; a rewrite keeps the views, the archive layout and
plain-DuckDB queries of ``readings/**`` (the README's) all true without a join, and a
release is the same operation backwards.

Crash safety. Row quarantine writes ``rows.parquet`` first, then the record, then
rewrites (or deletes) the files, then the ledger: every step is idempotent (rows already
set aside are not taken twice; a file without them is not rewritten), so running the same quarantine
again — which the next validation does, as the batch has no result yet — finishes the
job. Release puts the rows back the same way, then deletes the record, then the folder.
A batch quarantine writes the record before the first file moves and removes it after
the last one moves back, and a file already at its destination is skipped. Compaction
leaves quarantined batches (either scope) alone, and a batch already compacted with
others is refused (quarantine it by hand or re-archive the day).
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.errors import ClimateWatchError
from warehouse.archive.layout import READINGS
from warehouse.archive.ledger import (
    ArchivedFile,
    Ledger,
    LedgerEntry,
    filesystem_for,
    sync_directory,
    write_atomically,
)
from warehouse.archive.parquet import COMPRESSION, write_parquet_atomically

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

QUARANTINE_DIR = "quarantine"
RECORD_NAME = "_quarantine.json"
ROWS_NAME = "rows.parquet"
BATCH = "batch"  # the batch's files moved to the quarantine folder
ROWS = "rows"  # only some readings, in rows.parquet; the batch's files hold the others
# Columns rows.parquet adds to the reading's (the region comes from the Hive path).
ROW_COLUMNS = ("region", "file", "expectation", "reason")


@dataclass(frozen=True)
class QuarantineRecord:
    """A quarantined batch, or the readings set aside from it: where, which dates, and why."""

    batch_id: str
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    rows: int  # readings out of the warehouse
    dates: tuple[str, ...]  # event dates of those readings
    files: tuple[str, ...]  # batch: files moved; rows: files the rows were taken from
    reason: str  # one line, for people
    failures: tuple[dict[str, Any], ...] = ()  # {"expectation", "severity", "unexpected_count"}
    quarantined_at: str = ""
    scope: str = BATCH  # records written before row quarantine are whole batches
    rows_by_date: dict[str, int] = field(default_factory=dict)  # readings out, per date
    # rows: ledger files all of whose readings were set aside (deleted; release rewrites them)
    emptied: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> QuarantineRecord:
        body = json.loads(text)
        body["dates"] = tuple(body.get("dates", ()))
        body["files"] = tuple(body.get("files", ()))
        body["failures"] = tuple(body.get("failures", ()))
        body["emptied"] = tuple(body.get("emptied", ()))
        return cls(**body)


@dataclass(frozen=True)
class RowQuarantine:
    """What :func:`quarantine_rows` did: the record, and the readings this call took out."""

    record: QuarantineRecord
    moved: int
    moved_dates: tuple[str, ...]


def _folder(base: str, batch_id: str) -> str:
    return posixpath.join(base, QUARANTINE_DIR, batch_id)


def _record_path(base: str, batch_id: str) -> str:
    return posixpath.join(_folder(base, batch_id), RECORD_NAME)


def _read_record(fs: pafs.FileSystem, path: str) -> QuarantineRecord | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return QuarantineRecord.from_json(stream.read().decode())


def quarantined(root: str) -> list[QuarantineRecord]:
    """Every quarantined batch of this archive (either scope), oldest first."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    selector = pafs.FileSelector(posixpath.join(base, QUARANTINE_DIR), allow_not_found=True)
    records = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory:
            continue
        record = _read_record(fs, posixpath.join(info.path, RECORD_NAME))
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: (r.quarantined_at, r.batch_id))


def quarantined_ids(root: str) -> set[str]:
    return {record.batch_id for record in quarantined(root)}


def quarantined_rows(root: str, batch_id: str) -> pa.Table | None:
    """The readings set aside from a batch (``rows.parquet``), or None when there are none."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, base = filesystem_for(root)
    path = posixpath.join(_folder(base, batch_id), ROWS_NAME)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_file(path) as source:
        return pq.read_table(source)


def _move(fs: Any, source: str, destination: str) -> bool:
    """Move one file; False when it is already at its destination (a re-run)."""
    import pyarrow.fs as pafs

    if fs.get_file_info(source).type != pafs.FileType.File:
        if fs.get_file_info(destination).type == pafs.FileType.File:
            return False
        raise ClimateWatchError(f"archive file {source} is missing (and not at {destination})")
    fs.create_dir(posixpath.dirname(destination), recursive=True)
    fs.move(source, destination)
    return True


def _shared_files(entry: LedgerEntry, entries: list[LedgerEntry]) -> set[str]:
    """Files of ``entry`` that other batches also point at (merged by compaction)."""
    others = {f.path for e in entries if e.batch_id != entry.batch_id for f in e.files}
    return {f.path for f in entry.files} & others


def _current_entry(root: str, entry: LedgerEntry) -> tuple[LedgerEntry, list[LedgerEntry]]:
    """The batch's entry as the ledger has it now (a re-run may have rewritten it)."""
    entries = Ledger(root).entries()
    current = next((e for e in entries if e.batch_id == entry.batch_id), entry)
    shared = _shared_files(current, entries)
    if shared:
        raise ClimateWatchError(
            f"batch {entry.batch_id} was already compacted with other batches "
            f"({sorted(shared)[0]}): quarantine it by hand or re-archive the day"
        )
    return current, entries


def _rows_by_date(files: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for archived in files:
        if archived.dataset == READINGS and archived.date is not None:
            counts[archived.date] = counts.get(archived.date, 0) + archived.rows
    return counts


# --- whole batches ----------------------------------------------------------------------------
def quarantine_batch(
    root: str,
    entry: LedgerEntry,
    *,
    reason: str,
    failures: tuple[dict[str, Any], ...] = (),
    now: datetime | None = None,
) -> QuarantineRecord:
    """Move the batch's files out of the warehouse's sight; return its record."""
    fs, base = filesystem_for(root)
    entry, _ = _current_entry(root, entry)
    held = _read_record(fs, _record_path(base, entry.batch_id))
    if held is not None and held.scope != BATCH:
        raise ClimateWatchError(
            f"readings of batch {entry.batch_id} are already set aside: release them first"
        )
    record = QuarantineRecord(
        batch_id=entry.batch_id,
        topic=entry.topic,
        partition=entry.partition,
        start_offset=entry.start_offset,
        end_offset=entry.end_offset,
        rows=entry.rows,
        dates=entry.dates,
        files=tuple(f.path for f in entry.files),
        reason=reason,
        failures=failures,
        quarantined_at=(now or datetime.now(UTC)).isoformat(),
        scope=BATCH,
        rows_by_date=_rows_by_date(entry.files),
    )
    write_atomically(fs, _record_path(base, entry.batch_id), record.to_json().encode())
    for path in record.files:
        _move(
            fs,
            posixpath.join(base, path),
            posixpath.join(base, QUARANTINE_DIR, entry.batch_id, path),
        )
    return record


# --- rows -------------------------------------------------------------------------------------
def _read_parquet(fs: pafs.FileSystem, path: str) -> pa.Table:
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as source:
        return pq.read_table(source)


def _of_batch(table: pa.Table, entry: LedgerEntry, offsets: pa.Array | None = None) -> pa.Array:
    """Mask of the rows of ``table`` that are this batch's (and at ``offsets``, if given)."""
    import pyarrow.compute as pc

    mine = pc.and_(
        pc.equal(table["kafka_partition"], entry.partition),
        pc.and_(
            pc.greater_equal(table["kafka_offset"], entry.start_offset),
            pc.less(table["kafka_offset"], entry.end_offset),
        ),
    )
    if offsets is None:
        return mine
    return pc.and_(mine, pc.is_in(table["kafka_offset"], value_set=offsets))


def _write_table(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """A table as one Parquet file, written atomically (bytes, then a rename)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=COMPRESSION)
    write_atomically(fs, path, buffer.getvalue())


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.File


def _count(table: pa.Table, entry: LedgerEntry) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.sum(pc.cast(_of_batch(table, entry), pa.int64())).as_py() or 0


def _rewrite_ledger(
    root: str,
    entry: LedgerEntry,
    counts: Mapping[str, int],
    *,
    dropped: frozenset[str] = frozenset(),
    added: tuple[ArchivedFile, ...] = (),
) -> None:
    """The entry with ``counts``' files holding that many of its readings, ``dropped``
    files no longer and ``added`` ones again (same offsets: one atomic write)."""
    files = [
        dataclasses.replace(f, rows=counts[f.path]) if f.path in counts else f
        for f in entry.files
        if f.path not in dropped
    ]
    present = {f.path for f in files}
    files += [
        dataclasses.replace(f, rows=counts.get(f.path, f.rows))
        for f in added
        if f.path not in present
    ]
    readings = sum(f.rows for f in files if f.dataset == READINGS)
    before = sum(f.rows for f in entry.files if f.dataset == READINGS)
    changed = dataclasses.replace(entry, files=tuple(files), rows=entry.rows + readings - before)
    if changed != entry:
        Ledger(root).append(changed)


def quarantine_rows(
    root: str,
    entry: LedgerEntry,
    verdicts: Mapping[int, tuple[str, str]],
    *,
    reason: str,
    failures: tuple[dict[str, Any], ...] = (),
    now: datetime | None = None,
) -> RowQuarantine:
    """Set the readings at ``verdicts``' offsets (-> expectation, reason) aside.

    Readings already set aside stay so (with their first verdict); offsets the batch does
    not hold are ignored. A file left without a reading is deleted and leaves the ledger
    entry (the record keeps its description for the release). Idempotent: see the module
    docstring.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    fs, base = filesystem_for(root)
    entry, _ = _current_entry(root, entry)
    folder = _folder(base, entry.batch_id)
    previous = _read_record(fs, _record_path(base, entry.batch_id))
    if previous is not None and previous.scope != ROWS:
        raise ClimateWatchError(f"batch {entry.batch_id} is quarantined whole already")
    held = quarantined_rows(root, entry.batch_id) if previous is not None else None
    held_offsets = set(held["kafka_offset"].to_pylist()) if held is not None else set()
    emptied = {f["path"]: ArchivedFile(**f) for f in previous.emptied} if previous else {}
    files = {f.path: f for f in entry.files if f.dataset == READINGS}
    for path, archived in emptied.items():
        files.setdefault(path, archived)
    wanted = pa.array(sorted(set(verdicts) - held_offsets), pa.int64())

    # one pass over the batch's files: the readings to take out, and each file's table
    tables: dict[str, pa.Table] = {}
    taken: list[pa.Table] = [] if held is None else [held]
    for path, archived in files.items():
        if not _exists(fs, posixpath.join(base, path)):
            if path in emptied:  # deleted by an earlier, interrupted run
                continue
            raise ClimateWatchError(f"archive file {path} of batch {entry.batch_id} is missing")
        table = tables[path] = _read_parquet(fs, posixpath.join(base, path))
        if not len(wanted):
            continue
        picked = table.filter(_of_batch(table, entry, wanted))
        if not picked.num_rows:
            continue
        said = [verdicts[o] for o in picked["kafka_offset"].to_pylist()]
        n = picked.num_rows
        picked = picked.append_column("region", pa.array([archived.region] * n, pa.string()))
        picked = picked.append_column("file", pa.array([path] * n, pa.string()))
        picked = picked.append_column("expectation", pa.array([e for e, _ in said], pa.string()))
        taken.append(picked.append_column("reason", pa.array([r for _, r in said], pa.string())))
    if not taken:
        raise ClimateWatchError(f"batch {entry.batch_id} holds none of the readings to set aside")
    rows = pa.concat_tables(taken, promote_options="permissive")
    out = pa.array(sorted(rows["kafka_offset"].to_pylist()), pa.int64())
    kept: dict[str, tuple[int, pa.Table]] = {}  # path -> (readings to take out, what stays)
    for path, table in tables.items():
        drop = _of_batch(table, entry, out)
        removed = pc.sum(pc.cast(drop, pa.int64())).as_py() or 0
        kept[path] = (removed, table.filter(pc.invert(drop)) if removed else table)
        if removed and not kept[path][1].num_rows:
            emptied[path] = files[path]

    per_file: dict[str, int] = {}
    for path in rows["file"].to_pylist():
        per_file[path] = per_file.get(path, 0) + 1
    rows_by_date: dict[str, int] = {}
    for path, count in per_file.items():
        day = files[path].date if path in files else None
        if day is not None:
            rows_by_date[day] = rows_by_date.get(day, 0) + count
    record = QuarantineRecord(
        batch_id=entry.batch_id,
        topic=entry.topic,
        partition=entry.partition,
        start_offset=entry.start_offset,
        end_offset=entry.end_offset,
        rows=rows.num_rows,
        dates=tuple(sorted(rows_by_date)),
        files=tuple(sorted(per_file)),
        reason=reason,
        failures=failures,
        quarantined_at=(
            previous.quarantined_at if previous else (now or datetime.now(UTC)).isoformat()
        ),
        scope=ROWS,
        rows_by_date=rows_by_date,
        emptied=tuple(asdict(emptied[p]) for p in sorted(emptied)),
    )
    # 1. the rows, 2. the record, 3. the files, 4. the ledger (module docstring)
    if rows.num_rows != len(held_offsets):
        _write_table(fs, posixpath.join(folder, ROWS_NAME), rows)
    if record != previous:
        write_atomically(fs, _record_path(base, entry.batch_id), record.to_json().encode())
    moved, moved_dates, counts = 0, set(), {}
    for path, (removed, table) in kept.items():
        if removed and path in emptied:
            fs.delete_file(posixpath.join(base, path))
            sync_directory(fs, posixpath.dirname(posixpath.join(base, path)))
        elif removed:
            write_parquet_atomically(fs, posixpath.join(base, path), [table])
        if removed:
            moved += removed
            if files[path].date is not None:
                moved_dates.add(files[path].date)
        counts[path] = _count(table, entry)
    _rewrite_ledger(root, entry, counts, dropped=frozenset(emptied))
    return RowQuarantine(record, moved, tuple(sorted(moved_dates)))


def _release_rows(root: str, record: QuarantineRecord) -> None:
    """Put the set-aside readings back into the files they came from, then the ledger."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from warehouse.archive.batch import dataset_schema

    fs, base = filesystem_for(root)
    rows = quarantined_rows(root, record.batch_id)
    entries = Ledger(root).entries(record.topic, record.partition)
    entry = next((e for e in entries if e.batch_id == record.batch_id), None)
    if entry is None:
        raise ClimateWatchError(f"batch {record.batch_id} is not in the archive's ledger")
    emptied = tuple(ArchivedFile(**f) for f in record.emptied)
    counts = {}
    for path in record.files:
        full = posixpath.join(base, path)
        table = _read_parquet(fs, full) if _exists(fs, full) else None
        schema = dataset_schema(READINGS) if table is None else table.schema
        back = rows.filter(pc.equal(rows["file"], path)) if rows is not None else None
        if back is not None and table is not None:
            back = back.filter(pc.invert(pc.is_in(back["kafka_offset"], table["kafka_offset"])))
        if back is not None and back.num_rows:
            back = back.select(schema.names).cast(schema)
            table = back if table is None else pa.concat_tables([table, back])
            table = table.sort_by("kafka_offset")
            write_parquet_atomically(fs, full, [table])
        if table is None:
            raise ClimateWatchError(f"the readings of {path} are missing from the quarantine")
        counts[path] = _count(table, entry)
    _rewrite_ledger(root, entry, counts, added=emptied)


def release_batch(root: str, batch_id: str) -> QuarantineRecord:
    """Bring a quarantined batch (or its set-aside readings) back where the warehouse reads."""
    fs, base = filesystem_for(root)
    path = _record_path(base, batch_id)
    record = _read_record(fs, path)
    if record is None:
        known = ", ".join(sorted(quarantined_ids(root))) or "none"
        raise ClimateWatchError(f"no quarantined batch {batch_id!r} (quarantined: {known})")
    if record.scope == ROWS:
        _release_rows(root, record)
        fs.delete_file(path)  # released from here on; the rows file below is a leftover
    else:
        for relative in record.files:
            _move(
                fs,
                posixpath.join(base, QUARANTINE_DIR, batch_id, relative),
                posixpath.join(base, relative),
            )
    fs.delete_dir(_folder(base, batch_id))
    return record
