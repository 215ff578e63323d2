"""``make demo``: ClimateWatch on embedded defaults, until Ctrl-C.

Starts the local broker (unless one already runs), creates the topics, runs the
simulator in real time with a heat wave and a trickle of malformed records, and shows
per region how many readings were sent and how many arrived back from Kafka. Ctrl-C
stops what the demo started, in reverse order; the next run reuses the cached jars and
the broker's storage.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

from rich.console import Console
from rich.live import Live

from include.contract import Reading, parse_reading
from include.kafka_local import LocalCluster, fetch_jars
from include.progress import simulation_table
from include.settings import Settings
from include.simulator import SimulationConfig, SimulationStats, run_simulation
from include.topics import ensure_topics


class ArrivalCounter(threading.Thread):
    """Reads the readings topic from its current end and counts what arrives per region."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="arrival-counter", daemon=True)
        self.settings = settings
        self.stop_event = stop
        self.by_region: Counter[str] = Counter()
        self.ready = threading.Event()

    def run(self) -> None:
        from kafka import TopicPartition

        from include.kafka_clients import make_consumer

        consumer = make_consumer(self.settings)
        try:
            partitions = consumer.partitions_for_topic(self.settings.topic_readings) or set()
            assigned = [TopicPartition(self.settings.topic_readings, p) for p in partitions]
            consumer.assign(assigned)
            consumer.seek_to_end(*assigned)
            for partition in assigned:
                consumer.position(partition)
            self.ready.set()
            while not self.stop_event.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        reading = parse_reading(record.value)
                        region = reading.region if isinstance(reading, Reading) else "(malformed)"
                        self.by_region[region] += 1
        finally:
            self.ready.set()
            consumer.close()


def run_demo(
    settings: Settings,
    console: Console,
    *,
    rate: float = 50.0,
    regions: int = 10,
    sensors: int = 5,
    duration_s: float | None = None,
) -> None:
    fetch_jars(settings)
    broker = LocalCluster.from_settings(settings)
    console.print(f"starting the Kafka broker on {broker.bootstrap} …")
    started_broker = broker.start() == "started"
    console.print(
        f"Kafka broker {'started' if started_broker else 'already running'} "
        f"(logs in {broker.state_dir})"
    )
    for result in ensure_topics(settings):
        console.print(f"  topic {result.name}: {result.state} ({result.detail})")

    stop = threading.Event()
    counter = ArrivalCounter(settings, stop)
    counter.start()
    counter.ready.wait(timeout=30)

    config = SimulationConfig(
        regions=regions,
        sensors_per_region=sensors,
        rate=rate,
        heat_wave="marseille",
        heat_wave_at_s=30.0,
        heat_wave_for_s=240.0,
        malformed_ratio=0.005,
    )
    stats = SimulationStats()
    simulator = threading.Thread(
        target=run_simulation,
        args=(settings, config),
        kwargs={"stats": stats, "should_stop": stop.is_set},
        name="simulator",
        daemon=True,
    )
    simulator.start()
    console.print(
        f"simulating {regions} regions × {sensors} sensors at {rate:g} readings/s "
        "(heat wave in marseille after 30 s); Ctrl-C stops the demo"
    )
    deadline = time.monotonic() + duration_s if duration_s else None
    try:
        with Live(console=console, refresh_per_second=2) as live:
            while simulator.is_alive() and (deadline is None or time.monotonic() < deadline):
                live.update(simulation_table(stats, dict(counter.by_region)))
                time.sleep(0.5)
            live.update(simulation_table(stats, dict(counter.by_region)))
    except KeyboardInterrupt:
        console.print("stopping …")
    finally:
        stop.set()
        simulator.join(timeout=30)
        counter.join(timeout=10)
        if started_broker:
            with contextlib.suppress(Exception):
                broker.stop()
                console.print("Kafka broker stopped")
        console.print(f"demo stopped: {stats.sent:,} readings sent, {stats.failed} failed")
