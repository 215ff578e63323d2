"""Archive throughput: the archiver writing Parquet vs a bare kafka-python consume loop.

Loads N readings (2,000,000; ``--quick``: 200,000) into a local broker this script
starts on free ports in a temporary directory, then measures, each in its own process
so that peak RSS is its own:

(a) baseline: a bare kafka-python loop that consumes every record and decodes its JSON;
(b) the archiver (``warehouse.archive.run.archive_topic``) validating every record with the
    reading contract and writing the Hive-partitioned Parquet archive and its ledger,
    in one process with the default batch size, with a smaller one (peak RSS follows
    the batch size, not the backlog), and with two partitions at a time in two
    processes (what the DAG's mapped tasks do).

Library imports are done before either clock starts.

Prints records/s of each, b/a (target >= 0.6) and peak RSS; ``--json`` adds one JSON
object of these figures as the last line.

    .venv/bin/python bench/archive_throughput.py [--quick] [--records N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import print_json, run_phase_process  # noqa: E402 (needs sys.path)

warnings.filterwarnings("ignore", category=DeprecationWarning)

TARGET = 0.6


def peak_rss_mb() -> float:
    """Peak RSS of this process, or of its largest worker process if that is larger."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def bench_settings(bootstrap: str, topic: str, data_dir: str):  # -> Settings
    from include.settings import load_settings

    return load_settings(
        bootstrap_servers=bootstrap,
        topic_readings=topic,
        topic_alerts=f"{topic}-alerts",
        topic_window_stats=f"{topic}-stats",
        topic_dlq=f"{topic}.dlq",
        data_dir=data_dir,
    )


def load(settings, count: int) -> float:  # type: ignore[no-untyped-def]
    """Produce ``count`` readings (10 regions x 50 sensors, 10 s apart); returns seconds."""
    from datetime import UTC, datetime

    import orjson

    from include.kafka_clients import make_producer

    start = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    sensors = [(f"region-{r:02d}-{s:03d}".encode(), f"region-{r:02d}") for r in range(10) for s in range(50)]  # fmt: skip
    producer = make_producer(settings, linger_ms=50, batch_size=512 * 1024)
    began = time.perf_counter()
    for i in range(count):
        key, region = sensors[i % len(sensors)]
        ts = start + (i // len(sensors)) * 10
        value = orjson.dumps(
            {
                "schema_version": 1,
                "sensor_id": key.decode(),
                "region": region,
                "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
                "temperature_c": round(10 + (i % 200) / 10, 1),
                "humidity_pct": 70.0,
                "pressure_hpa": 1013.2,
            }
        )
        producer.send(settings.topic_readings, key=key, value=value)
    producer.flush(timeout=600)
    producer.close(timeout=30)
    return time.perf_counter() - began


def phase_bare(settings) -> dict:  # type: ignore[no-untyped-def]
    """(a): consume every partition from the beginning and json-decode each value."""
    import orjson
    from kafka import TopicPartition

    from warehouse.archive.run import make_archive_consumer

    consumer = make_archive_consumer(settings)
    topic = settings.topic_readings
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    consumer.seek_to_beginning(*tps)
    total = sum(ends.values())
    seen = 0
    loads = orjson.loads
    began = time.perf_counter()
    while seen < total:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                loads(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - began
    consumer.close()
    return {"records": seen, "seconds": elapsed, "rss_mb": peak_rss_mb()}


def phase_archive(settings, batch_records: int, workers: int) -> dict:  # type: ignore[no-untyped-def]
    """(b): the archiver, every partition, into a fresh archive."""
    import pyarrow as pa
    import pyarrow.parquet

    from warehouse.archive.run import archive_topic

    pa.array(["warm up"])  # library imports and first-use set-up: excluded like in (a)
    began = time.perf_counter()
    results = archive_topic(
        settings, settings.topic_readings, batch_records=batch_records, workers=workers
    )
    elapsed = time.perf_counter() - began
    files = sum(r.files for r in results)
    records = sum(r.rows + r.rejected for r in results)
    return {"records": records, "seconds": elapsed, "rss_mb": peak_rss_mb(), "files": files}


def run_phase(
    args: argparse.Namespace, phase: str, data_dir: str, batch_records: int = 0, workers: int = 1
) -> dict:
    options = [
        "--bootstrap", args.bootstrap, "--topic", args.topic, "--data-dir", data_dir,
        "--batch-records", str(batch_records), "--workers", str(workers),
    ]  # fmt: skip
    return run_phase_process(__file__, phase, *options, timeout_s=3600, stderr_chars=3000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each measurement (best kept)"
    )
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    parser.add_argument("--phase", choices=["bare", "archive"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", default="bench-archive", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--batch-records", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args()


def measure_phase(args: argparse.Namespace) -> int:
    """A measurement in its own process: prints its result as one JSON line."""
    settings = bench_settings(args.bootstrap, args.topic, args.data_dir)
    if args.phase == "bare":
        result = phase_bare(settings)
    else:
        result = phase_archive(settings, args.batch_records, args.workers)
    print(json.dumps(result))
    return 0


def measure(args: argparse.Namespace, count: int) -> tuple[int, int, dict[str, dict]]:
    """Load ``count`` readings, then every phase ``repeat`` times: (default batch, small
    batch, the fastest run of each phase)."""
    from bench._broker import bench_broker
    from include.topics import ensure_topics

    with bench_broker(prefix="climatewatch-bench-") as (broker, tmp):
        args.bootstrap = broker.bootstrap
        args.data_dir = f"{tmp}/data"
        settings = bench_settings(args.bootstrap, args.topic, args.data_dir)
        ensure_topics(settings)
        print(f"loading {count:,} readings into {settings.readings_partitions} partitions…")
        load_s = load(settings, count)
        print(f"loaded in {load_s:.1f} s ({count / load_s:,.0f} records/s)")

        default_batch = settings.archive_batch_records
        small_batch = max(1, default_batch // 4)
        # each measurement `repeat` times, alternating, keeping the fastest: the
        # machine is shared, and a slow outlier says nothing about the code
        runs: dict[str, list[dict]] = {"bare": [], "b": [], "small": [], "parallel": []}
        for i in range(args.repeat):
            runs["bare"].append(run_phase(args, "bare", args.data_dir))
            runs["b"].append(run_phase(args, "archive", f"{tmp}/b{i}", default_batch))
            runs["small"].append(run_phase(args, "archive", f"{tmp}/s{i}", small_batch))
            runs["parallel"].append(
                run_phase(args, "archive", f"{tmp}/p{i}", default_batch, workers=2)
            )
    best = {name: min(results, key=lambda r: r["seconds"]) for name, results in runs.items()}
    return default_batch, small_batch, best


def print_table(count: int, default_batch: int, small_batch: int, best: dict[str, dict]) -> None:
    bare, archived, small, parallel = (best[name] for name in ("bare", "b", "small", "parallel"))
    for result in (bare, archived, small, parallel):
        if result["records"] != count:
            raise SystemExit(f"expected {count} records, a phase saw {result['records']}")
    rate_a = count / bare["seconds"]
    rows = [
        ("(a) bare consume + json decode", bare, "-"),
        (f"(b) archiver, batch {default_batch:,}", archived, archived["files"]),
        (f"(b') archiver, batch {small_batch:,}", small, small["files"]),
        (f'(b") archiver, 2 processes, batch {default_batch:,}', parallel, parallel["files"]),
    ]
    print()
    print(f"{'':44} {'records/s':>12} {'seconds':>8} {'b/a':>6} {'peak RSS MB':>12} {'files':>6}")
    for label, result, files in rows:
        rate = count / result["seconds"]
        ratio = "" if result is bare else f"{rate / rate_a:.2f}"
        print(
            f"{label:44} {rate:12,.0f} {result['seconds']:8.1f} {ratio:>6} "
            f"{result['rss_mb']:12.0f} {files!s:>6}"
        )
    ratio = (count / archived["seconds"]) / rate_a
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(
        f"\nb/a = {ratio:.2f}: {verdict} the target of {TARGET} ({count:,} readings, one process"
        f" archiving the partitions one after the other, like one mapped task per partition)"
    )


def figures(count: int, default_batch: int, small_batch: int, best: dict[str, dict]) -> dict:
    """What :func:`print_table` prints, for ``--json``."""
    bare_rate = count / best["bare"]["seconds"]
    out: dict = {
        "records": count,
        "default_batch_records": default_batch,
        "small_batch_records": small_batch,
        "bare_records_per_s": round(bare_rate),
        "bare_s": round(best["bare"]["seconds"], 2),
        "bare_peak_rss_mb": round(best["bare"]["rss_mb"], 1),
    }
    phases = {"b": "archive", "small": "archive_small_batch", "parallel": "archive_2_processes"}
    for name, prefix in phases.items():
        result = best[name]
        rate = count / result["seconds"]
        out |= {
            f"{prefix}_records_per_s": round(rate),
            f"{prefix}_s": round(result["seconds"], 2),
            f"{prefix}_ratio_over_bare": round(rate / bare_rate, 3),
            f"{prefix}_peak_rss_mb": round(result["rss_mb"], 1),
            f"{prefix}_files": result["files"],
        }
    out["ratio_target"] = TARGET
    out["ratio_target_met"] = count / best["b"]["seconds"] / bare_rate >= TARGET
    return out


def main() -> int:
    args = parse_args()
    if args.phase:  # a measurement in its own process
        return measure_phase(args)
    count = args.records or (200_000 if args.quick else 2_000_000)
    default_batch, small_batch, best = measure(args, count)
    print_table(count, default_batch, small_batch, best)
    if args.json:
        print_json(figures(count, default_batch, small_batch, best))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    sys.exit(main())
