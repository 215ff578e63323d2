"""Regional statistics on a small fixed archive, against values computed by hand.

The dataset (reporting interval 600 s: 6 readings per sensor and hour, 144 per day):

2026-03-01 paris, sensors a and b
    00:00-00:50  a: 10 11 12 13 14 15    b (00:00, 00:10, 00:20): 20 20 20
    12:00-12:50  a: 16 ×6                b: 17.5 ×6
2026-03-02 paris, sensor a only
    06:00-06:50  a: 20 ×6
2026-03-01 nice, sensor c: 12 13 14 15 at 09:00, 09:10, 09:20, 09:30
climatology CSV: nice, March 1st, normal 12.5 °C (paris has none: trailing mean)
alerts 2026-03-01 paris: heat firing twice (two ids, one repeated), one resolved, cold once
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import pytest

from include.settings import Settings, load_settings
from tests.fixtures.stats import (
    DAY1,
    DAY2,
    FakeArchive,
    alert,
    at,
    day1_nice,
    day1_paris,
    day2_paris,
    same_tables,
    table_snapshot,
)
from warehouse.db import connect_read_only
from warehouse.stats.recompute import rebuild, recompute, recompute_dates

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    climatology = tmp_path / "normals.csv"
    climatology.write_text("region,month,day,normal_c\nnice,3,1,12.5\n")
    return load_settings(
        data_dir=tmp_path / "data", reporting_interval_s=600, climatology_csv=climatology
    )


@pytest.fixture
def archive(settings: Settings) -> FakeArchive:
    return FakeArchive(Path(settings.archive_root))


def rows(settings: Settings, sql: str) -> list[dict]:
    con = connect_read_only(settings.warehouse_path)
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def close(value: float | None, expected: float) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=0, abs_tol=1e-9)


def test_hand_computed_daily_hourly_degree_days_percentiles_coverage_anomaly(
    settings: Settings, archive: FakeArchive
) -> None:
    archive.add_readings(day1_paris() + day1_nice())
    archive.add_readings(day2_paris(), partition=1)
    archive.add_alerts(
        [
            alert("heat-1", "heat"),
            alert("heat-2", "heat"),
            alert("heat-1", "heat"),  # the same alert repeated (a restarted speed layer)
            alert("heat-1", "heat", "resolved"),
            alert("cold-1", "cold"),
        ]
    )
    result = recompute(settings)
    assert result.mode == "incremental" and result.batches == 3
    assert result.dates == ["2026-03-01", "2026-03-02"]

    daily = {(r["region"], r["date"].isoformat()): r for r in rows(settings, "FROM regional_daily")}
    assert set(daily) == {("paris", "2026-03-01"), ("paris", "2026-03-02"), ("nice", "2026-03-01")}

    p1 = daily[("paris", "2026-03-01")]
    # 21 readings, sum 75 + 60 + 96 + 105 = 336, mean 16.0
    assert (p1["reading_count"], p1["sensors_reporting"], p1["known_sensors"]) == (21, 2, 2)
    assert p1["expected_readings"] == 288.0  # 2 sensors × 144
    assert close(p1["coverage_pct"], 100 * 21 / 288)
    assert (p1["min_c"], p1["max_c"], p1["mean_c"]) == (10.0, 20.0, 16.0)
    # sorted: 10 11 12 13 14 15 16×6 17.5×6 20×3; positions 20p: 1, 10, 19
    assert (p1["p05_c"], p1["p50_c"], p1["p95_c"]) == (11.0, 16.0, 20.0)
    squares = sum((v - 16.0) ** 2 for *_, v in day1_paris())
    assert close(p1["stddev_c"], math.sqrt(squares / 20))
    assert (p1["hdd"], p1["cdd"]) == (2.0, 0.0)  # base 18
    assert p1["baseline_c"] is None and p1["baseline_source"] is None
    assert p1["anomaly_c"] is None  # no climatology for paris and no earlier day
    assert p1["first_ts"] == at(DAY1, 0) and p1["last_ts"] == at(DAY1, 12, 50)
    assert p1["alerts_total"] == 3
    assert p1["alerts_by_rule"] == {"cold": 1, "heat": 2}

    p2 = daily[("paris", "2026-03-02")]
    assert (p2["reading_count"], p2["sensors_reporting"], p2["known_sensors"]) == (6, 1, 2)
    assert close(p2["coverage_pct"], 100 * 6 / 288)  # b is still known: silent, not gone
    assert (p2["hdd"], p2["cdd"]) == (0.0, 2.0)
    assert (p2["baseline_c"], p2["baseline_source"], p2["anomaly_c"]) == (
        16.0,
        "trailing_mean",
        4.0,
    )
    assert p2["stddev_c"] == 0.0 and p2["alerts_total"] == 0 and p2["alerts_by_rule"] == {}

    n1 = daily[("nice", "2026-03-01")]
    assert (n1["reading_count"], n1["known_sensors"], n1["mean_c"]) == (4, 1, 13.5)
    # [12 13 14 15], positions 3p: 0.15, 1.5, 2.85
    assert close(n1["p05_c"], 12.15) and close(n1["p50_c"], 13.5) and close(n1["p95_c"], 14.85)
    assert (n1["hdd"], n1["cdd"]) == (4.5, 0.0)
    assert (n1["baseline_c"], n1["baseline_source"], n1["anomaly_c"]) == (
        12.5,
        "climatology",
        1.0,
    )

    hourly = {
        (r["region"], r["hour_start"]): r
        for r in rows(settings, "FROM regional_hourly WHERE region = 'paris'")
    }
    assert sorted(hourly) == [
        ("paris", at(DAY1, 0)),
        ("paris", at(DAY1, 12)),
        ("paris", at(DAY2, 6)),
    ]
    h0 = hourly[("paris", at(DAY1, 0))]
    # 10 11 12 13 14 15 20 20 20: mean 15, squares 130 → sample variance 16.25
    assert (h0["reading_count"], h0["sensors_reporting"], h0["mean_c"]) == (9, 2, 15.0)
    assert h0["expected_readings"] == 12.0 and h0["coverage_pct"] == 75.0
    assert close(h0["stddev_c"], math.sqrt(16.25))
    # positions 8p: 0.4, 4, 7.6
    assert close(h0["p05_c"], 10.4) and h0["p50_c"] == 14.0 and h0["p95_c"] == 20.0
    assert h0["first_ts"] == at(DAY1, 0) and h0["last_ts"] == at(DAY1, 0, 50)
    assert h0["date"] == date(2026, 3, 1)
    h12 = hourly[("paris", at(DAY1, 12))]
    assert (h12["reading_count"], h12["mean_c"], h12["coverage_pct"]) == (12, 16.75, 100.0)
    h6 = hourly[("paris", at(DAY2, 6))]
    assert (h6["reading_count"], h6["known_sensors"], h6["coverage_pct"]) == (6, 2, 50.0)

    sensors = rows(settings, "FROM sensor_daily WHERE region = 'paris' ORDER BY date, sensor_id")
    assert [(s["sensor_id"], s["reading_count"]) for s in sensors] == [
        ("a", 12),
        ("b", 9),
        ("a", 6),
    ]
    assert close(sensors[1]["coverage_pct"], 100 * 9 / 144)


def test_degree_day_base_is_a_setting_and_a_change_recomputes_everything(
    settings: Settings, archive: FakeArchive
) -> None:
    archive.add_readings(day1_paris())
    recompute(settings)
    warmer = settings.model_copy(update={"degree_day_base_c": 20.0})
    result = recompute(warmer)
    assert result.mode == "rebuild" and result.batches == 0
    (row,) = rows(warmer, "SELECT hdd, cdd FROM regional_daily")
    assert (row["hdd"], row["cdd"]) == (4.0, 0.0)


def test_incremental_recompute_equals_a_full_rebuild(
    settings: Settings, archive: FakeArchive
) -> None:
    archive.add_readings(day1_paris() + day1_nice())
    first = recompute(settings)
    assert first.dates == ["2026-03-01"]
    archive.add_readings(day2_paris(), partition=1)
    second = recompute(settings)
    assert second.dates == ["2026-03-02"] and second.batches == 1
    # A late reading of day 1 from a sensor never seen before: day 1 is recomputed, and
    # day 2 with it (its known sensors look back over day 1).
    archive.add_readings([("d", "paris", at(DAY1, 23, 50), 30.0)], partition=2)
    third = recompute(settings)
    assert third.dates == ["2026-03-01"]
    assert third.dependent_dates == ["2026-03-01", "2026-03-02"]
    assert recompute(settings).dates == []  # nothing new: nothing recomputed

    incremental = table_snapshot(settings)
    (p2,) = rows(settings, "FROM regional_daily WHERE date = '2026-03-02'")
    assert p2["known_sensors"] == 3
    assert rebuild(settings).mode == "rebuild"
    rebuilt = table_snapshot(settings)
    assert same_tables(rebuilt, incremental), (rebuilt, incremental)
    assert sum(len(t) for t in incremental.values()) > 0


def test_recompute_dates_follows_files_moved_out_of_readings(
    settings: Settings, archive: FakeArchive
) -> None:
    entry = archive.add_readings(day1_nice())
    archive.add_readings(day1_paris(), partition=1)
    recompute(settings)
    quarantine = Path(settings.archive_root) / "quarantine"
    quarantine.mkdir()
    for file in entry.files:  # what data quality does to a bad batch
        (Path(settings.archive_root) / file.path).rename(quarantine / Path(file.path).name)
    recompute_dates(settings, ["2026-03-01"])
    assert [r["region"] for r in rows(settings, "FROM regional_daily")] == ["paris"]
    assert rows(settings, "SELECT count(*) AS n FROM readings")[0]["n"] == 21


def test_an_empty_archive_gives_empty_typed_views(settings: Settings) -> None:
    result = recompute(settings)
    assert result.dates == [] and result.daily_rows == 0
    for view in ("readings", "rejected", "alerts", "window_stats", "quality_results"):
        assert rows(settings, f"SELECT count(*) AS n FROM {view}") == [{"n": 0}]
    (column,) = rows(
        settings,
        "SELECT typeof(ts) AS t FROM (FROM readings UNION ALL SELECT NULL, NULL, now(), 1, NULL, NULL, 0, 0, today())",
    )
    assert column["t"] == "TIMESTAMP WITH TIME ZONE"


def test_views_use_absolute_paths_and_work_from_another_directory(
    settings: Settings, archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = load_settings(
        data_dir=Path("data"), reporting_interval_s=600, climatology_csv=settings.climatology_csv
    )
    monkeypatch.chdir(tmp_path)
    FakeArchive(Path(relative.archive_root)).add_readings(day1_paris())
    recompute(relative)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    con = duckdb.connect(
        str(tmp_path / "data" / "warehouse" / "climatewatch.duckdb"), read_only=True
    )
    try:
        assert con.execute("SELECT count(*), min(region) FROM readings").fetchone() == (21, "paris")
    finally:
        con.close()


def test_quality_results_view_reads_the_summary_when_it_exists(
    settings: Settings, archive: FakeArchive
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    summary = settings.data_dir / "quality" / "summary.parquet"
    summary.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "batch_id": ["b1"],
                "date": [date(2026, 3, 1)],
                "region": ["paris"],
                "expectation": ["expect_column_values_to_not_be_null"],
                "severity": ["critical"],
                "success": [False],
                "unexpected_count": [3],
                "validated_at": [DAY2],
            }
        ),
        summary,
    )
    archive.add_readings(day1_paris())
    recompute(settings)
    assert rows(settings, "SELECT batch_id, unexpected_count FROM quality_results") == [
        {"batch_id": "b1", "unexpected_count": 3}
    ]


def test_a_warehouse_from_another_schema_version_is_rebuilt(
    settings: Settings, archive: FakeArchive
) -> None:
    archive.add_readings(day1_paris())
    recompute(settings)
    con = duckdb.connect(str(settings.warehouse_path))  # as an older ClimateWatch left it
    try:
        con.execute("UPDATE warehouse_schema SET fingerprint = 'older'")
        con.execute("ALTER TABLE regional_daily DROP COLUMN anomaly_c")
    finally:
        con.close()
    result = recompute(settings)
    assert result.mode == "rebuild" and result.batches == 1
    (row,) = rows(settings, "SELECT reading_count, anomaly_c FROM regional_daily")
    assert row == {"reading_count": 21, "anomaly_c": None}
