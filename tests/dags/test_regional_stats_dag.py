"""The regional_stats DAG run with dag.test() on an archive laid out like the archiver's."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.settings import load_settings
from tests.fixtures.airflow import DAGS_FOLDER
from tests.fixtures.reconcile import on_time_readings, speed_records
from tests.fixtures.stats import FakeArchive, day1_paris, day2_paris

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _dag():  # -> DAG
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "regional_stats.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("regional_stats")


def _run(dag) -> None:  # type: ignore[no-untyped-def]
    run = dag.test()
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]


def test_regional_stats_is_scheduled_on_the_archive_and_emits_its_asset(
    airflow_home: Path,
) -> None:
    from include.assets import ARCHIVE, REGIONAL_STATS

    dag = _dag()
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert f"name='{ARCHIVE.name}'" in repr(dag.timetable.asset_condition)
    outlets = [o for task in dag.tasks for o in task.outlets]
    assert REGIONAL_STATS in outlets


def test_dag_recomputes_new_batches_and_records_the_asset_event(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    monkeypatch.setenv("CLIMATEWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLIMATEWATCH_REPORTING_INTERVAL_S", "600")
    settings = load_settings()
    archive = FakeArchive(Path(settings.archive_root))
    readings = on_time_readings()
    archive.add_readings(day1_paris() + readings)
    archive.add_window_stats(speed_records(readings))
    dag = _dag()

    _run(dag)
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        daily = con.execute(
            "SELECT region, date::VARCHAR, reading_count FROM regional_daily ORDER BY ALL"
        ).fetchall()
        statuses = con.execute("SELECT DISTINCT status FROM reconciliation").fetchall()
    finally:
        con.close()
    assert ("paris", "2026-03-01", 21) in daily and len(daily) == 5
    assert statuses == [("agree",)]

    archive.add_readings(day2_paris(), partition=1)
    _run(dag)
    _run(dag)  # nothing new: nothing recomputed

    with create_session() as session:
        extras = [
            event.extra
            for event in session.query(AssetEvent).order_by(AssetEvent.id).all()
            if event.asset.name == "climatewatch_regional_stats"
        ]
    assert [e["dates"] for e in extras[-3:]] == [
        ["2026-03-01", "2026-05-10", "2026-05-11"],
        ["2026-03-02"],
        [],
    ]
    assert extras[-1]["warehouse"] == str(settings.warehouse_path)
