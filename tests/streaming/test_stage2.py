"""Stage 2 on its own: partials and watermarks → window stats, rules, alerts, silence.

Its input is what a real stage 1 sent (recorded by a fake producer), so the contract
between the stages is exercised without a broker.
"""

from __future__ import annotations

import logging
import time

import orjson
import pytest
from kafka import TopicPartition

from include.events import Alert, WindowStats
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.rules import load_rules
from streaming.stage1 import ReadingsStage
from streaming.stage2 import PartialsStage
from tests.streaming.fakes import (
    PARTIALS_PARTITIONS,
    Clock,
    FakeConsumer,
    FakeProducer,
    as_records,
    batch,
    counter,
    reading,
    unit_settings,
)

pytestmark = pytest.mark.unit

RULES = load_rules()  # 60 s windows, 30 s allowed lateness, heat above 30 °C


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The structured lines logged for the alerts published (logger climatewatch.alerts)."""
    return [r for r in caplog.records if r.name == "climatewatch.alerts"]


@pytest.fixture
def pipeline(tmp_path, caplog):
    """A real stage 1 feeding stage 2 through recorded sends (one input partition)."""
    caplog.set_level(logging.WARNING, logger="climatewatch.alerts")
    settings = unit_settings(tmp_path)
    metrics, clock = StreamMetrics(), Clock(time.monotonic())
    upstream = FakeProducer()
    stage1 = ReadingsStage(
        settings, RULES, metrics, FakeConsumer(), Outputs(settings, upstream, metrics), clock
    )
    stage1.partials_partitions = PARTIALS_PARTITIONS
    stage1.assigned([0])
    partials_consumer = FakeConsumer()
    partials_consumer.assigned = {
        TopicPartition(settings.topic_window_partials, p) for p in PARTIALS_PARTITIONS
    }
    producer = FakeProducer()
    stage2 = PartialsStage(
        settings,
        RULES,
        metrics,
        partials_consumer,
        Outputs(settings, producer, metrics),
        clock,
    )
    stage2.input_partitions = 1
    stage2.partials_partitions = PARTIALS_PARTITIONS

    partials_offsets: dict[int, int] = {}

    def readings(*values: bytes, first_offset: int = 0) -> dict:
        """Run readings through stage 1; what it sent, as stage 2 would poll it."""
        upstream.sent.clear()
        stage1.process(batch(settings.topic_readings, 0, list(values), first_offset))
        return as_records(upstream.to(settings.topic_window_partials), partials_offsets)

    return stage2, readings, producer, metrics, clock


def hot_minute() -> list[bytes]:
    return [
        reading("s1", "lyon", 10, 34.0),
        reading("s2", "lyon", 20, 36.0),
        reading("s3", "oslo", 25, 1.0),
        reading("s1", "lyon", 95, 20.0),  # closes the first minute
    ]


def stats(producer: FakeProducer, topic: str) -> list[WindowStats]:
    return [WindowStats.from_json(s.value) for s in producer.to(topic)]


def test_closed_windows_are_published_and_the_rules_alert_once(pipeline, caplog) -> None:
    stage, readings, producer, metrics, _ = pipeline
    settings = stage.settings
    produced = stage.process(readings(*hot_minute()))

    windows = {w.region: w for w in stats(producer, settings.topic_window_stats)}
    assert set(windows) == {"lyon", "oslo"}
    lyon = windows["lyon"]
    assert (lyon.count, lyon.mean_c, lyon.sensors, lyon.sensor_ids) == (2, 35.0, 2, ["s1", "s2"])
    assert lyon.window_start == "2024-01-01T00:00:00.000Z" and lyon.closed_by == "watermark"

    (alert,) = [Alert.from_json(s.value) for s in producer.to(settings.topic_alerts)]
    assert (alert.rule, alert.region, alert.status) == ("heat", "lyon", "firing")
    (line,) = alert_lines(caplog)  # the structured line of the one alert published
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "alert firing heat lyon"
    assert (line.alert_id, line.severity, line.value, line.threshold, line.text) == (
        alert.alert_id,
        alert.severity,
        alert.value,
        alert.threshold,
        alert.message,
    )
    assert counter(metrics.alerts, "heat", "firing") == 1
    assert counter(metrics.windows, "watermark") == 2
    assert produced == 3
    assert stage.open_windows() == 0  # lyon's second minute is still open in stage 1


def test_windows_closed_again_after_a_restart_are_republished_never_evaluated_twice(
    pipeline, caplog
) -> None:
    stage, readings, producer, *_ = pipeline
    poll = readings(*hot_minute())
    stage.process(poll)
    assert len(producer.to(stage.settings.topic_alerts)) == 1
    producer.sent.clear()

    stage.lanes = {}  # a new assignment starts empty; the rules' memory says what ran
    stage.process(poll)
    assert {w.region for w in stats(producer, stage.settings.topic_window_stats)} == {
        "lyon",
        "oslo",
    }
    assert producer.to(stage.settings.topic_alerts) == []
    assert len(alert_lines(caplog)) == 1  # the one alert of the first run, logged once


def test_a_partial_sent_again_to_a_closed_window_changes_nothing(pipeline) -> None:
    stage, readings, producer, *_ = pipeline
    poll = readings(*hot_minute())
    stage.process(poll)
    producer.sent.clear()
    stage.process(poll)  # the same lane: re-sent partials of windows already published
    assert producer.to(stage.settings.topic_window_stats) == []


def test_offsets_left_to_commit_stop_at_the_first_partial_of_an_open_window(pipeline) -> None:
    stage, readings, producer, *_ = pipeline
    stage.input_partitions = 2  # input partition 1 has not reported: nothing closes yet
    poll = readings(*hot_minute())
    stage.process(poll)
    assert producer.to(stage.settings.topic_window_stats) == []
    assert stage.pending == {tp.partition: records[-1].offset + 1 for tp, records in poll.items()}
    held = {
        tp.partition: min([r.offset for r in records if r.key], default=records[-1].offset + 1)
        for tp, records in poll.items()
    }
    assert held != stage.pending
    assert stage.safe_offsets() == held

    late_heartbeat = orjson.dumps({"type": "watermark", "source": 1, "watermark_ms": 2**50})
    topic = stage.settings.topic_window_partials
    for partition in PARTIALS_PARTITIONS:
        offset = stage.pending[partition]
        stage.process(batch(topic, partition, [late_heartbeat], first_offset=offset))
    assert len(producer.to(stage.settings.topic_window_stats)) == 2
    assert stage.safe_offsets() == stage.pending  # every window closed


def test_a_region_unheard_for_its_silence_limit_alerts(pipeline) -> None:
    stage, readings, producer, _, clock = pipeline
    stage.process(readings(*hot_minute()))
    producer.sent.clear()

    limit = float(RULES.rules["region_silent"]["silent_seconds"])
    clock.now += limit + 1
    stage.process({})
    silent = [Alert.from_json(s.value) for s in producer.to(stage.settings.topic_alerts)]
    assert {(a.rule, a.region, a.status) for a in silent} >= {
        ("region_silent", "lyon", "firing"),
        ("region_silent", "oslo", "firing"),
    }
    producer.sent.clear()
    clock.now += 0.5
    stage.process({})  # checked once a second
    clock.now += 1
    stage.process({})  # and firing already
    assert producer.to(stage.settings.topic_alerts) == []


def test_watermarks_of_other_instances_backlogs_feed_the_alignment(pipeline) -> None:
    stage, _, _, _, clock = pipeline
    topic = stage.settings.topic_window_partials

    def heartbeat(source: int, watermark: int, caught_up: bool) -> bytes:
        return orjson.dumps(
            {
                "type": "watermark",
                "source": source,
                "watermark_ms": watermark,
                "caught_up": caught_up,
                "regions": [],
            }
        )

    stage.process(
        batch(topic, 0, [heartbeat(0, 5, False), heartbeat(1, 7, False), heartbeat(2, 9, True)])
    )
    assert stage.backlog_watermarks(clock(), skip={0}) == {1: 7}
    assert stage.backlog_watermarks(clock() + 11, skip=set()) == {}  # gone quiet


def test_an_assignment_is_adopted_by_the_loop_with_its_memory_rebuilt(
    pipeline, monkeypatch
) -> None:
    stage, readings, *_ = pipeline
    stage.process(readings(*hot_minute()))
    restored: list[set[int]] = []
    monkeypatch.setattr(stage, "restore_state", lambda owned: restored.append(owned) or 0)

    assert not stage.adopt_assignment()
    stage.assigned([2, 0])  # from the listener: nothing happens until the loop adopts it
    assert stage.lanes and restored == []
    assert stage.adopt_assignment()
    assert stage.lanes == {} and restored == [{0, 2}]
    assert not stage.adopt_assignment()


def test_unreadable_partials_are_skipped(pipeline) -> None:
    stage, *_ = pipeline
    topic = stage.settings.topic_window_partials
    assert stage.process(batch(topic, 1, [b"garbage", b'{"type": "partials"}'])) == 0
    assert stage.pending == {1: 2}


def test_the_commit_tells_the_next_owner_which_windows_are_closed(pipeline, tmp_path) -> None:
    """What one stage 2 closed before its commit, the next owner of the partition (read
    back from the commit's metadata) neither publishes nor evaluates again."""
    from streaming.checkpoint import Checkpoint, Input

    stage, readings, producer, metrics, clock = pipeline
    poll = readings(*hot_minute())
    stage.process(poll)
    assert len(producer.to(stage.settings.topic_window_stats)) == 2
    topic = stage.settings.topic_window_partials
    Checkpoint(producer, [Input(stage.consumer, topic, stage)]).flush_and_commit()
    owned = {tp.partition for tp in stage.consumer.assignment()}
    marks = stage.committed_marks(owned)
    assert set(marks) == {tp.partition for tp in poll} and min(marks.values()) >= 60_000

    successor_output = FakeProducer()
    successor = PartialsStage(
        stage.settings,
        RULES,
        metrics,
        stage.consumer,  # the same group's commits
        Outputs(stage.settings, successor_output, metrics),
        clock,
    )
    successor.input_partitions, successor.partials_partitions = 1, PARTIALS_PARTITIONS
    successor.closed_until = successor.committed_marks(owned)  # what adoption does
    successor.process(poll)  # re-read from an older offset: every partial again
    assert successor_output.sent == []


@pytest.mark.parametrize(
    "metadata",
    ["", None, b"\xff", "{", "[]", '{"closed_until_ms": "60000"}', '{"closed_until_ms": 1.5}',
     '{"closed_until_ms": true}', f'{{"closed_until_ms": {2**63}}}', "garbage"],
)  # fmt: skip
def test_a_commit_without_a_readable_mark_marks_nothing(metadata) -> None:
    from streaming.stage2 import parse_handover_mark
    from streaming.windowing import NO_WATERMARK

    assert parse_handover_mark(metadata) == NO_WATERMARK


def test_the_handover_mark_reads_back_what_was_written_and_any_text_gets_a_verdict() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from streaming.stage2 import format_handover_mark, parse_handover_mark
    from streaming.windowing import NO_WATERMARK

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(st.integers(min_value=NO_WATERMARK + 1, max_value=2**62 - 1))
    def round_trip(mark: int) -> None:
        assert parse_handover_mark(format_handover_mark(mark)) == mark

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.floats()))
    def any_metadata(metadata: object) -> None:
        assert isinstance(parse_handover_mark(metadata), int)

    round_trip()
    any_metadata()
    assert format_handover_mark(NO_WATERMARK) == ""
