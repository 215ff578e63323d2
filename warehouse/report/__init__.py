"""The daily climate report: one UTC day of the warehouse as HTML, CSV, JSON and PDF.

``load_report_data`` reads (the published warehouse read-only, data-quality results,
quarantine); the renderers only format a :class:`ReportData`; ``write_report`` does both
and writes ``DATA_DIR/reports/YYYY-MM-DD/`` plus ``reports/index.html``.
``day_is_final`` tells the climate_report DAG when a day can be reported.
"""

from __future__ import annotations

from warehouse.report.data import ReportData, Summary, load_report_data
from warehouse.report.final import day_is_final, report_day_for
from warehouse.report.html_page import SECTION_IDS, render_html, render_index
from warehouse.report.pdf import render_pdf
from warehouse.report.write import ReportResult, write_index, write_report

__all__ = [
    "SECTION_IDS",
    "ReportData",
    "ReportResult",
    "Summary",
    "day_is_final",
    "load_report_data",
    "render_html",
    "render_index",
    "render_pdf",
    "report_day_for",
    "write_index",
    "write_report",
]
