"""Stream memory over a long run: is the stream's state bounded by open windows, not history?

Preloads readings (default 10,000,000: 1,000 sensors in 20 regions, one reading per sensor
per minute, so about a week of event time) into a broker of its own, then runs
`climatewatch stream --until-caught-up` as its own process from offset 0 to the end,
sampling its resident memory at every tenth of the way. Baseline in the same run: the
peak RSS of a bare kafka-python consume + orjson loop (its own process) over the same
data, with the same fetch sizes. Prints both peaks, their ratio, and the stream's RSS
along the way (flat when state is bounded). --quick: 1,000,000 readings; --json adds one
JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import bench_broker, bench_settings
from bench._common import bare_consume, peak_rss_mb, preload_timed, print_json, start_stream
from include.contract import format_epoch_ms, format_ts
from include.kafka_clients import make_admin, make_producer
from include.settings import Settings
from include.simulator import SimulationConfig, generate

REGIONS, SENSORS_PER_REGION, INTERVAL_S = 20, 50, 60


def minute_template(partitions: int) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """One minute of readings, encoded around their timestamp: (ms into the minute,
    partition, key, value before the timestamp, value after it)."""
    from kafka.partitioner.default import murmur2

    origin = datetime(2026, 11, 1, tzinfo=UTC)
    config = SimulationConfig(
        regions=REGIONS,
        sensors_per_region=SENSORS_PER_REGION,
        start=origin,
        rate=0,
        interval_s=INTERVAL_S,
        count=REGIONS * SENSORS_PER_REGION,
    )
    template = []
    for record in generate(config):
        ms = (record.event_time - origin) // timedelta(milliseconds=1)
        before, after = record.value.split(format_ts(record.event_time).encode(), 1)
        partition = (murmur2(record.key) & 0x7FFFFFFF) % partitions
        template.append((ms, partition, record.key, before, after))
    return template


def preload_share(settings: Settings, total: int, mine: list[int], start_ms: int) -> None:
    """Send this process's partitions' share of ``total`` readings, minute after minute."""
    template = [t for t in minute_template(settings.readings_partitions) if t[1] in mine]
    producer = make_producer(settings, linger_ms=20, batch_size=512 * 1024)
    send, topic = producer.send, settings.topic_readings
    for minute in range(total // (REGIONS * SENSORS_PER_REGION)):
        base = start_ms + minute * INTERVAL_S * 1000
        for ms, partition, key, before, after in template:
            value = before + format_epoch_ms(base + ms).encode() + after
            send(topic, value=value, key=key, partition=partition)
    producer.flush(timeout=600)
    producer.close()


def preload(settings: Settings, total: int, processes: int = 2) -> None:
    start_ms = int(time.time() * 1000) - (total // (REGIONS * SENSORS_PER_REGION) + 60) * 60_000
    shares = [list(range(settings.readings_partitions))[i::processes] for i in range(processes)]
    ctx = mp.get_context("spawn")
    workers = [
        ctx.Process(target=preload_share, args=(settings, total, s, start_ms)) for s in shares
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"a preload process failed with exit code {worker.exitcode}")


def measure_bare_loop(settings: Settings, total: int) -> float:
    """Peak RSS of the bare consume loop over the ``total`` readings, in its own process."""
    ctx = mp.get_context("spawn")
    process = ctx.Process(target=bare_consume, args=(settings, total))
    process.start()
    peak = 0.0
    while process.is_alive():
        try:
            peak = max(peak, peak_rss_mb(process.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.2)
    process.join()
    return peak


def consumed(admin: Any, settings: Settings, group: str) -> int:
    """Readings the stream has committed so far (0 while its group is still forming)."""
    from kafka.errors import KafkaError

    try:
        offsets = admin.list_group_offsets([group]).get(group, {})
    except KafkaError:
        return 0
    return sum(
        meta.offset
        for tp, meta in offsets.items()
        if tp.topic == settings.topic_readings and meta is not None and meta.offset > 0
    )


def measure_stream(settings: Settings, total: int) -> dict[str, Any]:
    started = time.monotonic()
    stream = start_stream(settings, "--until-caught-up")
    admin = make_admin(settings)
    along: dict[int, float] = {}
    peak = 0.0
    next_check = 0.0
    while stream.poll() is None:
        try:
            rss = (
                float(
                    next(
                        line.split()[1]
                        for line in Path(f"/proc/{stream.pid}/status").read_text().splitlines()
                        if line.startswith("VmRSS:")
                    )
                )
                / 1024
            )
            peak = max(peak, peak_rss_mb(stream.pid))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            break
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 2.0
            done = consumed(admin, settings, settings.stream_group_id)
            tenth = min(10, done * 10 // total)
            along.setdefault(tenth, rss)
            print(
                f"\r  stream: {done:,} of {total:,} readings, RSS {rss:,.0f} MB", end="", flush=True
            )
        time.sleep(0.2)
    print()
    admin.close()
    if stream.returncode:
        raise SystemExit(f"the stream exited with {stream.returncode}")
    return {"peak": peak, "along": along, "elapsed": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--readings", type=int)
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    args = parser.parse_args()
    wanted = args.readings or (1_000_000 if args.quick else 10_000_000)
    total = wanted - wanted % (REGIONS * SENSORS_PER_REGION)  # whole minutes of the network

    with bench_broker() as (broker, tmp):
        settings = bench_settings(broker, tmp)
        preload_timed(preload, settings, total)
        bare_peak = measure_bare_loop(settings, total)
        stream = measure_stream(settings, total)

    print()
    print(f"| stream memory, {total:,} readings, 1,000 sensors, 20 regions | value |")
    print("|---|---|")
    print(f"| stream peak RSS (MB) (target < 250) | {stream['peak']:,.0f} |")
    print(f"| baseline: bare consume loop peak RSS (MB) | {bare_peak:,.0f} |")
    print(f"| ratio stream / bare loop | {stream['peak'] / bare_peak:.2f} |")
    along = " / ".join(f"{stream['along'][k]:,.0f}" for k in sorted(stream["along"]) if 0 < k < 10)
    print(f"| stream RSS at each tenth of the run (MB) | {along} |")
    print(f"| stream rate (readings/s, incl. start) | {total / stream['elapsed']:,.0f} |")
    if args.json:
        print_json(figures(total, bare_peak, stream))


def figures(total: int, bare_peak: float, stream: dict[str, Any]) -> dict[str, Any]:
    """What :func:`main` prints, for ``--json`` (None for an RSS that could not be read)."""

    def mb(value: float) -> float | None:
        return round(value, 1) if math.isfinite(value) else None

    peak = stream["peak"]
    measured = math.isfinite(peak) and math.isfinite(bare_peak)
    return {
        "readings": total,
        "stream_peak_rss_mb": mb(peak),
        "bare_peak_rss_mb": mb(bare_peak),
        "ratio_peak_rss_stream_over_bare": round(peak / bare_peak, 3) if measured else None,
        "stream_peak_rss_target_mb": 250,
        "stream_peak_rss_target_met": peak < 250 if math.isfinite(peak) else None,
        "stream_rss_at_tenths_mb": [
            mb(stream["along"][k]) for k in sorted(stream["along"]) if 0 < k < 10
        ],
        "stream_readings_per_s": round(total / stream["elapsed"]),
        "stream_s": round(stream["elapsed"], 1),
    }


if __name__ == "__main__":
    main()
