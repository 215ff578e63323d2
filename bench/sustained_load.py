"""Sustained load: does the stream keep up with 20,000 readings/s for 10 minutes?

A broker of its own, the topics and the stream (`climatewatch stream`, its own process,
the short windows of stream_latency.py). Producer processes pace the simulator at
--rate readings/s in real time (1,000 sensors, 20 regions, 6 partitions; event time =
the wall time the reading is due): one cycle of the simulation (CYCLE_S seconds, with a
heat wave in one region every cycle, so alerts fire all along) is generated and encoded
ahead of time, and at send time only the timestamp is spliced into the value, the
partition is precomputed (same murmur2 as the default partitioner) — the cheapest
kafka-python producing there is. Producers are split by partition, so a sensor's
readings stay in order.

Every second: consumer lag of the stream's group (sum over partitions of the end offset
minus the committed offset, from the broker), the produce rate the broker actually got
(growth of the end offsets) and the stream's own counters (its /metrics). Alert latency
as in stream_latency.py: arrival on temperature-alerts minus the produce time of the
reading that closed the window (here: the last partition's first reading past the
window's end + lateness), p50/p99 under this load.

Baseline in the same run: a bare kafka-python consume loop (its own process, orjson
decode, commit every second) under the same producers for BASELINE_S; its max lag and
the ratio. --quick: 60 s of load (baseline 15 s); default 600 s (baseline 30 s).
--json adds one JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import bench_broker, bench_settings
from bench._common import (
    LATENESS_S,
    WINDOW_S,
    AlertWatcher,
    alert_latencies,
    peak_rss_mb,
    percentile,
    print_json,
    start_stream,
    stop_stream,
    stream_fetch,
    write_rules,
)
from include.contract import format_ts
from include.events import Alert
from include.kafka_clients import make_admin, make_consumer, make_producer
from include.processes import free_port
from include.regions import regions
from include.settings import Settings
from include.simulator import SimulationConfig, generate

REGIONS, SENSORS_PER_REGION = 20, 50
CYCLE_S, HEAT_AT_S, HEAT_FOR_S = 20, 6, 8  # one heat wave of HEAT_FOR_S in every cycle
COMMIT_INTERVAL_S = 1.0  # the stream commits every second (streaming/processor.py)


# --- producer processes -----------------------------------------------------------------
def second_templates(rate: float, partitions: int, mine: set[int]) -> list[list[tuple[Any, ...]]]:
    """One normal second and one heat-wave second of readings for partitions ``mine``,
    encoded: (offset in the second, partition, key, value before the timestamp, value after
    it, first reading of its partition in the second). A cycle repeats them."""
    from kafka.partitioner.default import murmur2

    origin = datetime(2026, 11, 1, 12, tzinfo=UTC)
    config = SimulationConfig(
        regions=REGIONS,
        sensors_per_region=SENSORS_PER_REGION,
        start=origin,
        rate=0,
        interval_s=REGIONS * SENSORS_PER_REGION / rate,
        count=int(2 * rate),
        heat_wave=regions(REGIONS)[0].name,
        heat_wave_at_s=1,  # second 0 normal, second 1 heat wave
        heat_wave_for_s=1,
    )
    partition_of: dict[bytes, int] = {}
    seconds: list[list[tuple[Any, ...]]] = [[], []]
    seen: set[tuple[int, int]] = set()
    for record in generate(config):
        p = partition_of.get(record.key)
        if p is None:
            p = partition_of[record.key] = (murmur2(record.key) & 0x7FFFFFFF) % partitions
        if p not in mine:
            continue
        offset = (record.event_time - origin) / timedelta(seconds=1)
        second = int(offset)
        ts = format_ts(record.event_time).encode()
        before, after = record.value.split(ts, 1)
        first = (second, p) not in seen
        seen.add((second, p))
        seconds[second].append((offset - second, p, record.key, before, after, first))
    return seconds


def heat_second(second: int) -> bool:
    return HEAT_AT_S <= second % CYCLE_S < HEAT_AT_S + HEAT_FOR_S


def producer_process(
    settings: Settings,
    rate: float,
    mine: list[int],
    duration_s: float,
    start_at: Any,
    go: Any,
    sent_counter: Any,
    results: Any,
) -> None:
    """Send this process's share of the readings, in real time, from ``start_at`` on."""
    normal, heat = second_templates(rate, settings.readings_partitions, set(mine))
    producer = make_producer(settings, linger_ms=5, batch_size=256 * 1024)
    topic = settings.topic_readings
    send = producer.send
    results.put(("ready", None))
    go.wait()
    cpu_started = time.process_time()
    t0 = start_at.value  # a whole second: event second k is t0 + k
    marks: dict[tuple[int, int], float] = {}  # (event second, partition) -> wall time sent
    sent = 0
    second = 0
    template = normal
    i = 0
    max_behind = 0.0
    while True:
        elapsed = time.time() - t0
        if elapsed >= duration_s:
            break
        n = len(template)
        if i < n and second + template[i][0] <= elapsed:
            max_behind = max(max_behind, elapsed - second - template[i][0])
        last_ms = -1
        ts = b""
        base = t0 + second
        while i < n and second + template[i][0] <= elapsed:
            offset, p, key, before, after, first = template[i]
            event_ms = int((base + offset) * 1000)
            if event_ms != last_ms:
                last_ms = event_ms
                ts = format_ts(datetime.fromtimestamp(event_ms / 1000, UTC)).encode()
            send(topic, value=before + ts + after, key=key, partition=p)
            if first:
                marks[(int(base), p)] = time.time()
            i += 1
        sent_counter.value = sent + i
        if i >= n:
            sent += n
            second += 1
            i = 0
            template = heat if heat_second(second) else normal
            continue
        ahead = base + template[i][0] - time.time()
        if ahead > 0:
            time.sleep(min(ahead, 0.002))
    sent += i
    producer.flush(timeout=120)
    producer.close(timeout=10)
    cpu_s = time.process_time() - cpu_started
    # per event second: when the last of this process's partitions got its first reading
    per_second: dict[int, list[float]] = {}
    for (event_second, _), at in marks.items():
        per_second.setdefault(event_second, []).append(at)
    closing = {s: max(times) for s, times in per_second.items() if len(times) == len(mine)}
    results.put(
        ("done", {"sent": sent, "closing": closing, "max_behind_s": max_behind, "cpu_s": cpu_s})
    )


class Producers:
    """``count`` producer processes sharing the partitions, started together."""

    def __init__(self, settings: Settings, rate: float, count: int, duration_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.start_at = ctx.Value("d", 0.0)
        self.go = ctx.Event()
        self.results = ctx.Queue()
        self.counters = [ctx.Value("q", 0, lock=False) for _ in range(count)]
        shares = [
            list(range(settings.readings_partitions))[k::count] for k in range(count)
        ]  # rate per process: its share of the sensors, paced on event time
        self.processes = [
            ctx.Process(
                target=producer_process,
                args=(
                    settings,
                    rate,
                    shares[k],
                    duration_s,
                    self.start_at,
                    self.go,
                    self.counters[k],
                    self.results,
                ),
                daemon=True,
            )
            for k in range(count)
        ]
        for process in self.processes:
            process.start()
        for _ in self.processes:  # generated and encoded ahead of time
            kind, _payload = self.results.get(timeout=600)
            assert kind == "ready"

    def start(self) -> float:
        t0 = float(int(time.time()) + 1)
        self.start_at.value = t0
        self.go.set()
        return t0

    def sent(self) -> int:
        return sum(c.value for c in self.counters)

    def finish(self) -> dict[str, Any]:
        done = [self.results.get(timeout=300)[1] for _ in self.processes]
        for process in self.processes:
            process.join(timeout=30)
        closing: dict[int, float] = {}
        for result in done:
            for second, at in result["closing"].items():
                closing[second] = max(at, closing.get(second, 0.0))
        complete = {s: t for s, t in closing.items() if all(s in r["closing"] for r in done)}
        return {
            "sent": sum(r["sent"] for r in done),
            "closing": complete,
            "max_behind_s": max(r["max_behind_s"] for r in done),
            "cpu_s": sum(r["cpu_s"] for r in done),
        }


# --- baseline: a bare consume loop ----------------------------------------------------
def bare_loop_process(settings: Settings, group: str, ready: Any, stop: Any, results: Any) -> None:
    import orjson

    consumer = make_consumer(
        settings,
        settings.topic_readings,
        group_id=group,
        auto_offset_reset="latest",
        **stream_fetch(),  # the stream's own fetch sizes: like with like
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=200)
    for tp in consumer.assignment():
        consumer.position(tp)
    consumer.commit()  # start at the end: lag is measured from here
    ready.set()
    delays = []
    seen = 0
    cpu_started = time.process_time()
    commit_due = time.monotonic() + COMMIT_INTERVAL_S
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=100).values():
            delays.append(time.time() - batch[0].timestamp / 1000)
            for record in batch:
                orjson.loads(record.value)
            seen += len(batch)
        if time.monotonic() >= commit_due:
            consumer.commit()
            commit_due = time.monotonic() + COMMIT_INTERVAL_S
    consumer.commit()
    consumer.close()
    results.put({"seen": seen, "delays": delays, "cpu_s": time.process_time() - cpu_started})


# --- sampling ----------------------------------------------------------------------------
class Sampler:
    """Every second: end offsets of the readings topic, committed offsets of ``groups``."""

    def __init__(self, settings: Settings, groups: list[str], metrics_port: int = 0) -> None:
        from kafka import TopicPartition

        self.settings = settings
        self.groups = groups
        self.metrics_port = metrics_port
        self.admin = make_admin(settings)
        self.consumer = make_consumer(settings)
        self.partitions = [
            TopicPartition(settings.topic_readings, p) for p in range(settings.readings_partitions)
        ]
        self.partials = [
            TopicPartition(settings.topic_window_partials, p)
            for p in range(settings.output_partitions)
        ]
        self.samples: list[dict[str, Any]] = []

    def sample(self, extra: dict[str, Any]) -> dict[str, Any]:
        ends = self.consumer.end_offsets(self.partitions + self.partials)
        committed = self.admin.list_group_offsets(self.groups)
        row: dict[str, Any] = {"t": time.time(), "end": sum(ends[tp] for tp in self.partitions)}
        for group in self.groups:
            offsets = committed.get(group, {})
            lag = 0
            for tp, end in ends.items():
                if tp.topic != (
                    self.settings.topic_window_partials
                    if group.endswith("-regions")
                    else self.settings.topic_readings
                ):
                    continue
                meta = offsets.get(tp)
                lag += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
            row[group] = lag
        if self.metrics_port:
            row.update(scrape(self.metrics_port))
        row.update(extra)
        self.samples.append(row)
        return row

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def scrape(port: int) -> dict[str, float]:
    """The stream's own counters: readings consumed, and its lag by position (not commit)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    records = lag = 0.0
    for line in text.decode().splitlines():
        if line.startswith("climatewatch_stream_records_total{"):
            records += float(line.rsplit(" ", 1)[1])
        elif line.startswith("climatewatch_stream_consumer_lag{"):
            lag += float(line.rsplit(" ", 1)[1])
    return {"stream_records": records, "stream_position_lag": lag}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (/proc)."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(sampler: Sampler, producers: Producers, duration_s: float) -> float:
    """Start the producers and sample every second while they run; returns t0."""
    sampler.sample({"elapsed": 0.0, "sent": 0})  # before: the topic may not be empty
    t0 = producers.start()
    next_at = t0
    while True:
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.time()))
        if next_at > t0 + duration_s + 0.5:
            break
        sampler.sample(
            {"elapsed": next_at - t0, "sent": producers.sent(), "load": os.getloadavg()[0]}
        )
    return t0


def wait_for_groups(settings: Settings, groups: list[str], timeout_s: float = 90.0) -> None:
    admin = make_admin(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = admin.describe_groups(groups)
            if all(
                str(described.get(g, {}).get("group_state", "")).lower() == "stable" for g in groups
            ):
                return
            time.sleep(1)
        raise SystemExit(f"the stream's groups {groups} did not become stable in {timeout_s} s")
    finally:
        admin.close()


# --- verdict -----------------------------------------------------------------------------
def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def verdict(rows: list[dict[str, Any]], key: str, floor: float) -> dict[str, Any]:
    lags = [r[key] for r in rows]
    elapsed = [r["elapsed"] for r in rows]
    n = len(rows)
    last10 = lags[-max(1, n // 10) :]
    third = max(2, n // 3)
    trend = slope(elapsed[-third:], lags[-third:])  # records/s
    growth = trend * (elapsed[-1] - elapsed[-third])
    end_ok = statistics.fmean(last10) <= max(floor, 0.5 * max(lags))
    trend_ok = growth <= 0.25 * floor
    return {
        "max": max(lags),
        "end": lags[-1],
        "last10_mean": statistics.fmean(last10),
        "last10_max": max(last10),
        "trend": trend,
        "growth": growth,
        "bounded": end_ok and trend_ok,
    }


# --- main ----------------------------------------------------------------------------------
@dataclass
class StreamRun:
    """The stream phase: a sample every second, the producers' counts, alerts, cost."""

    rows: list[dict[str, Any]]
    produced: dict[str, Any]
    arrivals: list[tuple[float, Alert]]
    rss: float
    cpu: dict[str, float]
    group: str
    merge_group: str

    @property
    def has_metrics(self) -> bool:
        return all("stream_records" in r for r in self.rows)


@dataclass
class BaselineRun:
    """The baseline phase: a sample every second, the producers' counts, the bare loop's."""

    rows: list[dict[str, Any]]
    produced: dict[str, Any]
    bare: dict[str, Any]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--duration-s", type=float)
    parser.add_argument("--baseline-s", type=float)
    parser.add_argument("--producers", type=int, default=2, help="producer processes")
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    return parser.parse_args()


def stream_phase(
    broker: Any, settings: Settings, args: argparse.Namespace, duration: float
) -> StreamRun:
    """The stream (its own process) under the producers for ``duration`` seconds."""
    group, merge_group = settings.stream_group_id, f"{settings.stream_group_id}-regions"
    stream = start_stream(settings)
    try:
        print(f"generating {args.producers} producers' cycles …", flush=True)
        producers = Producers(settings, args.rate, args.producers, duration)
        wait_for_groups(settings, [group, merge_group])

        watcher = AlertWatcher(settings)
        time.sleep(3)

        sampler = Sampler(settings, [group, merge_group], settings.metrics_port)
        print(f"load: {args.rate:,.0f} readings/s for {duration:.0f} s …", flush=True)
        cpu_before = cpu_seconds(stream.pid), cpu_seconds(broker.pid())
        run_phase(sampler, producers, duration)
        cpu_after = cpu_seconds(stream.pid), cpu_seconds(broker.pid())
        produced = producers.finish()
        cpu = {
            "stream": cpu_after[0] - cpu_before[0],
            "broker": cpu_after[1] - cpu_before[1],
            "producers": produced["cpu_s"],
        }
        arrivals = watcher.finish()
        rows = sampler.samples
        sampler.close()
        rss = peak_rss_mb(stream.pid)
    finally:
        stop_stream(stream)
    return StreamRun(rows, produced, arrivals, rss, cpu, group, merge_group)


def baseline_phase(settings: Settings, args: argparse.Namespace, baseline_s: float) -> BaselineRun:
    """The bare consume loop (its own process) under the same producers."""
    print(f"baseline: bare consume loop for {baseline_s:.0f} s …", flush=True)
    ctx = mp.get_context("spawn")
    ready, bare_stop, bare_results = ctx.Event(), ctx.Event(), ctx.Queue()
    bare = ctx.Process(
        target=bare_loop_process,
        args=(settings, "bench-bare", ready, bare_stop, bare_results),
        daemon=True,
    )
    bare.start()
    base_producers = Producers(settings, args.rate, args.producers, baseline_s)
    if not ready.wait(timeout=90):
        raise SystemExit("the bare consume loop did not join its group")
    base_sampler = Sampler(settings, ["bench-bare"])
    run_phase(base_sampler, base_producers, baseline_s)
    base_produced = base_producers.finish()
    time.sleep(2)
    bare_stop.set()
    bare_result = bare_results.get(timeout=60)
    bare.join(timeout=30)
    base_rows = base_sampler.samples
    base_sampler.close()
    return BaselineRun(base_rows, base_produced, bare_result)


def main() -> None:
    args = parse_args()
    duration = args.duration_s or (60.0 if args.quick else 600.0)
    baseline_s = args.baseline_s or (15.0 if args.quick else 30.0)

    with bench_broker() as (broker, tmp):
        settings = bench_settings(
            broker, tmp, metrics_port=free_port(), rules_file=write_rules(tmp)
        )
        run = stream_phase(broker, settings, args, duration)
        base = baseline_phase(settings, args, baseline_s)

    report(args, duration, baseline_s, run, base)


# --- report --------------------------------------------------------------------------------
def rate_between(rows: list[dict[str, Any]], key: str) -> float:
    span = rows[-1]["t"] - rows[0]["t"]
    return (rows[-1][key] - rows[0][key]) / span if span > 0 else float("nan")


def report(
    args: argparse.Namespace,
    duration: float,
    baseline_s: float,
    run: StreamRun,
    base: BaselineRun,
) -> None:
    rows, group = run.rows, run.group
    achieved = (rows[-1]["end"] - rows[0]["end"]) / rows[-1]["elapsed"]
    # records the stream holds by design: open windows (size + lateness) + one commit interval
    floor = achieved * (WINDOW_S + LATENESS_S + COMMIT_INTERVAL_S)
    v = verdict(rows, group, floor)

    print()
    print("lag of the stream's group (committed offsets) every 10% of the run:")
    step = max(1, len(rows) // 10)
    print("  " + "  ".join(f"{r['elapsed']:.0f}s:{r[group]:,}" for r in rows[step - 1 :: step]))
    print()
    print_load_rows(args, duration, run, achieved)
    print_lag_rows(run, v, floor)
    print_cost_rows(run)
    print_baseline_rows(baseline_s, base, v)
    print()
    print_rule(args, achieved, floor, v)
    if args.json:
        print_json(figures(args, duration, baseline_s, run, base))


def print_load_rows(
    args: argparse.Namespace, duration: float, run: StreamRun, achieved: float
) -> None:
    """The table's title, then what was produced and how fast the stream read it."""
    rows, produced, has_metrics = run.rows, run.produced, run.has_metrics
    # per-second produce rate as the broker saw it (growth of the end offsets)
    per_second = [b["end"] - a["end"] for a, b in itertools.pairwise(rows)]
    stream_rate = rate_between(rows, "stream_records") if has_metrics else rate_between(rows, "end")
    print(
        f"| sustained load: {args.rate:,.0f} readings/s target, {duration:.0f} s, "
        f"1,000 sensors, 6 partitions, {args.producers} producer processes | value |"
    )
    print("|---|---|")
    print(f"| target rate (readings/s) | {args.rate:,.0f} |")
    print(
        f"| achieved produce rate, broker end offsets (mean; 1-s min / max) | {achieved:,.0f}; "
        f"{min(per_second):,} / {max(per_second):,} |"
    )
    print(
        f"| readings produced / producer furthest behind schedule | {produced['sent']:,} / "
        f"{produced['max_behind_s']:.2f} s |"
    )
    print(
        f"| stream rate ({'its records counter' if has_metrics else 'end offsets'}, readings/s) "
        f"| {stream_rate:,.0f} |"
    )


def print_lag_rows(run: StreamRun, v: dict[str, Any], floor: float) -> None:
    """The lag of the stream's two groups, from the committed offsets."""
    rows, group, merge_group = run.rows, run.group, run.merge_group
    merge = verdict(rows, merge_group, floor)
    print(f"| max lag, {group} (committed) | {v['max']:,} |")
    print(f"| lag at the end | {v['end']:,} |")
    print(
        f"| lag in the last 10% of the run (mean / max) | {v['last10_mean']:,.0f} / {v['last10_max']:,} |"
    )
    print(f"| lag trend over the last third (records/s) | {v['trend']:+,.0f} |")
    if run.has_metrics:
        pos = [r["stream_position_lag"] for r in rows]
        print(  # kafka-python's highwater is the one of the last fetch: it under-reports a backlog
            f"| stream's own lag gauge, highwater - position (max / end / last-10% mean) | {max(pos):,.0f} / "
            f"{pos[-1]:,.0f} / {statistics.fmean(pos[-max(1, len(pos) // 10) :]):,.0f} |"
        )
    print(f"| merge stage {merge_group} lag (max / end) | {merge['max']:,} / {merge['end']:,} |")


def print_cost_rows(run: StreamRun) -> None:
    """Alert latency under the load, memory and CPU."""
    rows, cpu = run.rows, run.cpu
    latencies = alert_latencies(run.arrivals, run.produced["closing"])
    print(f"| alerts measured | {len(latencies)} |")
    if latencies:
        print(
            f"| alert latency p50 / p99 (ms) | {1000 * statistics.median(latencies):,.0f} / "
            f"{1000 * percentile(latencies, 0.99):,.0f} |"
        )
    print(f"| stream peak RSS (MB) | {run.rss:,.0f} |")
    processed = rows[-1].get("stream_records", 0) - rows[0].get("stream_records", 0)
    print(
        f"| CPU seconds during the load: producers / stream / broker | {cpu['producers']:,.0f} / "
        f"{cpu['stream']:,.0f} / {cpu['broker']:,.0f} |"
    )
    if processed:
        print(f"| stream CPU per reading (µs) | {1e6 * cpu['stream'] / processed:,.1f} |")
    print(
        f"| machine load average (1 min) during the load, mean / max | "
        f"{statistics.fmean(r['load'] for r in rows[1:]):.1f} / {max(r['load'] for r in rows[1:]):.1f} |"
    )


def print_baseline_rows(baseline_s: float, base: BaselineRun, v: dict[str, Any]) -> None:
    """The bare loop's lag and delivery delay, and the ratio of the max lags."""
    base_rows = base.rows
    base_max = max(r["bench-bare"] for r in base_rows)
    base_achieved = (base_rows[-1]["end"] - base_rows[0]["end"]) / base_rows[-1]["elapsed"]
    delays = base.bare["delays"]
    print(
        f"| baseline: bare kafka-python loop (orjson, commit every 1 s), {baseline_s:.0f} s at "
        f"{base_achieved:,.0f}/s achieved: max lag | {base_max:,} |"
    )
    if delays:
        print(
            f"| baseline: its delivery delay produce → consume p50 / p99 (ms) | "
            f"{1000 * statistics.median(delays):,.0f} / {1000 * percentile(delays, 0.99):,.0f} |"
        )
    print(
        f"| ratio max lag stream / bare loop | {v['max'] / base_max if base_max else float('nan'):.1f} |"
    )


def print_rule(args: argparse.Namespace, achieved: float, floor: float, v: dict[str, Any]) -> None:
    """The rule that says whether the lag is bounded, and the verdict."""
    print(
        f"rule: bounded = mean lag over the last 10% <= max(F, max lag / 2) and the least-squares "
        f"trend over the last third adds <= F/4 records, where F = achieved rate x (window "
        f"{WINDOW_S} s + lateness {LATENESS_S} s + commit interval {COMMIT_INTERVAL_S:.0f} s) "
        f"= {floor:,.0f} records: what the stream holds uncommitted by design (it never commits "
        f"past an open window's first reading). Here: last 10% mean {v['last10_mean']:,.0f}, "
        f"trend adds {v['growth']:+,.0f}."
    )
    print(f"lag bounded: {'yes' if v['bounded'] else 'no'}")
    if achieved < 0.95 * args.rate:
        print(
            f"note: the producers reached {achieved:,.0f} readings/s, not the {args.rate:,.0f} asked "
            f"(producers, stream and broker share {os.cpu_count()} cores)"
        )


def figures(
    args: argparse.Namespace,
    duration: float,
    baseline_s: float,
    run: StreamRun,
    base: BaselineRun,
) -> dict[str, Any]:
    """What :func:`report` prints, for ``--json``: lags in records, None for what was not
    measured (no alerts, no /metrics, a NaN)."""
    rows, group = run.rows, run.group
    achieved = (rows[-1]["end"] - rows[0]["end"]) / rows[-1]["elapsed"]
    floor = achieved * (WINDOW_S + LATENESS_S + COMMIT_INTERVAL_S)
    v, merge = verdict(rows, group, floor), verdict(rows, run.merge_group, floor)
    per_second = [b["end"] - a["end"] for a, b in itertools.pairwise(rows)]
    latencies = alert_latencies(run.arrivals, run.produced["closing"])
    processed = rows[-1].get("stream_records", 0) - rows[0].get("stream_records", 0)
    base_rows, delays = base.rows, base.bare["delays"]
    base_max = max(r["bench-bare"] for r in base_rows)
    base_achieved = (base_rows[-1]["end"] - base_rows[0]["end"]) / base_rows[-1]["elapsed"]
    pos = [r["stream_position_lag"] for r in rows] if run.has_metrics else []
    out = {
        "target_readings_per_s": args.rate,
        "duration_s": duration,
        "baseline_s": baseline_s,
        "producer_processes": args.producers,
        "produced_readings_per_s": achieved,
        "produced_min_1s_readings": min(per_second),
        "produced_max_1s_readings": max(per_second),
        "produced_target_reached": achieved >= 0.95 * args.rate,
        "readings_produced": run.produced["sent"],
        "producer_max_behind_s": run.produced["max_behind_s"],
        "stream_readings_per_s": rate_between(rows, "stream_records" if run.has_metrics else "end"),
        "max_lag_records": v["max"],
        "end_lag_records": v["end"],
        "last10_mean_lag_records": v["last10_mean"],
        "last10_max_lag_records": v["last10_max"],
        "lag_trend_records_per_s": v["trend"],
        "lag_growth_records": v["growth"],
        "lag_floor_records": floor,
        "lag_bounded": v["bounded"],
        "position_lag_max_records": max(pos) if pos else None,
        "position_lag_end_records": pos[-1] if pos else None,
        "merge_max_lag_records": merge["max"],
        "merge_end_lag_records": merge["end"],
        "alerts_measured": len(latencies),
        "alert_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "alert_p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "stream_peak_rss_mb": run.rss,
        "producers_cpu_s": run.cpu["producers"],
        "stream_cpu_s": run.cpu["stream"],
        "broker_cpu_s": run.cpu["broker"],
        "stream_cpu_per_reading_us": 1e6 * run.cpu["stream"] / processed if processed else None,
        "load_average_mean": statistics.fmean(r["load"] for r in rows[1:]),
        "load_average_max": max(r["load"] for r in rows[1:]),
        "bare_fetch": stream_fetch(),
        "bare_produced_readings_per_s": base_achieved,
        "bare_max_lag_records": base_max,
        "bare_delay_p50_ms": 1000 * statistics.median(delays) if delays else None,
        "bare_delay_p99_ms": 1000 * percentile(delays, 0.99) if delays else None,
        "ratio_max_lag_over_bare": v["max"] / base_max if base_max else None,
    }
    return {
        k: (round(x, 3) if math.isfinite(x) else None) if isinstance(x, float) else x
        for k, x in out.items()
    }


if __name__ == "__main__":
    main()
