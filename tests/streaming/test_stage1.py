"""Stage 1 on its own: a poll of readings → partials, heartbeats, DLQ records and the
offsets it leaves to commit (a fake producer records what it sends; no broker)."""

from __future__ import annotations

import time

import orjson
import pytest
from kafka import TopicPartition

from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.rules import load_rules
from streaming.silence import partition_of
from streaming.stage1 import (
    ALIGN_WINDOWS,
    CONFIRM_IDLE_EVERY_S,
    CONFIRM_RETRY_S,
    HEARTBEAT_EVERY_S,
    ReadingsStage,
)
from tests.streaming.fakes import (
    PARTIALS_PARTITIONS,
    T0,
    Clock,
    FakeConsumer,
    FakeProducer,
    batch,
    counter,
    reading,
    unit_settings,
)

pytestmark = pytest.mark.unit

RULES = load_rules()  # 60 s windows, 30 s allowed lateness
T0_MS = int(T0.timestamp() * 1000)


@pytest.fixture
def parts(tmp_path):
    settings = unit_settings(tmp_path)
    producer, consumer, metrics = FakeProducer(), FakeConsumer(), StreamMetrics()
    clock = Clock(time.monotonic())  # a new partition counts as heard now (monotonic)
    stage = ReadingsStage(
        settings, RULES, metrics, consumer, Outputs(settings, producer, metrics), clock
    )
    stage.partials_partitions = PARTIALS_PARTITIONS
    stage.assigned([0])
    return stage, producer, consumer, clock, metrics


def first_poll(topic: str) -> dict:
    return batch(
        topic,
        0,
        [
            reading("s1", "lyon", 10, 20.0),
            reading("s2", "lyon", 20, 22.0),
            reading("s3", "oslo", 30, -5.0),
            b"not json",
            orjson.dumps(  # readable, but out of range: counted against lyon's window
                {
                    "schema_version": 1,
                    "sensor_id": "s1",
                    "region": "lyon",
                    "ts": "2024-01-01T00:00:40.000Z",
                    "temperature_c": 999.0,
                }
            ),
            reading("s1", "lyon", 95, 21.0),  # watermark 65 s: the first minute closes
        ],
    )


def test_a_poll_becomes_partials_per_region_a_heartbeat_and_dlq_records(parts) -> None:
    stage, producer, _, _, metrics = parts
    settings = stage.settings
    produced = stage.process(first_poll(settings.topic_readings))

    dlq = producer.to(settings.topic_dlq)
    assert [dict(s.headers)["reason"] for s in dlq] == [b"not_json", b"out_of_range"]
    assert [dict(s.headers)["source_offset"] for s in dlq] == [b"3", b"4"]
    assert all(s.key == b"k" for s in dlq)  # the original key and bytes
    assert dlq[0].value == b"not json"

    partials = producer.to(settings.topic_window_partials)
    keyed, heartbeats = partials[:2], partials[2:]
    bodies = {s.key.decode(): orjson.loads(s.value) for s in keyed}
    assert set(bodies) == {"lyon", "oslo"}
    for region, body in bodies.items():  # keyed by region, where the partitioner puts it
        sent = next(s for s in keyed if s.key == region.encode())
        assert sent.partition == partition_of(region, len(PARTIALS_PARTITIONS))
        assert body["type"] == "partials"
    (lyon,) = bodies["lyon"]["items"]
    assert (lyon["start_ms"], lyon["count"], lyon["total"], lyon["invalid"]) == (T0_MS, 2, 42.0, 1)
    assert lyon["sensors"] == ["s1", "s2"]
    assert bodies["oslo"]["items"][0]["count"] == 1

    assert sorted(s.partition for s in heartbeats) == PARTIALS_PARTITIONS
    beat = orjson.loads(heartbeats[0].value)
    assert beat["type"] == "watermark" and beat["source"] == 0
    assert beat["watermark_ms"] == T0_MS + 95_000 - 30_000
    assert beat["regions"] == ["lyon", "oslo"]

    assert produced == len(dlq) + len(partials) == 7
    assert counter(metrics.records, "valid") == 4
    assert counter(metrics.records, "invalid") == 2
    assert counter(metrics.invalid, "not_json") == 1


def test_offsets_left_to_commit_stop_at_the_first_reading_of_an_open_window(parts) -> None:
    stage, *_ = parts
    stage.process(first_poll(stage.settings.topic_readings))
    assert stage.pending == {0: 6}
    assert stage.safe_offsets() == {0: 5}  # offset 5 opened the second minute
    assert stage.open_windows() == 1


def test_a_late_reading_is_counted_against_its_closed_window(parts) -> None:
    stage, producer, _, _, metrics = parts
    topic = stage.settings.topic_readings
    stage.process(first_poll(topic))
    producer.sent.clear()
    stage.process(batch(topic, 0, [reading("s2", "lyon", 5, 19.0)], first_offset=6))

    assert counter(metrics.records, "late") == 1
    keyed = [s for s in producer.to(stage.settings.topic_window_partials) if s.key]
    (late,) = orjson.loads(keyed[0].value)["items"]
    assert (late["region"], late["count"], late["late"]) == ("lyon", 0, 1)


def test_records_of_a_partition_not_assigned_are_ignored(parts) -> None:
    stage, producer, *_ = parts
    assert stage.process(batch(stage.settings.topic_readings, 5, [b"not json"])) == 0
    assert producer.sent == [] and stage.pending == {}


def test_heartbeats_go_out_every_half_second_and_idleness_closes_windows(parts) -> None:
    stage, producer, consumer, clock, _ = parts
    topic = stage.settings.topic_readings
    stage.process(first_poll(topic))
    tp = TopicPartition(topic, 0)
    consumer.highwaters[tp] = consumer.positions[tp] = 6  # caught up with the end
    producer.sent.clear()

    assert stage.heartbeats() == len(PARTIALS_PARTITIONS)
    beat = orjson.loads(producer.sent[0].value)
    assert beat["caught_up"] and not beat["idle"]
    clock.now += HEARTBEAT_EVERY_S / 2
    assert stage.heartbeats() == 0  # too soon
    assert stage.heartbeats(force=True) == len(PARTIALS_PARTITIONS)

    producer.sent.clear()
    clock.now += stage.settings.idle_timeout_s + 60  # idle: event time follows the wall
    stage.heartbeats()
    keyed = [s for s in producer.sent if s.key]
    assert [s.key for s in keyed] == [b"lyon"]  # the second minute, closed by idleness
    beat = orjson.loads(producer.sent[-1].value)
    assert beat["idle"] and beat["regions"] == []  # regions are cleared per heartbeat
    assert stage.open_windows() == 0


def test_a_quiet_partition_whose_leader_does_not_answer_holds_its_windows_open(parts) -> None:
    """A frozen leader sends no fetch response: the partition looks caught up with the end
    it last heard of, and quiet. Its windows wait until the leader confirms the end."""
    stage, producer, consumer, clock, _ = parts
    topic = stage.settings.topic_readings
    stage.process(first_poll(topic))
    tp = TopicPartition(topic, 0)
    consumer.highwaters[tp] = consumer.positions[tp] = 6
    consumer.end_offsets_error = TimeoutError("leader frozen")
    producer.sent.clear()

    clock.now += stage.settings.idle_timeout_s + 60
    stage.heartbeats()
    assert [s.key for s in producer.sent if s.key] == []  # nothing closed on the wall clock
    assert not orjson.loads(producer.sent[-1].value)["idle"]
    still_open = stage.open_windows()
    assert still_open > 0
    asked = len(consumer.end_offsets_asked)
    clock.now += HEARTBEAT_EVERY_S
    stage.heartbeats()
    assert len(consumer.end_offsets_asked) == asked  # not asked again at once: each try blocks

    consumer.end_offsets_error = None  # a new leader answers: more was written meanwhile
    consumer.leader_ends[tp] = 9
    clock.now += CONFIRM_RETRY_S
    stage.heartbeats()
    assert stage.open_windows() == still_open and not orjson.loads(producer.sent[-1].value)["idle"]

    consumer.highwaters[tp] = consumer.positions[tp] = 9  # read up to it: now it is idle
    clock.now += CONFIRM_IDLE_EVERY_S
    stage.heartbeats()
    assert orjson.loads(producer.sent[-1].value)["idle"]
    assert stage.open_windows() == 0


def test_when_draining_a_partition_that_never_had_a_reading_is_idle_at_once(parts) -> None:
    stage, producer, consumer, *_ = parts
    tp = TopicPartition(stage.settings.topic_readings, 0)
    consumer.highwaters[tp] = consumer.positions[tp] = 0
    stage.heartbeats(force=True)
    assert not orjson.loads(producer.sent[-1].value)["idle"]
    stage.draining = True
    stage.heartbeats(force=True)
    assert orjson.loads(producer.sent[-1].value)["idle"]


def test_a_partition_far_ahead_on_a_backlog_is_paused_then_resumed(parts) -> None:
    stage, _, consumer, _, metrics = parts
    topic = stage.settings.topic_readings
    stage.assigned([1])
    ahead = RULES.window_ms * ALIGN_WINDOWS // 1000 + 600
    stage.process(batch(topic, 0, [reading("s1", "lyon", 60, 20.0)]))
    stage.process(batch(topic, 1, [reading("s2", "lyon", ahead, 20.0)]))

    stage.align({})
    assert consumer.paused_partitions == {TopicPartition(topic, 1)}
    assert counter(metrics.pauses) == 1
    assert metrics.paused._value.get() == 1

    stage.process(batch(topic, 0, [reading("s1", "lyon", ahead, 20.0)], first_offset=1))
    stage.align({})
    assert consumer.paused_partitions == set()
    assert metrics.paused._value.get() == 0


def test_another_instances_slow_partition_holds_ours_back(parts) -> None:
    stage, _, consumer, *_ = parts
    topic = stage.settings.topic_readings
    stage.process(batch(topic, 0, [reading("s1", "lyon", 3600, 20.0)]))
    stage.align({7: T0_MS})  # partition 7, read elsewhere, is an hour behind
    assert consumer.paused_partitions == {TopicPartition(topic, 0)}


def test_revocation_drops_the_partitions_state(parts) -> None:
    stage, *_ = parts
    stage.assigned([1, 2])
    stage.revoked([0, 2])
    assert list(stage.partitions) == [1]


def test_a_bad_record_claiming_a_far_future_window_does_not_hold_the_commit(parts) -> None:
    """Found by the pipeline fuzz: a future_timestamp record in the year 9999 opened a
    window no valid reading would ever close, and the partition's committed offset
    stopped there for good."""
    stage, producer, _, _, metrics = parts
    topic = stage.settings.topic_readings
    far_future = orjson.dumps(
        {
            "schema_version": 1,
            "sensor_id": "s1",
            "region": "lyon",
            "ts": "9999-01-01T00:00:00Z",
            "temperature_c": 10.0,
        }
    )
    stage.process(batch(topic, 0, [reading("s1", "lyon", 10, 20.0), far_future]))
    stage.process(batch(topic, 0, [reading("s1", "lyon", 200, 21.0)], first_offset=2))

    assert counter(metrics.invalid, "future_timestamp") == 1
    assert stage.safe_offsets() == {0: 2}  # only the open window of the last reading holds it
    counted = [
        item
        for s in producer.to(stage.settings.topic_window_partials)
        if s.key
        for item in orjson.loads(s.value)["items"]
    ]
    assert sum(item["invalid"] for item in counted) == 1  # counted in a window that closed
