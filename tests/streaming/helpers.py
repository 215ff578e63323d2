"""Produce scenarios to the real broker and read the stream's outputs back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from kafka import TopicPartition

from include.events import Alert, WindowStats
from include.kafka_clients import make_consumer, make_producer
from include.settings import Settings
from include.simulator import Record, SimulationConfig, generate

SCENARIO_START = (datetime.now(UTC) - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)


def scenario(**options: object) -> list[Record]:
    defaults: dict[str, object] = {
        "regions": 3,
        "sensors_per_region": 5,
        "start": SCENARIO_START,
        "rate": 0,
        "interval_s": 10,
        "duration_s": 40 * 60,
    }
    defaults.update(options)
    return list(generate(SimulationConfig(**defaults)))  # type: ignore[arg-type]


def produce(settings: Settings, records: list[Record] | list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings)
    for record in records:
        key, value = (record.key, record.value) if isinstance(record, Record) else record
        producer.send(settings.topic_readings, key=key, value=value)
    producer.flush(timeout=60)
    producer.close()


def read_topic(settings: Settings, topic: str, timeout_s: float = 10.0) -> list:
    """Every record of ``topic`` present now (waits until the end offsets are reached)."""
    consumer = make_consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s}s"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def alerts(settings: Settings) -> list[Alert]:
    return [Alert.from_json(r.value) for r in read_topic(settings, settings.topic_alerts)]


def window_stats(settings: Settings) -> list[WindowStats]:
    return [
        WindowStats.from_json(r.value) for r in read_topic(settings, settings.topic_window_stats)
    ]
