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
``[start, end)`` of the batch). Files are written under a hidden temporary name and
renamed into place; the batch's ledger entry is written after its files, so a batch is
archived exactly when its entry exists. A run first deletes the files of its partition
that no ledger entry references (left by a crash between files and ledger), so nothing
is ever archived twice, and a retried run writes the same batch again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from include.contract import (
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    WRONG_TYPE,
    Reading,
    Rejection,
    parse_reading,
    parse_timestamp,
)
from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.archive.ledger import (
    ArchivedFile,
    Ledger,
    LedgerEntry,
    filesystem_for,
    write_atomically,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

Kind = Literal["readings", "alerts", "window_stats"]
READINGS = "readings"
ALERTS = "alerts"
WINDOW_STATS = "window_stats"
REJECTED = "rejected"
DATASETS = (READINGS, REJECTED, ALERTS, WINDOW_STATS)

# DuckDB scans Parquet in parallel by row group and uses 122,880-row groups itself.
ROW_GROUP_ROWS = 122_880
COMPRESSION = "zstd"
# Test-only: exit the process (no cleanup, like kill -9) right after this many data
# files of a run are in place, before their ledger entry is written.
CRASH_AFTER_FILES_ENV = "CLIMATEWATCH_ARCHIVE_CRASH_AFTER_FILES"
CRASH_EXIT_CODE = 86

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
US_PER_DAY = 86_400_000_000
MS_PER_DAY = 86_400_000


def topic_kinds(settings: Settings) -> dict[str, Kind]:
    """Which decoder each archived topic uses."""
    return {
        settings.topic_readings: READINGS,
        settings.topic_alerts: ALERTS,
        settings.topic_window_stats: WINDOW_STATS,
    }


def kind_of(settings: Settings, topic: str) -> Kind:
    kinds = topic_kinds(settings)
    if topic not in kinds:
        raise ClimateWatchError(f"topic {topic!r} is not archived (known: {', '.join(kinds)})")
    return kinds[topic]


# --- file names ---------------------------------------------------------------------------
def batch_file_name(topic: str, partition: int, start: int, end: int) -> str:
    return f"{topic}-p{partition}-{start:012d}-{end:012d}.parquet"


def day_text(day: int) -> str:
    """YYYY-MM-DD of a day number (days since the epoch)."""
    return date.fromordinal(EPOCH.date().toordinal() + day).isoformat()


def hive_value(value: str) -> str:
    """A partition value safe in a path segment (``/``, ``=``, ``%`` and controls escaped)."""
    return quote(value, safe=" -_.,:;@+()'!~")


def data_path(dataset: str, day: str, region: str | None, name: str) -> str:
    """Path of a data file relative to the archive root."""
    parts = [dataset, f"date={day}"]
    if region is not None:
        parts.append(f"region={hive_value(region)}")
    parts.append(name)
    return "/".join(parts)


def _batch_file_pattern(topic: str, partition: int) -> re.Pattern[str]:
    """Data files of one partition (groups ``start``, ``end``), and their hidden temporaries."""
    prefix = rf"{re.escape(topic)}-p{partition}-"
    return re.compile(
        rf"^(?:{prefix}(?P<start>\d{{12}})-(?P<end>\d{{12}})\.parquet"
        rf"|\.{prefix}\d{{12}}-\d{{12}}\.parquet\.[0-9a-f]+\.tmp)$"
    )


# --- decoding: pure functions ---------------------------------------------------------------
def _epoch_us(ts: datetime) -> int:
    return (ts - EPOCH) // US


def _timestamp_us(body: dict[str, Any], field: str, required: bool) -> int | Rejection | None:
    raw = body.get(field)
    if raw is None:
        return Rejection(MISSING_FIELD, field) if required else None
    ts = parse_timestamp(raw)
    if type(ts) is Rejection:
        return Rejection(ts.reason, f"{field}: {ts.detail}")
    return _epoch_us(ts)


def _checked(body: dict[str, Any], field: str, kind: str, required: bool) -> Any:
    value = body.get(field)
    if value is None:
        return Rejection(MISSING_FIELD, field) if required else None
    if kind == "str":
        ok = type(value) is str
    elif kind == "int":
        ok = type(value) is int
    else:
        ok = type(value) in (int, float)
        value = float(value) if ok else value
    if not ok:
        return Rejection(WRONG_TYPE, f"{field} is {type(value).__name__}, expected {kind}")
    return value


# field, type, required — in the order of include.events' arrow schemas
_ALERT_FIELDS = (
    ("alert_id", "str", True),
    ("rule", "str", True),
    ("severity", "str", True),
    ("region", "str", True),
    ("window_start", "ts", True),
    ("window_end", "ts", True),
    ("value", "float", False),
    ("threshold", "float", False),
    ("status", "str", True),
    ("message", "str", False),
    ("emitted_at", "ts", False),
)
_WINDOW_STATS_FIELDS = (
    ("region", "str", True),
    ("window_start", "ts", True),
    ("window_end", "ts", True),
    ("count", "int", True),
    ("mean_c", "float", True),
    ("min_c", "float", True),
    ("max_c", "float", True),
    ("sensors", "int", False),
    ("late", "int", False),
    ("invalid", "int", False),
    ("closed_by", "str", False),
    ("emitted_at", "ts", False),
)


def decode_event(value: bytes | None, kind: Kind) -> list[Any] | Rejection:
    """An alert or window-stats record as a row (schema order, without Kafka columns).

    Parsed with :mod:`include.events` (``Alert.from_json`` / ``WindowStats.from_json``), then
    typed field by field so one bad record is rejected instead of failing the batch.
    """
    import orjson

    from include.events import Alert, WindowStats

    if value is None:
        return Rejection(NOT_JSON, "record has no value (tombstone)")
    parser = Alert if kind == ALERTS else WindowStats
    try:
        event = parser.from_json(value)
    except orjson.JSONDecodeError as exc:
        return Rejection(NOT_JSON, f"{kind}: {str(exc)[:120]}")
    except (TypeError, AttributeError):
        return Rejection(NOT_OBJECT, f"{kind}: JSON is not an object")
    body = asdict(event)
    row: list[Any] = []
    for field, kind_of_field, required in _ALERT_FIELDS if kind == ALERTS else _WINDOW_STATS_FIELDS:
        if kind_of_field == "ts":
            value_of = _timestamp_us(body, field, required)
        else:
            value_of = _checked(body, field, kind_of_field, required)
        if type(value_of) is Rejection:
            return Rejection(value_of.reason, f"{kind}: {value_of.detail}")
        row.append(value_of)
    return row


# --- accumulating one batch -------------------------------------------------------------------
class BatchBuilder:
    """Rows of one batch, grouped by output file. Pure: no I/O until :meth:`tables`.

    Rows are kept as tuples per output file and turned into columns once, at the end:
    this loop runs once per record, so it does as little as possible.
    """

    def __init__(self, kind: Kind, topic: str) -> None:
        self.kind = kind
        self.topic = topic
        # (day number, region or None) -> row tuples (schema order, ``region`` left out)
        self.groups: dict[tuple[int, str | None], list[tuple[Any, ...]]] = {}
        self.rejected: dict[int, list[tuple[Any, ...]]] = {}
        self.count = 0
        self.rejected_count = 0
        self._now_ms = -1
        self._now = EPOCH

    def add(self, partition: int, offset: int, timestamp_ms: int, key: Any, value: Any) -> None:
        """Add one Kafka record."""
        self.add_records(partition, [_Record(offset, timestamp_ms, key, value)], offset + 1)

    def add_records(self, partition: int, records: Iterable[Any], end: int) -> int:
        """Add Kafka records (``.offset``, ``.timestamp``, ``.key``, ``.value``) below ``end``."""
        if self.kind != READINGS:
            return self._add_events(partition, records, end)
        groups = self.groups
        parse = parse_reading
        reading_type = Reading
        now_ms, now = self._now_ms, self._now
        added = 0
        for record in records:
            offset = record.offset
            if offset >= end:
                break
            added += 1
            timestamp_ms = record.timestamp
            # "Too far in the future" is judged against the record's Kafka timestamp, so
            # a retried run classifies every record exactly as the first run did.
            if timestamp_ms != now_ms:
                now_ms = timestamp_ms
                now = EPOCH + timedelta(milliseconds=max(timestamp_ms, 0))
            reading = parse(record.value, now=now)
            if type(reading) is reading_type:
                us = (reading.ts - EPOCH) // US
                group_key = (us // US_PER_DAY, reading.region)
                rows = groups.get(group_key)
                if rows is None:
                    rows = groups[group_key] = []
                rows.append(
                    (
                        reading.sensor_id,
                        us,
                        reading.temperature_c,
                        reading.humidity_pct,
                        reading.pressure_hpa,
                        partition,
                        offset,
                    )
                )
            else:
                self._reject(partition, offset, timestamp_ms, record.key, record.value, reading)
        self._now_ms, self._now = now_ms, now
        self.count += added
        return added

    def _add_events(self, partition: int, records: Iterable[Any], end: int) -> int:
        added = 0
        day_field = 4 if self.kind == ALERTS else 1  # window_start
        for record in records:
            if record.offset >= end:
                break
            added += 1
            row = decode_event(record.value, self.kind)
            if type(row) is list:
                group_key = (row[day_field] // US_PER_DAY, None)
                self.groups.setdefault(group_key, []).append((*row, partition, record.offset))
            else:
                self._reject(
                    partition, record.offset, record.timestamp, record.key, record.value, row
                )
        self.count += added
        return added

    def _reject(
        self,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: Any,
        value: Any,
        rejection: Rejection,
    ) -> None:
        self.rejected_count += 1
        rows = self.rejected.setdefault(timestamp_ms // MS_PER_DAY, [])
        rows.append(
            (partition, offset, timestamp_ms * 1000, key, value, rejection.reason, rejection.detail)
        )

    def tables(self) -> Iterable[tuple[str, str, str | None, pa.Table]]:
        """(dataset, day, region, table) of every file this batch writes."""
        schema = dataset_schema(self.kind)
        for (day, region), rows in sorted(self.groups.items(), key=lambda kv: str(kv[0])):
            yield self.kind, day_text(day), region, _to_table(rows, schema)
        schema = rejected_arrow_schema()
        for day, rows in sorted(self.rejected.items()):
            yield REJECTED, day_text(day), None, _to_table(rows, schema)


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    timestamp: int
    key: Any
    value: Any


def _to_table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    # one pass per column with a C-level getter: zip(*rows) is several times slower here
    arrays = [
        pa.array(list(map(itemgetter(i), rows)), type=field.type) for i, field in enumerate(schema)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def dataset_schema(kind: Kind) -> pa.Schema:
    """Columns of a data file of ``kind``; readings drop ``region`` (the Hive partition)."""
    from include.contract import reading_arrow_schema
    from include.events import alert_arrow_schema, window_stats_arrow_schema

    if kind == READINGS:
        schema = reading_arrow_schema()
        return schema.remove(schema.get_field_index("region"))
    return alert_arrow_schema() if kind == ALERTS else window_stats_arrow_schema()


def rejected_arrow_schema() -> pa.Schema:
    """Columns of ``rejected/``: where the record was, its original bytes, and why."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("kafka_partition", pa.int32(), nullable=False),
            pa.field("kafka_offset", pa.int64(), nullable=False),
            pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string()),
        ]
    )


# --- writing ----------------------------------------------------------------------------------
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
    pattern = _batch_file_pattern(topic, partition)
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


# --- one partition ----------------------------------------------------------------------------
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


def archive_partition(
    settings: Settings,
    topic: str,
    partition: int,
    *,
    root: str | None = None,
    batch_records: int | None = None,
    consumer: Any = None,
    on_file: Callable[[str], None] | None = None,
) -> PartitionResult:
    """Archive ``topic``/``partition`` from the ledger's next offset to the current end."""
    from kafka import TopicPartition

    from include.kafka_clients import translate_kafka_errors

    kind = kind_of(settings, topic)
    root = root or settings.archive_root
    batch_records = batch_records or settings.archive_batch_records
    fs, base = filesystem_for(root)
    ledger = Ledger(root)
    recorded = ledger.ranges(topic, partition)
    removed = remove_unrecorded_files(fs, base, topic, partition, recorded)
    next_offset = max((end for _, end in recorded), default=None)

    own_consumer = consumer is None
    if own_consumer:
        consumer = make_archive_consumer(settings)
    tp = TopicPartition(topic, partition)
    crash_after = _crash_budget()
    written = 0
    batches: list[LedgerEntry] = []
    try:
        with translate_kafka_errors(settings), contextlib.ExitStack() as stack:
            if partition not in (consumer.partitions_for_topic(topic) or set()):
                raise ClimateWatchError(f"topic {topic} has no partition {partition}")
            consumer.assign([tp])
            beginning = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
            lost = 0
            if next_offset is not None and next_offset > end:
                raise ClimateWatchError(
                    f"{topic}-p{partition}: the archive holds offsets up to {next_offset} but "
                    f"Kafka ends at {end}: was the topic deleted and created again? Archive "
                    "the new topic under another archive root (CLIMATEWATCH_ARCHIVE_URI)"
                )
            if next_offset is None:
                start = beginning
            elif next_offset < beginning:
                lost = beginning - next_offset
                start = beginning
                log.warning(
                    "%s-p%d: %d record(s) at offsets %d..%d were deleted by retention before "
                    "they were archived; continuing from %d",
                    topic,
                    partition,
                    lost,
                    next_offset,
                    beginning - 1,
                    beginning,
                )
            else:
                start = next_offset

            def flush(builder: BatchBuilder, batch_start: int, batch_end: int, lost: int) -> None:
                nonlocal written
                files = []
                name = batch_file_name(topic, partition, batch_start, batch_end)
                for dataset, day, region, table in builder.tables():
                    relative = data_path(dataset, day, region, name)
                    write_parquet_atomically(fs, posixpath.join(base, relative), [table])
                    files.append(ArchivedFile(relative, dataset, table.num_rows, day, region))
                    written += 1
                    if on_file is not None:
                        on_file(relative)
                    if crash_after is not None and written >= crash_after:
                        os._exit(CRASH_EXIT_CODE)
                entry = LedgerEntry(
                    topic=topic,
                    partition=partition,
                    start_offset=batch_start,
                    end_offset=batch_end,
                    files=tuple(files),
                    rows=builder.count - builder.rejected_count,
                    rejected=builder.rejected_count,
                    lost_before=lost,
                )
                # One archiver per partition at a time (the DAG runs one run at a time): if
                # another one recorded offsets meanwhile, stop rather than overlap it. The
                # files of this batch are then unrecorded; the next run removes them.
                expected = batches[-1].end_offset if batches else next_offset
                recorded = ledger.next_offset(topic, partition)
                if recorded != expected:
                    raise ClimateWatchError(
                        f"{topic}-p{partition}: another archiver recorded offsets up to "
                        f"{recorded} while this run was writing from {expected}; run one "
                        "archiver per partition at a time (pause the DAG to run it by hand)"
                    )
                ledger.append(entry)
                batches.append(entry)

            if start >= end:
                if lost:  # say it once, in the ledger, even with nothing left to read
                    flush(BatchBuilder(kind, topic), start, start, lost)
            else:
                consumer.seek(tp, start)
                stack.enter_context(_cyclic_gc_paused())
                builder = BatchBuilder(kind, topic)
                batch_start = start
                idle_polls = 0
                max_idle = max(3, settings.kafka_timeout_ms // 1000)
                while True:
                    polled = consumer.poll(
                        timeout_ms=1000,
                        max_records=min(10_000, max(1, batch_records - builder.count)),
                    )
                    records = polled.get(tp, ())
                    builder.add_records(partition, records, end)
                    position = min(consumer.position(tp), end)
                    if records:
                        idle_polls = 0
                    else:
                        idle_polls += 1
                        if idle_polls > max_idle:
                            raise ClimateWatchError(
                                f"{topic}-p{partition}: no records from Kafka for {idle_polls} s "
                                f"at offset {position} (end {end}); is the broker reachable?"
                            )
                    if position > batch_start and (
                        builder.count >= batch_records or position >= end
                    ):
                        flush(builder, batch_start, position, lost)
                        lost = 0
                        builder = BatchBuilder(kind, topic)
                        batch_start = position
                    if position >= end:
                        consumer.pause(tp)  # no prefetch of what this run will not read
                        break
    finally:
        if own_consumer:
            consumer.close()

    result = PartitionResult(
        topic=topic,
        partition=partition,
        start_offset=start,
        end_offset=end,
        batches=len(batches),
        rows=sum(e.rows for e in batches),
        rejected=sum(e.rejected for e in batches),
        lost=sum(e.lost_before for e in batches),
        files=written,
        removed_orphans=len(removed),
        batch_ids=tuple(e.batch_id for e in batches),
        dates=tuple(sorted({d for e in batches for d in e.dates})),
    )
    log.info(
        "archived %s-p%d offsets %d..%d: %d rows, %d rejected, %d file(s), %d batch(es)",
        topic,
        partition,
        start,
        end,
        result.rows,
        result.rejected,
        result.files,
        result.batches,
    )
    return result


# --- topics and status ------------------------------------------------------------------------
def partitions_of(settings: Settings, topic: str, consumer: Any = None) -> list[int]:
    """The partition numbers of ``topic`` (what the DAG maps one task over)."""
    from include.kafka_clients import make_consumer, translate_kafka_errors

    own = consumer is None
    consumer = consumer or make_consumer(settings, group_id=None)
    try:
        with translate_kafka_errors(settings):
            found = consumer.partitions_for_topic(topic)
    finally:
        if own:
            consumer.close()
    if not found:
        raise ClimateWatchError(
            f"topic {topic} does not exist on {settings.bootstrap_servers}: "
            "create the topics with 'climatewatch topics create'"
        )
    return sorted(found)


def archived_topics(settings: Settings) -> list[str]:
    return list(topic_kinds(settings))


def archive_topic(
    settings: Settings,
    topic: str,
    *,
    root: str | None = None,
    batch_records: int | None = None,
    workers: int = 1,
) -> list[PartitionResult]:
    """Archive every partition of ``topic`` (the CLI's path).

    ``workers > 1`` archives partitions in that many processes at once, as the DAG's
    mapped tasks do; each partition is still archived by exactly one process.
    """
    if workers > 1:
        return _archive_in_processes(settings, topic, root, batch_records, workers)
    consumer = make_archive_consumer(settings)
    try:
        return [
            archive_partition(
                settings, topic, p, root=root, batch_records=batch_records, consumer=consumer
            )
            for p in partitions_of(settings, topic, consumer)
        ]
    finally:
        consumer.close()


def _archive_in_processes(
    settings: Settings, topic: str, root: str | None, batch_records: int | None, workers: int
) -> list[PartitionResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    partitions = partitions_of(settings, topic)
    # spawn, not fork: kafka-python clients run a network thread that fork would copy
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(partitions)), mp_context=context) as pool:
        futures = [
            pool.submit(
                archive_partition, settings, topic, p, root=root, batch_records=batch_records
            )
            for p in partitions
        ]
        return [future.result() for future in futures]


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    archived_to: int | None  # the ledger's next offset
    beginning_offset: int
    end_offset: int
    lag: int  # records in Kafka not archived yet
    files: int
    rows: int
    rejected: int
    lost: int


def archive_status(settings: Settings, *, root: str | None = None) -> list[PartitionStatus]:
    """Per partition: archived up to, Kafka's offsets, lag, files, rows, rejected, lost."""
    from kafka import TopicPartition

    from include.kafka_clients import make_consumer, translate_kafka_errors

    ledger = Ledger(root or settings.archive_root)
    entries = ledger.entries()
    consumer = make_consumer(settings, group_id=None)
    statuses = []
    try:
        with translate_kafka_errors(settings):
            for topic in archived_topics(settings):
                tps = [TopicPartition(topic, p) for p in partitions_of(settings, topic, consumer)]
                beginnings = consumer.beginning_offsets(tps)
                ends = consumer.end_offsets(tps)
                for tp in tps:
                    mine = [e for e in entries if e.topic == topic and e.partition == tp.partition]
                    archived_to = max((e.end_offset for e in mine), default=None)
                    done = max(archived_to or 0, beginnings[tp])
                    statuses.append(
                        PartitionStatus(
                            topic=topic,
                            partition=tp.partition,
                            archived_to=archived_to,
                            beginning_offset=beginnings[tp],
                            end_offset=ends[tp],
                            lag=max(0, ends[tp] - done),
                            files=len({f.path for e in mine for f in e.files}),
                            rows=sum(e.rows for e in mine),
                            rejected=sum(e.rejected for e in mine),
                            lost=sum(e.lost_before for e in mine),
                        )
                    )
    finally:
        consumer.close()
    return statuses


def ledger_summary(root: str) -> dict[str, Any]:
    """Totals of the ledger per topic: what the DAG reports and puts on the Asset event."""
    summary: dict[str, Any] = {}
    for entry in Ledger(root).entries():
        topic = summary.setdefault(
            entry.topic,
            {"batches": 0, "rows": 0, "rejected": 0, "lost": 0, "files": set(), "partitions": {}},
        )
        topic["batches"] += 1
        topic["rows"] += entry.rows
        topic["rejected"] += entry.rejected
        topic["lost"] += entry.lost_before
        topic["files"].update(f.path for f in entry.files)
        part = str(entry.partition)
        topic["partitions"][part] = max(topic["partitions"].get(part, 0), entry.end_offset)
    for topic in summary.values():
        topic["files"] = len(topic["files"])
    return summary


SUMMARY_FILE = "_summary.json"


def run_totals(results: Iterable[PartitionResult | dict[str, Any]]) -> dict[str, Any]:
    """Totals of one run's partition results (objects or their ``to_dict()``)."""
    bodies = [r.to_dict() if isinstance(r, PartitionResult) else r for r in results]
    return {
        "rows": sum(r["rows"] for r in bodies),
        "rejected": sum(r["rejected"] for r in bodies),
        "lost": sum(r["lost"] for r in bodies),
        "files": sum(r["files"] for r in bodies),
        "batch_ids": [b for r in bodies for b in r["batch_ids"]],
        "dates": sorted({d for r in bodies for d in r["dates"]}),
    }


def write_ledger_summary(root: str, last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``<root>/_summary.json``: the ledger's totals per topic and the last run's.

    A small document an operator (or a UI) reads instead of walking the whole ledger.
    """
    import json

    summary = {
        "updated_at": datetime.now(UTC).isoformat(),
        "topics": ledger_summary(root),
        "last_run": last_run or {},
    }
    fs, base = filesystem_for(root)
    write_atomically(fs, posixpath.join(base, SUMMARY_FILE), json.dumps(summary, indent=1).encode())
    return summary


# --- Airflow connection ---------------------------------------------------------------------
_EXTRA_TO_SETTING = {
    "bootstrap.servers": "bootstrap_servers",
    "bootstrap_servers": "bootstrap_servers",
    "security.protocol": "security_protocol",
    "security_protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl_mechanism": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl_plain_username": "sasl_username",
    "sasl.password": "sasl_password",
    "sasl_plain_password": "sasl_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl_cafile": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl_certfile": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl_keyfile": "ssl_keyfile",
}


def kafka_overrides_from_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Settings overrides from a Kafka connection's extra (Apache Kafka provider keys)."""
    overrides = {}
    for key, value in extra.items():
        setting = _EXTRA_TO_SETTING.get(key)
        if setting is not None and value not in (None, ""):
            overrides[setting] = value
    return overrides
