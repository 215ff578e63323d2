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
--quick: 30 s; default 120 s. --rate to change the load. --json adds one JSON object of
the figures (alert_p50_ms, alert_p99_ms, hop_p50_ms, hop_p99_ms, ...) as the last line.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import bench_broker, bench_settings
from bench._common import (
    WINDOW_S,
    AlertWatcher,
    alert_latencies,
    hop_probe,
    peak_rss_mb,
    percentile,
    print_json,
    start_stream,
    stop_stream,
    write_rules,
)
from include.contract import Reading, reading_key, serialize_reading
from include.events import Alert
from include.kafka_clients import make_producer

TOGGLE_S = 6  # WINDOW_S and LATENESS_S: the short windows of bench/_common.py
TOGGLING_REGIONS = 10  # r00..r09, their heat waves starting 0, 2 or 4 s into a toggle


def is_hot(region_index: int, seconds_in: float) -> bool:
    if region_index >= TOGGLING_REGIONS:
        return False
    phase = (region_index % (TOGGLE_S // WINDOW_S)) * WINDOW_S
    return int(seconds_in + phase) // TOGGLE_S % 2 == 1


@dataclass
class Run:
    """What one run measured."""

    sent: int  # readings produced
    first_send_at_second: dict[int, float]  # event second -> wall time of its first reading
    arrivals: list[tuple[float, Alert]]  # (arrival time, alert)
    baseline: tuple[float, float] | None  # one Kafka hop, p50 and p99 (s)
    rss: float  # the stream's peak RSS (MB)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    return parser.parse_args()


def start_probe(settings: Any) -> tuple[Any, Any, Any, Any]:
    """The baseline's consumer in its own process: (process, ready, stop, results)."""
    ctx = mp.get_context("spawn")
    probe_ready, probe_stop, probe_results = ctx.Event(), ctx.Event(), ctx.Queue()
    probe = ctx.Process(
        target=hop_probe,
        args=(settings, settings.topic_readings, probe_ready, probe_stop, probe_results),
    )
    probe.start()
    return probe, probe_ready, probe_stop, probe_results


def produce(
    producer: Any, settings: Any, rate: float, seconds: float
) -> tuple[int, dict[int, float]]:
    """Readings in real time at ``rate`` for ``seconds``, ten regions toggling hot:
    (readings sent, event second -> wall time of its first reading)."""
    sensors = [(f"r{r:02d}-{s:03d}", f"r{r:02d}", r) for r in range(20) for s in range(50)]
    first_send_at_second: dict[int, float] = {}  # event second -> wall time of its first reading
    started = time.time()
    sent = 0
    while time.time() - started < seconds:
        now = time.time()
        due = int((now - started) * rate)
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
    return sent, first_send_at_second


def measure(broker: Any, tmp: Path, rate: float, seconds: float) -> Run:
    """The stream, the alert watcher and the delivery probe under the load."""
    stream = None
    try:
        settings = bench_settings(broker, tmp, rules_file=write_rules(tmp))
        stream = start_stream(settings)
        time.sleep(8)  # group joins

        watcher = AlertWatcher(settings)
        probe, probe_ready, probe_stop, probe_results = start_probe(settings)
        probe_ready.wait(timeout=60)
        time.sleep(3)

        producer = make_producer(settings, linger_ms=1)
        sent, first_send_at_second = produce(producer, settings, rate, seconds)
        producer.flush(timeout=60)
        arrivals = watcher.finish()
        rss = peak_rss_mb(stream.pid)

        probe_stop.set()
        ages = probe_results.get(timeout=120)
        baseline = (statistics.median(ages), percentile(ages, 0.99)) if ages else None
        probe.join(timeout=30)
        producer.close()
    finally:
        if stream is not None:
            stop_stream(stream)
    return Run(sent, first_send_at_second, arrivals, baseline, rss)


def print_table(rate: float, seconds: float, run: Run) -> None:
    latencies = alert_latencies(run.arrivals, run.first_send_at_second)
    baseline = run.baseline
    print()
    print(
        f"| alert latency at {rate:,.0f} readings/s for {seconds:.0f} s ({run.sent:,} readings) | value |"
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
            f"| ratio alert p50 / one hop p50 (target <= 2) | "
            f"{statistics.median(latencies) / hop_p50:.1f} |"
        )
        print(
            f"| ratio alert p99 / one hop p99 (target <= 2; an alert takes three hops) | "
            f"{percentile(latencies, 0.99) / hop_p99:.1f} |"
        )
    print(f"| stream peak RSS (MB) (target < 250) | {run.rss:,.0f} |")


def figures(rate: float, seconds: float, run: Run) -> dict[str, Any]:
    """What :func:`print_table` prints, for ``--json`` (milliseconds; None when unmeasured)."""
    latencies = alert_latencies(run.arrivals, run.first_send_at_second)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(1000 * value, 1)

    alert_p50 = statistics.median(latencies) if latencies else None
    alert_p99 = percentile(latencies, 0.99) if latencies else None
    hop_p50, hop_p99 = run.baseline or (None, None)
    both = alert_p50 is not None and hop_p50
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "readings": run.sent,
        "alerts_measured": len(latencies),
        "alert_p50_ms": ms(alert_p50),
        "alert_p99_ms": ms(alert_p99),
        "hop_p50_ms": ms(hop_p50),
        "hop_p99_ms": ms(hop_p99),
        "p50_over_hop": round(alert_p50 / hop_p50, 2) if both else None,
        "p99_over_hop": round(alert_p99 / hop_p99, 2) if both and hop_p99 else None,
        "stream_peak_rss_mb": round(run.rss),
    }


def main() -> None:
    args = parse_args()
    seconds = args.seconds or (30.0 if args.quick else 120.0)
    with bench_broker() as (broker, tmp):
        run = measure(broker, tmp, args.rate, seconds)
    print_table(args.rate, seconds, run)
    if args.json:
        print_json(figures(args.rate, seconds, run))


if __name__ == "__main__":
    main()
