"""The stream against the real broker: alerts for each scenario, DLQ, late data."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from include.contract import format_ts
from include.settings import Settings
from streaming.processor import StreamProcessor
from tests.fixtures.stream import (
    SCENARIO_START,
    alerts,
    produce,
    read_topic,
    scenario,
    window_stats,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def run_stream(settings: Settings) -> None:
    StreamProcessor(settings).run(until_caught_up=True, max_runtime_s=120)


def test_heat_wave_fires_once_and_resolves_in_its_region_only(kafka_settings: Settings) -> None:
    produce(kafka_settings, scenario(heat_wave="lyon", heat_wave_at_s=600, heat_wave_for_s=600))
    run_stream(kafka_settings)
    published = alerts(kafka_settings)
    heat = [(a.rule, a.region, a.status) for a in published if a.rule == "heat"]
    assert heat == [("heat", "lyon", "firing"), ("heat", "lyon", "resolved")]
    # a jump from ~10 °C to 36 °C is also a drastic change; nothing fires elsewhere
    assert {a.region for a in published} == {"lyon"}
    firing, resolved = [a for a in published if a.rule == "heat"]
    assert firing.alert_id == resolved.alert_id
    assert firing.value > 30 and firing.threshold == 30.0
    assert firing.window_start.startswith(SCENARIO_START.strftime("%Y-%m-%d"))
    stats = window_stats(kafka_settings)
    assert {s.region for s in stats} == {"paris", "lyon", "marseille"}
    odd = [s for s in stats if s.late == 0 and (s.sensors != 5 or s.count != 30)]
    assert not odd, odd[:3]


def test_sudden_drop_raises_drastic_change(kafka_settings: Settings) -> None:
    produce(kafka_settings, scenario(drop="paris", drop_at_s=900))
    run_stream(kafka_settings)
    fired = [(a.rule, a.region) for a in alerts(kafka_settings) if a.status == "firing"]
    assert fired[0] == ("drastic_change", "paris")
    assert all(region == "paris" for _, region in fired)


def test_silent_sensor_raises_silent_sensor(kafka_settings: Settings) -> None:
    produce(kafka_settings, scenario(silent_sensor="marseille-003", silent_at_s=300))
    run_stream(kafka_settings)
    fired = [a for a in alerts(kafka_settings) if a.status == "firing"]
    assert [(a.rule, a.region) for a in fired] == [("silent_sensor", "marseille")]
    assert "marseille-003" in fired[0].message


def test_malformed_burst_raises_bad_data_and_reaches_the_dlq_intact(
    kafka_settings: Settings,
) -> None:
    records = scenario(malformed_ratio=0.3, duration_s=20 * 60)
    produce(kafka_settings, records)
    run_stream(kafka_settings)
    fired = {(a.rule, a.status) for a in alerts(kafka_settings)}
    assert ("bad_data", "firing") in fired
    dlq = read_topic(kafka_settings, kafka_settings.topic_dlq)
    malformed = [r for r in records if r.reading is None]
    assert sorted((r.key, r.value) for r in dlq) == sorted((r.key, r.value) for r in malformed)
    reasons = Counter(dict(r.headers)["reason"].decode() for r in dlq)
    assert set(reasons) >= {
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "not_finite",
        "out_of_range",
    }
    assert sum(s.invalid for s in window_stats(kafka_settings)) > 0


def test_out_of_order_lands_in_its_window_and_too_late_is_counted(kafka_settings: Settings) -> None:
    records = scenario(duration_s=20 * 60, out_of_order_ratio=0.05, late_ratio=0.02, late_by_s=240)
    produce(kafka_settings, records)
    run_stream(kafka_settings)
    stats = {}
    for s in window_stats(kafka_settings):
        stats[(s.region, s.window_start)] = s  # the latest record of a window wins
    late_total = sum(s.late for s in stats.values())
    late_sent = sum(1 for r in records if r.kind == "late")
    assert late_total > 0 and late_total <= late_sent
    # every reading of a closed window is either counted in it or counted as late for it
    per_window = Counter()
    for record in records:
        start = record.event_time.replace(second=0, microsecond=0)
        per_window[(record.region, start.strftime("%Y-%m-%dT%H:%M:00.000Z"))] += 1
    for key, s in stats.items():
        assert s.count + s.late == per_window[key], key


def test_a_backlog_with_uneven_partitions_is_read_to_the_end_and_every_reading_counted(
    kafka_settings: Settings,
) -> None:
    """100 sensors hashed unevenly over 6 partitions, 2,000 minutes of backlog: sparser
    partitions run ahead in event time, so the stream pauses them (watermark alignment) and
    resumes them as the others catch up. Paused and resumed many times, no partition may
    stall (kafka-python 3.0.12 loses resumed partitions without a workaround), and every
    reading lands in exactly one window."""
    records = scenario(
        regions=5,
        sensors_per_region=20,
        interval_s=60,
        duration_s=2000 * 60,
        start=datetime.now(UTC) - timedelta(hours=40),
    )
    produce(kafka_settings, records)
    processor = StreamProcessor(kafka_settings)
    processor.run(until_caught_up=True, max_runtime_s=180)

    assert processor.metrics.pauses._value.get() > 0, "the backlog should need alignment"
    published = {(w.region, w.window_start): w for w in window_stats(kafka_settings)}
    expected = Counter(
        (r.region, format_ts(r.event_time.replace(second=0, microsecond=0))) for r in records
    )
    assert {k: w.count + w.late for k, w in published.items()} == {
        k: n for k, n in expected.items() if k in published
    }
    # only the last windows may still be open: no later reading moves the watermark (the
    # newest reading minus 30 s of lateness, on the partition that is least far) past them
    last_two_minutes = sorted({start for _, start in expected})[-2:]
    assert {start for _, start in set(expected) - set(published)} <= set(last_two_minutes)
