"""The commit protocol on its own: the producer is flushed before any offset is
committed, offsets stop at open windows, listeners commit asynchronously (fake clients
record the order of calls; the real-broker rebalances are ``test_stream_delivery.py``)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from kafka import TopicPartition

from streaming.checkpoint import Checkpoint, Input, StageListener
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.rules import load_rules
from streaming.stage1 import ReadingsStage
from tests.streaming.fakes import (
    PARTIALS_PARTITIONS,
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
