"""The ClimateWatch page's HTML: the sections of ``warehouse.status``, rendered.

Every function takes read models and returns a string; every value is escaped. The page
is self-contained (inline CSS, no script, no external resource) and its links are
relative, so they resolve below wherever the app is mounted.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from warehouse.status import (
    ALERT_LIMIT,
    AlertsSection,
    ArchiveSection,
    QualitySection,
    ReportsSection,
    Summary,
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
        parts.append("<h3>Latest validated batches</h3>")
        parts.append(_quality_batches(section.batches))
    if section.failures:
        parts.append("<h3>Failed expectations</h3>")
        parts.append(_quality_failures(section.failures))
    parts.append("<h3>Quarantined batches</h3>")
    parts.append(_message(section.quarantine_message))
    if section.quarantined:
        parts.append(_quarantine(section.quarantined))
    elif not section.quarantine_message:
        parts.append('<p class="muted">No batch is quarantined.</p>')
    parts.append("</section>")
    return "".join(parts)


def _quality_batches(batches: list[dict[str, Any]]) -> str:
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
        for b in batches
    ]
    return _table(
        "quality-table",
        ["Batch", "Dates", "Regions", "Passed", "Failed", "Validated"],
        rows,
        frozenset({3, 4}),
    )


def _quality_failures(failures: list[dict[str, Any]]) -> str:
    rows = [
        [
            _e(f["batch_id"]),
            _e(f["date"]),
            _e(f["region"]),
            _e(f["expectation"]),
            _e(f["severity"]),
            _e(f["unexpected_count"]),
        ]
        for f in failures
    ]
    return _table(
        "quality-failures-table",
        ["Batch", "Date", "Region", "Expectation", "Severity", "Unexpected"],
        rows,
        frozenset({5}),
    )


def _quarantine(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            _e(q["batch_id"]),
            _e(f"{q['topic']}[{q['partition']}] {q['offsets']}"),
            _e(q["rows"]),
            _e(q["dates"]),
            _e(q["reason"]),
            _when(q["quarantined_at"]),
        ]
        for q in records
    ]
    return _table(
        "quarantine-table",
        ["Batch", "Offsets", "Rows", "Dates", "Reason", "Quarantined"],
        rows,
        frozenset({2}),
    )


def render_archive(section: ArchiveSection) -> str:
    parts = ['<section id="archive"><h2>Archive</h2>', _message(section.message)]
    if section.topics:
        parts.append("<h3>Archived (offset ledger)</h3>")
        parts.append(_ledger(section.topics))
    parts.append("<h3>Lag per partition</h3>")
    parts.append(_message(section.kafka_message))
    if section.partitions:
        parts.append(_lag(section.partitions))
    parts.append("</section>")
    return "".join(parts)


def _ledger(topics: dict[str, dict[str, Any]]) -> str:
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
        for topic, t in sorted(topics.items())
    ]
    return _table(
        "ledger-table",
        ["Topic", "Batches", "Files", "Rows", "Rejected", "Lost", "Archived up to"],
        rows,
        frozenset({1, 2, 3, 4, 5}),
    )


def _lag(partitions: list[dict[str, Any]]) -> str:
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
        for p in partitions
    ]
    return _table(
        "lag-table",
        ["Topic", "Partition", "Archived to", "Kafka end", "Lag", "Rows", "Lost"],
        rows,
        frozenset({1, 2, 3, 4, 5, 6}),
    )


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
