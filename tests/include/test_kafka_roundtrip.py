"""Readings round-trip through the real broker; topics are provisioned idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from include.contract import Reading, parse_reading, reading_key, serialize_reading
from include.kafka_clients import make_producer
from include.settings import Settings
from include.topics import ensure_topics
from tests.fixtures.kafka import consume_all

pytestmark = pytest.mark.kafka


def test_valid_readings_round_trip_unchanged(kafka_settings: Settings) -> None:
    readings = [
        Reading(
            f"lyon-{i:03d}",
            "lyon",
            datetime(2026, 11, 24, 10, i, tzinfo=UTC),
            10.0 + i / 10,
            55.5,
            None,
        )
        for i in range(30)
    ]
    producer = make_producer(kafka_settings)
    for reading in readings:
        producer.send(
            kafka_settings.topic_readings,
            key=reading_key(reading),
            value=serialize_reading(reading),
        )
    producer.flush(timeout=30)
    producer.close()

    records = consume_all(kafka_settings, kafka_settings.topic_readings, len(readings))
    received = sorted((parse_reading(r.value) for r in records), key=lambda r: r.sensor_id)
    assert received == readings
    assert all(r.key == parse_reading(r.value).sensor_id.encode() for r in records)


def test_topic_creation_is_idempotent_and_reports_mismatch(kafka_settings: Settings) -> None:
    # kafka_settings already created the topics: a second run changes nothing
    second = ensure_topics(kafka_settings)
    assert {r.state for r in second} == {"exists"}
    assert {r.name for r in second} == {
        kafka_settings.topic_readings,
        kafka_settings.topic_alerts,
        kafka_settings.topic_window_stats,
        kafka_settings.topic_dlq,
        kafka_settings.topic_window_partials,
        kafka_settings.topic_notify_deliveries,
        kafka_settings.topic_silences,
        kafka_settings.topic_notify_dlq,
    }
    wants_more = kafka_settings.model_copy(update={"readings_partitions": 12})
    third = {r.name: r for r in ensure_topics(wants_more)}
    assert third[kafka_settings.topic_readings].state == "mismatch"
    assert "has 6 partitions, 12 asked" in third[kafka_settings.topic_readings].detail
