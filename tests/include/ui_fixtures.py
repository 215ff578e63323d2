"""A small data directory for the ClimateWatch page: what each of its sections reads.

Built with the real writers where they exist (the archive layout and ledger of
``tests/warehouse/stats_fixtures.py``, ``warehouse.stats.rebuild`` for the warehouse, a
real quarantine record) and by hand where the page only reads files (the quality
summary Parquet, report files, Data Docs). Shared by the TestClient tests and the
browser tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from include.settings import Settings
from tests.warehouse.stats_fixtures import FakeArchive

DAY = datetime(2026, 3, 1, tzinfo=UTC)
REGIONS = ("paris", "nice", "lyon")
ALERT_MESSAGE_WITH_MARKUP = "heat <b>not bold</b> in paris"


@dataclass(frozen=True)
class UiData:
    """What was written, for the tests' expectations."""

    report_days: tuple[str, ...]  # days with a report.html, newest first
    alert_count: int
    batch_ids: tuple[str, ...]  # readings batches, oldest first
    failed_batch: str
    quarantined_batch: str


def _readings() -> list[tuple[str, str, datetime, float]]:
    rows = []
    for index, region in enumerate(REGIONS):
        for hour in range(0, 24, 2):
            for sensor in range(2):
                ts = DAY + timedelta(hours=hour, minutes=10 * sensor)
                rows.append((f"{region}-{sensor}", region, ts, 12.0 + 4 * index + hour / 4))
    return rows


def _alert(alert_id: str, rule: str, region: str, status: str, hour: int, message: str) -> dict:
    start = DAY + timedelta(hours=hour)
    return {
        "alert_id": alert_id,
        "rule": rule,
        "severity": "critical" if rule == "heat" else "warning",
        "region": region,
        "window_start": start,
        "window_end": start + timedelta(minutes=5),
        "value": 31.5 if rule == "heat" else -3.0,
        "threshold": 30.0 if rule == "heat" else 0.0,
        "status": status,
        "message": message,
        "emitted_at": start + timedelta(minutes=6),
    }


def write_quality_summary(path: Path, batch_ids: tuple[str, ...], failed_batch: str) -> None:
    """The per-batch expectation results data quality writes (its documented columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from warehouse.quality import summary_schema

    rows = []
    for n, batch in enumerate(batch_ids):
        validated = DAY + timedelta(days=1, minutes=n)
        for expectation, severity in (
            ("expect_column_values_to_not_be_null", "critical"),
            ("expect_column_values_to_be_between", "critical"),
            ("expect_column_values_to_be_unique", "warning"),
        ):
            failed = batch == failed_batch and expectation.endswith("between")
            rows.append(
                {
                    "batch_id": batch,
                    "date": DAY.date(),
                    "region": "paris",
                    "expectation": expectation,
                    "severity": severity,
                    "success": not failed,
                    "unexpected_count": 7 if failed else 0,
                    "validated_at": validated,
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=summary_schema()), path)


def write_fake_reports(settings: Settings) -> tuple[str, ...]:
    """Two days with a report (one also with a CSV), one without, and an index."""
    base = settings.data_dir / "reports"
    days = ("2026-03-02", "2026-03-01")
    for day in days:
        (base / day).mkdir(parents=True, exist_ok=True)
        (base / day / "report.html").write_text(
            f"<!DOCTYPE html><html><head><title>Climate report {day}</title></head>"
            f"<body><h1>Climate report {day}</h1></body></html>"
        )
    (base / days[1] / "report.csv").write_text("region,mean_c\nparis,14.5\n")
    (base / "2026-02-28").mkdir(parents=True, exist_ok=True)  # no report.html: not listed
    (base / "index.html").write_text("<!DOCTYPE html><title>Reports</title><h1>Reports</h1>")
    return days


def build_ui_data(settings: Settings, *, reports: bool = True) -> UiData:
    """Archive, warehouse, quality summary, quarantine, Data Docs and (optionally) fake
    reports under ``settings.data_dir``."""
    from warehouse.ledger import Ledger
    from warehouse.quarantine import quarantine_batch
    from warehouse.stats import quality_summary_path, rebuild

    archive = FakeArchive(Path(settings.archive_root))
    readings = _readings()
    half = len(readings) // 2
    first = archive.add_readings(readings[:half])
    second = archive.add_readings(readings[half:])
    third = archive.add_readings(
        [("paris-0", "paris", DAY + timedelta(hours=23, minutes=50), 99.0)], partition=1
    )
    alerts = [
        _alert("heat-paris-1", "heat", "paris", "firing", 12, ALERT_MESSAGE_WITH_MARKUP),
        _alert("heat-paris-1", "heat", "paris", "resolved", 14, "heat over in paris"),
        _alert("cold-lyon-1", "cold", "lyon", "firing", 4, "cold in lyon"),
    ]
    archive.add_alerts(alerts)
    batch_ids = (first.batch_id, second.batch_id, third.batch_id)
    write_quality_summary(quality_summary_path(settings), batch_ids, failed_batch=third.batch_id)
    entry = next(e for e in Ledger(settings.archive_root).entries() if e.batch_id == third.batch_id)
    quarantine_batch(
        settings.archive_root,
        entry,
        reason="expect_column_values_to_be_between failed (critical)",
        failures=(
            {
                "expectation": "expect_column_values_to_be_between",
                "severity": "critical",
                "unexpected_count": 1,
            },
        ),
    )
    rebuild(settings)
    docs = settings.data_dir / "quality" / "data_docs" / "local_site"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text("<!DOCTYPE html><title>Data Docs</title><h1>Data Docs</h1>")
    days = write_fake_reports(settings) if reports else ()
    return UiData(days, len(alerts), batch_ids, third.batch_id, third.batch_id)
