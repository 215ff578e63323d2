"""``climatewatch sql`` and ``climatewatch warehouse …`` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from include.settings import Settings, load_settings
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive, day1_nice, day1_paris, day2_paris

pytestmark = pytest.mark.unit

CLI = [sys.executable, "-m", "include.ops.cli"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = load_settings(data_dir=tmp_path / "data", reporting_interval_s=600)
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(day1_paris() + day1_nice())
    archive.add_readings(day2_paris(), partition=1)
    return settings


def run(settings: Settings, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_rebuild_then_query_in_every_format(settings: Settings, tmp_path: Path) -> None:
    built = run(settings, "warehouse", "rebuild")
    assert built.returncode == 0, built.stderr
    assert "2 date(s) recomputed" in built.stdout and "3 daily" in built.stdout

    query = "SELECT region, date, reading_count, hdd FROM regional_daily ORDER BY region, date"
    table = run(settings, "sql", query)
    assert table.returncode == 0, table.stderr
    assert "paris" in table.stdout and "2026-03-02" in table.stdout and "3 row(s)" in table.stdout

    as_csv = run(settings, "sql", query, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {"region": "nice", "date": "2026-03-01", "reading_count": "4", "hdd": "4.5"},
        {"region": "paris", "date": "2026-03-01", "reading_count": "21", "hdd": "2"},
        {"region": "paris", "date": "2026-03-02", "reading_count": "6", "hdd": "0"},
    ]

    out = tmp_path / "daily.json"
    as_json = run(settings, "sql", query, "--format", "json", "--output", str(out))
    assert as_json.returncode == 0 and as_json.stdout == ""
    assert json.loads(out.read_text())[1] == {
        "region": "paris",
        "date": "2026-03-01",
        "reading_count": 21,
        "hdd": 2.0,
    }

    parquet = tmp_path / "daily.parquet"
    assert run(settings, "sql", query, "-f", "parquet", "-o", str(parquet)).returncode == 0
    assert pq.read_table(parquet).column("reading_count").to_pylist() == [4, 21, 6]

    # the archive views are there too, and a map column survives CSV
    views = run(settings, "sql", "SELECT count(*) AS n FROM readings", "-f", "csv")
    assert list(csv.reader(io.StringIO(views.stdout))) == [["n"], ["31"]]
    assert (
        run(settings, "sql", "SELECT alerts_by_rule FROM regional_daily", "-f", "csv").returncode
        == 0
    )


def test_bad_sql_prints_duckdb_error_on_one_line_and_exits_non_zero(settings: Settings) -> None:
    assert run(settings, "warehouse", "recompute").returncode == 0
    for query, words in [
        ("SELEC * FROM regional_daily", "syntax error"),
        ("SELECT nope FROM regional_daily", "nope"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("DELETE FROM regional_daily", "read-only"),
    ]:
        done = run(settings, "sql", query)
        assert done.returncode == 1, (query, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("climatewatch: error: ") and words in lines[0], lines[0]
        assert "Traceback" not in done.stderr


def test_sql_without_a_warehouse_says_how_to_make_one(settings: Settings) -> None:
    done = run(settings, "sql", "SELECT 1")
    assert done.returncode == 1
    assert "climatewatch warehouse rebuild" in done.stderr and len(done.stderr.splitlines()) == 1


def test_unknown_format_is_refused(settings: Settings) -> None:
    assert run(settings, "warehouse", "recompute").returncode == 0
    done = run(settings, "sql", "SELECT 1", "--format", "xml")
    assert done.returncode == 1 and "--format" in done.stderr
