"""Sends that fail for real (real broker): the stream stops with one line, commits nothing
past the failure, and a restart after the fix publishes every alert; poison pills reach
the DLQ as stubs and the stream goes on.

Failures are made, not mocked: the alerts topic is given a ``max.message.bytes`` smaller
than any alert (the broker refuses them), or the stream's own broker is stopped for
longer than the producer's delivery timeout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from include.contract import parse_timestamp
from include.events import Alert
from include.kafka_clients import make_admin, make_consumer, make_producer
from include.kafka_local.broker import LocalBroker
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
from include.settings import Settings, load_settings
from include.topics import ensure_topics
from streaming.metrics import StreamMetrics
from streaming.processor import StreamProcessor, topic_max_message_bytes
from streaming.silence import partition_of
from tests.fixtures.settings import settings_env
from tests.fixtures.stream import SCENARIO_START, alerts, read_topic, window_stats
from tests.streaming.test_stream_delivery import (
    PROCESSING_TIME_RULES,
    alert_events,
    eventful_scenario,
    fresh_topics,
)
from tests.streaming.test_stream_fuzz import counted, dlq_by_source, produce_positions

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))
RECORDS = eventful_scenario()  # heat wave in lyon from 900 s, marseille drops at 3000 s
QUIET_PART = [r for r in RECORDS if r.event_time < SCENARIO_START + timedelta(seconds=600)]
EXIT_TIMEOUT_S = 90  # a stream that should stop on a failed send, and does not


def event_time(events: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    return {e for e in events if e[1] not in PROCESSING_TIME_RULES}


@dataclass(frozen=True)
class Reference:
    """What one undisturbed run over :data:`RECORDS` published."""

    events: set[tuple[str, str, str]]  # (alert id, rule, status), event-time rules
    alerts: list[Alert]


@pytest.fixture(scope="module")
def reference(kafka_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    settings = fresh_topics(
        load_settings(
            bootstrap_servers=kafka_broker.bootstrap,
            data_dir=tmp_path_factory.mktemp("reference") / "data",
            metrics_port=0,
            kafka_timeout_ms=5000,
        )
    )
    produce(settings, RECORDS)
    StreamProcessor(settings).run(until_caught_up=True, max_runtime_s=180)
    events = event_time(alert_events(settings))
    assert {rule for _, rule, _ in events} >= {"heat", "drastic_change"}, events
    published = [a for a in alerts(settings) if a.rule not in PROCESSING_TIME_RULES]
    return Reference(events, published)


def produce(settings: Settings, records: list) -> None:
    producer = make_producer(settings)
    for record in records:
        producer.send(settings.topic_readings, key=record.key, value=record.value)
    producer.flush(timeout=60)
    producer.close()


def set_max_message_bytes(settings: Settings, topic: str, value: int) -> None:
    """Alter the topic's ``max.message.bytes`` and wait until the broker applies it."""
    admin = make_admin(settings)
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": value})],
            raise_on_unknown=False,  # a topic created a moment ago may not list its configs yet
        )
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    while topic_max_message_bytes(settings, topic) != value:
        assert time.monotonic() < deadline, f"max.message.bytes of {topic} never became {value}"
        time.sleep(0.2)


def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (0: none)."""
    consumer = make_consumer(settings, group_id=group)
    try:
        return {
            p: consumer.committed(TopicPartition(topic, p)) or 0
            for p in consumer.partitions_for_topic(topic) or ()
        }
    finally:
        consumer.close()


def wait_for(what: str, condition, stream: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert stream.poll() is None, f"the stream exited before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def start_stream(settings: Settings, log: Path) -> subprocess.Popen:
    """``climatewatch stream`` (live), its stderr to ``log``."""
    with log.open("w") as stderr:
        return subprocess.Popen(
            [CLI, "stream"], env=settings_env(settings), stdout=subprocess.DEVNULL, stderr=stderr
        )


def stopped_stream(stream: subprocess.Popen, log: Path) -> tuple[int, str]:
    """Wait for a stream that should stop on its own: its exit code and stderr."""
    try:
        code = stream.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stream.kill()
        stream.wait(timeout=30)
        pytest.fail(f"the stream did not stop within {EXIT_TIMEOUT_S}s of the failed sends")
    return code, log.read_text()


def no_traceback(stderr: str) -> bool:
    """No uncaught exception: the clients' own log lines may quote one (``exc="Traceback…``),
    but no line of stderr is a traceback of its own."""
    return not any(line.startswith("Traceback") for line in stderr.splitlines())


def assert_one_line_error(stderr: str, topic: str) -> str:
    """The stream's last word is one ``climatewatch: error:`` line naming ``topic``."""
    assert no_traceback(stderr), stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"climatewatch: error: could not publish to topic {topic!r}"), last
    assert "nothing was committed past it" in last
    return last


def restart_until_caught_up(settings: Settings) -> None:
    restarted = subprocess.run(
        [CLI, "stream", "--until-caught-up", "--max-runtime", "180"],
        env=settings_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=240,
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]


def first_partials(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    """(region, window start) -> (partition, offset) of the first partials message of it."""
    first: dict[tuple[str, int], tuple[int, int]] = {}
    for record in read_topic(settings, settings.topic_window_partials, timeout_s=30):
        body = orjson.loads(record.value)
        if body.get("type") != "partials":
            continue
        for item in body["items"]:
            key = (item["region"], item["start_ms"])
            if key not in first or record.offset < first[key][1]:
                first[key] = (record.partition, record.offset)
    return first


def trigger_window_start_ms(alert: Alert) -> int:
    """The window whose evaluation raised the alert event."""
    if alert.status == "firing":
        return int(parse_timestamp(alert.window_start).timestamp() * 1000)
    return int(parse_timestamp(alert.window_end).timestamp() * 1000) - 60_000


# --- (b) the broker refuses the alerts: max.message.bytes below any alert ----------------------
def test_alerts_the_broker_refuses_stop_the_stream_uncommitted_and_a_restart_publishes_them(
    kafka_settings: Settings, reference: Reference, tmp_path: Path
) -> None:
    settings = kafka_settings
    set_max_message_bytes(settings, settings.topic_alerts, 100)  # an alert is ~350 bytes
    log = tmp_path / "failing.log"
    stream = start_stream(settings, log)
    regions_group = f"{settings.stream_group_id}-regions"
    partials = settings.topic_window_partials
    try:
        produce(settings, QUIET_PART)  # no alert in the first ten minutes
        wait_for(
            "a commit of the quiet part",
            lambda: any(committed(settings, regions_group, partials).values()),
            stream,
        )
        produce(settings, RECORDS[len(QUIET_PART) :])
        code, stderr = stopped_stream(stream, log)
    finally:
        if stream.poll() is None:
            stream.kill()
    assert code == 1
    line = assert_one_line_error(stderr, settings.topic_alerts)
    assert "MessageSizeTooLargeError" in line
    assert alerts(settings) == []

    # nothing committed past the failure: every stage-2 offset is still at or before the
    # first partial of every window whose evaluation raised an (unpublished) alert
    offsets = committed(settings, regions_group, partials)
    assert any(offsets.values())
    first = first_partials(settings)
    partitions = settings.output_partitions
    checked = 0
    for alert in reference.alerts:
        region, start_ms = alert.region, trigger_window_start_ms(alert)
        if (region, start_ms) not in first:
            continue  # the stream stopped before stage 1 sent that window: not read either
        partition, offset = first[(region, start_ms)]
        assert partition == partition_of(region, partitions)
        assert offsets[partition] <= offset, (region, start_ms, offsets, offset)
        checked += 1
    assert checked >= 1

    # the limit raised, a restart publishes every alert, with the reference's ids
    set_max_message_bytes(settings, settings.topic_alerts, 1024 * 1024)
    restart_until_caught_up(settings)
    assert event_time(alert_events(settings)) == reference.events


# --- (a) the alerts topic is deleted under the running stream ---------------------------------
def delete_topic(settings: Settings, topic: str) -> None:
    """Delete ``topic`` and wait until the broker no longer lists it."""
    admin = make_admin(settings)
    try:
        admin.delete_topics([topic], timeout_ms=30_000)
        deadline = time.monotonic() + 30
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} is still listed 30 s after its deletion"
            time.sleep(0.2)
    finally:
        admin.close()


def test_a_deleted_alerts_topic_stops_the_stream_uncommitted_and_a_restart_publishes_them(
    kafka_settings: Settings, reference: Reference, tmp_path: Path
) -> None:
    """The broker auto-creates no topic, so every alert send fails (unknown topic) until
    the delivery timeout: the stream stops on the first, and once an operator re-creates
    the topic (``climatewatch kafka topics``, here :func:`ensure_topics`) a restart
    publishes every alert the reference run published."""
    settings = kafka_settings.model_copy(update={"producer_delivery_timeout_ms": 5000})
    log = tmp_path / "failing.log"
    stream = start_stream(settings, log)
    regions_group = f"{settings.stream_group_id}-regions"
    try:
        produce(settings, QUIET_PART)  # no alert in the first ten minutes
        wait_for(
            "a commit of the quiet part",
            lambda: any(
                committed(settings, regions_group, settings.topic_window_partials).values()
            ),
            stream,
        )
        delete_topic(settings, settings.topic_alerts)
        produce(settings, RECORDS[len(QUIET_PART) :])
        code, stderr = stopped_stream(stream, log)
    finally:
        if stream.poll() is None:
            stream.kill()
    assert code == 1
    assert_one_line_error(stderr, settings.topic_alerts)

    ensure_topics(settings)  # the operator's fix: the topic is back, empty
    restart_until_caught_up(settings)
    assert event_time(alert_events(settings)) == reference.events


# --- (c) the broker goes away for longer than the delivery timeout ----------------------------
def test_a_broker_down_past_the_delivery_timeout_stops_the_stream_and_a_restart_catches_up(
    reference: Reference, tmp_path: Path
) -> None:
    broker = LocalBroker(
        tmp_path / "broker",
        jars=fetch_jars(load_settings()),
        port=free_port(),
        controller_port=free_port(),
        heap="512m",
    )
    broker.start(timeout_s=120, die_with_parent=True)
    try:
        settings = load_settings(
            bootstrap_servers=broker.bootstrap,
            data_dir=tmp_path / "data",
            metrics_port=0,
            kafka_timeout_ms=5000,
            producer_delivery_timeout_ms=8000,
        )
        ensure_topics(settings)
        ours = {
            settings.topic_window_partials,
            settings.topic_window_stats,
            settings.topic_alerts,
            settings.topic_dlq,
        }
        heat_wave_started = SCENARIO_START + timedelta(seconds=1500)
        before = [r for r in RECORDS if r.event_time < heat_wave_started]
        produce(settings, before)
        log = tmp_path / "failing.log"
        stream = start_stream(settings, log)
        try:
            wait_for("a first alert", lambda: alerts(settings), stream, timeout_s=90)
            broker.kill(signal.SIGKILL)  # gone at once
            code, stderr = stopped_stream(stream, log)
        finally:
            if stream.poll() is None:
                stream.kill()
        assert code == 1
        assert no_traceback(stderr), stderr[-3000:]
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("climatewatch: error: could not publish to topic "), last
        assert any(f"topic {topic!r}" in last for topic in ours), last
        assert "KafkaTimeoutError" in last  # expired after the delivery timeout

        broker.start(timeout_s=120, die_with_parent=True)
        produce(settings, RECORDS[len(before) :])
        restart_until_caught_up(settings)
        published = alerts(settings)
        assert event_time({(a.alert_id, a.rule, a.status) for a in published}) == reference.events
        by_id_status: dict[tuple[str, str], set[str]] = {}
        for alert in published:
            by_id_status.setdefault((alert.alert_id, alert.status), set()).add(alert.window_start)
        assert all(len(starts) == 1 for starts in by_id_status.values())
    finally:
        broker.stop(timeout_s=30)


# --- poison pills ------------------------------------------------------------------------------
def produce_null_record(settings: Settings, partition: int) -> tuple[int, int]:
    """A record with neither key nor value. kafka-python's ``send`` refuses one (other
    clients produce them), so it goes through the producer's accumulator: a real record
    on the real broker."""
    producer = make_producer(settings)
    try:
        tp = TopicPartition(settings.topic_readings, partition)
        assert partition in producer.partitions_for(settings.topic_readings)
        future, *_ = producer._accumulator.append(tp, int(time.time() * 1000), None, None, [])
        producer._sender.wakeup()
        producer.flush(timeout=30)
        metadata = future.get(timeout=30)
        return metadata.partition, metadata.offset
    finally:
        producer.close(timeout=10)


def test_poison_pills_reach_the_dlq_as_stubs_and_the_stream_counts_on(
    kafka_settings: Settings,
) -> None:
    from tests.streaming.test_stream_fuzz import valid_reading

    settings = kafka_settings
    start = SCENARIO_START
    sensor = b"pill-1"
    partition = partition_of(sensor.decode(), settings.readings_partitions)
    before = [
        (sensor, valid_reading("pill-1", "pills", start + timedelta(seconds=s), 15.0))
        for s in range(0, 120, 10)
    ]
    after = [
        (sensor, valid_reading("pill-1", "pills", start + timedelta(seconds=s), 25.0))
        for s in range(120, 480, 10)
    ]
    # near the broker's limit (message.max.bytes 1048588): it fits the readings topic, not
    # the DLQ with the reason and source in headers (the stream's producer: 1 MiB requests)
    huge = b'{"schema_version": 1, "pad": "' + b"x" * (1024 * 1024 - 340) + b'"}'
    produce_positions(settings, before)
    null_position = produce_null_record(settings, partition)
    (huge_position,) = produce_positions(settings, [(sensor, huge)])
    assert huge_position[0] == partition
    produce_positions(settings, after)

    metrics = StreamMetrics()
    StreamProcessor(settings, metrics=metrics).run(until_caught_up=True, max_runtime_s=120)

    dlq = dlq_by_source(settings)
    assert set(dlq) == {null_position, huge_position}
    null = dlq[null_position]
    headers = dict(null.headers)
    assert (null.key, null.value) == (None, b"")
    assert headers["reason"] == b"not_json" and headers["stub"] == b"null key and value"
    assert headers["source_topic"] == settings.topic_readings.encode()

    big = dlq[huge_position]
    headers = dict(big.headers)
    assert headers["reason"] == b"oversized"
    assert headers["stub"] == b"truncated" and headers["truncated"] == b"value"
    assert headers["original_value_bytes"] == str(len(huge)).encode()
    assert big.key == sensor and huge.startswith(big.value) and len(big.value) > 1_000_000
    assert (headers["source_partition"], headers["source_offset"]) == (
        str(huge_position[0]).encode(),
        str(huge_position[1]).encode(),
    )

    # the stream went on: every valid reading after the pills counted and windowed
    assert counted(metrics, "invalid") == 2
    assert counted(metrics, "valid") == len(before) + len(after)
    closed = [s for s in window_stats(settings) if s.region == "pills"]
    assert any(s.mean_c == 25.0 for s in closed), closed


def test_the_dlq_stubs_are_sized_for_the_dlq_topics_own_limit(kafka_settings: Settings) -> None:
    settings = kafka_settings
    assert topic_max_message_bytes(settings, settings.topic_dlq) == 1048588  # broker default
    set_max_message_bytes(settings, settings.topic_dlq, 50_000)
    processor = StreamProcessor(settings)
    try:
        assert processor.outputs.dlq_budget == 50_000 - 2048
    finally:
        processor.close()
