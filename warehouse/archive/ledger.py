"""The archive's offset ledger: which offset ranges of which partitions the archive holds.

One small JSON document per archived batch, written atomically *after* the batch's data
files, under ``<archive root>/_ledger/<topic>/p<partition>/<start>-<end>.json``. A batch
is archived exactly when its ledger entry exists. Everything downstream — the next
archive run, the warehouse's incremental recompute, data-quality validation — reads the
ledger, never a consumer group's commits or a directory listing of data files.

The archive root may be a local path or an object-store URI (``s3://…``); all I/O goes
through a pyarrow filesystem.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

LEDGER_DIR = "_ledger"


@dataclass(frozen=True)
class ArchivedFile:
    """One data file a batch wrote, relative to the archive root."""

    path: str  # e.g. "readings/date=2026-11-24/region=paris/temperature-data-p3-000100-000250.parquet"
    dataset: str  # "readings", "rejected", "alerts" or "window_stats"
    rows: int
    date: str | None = None  # event date (YYYY-MM-DD) of its rows, when partitioned by date
    region: str | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One archived batch: offsets ``[start_offset, end_offset)`` of one topic partition."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int  # exclusive: the next offset to archive
    files: tuple[ArchivedFile, ...] = ()
    rows: int = 0
    rejected: int = 0
    lost_before: int = 0  # records deleted by retention before this batch could read them
    archived_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def batch_id(self) -> str:
        return f"{self.topic}-p{self.partition}-{self.start_offset:012d}-{self.end_offset:012d}"

    @property
    def dates(self) -> tuple[str, ...]:
        """The event dates this batch touched (what downstream must recompute)."""
        return tuple(sorted({f.date for f in self.files if f.date is not None}))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LedgerEntry:
        body = json.loads(text)
        body["files"] = tuple(ArchivedFile(**f) for f in body.get("files", ()))
        return cls(**body)


def filesystem_for(root: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or an object-store URI."""
    import pyarrow.fs as pafs

    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    from pathlib import Path

    return pafs.LocalFileSystem(), str(Path(root).absolute())


def write_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write under a hidden temporary name, then move into place: readers see all or nothing."""
    directory, name = posixpath.split(path)
    fs.create_dir(directory, recursive=True)
    temporary = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    with fs.open_output_stream(temporary) as stream:
        stream.write(data)
    fs.move(temporary, path)


class Ledger:
    """Read and append the ledger of one archive root."""

    def __init__(self, archive_root: str) -> None:
        self.fs, self.root = filesystem_for(archive_root)

    def _entry_path(self, entry: LedgerEntry) -> str:
        return posixpath.join(
            self.root,
            LEDGER_DIR,
            entry.topic,
            f"p{entry.partition}",
            f"{entry.start_offset:012d}-{entry.end_offset:012d}.json",
        )

    def append(self, entry: LedgerEntry) -> None:
        """Record a batch as archived; call only after its data files are in place."""
        write_atomically(self.fs, self._entry_path(entry), entry.to_json().encode())

    def entries(self, topic: str | None = None, partition: int | None = None) -> list[LedgerEntry]:
        """Every ledger entry (optionally of one topic/partition), oldest offsets first."""
        import pyarrow.fs as pafs

        base = posixpath.join(self.root, LEDGER_DIR)
        if topic is not None:
            base = posixpath.join(base, topic)
            if partition is not None:
                base = posixpath.join(base, f"p{partition}")
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        found = [
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.path.endswith(".json")
            and not posixpath.basename(info.path).startswith(".")
        ]
        entries = []
        for path in found:
            with self.fs.open_input_stream(path) as stream:
                entries.append(LedgerEntry.from_json(stream.read().decode()))
        entries.sort(key=lambda e: (e.topic, e.partition, e.start_offset))
        return entries

    def ranges(self, topic: str, partition: int) -> list[tuple[int, int]]:
        """Offset ranges ``(start, end)`` of one partition's entries, oldest first.

        Read from the entries' names (``<start>-<end>.json``), not their contents: one
        listing, however long the ledger.
        """
        import pyarrow.fs as pafs

        base = posixpath.join(self.root, LEDGER_DIR, topic, f"p{partition}")
        selector = pafs.FileSelector(base, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            name = posixpath.basename(info.path)
            start, _, end = name.removesuffix(".json").partition("-")
            if (
                info.type == pafs.FileType.File
                and name.endswith(".json")
                and start.isdigit()
                and end.isdigit()
            ):
                found.append((int(start), int(end)))
        return sorted(found)

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The first offset not yet archived, or None when nothing of it was archived."""
        ends = [end for _, end in self.ranges(topic, partition)]
        return max(ends) if ends else None

    def replace(self, old: list[LedgerEntry], new: list[LedgerEntry]) -> None:
        """Swap entries (compaction rewrites the files of entries); new first, then old out."""
        for entry in new:
            self.append(entry)
        new_paths = {self._entry_path(e) for e in new}
        for entry in old:
            path = self._entry_path(entry)
            if path not in new_paths:
                self.fs.delete_file(path)
