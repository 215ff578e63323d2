"""Quarantine: archive batches kept out of the warehouse until a person releases them.

A batch that fails a critical data-quality expectation has its data files moved from
``<archive>/<dataset>/…`` to ``<archive>/quarantine/<batch_id>/<dataset>/…`` (same
relative path below), with a record ``_quarantine.json`` beside them saying why. The
warehouse views glob ``<archive>/<dataset>/**``, so they no longer see the rows; the
ledger still lists the batch (it *is* archived: the next archive run must not read it
again). ``release`` moves the files back. Compaction leaves quarantined batches alone.

The record is written before the first file moves and removed after the last one moves
back, so a crash in between leaves a record that names every file: running the same
command again finishes the job (a file already at its destination is skipped).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from include.errors import ClimateWatchError
from warehouse.archive.ledger import Ledger, LedgerEntry, filesystem_for, write_atomically

QUARANTINE_DIR = "quarantine"
RECORD_NAME = "_quarantine.json"


@dataclass(frozen=True)
class QuarantineRecord:
    """A quarantined batch: which files moved, which dates they hold, and why."""

    batch_id: str
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    rows: int
    dates: tuple[str, ...]
    files: tuple[str, ...]  # paths relative to the archive root, where they belong
    reason: str  # one line, for people
    failures: tuple[dict[str, Any], ...] = ()  # {"expectation", "severity", "unexpected_count"}
    quarantined_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> QuarantineRecord:
        body = json.loads(text)
        body["dates"] = tuple(body.get("dates", ()))
        body["files"] = tuple(body.get("files", ()))
        body["failures"] = tuple(body.get("failures", ()))
        return cls(**body)


def _record_path(base: str, batch_id: str) -> str:
    return posixpath.join(base, QUARANTINE_DIR, batch_id, RECORD_NAME)


def quarantined(root: str) -> list[QuarantineRecord]:
    """Every quarantined batch of this archive, oldest first."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    selector = pafs.FileSelector(posixpath.join(base, QUARANTINE_DIR), allow_not_found=True)
    records = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory:
            continue
        path = posixpath.join(info.path, RECORD_NAME)
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        with fs.open_input_stream(path) as stream:
            records.append(QuarantineRecord.from_json(stream.read().decode()))
    return sorted(records, key=lambda r: (r.quarantined_at, r.batch_id))


def quarantined_ids(root: str) -> set[str]:
    return {record.batch_id for record in quarantined(root)}


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
    shared = _shared_files(entry, Ledger(root).entries())
    if shared:
        raise ClimateWatchError(
            f"batch {entry.batch_id} was already compacted with other batches "
            f"({sorted(shared)[0]}): quarantine it by hand or re-archive the day"
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
    )
    write_atomically(fs, _record_path(base, entry.batch_id), record.to_json().encode())
    for path in record.files:
        _move(
            fs,
            posixpath.join(base, path),
            posixpath.join(base, QUARANTINE_DIR, entry.batch_id, path),
        )
    return record


def release_batch(root: str, batch_id: str) -> QuarantineRecord:
    """Move a quarantined batch's files back where the warehouse reads them."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    path = _record_path(base, batch_id)
    if fs.get_file_info(path).type != pafs.FileType.File:
        known = ", ".join(sorted(quarantined_ids(root))) or "none"
        raise ClimateWatchError(f"no quarantined batch {batch_id!r} (quarantined: {known})")
    with fs.open_input_stream(path) as stream:
        record = QuarantineRecord.from_json(stream.read().decode())
    for relative in record.files:
        _move(
            fs,
            posixpath.join(base, QUARANTINE_DIR, batch_id, relative),
            posixpath.join(base, relative),
        )
    fs.delete_dir(posixpath.join(base, QUARANTINE_DIR, batch_id))
    return record
