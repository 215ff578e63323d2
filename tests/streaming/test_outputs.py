"""The producer side on its own: keyed sends land where Kafka's partitioner would put
them, the DLQ keeps the original record and says why (or takes a stub of it), every
send's outcome is tracked and window stats wait for their region's alerts (a fake
producer records sends and completes them)."""

from __future__ import annotations

import pytest

from include.contract import Rejection
from include.events import Alert, WindowStats
from streaming.metrics import StreamMetrics
from streaming.outputs import DeliveryFailed, Outputs, delivery_options
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


# --- every send's outcome ---------------------------------------------------------------------
def test_a_send_the_client_refuses_stops_at_once_naming_the_topic(outputs) -> None:
    out, _, _ = outputs
    with pytest.raises(DeliveryFailed, match=r"'temperature-alerts'.*ValueError"):
        out.send("temperature-alerts", key=None, value=None)
    assert out.deliveries.error() is not None  # recorded: the checkpoint refuses too


def test_failures_are_counted_and_the_first_of_each_topic_kept(outputs) -> None:
    from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

    out, producer, _ = outputs
    producer.failing["a"] = KafkaTimeoutError("Expiring 3 record(s) for a-0")
    for _ in range(3):
        out.send("a", value=b"x")
    producer.failing["a"] = NotLeaderForPartitionError("later")
    out.send("a", value=b"x")
    out.send("b", value=b"x")
    deliveries = out.deliveries
    assert (deliveries.sent, deliveries.acknowledged, deliveries.failed) == (5, 1, 4)
    assert deliveries.in_flight == 0
    assert "KafkaTimeoutError: Expiring 3 record(s)" in str(deliveries.error())


def test_delivery_options_shorten_the_request_timeout_with_the_delivery_timeout(tmp_path) -> None:
    settings = unit_settings(tmp_path).model_copy(update={"producer_delivery_timeout_ms": 6000})
    assert delivery_options(settings, linger_ms=5) == {
        "delivery_timeout_ms": 6000,
        "request_timeout_ms": 5995,
    }
    default = delivery_options(unit_settings(tmp_path), linger_ms=5)
    assert default == {"delivery_timeout_ms": 120_000, "request_timeout_ms": 30_000}


# --- window stats wait for their region's alerts -----------------------------------------------
def test_a_regions_window_stats_wait_for_its_alerts_acknowledgement(tmp_path) -> None:
    producer, metrics = FakeProducer(partitions=3, acknowledge="on_flush"), StreamMetrics()
    out = Outputs(unit_settings(tmp_path), producer, metrics)
    stats_topic = out.settings.topic_window_stats
    out.alert(an_alert("lyon"))
    out.window(a_window("lyon", 0), "2024-01-01T00:02:00.000Z")
    out.window(a_window("oslo", 0), "2024-01-01T00:02:00.000Z")  # no alert: at once
    out.window(a_window("lyon", 1), "2024-01-01T00:03:00.000Z")
    assert [s.key for s in producer.to(stats_topic)] == [b"oslo"]
    assert out.release_windows() == 0  # not acknowledged yet
    producer.flush()
    assert out.release_windows() == 2
    assert [WindowStats.from_json(s.value).window_start for s in producer.to(stats_topic)] == [
        "2024-01-01T00:00:00.000Z",
        "2024-01-01T00:00:00.000Z",
        "2024-01-01T00:01:00.000Z",
    ]
    out.window(a_window("lyon", 2), "2024-01-01T00:04:00.000Z")  # nothing pending now
    assert len(producer.to(stats_topic)) == 4
    assert counter(metrics.windows, "watermark") == 4


def test_a_failed_alert_keeps_its_regions_window_stats_off_the_topic(tmp_path) -> None:
    from kafka.errors import MessageSizeTooLargeError

    producer = FakeProducer(partitions=3, acknowledge="on_flush")
    out = Outputs(unit_settings(tmp_path), producer, StreamMetrics())
    producer.failing[out.settings.topic_alerts] = MessageSizeTooLargeError("too large")
    out.alert(an_alert("lyon"))
    out.window(a_window("lyon", 0), "2024-01-01T00:02:00.000Z")
    producer.flush()
    assert out.release_windows() == 0 and out.held_windows() == 1
    assert producer.to(out.settings.topic_window_stats) == []


# --- the DLQ takes everything, as a stub if it must ------------------------------------------
def test_a_record_with_neither_key_nor_value_goes_to_the_dlq_as_an_empty_stub(outputs) -> None:
    out, producer, metrics = outputs
    record = FakeRecord("temperature-data", 2, 41, None, key=None)
    out.dlq(record, Rejection("not_json", "record has no value (tombstone)"))
    (sent,) = producer.sent
    assert (sent.topic, sent.key, sent.value) == (out.settings.topic_dlq, None, b"")
    headers = dict(sent.headers)
    assert headers["reason"] == b"not_json"
    assert headers["stub"] == b"null key and value"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        b"temperature-data",
        b"2",
        b"41",
    )
    assert counter(metrics.invalid, "not_json") == 1
    assert out.deliveries.error() is None


def test_a_record_too_large_for_the_dlq_goes_truncated_with_its_sizes(tmp_path) -> None:
    producer = FakeProducer(max_request_size=64 * 1024)
    out = Outputs(unit_settings(tmp_path), producer, StreamMetrics())
    value = bytes(range(256)) * 256  # 64 KiB: with the headers, over the producer's limit
    out.dlq(FakeRecord("temperature-data", 1, 7, value, key=b"k"), Rejection("oversized", "big"))
    (sent,) = producer.sent
    headers = dict(sent.headers)
    assert sent.key == b"k" and value.startswith(sent.value)
    assert len(sent.value) == out.dlq_budget - 1 < len(value)
    assert headers["stub"] == b"truncated" and headers["truncated"] == b"value"
    assert (headers["original_value_bytes"], headers["original_key_bytes"]) == (b"65536", b"1")
    assert (headers["reason"], headers["source_offset"]) == (b"oversized", b"7")


def test_a_key_too_large_for_the_dlq_is_cut_too(tmp_path) -> None:
    producer = FakeProducer(max_request_size=64 * 1024)
    out = Outputs(unit_settings(tmp_path), producer, StreamMetrics())
    out.dlq(FakeRecord("t", 0, 1, b"v", key=b"k" * 70_000), Rejection("not_json", "x"))
    (sent,) = producer.sent
    assert sent.key == b"k" * 1024 and sent.value == b"v"
    assert dict(sent.headers)["truncated"] == b"key"


def test_the_dlq_budget_follows_the_smaller_of_the_producer_and_topic_limits(tmp_path) -> None:
    producer = FakeProducer(max_request_size=1024 * 1024)
    settings = unit_settings(tmp_path)
    assert Outputs(settings, producer, StreamMetrics()).dlq_budget == 1024 * 1024 - 2048
    small = Outputs(settings, producer, StreamMetrics(), dlq_max_message_bytes=10_000)
    assert small.dlq_budget == 10_000 - 2048


def test_a_dlq_record_the_client_refuses_anyway_goes_as_a_stub_of_nothing(outputs) -> None:
    out, producer, _ = outputs
    real_send = producer.send

    def refuse_big(topic, key=None, value=None, partition=None, headers=None):
        if value:
            raise TypeError("Unsupported type for serialized value")
        return real_send(topic, key=key, value=value, partition=partition, headers=headers)

    producer.send = refuse_big
    out.dlq(FakeRecord("t", 3, 9, b"{", key=b"k"), Rejection("not_json", "x"))
    (sent,) = producer.sent
    assert (sent.key, sent.value) == (None, b"")
    headers = dict(sent.headers)
    assert headers["stub"].startswith(b"refused: TypeError")
    assert (headers["reason"], headers["source_partition"]) == (b"not_json", b"3")


def a_window(region: str, minute: int) -> ClosedWindow:
    start = int(T0.timestamp() * 1000) + minute * 60_000
    return ClosedWindow(
        region, start, start + 60_000, 1, 20.0, 20.0, 20.0, frozenset({"s1"}), 0, 0, "watermark"
    )


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
