"""The archive_readings DAG run with dag.test() against the real broker."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.airflow import load_dag, write_connections
from tests.fixtures.archive import archived_readings, produce_scenario, rejected_reasons
from tests.fixtures.settings import settings_env

pytestmark = [pytest.mark.airflow, pytest.mark.kafka, pytest.mark.slow]


def _run(dag, connections: str) -> None:  # type: ignore[no-untyped-def]
    run = dag.test(conn_file_path=connections)
    assert run.state == "success", [
        (ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()
    ]
    return run


def test_archive_dag_archives_everything_once_through_the_kafka_connection(
    airflow_home: Path,
    kafka_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    for name, value in settings_env(kafka_settings).items():
        if name.startswith("CLIMATEWATCH_"):
            monkeypatch.setenv(name, value)
    # Nothing listens here: the tasks must take Kafka from the `kafka_default` connection.
    monkeypatch.setenv("CLIMATEWATCH_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    connections = write_connections(
        tmp_path / "connections.json",
        {
            "kafka_default": {
                "conn_type": "kafka",
                "extra": {"bootstrap.servers": kafka_settings.bootstrap_servers},
            }
        },
    )
    dag = load_dag("archive_readings")
    root = kafka_settings.archive_root

    produced = produce_scenario(kafka_settings, 400)
    run = _run(dag, connections)
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "archive_partition"]
    assert len(mapped) == kafka_settings.readings_partitions  # one task per partition
    rows = archived_readings(root)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert len(rows) == produced.valid_count
    assert rejected_reasons(root) == produced.malformed

    summary = json.loads(Path(root, "_summary.json").read_text())
    readings_topic = summary["topics"][kafka_settings.topic_readings]
    assert readings_topic["rows"] == produced.valid_count
    assert readings_topic["rejected"] == produced.malformed_count
    assert summary["last_run"]["rows"] == produced.valid_count

    files = sorted(Path(root).rglob("*.parquet"))
    _run(dag, connections)  # again: nothing new
    assert sorted(Path(root).rglob("*.parquet")) == files
    assert len(archived_readings(root)) == produced.valid_count

    more = produce_scenario(kafka_settings, 90, seed=7)
    _run(dag, connections)
    produced.add(more)
    rows = archived_readings(root)
    assert len(rows) == produced.valid_count
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert rejected_reasons(root) == produced.malformed

    # every day closed at once: the DAG's compaction leaves one file per directory
    files_before = len(list(Path(root).rglob("*.parquet")))
    monkeypatch.setenv("CLIMATEWATCH_ARCHIVE_COMPACT_AFTER_MINUTES", "0")
    _run(dag, connections)
    directories = Counter(p.parent for p in Path(root).rglob("*.parquet"))
    assert set(directories.values()) == {1}
    assert sum(directories.values()) < files_before
    assert Counter((s, ts) for s, ts, _, _ in archived_readings(root)) == produced.valid
    assert rejected_reasons(root) == produced.malformed

    with create_session() as session:
        events = session.query(AssetEvent).order_by(AssetEvent.id).all()
        extras = [event.extra for event in events if event.asset.name == "climatewatch_archive"]
    assert len(extras) == 4
    assert extras[1]["batch_ids"] == []  # the run that found nothing new says so
    assert extras[2]["batch_ids"] and extras[2]["archive_root"] == root
