"""``make demo``: the whole of ClimateWatch on embedded defaults, until Ctrl-C.

Starts what is not already running — the local Kafka broker and topics, a real Airflow 3
(API server, scheduler, DAG processor, triggerer; SQLite, LocalExecutor), the streaming
consumer and the notification service — then runs the simulator in real time with a heat
wave and a trickle of malformed records. The terminal shows readings sent and arrived per
region, alerts, archive lag and DAG runs, with the Airflow URL and login, the DuckDB file
and the report as soon as they exist; with no receiver configured, the notification
service delivers to a local webhook the demo starts, and each notification is printed. Ctrl-C stops what the demo started, in reverse order; the next run
resumes from the same data directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from include.contract import Reading, parse_reading
from include.settings import Settings, load_settings
from include.simulator import SimulationConfig, SimulationStats, run_simulation

# Demo-friendly schedules, for the demo's own processes and the Airflow it starts.
DEMO_ENVIRONMENT = {"CLIMATEWATCH_ARCHIVE_INTERVAL_MINUTES": "1"}
DEMO_DAGS = ("archive_readings", "regional_stats", "data_quality", "climate_report")


@dataclass
class DemoStatus:
    """What the status poller last saw (written by its thread, read by the display)."""

    arrived: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_alert: str = ""
    archive_lag: int | None = None
    dag_runs: dict[str, str] = field(default_factory=dict)
    warehouse: Path | None = None
    report: Path | None = None
    problem: str = ""
    notifications: Any = None  # the demo's webhook sink (include.ops.webhook_sink), if any


class TopicWatcher(threading.Thread):
    """Counts readings arriving on the readings topic and alerts on the alerts topic."""

    def __init__(self, settings: Settings, status: DemoStatus, stop: threading.Event) -> None:
        super().__init__(name="topic-watcher", daemon=True)
        self.settings = settings
        self.status = status
        self.stop_event = stop
        self.ready = threading.Event()

    def run(self) -> None:
        from kafka import TopicPartition

        from include.events import Alert
        from include.kafka_clients import make_consumer

        consumer = make_consumer(self.settings)
        readings, alerts = self.settings.topic_readings, self.settings.topic_alerts
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in (readings, alerts)
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            consumer.assign(partitions)
            consumer.seek_to_end(*[p for p in partitions if p.topic == readings])
            consumer.seek_to_beginning(*[p for p in partitions if p.topic == alerts])
            self.ready.set()
            while not self.stop_event.is_set():
                for tp, records in consumer.poll(timeout_ms=300).items():
                    for record in records:
                        if tp.topic == readings:
                            reading = parse_reading(record.value)
                            region = (
                                reading.region if isinstance(reading, Reading) else "(malformed)"
                            )
                            self.status.arrived[region] += 1
                        else:
                            with contextlib.suppress(Exception):
                                alert = Alert.from_json(record.value)
                                self.status.alerts[(alert.rule, alert.status)] += 1
                                self.status.last_alert = (
                                    f"{alert.status} {alert.rule} {alert.region}: {alert.message}"
                                )
        finally:
            self.ready.set()
            consumer.close()


class StatusPoller(threading.Thread):
    """Every few seconds: archive lag, DAG runs, and whether warehouse and report exist."""

    def __init__(
        self, settings: Settings, status: DemoStatus, stop: threading.Event, client: Any
    ) -> None:
        super().__init__(name="status-poller", daemon=True)
        self.settings = settings
        self.status = status
        self.stop_event = stop
        self.client = client

    def run(self) -> None:
        from warehouse.status import latest_report

        while not self.stop_event.wait(5):
            try:
                from warehouse.archive.summary import archive_status

                rows = archive_status(self.settings)
                self.status.archive_lag = sum(
                    r.lag for r in rows if r.topic == self.settings.topic_readings
                )
            except Exception as exc:  # the display must never die with a poll
                self.status.problem = f"archive status: {exc}"[:120]
            for dag_id in DEMO_DAGS:
                try:
                    runs = self.client.dag_runs(dag_id, limit=50)
                except Exception:
                    self.status.dag_runs[dag_id] = "waiting for Airflow to parse it"
                    continue
                states = Counter(run["state"] for run in runs)
                self.status.dag_runs[dag_id] = (
                    ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no run yet"
                )
            warehouse = self.settings.warehouse_path
            self.status.warehouse = warehouse.absolute() if warehouse.exists() else None
            report = latest_report(self.settings)
            self.status.report = report.absolute() if report else None


def status_view(stats: SimulationStats, status: DemoStatus, airflow_url: str, login: str) -> Group:
    regions = Table(
        title=f"readings: sent {stats.sent:,} ({stats.rate:,.0f}/s), failed {stats.failed}",
        title_justify="left",
    )
    regions.add_column("region")
    regions.add_column("sent", justify="right")
    regions.add_column("arrived", justify="right")
    for region in sorted(set(stats.by_region) | set(status.arrived)):
        regions.add_row(
            region, f"{stats.by_region.get(region, 0):,}", f"{status.arrived.get(region, 0):,}"
        )

    pipeline = Table(title="pipeline", title_justify="left", show_header=False)
    pipeline.add_column("what")
    pipeline.add_column("state")
    alerts = (
        ", ".join(f"{rule} {state} {n}" for (rule, state), n in sorted(status.alerts.items()))
        or "none yet"
    )
    pipeline.add_row("alerts", alerts)
    if status.last_alert:
        pipeline.add_row("last alert", status.last_alert[:100])
    sink = status.notifications
    if sink is not None:
        with sink.received.lock:
            count, last = sink.received.count, sink.received.last
        pipeline.add_row("notifications", f"{count} received at {sink.url}")
        if last:
            pipeline.add_row("last notification", last[:100])
    pipeline.add_row(
        "archive lag", "…" if status.archive_lag is None else f"{status.archive_lag:,} readings"
    )
    for dag_id in DEMO_DAGS:
        pipeline.add_row(f"DAG {dag_id}", status.dag_runs.get(dag_id, "…"))
    pipeline.add_row("Airflow UI", f"{airflow_url}  ({login})")
    pipeline.add_row(
        "DuckDB",
        f'climatewatch sql "SELECT * FROM regional_daily"  ({status.warehouse})'
        if status.warehouse
        else "not built yet",
    )
    pipeline.add_row("report", str(status.report) if status.report else "not written yet")
    if status.problem:
        pipeline.add_row("note", status.problem)
    return Group(regions, pipeline)


def run_demo(
    settings: Settings,
    console: Console,
    *,
    rate: float = 50.0,
    regions: int = 10,
    sensors: int = 5,
    duration_s: float | None = None,
    api_port: int = 8080,
) -> None:
    """Start Kafka and the stack, simulate with a live status view, stop what was started."""
    from include.kafka_local.cluster import LocalCluster
    from include.kafka_local.jars import fetch_jars
    from include.ops.stack import Supervisor
    from include.ops.webhook_sink import WebhookSink

    os.environ.update(DEMO_ENVIRONMENT)
    overrides: dict[str, Any] = {"archive_interval_minutes": 1}
    sink = None
    if settings.notify_file is None and settings.webhook_url is None:
        # nobody to notify yet: the notification service delivers to a receiver we show
        sink = WebhookSink().start()
        overrides["webhook_url"] = sink.url
    settings = load_settings(**{**settings.model_dump(), **overrides})
    fetch_jars(settings)
    cluster = LocalCluster.from_settings(settings)
    started_kafka = _start_kafka(settings, cluster, console)
    supervisor = Supervisor(settings.run_dir)
    started: list[str] = []
    stop = threading.Event()
    stats = SimulationStats()
    try:
        airflow_url, login, client = _start_services(
            settings, supervisor, started, console, api_port
        )
        status = DemoStatus(notifications=sink)
        watcher = TopicWatcher(settings, status, stop)
        watcher.start()
        watcher.ready.wait(timeout=30)
        StatusPoller(settings, status, stop, client).start()
        config = SimulationConfig(
            regions=regions,
            sensors_per_region=sensors,
            rate=rate,
            heat_wave="marseille",
            heat_wave_at_s=30.0,
            heat_wave_for_s=240.0,
            malformed_ratio=0.005,
        )
        view = functools.partial(status_view, stats, status, airflow_url, login)
        _simulate(settings, config, stats, stop, console, view, duration_s, sink)
    except KeyboardInterrupt:
        console.print("stopping …")
    finally:
        stop.set()
        for name in reversed(started):
            console.print(f"stopping {name} …")
            supervisor.stop(name)
        if started_kafka:
            with contextlib.suppress(Exception):
                cluster.stop()
                console.print("Kafka broker stopped")
        if sink is not None:
            sink.stop()
        console.print(f"demo stopped: {stats.sent:,} readings sent, {stats.failed} failed")


def _start_kafka(settings: Settings, cluster: Any, console: Console) -> bool:
    """Start the local broker and the topics; True when this demo started the broker."""
    from include.topics import ensure_topics

    console.print(f"starting the Kafka broker on {cluster.bootstrap} …")
    started = cluster.start() == "started"
    for result in ensure_topics(settings):
        console.print(f"  topic {result.name}: {result.state} ({result.detail})")
    return started


def _start_services(
    settings: Settings, supervisor: Any, started: list[str], console: Console, api_port: int
) -> tuple[str, str, Any]:
    """Start Airflow and the stream (each name goes into ``started`` as it starts)."""
    from include.ops.airflow_api import AirflowClient
    from include.ops.stack import airflow_admin_password, stack_services

    for service in stack_services(settings, api_port=api_port):
        console.print(f"starting {service.name} …")
        if supervisor.start(service) == "started":
            started.append(service.name)
    airflow_url = f"http://127.0.0.1:{api_port}"
    login = f"user admin, password {airflow_admin_password(settings)}"
    console.print(f"Airflow UI: {airflow_url} ({login})")
    client = AirflowClient(airflow_url, "admin", airflow_admin_password(settings))
    return airflow_url, login, client


def _simulate(
    settings: Settings,
    config: SimulationConfig,
    stats: SimulationStats,
    stop: threading.Event,
    console: Console,
    view: Callable[[], Group],
    duration_s: float | None,
    sink: Any = None,
) -> None:
    """Run the simulator in a thread and refresh the status view every second."""
    simulator = threading.Thread(
        target=run_simulation,
        args=(settings, config),
        kwargs={"stats": stats, "should_stop": stop.is_set},
        name="simulator",
        daemon=True,
    )
    simulator.start()
    console.print(
        f"simulating {config.regions} regions × {config.sensors_per_region} sensors at "
        f"{config.rate:g} readings/s (heat wave in marseille after 30 s); Ctrl-C stops the demo"
    )
    deadline = time.monotonic() + duration_s if duration_s else None
    with Live(console=console, refresh_per_second=1) as live:
        shown = 0
        while simulator.is_alive() and (deadline is None or time.monotonic() < deadline):
            live.update(view())
            shown = _print_new_notifications(live.console, sink, shown)
            time.sleep(1)
        live.update(view())


def _print_new_notifications(console: Console, sink: Any, shown: int) -> int:
    """One terminal line per notification the demo's receiver got since the last call."""
    if sink is None:
        return shown
    with sink.received.lock:
        count, last = sink.received.count, sink.received.last
    if count > shown:
        console.print(f"notification received ({count} so far): {last[:160]}")
    return count
