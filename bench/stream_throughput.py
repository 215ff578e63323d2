"""Stream throughput: the ClimateWatch stream against a bare consume loop and Quix Streams.

Preloads readings (1,000 sensors, 20 regions, 6 partitions) into a broker of its own,
then measures in the same run, on the same data from offset 0 to the end:
  (a) a bare kafka-python loop that consumes and JSON-decodes (orjson), with the stream's
      own fetch settings,
  (b) the ClimateWatch stream (validation, two-stage windows, rules, outputs, commits),
  (c) the same windowed mean per region with Quix Streams (a peer library; it lives in
      its own virtualenv, bench/.venv-quix, because it pins Airflow's dependencies lower),
  (d) the ceiling: Kafka's own Java consumer (kafka-consumer-perf-test), same fetch
      settings, consuming only.
Prints the rates and the ratios b/a, b/c and b/d.  --quick: 100,000 readings; --no-quix
skips (c); --json adds one JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import bench_broker, bench_settings
from bench._common import (
    bare_consume,
    own_peak_rss_mb,
    preload_timed,
    print_json,
    readings_from_start,
    stream_fetch,
)
from bench._java_tools import java_consumer_rate
from include.kafka_clients import make_producer
from include.simulator import SimulationConfig, generate
from include.topics import ensure_topics

QUIX_VENV = Path(__file__).resolve().parent / ".venv-quix"
QUIX_VERSION = "3.28.1"

QUIX_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from datetime import timedelta
    from quixstreams import Application
    from quixstreams.dataframe.windows import Mean

    bootstrap, topic_name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = Application(broker_address=bootstrap, consumer_group="bench-quix", auto_offset_reset="earliest",
                      loglevel="WARNING", state_dir=sys.argv[4])
    seen = [0]
    started = [None]

    def event_time(value, headers, timestamp, timestamp_type):
        return value["_ms"]

    topic = app.topic(topic_name, value_deserializer="json", timestamp_extractor=event_time)
    sdf = app.dataframe(topic)

    def count(value):
        if started[0] is None:
            started[0] = time.perf_counter()
        seen[0] += 1
        if seen[0] >= total:
            print(f"QUIX {seen[0]} {time.perf_counter() - started[0]:.3f}", flush=True)
            app.stop()
        return value

    sdf = sdf.update(count)
    sdf = sdf.group_by("region")
    sdf = sdf.tumbling_window(timedelta(minutes=1), grace_ms=30_000).agg(mean=Mean("temperature_c")).final()
    app.run()
    """
)


def preload(settings, total: int) -> None:
    start = datetime.now(UTC) - timedelta(days=2)
    config = SimulationConfig(
        regions=20, sensors_per_region=50, start=start, rate=0, interval_s=60, count=total
    )
    producer = make_producer(settings, linger_ms=20, batch_size=512 * 1024)
    for record in generate(config):
        producer.send(settings.topic_readings, key=record.key, value=record.value)
    producer.flush(timeout=300)
    producer.close()


def bare_loop(settings, total: int) -> float:
    return total / bare_consume(settings, total)


def climatewatch_stream(settings, total: int) -> float:
    from streaming.processor import StreamProcessor

    processor = StreamProcessor(settings)
    started = time.perf_counter()
    processor.run(until_caught_up=True)
    elapsed = time.perf_counter() - started
    return total / elapsed


def quix(settings, total: int) -> float | str:
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {QUIX_VENV} with quixstreams {QUIX_VERSION} (once) …", flush=True)
        venv.create(QUIX_VENV, with_pip=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}", "orjson"],
            capture_output=True,
            text=True,
        )
        if install.returncode:
            return f"not run: pip install quixstreams failed ({install.stderr.strip().splitlines()[-1:]})"
    # Quix reads the event time from the value: give it a copy of the data with epoch ms
    import orjson

    topic = settings.topic_readings + "-quix"
    ensure_topics(settings.model_copy(update={"topic_readings": topic}))
    consumer = readings_from_start(settings)
    producer = make_producer(settings, linger_ms=20, batch_size=512 * 1024)
    copied = 0
    while copied < total:
        for tp, batch in consumer.poll(timeout_ms=500).items():
            for record in batch:
                body = orjson.loads(record.value)
                body["_ms"] = int(datetime.fromisoformat(body["ts"]).timestamp() * 1000)
                producer.send(
                    topic, key=record.key, value=orjson.dumps(body), partition=tp.partition
                )
            copied += len(batch)
    producer.flush(timeout=300)
    consumer.close()
    with tempfile.TemporaryDirectory() as state_dir:
        run = subprocess.run(
            [
                str(python),
                "-c",
                QUIX_SCRIPT,
                settings.bootstrap_servers,
                topic,
                str(total),
                state_dir,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    for line in run.stdout.splitlines():
        if line.startswith("QUIX "):
            _, seen, elapsed = line.split()
            return int(seen) / float(elapsed)
    return f"not run: {(run.stderr or run.stdout).strip().splitlines()[-1:] or run.returncode}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-quix", action="store_true")
    parser.add_argument("--readings", type=int)
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    args = parser.parse_args()
    total = args.readings or (100_000 if args.quick else 1_000_000)

    with bench_broker() as (broker, tmp):
        settings = bench_settings(broker, tmp)
        preload_timed(preload, settings, total)
        a = bare_loop(settings, total)
        b = climatewatch_stream(settings, total)
        peak_mb = own_peak_rss_mb()
        d = java_consumer_rate(settings, settings.topic_readings, total, stream_fetch())
        c = "skipped (--no-quix)" if args.no_quix else quix(settings, total)

    def rate(value: float | str) -> str:
        return value if isinstance(value, str) else f"{value:,.0f}"

    def ratio(value: float | str) -> str:
        return "n/a" if isinstance(value, str) else f"{b / value:.2f}"

    fetch = ", ".join(f"{k}={v:,}" for k, v in stream_fetch().items())

    print()
    print(
        f"| stream throughput, {total:,} readings, 6 partitions, 1,000 sensors, 20 regions | readings/s |"
    )
    print("|---|---|")
    print(f"| (a) bare kafka-python consume + orjson decode ({fetch}) | {a:,.0f} |")
    print(f"| (b) ClimateWatch stream (validate, windows, rules, outputs, commits) | {b:,.0f} |")
    print(f"| (c) Quix Streams {QUIX_VERSION}, windowed mean per region | {rate(c)} |")
    print(
        f"| (d) ceiling: Kafka's Java consumer (kafka-consumer-perf-test), consume only | {rate(d)} |"
    )
    print(f"| ratio b/a (target >= 0.6) | {b / a:.2f} |")
    print(f"| ratio b/c (target >= 3) | {ratio(c)} |")
    print(f"| ratio b/d | {ratio(d)} |")
    print(f"| peak RSS of this process (a and b) | {peak_mb:,.0f} MB |")
    if args.json:
        numbers = {"a": a, "b": b, "c": c, "d": d}
        print_json(
            {
                "readings": total,
                "fetch": stream_fetch(),
                "bare_readings_per_s": round(a),
                "stream_readings_per_s": round(b),
                "quix_readings_per_s": None if isinstance(c, str) else round(c),
                "java_ceiling_readings_per_s": None if isinstance(d, str) else round(d),
                "b_over_a": round(b / a, 3),
                "b_over_quix": None if isinstance(c, str) else round(b / c, 3),
                "b_over_java": None if isinstance(d, str) else round(b / d, 3),
                "b_over_a_target_met": b / a >= 0.6,
                "not_run": {k: v for k, v in numbers.items() if isinstance(v, str)},
                "peak_rss_mb": round(peak_mb),
            }
        )


if __name__ == "__main__":
    main()
