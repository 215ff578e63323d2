"""``climatewatch report``: write the daily climate report of one UTC day.

Registered in include/ops/cli.py. The same code as the climate_report DAG's report task;
heavy imports (duckdb, fpdf2) happen inside the command.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from include.errors import ClimateWatchError
from include.settings import get_settings

console = Console()


def parse_day(text: str | None, *, today: date | None = None) -> date:
    """``YYYY-MM-DD``, or yesterday (UTC) when not given: the last day that can be complete."""
    if text is None:
        return (today or datetime.now(UTC).date()) - timedelta(days=1)
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ClimateWatchError(f"--date: not a date (YYYY-MM-DD): {text!r}") from None


def report_command(
    day: Annotated[
        str | None,
        typer.Option("--date", help="UTC day to report, YYYY-MM-DD (default: yesterday UTC)."),
    ] = None,
) -> None:
    """Write the daily climate report (HTML, CSV, JSON, PDF) of one UTC day and the index."""
    from warehouse.report import write_report
    from warehouse.report.text import headline

    result = write_report(get_settings(), parse_day(day))
    console.print(f"report {result.day.isoformat()} written to {escape(str(result.directory))}")
    for path in (result.html, result.pdf, result.csv, result.json, result.index):
        console.print(f"  {escape(str(path))}")
    for label, value in headline(result.summary):
        console.print(f"{label}: {escape(value)}")
    for reason in result.incomplete_reasons:
        console.print(f"[bold red]incomplete:[/] {escape(reason)}", soft_wrap=True)
