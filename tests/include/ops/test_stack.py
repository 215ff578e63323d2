"""The local stack points Airflow at this checkout's DAGs and plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.ops.stack import airflow_env
from include.settings import load_settings

pytestmark = pytest.mark.unit


def test_airflow_finds_the_dags_and_the_plugin_of_this_checkout(tmp_path: Path) -> None:
    env = airflow_env(load_settings(data_dir=tmp_path / "data"))
    dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    plugins = Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"])
    assert {"archive_readings.py", "regional_stats.py", "data_quality.py"} <= {
        p.name for p in dags.glob("*.py")
    }
    assert (plugins / "climatewatch_plugin.py").is_file()
    assert (Path(env["PYTHONPATH"].split(":")[0]) / "include" / "settings.py").is_file()
