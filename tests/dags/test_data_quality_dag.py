"""The data_quality DAG run with dag.test() on real archive files and the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.ops.stack import settings_environment
from include.settings import Settings
from tests.fixtures import quality as q
from tests.fixtures.airflow import DAGS_FOLDER
from tests.fixtures.stats import FakeArchive
from tests.fixtures.stream import alerts
from warehouse.archive.quarantine import quarantined_ids

pytestmark = [pytest.mark.airflow, pytest.mark.kafka, pytest.mark.slow]


def _dag():  # -> DAG
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "data_quality.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("data_quality")


def test_data_quality_is_scheduled_on_the_archive_and_emits_its_asset(airflow_home: Path) -> None:
    from include.assets import ARCHIVE, DATA_QUALITY

    dag = _dag()
    assert f"name='{ARCHIVE.name}'" in repr(dag.timetable.asset_condition)
    assert DATA_QUALITY in [o for task in dag.tasks for o in task.outlets]


def test_a_critical_failure_fails_the_run_quarantines_and_alerts(
    airflow_home: Path,
    kafka_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = kafka_settings
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(q.clean_rows(seed=1), topic=settings.topic_readings)
    dag = _dag()

    clean = dag.test()
    assert clean.state == "success", [(t.task_id, t.state) for t in clean.get_task_instances()]

    bad = archive.add_readings(
        q.with_temperature(q.clean_rows(seed=2), 11, 85.0),
        partition=1,
        topic=settings.topic_readings,
    )
    failed = dag.test()

    states = {t.task_id: t.state for t in failed.get_task_instances()}
    assert failed.state == "failed"
    assert states == {"validate_new_batches": "success", "fail_on_critical": "failed"}
    verdict = next(t for t in failed.get_task_instances() if t.task_id == "fail_on_critical")
    assert verdict.try_number == 1, "a verdict on data is not retried"
    assert bad.batch_id in quarantined_ids(settings.archive_root)
    assert [a.rule for a in alerts(settings)] == ["data_quality"]
    printed = caplog.text + "".join(capfd.readouterr())  # dag.test() logs the task's error
    assert "expect_column_values_to_be_between(temperature_c) [critical]: 1 unexpected" in printed
