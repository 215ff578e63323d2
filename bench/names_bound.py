"""Names bound: does the stream's memory stay bounded under a flood of distinct names?

In process, no broker: the stream's real two stages (``streaming.stage1`` and
``streaming.stage2``, sharing one ``Outputs`` as in the stream) on a producer that only
hands the partials on, with processing time simulated as a live stream (one second of
event time per second of the clock, in steps of 10 s, 6 input partitions). A steady
network of 20 regions × 50 sensors reports once a minute for the whole run; during the
first 10 minutes a flood of distinct names arrives on top of it: 100,000 sensors in
10,000 regions, each name reporting once. Every configuration runs in its own process,
with tracemalloc counting what the stages allocate after they are built:

  (a) the flood, with retirement (CLIMATEWATCH_RETIRE_AFTER_S = 600 s; the default rules
      raise region_silent after 120 s and silent_sensor after 300 s),
  (b) baseline: the same flood with retirement never due (every name kept for good),
  (c) floor: the steady network alone (what the stream holds with no flood).

Prints peak and retained (end of run) traced memory, the names still remembered, the
silence alerts, the ratios a/b and a/c, the flood's excess over the floor; then, from
untraced runs of (a) and (b), what one retirement sweep (once a second in the stream)
costs and the stages' time over the run. --quick: 10,000 sensors in 1,000 regions;
--json adds one JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_json, run_phase_process

MINUTES, FLOOD_MINUTES, STEP_S = 40, 10, 10
STEADY_REGIONS, STEADY_SENSORS = 20, 50
RETIRE_S = 600.0
NEVER = 1e12  # a retire time never reached: the baseline
# traced: (a), (b), (c); timed without tracemalloc: (a) and (b) again
PHASES = ("retired", "kept", "floor", "retired-timed", "kept-timed")
INPUT_PARTITIONS, PARTIALS_PARTITIONS = 6, 3


class _Future:
    """An acknowledged send."""

    __slots__ = ()

    def succeeded(self) -> bool:
        return True

    def add_callback(self, f: Any) -> _Future:
        f(None)
        return self

    def add_errback(self, f: Any) -> _Future:
        return self


class _Producer:
    """Keeps the partials (stage 2's input) until taken; counts everything else, and the
    region_silent alerts published, by status."""

    config: dict[str, int] = {"max_request_size": 1024 * 1024}  # noqa: RUF012

    def __init__(self, partials_topic: str, alerts_topic: str) -> None:
        self.partials_topic, self.alerts_topic = partials_topic, alerts_topic
        self.partials: list[tuple[int, bytes]] = []
        self.sent: dict[str, int] = {}
        self.silent = {"firing": 0, "resolved": 0}
        self.future = _Future()

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTIALS_PARTITIONS))

    def send(self, topic: str, key=None, value=None, partition=None, headers=None) -> _Future:
        if topic == self.partials_topic:
            self.partials.append((partition, value))
        else:
            self.sent[topic] = self.sent.get(topic, 0) + 1
            if topic == self.alerts_topic:
                alert = orjson.loads(value)
                if alert["rule"] == "region_silent":
                    self.silent[alert["status"]] += 1
        return self.future


class _Consumer:
    def __init__(self, assigned: set[Any]) -> None:
        self.assigned = assigned

    def highwater(self, tp: Any) -> None:
        return None

    def position(self, tp: Any, timeout_ms: int | None = None) -> None:
        return None

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def paused(self) -> set[Any]:
        return set()

    def pause(self, *tps: Any) -> None:
        pass

    def resume(self, *tps: Any) -> None:
        pass


class _Record:
    __slots__ = ("key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, partition, offset, value
        self.key, self.timestamp = b"k", int(time.time() * 1000)


def readings_of_step(step: int, flood_sensors: int, flood_regions: int) -> list[tuple[str, str]]:
    """(sensor, region) pairs reporting in one step: a sixth of the steady network (each
    sensor once a minute), and a share of the flood during its minutes."""
    per_minute = 60 // STEP_S
    slot = step % per_minute
    pairs = [
        (f"steady-{r}-{s}", f"region-{r}")
        for r in range(STEADY_REGIONS)
        for s in range(STEADY_SENSORS)
        if (r * STEADY_SENSORS + s) % per_minute == slot
    ]
    flood_steps = FLOOD_MINUTES * per_minute
    if flood_sensors and step < flood_steps:
        share = range(
            step * flood_sensors // flood_steps, (step + 1) * flood_sensors // flood_steps
        )
        per_region = max(1, flood_sensors // flood_regions)
        pairs += [(f"flood-{i}", f"flooded-{i // per_region}") for i in share]
    return pairs


class _Stream:
    """The stream's two stages on one ``Outputs`` (as in the stream), with stand-ins for
    the clients around them; the retirement sweep timed."""

    def __init__(self, settings: Any, clock: Any) -> None:
        from kafka import TopicPartition

        from streaming.metrics import StreamMetrics
        from streaming.outputs import Outputs
        from streaming.rules import load_rules
        from streaming.stage1 import ReadingsStage
        from streaming.stage2 import PartialsStage

        self.settings = settings
        # the stage logs one line per alert (tens of thousands here): not what is measured,
        # as when a stand-in notifier took the alerts
        logging.getLogger("climatewatch.alerts").setLevel(logging.ERROR)
        rules, metrics = load_rules(), StreamMetrics()
        self.producer = _Producer(settings.topic_window_partials, settings.topic_alerts)
        self.outputs = Outputs(settings, self.producer, metrics)
        self.inputs = [TopicPartition(settings.topic_readings, p) for p in range(INPUT_PARTITIONS)]
        self.parts = [
            TopicPartition(settings.topic_window_partials, p) for p in range(PARTIALS_PARTITIONS)
        ]
        consumer = _Consumer(set(self.inputs))
        self.stage1 = ReadingsStage(settings, rules, metrics, consumer, self.outputs, clock)
        self.stage1.partials_partitions = list(range(PARTIALS_PARTITIONS))
        self.stage1.assigned(range(INPUT_PARTITIONS))
        self.stage2 = PartialsStage(
            settings, rules, metrics, _Consumer(set(self.parts)), self.outputs, clock
        )
        self.stage2.input_partitions = INPUT_PARTITIONS
        self.stage2.partials_partitions = self.stage1.partials_partitions
        self.offsets = [0] * INPUT_PARTITIONS
        self.partial_offsets = [0] * PARTIALS_PARTITIONS
        self.sweep_s, self.sweeps, self.worst_sweep_s = 0.0, 0, 0.0
        retire = self.stage2._retire

        def timed_retire(now: float) -> int:
            t0 = time.perf_counter()
            try:
                return retire(now)
            finally:
                took = time.perf_counter() - t0
                self.sweep_s, self.sweeps = self.sweep_s + took, self.sweeps + 1
                self.worst_sweep_s = max(self.worst_sweep_s, took)

        self.stage2._retire = timed_retire  # type: ignore[method-assign]

    def readings(self, at: Any, pairs: list[tuple[str, str]]) -> dict[Any, list[_Record]]:
        """One poll: the readings of ``pairs`` at ``at`` (and a few ms after), by partition."""
        import zlib
        from datetime import timedelta

        from include.contract import Reading, serialize_reading

        topic = self.settings.topic_readings
        batches: dict[Any, list[_Record]] = {tp: [] for tp in self.inputs}
        for i, (sensor, region) in enumerate(pairs):
            p = zlib.crc32(sensor.encode()) % INPUT_PARTITIONS
            ts = at + timedelta(milliseconds=i % 9000)
            value = serialize_reading(Reading(sensor, region, ts, 15.0))
            batches[self.inputs[p]].append(_Record(topic, p, self.offsets[p], value))
            self.offsets[p] += 1
        return batches

    def step(self, batches: dict[Any, list[_Record]]) -> float:
        """Stage 1 on one poll and its heartbeats, stage 2 on what it sent, as the loop
        does; returns the seconds the stages took."""
        t0 = time.perf_counter()
        self.stage1.process(batches)
        self.stage1.heartbeats(force=True)
        topic, partials = self.settings.topic_window_partials, {}
        for partition, value in self.producer.partials:
            offset = self.partial_offsets[partition]
            partials.setdefault(self.parts[partition], []).append(
                _Record(topic, partition, offset, value)
            )
            self.partial_offsets[partition] = offset + 1
        self.producer.partials.clear()
        self.stage2.process(partials)
        self.outputs.release_windows()
        return time.perf_counter() - t0


def run(
    retire_after_s: float, flood_sensors: int, flood_regions: int, traced: bool = True
) -> dict[str, Any]:
    """One configuration, traced from the moment the stages are built (``traced``: with
    tracemalloc, else only timed)."""
    import tracemalloc
    from datetime import UTC, datetime, timedelta

    from include.settings import load_settings

    settings = load_settings(data_dir=Path("/tmp/names-bound"), metrics_port=0)
    settings = settings.model_copy(update={"retire_after_s": retire_after_s})
    clock_now = [time.monotonic()]
    if traced:
        tracemalloc.start()
    stream = _Stream(settings, lambda: clock_now[0])
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    busy = 0.0
    for step in range(MINUTES * 60 // STEP_S):
        clock_now[0] += STEP_S
        at = origin + timedelta(seconds=step * STEP_S)
        batches = stream.readings(at, readings_of_step(step, flood_sensors, flood_regions))
        busy += stream.step(batches)
        del batches
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    worst = stream.worst_sweep_s
    silent = stream.producer.silent
    return {
        "peak_mb": (peak - base) / 2**20,
        "retained_mb": (current - base) / 2**20,
        "regions": len(stream.stage2.silence.region_heard),
        "sensors": stream.stage2.memory.sensor_count(),
        "silent_firing": silent["firing"],
        "silent_resolved": silent["resolved"],
        "sweep_ms": 1000 * stream.sweep_s / max(1, stream.sweeps),
        "worst_sweep_ms": 1000 * worst,
        "seconds": busy,
    }


def figures(sensors: int, regions: int, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What :func:`main` prints, for ``--json``: (a) ``retired_``, (b) ``kept_``, (c)
    ``floor_``; sweep and stage times from the untraced runs."""
    a, b, c = runs["retired"], runs["kept"], runs["floor"]
    out: dict[str, Any] = {
        "minutes": MINUTES,
        "flood_minutes": FLOOD_MINUTES,
        "flood_sensors": sensors,
        "flood_regions": regions,
        "retire_after_s": RETIRE_S,
        "ratio_retained_retired_over_kept": round(a["retained_mb"] / b["retained_mb"], 3),
        "ratio_retained_retired_over_floor": round(a["retained_mb"] / c["retained_mb"], 3),
        "retired_excess_over_floor_mb": round(a["retained_mb"] - c["retained_mb"], 2),
        "kept_excess_over_floor_mb": round(b["retained_mb"] - c["retained_mb"], 2),
    }
    for name, r in (("retired", a), ("kept", b), ("floor", c)):
        out |= {
            f"{name}_peak_traced_mb": round(r["peak_mb"], 2),
            f"{name}_retained_mb": round(r["retained_mb"], 2),
            f"{name}_regions_known": r["regions"],
            f"{name}_sensors_known": r["sensors"],
            f"{name}_region_silent_fired": r["silent_firing"],
            f"{name}_region_silent_resolved": r["silent_resolved"],
        }
    for name in ("retired", "kept"):
        timed = runs[f"{name}-timed"]
        out |= {
            f"{name}_sweep_mean_ms": round(timed["sweep_ms"], 3),
            f"{name}_sweep_worst_ms": round(timed["worst_sweep_ms"], 2),
            f"{name}_stages_s": round(timed["seconds"], 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    parser.add_argument("--phase", choices=PHASES)
    args = parser.parse_args()
    sensors, regions = (10_000, 1_000) if args.quick else (100_000, 10_000)
    if args.phase:
        retire_s = NEVER if args.phase.startswith("kept") else RETIRE_S
        flood = (0, 1) if args.phase == "floor" else (sensors, regions)
        traced = not args.phase.endswith("-timed")
        print(json.dumps(run(retire_s, *flood, traced=traced)), flush=True)
        return
    options = ["--quick"] if args.quick else []
    runs = {
        phase: run_phase_process(__file__, phase, *options, stderr_chars=3000) for phase in PHASES
    }
    a, b, c = runs["retired"], runs["kept"], runs["floor"]
    at, bt = runs["retired-timed"], runs["kept-timed"]
    print()
    print(
        f"| names bound: {MINUTES} min live, 20 regions × 50 sensors steady + a flood of "
        f"{sensors:,} sensors in {regions:,} regions (first {FLOOD_MINUTES} min) "
        "| peak MB | retained MB | regions known | sensors known | region_silent fired / resolved |"
    )
    print("|---|---|---|---|---|---|")
    rows = (
        (f"(a) flood, retired after {RETIRE_S:g} s", a),
        ("(b) baseline: flood, retirement never due", b),
        ("(c) floor: steady network alone", c),
    )
    for label, r in rows:
        print(
            f"| {label} | {r['peak_mb']:,.1f} | {r['retained_mb']:,.1f} | {r['regions']:,} "
            f"| {r['sensors']:,} | {r['silent_firing']:,} / {r['silent_resolved']:,} |"
        )
    excess_a, excess_b = a["retained_mb"] - c["retained_mb"], b["retained_mb"] - c["retained_mb"]
    print(f"| ratio retained a / b | {a['retained_mb'] / b['retained_mb']:.2f} |")
    print(
        f"| ratio retained a / c (1: as if no flood) | {a['retained_mb'] / c['retained_mb']:.2f} |"
    )
    print(f"| the flood's retained excess over c (MB): a / b | {excess_a:,.1f} / {excess_b:,.1f} |")
    print(
        "| retirement sweep (once a second in the stream), mean / worst per call, untraced "
        f"(ms): a | {at['sweep_ms']:.2f} / {at['worst_sweep_ms']:.1f} |"
    )
    print(
        "| the same, b (only the region scan: nothing is due) "
        f"| {bt['sweep_ms']:.2f} / {bt['worst_sweep_ms']:.1f} |"
    )
    print(
        "| both stages' time over the run, untraced (s): a / b "
        f"| {at['seconds']:.1f} / {bt['seconds']:.1f} |"
    )
    if args.json:
        print_json(figures(sensors, regions, runs))


if __name__ == "__main__":
    main()
