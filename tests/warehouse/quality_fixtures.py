"""Batches of readings for the data-quality tests: clean ones, and one defect at a time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from include.regions import REGIONS_BY_NAME

Row = tuple[str, str, datetime, float]
REGIONS = ("paris", "dakar", "oslo")
SENSORS_PER_REGION = 4


def clean_rows(
    *,
    end: datetime | None = None,
    minutes: int = 30,
    interval_s: float = 10.0,
    regions: tuple[str, ...] = REGIONS,
    sensors_per_region: int = SENSORS_PER_REGION,
    seed: int = 1,
) -> list[Row]:
    """Every sensor reporting every ``interval_s`` up to ``end`` (default: a minute ago)."""
    rng = random.Random(seed)
    end = (end or datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    start = end - timedelta(minutes=minutes)
    rows = []
    steps = int(minutes * 60 / interval_s)
    for region in regions:
        baseline = REGIONS_BY_NAME[region].baseline_c
        for number in range(sensors_per_region):
            sensor = f"{region}-{number:03d}"
            for step in range(steps):
                ts = start + timedelta(seconds=step * interval_s)
                rows.append((sensor, region, ts, round(baseline + rng.gauss(0, 1.0), 2)))
    return rows


def with_temperature(rows: list[Row], index: int, value: float) -> list[Row]:
    sensor, region, ts, _ = rows[index]
    return [*rows[:index], (sensor, region, ts, value), *rows[index + 1 :]]


def with_duplicate(rows: list[Row], index: int) -> list[Row]:
    sensor, region, ts, value = rows[index]
    return [*rows, (sensor, region, ts, value + 0.1)]


def with_future(rows: list[Row], index: int, ahead: timedelta) -> list[Row]:
    sensor, region, _, value = rows[index]
    return [*rows[:index], (sensor, region, datetime.now(UTC) + ahead, value), *rows[index + 1 :]]


def with_region(rows: list[Row], index: int, region: str) -> list[Row]:
    sensor, _, ts, value = rows[index]
    return [*rows[:index], (sensor, region, ts, value), *rows[index + 1 :]]


def tenth_of_sensors(rows: list[Row]) -> list[Row]:
    """What arrives when nine sensors in ten are down: 10 % of the expected volume."""
    sensors = sorted({row[0] for row in rows})
    kept = set(sensors[::10]) or {sensors[0]}
    return [row for row in rows if row[0] in kept]
