"""Alert latency and memory of the stream under a steady real-time load.

A producer sends readings in real time (default 5,000/s, 1,000 sensors in 20 regions)
while ten regions toggle between normal and a heat wave, on three staggered phases; the
stream runs as its own process (`climatewatch stream`) with short windows so that many
alerts fire (about 120 in 30 s: enough for a p99 that is not just the maximum).
Latency of an alert = its arrival on temperature-alerts minus the produce time of the
first reading whose event time moved the watermark past the alert's window end (the
reading that closed the window). Baseline in the same run, under the same load: how long
Kafka takes to deliver the readings to a bare kafka-python consumer (its own process,
produce time → poll returns it). That is one hop; an alert takes three (readings →
stage 1 → partials → stage 2 → alerts → the watcher). Also prints the stream's peak RSS.
--quick: 30 s; default 120 s. --rate to change the load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import start_bench_broker
from include.contract import Reading, reading_key, serialize_reading
from include.events import Alert
from include.kafka_clients import make_consumer, make_producer
from include.ops.stack import settings_environment
from include.settings import load_settings
from include.topics import ensure_topics

WINDOW_S, LATENESS_S, TOGGLE_S = 2, 1, 6
TOGGLING_REGIONS = 10  # r00..r09, their heat waves starting 0, 2 or 4 s into a toggle


def is_hot(region_index: int, seconds_in: float) -> bool:
    if region_index >= TOGGLING_REGIONS:
        return False
    phase = (region_index % (TOGGLE_S // WINDOW_S)) * WINDOW_S
    return int(seconds_in + phase) // TOGGLE_S % 2 == 1


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def collect_alerts(
    settings: Any, stop: threading.Event, arrivals: list[tuple[float, Alert]]
) -> None:
    """Append every alert arriving on the alerts topic with its arrival time, until stopped."""
    from kafka import TopicPartition

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


def delivery_probe(settings: Any, ready: Any, stop: Any, results: Any) -> None:
    """The baseline: age of each reading when a bare consumer's poll returns it."""
    consumer = make_consumer(
        settings, settings.topic_readings, group_id="bench-delivery", auto_offset_reset="latest"
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    ready.set()
    ages: list[float] = []
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=20).values():
            now = time.time()
            ages.extend(now - record.timestamp / 1000 for record in batch)
    results.put((statistics.median(ages), percentile(ages, 0.99)) if ages else None)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    seconds = args.seconds or (30.0 if args.quick else 120.0)

    with tempfile.TemporaryDirectory() as tmp:
        broker = start_bench_broker(Path(tmp))
        stream = None
        try:
            rules = Path(tmp) / "rules.toml"
            rules.write_text(RULES)
            settings = load_settings(
                bootstrap_servers=broker.bootstrap,
                data_dir=Path(tmp) / "data",
                metrics_port=0,
                rules_file=rules,
                idle_timeout_s=5,
            )
            ensure_topics(settings)
            env = {**os.environ, **settings_environment(settings)}
            stream = subprocess.Popen(
                [str(Path(sys.executable).with_name("climatewatch")), "stream"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(8)  # group joins

            arrivals: list[tuple[float, Alert]] = []
            stop = threading.Event()

            watcher = threading.Thread(target=collect_alerts, args=(settings, stop, arrivals))
            watcher.start()
            ctx = mp.get_context("spawn")
            probe_ready, probe_stop, probe_results = ctx.Event(), ctx.Event(), ctx.Queue()
            probe = ctx.Process(
                target=delivery_probe, args=(settings, probe_ready, probe_stop, probe_results)
            )
            probe.start()
            probe_ready.wait(timeout=60)
            time.sleep(3)

            producer = make_producer(settings, linger_ms=1)
            sensors = [(f"r{r:02d}-{s:03d}", f"r{r:02d}", r) for r in range(20) for s in range(50)]
            first_send_at_second: dict[
                int, float
            ] = {}  # event second -> wall time of its first reading
            started = time.time()
            sent = 0
            while time.time() - started < seconds:
                now = time.time()
                due = int((now - started) * args.rate)
                while sent < due:
                    sensor, region, index = sensors[sent % len(sensors)]
                    hot = is_hot(index, now - started)
                    reading = Reading(
                        sensor, region, datetime.fromtimestamp(now, UTC), 36.0 if hot else 15.0
                    )
                    producer.send(
                        settings.topic_readings,
                        key=reading_key(reading),
                        value=serialize_reading(reading),
                    )
                    first_send_at_second.setdefault(int(now), now)
                    sent += 1
                time.sleep(0.001)
            producer.flush(timeout=60)
            time.sleep(WINDOW_S + LATENESS_S + 3)
            stop.set()
            watcher.join(timeout=30)
            rss = peak_rss_mb(stream.pid)

            probe_stop.set()
            baseline = probe_results.get(timeout=120)
            probe.join(timeout=30)
            producer.close()
        finally:
            if stream is not None:
                stream.terminate()
                stream.wait(timeout=60)
            broker.stop()

    latencies = []
    for arrived, alert in arrivals:
        closing_event = (
            datetime.fromisoformat(alert.window_end.replace("Z", "+00:00")).timestamp() + LATENESS_S
        )
        sent_at = first_send_at_second.get(
            int(closing_event) if closing_event == int(closing_event) else int(closing_event) + 1
        )
        if sent_at is not None:
            latencies.append(arrived - max(sent_at, closing_event))
    print()
    print(
        f"| alert latency at {args.rate:,.0f} readings/s for {seconds:.0f} s ({sent:,} readings) | value |"
    )
    print("|---|---|")
    print(f"| alerts measured | {len(latencies)} |")
    if latencies:
        print(f"| p50 (ms) | {1000 * statistics.median(latencies):,.0f} |")
        print(f"| p99 (ms) (target < 100) | {1000 * percentile(latencies, 0.99):,.0f} |")
    hop_p50, hop_p99 = baseline or (float("nan"), float("nan"))
    print(
        f"| baseline: one Kafka hop under this load, p50 / p99 (ms) | "
        f"{1000 * hop_p50:.1f} / {1000 * hop_p99:.1f} |"
    )
    if latencies and baseline:
        print(
            f"| ratio alert p99 / one hop p99 (an alert takes three hops) | "
            f"{percentile(latencies, 0.99) / hop_p99:.1f} |"
        )
    print(f"| stream peak RSS (MB) (target < 250) | {rss:,.0f} |")


if __name__ == "__main__":
    main()
