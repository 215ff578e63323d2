"""The sensor simulator: a realistic network of temperature sensors, with scenarios.

:func:`generate` is pure: given a configuration (and a clock in real-time mode) it yields
the records a network of R regions × S sensors would publish — a regional baseline, a
diurnal cycle, a per-sensor bias, slow drift and noise — with the scenarios the speed
layer and the batch layer are tested against: a heat wave, a sudden drop, a silent
sensor, late and out-of-order readings, malformed records. :func:`run_simulation`
sends them to Kafka at a given rate with ``acks=all``.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from include.contract import Reading, reading_key, serialize_reading
from include.regions import Region, regions
from include.settings import Settings

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Scenario times are seconds of event time after the start."""

    regions: int = 10
    sensors_per_region: int = 5
    rate: float = 50.0  # readings per second sent; 0 sends as fast as possible
    count: int | None = None
    duration_s: float | None = None
    seed: int = 42
    # Simulated event time: start here and give each sensor one reading per interval_s.
    # None: real time, event time is the wall clock when the reading is made.
    start: datetime | None = None
    interval_s: float = 10.0
    heat_wave: str | None = None
    heat_wave_at_s: float = 60.0
    heat_wave_for_s: float = 300.0
    heat_wave_c: float = 36.0
    drop: str | None = None
    drop_at_s: float = 60.0
    drop_by_c: float = 12.0
    silent_sensor: str | None = None
    silent_at_s: float = 60.0
    late_ratio: float = 0.0
    late_by_s: float = 120.0
    out_of_order_ratio: float = 0.0
    malformed_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("late_ratio", "out_of_order_ratio", "malformed_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.sensors_per_region < 1:
            raise ValueError("sensors_per_region must be at least 1")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.start is None and self.rate == 0:
            raise ValueError("real-time mode needs a rate > 0 (or give a simulated start)")


@dataclass(frozen=True, slots=True)
class Record:
    """One record to send: what the sensor means (``reading``) and the bytes it sends."""

    key: bytes
    value: bytes
    region: str
    event_time: datetime
    kind: str  # "reading", "late", "out_of_order" or "malformed:<what>"
    reading: Reading | None


@dataclass
class Sensor:
    sensor_id: str
    region: Region
    bias_c: float


def sensor_network(config: SimulationConfig) -> list[Sensor]:
    rng = random.Random(config.seed)
    return [
        Sensor(f"{region.name}-{index:03d}", region, rng.gauss(0.0, 0.4))
        for region in regions(config.regions)
        for index in range(1, config.sensors_per_region + 1)
    ]


def temperature_at(sensor: Sensor, when: datetime, drift_c: float, rng: random.Random) -> float:
    """Baseline + diurnal cycle peaking mid-afternoon + bias + drift + noise."""
    hour = when.hour + when.minute / 60 + when.second / 3600
    diurnal = sensor.region.diurnal_amplitude_c * math.sin(2 * math.pi * (hour - 9) / 24)
    return sensor.region.baseline_c + diurnal + sensor.bias_c + drift_c + rng.gauss(0.0, 0.3)


MALFORMED_KINDS = (
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "nan",
    "out_of_range",
    "bad_timestamp",
    "unknown_schema_version",
)


def malformed_value(kind: str, sensor: Sensor, when: datetime) -> bytes:
    """A record that breaks the contract in one specific way."""
    ts = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base = f'"sensor_id": "{sensor.sensor_id}", "region": "{sensor.region.name}", "ts": "{ts}"'
    return {
        "not_json": b"temperature=21.5;sensor=" + sensor.sensor_id.encode(),
        "not_object": b'["' + sensor.sensor_id.encode() + b'", 21.5]',
        "missing_field": f'{{"schema_version": 1, {base}}}'.encode(),
        "wrong_type": f'{{"schema_version": 1, {base}, "temperature_c": "hot"}}'.encode(),
        "nan": f'{{"schema_version": 1, {base}, "temperature_c": NaN}}'.encode(),
        "out_of_range": f'{{"schema_version": 1, {base}, "temperature_c": 85.0}}'.encode(),
        "bad_timestamp": (
            f'{{"schema_version": 1, "sensor_id": "{sensor.sensor_id}", '
            f'"region": "{sensor.region.name}", "ts": "yesterday", "temperature_c": 20.0}}'
        ).encode(),
        "unknown_schema_version": f'{{"schema_version": 9, {base}, "temperature_c": 20.0}}'.encode(),
    }[kind]


def generate(config: SimulationConfig, clock: Clock | None = None) -> Iterator[Record]:
    """The records of the simulation, in sending order (endless unless count/duration)."""
    rng = random.Random(config.seed)
    sensors = sensor_network(config)
    clock = clock or (lambda: datetime.now(UTC))
    origin = config.start or clock()
    step = timedelta(seconds=config.interval_s / len(sensors))
    drift = {region.name: 0.0 for region in regions(config.regions)}
    delayed: list[tuple[datetime, int, Record]] = []  # late readings, released by event time
    held_back: list[tuple[int, Record]] = []  # out-of-order readings, released after k records
    produced = 0
    sequence = 0

    def due(now: datetime) -> Iterator[Record]:
        while delayed and delayed[0][0] <= now:
            yield heapq.heappop(delayed)[2]

    index = 0
    while True:
        sensor = sensors[index % len(sensors)]
        when = origin + step * index if config.start else clock()
        elapsed = (when - origin).total_seconds()
        if config.duration_s is not None and elapsed >= config.duration_s:
            break
        if config.count is not None and produced >= config.count:
            break
        index += 1
        if index % len(sensors) == 0:
            for name in drift:  # slow bounded random walk, once per round of the network
                drift[name] = max(-2.0, min(2.0, drift[name] + rng.gauss(0.0, 0.02)))

        for record in due(when):
            yield record
        ready = [item for item in held_back if item[0] <= index]
        held_back[:] = [item for item in held_back if item[0] > index]
        for _, record in ready:
            yield record

        if sensor.sensor_id == config.silent_sensor and elapsed >= config.silent_at_s:
            continue
        produced += 1
        if config.malformed_ratio and rng.random() < config.malformed_ratio:
            kind = MALFORMED_KINDS[sequence % len(MALFORMED_KINDS)]
            sequence += 1
            yield _malformed_record(sensor, when, kind)
            continue

        temperature = _scenario_temperature(config, sensor, when, elapsed, drift, rng)
        record = _reading_record(sensor, when, temperature, rng)
        if config.late_ratio and rng.random() < config.late_ratio:
            release = when + timedelta(seconds=config.late_by_s)
            heapq.heappush(delayed, (release, produced, _relabel(record, "late")))
        elif config.out_of_order_ratio and rng.random() < config.out_of_order_ratio:
            held_back.append((index + rng.randint(2, 6), _relabel(record, "out_of_order")))
        else:
            yield record

    # what is still held back is sent at the end, so nothing produced is lost
    for _, record in held_back:
        yield record
    while delayed:
        yield heapq.heappop(delayed)[2]


def _malformed_record(sensor: Sensor, when: datetime, kind: str) -> Record:
    return Record(
        sensor.sensor_id.encode(),
        malformed_value(kind, sensor, when),
        sensor.region.name,
        when,
        f"malformed:{kind}",
        None,
    )


def _scenario_temperature(
    config: SimulationConfig,
    sensor: Sensor,
    when: datetime,
    elapsed: float,
    drift: dict[str, float],
    rng: random.Random,
) -> float:
    """The sensor's temperature, with the configured heat wave or drop applied."""
    temperature = temperature_at(sensor, when, drift[sensor.region.name], rng)
    region = sensor.region.name
    if region == config.heat_wave and (
        config.heat_wave_at_s <= elapsed < config.heat_wave_at_s + config.heat_wave_for_s
    ):
        temperature = config.heat_wave_c + rng.gauss(0.0, 0.5)
    if region == config.drop and elapsed >= config.drop_at_s:
        temperature -= config.drop_by_c
    return temperature


def _reading_record(
    sensor: Sensor, when: datetime, temperature: float, rng: random.Random
) -> Record:
    reading = Reading(
        sensor.sensor_id,
        sensor.region.name,
        when,
        round(temperature, 2),
        round(min(100.0, max(0.0, 70 + rng.gauss(0, 8))), 1),
        round(1013 + rng.gauss(0, 5), 1),
    )
    return Record(
        reading_key(reading),
        serialize_reading(reading),
        sensor.region.name,
        when,
        "reading",
        reading,
    )


def _relabel(record: Record, kind: str) -> Record:
    return Record(record.key, record.value, record.region, record.event_time, kind, record.reading)


@dataclass
class SimulationStats:
    """Live counters of a running simulation (read by the progress display)."""

    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    by_region: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


def run_simulation(
    settings: Settings,
    config: SimulationConfig,
    *,
    stats: SimulationStats | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SimulationStats], None] | None = None,
) -> SimulationStats:
    """Send the simulation to the readings topic, paced at ``config.rate``, then flush."""
    from include.kafka_clients import make_producer

    stats = stats or SimulationStats()
    producer = make_producer(settings)
    topic = settings.topic_readings

    def acknowledged(_metadata: object) -> None:
        stats.acknowledged += 1

    def failed(error: BaseException) -> None:
        stats.failed += 1
        stats.last_error = str(error)[:200]

    pace_start = time.monotonic()
    next_report = pace_start
    try:
        for record in generate(config):
            if should_stop():
                break
            if config.rate:
                ahead = pace_start + stats.sent / config.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
            future = producer.send(topic, key=record.key, value=record.value)
            future.add_callback(acknowledged)
            future.add_errback(failed)
            stats.sent += 1
            stats.by_region[record.region] += 1
            stats.by_kind[record.kind.partition(":")[0]] += 1
            if on_progress is not None and time.monotonic() >= next_report:
                on_progress(stats)
                next_report = time.monotonic() + 0.25
    finally:
        producer.flush(timeout=60)
        producer.close(timeout=10)
    if on_progress is not None:
        on_progress(stats)
    return stats
