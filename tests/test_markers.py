"""The marker rule refuses a suite with an unmarked test, and accepts a marked one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFTEST = (
    "from tests.fixtures.markers import refuse_unmarked_tests as pytest_collection_modifyitems\n"
)


def _collect(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_example.py").write_text(test_source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.unit
def test_a_test_without_a_marker_is_refused(tmp_path: Path) -> None:
    done = _collect(tmp_path, "def test_nothing():\n    assert True\n")
    assert done.returncode != 0
    assert "without a marker" in done.stdout + done.stderr
    assert "test_example.py::test_nothing" in done.stdout + done.stderr


@pytest.mark.unit
def test_a_marked_test_is_collected(tmp_path: Path) -> None:
    done = _collect(
        tmp_path, "import pytest\n\n@pytest.mark.unit\ndef test_nothing():\n    assert True\n"
    )
    assert done.returncode == 0, done.stdout + done.stderr
