"""Data quality on real archive files with real Great Expectations (and the real broker
for the alert): each defect fails exactly the expectation meant for it, critical
failures quarantine the batch out of the warehouse, and release brings it back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from include.settings import Settings, load_settings
from tests.fixtures import quality as q
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive
from tests.fixtures.stream import alerts
from warehouse.archive.quarantine import quarantined_ids
from warehouse.quality.validate import (
    RULE,
    ensure_validated,
    release,
    status,
    validate_batches,
)
from warehouse.stats.recompute import recompute

pytestmark = [pytest.mark.slow]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def _archive(settings: Settings) -> FakeArchive:
    return FakeArchive(Path(settings.archive_root))


def _failures(run, batch_id: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    (outcome,) = [b for b in run.batches if b.batch_id == batch_id]
    return {(f.expectation, f.severity) for f in outcome.failures}


def test_a_clean_batch_passes_every_expectation(settings: Settings) -> None:
    entry = _archive(settings).add_readings(q.clean_rows())

    run = validate_batches(settings, publish=False)

    assert [b.batch_id for b in run.batches] == [entry.batch_id]
    assert _failures(run, entry.batch_id) == set()
    assert not quarantined_ids(settings.archive_root)
    ensure_validated(run)  # does not raise


DEFECTS: dict[str, tuple[Callable[[list[q.Row]], list[q.Row]], str, str]] = {
    "null region": (
        lambda rows: rows,  # written below without a region partition
        "expect_column_values_to_not_be_null(region)",
        "critical",
    ),
    "85 degrees": (
        lambda rows: q.with_temperature(rows, 17, 85.0),
        "expect_column_values_to_be_between(temperature_c)",
        "critical",
    ),
    "duplicate reading": (
        lambda rows: q.with_duplicate(rows, 40),
        "expect_compound_columns_to_be_unique(sensor_id,ts)",
        "critical",
    ),
    "future timestamp": (
        lambda rows: q.with_future(rows, 9, timedelta(hours=3)),
        "expect_column_values_to_be_between(ts)",
        "critical",
    ),
    "a tenth of the volume": (
        q.tenth_of_sensors,
        "expect_table_row_count_to_be_between(table)",
        "warning",
    ),
    "unknown region": (
        lambda rows: q.with_region(rows, 3, "atlantis"),
        "expect_column_values_to_be_in_set(region)",
        "warning",
    ),
    "implausible for the region": (
        lambda rows: q.with_temperature(rows, 3, 55.0),  # possible on Earth, not in Paris
        "expect_column_values_to_be_between(outside_plausible_band_c)",
        "warning",
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_fails_exactly_its_expectation_with_its_severity(
    settings: Settings, defect: str
) -> None:
    inject, expectation, severity = DEFECTS[defect]
    archive = _archive(settings)
    archive.add_readings(q.clean_rows(seed=1))  # the partition's history: its sensors
    validate_batches(settings, publish=False)
    rows = inject(q.clean_rows(seed=2))
    entry = archive.add_readings(rows)
    if defect == "null region":
        _drop_region_partition(settings, entry, region="paris")

    run = validate_batches(settings, publish=False)

    assert _failures(run, entry.batch_id) == {(expectation, severity)}
    assert (entry.batch_id in quarantined_ids(settings.archive_root)) is (severity == "critical")


def _drop_region_partition(settings: Settings, entry, region: str) -> None:  # type: ignore[no-untyped-def]
    """Move one region's file out of its ``region=`` directory: its rows have no region."""
    import dataclasses

    from warehouse.archive.ledger import Ledger

    root = Path(settings.archive_root)
    files = []
    for archived in entry.files:
        if archived.region == region:
            source = root / archived.path
            target = source.parent.parent / source.name
            source.rename(target)
            archived = dataclasses.replace(
                archived, path=str(target.relative_to(root)), region=None
            )
        files.append(archived)
    Ledger(str(root)).replace([entry], [dataclasses.replace(entry, files=tuple(files))])


def _paris_rows(settings: Settings) -> int:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(
            "SELECT coalesce(sum(reading_count), 0) FROM regional_daily WHERE region = 'paris'"
        ).fetchone()[0]
    finally:
        con.close()


@pytest.mark.kafka
def test_critical_failure_quarantines_alerts_and_release_brings_the_rows_back(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    archive = _archive(settings)
    clean = q.clean_rows(seed=1, regions=("paris",))
    archive.add_readings(clean, topic=settings.topic_readings)
    bad = archive.add_readings(
        q.with_temperature(q.clean_rows(seed=2, regions=("paris",)), 5, 85.0),
        partition=1,
        topic=settings.topic_readings,
    )
    recompute(settings)
    assert _paris_rows(settings) == 2 * len(clean)

    run = validate_batches(settings)

    assert [b.batch_id for b in run.critical_batches] == [bad.batch_id]
    assert _paris_rows(settings) == len(clean), "the warehouse still counts the bad batch"
    with pytest.raises(Exception, match=r"temperature_c\) \[critical\]: 1 unexpected"):
        ensure_validated(run)
    published = [a for a in alerts(settings) if a.rule == RULE]
    assert len(published) == 1 and bad.batch_id in published[0].message
    assert published[0].severity == "critical" and published[0].value == 1.0
    assert status(settings)["quarantined"][0]["batch_id"] == bad.batch_id

    release(settings, bad.batch_id)

    assert _paris_rows(settings) == 2 * len(clean)
    assert not quarantined_ids(settings.archive_root)
    assert validate_batches(settings).batches == [], "a validated batch is never validated again"


def test_only_new_batches_are_validated_and_the_summary_is_joinable(settings: Settings) -> None:
    archive = _archive(settings)
    first = archive.add_readings(q.clean_rows(seed=1))
    assert [b.batch_id for b in validate_batches(settings, publish=False).batches] == [
        first.batch_id
    ]
    second = archive.add_readings(q.with_region(q.clean_rows(seed=2), 0, "atlantis"), partition=2)

    run = validate_batches(settings, publish=False)

    assert [b.batch_id for b in run.batches] == [second.batch_id]
    summary = duckdb.sql(
        f"SELECT batch_id, region, expectation, success, unexpected_count "
        f"FROM read_parquet('{settings.quality_summary_path}')"
    ).fetchall()
    assert {row[0] for row in summary} == {first.batch_id, second.batch_id}
    in_set = [r for r in summary if r[2] == "expect_column_values_to_be_in_set(region)"]
    failing = [(r[0], r[1], r[4]) for r in in_set if not r[3]]
    assert failing == [(second.batch_id, "atlantis", 1)]
    # the warehouse's view joins it by date and region
    recompute(settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        joined = con.execute(
            "SELECT d.region, count(*) FROM regional_daily d JOIN quality_results q "
            "USING (date, region) GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    assert [region for region, _ in joined] == sorted([*q.REGIONS, "atlantis"])


def test_data_docs_name_the_suite_and_the_batch(settings: Settings) -> None:
    entry = _archive(settings).add_readings(q.clean_rows())

    validate_batches(settings, publish=False)

    index = settings.data_docs_dir / "index.html"
    assert index.exists()
    pages = "".join(p.read_text() for p in index.parent.rglob("*.html"))
    assert "readings_batch" in pages and entry.batch_id in pages


def test_cli_validates_shows_status_and_refuses_an_unknown_release(settings: Settings) -> None:
    archive = _archive(settings)
    archive.add_readings(q.clean_rows(seed=1))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "include.ops.cli", "quality", *args],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    validated = run("validate", "--no-alerts")
    assert validated.returncode == 0, validated.stderr
    assert "1 batch(es)" in validated.stdout

    bad = archive.add_readings(q.with_duplicate(q.clean_rows(seed=2), 3), partition=1)
    failed = run("validate", "--no-alerts")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1, "one line"
    assert "expect_compound_columns_to_be_unique(sensor_id,ts) [critical]: 2 unexpected" in (
        failed.stderr  # both readings of the pair
    )

    shown = run("status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [b["batch_id"] for b in json.loads(shown.stdout)["quarantined"]] == [bad.batch_id]

    unknown = run("release", "no-such-batch")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("climatewatch: error: no quarantined batch 'no-such-batch'")
    assert "Traceback" not in unknown.stderr

    bad_date = run("validate", "--date", "yesterday")
    assert bad_date.returncode == 1 and "YYYY-MM-DD" in bad_date.stderr


def test_compaction_leaves_a_quarantined_batch_alone_and_release_still_works(
    settings: Settings,
) -> None:
    from datetime import UTC, datetime

    from warehouse.archive.compaction import compact

    archive = _archive(settings)
    archive.add_readings(q.clean_rows(seed=1))
    bad = archive.add_readings(q.with_temperature(q.clean_rows(seed=2), 0, 99.0))
    archive.add_readings(q.clean_rows(seed=3))
    validate_batches(settings, publish=False)
    assert quarantined_ids(settings.archive_root) == {bad.batch_id}

    compacted = compact(settings.archive_root, closed_after=timedelta(0), now=datetime.now(UTC))

    assert compacted.groups, "the two clean batches share directories: they are merged"
    release(settings, bad.batch_id)
    recompute(settings)
    assert _paris_rows(settings) == 3 * len(q.clean_rows()) // len(q.REGIONS)
