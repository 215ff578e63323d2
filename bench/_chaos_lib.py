"""Fault scenarios run for real: a 3-node KRaft cluster, the simulator, the stream and the
archiver, with brokers, stream instances and archiver runs killed, frozen and restarted.

``bench/chaos.py`` (``make chaos``) runs every scenario and prints one table row each;
``tests/bench/test_chaos.py`` runs the smaller broker-kill scenario. Each scenario:

1. starts a fresh 3-node :class:`LocalCluster` in a temporary directory and creates the
   topics (replication 3, ``min.insync.replicas`` 2);
2. produces simulated readings at ``rate`` per second with ``acks=all`` and idempotence,
   remembering every acknowledged reading's (sensor_id, ts); event time runs faster than
   the wall clock (``event_speed``) so that a heat wave spans several alert windows;
3. runs the stream (``climatewatch stream`` subprocesses, restarted if one dies on its
   own) and the archiver (``climatewatch archive run`` subprocesses, one after the other)
   while the scenario's fault happens;
4. once production ends: waits for the in-sync replicas to be 3 again, drains the stream
   (``--until-caught-up``), archives until the ledger reaches every partition's end, and
   counts with DuckDB what the archive holds: lost = acknowledged but not archived,
   duplicated = archived more than once (by sensor_id and ts); alerts seen = heat alerts
   for the heat-wave region on the alerts topic.

Every wait has a timeout; clusters and subprocesses are stopped in ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.errors import ClimateWatchError
from include.kafka_local import LocalBroker, LocalCluster, fetch_jars, free_port
from include.settings import ENV_PREFIX, Settings, load_settings
from include.simulator import SimulationConfig, generate

ROOT = Path(__file__).resolve().parents[1]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
HEAT_REGION = "lyon"  # threshold 30 °C, baseline well below it
STREAM_SESSION_TIMEOUT_S = 10.0  # streaming.processor's consumers
Log = Callable[[str], None]


# --- options and results -----------------------------------------------------------------------
@dataclass(frozen=True)
class ChaosOptions:
    rate: float = 2000.0  # readings per second sent
    duration_s: float = 60.0  # seconds of production per scenario
    freeze_s: float = 30.0  # SIGSTOP length (freeze scenario)
    regions: int = 5
    sensors_per_region: int = 10
    event_speed: float = 60.0  # seconds of event time per second of production
    heap: str = "256m"
    with_stream: bool = True  # run the stream and expect the heat-wave alert
    keep_failed: bool = True  # keep the work directory of a failed scenario (logs)
    drain_timeout_s: float = 120.0
    archive_timeout_s: float = 300.0
    isr_timeout_s: float = 180.0

    @classmethod
    def quick(cls, **overrides: Any) -> ChaosOptions:
        values: dict[str, Any] = {"rate": 800.0, "duration_s": 20.0, "freeze_s": 10.0}
        values.update(overrides)
        return cls(**values)


@dataclass
class ScenarioResult:
    scenario: str
    produced: int = 0
    acknowledged: int = 0
    failed: int = 0
    archived: int = 0
    lost: int = 0
    duplicated: int = 0
    alerts_expected: int = 0
    alerts_seen: int = 0
    isr_recovered_s: float | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what makes the scenario fail

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.lost == 0
            and self.duplicated == 0
            and self.alerts_seen >= self.alerts_expected
        )


# --- processes ---------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): no child outlives a crashed chaos run."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class StreamInstance:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    killed: bool = False  # killed on purpose: not restarted

    def assignments(self, after: int = 0) -> tuple[list[int] | None, list[int] | None]:
        """Latest readings and region partitions this instance logged (from byte ``after``)."""
        try:
            text = self.log_file.read_bytes()[after:].decode(errors="replace")
        except OSError:
            return None, None
        latest: dict[str, list[int] | None] = {"readings": None, "region": None}
        for match in _ASSIGNED.finditer(text):
            latest[match["stage"]] = [int(p) for p in re.findall(r"\d+", match["partitions"])]
        return latest["readings"], latest["region"]

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0


_ASSIGNED = re.compile(
    r'msg="(?P<stage>readings|region) partitions assigned" partitions="?(?P<partitions>\[[0-9, ]*\])'
)


class ArchiverLoop:
    """``climatewatch archive run`` again and again, one run at a time, until stopped."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.stopping = threading.Event()
        self.runs = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._loop, name="archiver-loop", daemon=True)

    def start(self) -> ArchiverLoop:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 240.0) -> None:
        self.stopping.set()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():  # a run that hangs: end it, the loop then exits
            self.harness.kill_archivers()
            self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            code = self.harness.archive_once(timeout_s=180)
            self.runs += 1
            self.failures += code != 0
            self.stopping.wait(1.5)


# --- the harness ---------------------------------------------------------------------------------
class Harness:
    """One scenario's cluster, producer, stream instances and archiver runs."""

    def __init__(self, name: str, options: ChaosOptions, workdir: Path, log: Log) -> None:
        self.name = name
        self.options = options
        self.workdir = workdir
        self._log = log
        self.started = time.monotonic()
        self.cluster: LocalCluster | None = None
        self.settings: Settings | None = None
        self.result = ScenarioResult(name)
        self.streams: list[StreamInstance] = []
        self.stream_restarts = 0
        self.processes: list[subprocess.Popen[bytes]] = []
        self._archivers: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        # production
        self.acknowledged: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.produced = 0
        self.production_started = 0.0
        self.heat_first_sent: float | None = None
        self.producer_thread: threading.Thread | None = None
        self.stop_producing = threading.Event()
        self._production_done = False
        self.heat_window_wall = (0.45, 0.65)  # share of the production time
        self.heat_region = HEAT_REGION

    # logging
    def log(self, message: str) -> None:
        self._log(f"[{time.monotonic() - self.started:6.1f}s] {self.name}: {message}")

    def note(self, message: str) -> None:
        self.result.notes.append(message)
        self.log(message)

    def problem(self, message: str) -> None:
        self.result.problems.append(message)
        self.log("PROBLEM: " + message)

    # cluster
    def start_cluster(self) -> None:
        jars = fetch_jars(load_settings())
        last: Exception | None = None
        for _attempt in range(3):  # node i uses base port + 100·(i−1): it may be taken
            cluster = LocalCluster(
                self.workdir / "kafka",
                jars=jars,
                nodes=3,
                port=free_port(),
                controller_port=free_port(),
                heap=self.options.heap,
            )
            try:
                self.cluster = cluster
                cluster.start(timeout_s=180, die_with_parent=True)
                break
            except ClimateWatchError as exc:
                last = exc
                cluster.stop()
                shutil.rmtree(self.workdir / "kafka", ignore_errors=True)
        else:
            raise ClimateWatchError(f"could not start the 3-node cluster: {last}")
        self.settings = load_settings(
            bootstrap_servers=self.cluster.bootstrap,
            data_dir=self.workdir / "data",
            kafka_timeout_ms=10_000,
            metrics_port=0,
        )
        from include.topics import ensure_topics

        ensure_topics(self.settings)
        self.log(f"3-node cluster up on {self.cluster.bootstrap}, topics created")
        self.wait_for_full_isr("initial")

    def node(self, node_id: int) -> LocalBroker:
        assert self.cluster is not None
        return self.cluster.nodes[node_id - 1]

    def topics(self) -> list[str]:
        s = self.require_settings()
        return [
            s.topic_readings,
            s.topic_alerts,
            s.topic_window_stats,
            s.topic_dlq,
            s.topic_window_partials,
        ]

    def leader_of(self, topic: str, partition: int) -> int:
        assert self.cluster is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for row in self.cluster.partitions([topic]):
                if row["partition"] == partition and row["leader"] >= 0:
                    return int(row["leader"])
            time.sleep(0.5)
        raise ClimateWatchError(f"no leader for {topic}-{partition} within 60 s")

    def kill_broker(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        broker = self.node(node_id)
        pid = broker.pid()
        broker.kill(sig)
        self.log(f"{signal.Signals(sig).name} → broker node {node_id} (pid {pid})")

    def restart_brokers(self) -> float:
        """Start the nodes that are down; returns when they answer."""
        assert self.cluster is not None
        began = time.monotonic()
        self.cluster.start(timeout_s=180, die_with_parent=True)
        self.log(f"broker(s) restarted, answering after {time.monotonic() - began:.1f}s")
        return began

    def wait_for_full_isr(self, why: str, since: float | None = None) -> float:
        """Every partition of every topic has 3 in-sync replicas and a leader."""
        assert self.cluster is not None
        since = time.monotonic() if since is None else since
        deadline = time.monotonic() + self.options.isr_timeout_s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                rows = self.cluster.partitions(self.topics())
            except Exception as exc:  # a node may still be joining
                rows = [{"error": str(exc)[:100]}]
            if rows and all(len(r.get("isr", ())) == 3 and r.get("leader", -1) >= 0 for r in rows):
                took = time.monotonic() - since
                self.log(
                    f"in-sync replicas back to 3 on all {len(rows)} partitions ({why}) after {took:.1f}s"
                )
                return took
            self.supervise()
            time.sleep(1.0)
        short = [r for r in rows if len(r.get("isr", ())) != 3][:3]
        raise ClimateWatchError(
            f"in-sync replicas not back to 3 within {self.options.isr_timeout_s:.0f}s ({why}): {short}"
        )

    # subprocess environment
    def require_settings(self) -> Settings:
        assert self.settings is not None, "cluster not started"
        return self.settings

    def env(self, **extra: str) -> dict[str, str]:
        s = self.require_settings()
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            {
                f"{ENV_PREFIX}BOOTSTRAP_SERVERS": s.bootstrap_servers,
                f"{ENV_PREFIX}DATA_DIR": str(s.data_dir),
                f"{ENV_PREFIX}METRICS_PORT": "0",
                f"{ENV_PREFIX}KAFKA_TIMEOUT_MS": str(s.kafka_timeout_ms),
                "PYTHONWARNINGS": "ignore::DeprecationWarning",
            }
        )
        env.update(extra)
        return env

    def spawn(self, args: list[str], log_name: str, **env: str) -> subprocess.Popen[bytes]:
        log_file = self.workdir / "logs" / log_name
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "include.ops.cli", *args],
                cwd=ROOT,
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        with self._lock:
            self.processes.append(process)
        return process

    # stream
    def start_streams(self, count: int) -> None:
        for i in range(count):
            self._start_stream(f"stream-{i + 1}")
        self.log(f"{count} stream instance(s) started")

    def _start_stream(self, name: str) -> StreamInstance:
        process = self.spawn(["stream"], f"{name}.log")
        instance = StreamInstance(name, process, self.workdir / "logs" / f"{name}.log")
        existing = [i for i, s in enumerate(self.streams) if s.name == name]
        if existing:
            self.streams[existing[0]] = instance
        else:
            self.streams.append(instance)
        return instance

    def supervise(self) -> None:
        """Restart a stream instance that died on its own (as a service manager would)."""
        for instance in list(self.streams):
            code = instance.process.poll()
            if code is not None and not instance.killed:
                self.stream_restarts += 1
                self.note(f"{instance.name} exited on its own (code {code}), restarted")
                self._start_stream(instance.name)

    def wait_for_stream_assignments(self, timeout_s: float = 90.0) -> None:
        """Until the live instances together hold every readings and region partition."""
        s = self.require_settings()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._assignment_complete(s):
                self.log("stream group assigned every partition")
                return
            self.supervise()
            time.sleep(0.5)
        raise ClimateWatchError(
            f"stream instances did not get their partitions within {timeout_s:.0f}s"
        )

    def _assignment_complete(self, s: Settings, after: dict[str, int] | None = None) -> bool:
        live = [i for i in self.streams if not i.killed and i.process.poll() is None]
        readings: list[int] = []
        regions: list[int] = []
        for instance in live:
            r, g = instance.assignments()
            if r is None or g is None:
                return False
            readings += r
            regions += g
        if after is not None:  # some survivor must have been reassigned since the kill
            moved = any(
                i.assignments(after.get(i.name, 0))[0] is not None
                and i.assignments(after.get(i.name, 0))[1] is not None
                for i in live
            )
            if not moved:
                return False
        return sorted(readings) == list(range(s.readings_partitions)) and sorted(regions) == list(
            range(s.output_partitions)
        )

    def stop_streams(self) -> None:
        for instance in self.streams:
            if instance.process.poll() is None:
                _stop_process(instance.process, timeout_s=40)

    def drain_stream(self) -> None:
        """Stop the live instances, then one ``stream --until-caught-up`` run."""
        self.stop_streams()
        timeout = self.options.drain_timeout_s
        process = self.spawn(
            ["stream", "--until-caught-up", "--max-runtime", str(int(timeout))], "stream-drain.log"
        )
        try:
            code = process.wait(timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            code = None
        self.log(f"stream drained (exit {code})")
        if code != 0:
            self.note(f"stream drain exited with {code}")

    # archiver
    def archive_once(self, timeout_s: float = 180.0, **env: str) -> int | None:
        settings = self.require_settings()
        process = self.spawn(
            ["archive", "run", "--topic", settings.topic_readings], "archiver.log", **env
        )
        with self._lock:
            self._archivers.append(process)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None
        finally:
            with self._lock:
                self._archivers.remove(process)
            if process.returncode not in (0, -signal.SIGKILL):
                self.log(f"archiver run exit {process.returncode}: {self._archiver_error()}")

    def _archiver_error(self) -> str:
        """The last line the archiver printed (its one-line error)."""
        try:
            lines = (self.workdir / "logs" / "archiver.log").read_text(errors="replace")
        except OSError:
            return "?"
        tail = [line for line in lines.splitlines() if line.strip()]
        return tail[-1][:200] if tail else "?"

    def kill_archivers(self) -> None:
        with self._lock:
            running = list(self._archivers)
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def archive_until_caught_up(self) -> None:
        from warehouse.archive.run import archive_status

        s = self.require_settings()
        deadline = time.monotonic() + self.options.archive_timeout_s
        runs = 0
        while time.monotonic() < deadline:
            code = self.archive_once(timeout_s=max(10.0, deadline - time.monotonic()))
            runs += 1
            try:
                lag = sum(st.lag for st in archive_status(s) if st.topic == s.topic_readings)
            except Exception as exc:
                self.log(f"archive status failed: {str(exc)[:120]}")
                lag = -1
            if code == 0 and lag == 0:
                self.log(f"archive caught up after {runs} final run(s)")
                return
            self.log(f"archive run exit {code}, lag {lag}: again")
            time.sleep(1)
        self.problem(f"archive not caught up within {self.options.archive_timeout_s:.0f}s")

    def archive_files(self) -> int:
        return sum(
            1
            for _ in (self.require_settings().data_dir / "archive" / "readings").rglob("*.parquet")
        )

    # production
    def simulation(self) -> SimulationConfig:
        o = self.options
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
            heat_wave=self.heat_region if o.with_stream else None,
            heat_wave_at_s=event_s * first,
            heat_wave_for_s=event_s * (last - first),
        )

    def start_producing(self) -> None:
        config = self.simulation()
        self.result.alerts_expected = 1 if config.heat_wave else 0
        self.production_started = time.monotonic()
        self.producer_thread = threading.Thread(
            target=self._produce, args=(config,), name="producer", daemon=True
        )
        self.producer_thread.start()
        threading.Thread(target=self._progress, name="progress", daemon=True).start()
        self.log(
            f"producing {self.options.rate:.0f} readings/s for {self.options.duration_s:.0f}s"
            + (
                f", heat wave in {config.heat_wave} at {self.heat_window_wall[0]:.0%}..{self.heat_window_wall[1]:.0%}"
                if config.heat_wave
                else ""
            )
        )

    def _progress(self) -> None:
        """A progress line every 5 s while producing (even while the main thread waits)."""
        thread = self.producer_thread
        while not self.stop_producing.wait(5.0) and thread is not None and thread.is_alive():
            self.log(
                f"sent {self.produced}, acknowledged {len(self.acknowledged)}, "
                f"failed {len(self.errors)}"
            )

    def _produce(self, config: SimulationConfig) -> None:
        from include.kafka_clients import make_producer

        s = self.require_settings()
        producer = make_producer(s)
        acknowledged = self.acknowledged
        errors = self.errors
        heat_from = (
            config.start + timedelta(seconds=config.heat_wave_at_s) if config.start else None
        )
        try:
            pace_start = time.monotonic()
            for record in generate(config):
                if self.stop_producing.is_set():
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
        target = self.production_started + share * self.options.duration_s
        while time.monotonic() < target:
            self.supervise()
            time.sleep(min(0.2, max(0.0, target - time.monotonic())))

    def wait_producer(self) -> None:
        assert self.producer_thread is not None
        if self._production_done:
            return
        deadline = time.monotonic() + self.options.duration_s * 3 + 240
        while self.producer_thread.is_alive() and time.monotonic() < deadline:
            self.supervise()
            self.producer_thread.join(timeout=0.5)
        if self.producer_thread.is_alive():
            self.stop_producing.set()
            self.producer_thread.join(timeout=200)
            self.problem("production did not finish in time")
        self._production_done = True
        self.result.produced = self.produced
        self.result.acknowledged = len(self.acknowledged)
        self.result.failed = len(self.errors)
        self.log(
            f"production done: {self.produced} sent, {len(self.acknowledged)} acknowledged, "
            f"{len(self.errors)} failed in {time.monotonic() - self.production_started:.1f}s"
        )
        if self.errors:
            self.note(f"{len(self.errors)} sends failed, e.g. {self.errors[0]}")

    # alerts
    def heat_alerts(self) -> set[str]:
        from kafka import TopicPartition

        from include.events import Alert
        from include.kafka_clients import make_consumer

        s = self.require_settings()
        consumer = make_consumer(s)
        seen: set[str] = set()
        try:
            partitions = [
                TopicPartition(s.topic_alerts, p)
                for p in consumer.partitions_for_topic(s.topic_alerts) or ()
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise ClimateWatchError("could not read the alerts topic within 30 s")
                for batch in consumer.poll(timeout_ms=300).values():
                    for record in batch:
                        alert = Alert.from_json(record.value)
                        if (
                            alert.rule == "heat"
                            and alert.status == "firing"
                            and alert.region == self.heat_region
                        ):
                            seen.add(alert.alert_id)
        finally:
            consumer.close()
        return seen

    def wait_for_heat_alert(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.heat_alerts():
                self.log("heat alert seen on the alerts topic")
                return
            self.supervise()
            time.sleep(2)
        self.log(f"no heat alert within {timeout_s:.0f}s of live stream; draining")

    # the end
    def finish(self) -> ScenarioResult:
        """After production: replicas, stream, archive, then count with DuckDB."""
        self.wait_producer()
        if self.options.with_stream:
            self.wait_for_heat_alert(timeout_s=self.options.drain_timeout_s)
            self.drain_stream()
            self.result.alerts_seen = len(self.heat_alerts())
            if self.heat_first_sent is not None:
                self.log(
                    f"heat wave first sent {self.heat_first_sent - self.production_started:.1f}s "
                    "into production"
                )
        self.archive_until_caught_up()
        self.count_archive()
        return self.result

    def count_archive(self) -> None:
        import duckdb
        import pyarrow as pa

        root = self.require_settings().data_dir / "archive" / "readings"
        acked = pa.table(
            {
                "sensor_id": [k[0] for k in self.acknowledged],
                "ms": pa.array([k[1] for k in self.acknowledged], pa.int64()),
            }
        )
        con = duckdb.connect()
        try:
            con.register("acked", acked)
            if not any(root.rglob("*.parquet")):
                con.execute("CREATE TABLE archived (sensor_id VARCHAR, ms BIGINT, n BIGINT)")
            else:
                con.execute(
                    "CREATE TABLE archived AS SELECT sensor_id, epoch_ms(ts) AS ms, count(*) AS n "
                    f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true) GROUP BY ALL"
                )
            archived, duplicated = con.execute(
                "SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n > 1) FROM archived"
            ).fetchone()
            (lost,) = con.execute(
                "SELECT count(*) FROM (SELECT DISTINCT sensor_id, ms FROM acked) "
                "ANTI JOIN archived USING (sensor_id, ms)"
            ).fetchone()
        finally:
            con.close()
        self.result.archived = int(archived)
        self.result.duplicated = int(duplicated)
        self.result.lost = int(lost)
        self.log(f"archive: {archived} rows, {lost} lost, {duplicated} duplicated")

    def close(self) -> None:
        """Stop every subprocess and every node (frozen ones are resumed first)."""
        self.stop_producing.set()
        with self._lock:
            processes = list(self.processes)
        for process in processes:
            with contextlib.suppress(Exception):
                _stop_process(process, timeout_s=10)
        if self.producer_thread is not None:
            self.producer_thread.join(timeout=200)
        if self.cluster is not None:
            for node in self.cluster.nodes:
                node.kill(signal.SIGCONT)
            self.cluster.stop()


# --- the scenarios ---------------------------------------------------------------------------
def broker_kill(h: Harness) -> None:
    """kill -9 of one broker while producing; the heat wave comes after the kill; restart."""
    h.start_producing()
    h.at(0.25)
    victim = 1
    h.kill_broker(victim)
    h.at(0.7)
    restarted = h.restart_brokers()
    h.wait_producer()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {victim} restarted", since=restarted)
    if (
        h.heat_first_sent is not None
        and h.heat_first_sent < h.production_started + 0.25 * h.options.duration_s
    ):
        h.problem("the heat wave started before the kill")


def leader_kill(h: Harness) -> None:
    """kill -9 of the leader of temperature-data partition 0."""
    h.start_producing()
    h.at(0.3)
    leader = h.leader_of(h.require_settings().topic_readings, 0)
    h.log(f"temperature-data partition 0 is led by node {leader}")
    h.kill_broker(leader)
    h.at(0.7)
    restarted = h.restart_brokers()
    h.wait_producer()
    h.result.isr_recovered_s = h.wait_for_full_isr(
        f"leader node {leader} restarted", since=restarted
    )


def broker_freeze(h: Harness) -> None:
    """SIGSTOP of one broker (a partition leader) for freeze_s seconds, then SIGCONT."""
    h.start_producing()
    h.at(0.2)
    leader = h.leader_of(h.require_settings().topic_readings, 1)
    h.kill_broker(leader, signal.SIGSTOP)
    frozen_until = time.monotonic() + h.options.freeze_s
    while time.monotonic() < frozen_until:
        h.supervise()
        time.sleep(0.2)
    h.kill_broker(leader, signal.SIGCONT)
    resumed = time.monotonic()
    h.wait_producer()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {leader} resumed", since=resumed)


def stream_kill(h: Harness) -> None:
    """Three stream instances; the one holding the heat region is killed (kill -9)."""
    from kafka.partitioner.default import murmur2

    s = h.require_settings()
    h.start_producing()
    h.at(0.25)
    region_partition = (murmur2(h.heat_region.encode()) & 0x7FFFFFFF) % s.output_partitions
    victim = next(
        (i for i in h.streams if region_partition in (i.assignments()[1] or ())), h.streams[0]
    )
    offsets = {i.name: i.log_size() for i in h.streams}
    victim.killed = True
    victim.process.kill()
    killed_at = time.monotonic()
    h.log(
        f"kill -9 → {victim.name} (pid {victim.process.pid}), holder of region partition "
        f"{region_partition} ({h.heat_region})"
    )
    moved = None
    while time.monotonic() < killed_at + 90:
        if h._assignment_complete(s, after=offsets):
            moved = time.monotonic() - killed_at
            break
        h.supervise()
        time.sleep(0.2)
    if moved is None:
        h.problem("the killed instance's partitions did not move within 90 s")
    else:
        h.note(f"partitions moved to the 2 survivors {moved:.1f}s after the kill")
        if moved > STREAM_SESSION_TIMEOUT_S + 10:
            h.problem(
                f"partitions took {moved:.1f}s to move (session timeout {STREAM_SESSION_TIMEOUT_S:.0f}s)"
            )
    h.wait_producer()
    if h.heat_first_sent is not None and h.heat_first_sent < killed_at:
        h.problem("the heat wave started before the kill")


def archiver_kill(h: Harness, archiver: ArchiverLoop) -> None:
    """A broker killed; the archiver killed (kill -9) mid-run meanwhile; then re-run."""
    h.start_producing()
    h.at(0.3)
    archiver.stop()  # one archiver at a time: the loop's run finishes first
    victim = h.leader_of(h.require_settings().topic_readings, 2)
    h.kill_broker(victim)
    for attempt in (1, 2):
        h.at(0.3 + 0.15 * attempt)
        files_before = h.archive_files()
        result: dict[str, int | None] = {}

        def killed_run(result: dict[str, int | None] = result) -> None:
            batch = {f"{ENV_PREFIX}ARCHIVE_BATCH_RECORDS": "300"}  # many small batches
            result["code"] = h.archive_once(timeout_s=180, **batch)

        runner = threading.Thread(target=killed_run)
        runner.start()
        deadline = time.monotonic() + 60
        while (
            runner.is_alive() and time.monotonic() < deadline and h.archive_files() <= files_before
        ):
            time.sleep(0.05)
        written = h.archive_files() - files_before
        h.kill_archivers()
        runner.join(timeout=30)
        h.log(
            f"kill -9 → archiver run {attempt} after {written} new file(s) "
            f"(exit {result.get('code')})"
        )
        if result.get("code") == 0:
            h.note(f"archiver run {attempt} finished before it could be killed")
    restarted = h.restart_brokers()
    h.wait_producer()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {victim} restarted", since=restarted)


SCENARIOS: dict[str, str] = {
    "broker-kill": "kill -9 of a broker while producing, heat wave after it, restart",
    "leader-kill": "kill -9 of the leader of temperature-data partition 0",
    "broker-freeze": "SIGSTOP of a partition leader, then SIGCONT",
    "stream-kill": "3 stream instances, kill -9 of the one holding the heat region",
    "archiver-kill": "kill -9 of the archiver mid-run during a broker failure, re-run",
}


def run_scenario(name: str, options: ChaosOptions, log: Log = print) -> ScenarioResult:
    """Run one scenario from a fresh cluster to the DuckDB count; never leaves processes."""
    if name not in SCENARIOS:
        raise ClimateWatchError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    harness = Harness(name, options, workdir, log)
    archiver: ArchiverLoop | None = None
    try:
        harness.log(SCENARIOS[name])
        harness.start_cluster()
        if options.with_stream:
            harness.start_streams(3 if name == "stream-kill" else 1)
            harness.wait_for_stream_assignments()
        archiver = ArchiverLoop(harness).start()
        if name == "broker-kill":
            broker_kill(harness)
        elif name == "leader-kill":
            leader_kill(harness)
        elif name == "broker-freeze":
            broker_freeze(harness)
        elif name == "stream-kill":
            stream_kill(harness)
        else:
            archiver_kill(harness, archiver)
        archiver.stop()
        harness.log(f"archiver loop: {archiver.runs} runs, {archiver.failures} failed")
        harness.finish()
        if harness.stream_restarts:
            harness.note(
                f"stream restarted {harness.stream_restarts} time(s) after dying on its own"
            )
    except Exception as exc:
        harness.problem(f"{type(exc).__name__}: {exc}")
    finally:
        if archiver is not None:
            archiver.stop(timeout_s=30)
        harness.close()
    result = harness.result
    result.elapsed_s = time.monotonic() - harness.started
    if result.ok or not options.keep_failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.notes.append(f"logs kept in {workdir}")
        log(f"{name}: work directory kept for inspection: {workdir}")
    return result


COLUMNS = (
    ("scenario", 14),
    ("produced", 9),
    ("acked", 9),
    ("archived", 9),
    ("lost", 5),
    ("dup", 5),
    ("alerts exp", 10),
    ("alerts seen", 11),
    ("isr→3 s", 8),
    ("time s", 7),
    ("ok", 3),
)


def table(results: list[ScenarioResult]) -> Iterator[str]:
    """The result table, one row per scenario (then the notes)."""
    yield "  ".join(
        f"{title:>{width}}" if i else f"{title:<{width}}"
        for i, (title, width) in enumerate(COLUMNS)
    )
    for r in results:
        cells = (
            r.scenario,
            r.produced,
            r.acknowledged,
            r.archived,
            r.lost,
            r.duplicated,
            r.alerts_expected,
            r.alerts_seen,
            "-" if r.isr_recovered_s is None else f"{r.isr_recovered_s:.1f}",
            f"{r.elapsed_s:.0f}",
            "yes" if r.ok else "NO",
        )
        yield "  ".join(
            f"{cell!s:>{width}}" if i else f"{cell!s:<{width}}"
            for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
        )
    for r in results:
        for line in [*r.problems, *r.notes]:
            yield f"  {r.scenario}: {line}"
