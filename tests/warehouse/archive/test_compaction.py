"""Compaction of closed days: same rows, fewer files, a ledger that stays true, crash-safe."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.archive import archived_readings, produce_scenario
from tests.fixtures.settings import settings_env
from warehouse.archive.compaction import CRASH_AT_ENV, CRASH_EXIT_CODE, closed_groups, compact
from warehouse.archive.ledger import ArchivedFile, Ledger, LedgerEntry
from warehouse.archive.run import archive_topic

CHECKSUM_SQL = """
SELECT date, region, count(*) AS readings,
       sum(hash(sensor_id, ts, temperature_c, humidity_pct, pressure_hpa,
                kafka_partition, kafka_offset)) AS checksum
FROM read_parquet(?, hive_partitioning = true)
GROUP BY ALL ORDER BY ALL
"""


def checksums(root: str) -> list[tuple]:
    """Per day and region: row count and an order-independent checksum of the content."""
    import duckdb

    with duckdb.connect() as con:
        return con.execute(CHECKSUM_SQL, [f"{root}/readings/**/*.parquet"]).fetchall()


def files_per_directory(root: str) -> Counter[str]:
    return Counter(str(p.parent.relative_to(root)) for p in Path(root).rglob("*.parquet"))


def assert_ledger_is_true(root: str) -> None:
    """Every file on disk is in the ledger with exactly its rows, and nothing else is."""
    import pyarrow.parquet as pq

    claimed: Counter[str] = Counter()
    for entry in Ledger(root).entries():
        for archived in entry.files:
            claimed[archived.path] += archived.rows
    on_disk = Counter(
        {
            str(p.relative_to(root)): pq.read_metadata(p).num_rows
            for p in Path(root).rglob("*.parquet")
        }
    )
    assert claimed == on_disk
    assert not list(Path(root).rglob(".*"))  # no hidden leftovers
    assert not list(Path(root, "_compaction").glob("*"))  # no unfinished intent


def _many_small_files(settings: Settings, readings: int = 300) -> None:
    produce_scenario(settings, readings)
    archive_topic(settings, settings.topic_readings, batch_records=25)


@pytest.mark.unit
def test_a_directory_is_closed_only_when_no_file_was_added_for_a_while() -> None:
    def entry(start: int, path: str, at: str) -> LedgerEntry:
        return LedgerEntry(
            "t", 0, start, start + 10, (ArchivedFile(path, "readings", 10),), 10, 0, 0, at
        )

    entries = [
        entry(0, "readings/date=2026-11-23/region=a/f1.parquet", "2026-11-24T08:00:00+00:00"),
        entry(10, "readings/date=2026-11-23/region=a/f2.parquet", "2026-11-24T09:00:00+00:00"),
        entry(20, "readings/date=2026-11-24/region=a/f3.parquet", "2026-11-24T09:00:00+00:00"),
        entry(30, "readings/date=2026-11-24/region=a/f4.parquet", "2026-11-24T11:30:00+00:00"),
    ]
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    groups = closed_groups(entries, now=now, closed_after=timedelta(hours=2))
    assert [g.directory for g in groups] == ["readings/date=2026-11-23/region=a"]
    assert groups[0].batch_ids == (
        "t-p0-000000000000-000000000010",
        "t-p0-000000000010-000000000020",
    )


@pytest.mark.unit
def test_files_archived_before_required_fields_were_not_null_compact_with_new_ones(
    tmp_path: Path,
) -> None:
    """Alerts archived with the old all-nullable schema merge with new files into one file
    of today's schema (required fields ``not null``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from include.events import Alert
    from warehouse.archive.batch import BatchBuilder, dataset_schema
    from warehouse.archive.layout import ALERTS, batch_file_name, data_path
    from warehouse.archive.ledger import filesystem_for
    from warehouse.archive.parquet import write_parquet_atomically

    schema = dataset_schema(ALERTS)
    assert not schema.field("alert_id").nullable and schema.field("value").nullable
    old_schema = pa.schema([field.with_nullable(True) for field in schema])
    root = str(tmp_path)
    fs, base = filesystem_for(root)
    alert = Alert(
        "a1", "heat", "critical", "paris", "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z",
        31.5, None, "firing", "hot", "2026-11-24T10:05:01Z",
    )  # fmt: skip
    record_ms = int(datetime(2026, 11, 24, 10, 5, 2, tzinfo=UTC).timestamp() * 1000)
    written = []
    for offset, file_schema in [(0, old_schema), (1, schema)]:
        builder = BatchBuilder(ALERTS, "t")
        builder.add(0, offset, record_ms, b"paris", alert.to_json())
        ((dataset, day, region, table),) = builder.tables()
        path = data_path(dataset, day, region, batch_file_name("t", 0, offset, offset + 1))
        write_parquet_atomically(fs, f"{base}/{path}", [table.cast(file_schema)])
        written.append(pq.read_schema(Path(root, path)))
        files = (ArchivedFile(path, dataset, 1, day, region),)
        Ledger(root).append(
            LedgerEntry("t", 0, offset, offset + 1, files, 1, 0, 0, "2026-11-24T11:00:00+00:00")
        )
    assert written[0].equals(old_schema) and written[1].equals(schema)

    result = compact(root, closed_after=timedelta(0))
    assert result.files_before == 2 and len(result.groups) == 1
    merged = pq.read_table(Path(root, result.groups[0].merged))
    assert merged.schema.equals(schema)
    assert merged.column("kafka_offset").to_pylist() == [0, 1]
    assert merged.column("threshold").to_pylist() == [None, None]
    assert_ledger_is_true(root)


@pytest.mark.kafka
def test_compaction_keeps_the_rows_in_fewer_files_and_the_ledger_true(
    kafka_settings: Settings,
) -> None:
    root = kafka_settings.archive_root
    _many_small_files(kafka_settings)
    before = checksums(root)
    files_before = files_per_directory(root)
    assert max(files_before.values()) > 1

    # not closed yet: nothing happens
    assert compact(root, closed_after=timedelta(hours=2)).groups == ()
    assert files_per_directory(root) == files_before

    result = compact(root, closed_after=timedelta(0))
    after = files_per_directory(root)
    assert set(after) == set(files_before) and set(after.values()) == {1}
    assert sum(after.values()) < sum(files_before.values())
    assert result.files_before == sum(n for n in files_before.values() if n > 1)
    assert checksums(root) == before
    assert_ledger_is_true(root)

    # the archive still runs on top: nothing re-archived, new files merged next time
    offsets = [(e.topic, e.partition, e.start_offset) for e in Ledger(root).entries()]
    assert sum(r.files for r in archive_topic(kafka_settings, kafka_settings.topic_readings)) == 0
    more = produce_scenario(kafka_settings, 80, seed=5)
    archive_topic(kafka_settings, kafka_settings.topic_readings, batch_records=25)
    assert max(files_per_directory(root).values()) > 1
    compact(root, closed_after=timedelta(0))
    assert set(files_per_directory(root).values()) == {1}
    assert_ledger_is_true(root)
    assert len(archived_readings(root)) == sum(c for _, _, c, _ in before) + more.valid_count
    assert set(offsets) <= {(e.topic, e.partition, e.start_offset) for e in Ledger(root).entries()}


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["merged", "renamed", "old_deleted", "ledger_partial"])
def test_a_crash_during_compaction_is_recovered_by_the_next_run(
    kafka_settings: Settings, crash_at: str
) -> None:
    root = kafka_settings.archive_root
    _many_small_files(kafka_settings, 150)
    before = checksums(root)
    env = settings_env(kafka_settings) | {"CLIMATEWATCH_ARCHIVE_COMPACT_AFTER_MINUTES": "0"}
    command = [
        str(Path(sys.executable).with_name("climatewatch")),
        "archive", "run", "--topic", kafka_settings.topic_readings,
    ]  # fmt: skip
    crashed = subprocess.run(
        command, env=env | {CRASH_AT_ENV: crash_at}, capture_output=True, text=True, timeout=120
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert checksums(root) == before
    assert set(files_per_directory(root).values()) == {1}
    assert_ledger_is_true(root)
