"""Every analyst question of warehouse/sql/queries/examples.sql runs and answers on a real warehouse."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.settings import Settings, load_settings
from tests.fixtures.reconcile import MINUTE, START, on_time_readings, speed_records
from tests.fixtures.stats import FakeArchive, alert, day1_nice, day1_paris, day2_paris
from warehouse.archive.batch import rejected_arrow_schema
from warehouse.db import connect_read_only, query_sql
from warehouse.stats.recompute import recompute

pytestmark = pytest.mark.unit

HOT_DAY = datetime(2026, 3, 3, 12, tzinfo=UTC)


def examples() -> list[tuple[str, str, str]]:
    """(name, question, sql) of every block of examples.sql."""
    blocks = re.split(r"^-- name: ", query_sql("examples"), flags=re.MULTILINE)[1:]
    found = []
    for block in blocks:
        name, rest = block.split("\n", 1)
        question = re.search(r"^-- question: (.+)$", rest, flags=re.MULTILINE)
        assert question, f"{name}: no question"
        found.append((name.strip(), question.group(1), rest.strip()))
    return found


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("examples") / "data"
    settings = load_settings(data_dir=data, reporting_interval_s=600)
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(day1_paris() + day1_nice() + day2_paris())
    archive.add_readings(
        [("a", "paris", HOT_DAY + i * timedelta(minutes=10), 31.5) for i in range(3)]
    )
    readings = on_time_readings()
    archive.add_readings(readings, partition=1)
    archive.add_window_stats(speed_records(readings, late={("paris", 1): 2}))
    late = [("paris-s1", "paris", START + MINUTE + timedelta(seconds=50), 25.0)] * 2
    phantom = [("paris-s9", "paris", START + 3 * MINUTE + timedelta(seconds=5), 99.0)]
    archive.add_window_stats(speed_records(readings + phantom)[3:4])
    archive.add_readings(late, partition=2)
    in_may = {"window_start": START, "window_end": START + MINUTE}
    archive.add_alerts(
        [alert("heat-1", "heat"), {**alert("heat-9", "heat"), **in_may}, alert("cold-1", "cold")]
    )
    rejected = Path(settings.archive_root) / "rejected" / "date=2026-03-01" / "r.parquet"
    rejected.parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "kafka_partition": 0,
                    "kafka_offset": 7,
                    "kafka_timestamp": datetime(2026, 3, 1, tzinfo=UTC),
                    "key": b"s",
                    "value": b"{not json",
                    "reason": "not_json",
                    "detail": "JSONDecodeError",
                }
            ],
            schema=rejected_arrow_schema(),
        ),
        rejected,
    )
    recompute(settings)
    return settings


def test_there_are_ten_examples_with_questions() -> None:
    names = [name for name, _, _ in examples()]
    assert len(names) == 10 and len(set(names)) == 10


@pytest.mark.parametrize("name, question, sql", examples(), ids=[e[0] for e in examples()])
def test_example_runs_and_answers(settings: Settings, name: str, question: str, sql: str) -> None:
    con = connect_read_only(settings.warehouse_path)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    assert rows, f"{name}: no answer to {question!r}"
    first = rows[0]
    expected = {
        "hottest_regions_this_week": {"region": "dakar", "max_c": 33.4},
        "days_above_30": {"region": "dakar", "days_above_30": 2, "hottest_c": 33.4},
        "rejected_by_reason": {"reason": "not_json", "records": 1},
        "speed_layer_disagreements": {"region": "paris", "unexplained_windows": 1},
        "alerts_by_rule_this_month": {"region": "paris", "rule": "heat", "alerts": 1},
        "largest_anomalies": {"region": "paris", "baseline_source": "trailing_mean"},
    }.get(name, {})
    assert {k: first[k] for k in expected} == expected, rows
    if name == "days_above_30":
        assert rows[1] == {
            "region": "paris",
            "days_above_30": 1,
            "last_day": HOT_DAY.date(),
            "hottest_c": 31.5,
        }
    if name == "late_data_by_hour":
        assert sum(r["late_readings"] for r in rows) == 2
    if name == "worst_sensor_coverage":
        assert [r["coverage_pct"] for r in rows] == sorted(r["coverage_pct"] for r in rows)
