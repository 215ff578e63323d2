"""The numbers of one daily report, gathered once and rendered many times.

:func:`load_report_data` is the only part that reads anything (the published warehouse
read-only, the data-quality summary, the quarantine records, the ledger); everything
after it works on a :class:`ReportData` and is pure, so the HTML, CSV, JSON and PDF can
never disagree about a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from include.settings import Settings
from warehouse.db import connect_read_only, query_sql

if TYPE_CHECKING:
    import duckdb

QualityStatus = Literal["passed", "warnings", "failed", "not validated"]
READINGS_DATASET = "readings"


@dataclass(frozen=True)
class RegionDay:
    """One region's day, as regional_daily has it (``missing``: known, but sent nothing)."""

    region: str
    reading_count: int
    sensors_reporting: int
    known_sensors: int | None
    coverage_pct: float | None
    min_c: float | None
    max_c: float | None
    mean_c: float | None
    hdd: float | None
    cdd: float | None
    baseline_c: float | None
    baseline_source: str | None
    anomaly_c: float | None
    alerts_total: int
    missing: bool


@dataclass(frozen=True)
class RegionHour:
    """One region's hour from regional_hourly: the temperature chart's points."""

    region: str
    hour_start: datetime
    reading_count: int
    coverage_pct: float | None
    min_c: float | None
    max_c: float | None
    mean_c: float | None


@dataclass(frozen=True)
class AlertOfDay:
    """An alert that fired that day, paired with its resolved event (if any)."""

    alert_id: str
    rule: str
    severity: str
    region: str
    window_start: datetime
    window_end: datetime | None
    value: float | None
    threshold: float | None
    message: str | None
    fired_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class QualityFailure:
    """A failed expectation, summed over the day's batches."""

    expectation: str
    severity: str
    region: str | None
    batches: int
    unexpected_count: int


@dataclass(frozen=True)
class Quality:
    """The day's data-quality results (``status`` 'not validated' when there are none)."""

    status: QualityStatus
    evaluated: int
    passed: int
    failed: int
    failures: tuple[QualityFailure, ...]
    batches_validated: int
    summary_found: bool
    data_docs: str | None  # relative link from the day's directory, None when absent


@dataclass(frozen=True)
class QuarantinedBatch:
    """A quarantined archive batch (or readings set aside from it) with rows on the day."""

    batch_id: str
    rows: int  # rows of this batch dated on the report's day, out of the statistics
    reason: str
    quarantined_at: str


@dataclass(frozen=True)
class Completeness:
    """Why the day is not complete (no reasons: it is)."""

    complete: bool
    reasons: tuple[str, ...]
    no_data: bool
    low_coverage: tuple[str, ...]  # regions below the minimum coverage
    quarantined: tuple[QuarantinedBatch, ...]
    pending_batches: int  # ledger batches of the day the warehouse has not processed
    min_coverage: float


@dataclass(frozen=True)
class Summary:
    """The headline numbers: the same in the HTML, the PDF, the JSON and the index."""

    hottest_region: str | None
    hottest_mean_c: float | None
    coldest_region: str | None
    coldest_mean_c: float | None
    largest_anomaly_region: str | None
    largest_anomaly_c: float | None
    alerts_firing: int
    quality_status: QualityStatus
    complete: bool
    regions: int


@dataclass(frozen=True)
class ReportData:
    """Everything one daily report shows, computed before any rendering."""

    day: date
    generated_at: datetime
    degree_day_base_c: float
    regions: tuple[RegionDay, ...]
    hourly: tuple[RegionHour, ...]
    alerts: tuple[AlertOfDay, ...]
    quality: Quality
    completeness: Completeness
    summary: Summary

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates and datetimes as ISO 8601 text, NaN as null."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- pure parts -------------------------------------------------------------------------------
def quality_status(evaluated: int, failures: tuple[QualityFailure, ...]) -> QualityStatus:
    """Failed on any critical failure, warnings on any other failure, else passed."""
    if evaluated == 0:
        return "not validated"
    if any(f.severity == "critical" for f in failures):
        return "failed"
    return "warnings" if failures else "passed"


def summarize_quality(
    rows: list[dict[str, Any]], *, summary_found: bool, data_docs: str | None
) -> Quality:
    """Counts and failures of the day's expectation results (one row per batch/region/expectation)."""
    failed_rows = [r for r in rows if not r["success"]]
    grouped: dict[tuple[str, str, str | None], list[dict[str, Any]]] = {}
    for row in failed_rows:
        key = (row["expectation"], row["severity"], row["region"])
        grouped.setdefault(key, []).append(row)
    failures = tuple(
        QualityFailure(
            expectation=expectation,
            severity=severity,
            region=region,
            batches=len({r["batch_id"] for r in group}),
            unexpected_count=sum(int(r["unexpected_count"] or 0) for r in group),
        )
        for (expectation, severity, region), group in sorted(
            grouped.items(),
            key=lambda item: (item[0][1] != "critical", item[0][0], item[0][2] or ""),
        )
    )
    return Quality(
        status=quality_status(len(rows), failures),
        evaluated=len(rows),
        passed=len(rows) - len(failed_rows),
        failed=len(failed_rows),
        failures=failures,
        batches_validated=len({r["batch_id"] for r in rows}),
        summary_found=summary_found,
        data_docs=data_docs,
    )


def assess_completeness(
    regions: tuple[RegionDay, ...],
    quarantined: tuple[QuarantinedBatch, ...],
    *,
    min_coverage: float,
    pending_batches: int = 0,
) -> Completeness:
    """The day is complete when every region is covered well enough and nothing is held back."""
    reasons: list[str] = []
    no_data = not any(r.reading_count for r in regions)
    if no_data:
        reasons.append("no data: the warehouse has no reading for this day")
    low = tuple(
        r.region for r in regions if r.coverage_pct is None or r.coverage_pct < 100.0 * min_coverage
    )
    if low and not no_data:
        shown = ", ".join(
            f"{r.region} ({'no reading' if r.missing else _pct(r.coverage_pct)})"
            for r in regions
            if r.region in low
        )
        reasons.append(
            f"{len(low)} region(s) below the minimum coverage of {100 * min_coverage:g}%: {shown}"
        )
    if quarantined:
        rows = sum(q.rows for q in quarantined)
        ids = ", ".join(q.batch_id for q in quarantined)
        reasons.append(
            f"{len(quarantined)} quarantined batch(es) hold {rows} row(s) of this day "
            f"that the statistics leave out: {ids}"
        )
    if pending_batches:
        reasons.append(
            f"{pending_batches} archive batch(es) with rows of this day are not in the "
            "warehouse yet: the statistics may still change"
        )
    return Completeness(
        complete=not reasons,
        reasons=tuple(reasons),
        no_data=no_data,
        low_coverage=low,
        quarantined=quarantined,
        pending_batches=pending_batches,
        min_coverage=min_coverage,
    )


def summarize(
    regions: tuple[RegionDay, ...],
    alerts: tuple[AlertOfDay, ...],
    quality: Quality,
    completeness: Completeness,
) -> Summary:
    """Hottest and coldest region by daily mean, largest absolute anomaly, alert count."""
    with_mean = [r for r in regions if r.mean_c is not None]
    hottest = max(with_mean, key=lambda r: (r.mean_c, r.region), default=None)
    coldest = min(with_mean, key=lambda r: (r.mean_c, r.region), default=None)
    with_anomaly = [r for r in regions if r.anomaly_c is not None]
    largest = max(with_anomaly, key=lambda r: (abs(r.anomaly_c or 0.0), r.region), default=None)
    return Summary(
        hottest_region=hottest.region if hottest else None,
        hottest_mean_c=hottest.mean_c if hottest else None,
        coldest_region=coldest.region if coldest else None,
        coldest_mean_c=coldest.mean_c if coldest else None,
        largest_anomaly_region=largest.region if largest else None,
        largest_anomaly_c=largest.anomaly_c if largest else None,
        alerts_firing=len({a.alert_id for a in alerts}),
        quality_status=quality.status,
        complete=completeness.complete,
        regions=len(with_mean),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


# --- reading ---------------------------------------------------------------------------------
def _rows(con: duckdb.DuckDBPyConnection, model: str, **params: Any) -> list[dict[str, Any]]:
    cursor = con.execute(query_sql(model), params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _batches_of_day(settings: Settings, day: date) -> tuple[list[Any], dict[str, int]]:
    """Ledger entries with rows dated ``day``, and each one's readings rows of that day."""
    from warehouse.archive.ledger import Ledger

    text = day.isoformat()
    entries = [e for e in Ledger(settings.archive_root).entries() if text in e.dates]
    readings_rows = {
        e.batch_id: sum(f.rows for f in e.files if f.date == text and f.dataset == READINGS_DATASET)
        for e in entries
    }
    return entries, readings_rows


def data_docs_link(settings: Settings) -> str | None:
    """Relative link from ``reports/<day>/`` to the Data Docs, when they exist."""
    index = settings.data_docs_dir / "index.html"
    return "../../quality/data_docs/index.html" if index.is_file() else None


def _quality_rows(con: duckdb.DuckDBPyConnection, summary: Path, day: date) -> list[dict[str, Any]]:
    if not summary.is_file():
        return []
    return _rows(con, "report_quality", summary=str(summary.resolve()), day=day)


def _quarantined_on(
    settings: Settings, day: date, rows_of_day: dict[str, int]
) -> tuple[QuarantinedBatch, ...]:
    from warehouse.archive.quarantine import quarantined

    text = day.isoformat()
    return tuple(
        QuarantinedBatch(
            batch_id=record.batch_id,
            # readings set aside from a batch: the record counts them per date; a whole
            # batch quarantined before records did: its ledger files of the day
            rows=record.rows_by_date.get(text, 0)
            if record.rows_by_date
            else rows_of_day.get(record.batch_id, record.rows),
            reason=record.reason,
            quarantined_at=record.quarantined_at,
        )
        for record in quarantined(settings.archive_root)
        if text in record.dates
    )


def load_report_data(settings: Settings, day: date, *, now: datetime | None = None) -> ReportData:
    """Read everything the report of ``day`` shows (the warehouse read-only)."""
    con = connect_read_only(settings.warehouse_path)
    try:
        con.execute("SET TimeZone = 'UTC'")
        regions = tuple(RegionDay(**r) for r in _rows(con, "report_regions", day=day))
        hourly = tuple(RegionHour(**r) for r in _rows(con, "report_hourly", day=day))
        alerts = tuple(AlertOfDay(**r) for r in _rows(con, "report_alerts", day=day))
        summary_path = settings.quality_summary_path
        quality_rows = _quality_rows(con, summary_path, day)
        processed = {r["batch_id"] for r in _rows(con, "report_processed_batches")}
    finally:
        con.close()
    entries, rows_of_day = _batches_of_day(settings, day)
    quality = summarize_quality(
        quality_rows, summary_found=summary_path.is_file(), data_docs=data_docs_link(settings)
    )
    quarantined = _quarantined_on(settings, day, rows_of_day)
    pending = sum(1 for e in entries if e.batch_id not in processed)
    completeness = assess_completeness(
        regions, quarantined, min_coverage=settings.report_min_coverage, pending_batches=pending
    )
    return ReportData(
        day=day,
        generated_at=now or datetime.now(UTC),
        degree_day_base_c=float(settings.degree_day_base_c),
        regions=regions,
        hourly=hourly,
        alerts=alerts,
        quality=quality,
        completeness=completeness,
        summary=summarize(regions, alerts, quality, completeness),
    )
