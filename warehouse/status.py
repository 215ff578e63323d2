"""The read models: what the ClimateWatch page, the demo and status commands show.

Everything here reads: report files, the warehouse through a read-only DuckDB
connection closed at once, the data-quality Parquet summary, quarantine records, the
archive ledger and (with a short timeout) Kafka's offsets. A missing or broken source
becomes a message in its section, never an error: the page runs inside Airflow's API
server and must neither fail nor hold anything a DAG needs. No HTML here
(``include/ops/ui/render.py`` renders these sections); the SQL is in
``warehouse/sql/queries/status_*.sql``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.archive.quarantine import quarantined
from warehouse.archive.summary import archive_status, ledger_summary
from warehouse.db import connect_read_only, query_sql

ALERT_LIMIT = 50
QUALITY_BATCH_LIMIT = 20
QUALITY_FAILURE_LIMIT = 50
KAFKA_TIMEOUT_S = 5.0
"""Hard bound on the Kafka part of the archive status (the page waits no longer)."""
KAFKA_CACHE_S = 10.0
"""How long the Kafka part (offsets, or the error) is reused by later requests."""

DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REPORT_SUFFIXES = (".html", ".pdf", ".csv", ".json")
REPORT_FILE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

T = TypeVar("T")


# --- what counts as a report (listed here, served by the UI's file routes) ----------------------
def valid_day(text: str) -> bool:
    """``YYYY-MM-DD`` and a real date: the only directory names a report URL may name."""
    if not DAY_PATTERN.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def valid_report_file(name: str) -> bool:
    """A plain file name (no separator, no leading dot) with a report suffix."""
    return bool(REPORT_FILE_PATTERN.match(name)) and name.endswith(REPORT_SUFFIXES)


def _plain(value: Any) -> Any:
    """A JSON-able value (dates as ISO text) for the summary endpoint and the HTML."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


# --- sections ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportDay:
    day: str
    files: tuple[str, ...]  # report.html first, then the other report files of the day


@dataclass(frozen=True)
class ReportsSection:
    days: list[ReportDay] = field(default_factory=list)
    has_index: bool = False
    message: str | None = None


@dataclass(frozen=True)
class AlertsSection:
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None


@dataclass(frozen=True)
class QualitySection:
    batches: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    data_docs: str | None = None  # path of the Data Docs index below data-docs/
    message: str | None = None
    quarantine_message: str | None = None


@dataclass(frozen=True)
class ArchiveSection:
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)  # ledger totals per topic
    partitions: list[dict[str, Any]] = field(default_factory=list)  # lag per partition
    message: str | None = None
    kafka_message: str | None = None


@dataclass(frozen=True)
class Summary:
    generated_at: str
    reports: ReportsSection
    alerts: AlertsSection
    quality: QualitySection
    archive: ArchiveSection

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- reports ----------------------------------------------------------------------------------
def gather_reports(settings: Settings) -> ReportsSection:
    """Days that have a ``report.html``, newest first."""
    base = settings.reports_dir
    if not base.is_dir():
        return ReportsSection(message="No report yet: the climate_report DAG has not run.")
    days = []
    for entry in base.iterdir():
        if not (entry.is_dir() and valid_day(entry.name) and (entry / "report.html").is_file()):
            continue
        others = sorted(
            p.name
            for p in entry.iterdir()
            if p.is_file() and valid_report_file(p.name) and p.name != "report.html"
        )
        days.append(ReportDay(entry.name, ("report.html", *others)))
    days.sort(key=lambda d: d.day, reverse=True)
    has_index = (base / "index.html").is_file()
    message = None if days else "No report yet: the climate_report DAG has not run."
    return ReportsSection(days, has_index, message)


def latest_report(settings: Settings) -> Path | None:
    """The ``report.html`` of the newest day that has one."""
    days = gather_reports(settings).days
    return settings.reports_dir / days[0].day / "report.html" if days else None


# --- alerts -----------------------------------------------------------------------------------
def gather_alerts(settings: Settings, limit: int = ALERT_LIMIT) -> AlertsSection:
    """The latest alert events (firing and resolved) from the warehouse's ``alerts`` view."""
    import duckdb

    try:
        con = connect_read_only(settings.warehouse_path)
    except ClimateWatchError:
        return AlertsSection(
            message="No warehouse yet: the regional_stats DAG has not built it "
            "(or run `climatewatch warehouse rebuild`)."
        )
    except duckdb.Error as exc:
        return AlertsSection(message=f"The warehouse cannot be opened right now: {exc}")
    try:
        rows = _rows(con.execute(query_sql("status_alerts"), {"limit": limit}))
    except duckdb.Error as exc:
        return AlertsSection(message=f"Alerts cannot be read right now: {exc}")
    finally:
        con.close()
    return AlertsSection(rows, None if rows else "No alert archived yet.")


# --- data quality -----------------------------------------------------------------------------
def gather_quality(settings: Settings) -> QualitySection:
    """Per batch passed/failed expectations, the failures, quarantine and Data Docs."""
    import duckdb

    rows, quarantine_message = _quarantined(settings)
    section = QualitySection(
        quarantined=rows,
        data_docs=_data_docs_index(settings),
        quarantine_message=quarantine_message,
    )
    path = settings.quality_summary_path
    if not path.is_file():
        return replace(section, message="Not validated yet: the data_quality DAG has not run.")
    try:
        batches, failures = _quality_rows(path)
    except duckdb.Error as exc:
        return replace(section, message=f"The quality summary cannot be read right now: {exc}")
    message = None if batches else "Not validated yet: the quality summary is empty."
    return replace(section, batches=batches, failures=failures, message=message)


def _quality_rows(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The latest validated batches and failed expectations of the summary Parquet."""
    import duckdb

    summary = str(path)
    con = duckdb.connect()
    try:
        batches = _rows(
            con.execute(
                query_sql("status_quality_batches"),
                {"summary": summary, "limit": QUALITY_BATCH_LIMIT},
            )
        )
        failures = _rows(
            con.execute(
                query_sql("status_quality_failures"),
                {"summary": summary, "limit": QUALITY_FAILURE_LIMIT},
            )
        )
    finally:
        con.close()
    return batches, failures


def _quarantined(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    try:
        records = quarantined(settings.archive_root)
    except Exception as exc:  # an unreadable archive must not break the page
        return [], f"Quarantine cannot be read right now: {exc}"
    rows = [
        {
            "batch_id": r.batch_id,
            "topic": r.topic,
            "partition": r.partition,
            "offsets": f"{r.start_offset}-{r.end_offset}",
            "rows": r.rows,
            "dates": ", ".join(r.dates),
            "reason": r.reason,
            "quarantined_at": r.quarantined_at,
        }
        for r in reversed(records)
    ]
    return rows, None


def _data_docs_index(settings: Settings) -> str | None:
    """The Data Docs index page, at the site root or one folder down (GX's ``local_site``)."""
    base = settings.data_docs_dir
    if (base / "index.html").is_file():
        return "index.html"
    if base.is_dir():
        for index in sorted(base.glob("*/index.html")):
            return index.relative_to(base).as_posix()
    return None


# --- archive ----------------------------------------------------------------------------------
_kafka_probe = threading.BoundedSemaphore(1)


def _with_timeout(function: Callable[[], T], timeout_s: float) -> T:
    """``function()`` in a daemon thread, given up on after ``timeout_s``.

    Only one call runs at a time: while an earlier one is still stuck, later requests
    fail at once instead of piling up threads in the API server.
    """
    if not _kafka_probe.acquire(blocking=False):
        raise TimeoutError("an earlier status request is still waiting for Kafka")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            _kafka_probe.release()

    thread = threading.Thread(target=run, name="climatewatch-kafka-status", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


_kafka_status_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]] | str]] = {}
_kafka_status_lock = threading.Lock()


def _kafka_status(
    settings: Settings, kafka_timeout_s: float, ttl_s: float
) -> list[dict[str, Any]] | str:
    """Lag per partition, or why Kafka did not answer; remembered ``ttl_s`` seconds so
    that reloading the page while Kafka is down does not wait for it every time."""
    key = (settings.bootstrap_servers, settings.archive_root)
    with _kafka_status_lock:
        cached = _kafka_status_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < ttl_s:
        return cached[1]
    quick = settings.model_copy(
        update={"kafka_timeout_ms": int(min(settings.kafka_timeout_ms, kafka_timeout_s * 1000))}
    )
    result: list[dict[str, Any]] | str
    try:
        result = [asdict(s) for s in _with_timeout(lambda: archive_status(quick), kafka_timeout_s)]
    except Exception as exc:
        result = f"Kafka unreachable ({settings.bootstrap_servers}): {exc}"
    with _kafka_status_lock:
        _kafka_status_cache[key] = (time.monotonic(), result)
    return result


def gather_archive(
    settings: Settings,
    *,
    kafka_timeout_s: float = KAFKA_TIMEOUT_S,
    kafka_cache_s: float = KAFKA_CACHE_S,
) -> ArchiveSection:
    """Ledger totals (no Kafka needed) and, when Kafka answers in time, lag per partition."""
    try:
        topics = ledger_summary(settings.archive_root)
    except Exception as exc:  # an unreadable ledger must not break the page
        return ArchiveSection(message=f"The archive ledger cannot be read right now: {exc}")
    status = _kafka_status(settings, kafka_timeout_s, kafka_cache_s)
    if isinstance(status, str):
        return ArchiveSection(
            topics, message=None if topics else "Nothing archived yet.", kafka_message=status
        )
    return ArchiveSection(topics, status, None if topics or status else "Nothing archived yet.")


def gather(settings: Settings, *, kafka_timeout_s: float = KAFKA_TIMEOUT_S) -> Summary:
    """Everything the page and ``api/summary`` show."""
    return Summary(
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        reports=gather_reports(settings),
        alerts=gather_alerts(settings),
        quality=gather_quality(settings),
        archive=gather_archive(settings, kafka_timeout_s=kafka_timeout_s),
    )
