"""Replay of recorded data: a CSV or Parquet file of readings, published to Kafka.

Column names are mapped onto the reading contract, a fixed region and sensor id can be
given when the file has none, Fahrenheit is converted, and the recorded event times are
kept (times without an offset are taken as UTC). With ``speedup`` the gaps between recorded times are replayed, divided by it;
without, rows go out as fast as the broker takes them. Rows that do not make a valid
reading are published anyway, so the speed layer routes them to the DLQ with the reason
like any other bad record, and are counted in the summary.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from include.contract import SCHEMA_VERSION, Reading, format_ts, validate_reading_dict
from include.errors import ClimateWatchError
from include.settings import Settings


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each contract field; ``None`` means absent."""

    ts: str = "ts"
    temperature: str = "temperature_c"
    sensor_id: str | None = "sensor_id"
    region: str | None = "region"
    humidity: str | None = "humidity_pct"
    pressure: str | None = "pressure_hpa"
    fixed_region: str | None = None
    fixed_sensor_id: str | None = None
    fahrenheit: bool = False


@dataclass
class ReplayStats:
    rows: int = 0
    sent: int = 0
    invalid: int = 0
    failed: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a CSV or Parquet file as dicts, in file order, batch by batch."""
    if not path.exists():
        raise ClimateWatchError(f"replay file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            yield from batch.to_pylist()
    elif suffix in (".csv", ".txt"):
        import pyarrow.csv as pacsv

        # Every column as text: the contract validator decides what a value means.
        with open(path, "rb") as stream:
            header = stream.readline().decode("utf-8-sig").strip()
        columns = [name.strip() for name in header.split(",")]
        reader = pacsv.open_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, "string"),
                strings_can_be_null=True,
            ),
        )
        for batch in reader:
            yield from batch.to_pylist()
    else:
        raise ClimateWatchError(f"replay reads .csv or .parquet files, not {path.name}")


def row_to_reading_body(row: dict[str, Any], mapping: ColumnMapping) -> dict[str, Any]:
    """Map one source row to a contract JSON object (not yet validated)."""

    def column(name: str | None) -> Any:
        if name is None:
            return None
        if name not in row:
            raise ClimateWatchError(
                f"column {name!r} not in the file (columns: {', '.join(row)}); "
                "map it with the replay options"
            )
        return row[name]

    body: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    body["sensor_id"] = mapping.fixed_sensor_id or _text(column(mapping.sensor_id))
    body["region"] = mapping.fixed_region or _text(column(mapping.region))
    body["ts"] = _timestamp(column(mapping.ts))
    temperature = _number(column(mapping.temperature))
    if mapping.fahrenheit and isinstance(temperature, float):
        temperature = round((temperature - 32.0) * 5.0 / 9.0, 3)
    body["temperature_c"] = temperature
    for name, source in (("humidity_pct", mapping.humidity), ("pressure_hpa", mapping.pressure)):
        if source is not None and source in row and row[source] not in (None, ""):
            body[name] = _number(row[source])
    return {key: value for key, value in body.items() if value is not None}


def _timestamp(value: Any) -> Any:
    """Recorded times without an offset are taken as UTC; others are kept as recorded."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # the validator names the problem
        return format_ts(parsed.replace(tzinfo=UTC)) if parsed.tzinfo is None else value.strip()
    if isinstance(value, datetime):
        return format_ts(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # the validator says why it is not a number
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def replay_file(
    settings: Settings,
    path: Path,
    mapping: ColumnMapping,
    *,
    speedup: float | None = None,
    on_progress: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Publish every row of ``path`` to the readings topic, keyed by sensor id."""
    from include.kafka_clients import make_producer

    if mapping.sensor_id is None and mapping.fixed_sensor_id is None:
        raise ClimateWatchError("replay needs a sensor id column or --sensor-id")
    if mapping.region is None and mapping.fixed_region is None:
        raise ClimateWatchError("replay needs a region column or --region")
    if speedup is not None and speedup <= 0:
        raise ClimateWatchError("--speedup must be greater than 0")

    rows = read_rows(path)
    first = next(rows, None)
    if first is not None:
        row_to_reading_body(first, mapping)  # a missing column fails here, before any send
    stats = ReplayStats()
    producer = make_producer(settings)

    def failed(error: BaseException) -> None:
        stats.failed += 1

    wall_start = time.monotonic()
    last_report = wall_start
    try:
        for row in itertools.chain([first] if first is not None else [], rows):
            stats.rows += 1
            body = row_to_reading_body(row, mapping)
            checked = validate_reading_dict(body, now=datetime.now(UTC))
            if isinstance(checked, Reading):
                if stats.first_ts is None:
                    stats.first_ts = checked.ts
                stats.last_ts = checked.ts
                if speedup is not None:
                    due = wall_start + (checked.ts - stats.first_ts).total_seconds() / speedup
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
            else:
                stats.invalid += 1
                stats.reasons[checked.reason] = stats.reasons.get(checked.reason, 0) + 1
            key = str(body.get("sensor_id", "")).encode()
            producer.send(settings.topic_readings, key=key, value=orjson.dumps(body)).add_errback(
                failed
            )
            stats.sent += 1
            if on_progress is not None and time.monotonic() - last_report > 0.25:
                on_progress(stats)
                last_report = time.monotonic()
    finally:
        producer.flush(timeout=60)
        producer.close(timeout=10)
    return stats
