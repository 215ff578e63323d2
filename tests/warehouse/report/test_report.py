"""The daily climate report on a warehouse built from a known archive (real DuckDB, Parquet).

Dataset: the hand-computed archive of test_stats (reporting interval 600 s), with the
nice climatology normal (12.5 °C on March 1st) and alerts on 2026-03-01 in paris: heat
h1 (published twice, then resolved at 12:02), heat h2 and cold c1 (never resolved).
Every number the report shows is checked against the warehouse tables themselves.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from include.errors import ClimateWatchError
from include.settings import Settings, get_settings, load_settings
from tests.fixtures.report import NOW, build_archive, make_settings, write_quality
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive, day1_nice, day1_paris, day2_paris
from warehouse.archive.ledger import LedgerEntry
from warehouse.archive.quarantine import quarantine_batch
from warehouse.db import connect_read_only
from warehouse.report import (
    SECTION_IDS,
    day_is_final,
    load_report_data,
    render_html,
    report_day_for,
    write_report,
)
from warehouse.report.cli import parse_day
from warehouse.report.text import temp
from warehouse.stats.recompute import rebuild, recompute, recompute_dates

pytestmark = pytest.mark.unit

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, report_min_coverage=0.0)


@pytest.fixture
def entries(settings: Settings) -> dict[str, LedgerEntry]:
    found = build_archive(settings)
    rebuild(settings)
    return found


def warehouse_rows(settings: Settings, sql: str, *params: Any) -> list[dict[str, Any]]:
    con = connect_read_only(settings.warehouse_path)
    try:
        con.execute("SET TimeZone = 'UTC'")
        cursor = con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def region_row(html: str, region: str) -> str:
    found = re.search(rf"<tr[^>]*data-region='{region}'>(.*?)</tr>", html)
    assert found, f"no row for {region}"
    return found.group(1)


# --- numbers ---------------------------------------------------------------------------------
def test_report_numbers_are_the_warehouse_numbers(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    result = write_report(settings, DAY1, now=NOW)
    daily = warehouse_rows(
        settings, "SELECT * FROM regional_daily WHERE date = ? ORDER BY region", DAY1
    )
    assert [r["region"] for r in daily] == ["nice", "paris"]
    hottest = max(daily, key=lambda r: r["mean_c"])
    coldest = min(daily, key=lambda r: r["mean_c"])
    firing = warehouse_rows(
        settings,
        "SELECT count(DISTINCT alert_id) AS n FROM alerts WHERE status = 'firing' AND date = ?",
        DAY1,
    )[0]["n"]
    assert firing == 3 and hottest["region"] == "paris" and coldest["region"] == "nice"

    # JSON: every number, at full precision
    report = json.loads(result.json.read_text())
    summary = report["summary"]
    assert summary["hottest_region"] == "paris" and summary["coldest_region"] == "nice"
    assert summary["hottest_mean_c"] == pytest.approx(hottest["mean_c"])
    assert summary["alerts_firing"] == firing == result.summary.alerts_firing
    assert summary["largest_anomaly_region"] == "nice"
    assert summary["largest_anomaly_c"] == pytest.approx(1.0)  # 13.5 - 12.5 (climatology)
    for row, expected in zip(report["regions"], daily, strict=True):
        for column in ("region", "reading_count", "min_c", "max_c", "mean_c", "hdd", "cdd"):
            assert row[column] == pytest.approx(expected[column]), column
        assert row["coverage_pct"] == pytest.approx(expected["coverage_pct"])
    assert summary["quality_status"] == "not validated"

    # CSV: one row per region, same numbers
    with result.csv.open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["region"] for r in csv_rows] == ["nice", "paris"]
    for row, expected in zip(csv_rows, daily, strict=True):
        assert row["date"] == "2026-03-01"
        for column in ("min_c", "max_c", "mean_c", "hdd", "cdd", "coverage_pct"):
            assert float(row[column]) == pytest.approx(expected[column]), column
    assert csv_rows[0]["anomaly_c"] == "1.0" and csv_rows[1]["anomaly_c"] == ""

    # HTML: the region table and the summary show the same values
    html = result.html.read_text()
    for expected in daily:
        cells = region_row(html, expected["region"])
        for column in ("mean_c", "min_c", "max_c"):
            assert f">{temp(expected[column])}<" in cells
    summary_html = re.search(r"<section id='summary'>.*?</section>", html, re.S)
    assert summary_html
    assert f"paris ({temp(hottest['mean_c'])})" in summary_html.group(0)
    assert f"nice ({temp(coldest['mean_c'])})" in summary_html.group(0)
    assert ">3<" in summary_html.group(0)

    # alerts: paired by id, duplicates counted once
    alerts = {a["alert_id"]: a for a in report["alerts"]}
    assert set(alerts) == {"h1", "h2", "c1"}
    assert alerts["h1"]["resolved_at"] == "2026-03-01T12:02:00+00:00"
    assert alerts["h2"]["resolved_at"] is None
    assert "12:02:00" in html and html.count("not resolved</td>") == 2

    # PDF: the same headline numbers
    text = pdf_text(result.pdf)
    assert f"paris ({temp(hottest['mean_c'])})" in text
    assert f"nice ({temp(coldest['mean_c'])})" in text
    assert re.search(r"Alerts fired\s*3", text)


def test_every_section_is_there_and_the_page_loads_nothing(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    html = write_report(settings, DAY1, now=NOW).html.read_text()
    for element_id in SECTION_IDS:
        assert re.search(rf"id=['\"]{element_id}['\"]", html), element_id
    assert html.count("<svg ") == 3
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"(src|href)\s*=\s*['\"]?//", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!['\"]?data:)", html)
    assert not re.search(r"\ssrc\s*=", html)  # no image or frame at all


def test_text_is_escaped(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    FakeArchive(Path(settings.archive_root)).add_readings(
        [("s", "<b>&evil", datetime(2026, 3, 1, 1, tzinfo=UTC), 1.0)]
    )
    rebuild(settings)
    html = render_html(load_report_data(settings, DAY1, now=NOW))
    assert "<b>&evil" not in html and "&lt;b&gt;&amp;evil" in html


# --- completeness ----------------------------------------------------------------------------
def test_a_region_below_the_minimum_coverage_makes_the_day_incomplete(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, report_min_coverage=0.05)  # paris 7.3%, nice 2.8%
    build_archive(settings)
    rebuild(settings)
    result = write_report(settings, DAY1, now=NOW)
    html = result.html.read_text()
    notice = re.search(r"<section id='incomplete'.*?</section>", html, re.S)
    assert notice and "nice (2.8%)" in notice.group(0) and "paris" not in notice.group(0)
    assert html.index("id='incomplete'") < html.index("id='summary'")
    assert not result.complete and result.summary.complete is False
    assert "Incomplete day" in pdf_text(result.pdf)
    report = json.loads(result.json.read_text())
    assert report["completeness"]["low_coverage"] == ["nice"]


def test_a_complete_day_says_so(settings: Settings, entries: dict[str, LedgerEntry]) -> None:
    result = write_report(settings, DAY1, now=NOW)
    html = result.html.read_text()
    assert result.complete and "id='complete'" in html and "id='incomplete'" not in html


def test_a_quarantined_batch_of_the_day_is_named_with_its_rows(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    nice = entries["nice"]
    quarantine_batch(settings.archive_root, nice, reason="values out of range")
    recompute_dates(settings, list(nice.dates))
    result = write_report(settings, DAY1, now=NOW)
    html = result.html.read_text()
    notice = re.search(r"<section id='incomplete'.*?</section>", html, re.S)
    assert notice and nice.batch_id in notice.group(0)
    assert "hold 4 row(s)" in notice.group(0) and "values out of range" in notice.group(0)
    assert nice.batch_id in re.search(r"<section id='quality'>.*?</section>", html, re.S).group(0)
    report = json.loads(result.json.read_text())
    assert [q["batch_id"] for q in report["completeness"]["quarantined"]] == [nice.batch_id]
    assert [r["region"] for r in report["regions"]] == ["paris"]
    # the other day is not touched by it
    assert write_report(settings, DAY2, now=NOW).complete


def test_a_day_without_data_is_reported_as_such(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    result = write_report(settings, date(2026, 2, 1), now=NOW)
    html = result.html.read_text()
    assert "id='incomplete'" in html and "no data" in html
    assert result.summary.hottest_region is None and result.summary.alerts_firing == 0
    assert "no hourly data" in html and result.pdf.stat().st_size > 0


def test_a_known_region_that_went_silent_is_listed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, report_min_coverage=0.05)
    build_archive(settings)
    rebuild(settings)
    report = json.loads(write_report(settings, DAY2, now=NOW).json.read_text())
    silent = [r for r in report["regions"] if r["region"] == "nice"]
    assert silent and silent[0]["missing"] and silent[0]["reading_count"] == 0
    assert "nice" in report["completeness"]["low_coverage"]
    assert report["summary"]["hottest_region"] == "paris"


# --- data quality -----------------------------------------------------------------------------
def test_quality_results_failures_and_data_docs(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    readings = [entries["paris"], entries["nice"], entries["day2"]]
    write_quality(settings, readings)
    passed = load_report_data(settings, DAY1, now=NOW).quality
    assert passed.status == "passed" and passed.failed == 0 and passed.evaluated == 4

    write_quality(
        settings,
        readings,
        {"values_not_null": ("warning", 2), "timestamps_in_day": ("critical", 5)},
    )
    docs = settings.data_dir / "quality" / "data_docs" / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")
    result = write_report(settings, DAY1, now=NOW)
    report = json.loads(result.json.read_text())
    quality = report["quality"]
    assert quality["status"] == "failed" and quality["failed"] == 4 and quality["passed"] == 4
    assert [
        (f["expectation"], f["severity"], f["unexpected_count"]) for f in quality["failures"]
    ] == [
        ("timestamps_in_day", "critical", 10),
        ("values_not_null", "warning", 4),
    ]
    html = result.html.read_text()
    section = re.search(r"<section id='quality'>.*?</section>", html, re.S).group(0)
    assert "timestamps_in_day" in section and "critical" in section and ">10<" in section
    assert "href='../../quality/data_docs/index.html'" in section
    assert (result.directory / "../../quality/data_docs/index.html").resolve() == docs.resolve()

    write_quality(settings, readings, {"values_not_null": ("warning", 1)})
    assert load_report_data(settings, DAY1, now=NOW).quality.status == "warnings"


def test_without_quality_results_the_day_is_not_validated(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    html = write_report(settings, DAY1, now=NOW).html.read_text()
    assert "not validated" in html and "Data Docs have not been built yet" in html


# --- files and index ---------------------------------------------------------------------------
def test_a_rerun_rewrites_the_day_and_the_index_lists_every_day(
    settings: Settings, entries: dict[str, LedgerEntry]
) -> None:
    first = write_report(settings, DAY1, now=NOW)
    write_report(settings, DAY2, now=NOW)
    again = write_report(settings, DAY1, now=datetime(2026, 3, 4, tzinfo=UTC))
    assert again.html == first.html and "2026-03-04 00:00:00 UTC" in again.html.read_text()
    leftovers = [p.name for p in first.directory.parent.rglob(".*")]
    assert not leftovers, leftovers
    assert sorted(p.name for p in first.directory.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
        "report.pdf",
    ]
    index = again.index.read_text()
    assert again.index == settings.data_dir / "reports" / "index.html"
    rows = re.findall(r"<tr data-day='([\d-]+)'>(.*?)</tr>", index)
    assert [day for day, _ in rows] == ["2026-03-02", "2026-03-01"]
    day1 = dict(rows)["2026-03-01"]
    assert "href='2026-03-01/report.html'" in day1 and "paris (16.00 °C)" in day1
    assert "nice (13.50 °C)" in day1 and ">3<" in day1 and "not validated" in day1
    assert "http" not in index and "<script" not in index


# --- is the day final? ------------------------------------------------------------------------
def test_a_day_is_final_once_the_warehouse_and_quality_cover_its_batches(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    archive = FakeArchive(Path(settings.archive_root))
    paris = archive.add_readings(day1_paris())
    assert day_is_final(settings, DAY1) == (
        False,
        "the archive has no data after 2026-03-01 yet: the day may still be filling",
    )
    day2 = archive.add_readings(day2_paris(), partition=1)
    final, why = day_is_final(settings, DAY1)
    assert not final and "no warehouse" in why
    recompute(settings)
    final, why = day_is_final(settings, DAY1)
    assert not final and "not validated by data quality" in why and paris.batch_id in why
    write_quality(settings, [paris, day2])
    final, why = day_is_final(settings, DAY1)
    assert final, why
    late = archive.add_readings(day1_nice(), partition=2)  # a late batch of the same day
    final, why = day_is_final(settings, DAY1)
    assert not final and "not in the warehouse" in why and late.batch_id in why
    recompute(settings)
    assert not day_is_final(settings, DAY1)[0]
    write_quality(settings, [paris, day2, late])
    assert day_is_final(settings, DAY1)[0]


def test_the_reported_day_of_a_run() -> None:
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    assert report_day_for(midnight, midnight) == DAY1  # trigger timetable (Airflow 3 @daily)
    assert report_day_for(datetime(2026, 3, 1, tzinfo=UTC), midnight) == DAY1  # interval
    assert parse_day(None, today=DAY2) == DAY1  # the CLI's default: yesterday (UTC)
    assert parse_day(" 2026-03-02 ") == DAY2


# --- CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def cli_settings(
    settings: Settings, entries: dict[str, LedgerEntry], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("CLIMATEWATCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CLIMATEWATCH_REPORTING_INTERVAL_S", "600")
    monkeypatch.setenv("CLIMATEWATCH_CLIMATOLOGY_CSV", str(settings.climatology_csv))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_writes_the_report_and_prints_the_headline(cli_settings: Settings) -> None:
    from include.ops.cli import app

    result = CliRunner().invoke(app, ["report", "--date", "2026-03-01"])
    assert result.exit_code == 0, result.output
    assert "reports/2026-03-01/report.html" in result.output.replace("\n", "")
    assert "Hottest region: paris (16.00 °C)" in result.output
    assert "Alerts fired: 3" in result.output
    assert (cli_settings.data_dir / "reports" / "2026-03-01" / "report.pdf").is_file()


def test_cli_refuses_a_bad_date(cli_settings: Settings) -> None:
    from include.ops.cli import app

    result = CliRunner().invoke(app, ["report", "--date", "2026-02-30"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ClimateWatchError)
    assert "not a date (YYYY-MM-DD): '2026-02-30'" in str(result.exception)


def test_cli_without_a_warehouse_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from include.ops.cli import app

    monkeypatch.setenv("CLIMATEWATCH_DATA_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["report"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert isinstance(result.exception, ClimateWatchError)
    assert "no warehouse at" in str(result.exception)


@pytest.mark.slow
def test_cli_errors_are_one_line_and_exit_non_zero(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "include.ops.cli", "report", "--date", "yesterday"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "climatewatch: error: --date: not a date (YYYY-MM-DD): 'yesterday'"
    ]
