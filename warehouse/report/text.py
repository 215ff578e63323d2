"""How the report writes numbers and headlines: one place, so HTML, PDF and index agree."""

from __future__ import annotations

from datetime import date, datetime

from warehouse.report.data import Summary

NOT_AVAILABLE = "n/a"
QUALITY_LABELS = {
    "passed": "passed",
    "warnings": "passed with warnings",
    "failed": "failed",
    "not validated": "not validated",
}


def temp(value: float | None, *, signed: bool = False) -> str:
    """A temperature in °C with two decimals (``+`` shown for anomalies)."""
    if value is None:
        return NOT_AVAILABLE
    return f"{value:+.2f} °C" if signed else f"{value:.2f} °C"


def number(value: float | None, digits: int = 2) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.1f}%"


def clock(value: datetime | None) -> str:
    """UTC time of day, with the date when it is not the report's day (caller decides)."""
    return "" if value is None else f"{value:%H:%M:%S}"


def stamp(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def resolved(value: datetime | None, day: date) -> str:
    """When an alert resolved: the time on the report's day, else date and time."""
    if value is None:
        return "not resolved"
    return clock(value) if value.date() == day else stamp(value)


def headline(summary: Summary) -> list[tuple[str, str]]:
    """(label, value) pairs of the summary, in the order every output shows them."""
    return [
        ("Hottest region", _region_value(summary.hottest_region, summary.hottest_mean_c)),
        ("Coldest region", _region_value(summary.coldest_region, summary.coldest_mean_c)),
        (
            "Largest anomaly",
            _region_value(summary.largest_anomaly_region, summary.largest_anomaly_c, signed=True),
        ),
        ("Alerts fired", str(summary.alerts_firing)),
        ("Data quality", QUALITY_LABELS[summary.quality_status]),
        ("Day complete", "yes" if summary.complete else "no"),
    ]


def _region_value(region: str | None, value: float | None, *, signed: bool = False) -> str:
    if region is None:
        return NOT_AVAILABLE
    return f"{region} ({temp(value, signed=signed)})"


def latin1(text: str) -> str:
    """Text a PDF core font can draw: typographic dashes and quotes made plain."""
    replaced = (
        text.replace("–", "-")
        .replace("—", "-")
        .replace("…", "...")
        .replace("‘", "'")
        .replace("’", "'")
        .replace("“", '"')
        .replace("”", '"')
        .replace("→", "->")
        .replace("≥", ">=")
        .replace("≤", "<=")
    )
    return replaced.encode("latin-1", "replace").decode("latin-1")
