"""The archive's offset ledger: which offset ranges of which partitions the archive holds.

One small JSON document per archived batch, written atomically *after* the batch's data
files, under ``<archive root>/_ledger/<topic>/p<partition>/<start>-<end>.json``. A batch
is archived exactly when its ledger entry exists. Everything downstream — the next
archive run, the warehouse's incremental recompute, data-quality validation — reads the
ledger, never a consumer group's commits or a directory listing of data files.

The archive root may be a local path or an object-store URI (``s3://…``); all I/O goes
through a pyarrow filesystem.

**Durability.** On a local filesystem a rename is atomic but not durable until its
directory is fsynced, and a file's bytes are not on the disk until it is. So every file
the archive writes (data file, ledger entry, compaction intent) is fsynced under its
temporary name, renamed, and its directory fsynced (:func:`sync_file`,
:func:`sync_directory`; new directories are fsynced into their parents): a batch's data
files reach the disk before its ledger entry is written, and the entry before the run
moves on. A power loss cannot leave an entry naming a file whose bytes never reached
the disk. On an object store a completed PUT is durable: nothing to do.

**One archiver per partition: the lease.** A run archives a partition only while it
holds that partition's lease, ``<archive root>/_leases/<topic>/p<partition>.lock``,
taken before it removes unrecorded files and released after its last ledger entry.
Without it, a second run's clean-up deletes the first run's files before they reach
the ledger (the first run's entry then points at deleted files), and both can record
the same offsets. Two implementations, picked from the filesystem:

* local path (:class:`LocalLease`): ``fcntl.flock`` on the lock file, held for the
  whole run. The kernel releases it when the process dies however it dies, so a crashed
  run never blocks the next one, and a process cannot lose it while it lives (the file
  is never deleted; a run checks that the path still is the file it locked). On NFS
  this needs NFSv4 (or v3 with lockd), where ``flock`` is a lock on the server;
* object store (:class:`ObjectStoreLease`): a lease record (owner id, host, pid,
  expiry) taken by Fischer's timed protocol, since pyarrow's filesystems offer no
  conditional write (S3's ``If-None-Match``, GCS generations) to compare-and-set with:
  read the record; if it is absent, expired or ours, write ours, then wait
  :data:`SETTLE_S` and read it back; the lease is ours if the record still is. A
  contender that read "free" wrote within ``SETTLE_S / 2`` of its read (a slower write
  does not count as acquiring), so the last writer wins and every other one sees it.
  The holder renews the record as it works and checks it (:meth:`~ObjectStoreLease.check`)
  before each step that changes what others see: deleting unrecorded files, writing a
  batch, appending its ledger entry. Safe as long as such a step completes within
  ``SETTLE_S`` of its check and the hosts' clocks agree to well within
  :data:`LEASE_MARGIN_S`; a run stalled past its lease's expiry finds it lost at its
  next check and stops without recording anything.

A run that finds the lease taken waits for it (bounded), then stops with one line naming
the partition and the run that holds it. Behind the lease, :class:`Ledger` users still
check that the ledger ends where they last left it before appending.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from include.errors import ClimateWatchError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

LEDGER_DIR = "_ledger"
LEASE_DIR = "_leases"


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


# --- durability -------------------------------------------------------------------------------
def is_local(fs: pafs.FileSystem) -> bool:
    """Whether ``fs`` is the local filesystem (paths are OS paths, fsync applies)."""
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def sync_file(fs: pafs.FileSystem, path: str) -> None:
    """Flush a written (and closed) file's bytes to the disk; nothing on an object store."""
    if not is_local(fs):
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_directory(fs: pafs.FileSystem, path: str) -> None:
    """Make the names in a directory durable (a rename into it, a file deleted from it)."""
    if not is_local(fs):
        return
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def create_dir_durably(fs: pafs.FileSystem, directory: str) -> None:
    """``mkdir -p``; each directory it creates is fsynced into its parent (local only)."""
    if not is_local(fs):
        fs.create_dir(directory, recursive=True)
        return
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = posixpath.dirname(current)
        if parent == current:
            break
        current = parent
    if not missing:
        return
    fs.create_dir(directory, recursive=True)
    for created in reversed(missing):
        sync_directory(fs, posixpath.dirname(created))


def write_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write under a hidden temporary name, then move into place: readers see all or nothing.

    Durable when it returns: the file is fsynced before the rename, its directory after.
    """
    directory, name = posixpath.split(path)
    create_dir_durably(fs, directory)
    temporary = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open_output_stream(temporary) as stream:
            stream.write(data)
        sync_file(fs, temporary)
        fs.move(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(temporary)
        raise
    sync_directory(fs, directory)


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


# --- the lease: one archiver per partition ----------------------------------------------------
LEASE_WAIT_S = 60.0  # how long a run waits for a partition another run is archiving
LEASE_TTL_S = 120.0  # object stores: a lease record not renewed for this long has expired
LEASE_RENEW_S = 30.0  # object stores: the holder renews its record this often while it works
LEASE_MARGIN_S = 30.0  # object stores: a holder with less than this left stops instead
SETTLE_S = 2.0  # object stores: a new lease record must still be ours after this long
_POLL_S = 0.1


class LeaseBusy(ClimateWatchError):
    """Another run holds the lease, and kept it for as long as this one would wait."""


class LeaseLost(ClimateWatchError):
    """This run no longer holds its lease: it must not delete or record anything more."""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease: written into the lease file, read by the runs that wait for it."""

    owner: str  # unique per acquisition
    host: str
    pid: int
    since: str
    expires: float = 0.0  # epoch seconds (object-store leases; 0 for a local lock)
    task: str = ""  # the Airflow task instance, when Airflow runs the archiver

    @classmethod
    def new(cls) -> LeaseHolder:
        env = os.environ
        task = ""
        if env.get("AIRFLOW_CTX_TASK_ID"):
            task = (
                f"Airflow {env.get('AIRFLOW_CTX_DAG_ID', '?')}.{env['AIRFLOW_CTX_TASK_ID']} "
                f"run {env.get('AIRFLOW_CTX_DAG_RUN_ID', '?')} "
                f"try {env.get('AIRFLOW_CTX_TRY_NUMBER', '?')}"
            )
        return cls(
            owner=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            since=datetime.now(UTC).isoformat(timespec="seconds"),
            task=task,
        )

    def describe(self) -> str:
        """``pid 123 on host, Airflow dag.task run … try 2, since …`` (for one-line errors)."""
        until = ""
        if self.expires:
            until = "lease until " + datetime.fromtimestamp(self.expires, UTC).isoformat(
                timespec="seconds"
            )
        return ", ".join(
            part
            for part in (f"pid {self.pid} on {self.host}", self.task, f"since {self.since}", until)
            if part
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseHolder | None:
        """The holder, or None for an empty or half-written file."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None


class Lease:
    """A lease of one archive root: a partition's (one archiver) or compaction's; see above.

    ``with lease.held(wait_s):`` acquires it (waiting up to ``wait_s``, else
    :class:`LeaseBusy`) and releases it afterwards; inside, :meth:`check` before each
    step others would see raises :class:`LeaseLost` if the lease is no longer this run's,
    and :meth:`keep` (cheap, call it often) renews it where it expires.
    """

    def __init__(self, path: str, name: str, doing: str = "archived") -> None:
        self.path = path  # the lease file
        self.name = name  # "<topic>-p<partition>", for messages
        self.doing = doing  # "<name> is being <doing> by another run"
        self.holder = LeaseHolder.new()

    @contextlib.contextmanager
    def held(self, wait_s: float = LEASE_WAIT_S) -> Iterator[Lease]:
        self.acquire(wait_s)
        try:
            yield self
        finally:
            self.release()

    def acquire(self, wait_s: float) -> None:
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def keep(self) -> None:
        """Renew the lease if it is due (object stores); a no-op for a local lock."""

    def release(self) -> None:
        raise NotImplementedError

    def _busy(self, other: LeaseHolder | None, waited: float) -> LeaseBusy:
        who = other.describe() if other is not None else "holder unknown"
        return LeaseBusy(
            f"{self.name} is being {self.doing} by another run ({who}); waited {waited:.0f} s "
            f"for its lease {self.path}: let that run finish (or stop it), then run again"
        )

    def _lost(self, why: str) -> LeaseLost:
        return LeaseLost(
            f"{self.name}: this run lost its lease ({why}) and stopped before changing "
            "anything more; the next run carries on from the ledger"
        )


def partition_lease(archive_root: str, topic: str, partition: int) -> Lease:
    """The lease of ``topic``/``partition``: a flock for a local path, else a lease record."""
    return _lease(archive_root, f"{topic}/p{partition}.lock", f"{topic}-p{partition}", "archived")


def compaction_lease(archive_root: str) -> Lease:
    """The lease of the archive root's compaction (one compaction at a time)."""
    return _lease(archive_root, "_compaction.lock", "the archive", "compacted")


def _lease(archive_root: str, relative: str, name: str, doing: str) -> Lease:
    fs, base = filesystem_for(archive_root)
    path = posixpath.join(base, LEASE_DIR, relative)
    if is_local(fs):
        return LocalLease(path, name, doing)
    return ObjectStoreLease(fs, path, name, doing)


class LocalLease(Lease):
    """``fcntl.flock`` on the lease file for as long as the run lasts.

    The kernel drops the lock when the process ends, even by ``kill -9``. The file itself
    is never deleted: a run that deleted it would let the next run lock a new file while
    this one still holds the old one, so :meth:`check` also verifies the path still is
    the locked file.
    """

    def __init__(self, path: str, name: str, doing: str = "archived") -> None:
        super().__init__(path, name, doing)
        self._descriptor: int | None = None

    def acquire(self, wait_s: float) -> None:
        import fcntl

        self.holder = LeaseHolder.new()
        os.makedirs(posixpath.dirname(self.path), exist_ok=True)
        began = time.monotonic()
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                waited = time.monotonic() - began
                if waited >= wait_s:
                    raise self._busy(self._read_holder(), waited) from None
                time.sleep(_POLL_S)
                continue
            if not self._is_locked_file(descriptor):  # replaced after it was opened
                os.close(descriptor)
                continue
            # Write, then cut: the file is never empty, so a waiter rarely reads no holder.
            record = self.holder.to_json()
            os.pwrite(descriptor, record, 0)
            os.ftruncate(descriptor, len(record))
            self._descriptor = descriptor
            return

    def _is_locked_file(self, descriptor: int) -> bool:
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        locked = os.fstat(descriptor)
        return (at_path.st_dev, at_path.st_ino) == (locked.st_dev, locked.st_ino)

    def _read(self) -> LeaseHolder | None:
        try:
            with open(self.path, "rb") as file:
                return LeaseHolder.from_json(file.read())
        except FileNotFoundError:
            return None

    def _read_holder(self, patience_s: float = 1.0) -> LeaseHolder | None:
        """The holder, read again for a moment while its record is half-written.

        A run writes its record just after it locks the file; a waiter that reads in
        between sees a partial record, and the one-line error should still name the holder.
        """
        deadline = time.monotonic() + patience_s
        while (holder := self._read()) is None and time.monotonic() < deadline:
            time.sleep(_POLL_S / 10)
        return holder

    def check(self) -> None:
        if self._descriptor is None:
            raise self._lost("it was never taken, or released")
        if not self._is_locked_file(self._descriptor):
            raise self._lost(f"its lock file {self.path} was deleted or replaced")

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # drops the flock; the file stays (see above)
            self._descriptor = None


class ObjectStoreLease(Lease):
    """A lease record with an expiry, taken by a timed protocol (module docstring).

    Works on any pyarrow filesystem; used where there is no ``flock`` (object stores).
    """

    def __init__(
        self,
        fs: pafs.FileSystem,
        path: str,
        name: str,
        doing: str = "archived",
        *,
        ttl_s: float = LEASE_TTL_S,
        renew_s: float = LEASE_RENEW_S,
        margin_s: float = LEASE_MARGIN_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        super().__init__(path, name, doing)
        self.fs = fs
        self.ttl_s, self.renew_s, self.margin_s, self.settle_s = ttl_s, renew_s, margin_s, settle_s
        self._held = False
        self._renewed = 0.0  # monotonic time of the last write of our record

    def _read(self) -> LeaseHolder | None:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return LeaseHolder.from_json(stream.read())
        except FileNotFoundError:
            return None

    def _write(self) -> None:
        record = replace(self.holder, expires=time.time() + self.ttl_s)
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(record.to_json())
        self._renewed = time.monotonic()

    def acquire(self, wait_s: float) -> None:
        self.holder = LeaseHolder.new()
        self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
        began = time.monotonic()
        while True:
            read_at = time.monotonic()
            current = self._read()
            if (
                current is None
                or current.owner == self.holder.owner
                or current.expires <= time.time()
            ):
                self._write()
                if time.monotonic() - read_at < self.settle_s / 2:
                    time.sleep(self.settle_s)
                    now_there = self._read()
                    if now_there is not None and now_there.owner == self.holder.owner:
                        self._held = True
                        return
                elif time.monotonic() - began > max(wait_s, 10 * self.settle_s):
                    raise ClimateWatchError(
                        f"{self.name}: reading and writing the lease {self.path} takes longer "
                        f"than {self.settle_s / 2:g} s, too slow to take it safely; try again"
                    )
                continue  # lost the race (or wrote too slowly to count): look again
            waited = time.monotonic() - began
            if waited >= wait_s:
                raise self._busy(current, waited)
            time.sleep(max(_POLL_S, min(self.settle_s, wait_s - waited)))

    def check(self) -> None:
        if not self._held:
            raise self._lost("it was never taken, or released")
        current = self._read()
        if current is None or current.owner != self.holder.owner:
            self._held = False
            who = current.describe() if current is not None else "its record is gone"
            raise self._lost(f"taken over: {who}")
        if current.expires - time.time() < self.margin_s:
            self._held = False
            raise self._lost("it was about to expire: the run stalled")
        if time.monotonic() - self._renewed >= self.renew_s:
            self._write()

    def keep(self) -> None:
        if self._held and time.monotonic() - self._renewed >= self.renew_s:
            self.check()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        current = self._read()
        if current is not None and current.owner == self.holder.owner:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path)
