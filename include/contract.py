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
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from include.fields import arrow_schema, column, specs

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1
MIN_TEMPERATURE_C = -90.0
MAX_TEMPERATURE_C = 60.0
MAX_READING_BYTES = 16 * 1024
# How far ahead of its record's Kafka timestamp an event time may be. Data quality holds
# archived readings to the same limit, from the archive run (warehouse/quality).
MAX_FUTURE_SKEW = timedelta(minutes=10)
# Relative humidity is a percentage, but the validator only requires it to be finite: a
# reading is refused for good (DLQ, rejected archive) and its temperature, which the speed
# layer uses, with it. Data quality holds archived readings to this band and sets a reading
# outside it aside in the quarantine, where a person can release it (README, batch layer).
MIN_HUMIDITY_PCT = 0.0
MAX_HUMIDITY_PCT = 100.0
MAX_ID_LENGTH = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

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
    """One valid temperature reading. ``ts`` is timezone-aware UTC.

    The declaration of a reading's fields: the validator's required fields, the archive's
    schema and the data-quality suite's columns derive from it.
    """

    sensor_id: str = column("str")
    region: str = column("str")
    ts: datetime = column("ts")
    temperature_c: float = column("float")
    humidity_pct: float | None = column("float", required=False, default=None)
    pressure_hpa: float | None = column("float", required=False, default=None)

    @property
    def epoch_ms(self) -> int:
        """Event time in milliseconds since the epoch (what windows are computed on).

        Integer arithmetic: ``ts.timestamp() * 1000`` can land a hair below the true value.
        """
        return (self.ts - EPOCH) // ONE_MS

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


# Derived from the declaration above: the envelope's version, then the reading's fields.
REQUIRED_FIELDS = ("schema_version", *(s.name for s in specs(Reading) if s.required))
OPTIONAL_NUMBERS = tuple(s.name for s in specs(Reading) if not s.required and s.kind == "float")


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def format_epoch_ms(epoch_ms: int) -> str:
    """:func:`format_ts` of an epoch-ms instant; cached, as window bounds repeat per region."""
    return format_ts(EPOCH + ONE_MS * epoch_ms)


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


WindowFields = tuple[str, str, int, float]
"""What the speed layer needs of a reading: sensor_id, region, event ms, temperature."""


def future_limit_ms(now: datetime | None = None) -> int:
    """The latest event time (epoch ms) a reading may carry when validated at ``now``."""
    limit = (now or datetime.now(UTC)) + MAX_FUTURE_SKEW
    return (limit - EPOCH) // ONE_MS


def parse_window_fields(value: bytes | None, limit_ms: int) -> WindowFields | Rejection:
    """The speed layer's hot path: the fields windows need, or the record's rejection.

    Readings in the producers' canonical form (float temperature, ``…T21:49:52.120Z``
    timestamps) are checked inline, with each minute's epoch cached; anything else is
    judged by :func:`parse_reading`, so both accept exactly the same records (a property
    test holds them to it). ``limit_ms`` comes from :func:`future_limit_ms`, once per batch.
    """
    if value is None or len(value) > MAX_READING_BYTES:
        return _judge(value, limit_ms)
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return _explain_undecodable(value)
    if type(body) is not dict or body.get("schema_version") != SCHEMA_VERSION:
        return _judge(value, limit_ms)
    sensor_id = body.get("sensor_id")
    region = body.get("region")
    temperature = body.get("temperature_c")
    ts = body.get("ts")
    humidity = body.get("humidity_pct")
    pressure = body.get("pressure_hpa")
    if (
        type(body["schema_version"]) is int
        and type(sensor_id) is str
        and type(region) is str
        and 0 < len(sensor_id) <= MAX_ID_LENGTH
        and 0 < len(region) <= MAX_ID_LENGTH
        and type(temperature) is float
        and MIN_TEMPERATURE_C <= temperature <= MAX_TEMPERATURE_C  # False for NaN
        and (humidity is None or (type(humidity) is float and math.isfinite(humidity)))
        and (pressure is None or (type(pressure) is float and math.isfinite(pressure)))
        and type(ts) is str
    ):
        event_ms = _canonical_epoch_ms(ts)
        if event_ms is not None and event_ms <= limit_ms:
            return sensor_id, region, event_ms, temperature
    return _judge(value, limit_ms)


def _judge(value: bytes | None, limit_ms: int) -> WindowFields | Rejection:
    """The general path: the full validator, at the same future limit."""
    result = parse_reading(value, now=EPOCH + ONE_MS * limit_ms - MAX_FUTURE_SKEW)
    if type(result) is Rejection:
        return result
    return result.sensor_id, result.region, result.epoch_ms, result.temperature_c


# "SS.mmm" -> milliseconds into the minute: one lookup checks the digits and the range
_WITHIN_MINUTE_MS = {f"{ms // 1000:02d}.{ms % 1000:03d}": ms for ms in range(60_000)}
_minute_epochs: dict[str, int] = {}


def _canonical_epoch_ms(ts: str) -> int | None:
    """Epoch ms of ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None for any other spelling."""
    if len(ts) != 24 or ts[23] != "Z" or ts[16] != ":":
        return None
    within = _WITHIN_MINUTE_MS.get(ts[17:23])
    if within is None:
        return None
    minute = _minute_epochs.get(ts[:16])
    if minute is None:
        minute = _learn_minute(ts[:16])
        if minute is None:
            return None
    return minute + within


def _learn_minute(minute: str) -> int | None:
    """Epoch ms of a strict ``YYYY-MM-DDTHH:MM`` (ASCII digits, real date), cached."""
    digits = minute[:4] + minute[5:7] + minute[8:10] + minute[11:13] + minute[14:]
    if not (
        minute.isascii()
        and digits.isdigit()
        and minute[4] == minute[7] == "-"
        and minute[10] == "T"
        and minute[13] == ":"
    ):
        return None
    try:
        parsed = datetime.fromisoformat(minute).replace(tzinfo=UTC)
    except ValueError:
        return None
    if len(_minute_epochs) >= 4096:  # a stream spans few minutes at a time
        _minute_epochs.clear()
    epoch_ms = _minute_epochs[minute] = (parsed - EPOCH) // ONE_MS
    return epoch_ms


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
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            return Rejection(BAD_TIMESTAMP, f"ts {raw[:64]!r} is outside years 1..9999 in UTC")
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

    def parse_int(literal: str) -> int:
        if not -(2**63) <= int(literal) < 2**64:
            too_large.append(literal[:32])
        return 0

    too_large: list[str] = []
    try:
        json.loads(text, parse_constant=non_finite, parse_float=parse_float, parse_int=parse_int)
    except ValueError as exc:
        return Rejection(NOT_JSON, f"{exc.__class__.__name__}: {str(exc)[:120]}")
    except RecursionError:
        return Rejection(NOT_JSON, "nested too deeply")
    if constants:
        return Rejection(NOT_FINITE, f"{constants[0]} is not a finite number")
    if too_large:
        return Rejection(OUT_OF_RANGE, f"integer {too_large[0]}… is beyond the 64-bit range")
    return Rejection(NOT_JSON, "not valid JSON")


def reading_arrow_schema() -> pa.Schema:
    """Schema of a reading in the Parquet archive (contract fields + where it came from)."""
    return arrow_schema(Reading)
