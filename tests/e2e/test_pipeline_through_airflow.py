"""End to end through a running Airflow: real scheduler, API server, DAG processor and
triggerer (SQLite, LocalExecutor) against the real broker of the session.

A known set of readings (a heat wave, malformed records) is produced; `archive_readings`
is triggered through the authenticated REST API; the Asset-scheduled DAGs follow; then
the archive, the warehouse, the data-quality results and the report must agree with what
was produced. Every wait has a timeout; on failure the task logs are printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from include.kafka_clients import make_producer
from include.kafka_local.broker import LocalBroker
from include.ops.airflow_api import AirflowClient
from include.ops.stack import (
    AIRFLOW_COMPONENTS,
    Supervisor,
    airflow_admin_password,
    airflow_services,
)
from include.processes import free_port
from include.settings import Settings, load_settings
from include.simulator import SimulationConfig, generate
from include.topics import ensure_topics
from streaming.processor import StreamProcessor
from tests.fixtures.stream import alerts as alerts_on_topic
from tests.fixtures.topics import unique_names
from warehouse.archive.ledger import Ledger

pytestmark = [pytest.mark.airflow, pytest.mark.kafka, pytest.mark.slow]

DAG_TIMEOUT_S = 600


@dataclass
class RunningAirflow:
    settings: Settings
    client: AirflowClient
    supervisor: Supervisor


@pytest.fixture(scope="module")
def airflow(
    kafka_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAirflow]:
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    settings = load_settings(
        bootstrap_servers=kafka_broker.bootstrap,
        data_dir=data_dir,
        **unique_names("e2e"),
        archive_interval_minutes=24 * 60,  # only the runs this test triggers
    )
    ensure_topics(settings)
    supervisor = Supervisor(data_dir / "run")
    port = free_port()
    try:
        for service in airflow_services(settings, api_port=port):
            supervisor.start(service)
        client = AirflowClient(
            f"http://127.0.0.1:{port}", "admin", airflow_admin_password(settings)
        )
        yield RunningAirflow(settings, client, supervisor)
    finally:
        for name in reversed(AIRFLOW_COMPONENTS):
            supervisor.stop(name)


def wait_for_dags(client: AirflowClient, dag_ids: set[str], timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dag_ids <= {dag["dag_id"] for dag in client.dags()}:
            return
        time.sleep(3)
    raise AssertionError(
        f"DAGs not parsed in {timeout_s}s; import errors: {client.import_errors()}"
    )


def task_logs(client: AirflowClient, dag_id: str, run_id: str) -> str:
    parts = []
    for task in client.task_instances(dag_id, run_id):
        if task["state"] not in ("success", "skipped"):
            log = client.task_log(
                dag_id,
                run_id,
                task["task_id"],
                max(task.get("try_number") or 1, 1),
                task.get("map_index", -1),
            )
            parts.append(
                f"--- {dag_id}.{task['task_id']}[{task.get('map_index')}] {task['state']}\n{log[-4000:]}"
            )
    return "\n".join(parts)


def wait_for_success(client: AirflowClient, dag_id: str, after: datetime) -> dict:
    run = client.wait_for_run(
        dag_id,
        lambda r: (
            r["state"] in ("success", "failed") and datetime.fromisoformat(r["run_after"]) >= after
        ),
        timeout_s=DAG_TIMEOUT_S,
    )
    assert run["state"] == "success", task_logs(client, dag_id, run["dag_run_id"])
    return run


def wait_until_settled(
    client: AirflowClient, dag_ids: tuple[str, ...], quiet_s: float = 10.0
) -> None:
    """Until no run of ``dag_ids`` has been queued or running for ``quiet_s``; every run
    must have succeeded. Unpausing a DAG with an interval schedule creates its first run
    at once, and on a slow machine that run and its Asset-triggered followers overlap
    the triggered ones: the warehouse and the quality results are still being written."""
    deadline = time.monotonic() + DAG_TIMEOUT_S
    settled_since = None
    while True:
        runs = [(dag_id, run) for dag_id in dag_ids for run in client.dag_runs(dag_id)]
        active = [(d, r["dag_run_id"]) for d, r in runs if r["state"] not in ("success", "failed")]
        if active:
            settled_since = None
        elif settled_since is None:
            settled_since = time.monotonic()
        elif time.monotonic() - settled_since >= quiet_s:
            break
        assert time.monotonic() < deadline, f"runs still active: {active}"
        time.sleep(2)
    failed = [(d, r["dag_run_id"]) for d, r in runs if r["state"] == "failed"]
    assert not failed, "\n".join(task_logs(client, d, run_id) for d, run_id in failed)


def test_readings_flow_from_kafka_through_every_dag(airflow: RunningAirflow) -> None:
    settings, client = airflow.settings, airflow.client
    wait_for_dags(client, {"archive_readings", "regional_stats", "data_quality", "climate_report"})

    # Yesterday evening into today: the report's day (yesterday) is then complete.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(hours=2)
    day = start.date().isoformat()
    records = list(
        generate(
            SimulationConfig(
                regions=4,
                sensors_per_region=5,
                start=start,
                rate=0,
                interval_s=60,
                count=2400,
                heat_wave="marseille",
                heat_wave_at_s=3600,
                heat_wave_for_s=3600,
                malformed_ratio=0.02,
            )
        )
    )
    producer = make_producer(settings)
    for record in records:
        producer.send(settings.topic_readings, key=record.key, value=record.value)
    producer.flush(timeout=60)
    producer.close()
    valid = [r for r in records if r.reading is not None]
    malformed = [r for r in records if r.reading is None]
    assert malformed, "the scenario has malformed records"
    # the speed layer reads the same topic and raises the heat alert
    StreamProcessor(settings).run(until_caught_up=True, max_runtime_s=180)
    heat = [a for a in alerts_on_topic(settings) if a.rule == "heat" and a.status == "firing"]
    assert {a.region for a in heat} == {"marseille"}

    triggered_at = datetime.now(UTC) - timedelta(seconds=5)
    client.trigger("archive_readings", logical_date=None)
    wait_for_success(client, "archive_readings", triggered_at)
    wait_for_success(client, "regional_stats", triggered_at)
    wait_for_success(client, "data_quality", triggered_at)
    wait_until_settled(client, ("archive_readings", "regional_stats", "data_quality"))

    archive = Path(settings.archive_root)
    con = duckdb.connect()
    archived = con.execute(
        f"SELECT count(*), count(DISTINCT (sensor_id, ts)) FROM read_parquet('{archive}/readings/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert archived == (len(valid), len(valid))
    rejected = con.execute(
        f"SELECT count(*) FROM read_parquet('{archive}/rejected/**/*.parquet')"
    ).fetchone()[0]
    assert rejected == len(malformed)

    warehouse = settings.data_dir / "warehouse" / "climatewatch.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as db:
        hot = db.execute(
            "SELECT region, max(mean_c) FROM regional_hourly GROUP BY region ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        total = db.execute("SELECT sum(reading_count) FROM regional_daily").fetchone()[0]
    assert hot[0] == "marseille" and hot[1] > 30
    assert total == len(valid)

    # data quality validated every readings batch, none failed a critical expectation
    summary = settings.data_dir / "quality" / "summary.parquet"
    validated, critical_failures = con.execute(
        f"SELECT count(DISTINCT batch_id), count(*) FILTER (NOT success AND severity = 'critical') "
        f"FROM read_parquet('{summary}')"
    ).fetchone()
    readings_batches = len(
        [e for e in Ledger(settings.archive_root).entries(settings.topic_readings) if e.rows]
    )
    assert (validated, critical_failures) == (readings_batches, 0)
    assert (settings.data_dir / "quality" / "data_docs" / "index.html").exists()

    # the daily report of yesterday, once its statistics are final
    reported_at = datetime.now(UTC) - timedelta(seconds=5)
    client.trigger("climate_report", logical_date=None, conf={"day": day})
    wait_for_success(client, "climate_report", reported_at)
    report = json.loads((settings.data_dir / "reports" / day / "report.json").read_text())
    with duckdb.connect(str(warehouse), read_only=True) as db:
        hottest, hottest_mean, day_alerts = db.execute(
            "SELECT region, mean_c, (SELECT count(DISTINCT alert_id) FROM alerts "
            "WHERE status = 'firing' AND date = ?::DATE) FROM regional_daily "
            "WHERE date = ?::DATE ORDER BY mean_c DESC LIMIT 1",
            [day, day],
        ).fetchone()
    assert report["summary"]["hottest_region"] == hottest
    assert abs(report["summary"]["hottest_mean_c"] - hottest_mean) < 0.01
    assert report["summary"]["alerts_firing"] == day_alerts >= 1
    assert report["summary"]["quality_status"] in ("passed", "warnings")
    assert (settings.data_dir / "reports" / day / "report.pdf").stat().st_size > 0
