"""Stand-ins for kafka-python's clients, for unit tests of the stream's parts.

They record what the code under test asks of them (sends, flushes, commits, pauses) and
answer the few questions it asks back (partition counts, positions, assignments). The
real-broker tests (``test_stream_*.py``, ``test_silence.py``) cover the clients themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import TopicPartition

from include.contract import Reading, serialize_reading
from include.settings import Settings, load_settings

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a minute boundary, well in the past
PARTIALS_PARTITIONS = [0, 1, 2]


def unit_settings(tmp_path: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", metrics_port=0)


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    headers: list[tuple[str, bytes]] | None


class FakeProducer:
    def __init__(self, partitions: int = len(PARTIALS_PARTITIONS), log: list | None = None):
        self.partitions = partitions
        self.sent: list[Sent] = []
        self.log = log if log is not None else []  # sends and flushes, in order
        self.partitions_asked = 0

    def partitions_for(self, topic: str) -> set[int]:
        self.partitions_asked += 1
        return set(range(self.partitions))

    def send(self, topic, key=None, value=None, partition=None, headers=None) -> None:
        self.sent.append(Sent(topic, key, value, partition, headers))
        self.log.append(("send", topic))

    def flush(self, timeout: float | None = None) -> None:
        self.log.append(("flush",))

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


class FakeConsumer:
    def __init__(self, log: list | None = None) -> None:
        self.highwaters: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused_partitions: set[TopicPartition] = set()
        self.log = log if log is not None else []  # commits, in order

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.positions.get(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_partitions)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_partitions.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_partitions.difference_update(tps)

    def commit(self, offsets: dict) -> None:
        self.log.append(("commit", {tp: o.offset for tp, o in offsets.items()}))

    def commit_async(self, offsets: dict) -> None:
        self.log.append(("commit_async", {tp: o.offset for tp, o in offsets.items()}))


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = field(default_factory=lambda: int(T0.timestamp() * 1000))


class Clock:
    """A processing-time clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reading(sensor: str, region: str, seconds: float, temperature: float) -> bytes:
    """A valid reading's bytes, ``seconds`` after :data:`T0`."""
    return serialize_reading(Reading(sensor, region, T0 + timedelta(seconds=seconds), temperature))


def batch(topic: str, partition: int, values: list[bytes | None], first_offset: int = 0):
    """One poll's worth of records of one partition, as ``consumer.poll`` returns it."""
    records = [
        FakeRecord(topic, partition, first_offset + i, value, key=b"k")
        for i, value in enumerate(values)
    ]
    return {TopicPartition(topic, partition): records}


def as_records(sent: list[Sent], next_offsets: dict[int, int]) -> dict:
    """What was sent, as a consumer of its topic would poll it (per partition); the
    offsets continue from ``next_offsets``, which is updated."""
    batches: dict[TopicPartition, list[FakeRecord]] = {}
    for message in sent:
        assert message.partition is not None
        offset = next_offsets.get(message.partition, 0)
        next_offsets[message.partition] = offset + 1
        batches.setdefault(TopicPartition(message.topic, message.partition), []).append(
            FakeRecord(message.topic, message.partition, offset, message.value, message.key)
        )
    return batches


def counter(metric: Any, *labels: str) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()
