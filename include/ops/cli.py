"""The ``climatewatch`` command: one entry point, a sub-command per part of the product.

The composition root (top floor): each part owns its commands (``streaming/cli.py``,
``warehouse/{archive,stats,quality,report}/cli.py``) and is registered here. Expected failures (:class:`ClimateWatchError`) print one line and exit 1.
"""

from __future__ import annotations

import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from include.errors import ClimateWatchError
from include.settings import Settings, describe_settings, get_settings
from streaming.cli import alerts_app, stream
from streaming.notify.cli import notify
from streaming.notify.cli import register as register_alert_commands
from warehouse.archive.cli import archive_app
from warehouse.quality.cli import quality_app
from warehouse.report.cli import report_command
from warehouse.stats.cli import backtest_command, sql_command, warehouse_app

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"kafka(\..*)?")

console = Console()
app = typer.Typer(
    help="ClimateWatch: real-time weather monitoring on Apache Kafka and Apache Airflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
kafka_app = typer.Typer(
    help="The local Apache Kafka broker (KRaft, no ZooKeeper).", no_args_is_help=True
)
topics_app = typer.Typer(help="ClimateWatch topics.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(archive_app, name="archive")
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(quality_app, name="quality")
app.command("stream")(stream)
app.command("notify")(notify)
register_alert_commands(alerts_app)
app.add_typer(alerts_app, name="alerts")
app.command("sql")(sql_command)
app.command("backtest")(backtest_command)
app.command("report")(report_command)


# --- settings -----------------------------------------------------------------------------
@app.command("settings")
def show_settings() -> None:
    """List every setting with its environment variable, default and current value."""
    from rich.table import Table

    current = get_settings()
    table = Table("variable", "current", "default", "meaning")
    for doc in describe_settings():
        value = getattr(current, doc.name)
        shown = "" if value is None else str(value)
        secret = isinstance(value, SecretStr)
        table.add_row(doc.variable, "***" if secret else shown, doc.default, doc.description)
    console.print(table)


# --- kafka ----------------------------------------------------------------------------------
@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Download the Kafka broker jars from Maven Central into the cache (once)."""
    from include.kafka_local.jars import fetch_jars

    path = fetch_jars(get_settings())
    console.print(f"Kafka jars ready in {path}")


@kafka_app.command("start")
def kafka_start(
    nodes: Annotated[
        int | None, typer.Option(help="KRaft nodes on loopback (default: as before, else 1).")
    ] = None,
    sasl: Annotated[
        bool | None,
        typer.Option(
            "--sasl/--no-sasl",
            help="SASL/SCRAM-SHA-512 with ACLs per client role (default: as before).",
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help="With --sasl: TLS (SASL_SSL) with a locally generated CA (default: as before).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the brokers to answer.")
    ] = 120,
) -> None:
    """Start the local broker (or a replicated cluster) and wait until it answers."""
    from include.kafka_local.cluster import LocalCluster
    from include.kafka_local.jars import fetch_jars
    from include.kafka_local.security import CLIENT_ROLES

    settings = get_settings()
    fetch_jars(settings)
    cluster = LocalCluster.from_settings(settings, nodes=nodes, sasl=sasl, tls=tls)
    outcome = cluster.start(timeout_s=timeout)
    pids = ", ".join(str(node.pid()) for node in cluster.nodes)
    size = f"{len(cluster.nodes)}-node cluster" if len(cluster.nodes) > 1 else "broker"
    if outcome == "already running":
        console.print(f"Kafka {size} already running (pid {pids}, {cluster.bootstrap})")
    else:
        console.print(
            f"Kafka {size} started on {cluster.bootstrap} (pid {pids}, logs in {cluster.state_dir})"
        )
    if cluster.sasl is not None:
        clients = cluster.state_dir / "clients"
        clients.mkdir(exist_ok=True)
        for role in ("admin", *CLIENT_ROLES):
            env_file = clients / f"{role}.env"
            env_file.touch(mode=0o600)
            env_file.write_text(
                "".join(
                    f"export {k}={v}\n"
                    for k, v in cluster.sasl.client_env(
                        role, cluster.bootstrap, tls=cluster.tls
                    ).items()
                )
            )
        granted = cluster.grant_client_acls(settings)
        console.print(
            f"SASL/SCRAM-SHA-512 on; {granted} ACLs for roles {', '.join(CLIENT_ROLES)}; "
            f"client settings per role: source {clients}/<role>.env"
        )
    if cluster.tls is not None:
        console.print(f"TLS on (SASL_SSL); clients trust the local CA {cluster.tls.ca_file}")
    if len(cluster.nodes) > 1 and settings.bootstrap_servers != cluster.bootstrap:
        console.print(f"set CLIMATEWATCH_BOOTSTRAP_SERVERS={cluster.bootstrap} for clients")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker (every node) cleanly."""
    from include.kafka_local.cluster import LocalCluster

    outcome = LocalCluster.from_settings(get_settings()).stop()
    console.print("Kafka broker stopped" if outcome == "stopped" else "Kafka broker is not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Each node, and the leader and in-sync replicas of every ClimateWatch partition."""
    from include.kafka_local.cluster import LocalCluster
    from include.topics import topic_specs

    settings = get_settings()
    cluster = LocalCluster.from_settings(settings)
    statuses = cluster.status()
    for status in statuses:
        console.print(status.describe())
    if not all(status.running and status.answering for status in statuses):
        raise typer.Exit(1)
    if len(cluster.nodes) > 1 or cluster.sasl is not None:
        from rich.table import Table

        table = Table("topic", "partition", "leader", "replicas", "in sync")
        for row in cluster.partitions([spec.name for spec in topic_specs(settings)]):
            lagging = len(row["isr"]) < len(row["replicas"])
            table.add_row(
                row["topic"],
                str(row["partition"]),
                str(row["leader"]),
                ",".join(map(str, row["replicas"])),
                f"[red]{','.join(map(str, row['isr']))}[/]"
                if lagging
                else ",".join(map(str, row["isr"])),
            )
        console.print(table)


# --- topics --------------------------------------------------------------------------------
@topics_app.command("create")
def topics_create() -> None:
    """Create the ClimateWatch topics; a second run changes nothing and says so."""
    from include.topics import ensure_topics

    results = ensure_topics(get_settings())
    for result in results:
        style = {"created": "green", "exists": "dim", "mismatch": "bold red"}[result.state]
        console.print(f"[{style}]{result.state:>8}[/] {result.name}: {result.detail}")
    if all(result.state == "exists" for result in results):
        console.print("nothing to change")
    if any(result.state == "mismatch" for result in results):
        raise typer.Exit(1)


# --- simulator and replay ------------------------------------------------------------------
@app.command("simulate")
def simulate(
    regions: Annotated[int, typer.Option(help="Number of regions (max 20).")] = 10,
    sensors: Annotated[int, typer.Option(help="Sensors per region.")] = 5,
    rate: Annotated[
        float, typer.Option(help="Readings per second (0: as fast as possible).")
    ] = 50.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many readings.")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds of event time.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same readings).")] = 42,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="Simulated event time start (UTC); default: real time.",
            formats=["%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="With --start: seconds between two readings of a sensor.")
    ] = 10.0,
    heat_wave: Annotated[str | None, typer.Option(help="Region that gets a heat wave.")] = None,
    heat_wave_at: Annotated[
        float, typer.Option(help="Heat wave start, seconds after the start.")
    ] = 60.0,
    heat_wave_for: Annotated[float, typer.Option(help="Heat wave length in seconds.")] = 300.0,
    drop: Annotated[
        str | None, typer.Option(help="Region whose temperature drops suddenly.")
    ] = None,
    drop_at: Annotated[float, typer.Option(help="Drop time, seconds after the start.")] = 60.0,
    silent_sensor: Annotated[str | None, typer.Option(help="Sensor id that goes silent.")] = None,
    silent_at: Annotated[
        float, typer.Option(help="When it goes silent, seconds after the start.")
    ] = 60.0,
    late_ratio: Annotated[float, typer.Option(help="Share of readings sent late.")] = 0.0,
    late_by: Annotated[float, typer.Option(help="How late, in seconds.")] = 120.0,
    out_of_order_ratio: Annotated[
        float, typer.Option(help="Share of readings sent out of order.")
    ] = 0.0,
    malformed_ratio: Annotated[float, typer.Option(help="Share of malformed records.")] = 0.0,
) -> None:
    """Publish simulated sensor readings, with optional scenarios, and print a summary."""
    from datetime import UTC

    from include.simulator import SimulationConfig

    try:
        config = SimulationConfig(
            regions=regions,
            sensors_per_region=sensors,
            rate=rate,
            count=count,
            duration_s=duration,
            seed=seed,
            start=start.replace(tzinfo=UTC) if start else None,
            interval_s=interval,
            heat_wave=heat_wave,
            heat_wave_at_s=heat_wave_at,
            heat_wave_for_s=heat_wave_for,
            drop=drop,
            drop_at_s=drop_at,
            silent_sensor=silent_sensor,
            silent_at_s=silent_at,
            late_ratio=late_ratio,
            late_by_s=late_by,
            out_of_order_ratio=out_of_order_ratio,
            malformed_ratio=malformed_ratio,
        )
    except ValueError as exc:
        raise ClimateWatchError(str(exc)) from None
    _publish_simulation(config)


def _publish_simulation(config: Any) -> None:
    """Run the simulation with a live progress display; unacknowledged sends fail the run."""
    from include.ops.progress import simulation_progress
    from include.simulator import run_simulation

    with simulation_progress(console) as on_progress:
        try:
            stats = run_simulation(get_settings(), config, on_progress=on_progress)
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
    console.print(
        f"sent {stats.sent}, acknowledged {stats.acknowledged}, failed {stats.failed} "
        f"({', '.join(f'{kind} {n}' for kind, n in sorted(stats.by_kind.items()))})"
    )
    if stats.failed:
        raise ClimateWatchError(
            f"{stats.failed} readings were not acknowledged: {stats.last_error}"
        )


@app.command("replay")
def replay(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file of recorded readings.")],
    ts_column: Annotated[str, typer.Option(help="Column with the event time.")] = "ts",
    temperature_column: Annotated[
        str, typer.Option(help="Column with the temperature.")
    ] = "temperature_c",
    sensor_column: Annotated[str, typer.Option(help="Column with the sensor id.")] = "sensor_id",
    region_column: Annotated[str, typer.Option(help="Column with the region.")] = "region",
    humidity_column: Annotated[
        str, typer.Option(help="Column with relative humidity (%).")
    ] = "humidity_pct",
    pressure_column: Annotated[
        str, typer.Option(help="Column with pressure (hPa).")
    ] = "pressure_hpa",
    region: Annotated[str | None, typer.Option(help="Region of every row (file has none).")] = None,
    sensor_id: Annotated[
        str | None, typer.Option(help="Sensor id of every row (file has none).")
    ] = None,
    fahrenheit: Annotated[bool, typer.Option(help="Temperatures in the file are in °F.")] = False,
    speedup: Annotated[
        float | None, typer.Option(help="Replay recorded gaps divided by this.")
    ] = None,
) -> None:
    """Publish a recorded file's readings with their original event times."""
    from include.replay import ColumnMapping, replay_file

    mapping = ColumnMapping(
        ts=ts_column,
        temperature=temperature_column,
        sensor_id=None if sensor_id else sensor_column,
        region=None if region else region_column,
        humidity=humidity_column,
        pressure=pressure_column,
        fixed_region=region,
        fixed_sensor_id=sensor_id,
        fahrenheit=fahrenheit,
    )
    stats = replay_file(get_settings(), file, mapping, speedup=speedup)
    console.print(
        f"replayed {stats.rows} rows from {file}: sent {stats.sent}, invalid {stats.invalid}"
        + (f" ({stats.reasons})" if stats.reasons else "")
        + f", failed {stats.failed}; event times {stats.first_ts} .. {stats.last_ts}"
    )
    if stats.failed:
        raise typer.Exit(1)


# --- the local stack ---------------------------------------------------------------------------
@app.command("up")
def up(
    simulate: Annotated[
        bool, typer.Option(help="Also run the simulator (heat wave, some bad records).")
    ] = False,
    rate: Annotated[float, typer.Option(help="Simulator readings per second.")] = 50.0,
    api_port: Annotated[int, typer.Option(help="Port of the Airflow API server and UI.")] = 8080,
) -> None:
    """Start the local stack for long-running use: Kafka, Airflow 3, the stream (and simulator)."""
    from include.ops.stack import Supervisor, airflow_admin_password, stack_services

    settings = get_settings()
    _start_kafka_and_topics(settings)
    supervisor = Supervisor(settings.run_dir)
    for service in stack_services(settings, api_port=api_port, simulate=simulate, rate=rate):
        outcome = supervisor.start(service)
        console.print(f"{service.name:<24} {outcome:<16} log {supervisor.log_file(service.name)}")
    console.print(
        f"Airflow UI: http://127.0.0.1:{api_port}  (user admin, password {airflow_admin_password(settings)})"
    )
    console.print("'climatewatch ps' shows what runs, 'climatewatch down' stops it all")


@app.command("down")
def down() -> None:
    """Stop every process 'up' started, in reverse order, then the local Kafka."""
    from include.kafka_local.cluster import LocalCluster
    from include.ops.stack import STACK_ORDER, Supervisor

    settings = get_settings()
    supervisor = Supervisor(settings.run_dir)
    for name in reversed(STACK_ORDER):
        outcome = supervisor.stop(name)
        if outcome == "stopped":
            console.print(f"{name:<24} stopped")
    outcome = LocalCluster.from_settings(settings).stop()
    console.print("Kafka broker stopped" if outcome == "stopped" else "Kafka broker is not running")


@app.command("ps")
def ps() -> None:
    """What of the local stack runs: pid, state and log file of each process."""
    from rich.table import Table

    from include.kafka_local.cluster import LocalCluster
    from include.ops.stack import STACK_ORDER, Supervisor

    settings = get_settings()
    table = Table("process", "pid", "state", "log")
    for node, status in enumerate(LocalCluster.from_settings(settings).status(), start=1):
        state = (
            "running"
            if status.running and status.answering
            else ("starting" if status.running else "stopped")
        )
        table.add_row(f"kafka-{node}", str(status.pid or ""), state, str(settings.kafka_state_dir))
    for service in Supervisor(settings.run_dir).states(list(STACK_ORDER)):
        table.add_row(
            service.name,
            str(service.pid or ""),
            "running" if service.running else "stopped",
            str(service.log),
        )
    console.print(table)


def _start_kafka_and_topics(settings: Settings) -> None:
    from include.kafka_local.cluster import LocalCluster
    from include.kafka_local.jars import fetch_jars
    from include.topics import ensure_topics

    fetch_jars(settings)
    cluster = LocalCluster.from_settings(settings)
    outcome = cluster.start()
    console.print(f"{'kafka':<24} {outcome:<16} {cluster.bootstrap}")
    for result in ensure_topics(settings):
        if result.state != "exists":
            console.print(f"{'topic ' + result.name:<24} {result.state:<16} {result.detail}")


# --- the demo ------------------------------------------------------------------------------
@app.command("demo")
def demo(
    rate: Annotated[float, typer.Option(help="Readings per second from the simulator.")] = 50.0,
    regions: Annotated[int, typer.Option(help="Number of regions.")] = 10,
    sensors: Annotated[int, typer.Option(help="Sensors per region.")] = 5,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    api_port: Annotated[int, typer.Option(help="Port of the Airflow API server and UI.")] = 8080,
) -> None:
    """Run the whole of ClimateWatch on embedded defaults until Ctrl-C."""
    from include.ops.demo import run_demo

    run_demo(
        get_settings(),
        console,
        rate=rate,
        regions=regions,
        sensors=sensors,
        duration_s=duration,
        api_port=api_port,
    )


def main() -> None:
    """Console entry point: expected failures print one line, never a traceback."""
    try:
        app()
    except ClimateWatchError as exc:
        print(f"climatewatch: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
