"""The archiver: Kafka topic partitions → Hive-partitioned Parquet, exactly once.

For one topic partition a run reads from the ledger's next offset (never a consumer
group's commits) up to the partition's end offset fixed when the run starts, decodes
each record with its contract, and writes one batch at a time:

* valid readings to ``readings/date=YYYY-MM-DD/region=<region>/`` by **event** date, so a
  late reading lands in the day it belongs to (the ``region`` column is the Hive partition
  column, not stored in the file);
* alerts and window statistics to ``alerts/date=…/`` and ``window_stats/date=…/`` by
  window start;
* every record that does not decode to ``rejected/date=…/`` (by Kafka record time) with
  its reason, partition, offset and original bytes.

File names are ``<topic>-p<partition>-<start:012d>-<end:012d>.parquet`` (offsets
``[start, end)`` of the batch). Files are written under a hidden temporary name, fsynced
and renamed into place (their directory fsynced too); the batch's ledger entry is written
after its files, and durably, so a batch is archived exactly when its entry exists, even
across a power loss. A run first deletes the files of its partition that no ledger entry
references (left by a crash between files and ledger), so nothing is ever archived twice,
and a retried run writes the same batch again.

That clean-up is only safe if no other run is writing the partition: a run holds the
partition's lease (:func:`~warehouse.archive.ledger.partition_lease`: ``flock`` on a lock
file for a local path, a lease record with an expiry on an object store) from before its
clean-up until after its last ledger entry. A second run of the same partition (a manual
run during a DAG run, a zombie task and its retry) waits for the lease for
``lease_wait_s`` (:data:`~warehouse.archive.ledger.LEASE_WAIT_S` by default), then stops
with one line naming the partition and the run that holds it; it has read, written and
deleted nothing. A run checks its lease before it deletes, before each batch and before
each ledger entry: one that lost it (an expired object-store lease) stops without
recording. Behind the lease, a run still checks that the ledger ends where it last left
it before it records a batch.

A broker lost or frozen mid-run is ridden through (:mod:`include.kafka_retry`): metadata
and offset requests are retried while a new leader is elected, and a partition that
returns no records before its end is waited for, each for up to
``CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S``; only past that does the run stop, with one line.

This module is the run itself (:func:`archive_partition`, :func:`archive_topic`); the
paths are :mod:`~warehouse.archive.layout`'s, the rows :mod:`~warehouse.archive.batch`'s,
the files :mod:`~warehouse.archive.parquet`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from include.errors import ClimateWatchError
from include.kafka_retry import BrokerLoss, leader_offsets, ride_through
from include.settings import Settings
from warehouse.archive.batch import BatchBuilder
from warehouse.archive.layout import batch_file_name, data_path, kind_of
from warehouse.archive.ledger import (
    LEASE_WAIT_S,
    ArchivedFile,
    Ledger,
    LedgerEntry,
    filesystem_for,
    partition_lease,
)
from warehouse.archive.parquet import DurableFiles, remove_unrecorded_files

log = logging.getLogger(__name__)

# Test-only: exit the process (no cleanup, like kill -9) right after this many data
# files of a run are in place, before their ledger entry is written.
CRASH_AFTER_FILES_ENV = "CLIMATEWATCH_ARCHIVE_CRASH_AFTER_FILES"
CRASH_EXIT_CODE = 86


@dataclass(frozen=True)
class PartitionResult:
    """What one run did for one topic partition (JSON-able for XCom and the CLI)."""

    topic: str
    partition: int
    start_offset: int  # where this run started reading
    end_offset: int  # the partition's end when the run started: archived up to here
    batches: int
    rows: int
    rejected: int
    lost: int  # records deleted by retention before they could be archived
    files: int
    removed_orphans: int
    batch_ids: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["batch_ids"] = list(self.batch_ids)
        body["dates"] = list(self.dates)
        return body


def _crash_budget() -> int | None:
    raw = os.environ.get(CRASH_AFTER_FILES_ENV)
    return int(raw) if raw else None


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a batch accumulates.

    A batch holds hundreds of thousands of young tuples, so the collector keeps walking
    them (15-20 % of the archiver's time, measured); the loop creates no reference
    cycles, and reference counting still frees everything else at once.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_archive_consumer(settings: Settings) -> Any:
    """A group-less consumer: the ledger, not Kafka, remembers what was archived."""
    from include.kafka_clients import make_consumer

    return make_consumer(
        settings,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=10_000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        # At a partition's end the broker holds a fetch this long waiting for data, and
        # the next partition's offset lookup queues behind it on the same connection.
        fetch_max_wait_ms=20,
    )


# --- one partition ----------------------------------------------------------------------------
def archive_partition(
    settings: Settings,
    topic: str,
    partition: int,
    *,
    root: str | None = None,
    batch_records: int | None = None,
    consumer: Any = None,
    on_file: Callable[[str], None] | None = None,
    lease_wait_s: float = LEASE_WAIT_S,
) -> PartitionResult:
    """Archive ``topic``/``partition`` from the ledger's next offset to the current end.

    Holds the partition's lease throughout; waits up to ``lease_wait_s`` for it, then
    raises :class:`~warehouse.archive.ledger.LeaseBusy` (a ClimateWatchError).
    """
    from include.kafka_clients import translate_kafka_errors

    run = _PartitionRun(settings, topic, partition, root, batch_records, on_file)
    with run.lease.held(lease_wait_s):
        run.remove_orphans()
        own_consumer = consumer is None
        if own_consumer:
            consumer = make_archive_consumer(settings)
        try:
            with translate_kafka_errors(settings):
                run.archive(consumer)
        finally:
            if own_consumer:
                consumer.close()
    result = run.result()
    log.info(
        "archived %s-p%d offsets %d..%d: %d rows, %d rejected, %d file(s), %d batch(es)",
        topic,
        partition,
        result.start_offset,
        result.end_offset,
        result.rows,
        result.rejected,
        result.files,
        result.batches,
    )
    return result


class _PartitionRun:
    """One run over one topic partition: where it writes, which offsets, what it did.

    It reads offsets ``[start, end)`` (``end``: the partition's end when the run started)
    and records ``batches`` in the ledger, after their data files (``written`` so far),
    while it holds ``lease``.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        partition: int,
        root: str | None,
        batch_records: int | None,
        on_file: Callable[[str], None] | None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.partition = partition
        self.kind = kind_of(settings, topic)
        root = root or settings.archive_root
        self.batch_records = batch_records or settings.archive_batch_records
        self.fs, self.base = filesystem_for(root)
        self.ledger = Ledger(root)
        self.lease = partition_lease(root, topic, partition)
        self.on_file = on_file
        self.crash_after = _crash_budget()
        self.removed: list[str] = []
        self.next_offset: int | None = None  # the ledger's when the run started
        self.start = self.end = 0
        self.lost = 0  # deleted by retention between the ledger's next offset and start
        self.batches: list[LedgerEntry] = []
        self.written = 0

    def remove_orphans(self) -> None:
        """Delete the files no ledger entry holds; note the ledger's next offset.

        Only under the lease: another run's files are unrecorded while it writes them.
        """
        self.lease.check()
        recorded = self.ledger.ranges(self.topic, self.partition)
        self.removed = remove_unrecorded_files(
            self.fs, self.base, self.topic, self.partition, recorded, fence=self.lease.check
        )
        self.next_offset = max((end for _, end in recorded), default=None)

    def archive(self, consumer: Any) -> None:
        """Archive every record from the start offset to the end offset, batch by batch."""
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, self.partition)
        self._resolve_offsets(consumer, tp)
        if self.start < self.end:
            consumer.seek(tp, self.start)
            with _cyclic_gc_paused():
                self._poll(consumer, tp)
        elif self.lost:  # say it once, in the ledger, even with nothing left to read
            self._flush(BatchBuilder(self.kind, self.topic), self.start, self.start, self.lost)

    def _resolve_offsets(self, consumer: Any, tp: Any) -> None:
        """Assign the partition; fix ``end``, ``start`` and what retention deleted unread."""
        topic, partition, next_offset = self.topic, self.partition, self.next_offset
        where = f"reading the offsets of {topic}-p{partition}"
        if partition not in (
            ride_through(self.settings, where, consumer.partitions_for_topic, topic) or set()
        ):
            raise ClimateWatchError(f"topic {topic} has no partition {partition}")
        consumer.assign([tp])
        beginning = leader_offsets(self.settings, where, consumer, [tp], end=False)[tp]
        self.end = end = leader_offsets(self.settings, where, consumer, [tp])[tp]
        if next_offset is not None and next_offset > end:
            raise ClimateWatchError(
                f"{topic}-p{partition}: the archive holds offsets up to {next_offset} but "
                f"Kafka ends at {end}: was the topic deleted and created again? Archive "
                "the new topic under another archive root (CLIMATEWATCH_ARCHIVE_URI)"
            )
        if next_offset is None:
            self.start = beginning
        elif next_offset < beginning:
            self.lost = beginning - next_offset
            self.start = beginning
            log.warning(
                "%s-p%d: %d record(s) at offsets %d..%d were deleted by retention before "
                "they were archived; continuing from %d",
                topic,
                partition,
                self.lost,
                next_offset,
                beginning - 1,
                beginning,
            )
        else:
            self.start = next_offset

    def _poll(self, consumer: Any, tp: Any) -> None:
        """Read up to ``end``, flushing a batch at ``batch_records`` records and at the end.

        A failed poll, or no records before the end (the partition's leader lost, a new
        one not elected yet), is retried within one broker-loss bound, counted from the
        last records received."""
        from kafka.errors import KafkaError

        end, batch_records = self.end, self.batch_records
        builder = BatchBuilder(self.kind, self.topic)
        batch_start, lost = self.start, self.lost
        where = f"reading {self.topic}-p{self.partition}"
        loss = BrokerLoss(self.settings, where, client=consumer)
        while True:
            self.lease.keep()  # also while a broker's loss is waited for
            try:
                polled = consumer.poll(
                    timeout_ms=1000, max_records=min(10_000, max(1, batch_records - builder.count))
                )
                position = min(consumer.position(tp), end)
            except KafkaError as exc:
                loss.failed(exc)
                continue
            records = polled.get(tp, ())
            builder.add_records(self.partition, records, end)
            if records:
                loss.recovered()
            elif position < end:  # the poll waited already
                loss.failed(_no_records(position, end), announce=False, pause=False)
            if position > batch_start and (builder.count >= batch_records or position >= end):
                self._flush(builder, batch_start, position, lost)
                builder, batch_start, lost = BatchBuilder(self.kind, self.topic), position, 0
            if position >= end:
                consumer.pause(tp)  # no prefetch of what this run will not read
                return

    def _flush(self, builder: BatchBuilder, batch_start: int, batch_end: int, lost: int) -> None:
        """Archive one batch: its data files (durable), then its ledger entry (durable)."""
        self.lease.check()
        files = self._write_files(
            builder, batch_file_name(self.topic, self.partition, batch_start, batch_end)
        )
        entry = LedgerEntry(
            topic=self.topic,
            partition=self.partition,
            start_offset=batch_start,
            end_offset=batch_end,
            files=files,
            rows=builder.count - builder.rejected_count,
            rejected=builder.rejected_count,
            lost_before=lost,
        )
        self._append_fenced(entry)

    def _write_files(self, builder: BatchBuilder, name: str) -> tuple[ArchivedFile, ...]:
        """The batch's files, in place and on the disk (fsynced, and their directories)."""
        files = []
        relative_of = {}
        with DurableFiles(self.fs) as staged:
            for dataset, day, region, table in builder.tables():
                relative = data_path(dataset, day, region, name)
                path = posixpath.join(self.base, relative)
                staged.write(path, [table])
                files.append(ArchivedFile(relative, dataset, table.num_rows, day, region))
                relative_of[path] = relative
            staged.publish(on_moved=lambda path: self._file_in_place(relative_of[path]))
        return tuple(files)

    def _file_in_place(self, relative: str) -> None:
        self.written += 1
        if self.on_file is not None:
            self.on_file(relative)
        if self.crash_after is not None and self.written >= self.crash_after:
            os._exit(CRASH_EXIT_CODE)

    def _append_fenced(self, entry: LedgerEntry) -> None:
        """Record a batch in the ledger while this run holds the lease, and only if nothing
        else recorded offsets of the partition meanwhile.

        The lease makes this run the only archiver of the partition; if it was lost (or
        something other than an archiver wrote the ledger), stop rather than overlap: this
        batch's files stay unrecorded, and the next run removes them.
        """
        expected = self.batches[-1].end_offset if self.batches else self.next_offset
        recorded = self.ledger.next_offset(self.topic, self.partition)
        if recorded != expected:
            raise ClimateWatchError(
                f"{self.topic}-p{self.partition}: another archiver recorded offsets up to "
                f"{recorded} while this run was writing from {expected}; run one "
                "archiver per partition at a time (pause the DAG to run it by hand)"
            )
        self.lease.check()
        self.ledger.append(entry)
        self.batches.append(entry)

    def result(self) -> PartitionResult:
        batches = self.batches
        return PartitionResult(
            topic=self.topic,
            partition=self.partition,
            start_offset=self.start,
            end_offset=self.end,
            batches=len(batches),
            rows=sum(e.rows for e in batches),
            rejected=sum(e.rejected for e in batches),
            lost=sum(e.lost_before for e in batches),
            files=self.written,
            removed_orphans=len(self.removed),
            batch_ids=tuple(e.batch_id for e in batches),
            dates=tuple(sorted({d for e in batches for d in e.dates})),
        )


def _no_records(position: int, end: int) -> Exception:
    """What an empty poll before the end counts as: a broker's loss (retriable)."""
    from kafka.errors import KafkaTimeoutError

    return KafkaTimeoutError(f"no records from Kafka at offset {position} (end {end})")


# --- topics -----------------------------------------------------------------------------------
def partitions_of(settings: Settings, topic: str, consumer: Any = None) -> list[int]:
    """The partition numbers of ``topic`` (what the DAG maps one task over)."""
    from include.kafka_clients import make_consumer, translate_kafka_errors

    own = consumer is None
    consumer = consumer or make_consumer(settings, group_id=None)
    try:
        with translate_kafka_errors(settings):
            found = ride_through(
                settings, f"listing the partitions of {topic}", consumer.partitions_for_topic, topic
            )
    finally:
        if own:
            consumer.close()
    if not found:
        raise ClimateWatchError(
            f"topic {topic} does not exist on {settings.bootstrap_servers}: "
            "create the topics with 'climatewatch topics create'"
        )
    return sorted(found)


def archive_topic(
    settings: Settings,
    topic: str,
    *,
    root: str | None = None,
    batch_records: int | None = None,
    workers: int = 1,
    lease_wait_s: float = LEASE_WAIT_S,
) -> list[PartitionResult]:
    """Archive every partition of ``topic`` (the CLI's path).

    ``workers > 1`` archives partitions in that many processes at once, as the DAG's
    mapped tasks do; each partition is still archived by one process at a time (its lease).
    """
    if workers > 1:
        return _archive_in_processes(settings, topic, root, batch_records, workers, lease_wait_s)
    consumer = make_archive_consumer(settings)
    try:
        return [
            archive_partition(
                settings,
                topic,
                p,
                root=root,
                batch_records=batch_records,
                consumer=consumer,
                lease_wait_s=lease_wait_s,
            )
            for p in partitions_of(settings, topic, consumer)
        ]
    finally:
        consumer.close()


def _archive_in_processes(
    settings: Settings,
    topic: str,
    root: str | None,
    batch_records: int | None,
    workers: int,
    lease_wait_s: float,
) -> list[PartitionResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    partitions = partitions_of(settings, topic)
    # spawn, not fork: kafka-python clients run a network thread that fork would copy
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(partitions)), mp_context=context) as pool:
        futures = [
            pool.submit(
                archive_partition,
                settings,
                topic,
                p,
                root=root,
                batch_records=batch_records,
                lease_wait_s=lease_wait_s,
            )
            for p in partitions
        ]
        return [future.result() for future in futures]
