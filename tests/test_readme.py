"""The README tells a new user the truth: every setting, the commands CI and users run."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.settings import describe_settings
from tests.fixtures.readme import README_READINGS_SQL, README_REJECTED_SQL

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [s.variable for s in describe_settings() if f"`{s.variable}`" not in README]
    assert not missing, f"README.md does not document {missing}"


def test_the_two_commands_and_ci() -> None:
    assert "make demo" in README and "make test" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_archive_sql_tested_elsewhere_is_the_readme_sql() -> None:
    assert README_READINGS_SQL.strip() in README
    assert README_REJECTED_SQL.strip() in README


def test_every_project_path_the_readme_names_exists() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    named = set(
        re.findall(r"`((?:include|streaming|warehouse|dags|plugins|tests|bench)/[^`\s]*)`", README)
    )
    missing = sorted(path for path in named if not (root / path.split("::")[0]).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"
