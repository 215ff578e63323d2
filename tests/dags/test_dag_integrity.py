"""Every DAG in dags/ loads without errors and follows the house rules (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.airflow import DAGS_FOLDER, dag_files

pytestmark = pytest.mark.airflow


def _load(path: Path):  # -> DagBag
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path))


@pytest.mark.parametrize("path", dag_files(), ids=lambda p: p.name)
def test_dag_file_follows_the_house_rules(airflow_home: Path, path: Path) -> None:
    bag = _load(path)
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"
    for dag_id, dag in bag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id}: no doc_md"
        assert dag.catchup is False, f"{dag_id}: catchup must be False"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, (
            f"{dag_id}: start_date must be timezone-aware"
        )
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id}: retries {task.retries} < 2"


def test_the_whole_dags_folder_imports(airflow_home: Path) -> None:
    bag = _load(DAGS_FOLDER)
    assert not bag.import_errors, bag.import_errors
    assert len(bag.dags) >= len(dag_files())
