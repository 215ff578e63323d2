"""The ClimateWatch page's app through FastAPI's TestClient (no Airflow, no browser),
and its HTML rendered from hand-made sections.

The app is mounted at ``/climatewatch`` as Airflow mounts it, over a data directory
holding a real warehouse, a quality summary, a quarantined batch, Data Docs and fake
report files (``tests/fixtures/ui.py``). The read models themselves are tested in
``tests/warehouse/test_status.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from include.ops.ui import render
from include.ops.ui.app import create_app
from include.settings import Settings
from tests.fixtures.ui import (
    ALERT_MESSAGE_WITH_MARKUP,
    UiData,
    build_ui_data,
    silent_broker_settings,
    unreachable_settings,
)
from warehouse import status

PREFIX = "/climatewatch"


def mounted(settings: Settings, **kwargs: float) -> TestClient:
    parent = FastAPI()
    parent.mount(PREFIX, create_app(settings, **kwargs))
    return TestClient(parent)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, UiData]:
    settings = unreachable_settings(tmp_path_factory.mktemp("ui") / "data")
    return settings, build_ui_data(settings)


@pytest.fixture(scope="module")
def client(data: tuple[Settings, UiData]) -> Iterator[TestClient]:
    with mounted(data[0], kafka_timeout_s=3.0) as client:
        yield client


def section(page: str, css_id: str) -> str:
    match = re.search(rf'<section id="{css_id}">(.*?)</section>', page, re.S)
    assert match, f"no section #{css_id}"
    return match.group(1)


def table_rows(html: str, css_id: str) -> list[str]:
    match = re.search(rf'<table id="{css_id}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert match, f"no table #{css_id}"
    return re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)


@pytest.mark.unit
class TestPage:
    def test_reports_newest_first_with_links(self, client: TestClient) -> None:
        page = client.get(f"{PREFIX}/").text
        reports = section(page, "reports")
        rows = table_rows(reports, "reports-table")
        assert [re.search(r"\d{4}-\d{2}-\d{2}", r).group(0) for r in rows] == [
            "2026-03-02",
            "2026-03-01",
        ]
        assert 'href="reports/2026-03-02/report.html"' in rows[0]
        assert 'href="reports/2026-03-01/report.csv"' in rows[1]
        assert "2026-02-28" not in reports  # a directory without report.html
        assert 'href="reports/index.html"' in reports

    def test_links_resolve_below_the_mount_point(self, client: TestClient) -> None:
        """Relative links on ``/climatewatch/`` reach the files (also inside Airflow)."""
        page = client.get(f"{PREFIX}/").text
        hrefs = set(re.findall(r'href="((?:reports|data-docs)/[^"#]+)"', page))
        assert len(hrefs) >= 4
        for href in hrefs:
            response = client.get(f"{PREFIX}/{href}")
            assert response.status_code == 200, href
        report = client.get(f"{PREFIX}/reports/2026-03-01/report.html")
        assert report.headers["content-type"].startswith("text/html")
        assert "Climate report 2026-03-01" in report.text
        csv = client.get(f"{PREFIX}/reports/2026-03-01/report.csv")
        assert csv.text.startswith("region,mean_c")

    def test_latest_alerts_from_the_warehouse(
        self, client: TestClient, data: tuple[Settings, UiData]
    ) -> None:
        alerts = section(client.get(f"{PREFIX}/").text, "alerts")
        rows = table_rows(alerts, "alerts-table")
        assert len(rows) == data[1].alert_count
        assert '<span class="resolved">resolved</span>' in rows[0]  # most recent first
        assert '<span class="firing">firing</span>' in rows[1]
        assert "heat &lt;b&gt;not bold&lt;/b&gt; in paris" in rows[1]
        assert ALERT_MESSAGE_WITH_MARKUP not in alerts

    def test_quality_batches_failures_and_quarantine(
        self, client: TestClient, data: tuple[Settings, UiData]
    ) -> None:
        quality = section(client.get(f"{PREFIX}/").text, "quality")
        batches = table_rows(quality, "quality-table")
        assert len(batches) == 3
        assert data[1].failed_batch in batches[0]  # validated last, listed first
        assert '<span class="failed">1</span>' in batches[0]
        assert all('<span class="failed">' not in b for b in batches[1:])
        failures = table_rows(quality, "quality-failures-table")
        assert len(failures) == 1 and "expect_column_values_to_be_between" in failures[0]
        quarantined = table_rows(quality, "quarantine-table")
        assert len(quarantined) == 1 and data[1].quarantined_batch in quarantined[0]
        assert 'href="data-docs/local_site/index.html"' in quality

    def test_archive_ledger_and_kafka_unreachable(self, client: TestClient) -> None:
        archive = section(client.get(f"{PREFIX}/").text, "archive")
        topics = table_rows(archive, "ledger-table")
        assert any("temperature-data" in row for row in topics)
        assert any("temperature-alerts" in row for row in topics)
        assert "Kafka unreachable" in archive

    def test_summary_json_has_the_same_data(
        self, client: TestClient, data: tuple[Settings, UiData]
    ) -> None:
        body = client.get(f"{PREFIX}/api/summary").json()
        assert [d["day"] for d in body["reports"]["days"]] == list(data[1].report_days)
        assert len(body["alerts"]["rows"]) == data[1].alert_count
        assert {b["batch_id"] for b in body["quality"]["batches"]} == set(data[1].batch_ids)
        assert body["quality"]["quarantined"][0]["batch_id"] == data[1].quarantined_batch
        assert "temperature-data" in body["archive"]["topics"]
        assert body["archive"]["kafka_message"].startswith("Kafka unreachable")

    def test_page_is_self_contained(self, client: TestClient) -> None:
        page = client.get(f"{PREFIX}/").text
        assert "<title>ClimateWatch</title>" in page
        assert not re.search(r'(src|href)="(https?:)?//', page)
        assert "<script" not in page


@pytest.mark.unit
class TestFileRoutes:
    @pytest.mark.parametrize(
        "path",
        [
            "/reports/..%2F..%2Fetc/passwd",
            "/reports/2026-03-01/..%2F..%2F..%2Fetc%2Fpasswd",
            "/reports/2026-03-01/..",
            "/reports/2026-03-01/.hidden.html",
            "/reports/2026-03-01/notes.txt",
            "/reports/2026-03-01/report.pdf",  # allowed name, not written
            "/data-docs/..%2F..%2Fwarehouse%2Fclimatewatch.duckdb",
            "/data-docs/%2Fetc%2Fpasswd",
            "/data-docs/local_site/missing.html",
        ],
    )
    def test_not_found(self, client: TestClient, path: str) -> None:
        response = client.get(PREFIX + path)
        assert response.status_code == 404, response.text
        assert "root:" not in response.text

    @pytest.mark.parametrize(
        "day", ["2026-13-45", "2026-02-30", "notadate", "2026-3-1", "%2E%2E", "2026-03-01x"]
    )
    def test_bad_day_is_refused(self, client: TestClient, day: str) -> None:
        assert client.get(f"{PREFIX}/reports/{day}/report.html").status_code == 400

    def test_symlink_out_of_the_reports_is_not_followed(
        self, client: TestClient, data: tuple[Settings, UiData], tmp_path: Path
    ) -> None:
        secret = tmp_path / "secret.html"
        secret.write_text("secret")
        day = data[0].reports_dir / "2026-03-02"
        (day / "leak.html").symlink_to(secret)
        try:
            assert client.get(f"{PREFIX}/reports/2026-03-02/leak.html").status_code == 404
        finally:
            (day / "leak.html").unlink()

    def test_data_docs_index(self, client: TestClient) -> None:
        response = client.get(f"{PREFIX}/data-docs/local_site/index.html")
        assert response.status_code == 200 and "Data Docs" in response.text

    def test_icon(self, client: TestClient) -> None:
        response = client.get(f"{PREFIX}/icon.svg")
        assert response.headers["content-type"] == "image/svg+xml"
        assert response.text == render.ICON_SVG


ALERT = {
    "emitted_at": "2026-03-01T12:06:00+00:00",
    "status": "firing",
    "severity": "critical",
    "rule": "heat",
    "region": "paris",
    "window_start": "2026-03-01T12:00:00+00:00",
    "window_end": "2026-03-01T12:05:00+00:00",
    "value": 31.54,
    "threshold": 30.0,
    "message": ALERT_MESSAGE_WITH_MARKUP,
    "alert_id": "heat-paris-1",
}


@pytest.mark.unit
class TestRender:
    def test_alerts_are_escaped_and_formatted(self) -> None:
        html = render.render_alerts(status.AlertsSection([ALERT]))
        row = table_rows(html, "alerts-table")[0]
        assert "heat &lt;b&gt;not bold&lt;/b&gt; in paris" in row
        assert ALERT_MESSAGE_WITH_MARKUP not in html
        assert "2026-03-01 12:06:00 UTC" in row
        assert "2026-03-01 12:00:00 UTC → 12:05:00 UTC" in row  # the end's date left out
        assert '<td class="num">31.5</td><td class="num">30.0</td>' in row

    def test_a_message_instead_of_a_table(self) -> None:
        html = render.render_alerts(status.AlertsSection(message="No <alert> yet."))
        assert '<p class="message">No &lt;alert&gt; yet.</p>' in html
        assert "<table" not in html

    def test_quarantine_message_replaces_the_empty_note(self) -> None:
        unreadable = render.render_quality(
            status.QualitySection(quarantine_message="Quarantine cannot be read right now: x")
        )
        assert "Quarantine cannot be read right now" in unreadable
        assert "No batch is quarantined" not in unreadable
        assert "No batch is quarantined" in render.render_quality(status.QualitySection())

    def test_lag_table_marks_unarchived_partitions(self) -> None:
        partition = {
            "topic": "temperature-data",
            "partition": 0,
            "archived_to": None,
            "end_offset": 12,
            "lag": 12,
            "rows": 0,
            "lost": 0,
        }
        html = render.render_archive(status.ArchiveSection(partitions=[partition]))
        assert '<td class="num">—</td>' in table_rows(html, "lag-table")[0]


@pytest.mark.unit
class TestEmptyDataDir:
    def test_every_section_says_why_it_is_empty(self, tmp_path: Path) -> None:
        with mounted(unreachable_settings(tmp_path / "data"), kafka_timeout_s=3.0) as client:
            response = client.get(f"{PREFIX}/")
            body = client.get(f"{PREFIX}/api/summary").json()
            index = client.get(f"{PREFIX}/reports/index.html")
        assert response.status_code == 200
        page = response.text
        assert "No report yet" in section(page, "reports")
        assert "No warehouse yet" in section(page, "alerts")
        assert "Not validated yet" in section(page, "quality")
        assert "No batch is quarantined" in section(page, "quality")
        assert "Nothing archived yet" in section(page, "archive")
        assert "Kafka unreachable" in section(page, "archive")
        assert body["alerts"]["rows"] == [] and body["alerts"]["message"]
        assert index.status_code == 404

    def test_an_unreadable_quality_summary_is_a_message(self, tmp_path: Path) -> None:
        settings = unreachable_settings(tmp_path / "data")
        settings.quality_summary_path.parent.mkdir(parents=True)
        settings.quality_summary_path.write_bytes(b"not parquet")
        with mounted(settings, kafka_timeout_s=3.0) as client:
            response = client.get(f"{PREFIX}/")
        assert response.status_code == 200
        assert "cannot be read right now" in section(response.text, "quality")


@pytest.mark.unit
class TestKafkaNeverHangsThePage:
    def test_a_broker_that_never_answers(self, tmp_path: Path) -> None:
        """A port that accepts connections and never replies: the page still answers."""
        with (
            silent_broker_settings(tmp_path) as settings,
            mounted(settings, kafka_timeout_s=1.5) as client,
        ):
            started = time.monotonic()
            response = client.get(f"{PREFIX}/")
            elapsed = time.monotonic() - started
            started = time.monotonic()
            again = client.get(f"{PREFIX}/")
            elapsed_again = time.monotonic() - started
        assert response.status_code == 200
        assert "Kafka unreachable" in section(response.text, "archive")
        assert elapsed < 10
        # The answer (here: none) is remembered a few seconds: a reload does not wait again.
        assert "Kafka unreachable" in section(again.text, "archive")
        assert elapsed_again < 1.0


@pytest.mark.kafka
def test_lag_per_partition_from_a_real_broker(kafka_settings: Settings) -> None:
    """With Kafka up, the archive section shows every partition of the archived topics."""
    with mounted(kafka_settings, kafka_timeout_s=20.0) as client:
        archive = section(client.get(f"{PREFIX}/").text, "archive")
    assert "Kafka unreachable" not in archive
    rows = table_rows(archive, "lag-table")
    assert any(kafka_settings.topic_readings in row for row in rows)
    assert any(kafka_settings.topic_alerts in row for row in rows)
