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


class FakeFuture:
    """What ``send`` returns: completed by the fake producer, callbacks like kafka-python's."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.is_done = False
        self.exception: BaseException | None = None
        self._callbacks: list = []
        self._errbacks: list = []

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def add_callback(self, f) -> FakeFuture:
        if not self.is_done:
            self._callbacks.append(f)
        elif self.exception is None:
            f(None)
        return self

    def add_errback(self, f) -> FakeFuture:
        if not self.is_done:
            self._errbacks.append(f)
        elif self.exception is not None:
            f(self.exception)
        return self

    def complete(self, exception: BaseException | None = None) -> None:
        self.is_done, self.exception = True, exception
        for f in self._errbacks if exception is not None else self._callbacks:
            f(exception)


class FakeProducer:
    """Records sends; like kafka-python, refuses a record with neither key nor value or
    over ``max_request_size``. Sends succeed at once, unless ``acknowledge`` is
    ``"on_flush"`` (a flush completes them) or ``"never"``; sends to a topic of
    ``failing`` fail with its error."""

    def __init__(
        self,
        partitions: int = len(PARTIALS_PARTITIONS),
        log: list | None = None,
        *,
        acknowledge: str = "at_once",
        max_request_size: int = 1024 * 1024,
    ):
        self.partitions = partitions
        self.sent: list[Sent] = []
        self.log = log if log is not None else []  # sends and flushes, in order
        self.partitions_asked = 0
        self.acknowledge = acknowledge
        self.failing: dict[str, BaseException] = {}
        self.in_flight: list[FakeFuture] = []
        self.config = {"max_request_size": max_request_size}

    def partitions_for(self, topic: str) -> set[int]:
        self.partitions_asked += 1
        return set(range(self.partitions))

    def send(self, topic, key=None, value=None, partition=None, headers=None) -> FakeFuture:
        from kafka.errors import MessageSizeTooLargeError

        if key is None and value is None:
            raise ValueError("Need at least one: key or value")
        size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers or [])
        if size > self.config["max_request_size"]:
            raise MessageSizeTooLargeError(f"The message is {size} bytes when serialized")
        self.sent.append(Sent(topic, key, value, partition, headers))
        self.log.append(("send", topic))
        future = FakeFuture(topic)
        if self.acknowledge == "at_once":
            future.complete(self.failing.get(topic))
        else:
            self.in_flight.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.log.append(("flush",))
        if self.acknowledge == "on_flush":
            futures, self.in_flight = self.in_flight, []
            for future in futures:
                future.complete(self.failing.get(future.topic))

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


class FakeConsumer:
    def __init__(self, log: list | None = None) -> None:
        self.highwaters: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused_partitions: set[TopicPartition] = set()
        self.log = log if log is not None else []  # commits, in order
        self.commit_error: BaseException | None = None
        self.end_offsets_error: BaseException | None = None  # a leader that does not answer
        self.end_offsets_asked: list[list[TopicPartition]] = []
        self.leader_ends: dict[TopicPartition, int] = {}  # ends the consumer has not fetched
        self.config = {"group_id": "fake-group"}
        self.commits: dict[TopicPartition, Any] = {}  # the last OffsetAndMetadata of each

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.positions.get(tp)

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict:
        """What the leaders report (``leader_ends``, else the highwater), unless
        ``end_offsets_error`` is set."""
        self.end_offsets_asked.append(list(tps))
        if self.end_offsets_error is not None:
            raise self.end_offsets_error
        ends = {**self.highwaters, **self.leader_ends}
        return {tp: ends[tp] for tp in tps if tp in ends}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_partitions)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_partitions.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_partitions.difference_update(tps)

    def commit(self, offsets: dict) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.log.append(("commit", {tp: o.offset for tp, o in offsets.items()}))
        self.commits.update(offsets)

    def commit_async(self, offsets: dict) -> None:
        self.log.append(("commit_async", {tp: o.offset for tp, o in offsets.items()}))
        self.commits.update(offsets)

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        """The last commit of ``tp`` (an OffsetAndMetadata with ``metadata``), or None."""
        last = self.commits.get(tp)
        return last if metadata or last is None else last.offset


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
