"""The climate_report DAG run with dag.test() on a warehouse built from a known archive."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.settings import load_settings
from tests.fixtures.airflow import load_dag
from tests.fixtures.report import build_archive, write_quality
from warehouse.stats.recompute import rebuild

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def test_climate_report_runs_daily_and_waits_for_final_statistics(airflow_home: Path) -> None:
    dag = load_dag("climate_report")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.tags) == {"climatewatch", "report"}
    assert "0 0 * * *" in repr(dag.timetable) or "@daily" in repr(dag.timetable)
    sensor = dag.get_task("wait_until_day_is_final")
    assert sensor.mode == "reschedule"
    assert sensor.poke_interval == 60
    assert sensor.timeout == timedelta(hours=6).total_seconds()
    assert [t.task_id for t in sensor.downstream_list] == ["write_report"]


def test_dag_reports_the_previous_utc_day(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIMATEWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLIMATEWATCH_REPORTING_INTERVAL_S", "600")
    settings = load_settings()
    entries = build_archive(settings)
    rebuild(settings)
    write_quality(settings, [entries["paris"], entries["nice"], entries["day2"]])

    run = load_dag("climate_report").test(logical_date=datetime(2026, 3, 2, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states

    day = settings.data_dir / "reports" / "2026-03-01"
    html = (day / "report.html").read_text()
    assert "id='summary'" in html and "paris (16.00 °C)" in html
    report = json.loads((day / "report.json").read_text())
    assert report["day"] == "2026-03-01"
    assert report["summary"]["alerts_firing"] == 3
    assert report["summary"]["quality_status"] == "passed"
    assert (day / "report.pdf").is_file()
    assert "2026-03-01" in (settings.data_dir / "reports" / "index.html").read_text()
    returned = run.get_task_instance("write_report").xcom_pull(task_ids="write_report")
    assert returned["hottest_region"] == "paris" and returned["day"] == "2026-03-01"
