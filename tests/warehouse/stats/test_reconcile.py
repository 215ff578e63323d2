"""Lambda reconciliation: speed-layer windows against the batch recompute of the archive.

The speed layer's records are written here as it publishes them: one per closed
one-minute window, with the readings it saw in time and, in ``late``, how many of the
window's readings arrived after it had closed (those only the archive has).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.settings import Settings, load_settings
from tests.fixtures.reconcile import MINUTE, START, on_time_readings, speed_records
from tests.fixtures.settings import run_cli
from tests.fixtures.stats import FakeArchive
from warehouse.db import connect_read_only
from warehouse.stats.recompute import recompute
from warehouse.stats.reconcile import reconciliation_for

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", reporting_interval_s=20)


def statuses(settings: Settings) -> dict[tuple[str, datetime], dict]:
    con = connect_read_only(settings.warehouse_path)
    try:
        cursor = con.execute("FROM reconciliation")
        names = [d[0] for d in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    return {(r["region"], r["window_start"]): r for r in found}


def test_without_late_data_speed_and_batch_agree(settings: Settings) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    readings = on_time_readings()
    archive.add_readings(readings)
    archive.add_window_stats(speed_records(readings))
    recompute(settings)
    found = statuses(settings)
    assert len(found) == 8
    assert {r["status"] for r in found.values()} == {"agree"}
    assert all(r["count_diff"] == 0 and r["batch_sensors"] == 2 for r in found.values())
    # windows after midnight belong to the next date
    assert sorted({r["date"].isoformat() for r in found.values()}) == ["2026-05-10", "2026-05-11"]


def test_late_readings_explain_the_differences_and_the_rest_is_flagged(
    settings: Settings,
) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    readings = on_time_readings()
    archive.add_readings(readings)
    # the speed layer counted one paris reading of window 3 that the archive lost
    # (quarantined, say): a difference late data does not explain
    phantom = [("paris-s9", "paris", START + 3 * MINUTE + timedelta(seconds=5), 99.0)]
    archive.add_window_stats(speed_records(readings + phantom, late={("paris", 1): 2}))
    first = recompute(settings)
    assert first.dates == ["2026-05-10", "2026-05-11"]
    # two readings of paris window 1 arrive after the window closed: the speed layer
    # counted them late, the archiver wrote them in a later batch
    late = [
        ("paris-s1", "paris", START + MINUTE + timedelta(seconds=50), 25.0),
        ("paris-s3", "paris", START + MINUTE + timedelta(seconds=55), 27.0),
    ]
    archive.add_readings(late, partition=1)
    recompute(settings)

    found = statuses(settings)
    window1 = found[("paris", START + MINUTE)]
    assert (window1["status"], window1["count_diff"], window1["late"]) == (
        "explained_by_late",
        2,
        2,
    )
    assert (window1["speed_count"], window1["batch_count"]) == (6, 8)
    assert window1["batch_max_c"] == 27.0 and window1["batch_sensors"] == 3
    window3 = found[("paris", START + 3 * MINUTE)]
    assert (window3["status"], window3["count_diff"], window3["explained"]) == (
        "unexplained",
        -1,
        False,
    )
    others = {
        k: r["status"]
        for k, r in found.items()
        if k[1] not in (START + MINUTE, START + 3 * MINUTE) or k[0] != "paris"
    }
    assert set(others.values()) == {"agree"} and len(others) == 6

    con = connect_read_only(settings.warehouse_path)
    try:
        day = reconciliation_for(con, "2026-05-10")
        next_day = reconciliation_for(con, "2026-05-11")
    finally:
        con.close()
    paris = next(r for r in day.regions if r.region == "paris")
    assert (paris.windows, paris.agree, paris.explained_by_late, paris.unexplained) == (3, 2, 1, 0)
    assert (paris.count_diff, paris.late) == (2, 2)
    assert next_day.unexplained == 1 and next_day.unexplained_windows[0]["region"] == "paris"

    done = run_cli(
        settings,
        "warehouse",
        "reconcile",
        "--date",
        "2026-05-11",
        "--fail-on-unexplained",
        timeout_s=60,
    )
    assert done.returncode == 1, done.stderr
    assert "unexplained: paris 2026-05-11 00:00:00" in done.stdout
    assert "2 window(s): 1 not explained by late data" in done.stdout


def test_a_window_published_twice_counts_once(settings: Settings) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    readings = on_time_readings()
    archive.add_readings(readings)
    records = speed_records(readings)
    archive.add_window_stats(records)
    archive.add_window_stats(records[:2])  # a restarted speed layer publishes again
    recompute(settings)
    found = statuses(settings)
    assert len(found) == 8 and {r["status"] for r in found.values()} == {"agree"}


def test_a_window_of_invalid_records_only_agrees(settings: Settings) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    readings = on_time_readings()
    archive.add_readings(readings)
    empty = {
        **speed_records(readings)[0],
        "window_start": START + 10 * MINUTE,
        "window_end": START + 11 * MINUTE,
        "count": 0,
        "mean_c": float("nan"),  # what the speed layer publishes for no valid reading
        "min_c": None,
        "max_c": None,
        "sensors": 0,
        "invalid": 5,
    }
    archive.add_window_stats([*speed_records(readings), empty])
    recompute(settings)
    found = statuses(settings)
    assert found[("paris", START + 10 * MINUTE)]["status"] == "agree"
    assert {r["status"] for r in found.values()} == {"agree"}


def test_the_speed_layers_own_windows_reconcile(settings: Settings) -> None:
    """Windows made by streaming.windowing itself (the stream's pure code), late one included."""
    from streaming.windowing import PartitionWindows, RegionWindows

    stage1 = PartitionWindows(partition=0, size_ms=60_000, lateness_ms=30_000)
    stage2 = RegionWindows(input_partitions=1)
    published = []

    def arrive(sensor: str, ts: datetime, temperature: float, offset: int) -> None:
        stage1.add("paris", sensor, int(ts.timestamp() * 1000), temperature, offset)
        for partial in stage1.close_ready():
            update = stage2.add_partial(partial, 0, offset)
            if update is not None:  # late counts reaching a closed window: republished
                published.append(update)
        stage2.add_watermark(0, stage1.watermark_ms)
        published.extend(stage2.close_ready())

    readings = [
        (sensor, "paris", START + timedelta(minutes=minute, seconds=second), 10.0 + minute)
        for minute in range(7)
        for second in (0, 20, 40)
        for sensor in ("paris-s1", "paris-s2")
    ]
    late = ("paris-s3", "paris", START + MINUTE + timedelta(seconds=50), 30.0)
    arrival = [*readings[:30], late, *readings[30:]]  # arrives when minute 5 is under way
    for offset, (sensor, _, ts, temperature) in enumerate(arrival):
        arrive(sensor, ts, temperature, offset)
    assert any(w.republished and w.late == 1 for w in published)

    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(arrival)
    archive.add_window_stats(
        [
            {
                "region": w.region,
                "window_start": datetime.fromtimestamp(w.start_ms / 1000, UTC),
                "window_end": datetime.fromtimestamp(w.end_ms / 1000, UTC),
                "count": w.count,
                "mean_c": w.mean_c,
                "min_c": w.min_c,
                "max_c": w.max_c,
                "sensors": len(w.sensors),
                "late": w.late,
                "invalid": w.invalid,
                "closed_by": w.closed_by,
                "emitted_at": START + timedelta(hours=1, seconds=i),  # publication order
            }
            for i, w in enumerate(published)
        ]
    )
    recompute(settings)
    found = statuses(settings)
    assert len(found) == len({(w.region, w.start_ms) for w in published}) >= 5
    window1 = found[("paris", START + MINUTE)]
    assert (window1["status"], window1["count_diff"], window1["late"]) == (
        "explained_by_late",
        1,
        1,
    )
    others = [r["status"] for k, r in found.items() if k != ("paris", START + MINUTE)]
    assert set(others) == {"agree"}
