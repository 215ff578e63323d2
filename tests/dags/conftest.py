"""Airflow for DAG tests: an isolated AIRFLOW_HOME with its own SQLite database.

Airflow reads its configuration once, when ``airflow`` is first imported, so the
environment below is set when this conftest is imported — before any test module of
``tests/dags`` imports Airflow. The database is migrated once per session by the
``airflow_home`` fixture; after that ``dag.test()`` works in the test process.

Use it like this::

    @pytest.mark.airflow
    def test_my_dag(airflow_home, tmp_path):
        dag = load_dag("my_dag")  # dags/my_dag.py
        connections = write_connections(tmp_path / "c.json", {"kafka_default": {...}})
        run = dag.test(conn_file_path=connections)
        assert run.state == "success"

Settings reach tasks through ``CLIMATEWATCH_*`` variables (``monkeypatch.setenv``; tasks
should call ``load_settings()``, which reads them each time). ``tests/dags/test_archive_readings.py``
is a complete example; ``load_dag`` and ``write_connections`` are in ``tests/fixtures/airflow.py``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.airflow import DAGS_FOLDER

if "airflow.settings" in sys.modules and not os.environ.get("CLIMATEWATCH_TEST_AIRFLOW_HOME"):
    raise RuntimeError(
        "Airflow was imported before tests/dags/conftest.py could isolate it "
        f"(AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME', '~/airflow')}): run the DAG tests on "
        "their own (pytest tests/dags) or move the environment block of tests/dags/conftest.py "
        "into tests/conftest.py"
    )

_HOME = Path(tempfile.mkdtemp(prefix="climatewatch-airflow-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

AIRFLOW_ENV: dict[str, str] = {
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "2",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_HOME / "logs"),
    "CLIMATEWATCH_TEST_AIRFLOW_HOME": str(_HOME),
}
# Any developer setting of Airflow would leak into the tests: keep only ours.
for _name in [n for n in os.environ if n.startswith("AIRFLOW__") or n == "AIRFLOW_CONFIG"]:
    del os.environ[_name]
os.environ.update(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """AIRFLOW_HOME with a migrated SQLite metadata database (``airflow db migrate`` once)."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "db", "migrate"],
        env={**os.environ, **AIRFLOW_ENV},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")
    yield _HOME
