"""``climatewatch sql`` and ``climatewatch warehouse …`` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from include.settings import Settings, load_settings
from tests.fixtures.readme import README_READINGS_SQL, README_REJECTED_SQL
from tests.fixtures.reconcile import START, on_time_readings, speed_records
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive, day1_nice, day1_paris, day2_paris
from warehouse.archive.batch import rejected_arrow_schema
from warehouse.db import query_sql

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


# --- climatewatch sql writes nothing ------------------------------------------------------------
# The archive and ledger files, the quality summary and the warehouse are what a stray
# COPY could overwrite; OUT is a directory outside everything ClimateWatch reads.


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A warehouse whose every archive view reads real Parquet files (and the summary)."""
    import pyarrow as pa

    from tests.fixtures.stats import alert
    from warehouse.stats.recompute import recompute

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("sandbox") / "data", reporting_interval_s=600
    )
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(day1_paris() + day1_nice())
    readings = on_time_readings()
    archive.add_readings(readings, partition=1)
    archive.add_window_stats(speed_records(readings))
    archive.add_alerts([alert("heat-1", "heat")])
    rejected = Path(settings.archive_root) / "rejected" / "date=2026-03-01" / "r.parquet"
    rejected.parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"kafka_partition": 0, "kafka_offset": 7, "kafka_timestamp": START, "key": b"s"}
                | {"value": b"{not json", "reason": "not_json", "detail": "JSONDecodeError"}
            ],
            schema=rejected_arrow_schema(),
        ),
        rejected,
    )
    summary = settings.quality_summary_path
    summary.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"batch_id": ["b1"], "date": [START.date()], "region": ["paris"]}
            | {"expectation": ["expect_column_values_to_not_be_null"], "severity": ["critical"]}
            | {"success": [False], "unexpected_count": [3], "validated_at": [START]}
        ),
        summary,
    )
    recompute(settings)
    return settings


def snapshot(settings: Settings) -> dict[str, bytes]:
    """Every file of the data directory (archive, ledger, quality, warehouse) and its bytes."""
    return {
        str(path.relative_to(settings.data_dir)): path.read_bytes()
        for path in sorted(settings.data_dir.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


def targets(settings: Settings, out: Path) -> dict[str, str]:
    """What the attempts below try to write: outside, archive, ledger, summary, warehouse."""
    archive = Path(settings.archive_root)
    return {
        "out": str(out),
        "archive_file": str(next((archive / "readings").rglob("*.parquet"))),
        "ledger_file": str(next((archive / "_ledger").rglob("*.json"))),
        "summary": str(settings.quality_summary_path),
        "warehouse": str(settings.warehouse_path),
    }


# (id, SQL, a word the one-line refusal must contain); {…} are targets() above.
ESCAPES = [
    ("copy-to-a-new-file", "COPY (SELECT * FROM readings) TO '{out}/stolen.csv'", "COPY"),
    ("copy-over-an-archive-file", "COPY (SELECT 1 AS a) TO '{archive_file}'", "COPY"),
    ("copy-over-the-ledger", "COPY (SELECT 1 AS a) TO '{ledger_file}' (FORMAT json)", "COPY"),
    ("copy-over-the-summary", "COPY (SELECT 1 AS a) TO '{summary}' (FORMAT parquet)", "COPY"),
    ("copy-a-table", "COPY regional_daily TO '{out}/daily.parquet'", "COPY"),
    ("copy-lower-case", "copy (select 1) to '{out}/x.csv'", "COPY"),
    ("copy-mixed-case", "CoPy (SeLeCt 1) To '{out}/x.csv'", "COPY"),
    ("copy-after-a-comment", "/* SELECT 1; */ COPY (SELECT 1) TO '{out}/x.csv'", "COPY"),
    ("copy-after-a-line-comment", "-- SELECT 1\nCOPY (SELECT 1) TO '{out}/x.csv'", "COPY"),
    ("copy-after-a-query", "SELECT 1; COPY (SELECT 1) TO '{out}/x.csv'", "statement 2 of 2"),
    (
        "copy-after-a-commented-query",
        "SELECT 1 /* ; */ ; -- ;\n COPY (SELECT 1) TO '{archive_file}'",
        "COPY",
    ),
    ("copy-third", "FROM readings; SELECT 2; COPY readings TO '{out}/r.csv'", "statement 3 of 3"),
    ("export-database", "EXPORT DATABASE '{out}/export'", "EXPORT DATABASE"),
    ("export-into-the-archive", "EXPORT DATABASE '{archive_file}.d'", "EXPORT"),
    ("attach-a-new-file", "ATTACH '{out}/new.duckdb' AS fresh", "ATTACH"),
    ("attach-read-write", "ATTACH '{warehouse}' AS rw (READ_WRITE)", "ATTACH"),
    (
        "attach-memory-then-write",
        "ATTACH ':memory:' AS m; COPY (SELECT 1) TO '{out}/x.csv'",
        "ATTACH",
    ),
    ("detach-and-reattach", "DETACH climatewatch; ATTACH '{warehouse}' AS climatewatch", "DETACH"),
    ("use-another-database", "USE memory", "USE"),
    ("set-external-access", "SET enable_external_access = true", "SET"),
    (
        "set-then-copy",
        "SET enable_external_access = true; COPY (SELECT 1) TO '{out}/x.csv'",
        "SET",
    ),
    ("set-allowed-directories", "SET allowed_directories = ['/']", "SET"),
    ("set-allowed-paths", "SET allowed_paths = ['{out}/x.csv']", "SET"),
    ("unlock-configuration", "SET lock_configuration = false", "SET"),
    ("set-global", "SET GLOBAL lock_configuration = false", "SET"),
    ("reset-lock", "RESET lock_configuration", "RESET"),
    ("reset-all", "RESET ALL", "syntax error"),  # DuckDB has no RESET ALL
    ("pragma-profiling", "PRAGMA enable_profiling = 'json'", "PRAGMA"),
    ("pragma-profile-output", "PRAGMA profile_output = '{out}/profile.json'", "PRAGMA"),
    ("set-log-file", "SET log_query_path = '{out}/queries.log'", "SET"),
    ("install-extension", "INSTALL httpfs", "INSTALL"),
    ("force-install-extension", "FORCE INSTALL httpfs", "FORCE INSTALL"),
    ("load-extension", "LOAD httpfs", "LOAD"),
    ("load-a-file", "LOAD '{out}/evil.duckdb_extension'", "LOAD"),
    ("update-extensions", "UPDATE EXTENSIONS", "UPDATE EXTENSIONS"),
    ("create-secret", "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "CREATE"),
    ("create-persistent-secret", "CREATE PERSISTENT SECRET p (TYPE s3, KEY_ID 'a')", "CREATE"),
    ("call-checkpoint", "CALL checkpoint()", "CALL"),
    ("call-logging", "CALL enable_logging(storage = 'file', storage_path = '{out}/logs')", "CALL"),
    ("checkpoint", "CHECKPOINT", "CHECKPOINT"),
    ("vacuum", "VACUUM", "VACUUM"),
    ("create-temp-table", "CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
    ("create-macro", "CREATE TEMP MACRO m() AS 1", "CREATE"),
    ("insert", "INSERT INTO regional_daily SELECT * FROM regional_daily", "INSERT"),
    ("set-variable", "SET VARIABLE target = '{out}/x.csv'", "SET"),
    ("prepare-execute", "PREPARE p AS COPY (SELECT 1) TO '{out}/x.csv'; EXECUTE p", "PREPARE"),
    ("begin-transaction", "BEGIN; COPY (SELECT 1) TO '{out}/x.csv'; COMMIT", "BEGIN"),
    ("explain-analyze-copy", "EXPLAIN ANALYZE COPY (SELECT 1) TO '{archive_file}'", "EXPLAIN COPY"),
    (
        "explain-options-analyze-copy",
        "EXPLAIN (FORMAT json, ANALYZE) COPY (SELECT 1) TO '{out}/x.csv'",
        "EXPLAIN COPY",
    ),
    ("explain-analyze-create", "explain /* x */ analyze CREATE TABLE t AS SELECT 1", "EXPLAIN"),
    (
        "explain-analyze-insert",
        "EXPLAIN ANALYZE INSERT INTO regional_daily FROM regional_daily",
        "INSERT",
    ),
    ("explain-export", "EXPLAIN EXPORT DATABASE '{out}/e'", "syntax error"),  # not even parsed
    ("pivot-creating-types", "PIVOT regional_daily ON region USING count(*)", "PIVOT"),
    # accepted as queries, and still unable to write (DuckDB refuses, or the sandbox does)
    ("query-function", "FROM query('COPY (SELECT 1) TO ''{out}/x.csv''')", "SELECT"),
    ("read-outside", "FROM read_text('/etc/hostname')", "disabled by configuration"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "sql, words", [pytest.param(sql, words, id=name) for name, sql, words in ESCAPES]
)
def test_sql_writes_nothing(full: Settings, tmp_path: Path, sql: str, words: str) -> None:
    out, home = tmp_path / "out", tmp_path / "home"  # home: DuckDB's extensions and secrets
    out.mkdir()
    home.mkdir()
    query = sql.format(**targets(full, out))
    before = snapshot(full)
    done = subprocess.run(
        [*CLI, "sql", "--", query],  # "--": a query may start with a comment
        env={**settings_env(full), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, (query, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("climatewatch: error: ") and words in lines[0], lines[0]
    assert list(out.iterdir()) == [] and list(home.rglob("*")) == []
    after = snapshot(full)
    assert after.keys() == before.keys(), set(after) ^ set(before)
    assert [name for name in before if before[name] != after[name]] == []


def test_every_query_kind_still_answers_over_every_view(full: Settings) -> None:
    script = "; ".join(
        [
            *(f"SELECT count(*) FROM {view}" for view in ("readings", "rejected", "alerts")),
            *(f"FROM {view} LIMIT 1" for view in ("window_stats", "quality_results")),
            "DESCRIBE readings",
            "SHOW TABLES",
            "SUMMARIZE regional_daily",
            "EXPLAIN SELECT * FROM readings",
            "EXPLAIN ANALYZE SELECT count(*) FROM alerts",
            "EXPLAIN (FORMAT json) SELECT 1",
            "PIVOT regional_daily ON region IN ('paris', 'nice') USING sum(reading_count)",
            "FROM read_parquet('data/archive/readings/**/*.parquet', hive_partitioning = true)",
            "WITH v AS (VALUES (1)) FROM v",
            "-- a comment\nSELECT (SELECT count(*) FROM readings) AS readings, "
            "(SELECT count(*) FROM rejected) AS rejected, (SELECT count(*) FROM alerts) AS alerts,"
            " (SELECT count(*) FROM window_stats) > 0 AS windows, "
            "(SELECT max(unexpected_count) FROM quality_results) AS unexpected",
        ]
    )
    done = run(full, "sql", script, "-f", "json", cwd=full.data_dir.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"readings": 25 + len(on_time_readings()), "rejected": 1, "alerts": 1}
        | {"windows": True, "unexpected": 3}
    ]


def test_the_analyst_examples_run_through_the_sandbox(full: Settings) -> None:
    """examples.sql, every question in one script (one error fails it all)."""
    done = run(full, "sql", "-f", "json", "--", query_sql("examples"))
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_the_readme_queries_run(full: Settings) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    example = re.search(r'climatewatch sql "(SELECT [^"]+)"', readme)
    assert example, "README: no climatewatch sql example"
    done = run(full, "sql", example.group(1), "-f", "csv")
    assert done.returncode == 0, done.stderr
    assert next(csv.reader(io.StringIO(done.stdout)))[0] == "region"
    # the plain DuckDB snippets too, from the directory that holds data/ (as the README runs)
    total = 25 + len(on_time_readings())
    for snippet, column, count in (
        (README_READINGS_SQL, "readings", total),
        (README_REJECTED_SQL, "records", 1),
    ):
        done = run(full, "sql", snippet, "-f", "json", cwd=full.data_dir.parent)
        assert done.returncode == 0, done.stderr
        assert sum(row[column] for row in json.loads(done.stdout)) == count, done.stdout
