"""The reading contract: every kind of bad record is refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from include import contract
from include.contract import Reading, Rejection, parse_reading, serialize_reading

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def body(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema_version": 1,
        "sensor_id": "paris-001",
        "region": "paris",
        "ts": "2026-11-24T11:59:00.250Z",
        "temperature_c": 12.5,
        "humidity_pct": 80.0,
        "pressure_hpa": 1013.2,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def parse(value: bytes) -> Reading | Rejection:
    return parse_reading(value, now=NOW)


def test_valid_reading_is_typed_and_round_trips_unchanged() -> None:
    reading = parse(orjson.dumps(body()))
    assert reading == Reading(
        "paris-001",
        "paris",
        datetime(2026, 11, 24, 11, 59, 0, 250000, tzinfo=UTC),
        12.5,
        80.0,
        1013.2,
    )
    assert orjson.loads(serialize_reading(reading)) == body()


def test_unknown_extra_fields_are_accepted_and_ignored() -> None:
    reading = parse(orjson.dumps(body(firmware="1.2.3", battery=0.9)))
    assert isinstance(reading, Reading)


def test_optional_fields_may_be_absent_or_null() -> None:
    reading = parse(orjson.dumps(body(humidity_pct=..., pressure_hpa=None)))
    assert isinstance(reading, Reading)
    assert reading.humidity_pct is None and reading.pressure_hpa is None


def test_integer_temperature_is_a_number() -> None:
    reading = parse(orjson.dumps(body(temperature_c=21)))
    assert isinstance(reading, Reading) and reading.temperature_c == 21.0


def test_offsets_are_normalised_to_utc() -> None:
    reading = parse(orjson.dumps(body(ts="2026-11-24T12:59:00+01:00")))
    assert isinstance(reading, Reading)
    assert reading.ts == datetime(2026, 11, 24, 11, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason", "detail_part"),
    [
        (b"\xff\xfe garbage", contract.NOT_UTF8, "byte 0"),
        (b"temperature=21", contract.NOT_JSON, ""),
        (b"", contract.NOT_JSON, ""),
        (b"[1, 2, 3]", contract.NOT_OBJECT, "list"),
        (b'"just a string"', contract.NOT_OBJECT, "str"),
        (orjson.dumps(body(region=...)), contract.MISSING_FIELD, "region"),
        (orjson.dumps(body(ts=...)), contract.MISSING_FIELD, "ts"),
        (orjson.dumps(body(temperature_c="hot")), contract.WRONG_TYPE, "temperature_c"),
        (orjson.dumps(body(temperature_c=True)), contract.WRONG_TYPE, "temperature_c"),
        (orjson.dumps(body(sensor_id=17)), contract.WRONG_TYPE, "sensor_id"),
        (orjson.dumps(body(humidity_pct="wet")), contract.WRONG_TYPE, "humidity_pct"),
        (orjson.dumps(body(schema_version="1")), contract.WRONG_TYPE, "schema_version"),
        (orjson.dumps(body(ts=1732449540)), contract.WRONG_TYPE, "ts"),
        (
            b'{"schema_version": 1, "sensor_id": "s", "region": "r", '
            b'"ts": "2026-11-24T11:59:00Z", "temperature_c": NaN}',
            contract.NOT_FINITE,
            "NaN",
        ),
        (
            b'{"schema_version": 1, "sensor_id": "s", "region": "r", '
            b'"ts": "2026-11-24T11:59:00Z", "temperature_c": Infinity}',
            contract.NOT_FINITE,
            "Infinity",
        ),
        (
            b'{"schema_version": 1, "sensor_id": "s", "region": "r", '
            b'"ts": "2026-11-24T11:59:00Z", "temperature_c": 1e400}',
            contract.NOT_FINITE,
            "1e400",
        ),
        (orjson.dumps(body(temperature_c=85.0)), contract.OUT_OF_RANGE, "physical limits"),
        (orjson.dumps(body(temperature_c=-90.5)), contract.OUT_OF_RANGE, "physical limits"),
        (orjson.dumps(body(sensor_id="")), contract.OUT_OF_RANGE, "sensor_id"),
        (orjson.dumps(body(ts="yesterday")), contract.BAD_TIMESTAMP, "yesterday"),
        (orjson.dumps(body(ts="2026-11-24T11:59:00")), contract.BAD_TIMESTAMP, "no UTC offset"),
        (orjson.dumps(body(ts="2026-11-24T12:30:00Z")), contract.FUTURE_TIMESTAMP, "ahead"),
        (orjson.dumps(body(schema_version=2)), contract.UNKNOWN_SCHEMA_VERSION, "2"),
        (orjson.dumps(body(padding="x" * 20_000)), contract.OVERSIZED, "bytes"),
    ],
)
def test_each_kind_of_bad_record_is_rejected_with_its_reason(
    value: bytes, reason: str, detail_part: str
) -> None:
    result = parse(value)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert detail_part in result.detail
    assert reason in contract.REJECTION_REASONS


def test_physical_limits_are_inclusive() -> None:
    for temperature in (-90.0, 60.0):
        assert isinstance(parse(orjson.dumps(body(temperature_c=temperature))), Reading)


def test_small_clock_skew_is_tolerated() -> None:
    ahead = (NOW + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert isinstance(parse(orjson.dumps(body(ts=ahead))), Reading)


def test_tombstone_is_rejected_not_crashing() -> None:
    assert isinstance(parse_reading(None), Rejection)


def test_arrow_schema_has_the_contract_fields() -> None:
    schema = contract.reading_arrow_schema()
    for field in ("sensor_id", "region", "ts", "temperature_c", "humidity_pct", "pressure_hpa"):
        assert field in schema.names
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
