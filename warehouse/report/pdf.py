"""The report as a PDF (fpdf2): the same headline, tables and charts as the HTML page.

Built with fpdf2 calls rather than from the HTML, so the layout fits a printed page. A
core font (Helvetica) draws latin-1 only, so every text goes through ``text.latin1``.
The charts are the HTML's SVG, which fpdf2 draws as vector graphics.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

from warehouse.report import charts, text
from warehouse.report.data import ReportData

if TYPE_CHECKING:
    from fpdf import FPDF

log = logging.getLogger(__name__)
TITLE_TAG = re.compile(r"<title>.*?</title>", re.DOTALL)


def _t(value: object) -> str:
    return text.latin1(str(value))


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(3)
    pdf.set_font("helvetica", "B", 12)
    pdf.cell(0, 7, _t(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=9)


def _paragraph(pdf: FPDF, content: str, *, size: int = 9) -> None:
    pdf.set_font("helvetica", size=size)
    pdf.multi_cell(0, 4.5, _t(content), new_x="LMARGIN", new_y="NEXT")


def _table(
    pdf: FPDF,
    headers: list[str],
    rows: list[list[str]],
    widths: tuple[float, ...],
    *,
    size: int = 7,
) -> None:
    pdf.set_font("helvetica", size=size)
    with pdf.table(col_widths=widths, line_height=4, first_row_as_headings=True) as table:
        for cells in [headers, *rows]:
            row = table.row()
            for cell in cells:
                row.cell(_t(cell))
    pdf.set_font("helvetica", size=9)


def _chart(pdf: FPDF, svg: str, width: float) -> None:
    """Draw one chart; a chart fpdf2 cannot draw is left out (the tables hold the numbers)."""
    document = charts.with_namespace(TITLE_TAG.sub("", svg))
    try:
        pdf.image(io.BytesIO(document.encode("utf-8")), w=width)
    except Exception as exc:  # fpdf2's SVG support is partial: never lose the report for it
        log.warning("chart left out of the PDF: %s", exc)


def render_pdf(data: ReportData) -> bytes:
    """The PDF document of one day's report."""
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", format="A4")
    pdf.set_title(f"ClimateWatch daily climate report {data.day.isoformat()}")
    pdf.set_author("ClimateWatch")
    pdf.set_creation_date(data.generated_at)
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    _title(pdf, data)
    _heading(pdf, "Summary")
    _table(
        pdf,
        ["", ""],
        [[label, value] for label, value in text.headline(data.summary)],
        (50, 130),
        size=10,
    )
    _regions(pdf, data)
    _heading(pdf, "Temperature through the day (UTC)")
    _chart(pdf, charts.temperature_chart(data.regions, data.hourly, data.day), 180)
    _heading(pdf, "Anomaly by region")
    _chart(pdf, charts.anomaly_chart(data.regions), 170)
    _alerts(pdf, data)
    _quality(pdf, data)
    return bytes(pdf.output())


def _title(pdf: Any, data: ReportData) -> None:
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(
        0,
        9,
        _t(f"ClimateWatch daily climate report - {data.day.isoformat()}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    _paragraph(pdf, f"UTC day {data.day.isoformat()}; generated {text.stamp(data.generated_at)}.")
    completeness = data.completeness
    if not completeness.complete:
        pdf.ln(2)
        pdf.set_text_color(192, 57, 43)
        pdf.set_font("helvetica", "B", 11)
        pdf.cell(
            0, 6, "Incomplete day: read these numbers with care", new_x="LMARGIN", new_y="NEXT"
        )
        for reason in completeness.reasons:
            _paragraph(pdf, f"- {reason}")
        pdf.set_text_color(0, 0, 0)


def _regions(pdf: Any, data: ReportData) -> None:
    _heading(pdf, "Regions")
    _paragraph(
        pdf,
        f"Degree days against {data.degree_day_base_c:g} °C; anomaly = mean - baseline; "
        f"minimum coverage {100 * data.completeness.min_coverage:g}%.",
        size=8,
    )
    _table(
        pdf,
        [
            "region",
            "mean",
            "min",
            "max",
            "anomaly",
            "baseline",
            "HDD",
            "CDD",
            "coverage",
            "readings",
            "alerts",
        ],
        [
            [
                r.region,
                text.temp(r.mean_c),
                text.temp(r.min_c),
                text.temp(r.max_c),
                text.temp(r.anomaly_c, signed=True),
                text.temp(r.baseline_c),
                text.number(r.hdd),
                text.number(r.cdd),
                text.pct(r.coverage_pct),
                str(r.reading_count),
                str(r.alerts_total),
            ]
            for r in data.regions
        ]
        or [["no data"] + [""] * 10],
        (24, 17, 17, 17, 18, 17, 11, 11, 16, 15, 11),
    )


def _alerts(pdf: Any, data: ReportData) -> None:
    _heading(pdf, f"Alerts ({len(data.alerts)})")
    _chart(pdf, charts.alerts_chart(data.alerts, data.day), 170)
    if not data.alerts:
        _paragraph(pdf, "No alert fired this day.")
        return
    _table(
        pdf,
        ["rule", "severity", "region", "time", "value", "threshold", "resolved"],
        [
            [
                a.rule,
                a.severity,
                a.region,
                text.clock(a.window_start),
                text.number(a.value),
                text.number(a.threshold),
                text.resolved(a.resolved_at, data.day),
            ]
            for a in data.alerts
        ],
        (22, 20, 28, 22, 20, 20, 48),
    )


def _quality(pdf: Any, data: ReportData) -> None:
    quality, completeness = data.quality, data.completeness
    _heading(pdf, "Data quality")
    _paragraph(
        pdf,
        f"Status: {text.QUALITY_LABELS[quality.status]}; {quality.evaluated} expectation "
        f"result(s) over {quality.batches_validated} batch(es): {quality.passed} passed, "
        f"{quality.failed} failed.",
    )
    if quality.failures:
        _table(
            pdf,
            ["failed expectation", "severity", "region", "batches", "unexpected"],
            [
                [
                    f.expectation,
                    f.severity,
                    f.region or "all regions",
                    str(f.batches),
                    str(f.unexpected_count),
                ]
                for f in quality.failures
            ],
            (70, 22, 35, 20, 28),
        )
    if completeness.quarantined:
        _paragraph(pdf, f"{len(completeness.quarantined)} quarantined batch(es) touch this day:")
        _table(
            pdf,
            ["batch", "rows of the day", "reason"],
            [[q.batch_id, str(q.rows), q.reason] for q in completeness.quarantined],
            (70, 25, 85),
        )
    else:
        _paragraph(pdf, "No quarantined batch touches this day.")
    _paragraph(
        pdf,
        "Data Docs: quality/data_docs/index.html in the data directory."
        if quality.data_docs
        else "Data Docs have not been built yet.",
    )
