"""What the ClimateWatch page shows, gathered read-only, and its HTML.

Everything here reads: report files, the warehouse through a read-only DuckDB
connection closed at once, the data-quality Parquet summary, quarantine records, the
archive ledger and (with a short timeout) Kafka's offsets. A missing or broken source
becomes a message in its section, never an error page: the page runs inside Airflow's
API server and must neither fail nor hold anything a DAG needs.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from include.settings import Settings

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


# --- paths ------------------------------------------------------------------------------------
def reports_dir(settings: Settings) -> Path:
    """Where the report generator writes ``YYYY-MM-DD/report.html`` and ``index.html``."""
    return settings.data_dir / "reports"


def data_docs_dir(settings: Settings) -> Path:
    """Where data quality builds its Great Expectations Data Docs site."""
    return settings.data_dir / "quality" / "data_docs"


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


def safe_file(base: Path, relative: str) -> Path | None:
    """``base / relative`` when it is an existing file inside ``base`` (symlinks resolved)."""
    if "\x00" in relative:
        return None
    root = base.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


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


def gather_reports(settings: Settings) -> ReportsSection:
    """Days that have a ``report.html``, newest first."""
    base = reports_dir(settings)
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


def gather_alerts(settings: Settings, limit: int = ALERT_LIMIT) -> AlertsSection:
    """The latest alert events (firing and resolved) from the warehouse's ``alerts`` view."""
    import duckdb

    from include.errors import ClimateWatchError
    from warehouse.db import connect_read_only

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
        cursor = con.execute(
            """
            SELECT emitted_at, status, severity, rule, region, window_start, window_end,
                   value, threshold, message, alert_id
            FROM alerts
            ORDER BY emitted_at DESC NULLS LAST, window_start DESC, alert_id
            LIMIT ?
            """,
            [limit],
        )
        rows = _rows(cursor)
    except duckdb.Error as exc:
        return AlertsSection(message=f"Alerts cannot be read right now: {exc}")
    finally:
        con.close()
    return AlertsSection(rows, None if rows else "No alert archived yet.")


def gather_quality(settings: Settings) -> QualitySection:
    """Per batch passed/failed expectations, the failures, quarantine and Data Docs."""

    quarantined, quarantine_message = _quarantined(settings)
    docs = _data_docs_index(settings)
    path = settings.quality_summary_path
    if not path.is_file():
        return QualitySection(
            quarantined=quarantined,
            data_docs=docs,
            message="Not validated yet: the data_quality DAG has not run.",
            quarantine_message=quarantine_message,
        )
    import duckdb

    source = "read_parquet(?)"
    con = duckdb.connect()
    try:
        batches = _rows(
            con.execute(
                f"""
                SELECT batch_id,
                       min(date) AS first_date,
                       max(date) AS last_date,
                       string_agg(DISTINCT region, ', ' ORDER BY region) AS regions,
                       count(*) FILTER (WHERE success) AS passed,
                       count(*) FILTER (WHERE NOT success) AS failed,
                       max(validated_at) AS validated_at
                FROM {source}
                GROUP BY batch_id
                ORDER BY validated_at DESC, batch_id
                LIMIT ?
                """,
                [str(path), QUALITY_BATCH_LIMIT],
            )
        )
        failures = _rows(
            con.execute(
                f"""
                SELECT validated_at, batch_id, date, region, expectation, severity,
                       unexpected_count
                FROM {source}
                WHERE NOT success
                ORDER BY validated_at DESC, batch_id, expectation
                LIMIT ?
                """,
                [str(path), QUALITY_FAILURE_LIMIT],
            )
        )
    except duckdb.Error as exc:
        return QualitySection(
            quarantined=quarantined,
            data_docs=docs,
            message=f"The quality summary cannot be read right now: {exc}",
            quarantine_message=quarantine_message,
        )
    finally:
        con.close()
    return QualitySection(
        batches,
        failures,
        quarantined,
        docs,
        None if batches else "Not validated yet: the quality summary is empty.",
        quarantine_message,
    )


def _quarantined(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    from warehouse.archive.quarantine import quarantined

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
    base = data_docs_dir(settings)
    if (base / "index.html").is_file():
        return "index.html"
    if base.is_dir():
        for index in sorted(base.glob("*/index.html")):
            return index.relative_to(base).as_posix()
    return None


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
    from warehouse.archive.run import archive_status

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
    from warehouse.archive.run import ledger_summary

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


ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="24" height="24" '
    'fill="none" stroke="#d9480f" stroke-width="2" stroke-linecap="round" '
    'stroke-linejoin="round"><path d="M14 14.76V3.5a2.5 2.5 0 0 0-5 0v11.26a4.5 4.5 0 1 0 5 0z"/>'
    '<path d="M11.5 10v7"/></svg>'
)
"""The thermometer of the Airflow navigation entry."""


# --- HTML -------------------------------------------------------------------------------------
STYLE = """
:root { color-scheme: light dark; --fg: #1f2933; --muted: #61707d; --line: #d9dee3;
  --bg: #ffffff; --head: #f3f5f7; --ok: #1a7f37; --bad: #c62828; --warn: #b26a00; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ec; --muted: #9aa5b1;
  --line: #3a4450; --bg: #15191e; --head: #1f252c; --ok: #4cc26b; --bad: #ff6b6b;
  --warn: #f0a742; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem 2rem 3rem; font: 15px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; padding-bottom: .25rem;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
nav a { margin-right: 1rem; }
a { color: #1f6feb; }
.muted, .generated { color: var(--muted); font-size: .9rem; }
.message { padding: .6rem .9rem; border-left: 4px solid var(--warn); background: var(--head); }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.firing, .failed { color: var(--bad); font-weight: 600; }
.resolved, .passed { color: var(--ok); font-weight: 600; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _message(text: str | None) -> str:
    return f'<p class="message">{_e(text)}</p>' if text else ""


def _table(
    css_id: str, headers: list[str], rows: list[list[str]], numeric: frozenset[int] = frozenset()
) -> str:
    """A table of already-escaped cells (columns in ``numeric`` right-aligned)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(value: Any) -> str:
    """An ISO timestamp as people read it: ``2026-03-01 14:06:00 UTC``."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return _e(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return _e(moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo else ""))


def _window(start: Any, end: Any) -> str:
    """A window, the end's date left out when it is the start's."""
    first, last = _when(start), _when(end)
    if first[:10] == last[:10]:
        last = last[11:]
    return f"{first} → {last}"


def _number(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def render_reports(section: ReportsSection) -> str:
    parts = ['<section id="reports"><h2>Daily climate reports</h2>']
    if section.has_index:
        parts.append('<p><a href="reports/index.html" target="_blank">All reports (index)</a></p>')
    parts.append(_message(section.message))
    if section.days:
        rows = []
        for day in section.days:
            links = " · ".join(
                f'<a href="reports/{_e(day.day)}/{_e(name)}" target="_blank">{_e(name)}</a>'
                for name in day.files
            )
            rows.append([_e(day.day), links])
        parts.append(_table("reports-table", ["Date", "Files"], rows))
    parts.append("</section>")
    return "".join(parts)


def render_alerts(section: AlertsSection) -> str:
    parts = [
        '<section id="alerts"><h2>Latest alerts</h2>',
        f'<p class="muted">The {ALERT_LIMIT} most recent alert events in the warehouse.</p>',
        _message(section.message),
    ]
    if section.rows:
        rows = [
            [
                _when(r["emitted_at"]),
                f'<span class="{_e(r["status"])}">{_e(r["status"])}</span>',
                _e(r["severity"]),
                _e(r["rule"]),
                _e(r["region"]),
                _window(r["window_start"], r["window_end"]),
                _number(r["value"]),
                _number(r["threshold"]),
                _e(r["message"]),
            ]
            for r in section.rows
        ]
        headers = ["Emitted", "Status", "Severity", "Rule", "Region", "Window", "Value"]
        parts.append(
            _table("alerts-table", [*headers, "Threshold", "Message"], rows, frozenset({6, 7}))
        )
    parts.append("</section>")
    return "".join(parts)


def render_quality(section: QualitySection) -> str:
    parts = ['<section id="quality"><h2>Data quality</h2>']
    if section.data_docs:
        parts.append(
            f'<p><a href="data-docs/{_e(section.data_docs)}" target="_blank">'
            "Data Docs (Great Expectations)</a></p>"
        )
    parts.append(_message(section.message))
    if section.batches:
        rows = [
            [
                _e(b["batch_id"]),
                _e(b["first_date"])
                if b["first_date"] == b["last_date"]
                else f"{_e(b['first_date'])} → {_e(b['last_date'])}",
                _e(b["regions"]),
                f'<span class="passed">{_e(b["passed"])}</span>',
                f'<span class="{"failed" if b["failed"] else "passed"}">{_e(b["failed"])}</span>',
                _when(b["validated_at"]),
            ]
            for b in section.batches
        ]
        parts.append("<h3>Latest validated batches</h3>")
        parts.append(
            _table(
                "quality-table",
                ["Batch", "Dates", "Regions", "Passed", "Failed", "Validated"],
                rows,
                frozenset({3, 4}),
            )
        )
    if section.failures:
        rows = [
            [
                _e(f["batch_id"]),
                _e(f["date"]),
                _e(f["region"]),
                _e(f["expectation"]),
                _e(f["severity"]),
                _e(f["unexpected_count"]),
            ]
            for f in section.failures
        ]
        parts.append("<h3>Failed expectations</h3>")
        parts.append(
            _table(
                "quality-failures-table",
                ["Batch", "Date", "Region", "Expectation", "Severity", "Unexpected"],
                rows,
                frozenset({5}),
            )
        )
    parts.append("<h3>Quarantined batches</h3>")
    parts.append(_message(section.quarantine_message))
    if section.quarantined:
        rows = [
            [
                _e(q["batch_id"]),
                _e(f"{q['topic']}[{q['partition']}] {q['offsets']}"),
                _e(q["rows"]),
                _e(q["dates"]),
                _e(q["reason"]),
                _when(q["quarantined_at"]),
            ]
            for q in section.quarantined
        ]
        parts.append(
            _table(
                "quarantine-table",
                ["Batch", "Offsets", "Rows", "Dates", "Reason", "Quarantined"],
                rows,
                frozenset({2}),
            )
        )
    elif not section.quarantine_message:
        parts.append('<p class="muted">No batch is quarantined.</p>')
    parts.append("</section>")
    return "".join(parts)


def render_archive(section: ArchiveSection) -> str:
    parts = ['<section id="archive"><h2>Archive</h2>', _message(section.message)]
    if section.topics:
        rows = [
            [
                _e(topic),
                _e(t["batches"]),
                _e(t["files"]),
                _e(t["rows"]),
                _e(t["rejected"]),
                _e(t["lost"]),
                _e(", ".join(f"p{p}: {o}" for p, o in sorted(t["partitions"].items()))),
            ]
            for topic, t in sorted(section.topics.items())
        ]
        parts.append("<h3>Archived (offset ledger)</h3>")
        parts.append(
            _table(
                "ledger-table",
                ["Topic", "Batches", "Files", "Rows", "Rejected", "Lost", "Archived up to"],
                rows,
                frozenset({1, 2, 3, 4, 5}),
            )
        )
    parts.append("<h3>Lag per partition</h3>")
    parts.append(_message(section.kafka_message))
    if section.partitions:
        rows = [
            [
                _e(p["topic"]),
                _e(p["partition"]),
                _e(p["archived_to"] if p["archived_to"] is not None else "—"),
                _e(p["end_offset"]),
                _e(p["lag"]),
                _e(p["rows"]),
                _e(p["lost"]),
            ]
            for p in section.partitions
        ]
        parts.append(
            _table(
                "lag-table",
                ["Topic", "Partition", "Archived to", "Kafka end", "Lag", "Rows", "Lost"],
                rows,
                frozenset({1, 2, 3, 4, 5, 6}),
            )
        )
    parts.append("</section>")
    return "".join(parts)


def render_page(summary: Summary) -> str:
    """The whole page: self-contained HTML (inline CSS, no script, no external resource)."""
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>ClimateWatch</title>"
        f"<style>{STYLE}</style></head><body>"
        "<header><h1>ClimateWatch</h1>"
        '<nav><a href="#reports">Reports</a><a href="#alerts">Alerts</a>'
        '<a href="#quality">Data quality</a><a href="#archive">Archive</a>'
        '<a href="api/summary">JSON</a></nav>'
        f'<p class="generated">Generated {_when(summary.generated_at)}</p></header>'
        "<main>"
        + render_reports(summary.reports)
        + render_alerts(summary.alerts)
        + render_quality(summary.quality)
        + render_archive(summary.archive)
        + "</main></body></html>"
    )
