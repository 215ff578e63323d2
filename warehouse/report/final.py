"""Is a day's data final enough to report? What the climate_report DAG's sensor asks.

A day is final when the archive has moved past it (some ledger batch holds a later
date, so the stream reached the next day), every archive batch with rows of that day
is reflected in the published warehouse, and data quality has results for each of its
readings batches. Late readings can still arrive later; a re-run rewrites the report.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from include.settings import Settings
from warehouse.report.data import READINGS_DATASET


def _pending_text(kind: str, batch_ids: list[str]) -> str:
    shown = ", ".join(batch_ids[:3]) + (" …" if len(batch_ids) > 3 else "")
    return f"{len(batch_ids)} batch(es) of the day not {kind} yet ({shown})"


def day_is_final(settings: Settings, day: date) -> tuple[bool, str]:
    """(final, why): whether the statistics and quality results of ``day`` are complete."""
    from warehouse.archive.ledger import Ledger
    from warehouse.db import connect_read_only, query_sql

    text = day.isoformat()
    entries = Ledger(settings.archive_root).entries()
    if not any(d > text for e in entries for d in e.dates):
        return False, f"the archive has no data after {text} yet: the day may still be filling"
    of_day = [e for e in entries if text in e.dates]
    if not settings.warehouse_path.exists():
        return False, f"no warehouse at {settings.warehouse_path} yet"
    con = connect_read_only(settings.warehouse_path)
    try:
        processed = {
            row[0] for row in con.execute(query_sql("report_processed_batches")).fetchall()
        }
        summary = settings.quality_summary_path
        validated = (
            {
                row[0]
                for row in con.execute(
                    query_sql("report_validated_batches"), {"summary": str(summary.resolve())}
                ).fetchall()
            }
            if summary.is_file()
            else set()
        )
    finally:
        con.close()
    unprocessed = sorted(e.batch_id for e in of_day if e.batch_id not in processed)
    if unprocessed:
        return False, _pending_text("in the warehouse", unprocessed)
    readings_batches = [
        e for e in of_day if any(f.dataset == READINGS_DATASET and f.date == text for f in e.files)
    ]
    unvalidated = sorted(e.batch_id for e in readings_batches if e.batch_id not in validated)
    if unvalidated:
        return False, _pending_text("validated by data quality", unvalidated)
    return True, (
        f"{text} is final: {len(of_day)} batch(es) in the warehouse, "
        f"{len(readings_batches)} readings batch(es) validated"
    )


def report_day_for(data_interval_start: datetime, data_interval_end: datetime) -> date:
    """The UTC day a daily run reports: the day its data interval covers.

    With an interval timetable that is the interval's start; with a trigger timetable
    (Airflow 3's default for ``@daily``: start == end == the run's time) the day before.
    """
    if data_interval_end > data_interval_start:
        return data_interval_start.astimezone(UTC).date()
    return (data_interval_end.astimezone(UTC) - timedelta(days=1)).date()
