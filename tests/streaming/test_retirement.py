"""Retirement: regions and sensors not heard from for CLIMATEWATCH_RETIRE_AFTER_S are
forgotten, their alerts resolve with the reason, and a restart does not bring them back.

A real stage 1 feeds a real stage 2 through one recorded producer (as in the stream, both
stages share one ``Outputs``); processing time is a clock the tests move by hand. The
restart rebuilds stage 2 from what was published (the topics' tails, without a broker).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import TopicPartition

import streaming.restore as restore_module
from include.errors import ClimateWatchError
from include.events import Alert, WindowStats
from include.settings import load_settings
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.processor import StreamProcessor
from streaming.restore import RuleMemory
from streaming.rules import load_rules
from streaming.stage1 import ReadingsStage
from streaming.stage2 import PartialsStage
from tests.streaming.fakes import (
    PARTIALS_PARTITIONS,
    T0,
    Clock,
    FakeConsumer,
    FakeProducer,
    FakeRecord,
    as_records,
    batch,
    counter,
    reading,
)

pytestmark = pytest.mark.unit

RETIRE_S = 600.0  # the default rules: region_silent after 120 s, silent_sensor after 300 s
FLOOD = 10_000
RETIRED = "retired: "  # how the message of an alert resolved by a retirement begins


class Pipeline:
    """Stage 1 → stage 2 on one recorded producer; ``published`` keeps every alert and
    window-stats record, as the topics would."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = load_settings(
            data_dir=tmp_path / "data", metrics_port=0, retire_after_s=RETIRE_S
        )
        self.rules = load_rules()
        self.metrics, self.clock = StreamMetrics(), Clock(time.monotonic())
        self.producer = FakeProducer()
        self.outputs = Outputs(self.settings, self.producer, self.metrics)
        self.stage1 = ReadingsStage(
            self.settings, self.rules, self.metrics, FakeConsumer(), self.outputs, self.clock
        )
        self.stage1.partials_partitions = PARTIALS_PARTITIONS
        self.stage1.assigned([0])
        self.stage2 = self.new_stage2()
        self.published: dict[str, list[FakeRecord]] = {
            self.settings.topic_alerts: [],
            self.settings.topic_window_stats: [],
        }
        self.next_offset = 0
        self.partials_offsets: dict[int, int] = {}

    def new_stage2(self) -> PartialsStage:
        consumer = FakeConsumer()
        consumer.assigned = {
            TopicPartition(self.settings.topic_window_partials, p) for p in PARTIALS_PARTITIONS
        }
        stage = PartialsStage(
            self.settings,
            self.rules,
            self.metrics,
            consumer,
            self.outputs,
            self.clock,
        )
        stage.input_partitions = 1
        stage.partials_partitions = PARTIALS_PARTITIONS
        return stage

    def feed(self, *values: bytes, advance_s: float = 0.0) -> None:
        """Move the clock, run readings through stage 1 and its heartbeats (as the loop
        does), then what stage 1 sent through stage 2."""
        self.clock.now += advance_s
        topic = self.settings.topic_window_partials
        if values:
            self.stage1.process(
                batch(self.settings.topic_readings, 0, list(values), self.next_offset)
            )
            self.next_offset += len(values)
        self.stage1.heartbeats(force=True)
        partials = [s for s in self.producer.sent if s.topic == topic]
        self.producer.sent = [s for s in self.producer.sent if s.topic != topic]
        self.stage2.process(as_records(partials, self.partials_offsets))
        for sent in self.producer.sent:
            if sent.topic in self.published:
                records = self.published[sent.topic]
                records.append(FakeRecord(sent.topic, 0, len(records), sent.value, sent.key))
        self.producer.sent.clear()

    def alerts(self) -> list[Alert]:
        return [Alert.from_json(r.value) for r in self.published[self.settings.topic_alerts]]

    def restart(self, monkeypatch: pytest.MonkeyPatch) -> PartialsStage:
        """A new stage 2, its memory rebuilt from the records published so far."""
        monkeypatch.setattr(
            restore_module,
            "read_tail",
            lambda consumer, topic, keep, timeout_s: self.published[topic],
        )
        monkeypatch.setattr(
            restore_module, "make_consumer", lambda settings: SimpleNamespace(close=lambda: None)
        )
        self.stage2 = self.new_stage2()
        self.stage2.restore_state(set(PARTIALS_PARTITIONS))
        return self.stage2


def hot_minute() -> list[bytes]:
    return [
        reading("s1", "lyon", 10, 34.0),
        reading("s3", "oslo", 25, 1.0),
        reading("s1", "lyon", 95, 34.0),  # closes the first minute: heat in lyon
    ]


def of(alerts: list[Alert], region: str, status: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.region == region and status in (None, a.status)]


def per_name_sizes(p: Pipeline) -> dict[str, int]:
    """Every structure of the stream that holds something per region or sensor name."""
    stage, memory = p.stage2, p.stage2.memory
    return {
        "regions heard": len(stage.silence.region_heard),
        "regions' partitions": len(getattr(stage.silence, "_partitions", {})),
        "histories": len(memory.histories),
        "evaluated until": len(memory.evaluated_until),
        "sensors": sum(len(h.sensor_last_seen_ms) for h in memory.histories.values()),
        "firing": len(memory.tracker.firing),
        "closed windows": sum(len(lane.closed) for lane in stage.lanes.values()),
        "open windows": stage.open_windows() + p.stage1.open_windows(),
        "partitions cached": len(p.outputs._partitions),
        "alerts in flight": len(p.outputs._alerts_in_flight),
        "rules cache": len(p.rules._merged),
    }


# --- a region ----------------------------------------------------------------------------------
def test_a_retired_region_s_alerts_resolve_with_the_reason_and_it_is_forgotten(
    tmp_path, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="climatewatch.alerts")
    p = Pipeline(tmp_path)
    p.feed(*hot_minute())
    p.feed(advance_s=121)  # lyon and oslo silent
    assert {(a.rule, a.region) for a in p.alerts() if a.status == "firing"} == {
        ("heat", "lyon"),
        ("region_silent", "lyon"),
        ("region_silent", "oslo"),
    }
    p.feed(reading("s3", "oslo", 150, 1.0), advance_s=400)  # oslo reports again
    p.feed(advance_s=80)  # lyon: 601 s without a reading

    firing = {a.rule: a for a in of(p.alerts(), "lyon", "firing")}
    resolved = {a.rule: a for a in of(p.alerts(), "lyon", "resolved")}
    assert set(resolved) == {"heat", "region_silent"}
    for rule, alert in resolved.items():
        assert alert.message == f"{RETIRED}not heard from for 601 s"
        assert alert.alert_id == firing[rule].alert_id  # the Alert contract: same id
        assert Alert.from_json(alert.to_json()) == alert
    # published to the alerts topic (keyed by region), where the notification service
    # reads them, each with its structured log line
    topic = p.published[p.settings.topic_alerts]
    published = {Alert.from_json(r.value) for r in topic if r.key == b"lyon"}
    assert set(resolved.values()) <= published
    logged = {
        (r.getMessage(), r.alert_id, r.text)
        for r in caplog.records
        if r.name == "climatewatch.alerts"
    }
    lines = {(f"alert resolved {a.rule} lyon", a.alert_id, a.message) for a in resolved.values()}
    assert lines <= logged
    assert not of(p.alerts(), "oslo", "resolved")[0].message.startswith(RETIRED)

    stage = p.stage2
    assert set(stage.silence.region_heard) == {"oslo"}
    assert set(stage.memory.histories) == set(stage.memory.evaluated_until) == {"oslo"}
    assert stage.memory.tracker.firing == {}
    assert all(key[0] != "lyon" for lane in stage.lanes.values() for key in lane.closed)
    assert all(region != "lyon" for _, region in p.outputs._partitions)
    assert counter(p.metrics.retired, "region") == 1
    assert counter(p.metrics.names, "region") == 1


def run_minutes(p: Pipeline, flood: int) -> dict[str, int]:
    """``flood`` new regions (one new sensor each) and ``flood`` new sensors of lyon in the
    first minute; then 15 minutes in which only lyon's s1 reports. Returns the sizes at
    minute 5."""
    p.feed(
        *(reading(f"flood-{i}", f"region-{i}", 10, 15.0) for i in range(flood)),
        *(reading(f"lyon-{i}", "lyon", 20, 15.0) for i in range(flood)),
        reading("s1", "lyon", 30, 15.0),
    )
    during: dict[str, int] = {}
    for minute in range(1, 16):
        p.feed(reading("s1", "lyon", minute * 60 + 45, 15.0), advance_s=60)
        if minute == 5:
            during = per_name_sizes(p)
    return during


def test_memory_shrinks_back_after_a_flood_of_10000_names(tmp_path) -> None:
    steady = Pipeline(tmp_path / "steady")
    run_minutes(steady, 0)
    p = Pipeline(tmp_path)
    during = run_minutes(p, FLOOD)

    assert during["regions heard"] == during["histories"] == FLOOD + 1
    assert during["sensors"] == 2 * FLOOD + 1 and during["firing"] >= FLOOD
    after, baseline = per_name_sizes(p), per_name_sizes(steady)
    assert {k: v for k, v in after.items() if v > baseline[k] + 1} == {}, (after, baseline)
    assert set(p.stage2.silence.region_heard) == {"lyon"}
    assert set(p.stage2.memory.histories["lyon"].sensor_last_seen_ms) == {"s1"}

    alerts = p.alerts()
    silent = [a for a in alerts if a.rule == "region_silent"]
    assert sum(a.status == "firing" for a in silent) == FLOOD
    retired = [a for a in silent if a.status == "resolved"]
    assert len(retired) == FLOOD and all(a.message.startswith(RETIRED) for a in retired)
    (sensors_back,) = [a for a in alerts if a.rule == "silent_sensor" and a.status == "resolved"]
    assert sensors_back.region == "lyon"
    assert f"({FLOOD} sensor(s) {RETIRED}not heard from for 600 s)" in sensors_back.message
    assert counter(p.metrics.retired, "region") == FLOOD
    assert counter(p.metrics.retired, "sensor") == 2 * FLOOD


def test_a_retired_name_that_comes_back_is_new_again(tmp_path) -> None:
    p = Pipeline(tmp_path)
    p.feed(reading("s1", "lyon", 10, 34.0), reading("s3", "oslo", 95, 1.0))
    p.feed(advance_s=121)
    p.feed(advance_s=480)  # both retired
    assert p.stage2.silence.region_heard == {}
    first = of(p.alerts(), "lyon", "firing")

    p.feed(reading("s9", "lyon", 1000, 20.0), reading("s9", "lyon", 1095, 20.0), advance_s=60)
    history = p.stage2.memory.histories["lyon"]
    assert [mean for _, mean in history.means] == [20.0]  # nothing of its first life
    assert set(history.sensor_last_seen_ms) == {"s9"}
    assert "lyon" in p.stage2.silence.region_heard
    p.feed(advance_s=121)  # silent again: a new silence alert, after its retirement's
    lyon = [(a.rule, a.status, a.message[: len(RETIRED)]) for a in of(p.alerts(), "lyon")]
    assert lyon[len(first) :] == [
        ("heat", "resolved", RETIRED),
        ("region_silent", "resolved", RETIRED),
        ("region_silent", "firing", "no readin"),
    ]


# --- restarts ----------------------------------------------------------------------------------
def test_a_region_retired_before_a_restart_is_not_known_after_it(tmp_path, monkeypatch) -> None:
    p = Pipeline(tmp_path)
    p.feed(*hot_minute())
    p.feed(advance_s=121)
    p.feed(reading("s3", "oslo", 150, 1.0), advance_s=400)
    p.feed(advance_s=80)  # lyon retired, oslo still known
    before = len(p.alerts())

    restarted = p.restart(monkeypatch)
    assert "lyon" not in restarted.memory.histories
    assert "lyon" not in restarted.silence.region_heard
    assert "oslo" in restarted.memory.histories
    p.feed(advance_s=121)  # a full silence limit after the restart
    after = p.alerts()[before:]
    assert of(after, "lyon") == []  # no false silence alert for the retired region
    assert [(a.rule, a.status) for a in of(after, "oslo")] == [("region_silent", "firing")]


def test_a_restart_keeps_a_silent_region_silent_and_retires_it_in_time(
    tmp_path, monkeypatch
) -> None:
    p = Pipeline(tmp_path)
    p.feed(*hot_minute())
    p.feed(advance_s=121)  # lyon and oslo silent
    before = len(p.alerts())
    p.restart(monkeypatch)
    p.feed(advance_s=1)
    assert p.alerts()[before:] == []  # still silent: nothing resolves at the restart
    p.feed(advance_s=479)  # 601 s after their last reading, restart or not
    retired = p.alerts()[before:]
    assert {(a.rule, a.region) for a in retired} == {
        ("heat", "lyon"),
        ("region_silent", "lyon"),
        ("region_silent", "oslo"),
    }
    assert all(a.status == "resolved" and a.message.startswith(RETIRED) for a in retired)


def stats(region: str, minute: int, sensors: list[str], emitted_at: str) -> bytes:
    return WindowStats(
        region=region,
        window_start=f"2024-01-01T00:{minute:02d}:00.000Z",
        window_end=f"2024-01-01T00:{minute + 1:02d}:00.000Z",
        count=len(sensors),
        mean_c=15.0,
        min_c=15.0,
        max_c=15.0,
        sensors=len(sensors),
        late=0,
        invalid=0,
        closed_by="watermark",
        emitted_at=emitted_at,
        sensor_ids=sensors,
    ).to_json()


def alert(rule: str, region: str, status: str, message: str, emitted_at: str) -> bytes:
    return Alert(
        alert_id=f"{rule}-{region}-x",
        rule=rule,
        severity="warning",
        region=region,
        window_start="2024-01-01T00:00:00.000Z",
        window_end="2024-01-01T00:10:00.000Z",
        value=1.0,
        threshold=1.0,
        status=status,  # type: ignore[arg-type]
        message=message,
        emitted_at=emitted_at,
    ).to_json()


def records(*values: bytes) -> list[FakeRecord]:
    return [FakeRecord("t", 0, i, value) for i, value in enumerate(values)]


def test_the_rebuild_leaves_out_retired_regions_and_sensors() -> None:
    memory, retired = RuleMemory(), f"{RETIRED}not heard from for 700 s"
    memory.replay(
        records(
            stats("lyon", 0, ["l1"], "2024-01-01T01:00:00.000Z"),
            stats("nice", 0, ["n1"], "2024-01-01T01:00:00.000Z"),
            stats("paris", 0, ["p-old"], "2024-01-01T01:00:00.000Z"),
            stats("paris", 30, ["p-new"], "2024-01-01T01:20:00.000Z"),
            stats("nice", 20, ["n1"], "2024-01-01T01:20:00.000Z"),  # nice came back
        ),
        lambda region: True,
        alerts=False,
    )
    memory.replay(
        records(
            alert("region_silent", "lyon", "firing", "m", "2024-01-01T01:02:00.000Z"),
            alert("region_silent", "lyon", "resolved", retired, "2024-01-01T01:10:00.000Z"),
            alert("region_silent", "nice", "firing", "m", "2024-01-01T01:02:00.000Z"),
            alert("region_silent", "nice", "resolved", retired, "2024-01-01T01:10:00.000Z"),
        ),
        lambda region: True,
        alerts=True,
    )
    wall = T0.timestamp() + 85 * 60  # 01:25, wall clock; retired after 10 minutes
    memory.settle(load_rules(), now_wall=wall, clock_now=500.0, retire_after_s=RETIRE_S)
    assert set(memory.histories) == {"nice", "paris"}
    assert "lyon" not in memory.evaluated_until
    paris = memory.histories["paris"]
    assert set(paris.sensor_last_seen_ms) == {"p-new"}  # p-old: last window 25 min ago
    # heard 5 minutes ago (wall clock), on the stage's clock
    assert paris.sensor_heard == {"p-new": 500.0 - 5 * 60}
    assert memory.histories["nice"].sensor_heard == {"n1": 500.0 - 5 * 60}


# --- the setting -------------------------------------------------------------------------------
def test_the_retire_time_must_exceed_every_silence_limit(tmp_path) -> None:
    from streaming import retire
    from streaming.retire import check_retire_after

    assert retire.RETIRED == RETIRED
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        "[rules.region_silent]\nsilent_seconds = 120\n"
        "[rules.silent_sensor]\nsilent_seconds = 300\n"
        "[regions.tromso.region_silent]\nsilent_seconds = 5000\n"
    )
    rules = load_rules(rules_file)
    ok = load_settings(retire_after_s=5001)
    check_retire_after(ok, rules)
    with pytest.raises(ClimateWatchError) as refused:
        check_retire_after(load_settings(retire_after_s=5000), rules)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(
        "invalid setting: CLIMATEWATCH_RETIRE_AFTER_S (5000 s) must be greater than "
        "regions.tromso.region_silent.silent_seconds of the rules file (5000 s)"
    )
    # the stream refuses it at start, before it connects to anything
    settings = load_settings(retire_after_s=300, bootstrap_servers="127.0.0.1:9")
    with pytest.raises(ClimateWatchError, match=r"rules\.silent_sensor\.silent_seconds"):
        StreamProcessor(settings)
