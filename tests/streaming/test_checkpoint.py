"""The commit protocol on its own: the producer is flushed before any offset is
committed, offsets stop at open windows, listeners commit asynchronously, and a failed
send stops every commit (fake clients record the order of calls and complete the sends;
the real-broker rebalances and failures are ``test_stream_delivery.py``)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from include.events import Alert
from streaming.checkpoint import Checkpoint, CommitFailed, Input, StageListener
from streaming.metrics import StreamMetrics
from streaming.outputs import DeliveryFailed, Outputs
from streaming.rules import load_rules
from streaming.stage1 import ReadingsStage
from streaming.windowing import ClosedWindow
from tests.streaming.fakes import (
    PARTIALS_PARTITIONS,
    T0,
    Clock,
    FakeConsumer,
    FakeProducer,
    batch,
    reading,
    unit_settings,
)

pytestmark = pytest.mark.unit


class Stage:
    """A stage that holds back nothing (or what ``held`` says); it logs the listener's
    calls in the same log as the clients' flushes and commits."""

    def __init__(self, log: list) -> None:
        self.pending: dict[int, int] = {}
        self.held: dict[int, int] = {}
        self.log = log

    def safe_offsets(self) -> dict[int, int]:
        return {p: self.held.get(p, o) for p, o in self.pending.items()}

    def commit_metadata(self, partition: int) -> str:
        return ""

    def assigned(self, partitions: Iterable[int]) -> None:
        self.log.append(("assigned", list(partitions)))

    def revoked(self, partitions: Iterable[int]) -> None:
        self.log.append(("revoked", list(partitions)))


@pytest.fixture
def protocol():
    log: list = []
    producer = FakeProducer(log=log)
    stages = Stage(log), Stage(log)
    consumers = FakeConsumer(log=log), FakeConsumer(log=log)
    checkpoint = Checkpoint(
        producer,
        [Input(consumers[0], "readings", stages[0]), Input(consumers[1], "partials", stages[1])],
    )
    return checkpoint, stages, log


def test_the_producer_is_flushed_before_any_commit(protocol) -> None:
    checkpoint, (first, second), log = protocol
    first.pending = {0: 10, 3: 7}
    second.pending = {1: 4}
    second.held = {1: 2}
    checkpoint.flush_and_commit()
    assert log == [
        ("flush",),
        ("commit", {TopicPartition("readings", 0): 10, TopicPartition("readings", 3): 7}),
        ("commit", {TopicPartition("partials", 1): 2}),
    ]
    assert first.pending == {} and second.pending == {}


def test_nothing_pending_flushes_and_commits_nothing(protocol) -> None:
    checkpoint, _, log = protocol
    checkpoint.flush_and_commit()
    assert log == [("flush",)]


def test_from_a_listener_the_commits_do_not_wait(protocol) -> None:
    checkpoint, (first, _), log = protocol
    first.pending = {0: 10}
    checkpoint.flush_and_commit(blocking=False)
    assert log == [("flush",), ("commit_async", {TopicPartition("readings", 0): 10})]


def test_a_revocation_commits_what_is_safe_before_the_stage_drops_its_partitions(
    protocol,
) -> None:
    checkpoint, (stage, _), log = protocol
    listener = StageListener(checkpoint, stage)
    assert listener.rejoining  # until the first assignment
    listener.on_partitions_assigned([TopicPartition("readings", 2), TopicPartition("readings", 0)])
    assert log == [("assigned", [2, 0])] and not listener.rejoining

    log.clear()
    stage.pending = {2: 5}
    listener.on_partitions_revoked([TopicPartition("readings", 2)])
    assert listener.rejoining
    assert log == [
        ("flush",),
        ("commit_async", {TopicPartition("readings", 2): 5}),
        ("revoked", [2]),
    ]


def test_a_stage_one_commit_never_passes_an_open_window(tmp_path) -> None:
    settings = unit_settings(tmp_path)
    log: list = []
    producer, consumer, metrics = FakeProducer(log=log), FakeConsumer(log=log), StreamMetrics()
    stage = ReadingsStage(
        settings, load_rules(), metrics, consumer, Outputs(settings, producer, metrics), Clock()
    )
    stage.partials_partitions = PARTIALS_PARTITIONS
    stage.assigned([0])
    stage.process(
        batch(
            settings.topic_readings,
            0,
            [
                reading("s1", "lyon", 10, 20.0),
                reading("s1", "lyon", 70, 20.0),  # offset 1 opens the second minute
                reading("s1", "lyon", 95, 20.0),  # and closes the first
            ],
        )
    )
    log.clear()
    Checkpoint(producer, [Input(consumer, settings.topic_readings, stage)]).flush_and_commit()
    assert log == [("flush",), ("commit", {TopicPartition(settings.topic_readings, 0): 1})]


# --- a failed send is never committed past ----------------------------------------------------
def tracked(checkpoint: Checkpoint, producer: FakeProducer, settings_path) -> Outputs:
    """Outputs whose sends the checkpoint tracks (as the processor wires them)."""
    outputs = Outputs(unit_settings(settings_path), producer, StreamMetrics())
    checkpoint.deliveries = outputs.deliveries
    checkpoint.release = outputs.release_windows
    return outputs


def test_a_send_that_failed_after_the_flush_stops_the_commit(protocol, tmp_path) -> None:
    from kafka.errors import MessageSizeTooLargeError

    checkpoint, (first, second), log = protocol
    producer = checkpoint.producer
    producer.acknowledge = "on_flush"  # like kafka-python: the outcome comes later
    outputs = tracked(checkpoint, producer, tmp_path)
    producer.failing["temperature-alerts"] = MessageSizeTooLargeError(
        "The request included a big one"
    )
    first.pending, second.pending = {0: 10}, {1: 4}
    outputs.send("temperature-alerts", key=b"lyon", value=b"{}")
    outputs.send("temperature-window-stats", key=b"lyon", value=b"{}")

    with pytest.raises(DeliveryFailed) as failed:
        checkpoint.flush_and_commit()
    message = str(failed.value)
    assert "\n" not in message
    assert "'temperature-alerts'" in message and "MessageSizeTooLargeError" in message
    assert "'temperature-window-stats'" not in message  # that one was acknowledged
    assert [entry for entry in log if entry[0].startswith("commit")] == []
    assert first.pending == {0: 10} and second.pending == {1: 4}  # still to do

    # and for good: a later checkpoint (nothing new failed) still commits nothing
    log.clear()
    with pytest.raises(DeliveryFailed):
        checkpoint.flush_and_commit()
    assert [entry for entry in log if entry[0].startswith("commit")] == []


def test_a_send_neither_acknowledged_nor_failed_in_time_stops_the_commit(
    protocol, tmp_path
) -> None:
    checkpoint, (first, _), log = protocol
    checkpoint.producer.acknowledge = "never"
    checkpoint.flush_timeout_s = 0.05
    outputs = tracked(checkpoint, checkpoint.producer, tmp_path)
    first.pending = {0: 10}
    outputs.send("temperature-alerts", key=b"lyon", value=b"{}")
    with pytest.raises(DeliveryFailed, match="1 record"):
        checkpoint.flush_and_commit()
    assert [entry for entry in log if entry[0].startswith("commit")] == []


def test_a_revocation_after_a_failed_send_commits_nothing_and_does_not_raise(
    protocol, tmp_path
) -> None:
    checkpoint, (stage, _), log = protocol
    checkpoint.producer.failing["temperature-alerts"] = KafkaTimeoutError("Expiring 1 record(s)")
    outputs = tracked(checkpoint, checkpoint.producer, tmp_path)
    outputs.send("temperature-alerts", key=b"lyon", value=b"{}")
    listener = StageListener(checkpoint, stage)
    listener.on_partitions_assigned([TopicPartition("readings", 2)])
    stage.pending = {2: 5}
    log.clear()
    listener.on_partitions_revoked([TopicPartition("readings", 2)])  # must not raise
    assert ("revoked", [2]) in log
    assert [entry for entry in log if entry[0].startswith("commit")] == []


def test_a_refused_commit_is_retried_by_the_next_checkpoint_then_stops_in_one_line(
    protocol,
) -> None:
    checkpoint, (first, second), log = protocol
    consumer = checkpoint.inputs[0].consumer
    consumer.commit_error = KafkaConnectionError("111 ECONNREFUSED")
    first.pending, second.pending = {0: 10}, {1: 4}
    checkpoint.flush_and_commit()  # a broker restarting: not this time
    assert first.pending == {0: 10} and second.pending == {}
    consumer.commit_error = None
    checkpoint.flush_and_commit()
    assert ("commit", {TopicPartition("readings", 0): 10}) in log

    consumer.commit_error = KafkaTimeoutError("Timeout after 30000 ms")
    first.pending = {0: 12}
    checkpoint.commit_timeout_s = 0  # failing for longer than that: stop
    with pytest.raises(CommitFailed) as failed:
        checkpoint.flush_and_commit()
    assert "\n" not in str(failed.value) and "'readings'" in str(failed.value)
    assert "fake-group" in str(failed.value) and "KafkaTimeoutError" in str(failed.value)
    assert first.pending == {0: 12}


def test_window_stats_held_for_an_alert_are_flushed_before_the_commit(protocol, tmp_path) -> None:
    checkpoint, (first, _), log = protocol
    producer = checkpoint.producer
    producer.acknowledge = "on_flush"
    outputs = tracked(checkpoint, producer, tmp_path)
    settings = outputs.settings
    outputs.alert(an_alert("lyon"))
    outputs.window(closed_window("lyon"), "2024-01-01T00:02:00.000Z")
    assert producer.to(settings.topic_window_stats) == []  # waits for the alert
    first.pending = {0: 10}
    log.clear()
    checkpoint.flush_and_commit()
    assert len(producer.to(settings.topic_window_stats)) == 1
    assert log == [
        ("flush",),
        ("send", settings.topic_window_stats),
        ("flush",),
        ("commit", {TopicPartition("readings", 0): 10}),
    ]


def an_alert(region: str) -> Alert:
    return Alert(
        alert_id=f"heat-{region}",
        rule="heat",
        severity="warning",
        region=region,
        window_start="2024-01-01T00:00:00.000Z",
        window_end="2024-01-01T00:01:00.000Z",
        value=35.0,
        threshold=30.0,
        status="firing",
        message="hot",
        emitted_at="2024-01-01T00:02:00.000Z",
    )


def closed_window(region: str) -> ClosedWindow:
    start = int(T0.timestamp() * 1000)
    return ClosedWindow(
        region, start, start + 60_000, 1, 20.0, 20.0, 20.0, frozenset({"s1"}), 0, 0, "watermark"
    )
