"""The report as one self-contained HTML page, and the index of every day's report.

Rendering only: every number comes from :class:`ReportData`. All text is escaped; the
charts are inline SVG; links are relative file links (the day's other formats, Data
Docs, the index), never a URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from html import escape
from typing import Any

from warehouse.report import charts, text
from warehouse.report.data import AlertOfDay, Completeness, Quality, RegionDay, ReportData
from warehouse.report.template import page

SECTION_IDS = (
    "summary",
    "regions",
    "chart-temperature",
    "chart-anomaly",
    "chart-alerts",
    "alerts",
    "quality",
)


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(headers: Sequence[tuple[str, bool]], rows: Iterable[str], empty: str) -> str:
    """A table from pre-rendered ``<tr>`` rows; headers are (label, numeric)."""
    body = "".join(rows)
    if not body:
        return f"<p class='empty'>{_e(empty)}</p>"
    head = "".join(f"<th{' class=num' if num else ''}>{_e(h)}</th>" for h, num in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: str, *, num: bool = False) -> str:
    return f"<td class='num'>{_e(value)}</td>" if num else f"<td>{_e(value)}</td>"


def _notice(completeness: Completeness) -> str:
    if completeness.complete:
        return (
            "<p id='complete' class='notice ok'>Complete day: every region reached "
            f"{100 * completeness.min_coverage:g}% coverage and no batch is quarantined.</p>"
        )
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in completeness.reasons)
    quarantined = ""
    if completeness.quarantined:
        rows = "".join(
            f"<tr>{_td(q.batch_id)}{_td(str(q.rows), num=True)}{_td(q.reason)}"
            f"{_td(q.quarantined_at)}</tr>"
            for q in completeness.quarantined
        )
        quarantined = _table(
            [
                ("quarantined batch", False),
                ("rows of the day", True),
                ("reason", False),
                ("quarantined at", False),
            ],
            [rows],
            "",
        )
    return (
        "<section id='incomplete' class='notice' role='alert'>"
        "<h2>Incomplete day: read these numbers with care</h2>"
        f"<ul>{reasons}</ul>{quarantined}</section>"
    )


def _summary(data: ReportData) -> str:
    cards = "".join(
        f"<div class='card' id='summary-{_e(label.lower().replace(' ', '-'))}'>"
        f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd></div>"
        for label, value in text.headline(data.summary)
    )
    return f"<section id='summary'><h2>Summary</h2><dl class='cards'>{cards}</dl></section>"


REGION_HEADERS = (
    ("region", False),
    ("mean", True),
    ("min", True),
    ("max", True),
    ("anomaly", True),
    ("baseline", True),
    ("HDD", True),
    ("CDD", True),
    ("coverage", True),
    ("readings", True),
    ("sensors", True),
    ("alerts", True),
)


def _region_row(region: RegionDay, completeness: Completeness) -> str:
    low = " class='low'" if region.region in completeness.low_coverage else ""
    baseline = text.temp(region.baseline_c)
    if region.baseline_source:
        baseline += f" ({region.baseline_source.replace('_', ' ')})"
    cells = [
        _td(region.region),
        _td(text.temp(region.mean_c), num=True),
        _td(text.temp(region.min_c), num=True),
        _td(text.temp(region.max_c), num=True),
        _td(text.temp(region.anomaly_c, signed=True), num=True),
        _td(baseline, num=True),
        _td(text.number(region.hdd), num=True),
        _td(text.number(region.cdd), num=True),
        _td(text.pct(region.coverage_pct), num=True),
        _td(str(region.reading_count), num=True),
        _td(
            f"{region.sensors_reporting}/{region.known_sensors}"
            if region.known_sensors is not None
            else str(region.sensors_reporting),
            num=True,
        ),
        _td(str(region.alerts_total), num=True),
    ]
    return f"<tr{low} data-region='{_e(region.region)}'>{''.join(cells)}</tr>"


def _regions(data: ReportData) -> str:
    table = _table(
        REGION_HEADERS,
        (_region_row(r, data.completeness) for r in data.regions),
        "No region has data for this day.",
    )
    return (
        "<section id='regions'><h2>Regions</h2>"
        f"<p class='meta'>Daily statistics from the warehouse (UTC day). Degree days against "
        f"{data.degree_day_base_c:g} °C; anomaly = mean - baseline; coverage = readings received "
        f"/ readings expected from the region's known sensors; rows below "
        f"{100 * data.completeness.min_coverage:g}% are highlighted.</p>{table}</section>"
    )


def _figure(element_id: str, caption: str, svg: str) -> str:
    return f"<figure id='{element_id}'>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _charts(data: ReportData) -> str:
    return (
        "<section id='charts'><h2>Charts</h2>"
        + _figure(
            "chart-temperature",
            "Temperature through the day per region: hourly mean (line) within the hourly "
            "minimum-maximum (band), UTC hours, one shared scale.",
            charts.temperature_chart(data.regions, data.hourly, data.day),
        )
        + _figure(
            "chart-anomaly",
            "Anomaly of each region's daily mean against its baseline.",
            charts.anomaly_chart(data.regions),
        )
        + _figure(
            "chart-alerts",
            "Alerts fired this day, from the window start until resolved.",
            charts.alerts_chart(data.alerts, data.day),
        )
        + "</section>"
    )


def _alert_row(alert: AlertOfDay, day: date) -> str:
    cells = [
        _td(alert.rule),
        _td(alert.severity),
        _td(alert.region),
        _td(text.clock(alert.window_start)),
        _td(text.number(alert.value), num=True),
        _td(text.number(alert.threshold), num=True),
        _td(text.resolved(alert.resolved_at, day)),
        _td(alert.message or ""),
    ]
    return f"<tr data-alert-id='{_e(alert.alert_id)}'>{''.join(cells)}</tr>"


def _alerts(data: ReportData) -> str:
    table = _table(
        [
            ("rule", False),
            ("severity", False),
            ("region", False),
            ("time (UTC)", False),
            ("value", True),
            ("threshold", True),
            ("resolved", False),
            ("message", False),
        ],
        (_alert_row(a, data.day) for a in data.alerts),
        "No alert fired this day.",
    )
    return (
        f"<section id='alerts'><h2>Alerts ({len(data.alerts)})</h2>"
        "<p class='meta'>Alerts the speed layer raised for windows starting this day; "
        "firing and resolved events paired by alert id.</p>"
        f"{table}</section>"
    )


def _quality(quality: Quality, completeness: Completeness) -> str:
    status = text.QUALITY_LABELS[quality.status]
    css = "status-" + quality.status.replace(" ", "-")
    parts = [
        "<section id='quality'><h2>Data quality</h2>",
        f"<p>Status: <strong class='{css}' id='quality-status'>{_e(status)}</strong>",
    ]
    if quality.status == "not validated":
        why = (
            "no data-quality result for this day yet"
            if quality.summary_found
            else "data quality has not written any result yet"
        )
        parts.append(f" ({_e(why)})</p>")
    else:
        parts.append(
            f" - {quality.evaluated} expectation result(s) over {quality.batches_validated} "
            f"batch(es): {quality.passed} passed, {quality.failed} failed.</p>"
        )
    rows = (
        f"<tr>{_td(f.expectation)}{_td(f.severity)}{_td(f.region or 'all regions')}"
        f"{_td(str(f.batches), num=True)}{_td(str(f.unexpected_count), num=True)}</tr>"
        for f in quality.failures
    )
    if quality.evaluated:
        parts.append(
            _table(
                [
                    ("failed expectation", False),
                    ("severity", False),
                    ("region", False),
                    ("batches", True),
                    ("unexpected values", True),
                ],
                rows,
                "Every expectation passed.",
            )
        )
    quarantined = completeness.quarantined
    if quarantined:
        parts.append(
            f"<p>{len(quarantined)} quarantined batch(es) touch this day "
            f"({sum(q.rows for q in quarantined)} row(s) left out of the statistics): "
            + ", ".join(f"<code>{_e(q.batch_id)}</code>" for q in quarantined)
            + ".</p>"
        )
    else:
        parts.append("<p>No quarantined batch touches this day.</p>")
    if quality.data_docs:
        parts.append(
            f"<p><a id='data-docs' href='{_e(quality.data_docs)}'>Data Docs</a> "
            "(the Great Expectations validation results).</p>"
        )
    else:
        parts.append("<p id='data-docs'>Data Docs have not been built yet.</p>")
    parts.append("</section>")
    return "".join(parts)


def render_html(data: ReportData) -> str:
    """The whole report page of one day."""
    day = data.day.isoformat()
    header = (
        f"<header><h1>ClimateWatch daily climate report - {_e(day)}</h1>"
        f"<p class='meta'>UTC day {_e(day)}; generated {_e(text.stamp(data.generated_at))}. "
        "Also as <a href='report.csv'>CSV</a>, <a href='report.json'>JSON</a>, "
        "<a href='report.pdf'>PDF</a>; <a href='../index.html'>all reports</a>.</p></header>"
    )
    body = (
        header
        + _notice(data.completeness)
        + _summary(data)
        + _regions(data)
        + _charts(data)
        + _alerts(data)
        + _quality(data.quality, data.completeness)
    )
    return page(f"ClimateWatch report {_e(day)}", body)


def _index_region(item: dict[str, Any], which: str) -> str:
    region = item.get(f"{which}_region")
    if region is None:
        return text.NOT_AVAILABLE
    return f"{region} ({text.temp(item.get(f'{which}_mean_c'))})"


def render_index(days: Sequence[dict[str, Any]]) -> str:
    """The list of every day's report (newest first) with its headline numbers.

    Each item is a report's JSON ``summary`` plus its ``day``.
    """
    rows = []
    for item in days:
        day = str(item["day"])
        cells = [
            f"<td><a href='{_e(day)}/report.html'>{_e(day)}</a></td>",
            _td(_index_region(item, "hottest")),
            _td(_index_region(item, "coldest")),
            _td(str(item.get("alerts_firing", 0)), num=True),
            _td(text.QUALITY_LABELS.get(str(item.get("quality_status")), "not validated")),
            _td("yes" if item.get("complete") else "no"),
        ]
        rows.append(f"<tr data-day='{_e(day)}'>{''.join(cells)}</tr>")
    table = _table(
        [
            ("day", False),
            ("hottest region", False),
            ("coldest region", False),
            ("alerts", True),
            ("data quality", False),
            ("complete", False),
        ],
        rows,
        "No report yet.",
    )
    body = (
        "<header><h1>ClimateWatch daily climate reports</h1>"
        "<p class='meta'>One report per UTC day; daily means in °C.</p></header>"
        f"<section id='reports'>{table}</section>"
    )
    return page("ClimateWatch daily climate reports", body)
