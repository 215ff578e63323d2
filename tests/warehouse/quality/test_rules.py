"""Data quality and the reading contract agree: each shared limit has one owner (the
contract), and which rows a failed expectation sets aside (the first of repeats stays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from include import contract
from warehouse.quality import expectations

pytestmark = [pytest.mark.unit]

ARCHIVED_AT = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _recorder() -> Any:
    """Stands in for ``gx.expectations``: each expectation is its name and keyword args."""

    class Recorder(SimpleNamespace):
        def __getattr__(self, name: str) -> Any:
            return lambda **kwargs: {"type": name, **kwargs}

    return Recorder()


def _between(rules: list[dict[str, Any]], column: str) -> dict[str, Any]:
    (rule,) = [
        r for r in rules if r["type"] == "ExpectColumnValuesToBeBetween" and r["column"] == column
    ]
    return rule


def _facts() -> expectations.BatchFacts:
    return expectations.BatchFacts("b", ARCHIVED_AT, 600.0, 4, 10.0, check_freshness=False)


def test_the_future_limit_is_the_contracts() -> None:
    assert expectations.future_limit(ARCHIVED_AT) == ARCHIVED_AT + contract.MAX_FUTURE_SKEW
    rule = _between(expectations._timeliness(_recorder(), _facts()), "ts")
    assert rule["max_value"] == ARCHIVED_AT + contract.MAX_FUTURE_SKEW
    assert not hasattr(expectations, "FUTURE_TOLERANCE"), "one number, the contract's"


@pytest.mark.parametrize("ahead", [timedelta(minutes=7), contract.MAX_FUTURE_SKEW])
def test_a_time_the_contract_accepts_is_within_the_quality_limit(ahead: timedelta) -> None:
    ts = ARCHIVED_AT + ahead
    reading = contract.Reading("paris-001", "paris", ts, 12.0)
    # the archiver judges against the record's timestamp, never after the archive run
    assert isinstance(
        contract.parse_reading(contract.serialize_reading(reading), now=ARCHIVED_AT),
        contract.Reading,
    )
    assert ts <= expectations.future_limit(ARCHIVED_AT)


def test_temperature_and_humidity_limits_are_the_contracts() -> None:
    rules = expectations._validity(_recorder())
    temperature = _between(rules, "temperature_c")
    humidity = _between(rules, "humidity_pct")
    assert (temperature["min_value"], temperature["max_value"]) == (
        contract.MIN_TEMPERATURE_C,
        contract.MAX_TEMPERATURE_C,
    )
    assert (humidity["min_value"], humidity["max_value"]) == (
        contract.MIN_HUMIDITY_PCT,
        contract.MAX_HUMIDITY_PCT,
    )
    assert humidity["meta"]["severity"] == expectations.CRITICAL


def test_duplicates_set_aside_the_repeats_and_keep_the_first() -> None:
    from warehouse.quality.validate import repeats

    frame = pd.DataFrame(
        {
            "sensor_id": ["a", "a", "b", "a", "b"],
            "ts": pd.to_datetime(["2026-01-01T00:00:00Z"] * 5),
            "kafka_offset": [12, 10, 11, 14, 13],
        }
    )
    # every reading of a repeated (sensor, ts) is unexpected; the first archived stays
    assert repeats(frame, [10, 11, 12, 13, 14]) == {12: 10, 14: 10, 13: 11}
