"""Readings the archive tests produce: duplicates, late and out-of-order events, midnight, junk.

Shared by the archiver tests and the DAG test. The expectations are computed from what
the scenario *means* (which records it made malformed), not with the archiver's code.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from include.kafka_clients import make_producer
from include.settings import Settings

# Five minutes before midnight: the scenario's readings cross into the next day.
START = datetime(2026, 11, 23, 23, 55, tzinfo=UTC)
REGIONS = ("paris", "lyon", "nice")


def reading_value(sensor: str, region: str, ts: datetime, temperature: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "sensor_id": sensor,
            "region": region,
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "temperature_c": temperature,
            "humidity_pct": 80.0,
        }
    )


# (value, expected reason) of every kind of malformed record the scenario sends
MALFORMED: list[tuple[bytes | None, str]] = [
    (b"{not json", "not_json"),
    (b"\xff\xfe\x00", "not_utf8"),
    (b"[1, 2, 3]", "not_object"),
    (
        b'{"schema_version": 1, "sensor_id": "s", "region": "paris", "ts": "2026-11-23T10:00:00Z"}',
        "missing_field",
    ),
    (
        b'{"schema_version": 1, "sensor_id": "s", "region": "paris", "ts": "yesterday", "temperature_c": 3}',
        "bad_timestamp",
    ),
    (
        b'{"schema_version": 1, "sensor_id": "s", "region": "paris", "ts": "2026-11-23T10:00:00Z", "temperature_c": 99.5}',
        "out_of_range",
    ),
    (
        b'{"schema_version": 2, "sensor_id": "s", "region": "paris", "ts": "2026-11-23T10:00:00Z", "temperature_c": 3}',
        "unknown_schema_version",
    ),
    (None, "not_json"),
]


@dataclass
class Produced:
    """What a scenario sent: valid readings as (sensor_id, ts µs) with multiplicity."""

    valid: Counter[tuple[str, int]] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> count
    by_day: Counter[str] = field(default_factory=Counter)

    @property
    def valid_count(self) -> int:
        return sum(self.valid.values())

    @property
    def malformed_count(self) -> int:
        return sum(self.malformed.values())

    def add(self, other: Produced) -> None:
        self.valid.update(other.valid)
        self.malformed.update(other.malformed)
        self.by_day.update(other.by_day)


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def produce_scenario(
    settings: Settings,
    readings: int,
    *,
    seed: int = 1,
    start: datetime = START,
    malformed_every: int | None = 25,
    duplicate_every: int | None = 40,
) -> Produced:
    """Send ``readings`` valid readings (plus resent duplicates and malformed records).

    ``malformed_every`` / ``duplicate_every``: one such record per that many readings
    (None: none at all).
    """
    rng = random.Random(seed)
    sensors = [(f"{region}-{i:03d}", region) for region in REGIONS for i in range(4)]
    produced = Produced()
    records: list[tuple[bytes, bytes | None]] = []
    for i in range(readings):
        sensor, region = sensors[i % len(sensors)]
        ts = start + timedelta(seconds=(i // len(sensors)) * 10, milliseconds=seed)
        if i % 17 == 0:  # late: a reading from the day before, arriving now
            ts -= timedelta(days=1, hours=3)
        value = reading_value(sensor, region, ts, round(rng.uniform(-5, 25), 2))
        records.append((sensor.encode(), value))
        produced.valid[(sensor, _us(ts))] += 1
        produced.by_day[ts.date().isoformat()] += 1
        # the same reading sent twice (a producer retry)
        if duplicate_every and i % duplicate_every == 0:
            records.append((sensor.encode(), value))
            produced.valid[(sensor, _us(ts))] += 1
            produced.by_day[ts.date().isoformat()] += 1
        if malformed_every and i % malformed_every == 0:
            junk, reason = MALFORMED[(i // malformed_every) % len(MALFORMED)]
            records.append((sensor.encode(), junk))
            produced.malformed[reason] += 1
    # out of order: swap neighbours here and there (per key order changes too)
    for i in range(0, len(records) - 1, 7):
        records[i], records[i + 1] = records[i + 1], records[i]
    producer = make_producer(settings)
    try:
        for key, value in records:
            producer.send(settings.topic_readings, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return produced


def archived_readings(root: Path | str) -> list[tuple[str, int, int, int]]:
    """(sensor_id, ts µs, partition, offset) of every archived reading, read with DuckDB."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT sensor_id, epoch_us(ts), kafka_partition, kafka_offset "
            "FROM read_parquet(?, hive_partitioning = true)",
            [f"{root}/readings/**/*.parquet"],
        ).fetchall()
    return rows


def rejected_reasons(root: Path | str) -> Counter[str]:
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT reason, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY reason",
            [f"{root}/rejected/**/*.parquet"],
        ).fetchall()
    return Counter(dict(rows))


def parquet_files(root: Path | str) -> list[Path]:
    return sorted(Path(root).glob("**/*.parquet"))
