"""The reading contract: the one owner of what a temperature reading is.

A reading on topic ``temperature-data`` is a UTF-8 JSON object keyed by ``sensor_id``::

    {"schema_version": 1, "sensor_id": "paris-003", "region": "paris",
     "ts": "2026-11-24T21:49:52.120Z", "temperature_c": 12.4,
     "humidity_pct": 81.0, "pressure_hpa": 1012.3}

The typed record (:class:`Reading`), the validator (:func:`parse_reading`), the
serializer (:func:`serialize_reading`) and the archive's pyarrow schema
(:func:`reading_arrow_schema`) all live here so that they cannot disagree. The validator
is on the hot path of the speed layer and the archiver: it does the cheap checks in the
common order and only explains itself on the error path.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1
MIN_TEMPERATURE_C = -90.0
MAX_TEMPERATURE_C = 60.0
MAX_READING_BYTES = 16 * 1024
MAX_FUTURE_SKEW = timedelta(minutes=10)
REQUIRED_FIELDS = ("schema_version", "sensor_id", "region", "ts", "temperature_c")
OPTIONAL_NUMBERS = ("humidity_pct", "pressure_hpa")
MAX_ID_LENGTH = 200

# Rejection reasons: stable codes that the DLQ header, the rejected archive and the
# data-quality counts share. The detail next to them says which field and why.
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
OVERSIZED = "oversized"
REJECTION_REASONS = (
    NOT_UTF8,
    NOT_JSON,
    NOT_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    NOT_FINITE,
    OUT_OF_RANGE,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    UNKNOWN_SCHEMA_VERSION,
    OVERSIZED,
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One valid temperature reading. ``ts`` is timezone-aware UTC."""

    sensor_id: str
    region: str
    ts: datetime
    temperature_c: float
    humidity_pct: float | None = None
    pressure_hpa: float | None = None

    @property
    def epoch_ms(self) -> int:
        """Event time in milliseconds since the epoch (what windows are computed on)."""
        return int(self.ts.timestamp() * 1000)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "sensor_id": self.sensor_id,
            "region": self.region,
            "ts": format_ts(self.ts),
            "temperature_c": self.temperature_c,
        }
        if self.humidity_pct is not None:
            body["humidity_pct"] = self.humidity_pct
        if self.pressure_hpa is not None:
            body["pressure_hpa"] = self.pressure_hpa
        return body


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is not a valid reading: a stable ``reason`` code and a human detail."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serialize_reading(reading: Reading) -> bytes:
    """The bytes a producer sends for ``reading`` (key: :func:`reading_key`)."""
    return orjson.dumps(reading.to_dict())


def reading_key(reading: Reading) -> bytes:
    """Kafka key of a reading: its sensor id, so one sensor stays in one partition."""
    return reading.sensor_id.encode()


def parse_reading(value: bytes | None, *, now: datetime | None = None) -> Reading | Rejection:
    """Decode and validate one record value; never raises on bad input.

    ``now`` bounds how far in the future an event time may be (default: the wall clock).
    """
    if value is None:
        return Rejection(NOT_JSON, "record has no value (tombstone)")
    if len(value) > MAX_READING_BYTES:
        return Rejection(OVERSIZED, f"{len(value)} bytes, limit {MAX_READING_BYTES}")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return _explain_undecodable(value)
    if type(body) is not dict:
        return Rejection(NOT_OBJECT, f"JSON {type(body).__name__}, expected an object")
    return validate_reading_dict(body, now=now)


def validate_reading_dict(
    body: dict[str, Any], *, now: datetime | None = None
) -> Reading | Rejection:
    """Validate an already decoded JSON object against the contract."""
    for field in REQUIRED_FIELDS:
        if field not in body:
            return Rejection(MISSING_FIELD, field)
    version = body["schema_version"]
    if type(version) is not int:
        return Rejection(WRONG_TYPE, f"schema_version is {type(version).__name__}, expected int")
    if version != SCHEMA_VERSION:
        return Rejection(
            UNKNOWN_SCHEMA_VERSION, f"{version!r}, this consumer reads {SCHEMA_VERSION}"
        )

    sensor_id = body["sensor_id"]
    region = body["region"]
    for field, text in (("sensor_id", sensor_id), ("region", region)):
        if type(text) is not str:
            return Rejection(WRONG_TYPE, f"{field} is {type(text).__name__}, expected string")
        if not text or len(text) > MAX_ID_LENGTH:
            return Rejection(OUT_OF_RANGE, f"{field} must have 1..{MAX_ID_LENGTH} characters")

    temperature = _number(body, "temperature_c")
    if type(temperature) is Rejection:
        return temperature
    if not MIN_TEMPERATURE_C <= temperature <= MAX_TEMPERATURE_C:
        return Rejection(
            OUT_OF_RANGE,
            f"temperature_c {temperature} outside physical limits "
            f"[{MIN_TEMPERATURE_C}, {MAX_TEMPERATURE_C}]",
        )
    optional: list[float | None] = []
    for field in OPTIONAL_NUMBERS:
        if body.get(field) is None:
            optional.append(None)
            continue
        number = _number(body, field)
        if type(number) is Rejection:
            return number
        optional.append(number)

    ts = parse_timestamp(body["ts"])
    if type(ts) is Rejection:
        return ts
    limit = (now or datetime.now(UTC)) + MAX_FUTURE_SKEW
    if ts > limit:
        return Rejection(FUTURE_TIMESTAMP, f"ts {body['ts']} is more than {MAX_FUTURE_SKEW} ahead")
    return Reading(sensor_id, region, ts, temperature, optional[0], optional[1])


def parse_timestamp(raw: object) -> datetime | Rejection:
    """RFC 3339 with an explicit offset, normalised to UTC."""
    if type(raw) is not str:
        return Rejection(WRONG_TYPE, f"ts is {type(raw).__name__}, expected an RFC 3339 string")
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return Rejection(BAD_TIMESTAMP, f"ts {raw[:64]!r} is not RFC 3339")
    if ts.tzinfo is None:
        return Rejection(BAD_TIMESTAMP, f"ts {raw[:64]!r} has no UTC offset")
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    elif ts.tzinfo is not UTC:
        ts = ts.replace(tzinfo=UTC)
    return ts


def _number(body: dict[str, Any], field: str) -> float | Rejection:
    value = body[field]
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            return Rejection(NOT_FINITE, f"{field} is {value}")
        return value
    if kind is int:  # JSON integers are fine for a float field; bool is not an int here
        return float(value)
    return Rejection(WRONG_TYPE, f"{field} is {kind.__name__}, expected a number")


def _explain_undecodable(value: bytes) -> Rejection:
    """Slow path: say precisely why orjson refused the bytes."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    # The standard library accepts NaN and Infinity, which JSON does not: name them.
    constants: list[str] = []

    def non_finite(name: str) -> float:
        constants.append(name)
        return 0.0

    def parse_float(literal: str) -> float:
        number = float(literal)
        return number if math.isfinite(number) else non_finite(literal[:32])

    try:
        json.loads(text, parse_constant=non_finite, parse_float=parse_float)
    except ValueError as exc:
        return Rejection(NOT_JSON, f"{exc.__class__.__name__}: {str(exc)[:120]}")
    except RecursionError:
        return Rejection(NOT_JSON, "nested too deeply")
    if constants:
        return Rejection(NOT_FINITE, f"{constants[0]} is not a finite number")
    return Rejection(NOT_JSON, "not valid JSON")


def reading_arrow_schema() -> pa.Schema:
    """Schema of a reading in the Parquet archive (contract fields + where it came from)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("sensor_id", pa.string(), nullable=False),
            pa.field("region", pa.string(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("temperature_c", pa.float64(), nullable=False),
            pa.field("humidity_pct", pa.float64()),
            pa.field("pressure_hpa", pa.float64()),
            pa.field("kafka_partition", pa.int32(), nullable=False),
            pa.field("kafka_offset", pa.int64(), nullable=False),
        ]
    )
