"""Delivery guarantees of the stream: kill -9 and restart, and two instances in one group."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from include.regions import regions
from include.settings import Settings
from include.topics import ensure_topics
from streaming.processor import StreamProcessor
from streaming.silence import partition_of
from tests.fixtures.settings import settings_env
from tests.fixtures.stream import SCENARIO_START, alerts, produce, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))


def fresh_topics(settings: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    other = settings.model_copy(
        update={
            "topic_readings": f"temperature-data-{suffix}",
            "topic_alerts": f"temperature-alerts-{suffix}",
            "topic_window_stats": f"temperature-window-stats-{suffix}",
            "topic_dlq": f"temperature-data-{suffix}.dlq",
            "topic_window_partials": f"temperature-window-partials-{suffix}",
            "stream_group_id": f"climatewatch-alerts-{suffix}",
        }
    )
    ensure_topics(other)
    return other


def eventful_scenario() -> list:
    return scenario(
        regions=4,
        duration_s=90 * 60,
        heat_wave="lyon",
        heat_wave_at_s=900,
        heat_wave_for_s=900,
        drop="marseille",
        drop_at_s=3000,
        silent_sensor="paris-002",
        silent_at_s=2400,
    )


def alert_events(settings: Settings) -> set[tuple[str, str, str]]:
    return {(a.alert_id, a.rule, a.status) for a in alerts(settings)}


def test_kill_9_then_restart_loses_no_alert_and_repeats_only_same_ids(
    kafka_settings: Settings,
) -> None:
    records = eventful_scenario()
    produce(kafka_settings, records)
    StreamProcessor(kafka_settings).run(until_caught_up=True, max_runtime_s=180)
    reference = alert_events(kafka_settings)
    assert len(reference) >= 5

    crashed = fresh_topics(kafka_settings)
    produce(crashed, records)
    env = settings_env(crashed)
    stream = subprocess.Popen(
        [CLI, "stream"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while len(alerts(crashed)) < 2:
            assert time.monotonic() < deadline, "the stream published no alert before the kill"
            assert stream.poll() is None
            time.sleep(0.2)
        stream.send_signal(signal.SIGKILL)
        stream.wait(timeout=30)
    finally:
        if stream.poll() is None:
            stream.kill()
    restarted = subprocess.run(
        [CLI, "stream", "--until-caught-up", "--max-runtime", "180"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert restarted.returncode == 0, restarted.stderr[-2000:]

    published = alerts(crashed)
    assert {(a.alert_id, a.rule, a.status) for a in published} == reference
    by_id_status: dict[tuple[str, str], set[str]] = {}
    for alert in published:
        by_id_status.setdefault((alert.alert_id, alert.status), set()).add(alert.window_start)
    assert all(len(starts) == 1 for starts in by_id_status.values()), (
        "a repeat must be the same alert"
    )


def test_two_instances_split_partitions_and_emit_what_one_emits(kafka_settings: Settings) -> None:
    records = eventful_scenario()
    produce(kafka_settings, records)
    StreamProcessor(kafka_settings).run(until_caught_up=True, max_runtime_s=180)
    reference = alert_events(kafka_settings)

    shared = fresh_topics(kafka_settings)
    instances = [StreamProcessor(shared), StreamProcessor(shared)]
    threads = [threading.Thread(target=p.run, kwargs={"max_runtime_s": 240}) for p in instances]
    for thread in threads:
        thread.start()
    try:

        def split() -> bool:
            """Both groups settled: the readings partitions and the merge stage's."""
            owned = [{tp.partition for tp in p.readings.assignment()} for p in instances]
            merged = [{tp.partition for tp in p.partials.assignment()} for p in instances]
            return (
                all(owned)
                and owned[0].isdisjoint(owned[1])
                and len(owned[0] | owned[1]) == 6
                and all(merged)
                and merged[0].isdisjoint(merged[1])
                and len(merged[0] | merged[1]) == shared.output_partitions
            )

        deadline = time.monotonic() + 60
        while not split():  # the first instance holds everything until the second has joined
            assert time.monotonic() < deadline, (
                "both instances should share the readings partitions"
            )
            time.sleep(0.2)
        produce(shared, records)
        deadline = time.monotonic() + 120
        while not _same_event_time_alerts(reference, alert_events(shared)):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        for processor in instances:
            processor.stop()
        for thread in threads:
            thread.join(timeout=60)
    seen = alert_events(shared)
    assert _same_event_time_alerts(reference, seen), _difference(kafka_settings, shared)


def test_an_instance_joining_mid_stream_takes_partitions_from_a_busy_one(
    kafka_settings: Settings,
) -> None:
    """The revoked instance has uncommitted work when the rebalance comes: it must commit
    it from the rebalance callback (kafka-python's IO thread) without dying."""
    records = eventful_scenario()
    produce(kafka_settings, records)
    StreamProcessor(kafka_settings).run(until_caught_up=True, max_runtime_s=180)
    reference = alert_events(kafka_settings)

    shared = fresh_topics(kafka_settings)
    errors: list[BaseException] = []

    def run(processor: StreamProcessor) -> None:
        try:
            processor.run(max_runtime_s=240)
        except BaseException as exc:  # the thread's death is what this test looks for
            errors.append(exc)

    first = StreamProcessor(shared)
    threads = [threading.Thread(target=run, args=(first,))]
    threads[0].start()
    second = None
    try:
        half = len(records) // 2
        produce(shared, records[:half])
        deadline = time.monotonic() + 60
        while not first.stage1.pending:  # busy: read records it has not committed yet
            assert time.monotonic() < deadline, "the first instance read nothing"
            time.sleep(0.05)
        second = StreamProcessor(shared)
        threads.append(threading.Thread(target=run, args=(second,)))
        threads[1].start()
        deadline = time.monotonic() + 60
        while not (first.readings.assignment() and second.readings.assignment()):
            assert not errors, f"an instance died in the rebalance: {errors!r}"
            assert time.monotonic() < deadline, "the partitions were never shared"
            time.sleep(0.2)
        produce(shared, records[half:])
        deadline = time.monotonic() + 120
        while not _same_event_time_alerts(reference, alert_events(shared)):
            assert not errors, f"an instance died: {errors!r}"
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        for processor in (first, second):
            if processor is not None:
                processor.stop()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    seen = alert_events(shared)
    assert _same_event_time_alerts(reference, seen), _difference(kafka_settings, shared)


def test_a_firing_alert_survives_its_region_moving_to_a_running_instance(
    kafka_settings: Settings,
) -> None:
    """A heat wave fires on one instance; that instance leaves while it still burns; the
    instance already running takes the region over and resolves the *same* alert, never
    fires a second one: the rules' memory moves with the partition, not only at start."""
    shared = fresh_topics(kafka_settings)
    errors: list[BaseException] = []

    def run(processor: StreamProcessor) -> None:
        try:
            processor.run(max_runtime_s=240)
        except BaseException as exc:
            errors.append(exc)

    def owned(processor: StreamProcessor) -> set[int]:
        return {tp.partition for tp in processor.partials.assignment()}

    def wait_for(what: str, condition: object, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():  # type: ignore[operator]
            assert not errors, f"an instance died: {errors!r}"
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    # the survivor starts first, on empty topics: whatever it restores at start is nothing
    survivor = StreamProcessor(shared)
    leaver = StreamProcessor(shared)
    threads = [threading.Thread(target=run, args=(p,)) for p in (survivor, leaver)]
    threads[0].start()
    try:
        wait_for("the first instance never joined", lambda: owned(survivor))
        threads[1].start()
        wait_for("the merge stage was never split", lambda: owned(survivor) and owned(leaver))
        partitions = len(leaver.partials_partitions)
        region = next(
            r.name for r in regions(4) if partition_of(r.name, partitions) in owned(leaver)
        )
        records = scenario(
            regions=4,
            duration_s=60 * 60,
            heat_wave=region,
            heat_wave_at_s=900,
            heat_wave_for_s=1800,
        )
        handover = SCENARIO_START + timedelta(seconds=1800)  # in the middle of the heat wave
        produce(shared, [r for r in records if r.event_time < handover])

        def heat(status: str) -> list:
            return [a for a in alerts(shared) if a.rule == "heat" and a.status == status]

        wait_for("the heat wave never fired", lambda: heat("firing"), timeout_s=120)
        assert {a.region for a in heat("firing")} == {region}
        leaver.stop()
        threads[1].join(timeout=60)
        wait_for(
            "the survivor never took the merge stage over",
            lambda: len(owned(survivor)) == partitions,
        )
        produce(shared, [r for r in records if r.event_time >= handover])
        wait_for("the heat wave never resolved", lambda: heat("resolved"), timeout_s=120)
    finally:
        survivor.stop()
        leaver.stop()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    heat_alerts = [a for a in alerts(shared) if a.rule == "heat"]
    assert {(a.alert_id, a.status) for a in heat_alerts} == {
        (heat_alerts[0].alert_id, "firing"),
        (heat_alerts[0].alert_id, "resolved"),
    }, [(a.alert_id, a.status, a.window_start) for a in heat_alerts]


PROCESSING_TIME_RULES = {"region_silent", "input_silent"}


def _difference(reference: Settings, run: Settings) -> str:
    """The event-time alerts one run published and the other did not, with their windows."""

    def published(settings: Settings) -> dict[tuple[str, str, str], str]:
        return {
            (a.alert_id, a.rule, a.status): f"{a.window_start}..{a.window_end} {a.message}"
            for a in alerts(settings)
            if a.rule not in PROCESSING_TIME_RULES
        }

    expected, seen = published(reference), published(run)
    extra = [f"  + {key[1]} {key[2]} {seen[key]}" for key in sorted(seen.keys() - expected)]
    missing = [f"  - {key[1]} {key[2]} {expected[key]}" for key in sorted(expected.keys() - seen)]
    return "\n".join(["alerts that differ from the reference run:", *extra, *missing])


def _same_event_time_alerts(
    reference: set[tuple[str, str, str]], seen: set[tuple[str, str, str]]
) -> bool:
    """The same alerts, by id and status, for every rule judged on event time (heat, cold,
    drastic change, bad data, silent sensor). Region and input silence are judged on the
    wall clock, so a live run that sits idle after its data may add them: left out."""

    def event_time(events: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return {e for e in events if e[1] not in PROCESSING_TIME_RULES}

    return event_time(reference) == event_time(seen)
