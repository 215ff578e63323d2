"""The simulator feeding a scenario's cluster: every acknowledged (sensor_id, ts) remembered."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from include.simulator import SimulationConfig, generate

if TYPE_CHECKING:
    from bench.chaos.harness import Harness

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


class Producer:
    """Simulated readings at ``options.rate`` per second, ``acks=all`` and idempotent, in a
    thread; the scenario waits on it with :meth:`at` and :meth:`wait`."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.acknowledged: list[tuple[str, int]] = []  # (sensor_id, epoch ms)
        self.errors: list[str] = []
        self.produced = 0
        self.started = 0.0  # time.monotonic() when production began
        self.heat_first_sent: float | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self._done = False
        self.heat_window_wall = (0.45, 0.65)  # share of the production time

    def simulation(self) -> SimulationConfig:
        o = self.h.options
        sensors = o.regions * o.sensors_per_region
        step_ms = max(1, round(o.event_speed * 1000 / o.rate))  # event time between two records
        event_s = o.duration_s * o.rate * step_ms / 1000
        now = datetime.now(UTC)
        start = (now - timedelta(seconds=event_s) - timedelta(hours=1)).replace(
            minute=0, second=0, microsecond=0
        )
        first, last = self.heat_window_wall
        return SimulationConfig(
            regions=o.regions,
            sensors_per_region=o.sensors_per_region,
            rate=o.rate,
            duration_s=event_s,
            start=start,
            interval_s=step_ms * sensors / 1000,
            heat_wave=self.h.heat_region if o.with_stream else None,
            heat_wave_at_s=event_s * first,
            heat_wave_for_s=event_s * (last - first),
        )

    def start(self) -> None:
        config = self.simulation()
        self.h.result.alerts_expected = 1 if config.heat_wave else 0
        self.started = time.monotonic()
        self.thread = threading.Thread(
            target=self._produce, args=(config,), name="producer", daemon=True
        )
        self.thread.start()
        threading.Thread(target=self._progress, name="progress", daemon=True).start()
        options = self.h.options
        self.h.log(
            f"producing {options.rate:.0f} readings/s for {options.duration_s:.0f}s"
            + (
                f", heat wave in {config.heat_wave} at {self.heat_window_wall[0]:.0%}..{self.heat_window_wall[1]:.0%}"
                if config.heat_wave
                else ""
            )
        )

    def _progress(self) -> None:
        """A progress line every 5 s while producing (even while the main thread waits)."""
        thread = self.thread
        while not self.stopping.wait(5.0) and thread is not None and thread.is_alive():
            self.h.log(
                f"sent {self.produced}, acknowledged {len(self.acknowledged)}, "
                f"failed {len(self.errors)}"
            )

    def _produce(self, config: SimulationConfig) -> None:
        from include.kafka_clients import make_producer

        s = self.h.require_settings()
        producer = make_producer(s)
        acknowledged = self.acknowledged
        errors = self.errors
        heat_from = (
            config.start + timedelta(seconds=config.heat_wave_at_s) if config.start else None
        )
        try:
            pace_start = time.monotonic()
            for record in generate(config):
                if self.stopping.is_set():
                    break
                ahead = pace_start + self.produced / config.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                reading = record.reading
                assert reading is not None
                key = (reading.sensor_id, (reading.ts - EPOCH) // MS)
                future = producer.send(s.topic_readings, key=record.key, value=record.value)
                future.add_callback(lambda _m, key=key: acknowledged.append(key))
                future.add_errback(lambda e: errors.append(str(e)[:200]))
                self.produced += 1
                if (
                    self.heat_first_sent is None
                    and heat_from is not None
                    and record.region == config.heat_wave
                    and record.event_time >= heat_from
                ):
                    self.heat_first_sent = time.monotonic()
        except Exception as exc:
            errors.append(f"producer stopped: {exc}")
        finally:
            producer.flush(timeout=180)
            producer.close(timeout=30)

    def at(self, share: float) -> None:
        """Wait until ``share`` of the production time has passed (supervising the stream)."""
        target = self.started + share * self.h.options.duration_s
        while time.monotonic() < target:
            self.h.supervise()
            time.sleep(min(0.2, max(0.0, target - time.monotonic())))

    def wait(self) -> None:
        """Until production is over (all sent and flushed); the counts go to the result."""
        assert self.thread is not None
        if self._done:
            return
        deadline = time.monotonic() + self.h.options.duration_s * 3 + 240
        while self.thread.is_alive() and time.monotonic() < deadline:
            self.h.supervise()
            self.thread.join(timeout=0.5)
        if self.thread.is_alive():
            self.stopping.set()
            self.thread.join(timeout=200)
            self.h.problem("production did not finish in time")
        self._done = True
        result = self.h.result
        result.produced = self.produced
        result.acknowledged = len(self.acknowledged)
        result.failed = len(self.errors)
        self.h.log(
            f"production done: {self.produced} sent, {len(self.acknowledged)} acknowledged, "
            f"{len(self.errors)} failed in {time.monotonic() - self.started:.1f}s"
        )
        if self.errors:
            self.h.note(f"{len(self.errors)} sends failed, e.g. {self.errors[0]}")

    def stop(self) -> None:
        """End production now (the scenario is over or failed)."""
        self.stopping.set()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)
