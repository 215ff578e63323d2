"""What several benchmarks share: the stream as a subprocess and its alerts, the bare
consume loop of the baselines, peak RSS, and phases run in their own process.

Only the standard library is imported at module level: the phases that run in their own
process (archive_throughput, quality_validation, warehouse_recompute) measure their own
peak RSS, and importing this module must not add Kafka or pyarrow to it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from include.events import Alert
    from include.settings import Settings

# --- the stream with short windows (stream_latency.py, sustained_load.py) ---------------------
WINDOW_S, LATENESS_S = 2, 1

RULES = f"""
[windows]
size_seconds = {WINDOW_S}
allowed_lateness_seconds = {LATENESS_S}
[rules.heat]
threshold_c = 30.0
[rules.drastic_change]
delta_c = 8.0
windows_back = 2
"""


def write_rules(directory: Path) -> Path:
    """The short-window rules file (``RULES``) in ``directory``."""
    rules = directory / "rules.toml"
    rules.write_text(RULES)
    return rules


def start_stream(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    """``climatewatch stream ARGS`` as its own process on ``settings``, output discarded."""
    from include.ops.stack import settings_environment

    env = {**os.environ, **settings_environment(settings)}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("climatewatch")), "stream", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_stream(stream: subprocess.Popen[bytes]) -> None:
    stream.terminate()
    stream.wait(timeout=60)


def collect_alerts(
    settings: Settings, stop: threading.Event, arrivals: list[tuple[float, Alert]]
) -> None:
    """Append every alert arriving on the alerts topic with its arrival time, until stopped."""
    from kafka import TopicPartition

    from include.events import Alert
    from include.kafka_clients import make_consumer

    # assigned, not subscribed: a group join can take seconds and miss the first alerts
    consumer = make_consumer(settings, fetch_max_wait_ms=5)
    partitions = [
        TopicPartition(settings.topic_alerts, p)
        for p in consumer.partitions_for_topic(settings.topic_alerts) or ()
    ]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)  # resolve "end" now, before the first alert can exist
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=50).values():
            now = time.time()
            arrivals.extend((now, Alert.from_json(r.value)) for r in batch)
    consumer.close()


class AlertWatcher:
    """The alerts topic watched in a thread from now on: ``arrivals`` gets (arrival time,
    alert) for every alert."""

    def __init__(self, settings: Settings) -> None:
        self.arrivals: list[tuple[float, Alert]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=collect_alerts, args=(settings, self._stop, self.arrivals)
        )
        self._thread.start()

    def finish(self) -> list[tuple[float, Alert]]:
        """Once the load is over: wait for the last windows to close and their alerts to
        arrive, then stop watching; returns the arrivals."""
        time.sleep(WINDOW_S + LATENESS_S + 3)
        self._stop.set()
        self._thread.join(timeout=30)
        return self.arrivals


def alert_latencies(
    arrivals: list[tuple[float, Alert]], closing_sent: dict[int, float]
) -> list[float]:
    """Latency of each alert: its arrival minus when the reading that closed its window was
    sent. ``closing_sent``: event second -> wall time its first reading was sent; the
    closing reading is the first one at or past the window's end + lateness."""
    latencies = []
    for arrived, alert in arrivals:
        closing_event = (
            datetime.fromisoformat(alert.window_end.replace("Z", "+00:00")).timestamp() + LATENESS_S
        )
        second = (
            int(closing_event) if closing_event == int(closing_event) else int(closing_event) + 1
        )
        sent_at = closing_sent.get(second)
        if sent_at is not None:
            latencies.append(arrived - max(sent_at, closing_event))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- memory -------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` so far (``VmHWM``, /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- figures for --json ---------------------------------------------------------------------
def print_json(figures: dict[str, Any]) -> None:
    """Every benchmark's ``--json``: its figures as one JSON object on the last line of its
    output (rates, ratios, percentiles, RSS), so runs can be compared by a script."""
    print(json.dumps(figures, sort_keys=True, default=str), flush=True)


# --- the bare consume loop of the baselines -------------------------------------------------
def stream_fetch() -> dict[str, int]:
    """The stream's own fetch settings: a baseline that fetched more per request would
    not compare like with like."""
    from streaming.processor import CONSUMER_OPTIONS

    keys = ("max_poll_records", "fetch_max_bytes", "max_partition_fetch_bytes")
    return {key: CONSUMER_OPTIONS[key] for key in keys}


def readings_from_start(settings: Settings, **config: Any) -> KafkaConsumer:
    """A consumer assigned every partition of the readings topic, at its beginning."""
    from kafka import TopicPartition

    from include.kafka_clients import make_consumer

    consumer = make_consumer(settings, **config)
    partitions = [
        TopicPartition(settings.topic_readings, p) for p in range(settings.readings_partitions)
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def bare_consume(settings: Settings, total: int) -> float:
    """Consume ``total`` readings from offset 0 and decode each (orjson); returns the seconds
    the loop took."""
    import orjson

    consumer = readings_from_start(settings, **stream_fetch())
    seen = 0
    started = time.perf_counter()
    while seen < total:
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                orjson.loads(record.value)
            seen += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def preload_timed(preload: Callable[[Settings, int], None], settings: Settings, total: int) -> None:
    """``preload(settings, total)``, then say how long it took."""
    t0 = time.perf_counter()
    preload(settings, total)
    print(f"preloaded {total:,} readings in {time.perf_counter() - t0:.0f} s", flush=True)


# --- phases in their own process ------------------------------------------------------------
def run_phase_process(
    script: str,
    phase: str,
    *options: str,
    timeout_s: float | None = None,
    stderr_chars: int | None = None,
) -> dict[str, Any]:
    """``python SCRIPT --phase PHASE OPTIONS…`` in its own process (so that its peak RSS is
    its own); returns the JSON object it prints last. A failure exits with its stderr (the
    last ``stderr_chars`` of it, if given)."""
    done = subprocess.run(
        [sys.executable, script, "--phase", phase, *options],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        stderr = done.stderr if stderr_chars is None else done.stderr[-stderr_chars:]
        raise SystemExit(f"phase {phase} failed:\n{stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def hop_probe(settings: Settings, topic: str, ready: Any, stop: Any, results: Any) -> None:
    """One Kafka hop, the latency baseline (run in its own process): the age of each record
    of ``topic`` when a bare consumer's poll returns it, from produce time; its own group,
    from the latest offset. Puts the list of ages (s) on ``results`` once ``stop`` is set."""
    import uuid

    from include.kafka_clients import make_consumer

    consumer = make_consumer(
        settings, topic, group_id=f"bench-hop-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest"
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    for tp in consumer.assignment():
        consumer.position(tp)  # resolve "latest" now, before the first record is sent
    ready.set()
    ages: list[float] = []
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=20).values():
            now = time.time()
            ages.extend(now - record.timestamp / 1000 for record in batch)
    results.put(ages)
    consumer.close()
