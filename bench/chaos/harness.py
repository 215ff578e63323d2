"""One scenario's harness: a 3-node cluster and the components under test running on it.

:class:`Harness` owns the cluster (start, kill and restart of its brokers, waiting for the
in-sync replicas), starts the ``climatewatch`` subprocesses, and holds the components a
scenario drives: ``producer`` (the simulator), ``streams`` (the stream instances) and
``archiver`` (archiver runs). :meth:`Harness.finish` ends a scenario with the count of
what the archive holds; :meth:`Harness.close` stops everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos.archiver import Archiver
from bench.chaos.processes import spawn_cli, stop_process
from bench.chaos.producer import Producer
from bench.chaos.stream import Streams
from bench.chaos.table import ScenarioResult, count_archive
from include.errors import ClimateWatchError
from include.kafka_local.broker import LocalBroker
from include.kafka_local.cluster import LocalCluster
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
from include.settings import ENV_PREFIX, Settings, load_settings

HEAT_REGION = "lyon"  # threshold 30 °C, baseline well below it
Log = Callable[[str], None]


@dataclass(frozen=True)
class ChaosOptions:
    rate: float = 2000.0  # readings per second sent
    duration_s: float = 60.0  # seconds of production per scenario
    freeze_s: float = 30.0  # SIGSTOP length (freeze scenario)
    send_fail_s: float = 20.0  # least time a topic refuses the stream's writes (send-fail)
    send_fail_delivery_timeout_ms: int = 5000  # the stream's retry bound in send-fail
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
        values: dict[str, Any] = {
            "rate": 800.0,
            "duration_s": 20.0,
            "freeze_s": 10.0,
            "send_fail_s": 10.0,
        }
        values.update(overrides)
        return cls(**values)


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
        self.heat_region = HEAT_REGION
        self.processes: list[subprocess.Popen[bytes]] = []
        self.extra_env: dict[str, str] = {}  # the scenario's settings for every subprocess
        self._lock = threading.Lock()
        self.producer = Producer(self)
        self.streams = Streams(self)
        self.archiver = Archiver(self)

    # --- logging -------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        self._log(f"[{time.monotonic() - self.started:6.1f}s] {self.name}: {message}")

    def note(self, message: str) -> None:
        self.result.notes.append(message)
        self.log(message)

    def problem(self, message: str) -> None:
        self.result.problems.append(message)
        self.log("PROBLEM: " + message)

    # --- the cluster ---------------------------------------------------------------------------
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

    # --- topic configuration (the send-fail scenario) ------------------------------------------
    def topic_override(self, topic: str, key: str) -> str | None:
        """``topic``'s own value of config ``key`` (None: it has none, the broker's default)."""
        from kafka.admin import ConfigResource, ConfigResourceType

        from include.kafka_clients import make_admin

        admin = make_admin(self.require_settings())
        try:
            described = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={key: None})],
                config_filter="modified",
            )
        finally:
            admin.close()
        entry = described.get("topic", {}).get(topic, {}).get(key)
        return None if entry is None else entry["value"]

    def set_topic_config(self, topic: str, key: str, value: str | None) -> str | None:
        """Set ``topic``'s config ``key`` (None: remove the topic's own value) with
        IncrementalAlterConfigs, the other keys untouched, and wait until the brokers report
        it; returns the previous value (None: there was none)."""
        from kafka.admin import ConfigResource, ConfigResourceType

        from include.kafka_clients import make_admin

        previous = self.topic_override(topic, key)
        change = ("DELETE", None) if value is None else ("SET", value)
        admin = make_admin(self.require_settings())
        try:
            result = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={key: change})],
                incremental=True,
            )
        finally:
            admin.close()
        outcome = result.get("topic", {}).get(topic)
        if outcome != "OK":
            raise ClimateWatchError(f"could not set {key}={value} on topic {topic!r}: {outcome}")
        deadline = time.monotonic() + 30
        while (now := self.topic_override(topic, key)) != value:
            if time.monotonic() > deadline:
                raise ClimateWatchError(
                    f"topic {topic!r} still has {key}={now} 30 s after the change"
                )
            time.sleep(0.2)
        default = "the broker's default"
        self.log(f"topic {topic}: {key} {previous or default} → {value or default}")
        return previous

    # --- the stream instances' logs ------------------------------------------------------------
    def stream_logs(self) -> dict[str, int]:
        """Each live-stream log (``logs/stream-N.log``, appended across restarts) and its size
        now: a mark for :meth:`stream_log_since`."""
        marks = {}
        for path in sorted((self.workdir / "logs").glob("stream-*.log")):
            if path.name != "stream-drain.log":
                marks[path.name] = path.stat().st_size
        return marks

    def stream_log_since(self, marks: dict[str, int]) -> list[str]:
        """The lines the stream instances logged after ``marks`` (every log, in name order)."""
        lines: list[str] = []
        for name in self.stream_logs():
            data = (self.workdir / "logs" / name).read_bytes()[marks.get(name, 0) :]
            lines += data.decode(errors="replace").splitlines()
        return lines

    # --- subprocesses --------------------------------------------------------------------------
    def require_settings(self) -> Settings:
        assert self.settings is not None, "cluster not started"
        return self.settings

    def archive_root(self) -> Path:
        return self.require_settings().data_dir / "archive" / "readings"

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
        env.update(self.extra_env)
        env.update(extra)
        return env

    def spawn(self, args: list[str], log_name: str, **env: str) -> subprocess.Popen[bytes]:
        """``climatewatch ARGS`` on this cluster, logging to ``logs/LOG_NAME``."""
        process = spawn_cli(args, self.workdir / "logs" / log_name, self.env(**env))
        with self._lock:
            self.processes.append(process)
        return process

    def supervise(self) -> None:
        """Restart a stream instance that died on its own (every wait calls this)."""
        self.streams.supervise()

    # --- the end -------------------------------------------------------------------------------
    def finish(self) -> ScenarioResult:
        """After production: replicas, stream, archive, then count with DuckDB."""
        self.producer.wait()
        if self.options.with_stream:
            self.streams.wait_for_heat_alert(timeout_s=self.options.drain_timeout_s)
            self.streams.drain()
            self.result.alerts_seen = len(self.streams.heat_alerts())
            if self.producer.heat_first_sent is not None:
                self.log(
                    f"heat wave first sent {self.producer.heat_first_sent - self.producer.started:.1f}s "
                    "into production"
                )
        self.archiver.until_caught_up()
        self.count_archive()
        return self.result

    def count_archive(self) -> None:
        archived, lost, duplicated = count_archive(self.archive_root(), self.producer.acknowledged)
        self.result.archived = archived
        self.result.duplicated = duplicated
        self.result.lost = lost
        self.log(f"archive: {archived} rows, {lost} lost, {duplicated} duplicated")

    def close(self) -> None:
        """Stop every subprocess and every node (frozen ones are resumed first)."""
        self.producer.stop()
        with self._lock:
            processes = list(self.processes)
        for process in processes:
            with contextlib.suppress(Exception):
                stop_process(process, timeout_s=10)
        self.producer.join(timeout_s=200)
        if self.cluster is not None:
            for node in self.cluster.nodes:
                node.kill(signal.SIGCONT)
            self.cluster.stop()
