"""Data quality on real archive files with real Great Expectations (and the real broker
for the alert): each defect fails exactly the expectation meant for it, a critical
row-level failure sets exactly the failing rows aside (the batch's good rows stay in the
warehouse), a batch-wide one quarantines the batch, and release brings them back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from include.contract import Reading, parse_reading, serialize_reading
from include.settings import Settings, load_settings
from tests.fixtures import quality as q
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive
from tests.fixtures.stream import alerts
from warehouse.archive.quarantine import quarantined, quarantined_ids, quarantined_rows
from warehouse.quality import validate as validate_module
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


UNIQUE = "expect_compound_columns_to_be_unique(sensor_id,ts)"
HUMIDITY = "expect_column_values_to_be_between(humidity_pct)"

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
    history = archive.add_readings(q.clean_rows(seed=1))  # the partition's history: its sensors
    validate_batches(settings, publish=False)
    rows = inject(q.clean_rows(seed=2))
    entry = archive.add_readings(rows)
    if defect == "null region":
        _drop_region_partition(settings, entry, region="paris")

    run = validate_batches(settings, publish=False)

    assert _failures(run, entry.batch_id) == {(expectation, severity)}
    assert (entry.batch_id in quarantined_ids(settings.archive_root)) is (severity == "critical")
    if severity == "critical":  # row-level: only the failing rows are set aside
        (record,) = quarantined(settings.archive_root)
        paris = sum(1 for row in rows if row[1] == "paris")
        assert (record.scope, record.rows) == ("rows", paris if defect == "null region" else 1)
        assert _warehouse_rows(settings) == history.rows + len(rows) - record.rows
        claimed, on_disk = q.ledger_versus_files(settings.archive_root)
        assert claimed == on_disk, "the ledger describes the files that hold the batches"
        if defect != "null region":  # (its rows would come back outside a region partition)
            release(settings, entry.batch_id)
            assert _warehouse_rows(settings) == history.rows + len(rows)
            assert q.ledger_versus_files(settings.archive_root)[0] == claimed | {
                f.path: f.rows for f in entry.files
            }


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


def _warehouse_rows(settings: Settings) -> int:
    """Readings the warehouse counts (``regional_daily``), after an incremental recompute."""
    recompute(settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute("SELECT coalesce(sum(reading_count), 0) FROM regional_daily").fetchone()[
            0
        ]
    finally:
        con.close()


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
    assert _paris_rows(settings) == 2 * len(clean) - 1, "only the bad reading is set aside"
    with pytest.raises(Exception, match=r"temperature_c\) \[critical\]: 1 unexpected"):
        ensure_validated(run)
    published = [a for a in alerts(settings) if a.rule == RULE]
    assert len(published) == 1 and bad.batch_id in published[0].message
    assert f"1 of {len(clean):,} readings set aside" in published[0].message
    assert published[0].severity == "critical" and published[0].value == 1.0
    (held,) = status(settings)["quarantined"]
    assert (held["batch_id"], held["rows"]) == (bad.batch_id, 1)

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

    assert "1 row(s) set aside" in failed.stderr, "the repeat; the first reading stays"

    shown = run("status", "--json")
    assert shown.returncode == 0, shown.stderr
    held = json.loads(shown.stdout)["quarantined"]
    assert [(b["batch_id"], b["rows"]) for b in held] == [(bad.batch_id, 1)]

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
    root = Path(settings.archive_root)
    assert all((root / f.path).is_file() for f in bad.files), "its files are left alone"
    claimed, on_disk = q.ledger_versus_files(settings.archive_root)
    assert claimed == on_disk
    release(settings, bad.batch_id)
    recompute(settings)
    assert _paris_rows(settings) == 3 * len(q.clean_rows()) // len(q.REGIONS)


def test_a_reading_the_contract_accepts_7_minutes_ahead_is_not_quarantined(
    settings: Settings,
) -> None:
    rows = q.with_future(q.clean_rows(seed=2), 9, timedelta(minutes=7))
    sensor, region, ts, temperature = rows[9]
    accepted = parse_reading(serialize_reading(Reading(sensor, region, ts, temperature)))
    assert isinstance(accepted, Reading), "the contract accepts it"
    entry = _archive(settings).add_readings(rows)

    run = validate_batches(settings, publish=False)

    assert _failures(run, entry.batch_id) == set(), "data quality agrees with the contract"
    assert not quarantined_ids(settings.archive_root)
    assert _warehouse_rows(settings) == len(rows)


def test_a_duplicate_and_an_impossible_humidity_set_aside_exactly_those_rows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse.report.data import load_report_data
    from warehouse.status import gather_quality

    published: list = []
    monkeypatch.setattr(
        validate_module, "publish_alerts", lambda _, found: published.extend(found) or len(found)
    )
    archive = _archive(settings)
    good = q.clean_rows(seed=2)
    rows = q.with_duplicate(good, 40)  # the repeat is the last reading of the batch
    entry = archive.add_readings(rows)
    q.with_humidity(settings.archive_root, entry, offset=17, value=150.0)
    repeat = entry.start_offset + len(good)

    run = validate_batches(settings)

    assert _warehouse_rows(settings) == len(rows) - 2, "every good reading stays"
    (outcome,) = run.batches
    assert {UNIQUE, HUMIDITY} <= {f.expectation for f in outcome.critical}
    assert outcome.quarantined and outcome.set_aside == 2
    held = quarantined_rows(settings.archive_root, entry.batch_id)
    offsets, names = held["kafka_offset"].to_pylist(), held["expectation"].to_pylist()
    assert sorted(zip(offsets, names, strict=True)) == [(17, HUMIDITY), (repeat, UNIQUE)]
    assert all(held["reason"].to_pylist())
    claimed, on_disk = q.ledger_versus_files(settings.archive_root)
    assert claimed == on_disk, "the ledger describes the files that hold the batch"
    (alert,) = published
    assert alert.value == 2.0 and f"2 of {len(rows):,} readings set aside" in alert.message
    # quality status, the report of the day and the UI list the batch with its rows
    (listed,) = status(settings)["quarantined"]
    assert (listed["batch_id"], listed["rows"], listed["scope"]) == (entry.batch_id, 2, "rows")
    days = [date.fromisoformat(d) for d in entry.dates]
    reported = [b for d in days for b in load_report_data(settings, d).completeness.quarantined]
    assert {b.batch_id for b in reported} == {entry.batch_id}
    assert sum(b.rows for b in reported) == 2
    assert [(b["batch_id"], b["rows"]) for b in gather_quality(settings).quarantined] == [
        (entry.batch_id, 2)
    ]

    again = validate_batches(settings, dates=entry.dates)  # validated again: same verdict

    assert [b.set_aside for b in again.batches] == [2] and len(published) == 1
    assert _warehouse_rows(settings) == len(rows) - 2

    release(settings, entry.batch_id)

    assert _warehouse_rows(settings) == len(rows)
    assert not quarantined_ids(settings.archive_root)
    assert not (Path(settings.archive_root) / "quarantine" / entry.batch_id).exists()
    claimed, on_disk = q.ledger_versus_files(settings.archive_root)
    assert claimed == on_disk


def test_an_interrupted_row_quarantine_is_finished_by_the_next_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse.archive import quarantine as quarantine_module

    rows = q.with_temperature(q.clean_rows(seed=2), 5, 85.0)
    entry = _archive(settings).add_readings(rows)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    with monkeypatch.context() as patch:
        patch.setattr(quarantine_module, "write_parquet_atomically", crash)
        with pytest.raises(OSError, match="disk gone"):
            validate_batches(settings, publish=False)
    assert entry.batch_id in quarantined_ids(settings.archive_root), "the record came first"

    run = validate_batches(settings, publish=False)

    assert [b.set_aside for b in run.batches] == [1]
    assert quarantined_rows(settings.archive_root, entry.batch_id).num_rows == 1
    assert _warehouse_rows(settings) == len(rows) - 1
    claimed, on_disk = q.ledger_versus_files(settings.archive_root)
    assert claimed == on_disk


def test_a_schema_failure_still_quarantines_the_whole_batch(settings: Settings) -> None:
    archive = _archive(settings)
    archive.add_readings(q.clean_rows(seed=1))
    entry = archive.add_readings(q.clean_rows(seed=2), partition=1)
    q.with_float32_temperatures(settings.archive_root, entry)

    run = validate_batches(settings, publish=False)

    assert ("expect_column_values_to_be_of_type(temperature_c)", "critical") in _failures(
        run, entry.batch_id
    )
    (record,) = quarantined(settings.archive_root)
    assert (record.batch_id, record.scope, record.rows) == (entry.batch_id, "batch", entry.rows)
    assert _warehouse_rows(settings) == len(q.clean_rows(seed=1))

    release(settings, entry.batch_id)

    assert _warehouse_rows(settings) == 2 * len(q.clean_rows(seed=1))


def test_a_file_left_without_readings_leaves_the_ledger_and_release_writes_it_again(
    settings: Settings,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from warehouse.archive.ledger import Ledger
    from warehouse.archive.quarantine import quarantine_rows, release_batch

    rows = q.clean_rows(seed=2, regions=("paris",))
    lonely = ("oslo-000", "oslo", rows[0][2], -3.0)  # the only reading of oslo's file
    entry = _archive(settings).add_readings([*rows, lonely])
    oslo = next(f for f in entry.files if f.region == "oslo")
    root = Path(settings.archive_root)
    before = (root / oslo.path).read_bytes()
    offset = entry.start_offset + len(rows)

    done = quarantine_rows(settings.archive_root, entry, {offset: ("x", "why")}, reason="x")

    assert done.moved == 1 and done.record.rows == 1
    assert not (root / oslo.path).exists()
    (now,) = Ledger(settings.archive_root).entries()
    assert oslo.path not in {f.path for f in now.files} and now.rows == len(rows)
    claimed, on_disk = q.ledger_versus_files(settings.archive_root)
    assert claimed == on_disk

    release_batch(settings.archive_root, entry.batch_id)

    (after,) = Ledger(settings.archive_root).entries()
    assert sorted(after.files, key=lambda f: f.path) == sorted(entry.files, key=lambda f: f.path)
    assert after.rows == entry.rows
    assert pq.read_table(root / oslo.path).equals(pq.read_table(pa.BufferReader(before)))
