"""Silence is an event (real broker, a live stream, real time on short thresholds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.contract import Reading, reading_key, serialize_reading
from include.kafka_clients import make_producer
from include.settings import Settings
from streaming.processor import StreamProcessor
from tests.fixtures.stream import alerts, produce, scenario, window_stats

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FAST_RULES = """
[windows]
size_seconds = 2
allowed_lateness_seconds = 1

[rules.heat]
threshold_c = 30.0
[rules.region_silent]
silent_seconds = 4
[rules.input_silent]
silent_seconds = 5
severity = "critical"
"""


@pytest.fixture
def live(
    kafka_settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, Callable[..., StreamProcessor]]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAST_RULES)
    settings = kafka_settings.model_copy(update={"rules_file": rules, "idle_timeout_s": 2.0})
    running: list[tuple[StreamProcessor, threading.Thread]] = []

    def start(**overrides: object) -> StreamProcessor:
        processor = StreamProcessor(settings.model_copy(update=overrides))
        thread = threading.Thread(target=processor.run, kwargs={"max_runtime_s": 120})
        thread.start()
        running.append((processor, thread))
        return processor

    yield settings, start
    for processor, thread in running:
        processor.stop()
        thread.join(timeout=60)


class Sensors(threading.Thread):
    """Real-time readings from three regions, 5 per second each, until told otherwise."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.active = {"paris", "lyon", "nice"}
        self.stopped = threading.Event()

    def run(self) -> None:
        producer = make_producer(self.settings, linger_ms=0)
        n = 0
        while not self.stopped.is_set():
            for region in sorted(self.active):
                reading = Reading(f"{region}-{n % 3}", region, datetime.now(UTC), 15.0)
                producer.send(
                    self.settings.topic_readings,
                    key=reading_key(reading),
                    value=serialize_reading(reading),
                )
            n += 1
            producer.flush()
            time.sleep(0.2)
        producer.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.25)
    return time.monotonic() - started


def fired(settings: Settings, rule: str, region: str, status: str = "firing") -> bool:
    return any(
        a.rule == rule and a.region == region and a.status == status for a in alerts(settings)
    )


def test_a_silent_region_alerts_and_resolves_and_a_silent_input_is_critical(live) -> None:
    settings, start = live
    start()
    sensors = Sensors(settings)
    sensors.start()
    try:
        time.sleep(4)
        sensors.active.discard("lyon")
        took = wait_for(
            lambda: fired(settings, "region_silent", "lyon"), 20, "region_silent for lyon"
        )
        assert (
            took <= 4 + 1 + 2
        )  # threshold + one check + a heartbeat, with room for a busy machine
        assert not fired(settings, "region_silent", "paris")
        lyon_windows = [w for w in window_stats(settings) if w.region == "lyon"]
        assert lyon_windows, "lyon's last window is published closed"
        sensors.active.add("lyon")
        wait_for(lambda: fired(settings, "region_silent", "lyon", "resolved"), 20, "lyon resolved")

        sensors.stopped.set()
        wait_for(lambda: fired(settings, "input_silent", "all"), 25, "input_silent")
        critical = next(a for a in alerts(settings) if a.rule == "input_silent")
        assert critical.severity == "critical"
        # the last windows of every region close by idleness
        wait_for(
            lambda: (
                {w.region for w in window_stats(settings) if w.closed_by == "idle"}
                >= {"paris", "nice"}
            ),
            20,
            "idle-closed windows",
        )
    finally:
        sensors.stopped.set()


def test_a_region_retired_before_a_restart_stays_retired(live) -> None:
    settings, start = live
    first = start(retire_after_s=6.0)  # retired 6 s after its last reading (silent after 4 s)
    sensors = Sensors(settings)
    sensors.start()
    try:
        time.sleep(3)
        sensors.active.discard("lyon")
        wait_for(lambda: fired(settings, "region_silent", "lyon"), 20, "region_silent for lyon")

        def retired() -> list:
            return [
                a
                for a in alerts(settings)
                if a.region == "lyon"
                and a.status == "resolved"
                and a.message.startswith("retired: ")
            ]

        wait_for(lambda: bool(retired()), 20, "lyon retired")
        assert [a.rule for a in retired()] == ["region_silent"]
        first.stop()
        time.sleep(2)
        start(retire_after_s=6.0)
        time.sleep(4 + 1 + 2 + 2)  # past the silence limit after the restart, and a check
        lyon = [(a.rule, a.status) for a in alerts(settings) if a.region == "lyon"]
        assert lyon == [("region_silent", "firing"), ("region_silent", "resolved")]
        assert not fired(settings, "region_silent", "paris")
    finally:
        sensors.stopped.set()


def test_a_restart_while_the_input_is_quiet_raises_no_false_alert(live) -> None:
    settings, start = live
    produce(settings, scenario(duration_s=120))
    first = start()
    wait_for(lambda: len(window_stats(settings)) > 0, 30, "windows of the first run")
    first.stop()
    time.sleep(2)
    start()
    time.sleep(3.5)  # below the region threshold (4 s) and the input threshold (5 s) after restart
    silence = [a for a in alerts(settings) if a.rule in ("region_silent", "input_silent")]
    assert silence == []


def test_nothing_fires_while_catching_up_on_a_backlog(live) -> None:
    settings, start = live
    begin = datetime.now(UTC) - timedelta(hours=16)  # 1M readings of 100 sensors: 14 h
    backlog = scenario(
        regions=5,
        sensors_per_region=20,
        interval_s=5,
        count=1_000_000,
        duration_s=None,
        start=begin,
    )
    assert len(backlog) == 1_000_000
    produce(settings, backlog)
    processor = start()

    def caught_up() -> bool:
        assigned = processor.readings.assignment()
        marks = [
            (processor.readings.position(tp), processor.readings.highwater(tp)) for tp in assigned
        ]
        return bool(assigned) and all(h is not None and p >= h for p, h in marks)

    wait_for(caught_up, 300, "catch-up")
    assert not [a for a in alerts(settings) if a.rule in ("region_silent", "input_silent")]


def test_a_reading_after_its_window_closed_by_idleness_is_late(live) -> None:
    settings, start = live
    start()
    now = datetime.now(UTC)
    first = Reading("brest-1", "brest", now, 12.0)
    produce(settings, [(reading_key(first), serialize_reading(first))])
    wait_for(
        lambda: any(w.region == "brest" and w.closed_by == "idle" for w in window_stats(settings)),
        30,
        "idle close",
    )
    produce(
        settings, [(reading_key(first), serialize_reading(Reading("brest-2", "brest", now, 13.0)))]
    )
    wait_for(
        lambda: any(w.region == "brest" and w.late == 1 for w in window_stats(settings)),
        30,
        "late count",
    )
