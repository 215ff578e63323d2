"""The simulator's scenarios produce what later layers are tested against."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from statistics import mean

import pytest

from include.contract import Reading, Rejection, parse_reading
from include.simulator import MALFORMED_KINDS, SimulationConfig, generate

pytestmark = pytest.mark.unit

START = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def simulate(**options: object) -> list:
    config = SimulationConfig(start=START, rate=0, **options)  # type: ignore[arg-type]
    return list(generate(config))


def test_same_seed_same_readings_and_every_record_is_valid() -> None:
    first = simulate(regions=3, sensors_per_region=4, count=500, seed=7)
    second = simulate(regions=3, sensors_per_region=4, count=500, seed=7)
    assert [r.value for r in first] == [r.value for r in second]
    assert len(first) == 500
    parsed = [parse_reading(r.value, now=START + timedelta(days=1)) for r in first]
    assert all(isinstance(p, Reading) for p in parsed)
    assert {p.sensor_id for p in parsed} == {
        f"{region}-{i:03d}" for region in ("paris", "lyon", "marseille") for i in range(1, 5)
    }
    assert all(r.key == p.sensor_id.encode() for r, p in zip(first, parsed, strict=True))


def test_each_sensor_reports_once_per_interval_of_event_time() -> None:
    records = simulate(regions=2, sensors_per_region=5, count=100, interval_s=60)
    by_sensor = [r.event_time for r in records if r.key == b"paris-001"]
    gaps = {(b - a).total_seconds() for a, b in pairwise(by_sensor)}
    assert gaps == {60.0}


def test_diurnal_cycle_is_warmer_in_the_afternoon() -> None:
    records = simulate(regions=1, sensors_per_region=5, duration_s=24 * 3600, interval_s=300)
    by_hour: dict[int, list[float]] = {}
    for record in records:
        by_hour.setdefault(record.event_time.hour, []).append(record.reading.temperature_c)
    assert mean(by_hour[15]) > mean(by_hour[3]) + 5


def test_heat_wave_in_one_region_only() -> None:
    records = simulate(
        regions=3,
        sensors_per_region=5,
        duration_s=900,
        interval_s=10,
        heat_wave="lyon",
        heat_wave_at_s=300,
        heat_wave_for_s=300,
    )
    during = [r.reading for r in records if 330 <= (r.event_time - START).total_seconds() < 570]
    lyon = [r.temperature_c for r in during if r.region == "lyon"]
    others = [r.temperature_c for r in during if r.region != "lyon"]
    assert mean(lyon) > 30 > max(others)
    after = [
        r.reading.temperature_c
        for r in records
        if r.region == "lyon" and (r.event_time - START).total_seconds() >= 620
    ]
    assert mean(after) < 25


def test_sudden_drop() -> None:
    records = simulate(
        regions=1, sensors_per_region=5, duration_s=240, interval_s=10, drop="paris", drop_at_s=120
    )
    before = [
        r.reading.temperature_c for r in records if (r.event_time - START).total_seconds() < 120
    ]
    after = [
        r.reading.temperature_c for r in records if (r.event_time - START).total_seconds() >= 120
    ]
    assert mean(before) - mean(after) >= 10


def test_silent_sensor_stops_at_its_time() -> None:
    records = simulate(
        regions=1,
        sensors_per_region=3,
        duration_s=600,
        interval_s=10,
        silent_sensor="paris-002",
        silent_at_s=200,
    )
    times = [(r.event_time - START).total_seconds() for r in records if r.key == b"paris-002"]
    assert max(times) < 200
    assert any(
        r.key == b"paris-001" and (r.event_time - START).total_seconds() > 500 for r in records
    )


def test_malformed_ratio_produces_each_kind_and_each_is_rejected() -> None:
    records = simulate(regions=2, sensors_per_region=5, count=4000, malformed_ratio=0.05)
    malformed = [r for r in records if r.kind.startswith("malformed")]
    assert 120 < len(malformed) < 280
    assert {r.kind.split(":")[1] for r in malformed} == set(MALFORMED_KINDS)
    for record in malformed:
        assert isinstance(parse_reading(record.value, now=START), Rejection), record.value


def test_late_readings_arrive_after_newer_ones_and_nothing_is_lost() -> None:
    plain = simulate(regions=2, sensors_per_region=5, count=2000)
    late = simulate(regions=2, sensors_per_region=5, count=2000, late_ratio=0.05, late_by_s=120)
    assert len(late) == 2000
    kinds = Counter(r.kind for r in late)
    assert 50 < kinds["late"] < 160
    for i, record in enumerate(late):
        if record.kind == "late" and record.event_time < late[-1].event_time - timedelta(
            seconds=150
        ):
            newer = [
                r for r in late[:i] if r.event_time >= record.event_time + timedelta(seconds=100)
            ]
            assert newer, "a late reading is sent after readings 100+ s newer than it"
    assert {r.reading.sensor_id for r in plain} == {r.reading.sensor_id for r in late}


def test_out_of_order_readings_are_sent_after_newer_ones() -> None:
    records = simulate(regions=2, sensors_per_region=5, count=2000, out_of_order_ratio=0.05)
    assert len(records) == 2000
    inversions = sum(1 for a, b in pairwise(records) if b.event_time < a.event_time)
    assert inversions >= 50


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed_ratio"):
        SimulationConfig(malformed_ratio=1.5)
    with pytest.raises(ValueError, match="regions must be between 1 and 20"):
        list(generate(SimulationConfig(regions=21, start=START, rate=0, count=1)))
