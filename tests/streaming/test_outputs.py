"""The producer side on its own: keyed sends land where Kafka's partitioner would put
them, the DLQ keeps the original record and says why (a fake producer records sends)."""

from __future__ import annotations

import pytest

from include.contract import Rejection
from include.events import WindowStats
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.silence import partition_of
from streaming.windowing import ClosedWindow
from tests.streaming.fakes import T0, FakeProducer, FakeRecord, counter, unit_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def outputs(tmp_path):
    producer, metrics = FakeProducer(partitions=6), StreamMetrics()
    return Outputs(unit_settings(tmp_path), producer, metrics), producer, metrics


def test_keyed_sends_go_to_the_default_partitioners_choice_asked_once(outputs) -> None:
    out, producer, _ = outputs
    for _ in range(3):
        out.send_keyed("t", "lyon", b"v")
    out.send_keyed("t", "oslo", b"v")
    assert [s.partition for s in producer.sent] == [partition_of("lyon", 6)] * 3 + [
        partition_of("oslo", 6)
    ]
    assert producer.sent[0].key == b"lyon"
    assert producer.partitions_asked == 2  # once per key, not per send


def test_a_dlq_record_keeps_its_key_and_bytes_and_says_why(outputs) -> None:
    out, producer, metrics = outputs
    record = FakeRecord("temperature-data", 4, 17, b"\xff{", key=b"sensor-9")
    out.dlq(record, Rejection("not_utf8", "x" * 600))
    (sent,) = producer.sent
    assert (sent.topic, sent.key, sent.value) == (out.settings.topic_dlq, b"sensor-9", b"\xff{")
    headers = dict(sent.headers)
    assert headers["reason"] == b"not_utf8"
    assert len(headers["detail"]) == 500
    assert (headers["source_partition"], headers["source_offset"]) == (b"4", b"17")
    assert counter(metrics.invalid, "not_utf8") == 1
    assert counter(metrics.records, "invalid") == 1


def test_a_window_is_published_keyed_by_region_with_its_sensors(outputs) -> None:
    out, producer, metrics = outputs
    start = int(T0.timestamp() * 1000)
    empty = ClosedWindow(
        "lyon", start, start + 60_000, 0, None, None, None, frozenset(), 2, 0, "idle"
    )
    assert out.window(empty, "2024-01-01T00:02:00.000Z") == 1
    (sent,) = producer.sent
    stats = WindowStats.from_json(sent.value)
    assert (sent.topic, sent.key) == (out.settings.topic_window_stats, b"lyon")
    assert stats.count == 0 and stats.late == 2 and stats.closed_by == "idle"
    assert stats.window_end == "2024-01-01T00:01:00.000Z"
    assert counter(metrics.windows, "idle") == 1


def test_a_heartbeat_goes_to_every_partition_given(outputs) -> None:
    out, producer, _ = outputs
    assert out.heartbeat(b"beat", [0, 1, 2]) == 3
    assert [(s.partition, s.key) for s in producer.sent] == [(0, None), (1, None), (2, None)]
