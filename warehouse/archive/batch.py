"""Accumulating one batch: Kafka records → rows grouped by output file → Arrow tables.

Pure: no I/O. Valid readings are grouped by (event day, region), alerts and window
statistics by the day of their window start, and every record that does not decode goes
to ``rejected`` (by Kafka record day) with its reason and original bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from include.contract import Reading, Rejection, parse_reading
from include.fields import arrow_schema, specs
from warehouse.archive.decode import decode_event, field_index
from warehouse.archive.layout import (
    ALERTS,
    EPOCH,
    EVENT_DAY_FIELD,
    MS_PER_DAY,
    READINGS,
    READINGS_PARTITION_COLUMN,
    REJECTED,
    US,
    US_PER_DAY,
    Kind,
    day_text,
)

if TYPE_CHECKING:
    import pyarrow as pa

# A readings row is built as (<the archived fields but ts and region>, ts in µs, partition,
# offset), from the declaration of Reading: one C-level getter and one tuple concatenation
# per record. Its columns are put in schema order once per file, by _to_table.
_READING_TS = "ts"  # the event time: stored in µs, and it names the file's day
_READING_VALUES = tuple(
    spec.name
    for spec in specs(Reading)
    if spec.name not in (_READING_TS, READINGS_PARTITION_COLUMN)
)
_READING_ROW_FIELDS = (*_READING_VALUES, _READING_TS, "kafka_partition", "kafka_offset")


def _tuple_getter(names: tuple[str, ...]) -> Any:
    """``attrgetter(*names)``, returning a tuple even for one name."""
    if len(names) == 1:
        get_one = attrgetter(names[0])
        return lambda obj: (get_one(obj),)
    return attrgetter(*names)


_reading_values = _tuple_getter(_READING_VALUES)


class BatchBuilder:
    """Rows of one batch, grouped by output file. Pure: no I/O until :meth:`tables`.

    Rows are kept as tuples per output file and turned into columns once, at the end:
    this loop runs once per record, so it does as little as possible.
    """

    def __init__(self, kind: Kind, topic: str) -> None:
        self.kind = kind
        self.topic = topic
        # (day number, region or None) -> row tuples (readings: see _READING_ROW_FIELDS;
        # events: schema order)
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
        values = _reading_values
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
                # concatenation: measured faster here than (*values(reading), us, ...)
                rows.append(values(reading) + (us, partition, offset))  # noqa: RUF005
            else:
                self._reject(partition, offset, timestamp_ms, record.key, record.value, reading)
        self._now_ms, self._now = now_ms, now
        self.count += added
        return added

    def _add_events(self, partition: int, records: Iterable[Any], end: int) -> int:
        added = 0
        day_at = field_index(self.kind, EVENT_DAY_FIELD)
        for record in records:
            if record.offset >= end:
                break
            added += 1
            row = decode_event(record.value, self.kind)
            if type(row) is list:
                group_key = (row[day_at] // US_PER_DAY, None)
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

    def tables(self) -> Iterator[tuple[str, str, str | None, pa.Table]]:
        """(dataset, day, region, table) of every file this batch writes."""
        schema = dataset_schema(self.kind)
        positions = None
        if self.kind == READINGS:
            positions = [_READING_ROW_FIELDS.index(name) for name in schema.names]
        for (day, region), rows in sorted(self.groups.items(), key=lambda kv: str(kv[0])):
            yield self.kind, day_text(day), region, _to_table(rows, schema, positions)
        schema = rejected_arrow_schema()
        for day, rows in sorted(self.rejected.items()):
            yield REJECTED, day_text(day), None, _to_table(rows, schema)


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    timestamp: int
    key: Any
    value: Any


def _to_table(
    rows: list[tuple[Any, ...]], schema: pa.Schema, positions: list[int] | None = None
) -> pa.Table:
    """Rows as a table; ``positions[i]``: where in a row column ``i`` is (default: ``i``)."""
    import pyarrow as pa

    if positions is None:
        positions = list(range(len(schema)))
    # one pass per column with a C-level getter: zip(*rows) is several times slower here
    arrays = [
        pa.array(list(map(itemgetter(at), rows)), type=field.type)
        for at, field in zip(positions, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def dataset_schema(kind: Kind) -> pa.Schema:
    """Columns of a data file of ``kind``; readings drop ``region`` (the Hive partition)."""
    from include.events import alert_arrow_schema, window_stats_arrow_schema

    if kind == READINGS:
        return arrow_schema(Reading, without=(READINGS_PARTITION_COLUMN,))
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
