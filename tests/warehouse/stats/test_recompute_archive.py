"""The warehouse on an archive written by the real archiver from the real broker.

The scenario (tests/fixtures/archive.py) sends duplicates, late and
out-of-order readings across midnight, and malformed records; the archiver writes them
in small batches; compaction later rewrites a closed day's files and ledger entries.
The warehouse must count every archived reading once, follow the ledger incrementally,
and agree with a full rebuild at every step.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.archive import produce_scenario
from tests.fixtures.stats import same_tables, table_snapshot
from warehouse.archive.compaction import compact
from warehouse.archive.run import archive_topic
from warehouse.db import connect_read_only
from warehouse.stats.recompute import rebuild, recompute

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def daily_counts(settings: Settings) -> Counter[str]:
    con = connect_read_only(settings.warehouse_path)
    try:
        rows = con.execute(
            "SELECT date::VARCHAR, sum(reading_count) FROM regional_daily GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    return Counter({day: int(n) for day, n in rows})


def scalar(settings: Settings, sql: str) -> int:
    con = connect_read_only(settings.warehouse_path)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_warehouse_counts_the_real_archive_once_incrementally_and_after_compaction(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    produced = produce_scenario(settings, 300)
    archive_topic(settings, settings.topic_readings, batch_records=40)
    first = recompute(settings)
    assert first.batches > settings.readings_partitions  # several batches per partition
    assert daily_counts(settings) == produced.by_day
    assert scalar(settings, "SELECT count(*) FROM rejected") == produced.malformed_count

    more = produce_scenario(settings, 120, seed=5)
    produced.add(more)
    archive_topic(settings, settings.topic_readings, batch_records=40)
    second = recompute(settings)
    assert second.mode == "incremental" and second.batches > 0
    assert daily_counts(settings) == produced.by_day
    incremental = table_snapshot(settings)

    # compaction merges a closed day's files and rewrites the ledger: the same rows
    files = len(list(Path(settings.archive_root).rglob("*.parquet")))
    compact(settings.archive_root, closed_after=timedelta(0))
    assert len(list(Path(settings.archive_root).rglob("*.parquet"))) < files
    recompute(settings)
    assert daily_counts(settings) == produced.by_day
    assert same_tables(table_snapshot(settings), incremental)

    rebuild(settings)
    assert same_tables(table_snapshot(settings), incremental)
    assert Path(settings.warehouse_path).exists()
