"""Write one day's report (HTML, CSV, JSON, PDF) and the index of every day.

Files go to ``DATA_DIR/reports/YYYY-MM-DD/``; each is written under a hidden temporary
name and renamed into place, so a reader never sees half a file and a re-run for the
same day simply replaces them. The index is rebuilt from the reports' JSON files, so it
always lists exactly the days that have a report.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from include.settings import Settings
from warehouse.report.data import ReportData, Summary, load_report_data
from warehouse.report.html_page import render_html, render_index
from warehouse.report.pdf import render_pdf

log = logging.getLogger(__name__)
DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CSV_COLUMNS = (
    "date",
    "region",
    "reading_count",
    "sensors_reporting",
    "known_sensors",
    "coverage_pct",
    "min_c",
    "max_c",
    "mean_c",
    "hdd",
    "cdd",
    "baseline_c",
    "baseline_source",
    "anomaly_c",
    "alerts_total",
    "missing",
    "below_min_coverage",
)


@dataclass(frozen=True)
class ReportResult:
    """Where one day's report was written, and its headline (for the CLI and the DAG)."""

    day: date
    directory: Path
    html: Path
    csv: Path
    json: Path
    pdf: Path
    index: Path
    summary: Summary
    incomplete_reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return not self.incomplete_reasons

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready headline and paths (what the DAG task returns through XCom)."""
        return {
            "day": self.day.isoformat(),
            "html": str(self.html),
            "csv": str(self.csv),
            "json": str(self.json),
            "pdf": str(self.pdf),
            "index": str(self.index),
            **asdict(self.summary),
            "incomplete_reasons": list(self.incomplete_reasons),
        }


def write_atomically(path: Path, data: bytes) -> None:
    """Write under a hidden temporary name in the same directory, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def render_csv(data: ReportData) -> str:
    """One row per region, every number at full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for region in data.regions:
        row = asdict(region)
        row["date"] = data.day.isoformat()
        row["below_min_coverage"] = region.region in data.completeness.low_coverage
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
    return buffer.getvalue()


def render_json(data: ReportData) -> str:
    return json.dumps(data.to_dict(), indent=1, ensure_ascii=False) + "\n"


def index_entries(directory: Path) -> list[dict[str, Any]]:
    """Headline of every day that has a report (newest first), from its report.json."""
    entries = []
    if not directory.is_dir():
        return entries
    for day_dir in sorted(directory.iterdir(), reverse=True):
        report = day_dir / "report.json"
        if not (DAY_DIR.match(day_dir.name) and report.is_file()):
            continue
        try:
            summary = json.loads(report.read_text())["summary"]
        except (ValueError, KeyError) as exc:
            log.warning("index: skipping %s (%s)", report, exc)
            continue
        entries.append({"day": day_dir.name, **summary})
    return entries


def write_index(settings: Settings) -> Path:
    """Regenerate ``reports/index.html`` from the reports on disk."""
    directory = settings.reports_dir
    path = directory / "index.html"
    write_atomically(path, render_index(index_entries(directory)).encode("utf-8"))
    return path


def write_report_files(settings: Settings, data: ReportData) -> ReportResult:
    """Render ``data`` into the day's directory (HTML last: it links the others), then the index."""
    directory = settings.reports_dir / data.day.isoformat()
    paths = {name: directory / f"report.{name}" for name in ("csv", "json", "pdf", "html")}
    write_atomically(paths["csv"], render_csv(data).encode("utf-8"))
    write_atomically(paths["json"], render_json(data).encode("utf-8"))
    write_atomically(paths["pdf"], render_pdf(data))
    write_atomically(paths["html"], render_html(data).encode("utf-8"))
    index = write_index(settings)
    return ReportResult(
        day=data.day,
        directory=directory,
        html=paths["html"],
        csv=paths["csv"],
        json=paths["json"],
        pdf=paths["pdf"],
        index=index,
        summary=data.summary,
        incomplete_reasons=data.completeness.reasons,
    )


def write_report(settings: Settings, day: date, *, now: datetime | None = None) -> ReportResult:
    """Read the published warehouse and write the report of ``day`` (a re-run replaces it)."""
    data = load_report_data(settings, day, now=now)
    result = write_report_files(settings, data)
    log.info(
        "report %s: %d region(s), %d alert(s), quality %s, %s -> %s",
        day.isoformat(),
        data.summary.regions,
        data.summary.alerts_firing,
        data.summary.quality_status,
        "complete" if data.completeness.complete else "INCOMPLETE",
        result.html,
    )
    return result
