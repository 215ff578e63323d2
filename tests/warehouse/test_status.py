"""The read models of ``warehouse.status`` (what the page, the demo and status commands show).

Gathered from a data directory holding a real warehouse, a quality summary, a
quarantined batch, Data Docs and fake report files (``tests/fixtures/ui.py``), without
HTTP and without HTML.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.ui import (
    ALERT_MESSAGE_WITH_MARKUP,
    UiData,
    build_ui_data,
    silent_broker_settings,
    unreachable_settings,
)
from warehouse import status


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, UiData]:
    settings = unreachable_settings(tmp_path_factory.mktemp("status") / "data")
    return settings, build_ui_data(settings)


@pytest.mark.unit
class TestSections:
    def test_reports_newest_first(self, data: tuple[Settings, UiData]) -> None:
        reports = status.gather_reports(data[0])
        assert [d.day for d in reports.days] == list(data[1].report_days)
        assert reports.days[0].files == ("report.html",)
        assert reports.days[1].files == ("report.html", "report.csv")
        assert reports.has_index and reports.message is None

    def test_latest_report(self, data: tuple[Settings, UiData]) -> None:
        newest = data[0].reports_dir / data[1].report_days[0] / "report.html"
        assert status.latest_report(data[0]) == newest

    def test_latest_alerts_most_recent_first(self, data: tuple[Settings, UiData]) -> None:
        alerts = status.gather_alerts(data[0])
        assert len(alerts.rows) == data[1].alert_count and alerts.message is None
        assert [(r["alert_id"], r["status"]) for r in alerts.rows[:2]] == [
            ("heat-paris-1", "resolved"),
            ("heat-paris-1", "firing"),
        ]
        assert alerts.rows[1]["message"] == ALERT_MESSAGE_WITH_MARKUP  # escaping is the HTML's
        assert isinstance(alerts.rows[0]["emitted_at"], str)  # JSON-able: ISO text

    def test_alert_limit(self, data: tuple[Settings, UiData]) -> None:
        assert len(status.gather_alerts(data[0], limit=1).rows) == 1

    def test_quality_batches_failures_and_quarantine(self, data: tuple[Settings, UiData]) -> None:
        quality = status.gather_quality(data[0])
        assert quality.batches[0]["batch_id"] == data[1].failed_batch  # validated last
        assert {b["batch_id"] for b in quality.batches} == set(data[1].batch_ids)
        assert [b["failed"] for b in quality.batches] == [1, 0, 0]
        assert [f["expectation"] for f in quality.failures] == [
            "expect_column_values_to_be_between"
        ]
        assert [q["batch_id"] for q in quality.quarantined] == [data[1].quarantined_batch]
        assert quality.data_docs == "local_site/index.html"
        assert quality.message is None and quality.quarantine_message is None

    def test_archive_ledger_and_kafka_unreachable(self, data: tuple[Settings, UiData]) -> None:
        archive = status.gather_archive(data[0], kafka_timeout_s=3.0)
        assert {"temperature-data", "temperature-alerts"} <= set(archive.topics)
        assert archive.partitions == [] and archive.message is None
        assert archive.kafka_message and archive.kafka_message.startswith("Kafka unreachable")

    def test_summary_is_json_able(self, data: tuple[Settings, UiData]) -> None:
        body = status.gather(data[0], kafka_timeout_s=3.0).to_dict()
        assert set(body) == {"generated_at", "reports", "alerts", "quality", "archive"}
        assert [d["day"] for d in body["reports"]["days"]] == list(data[1].report_days)
        assert body["quality"]["quarantined"][0]["batch_id"] == data[1].quarantined_batch


@pytest.mark.unit
class TestEmptyDataDir:
    def test_every_section_says_why_it_is_empty(self, tmp_path: Path) -> None:
        settings = unreachable_settings(tmp_path / "data")
        summary = status.gather(settings, kafka_timeout_s=3.0)
        assert summary.reports.days == [] and "No report yet" in (summary.reports.message or "")
        assert summary.alerts.rows == [] and "No warehouse yet" in (summary.alerts.message or "")
        assert "Not validated yet" in (summary.quality.message or "")
        assert summary.quality.quarantined == [] and summary.quality.quarantine_message is None
        assert summary.quality.data_docs is None
        assert summary.archive.message == "Nothing archived yet."
        assert (summary.archive.kafka_message or "").startswith("Kafka unreachable")
        assert status.latest_report(settings) is None

    def test_an_unreadable_quality_summary_is_a_message(self, tmp_path: Path) -> None:
        settings = unreachable_settings(tmp_path / "data")
        settings.quality_summary_path.parent.mkdir(parents=True)
        settings.quality_summary_path.write_bytes(b"not parquet")
        quality = status.gather_quality(settings)
        assert quality.batches == [] and "cannot be read right now" in (quality.message or "")

    def test_data_docs_at_the_site_root(self, tmp_path: Path) -> None:
        settings = unreachable_settings(tmp_path / "data")
        settings.data_docs_dir.mkdir(parents=True)
        (settings.data_docs_dir / "index.html").write_text("<title>Data Docs</title>")
        assert status.gather_quality(settings).data_docs == "index.html"


@pytest.mark.unit
class TestReportNames:
    @pytest.mark.parametrize("day", ["2026-03-01", "2024-02-29"])
    def test_valid_day(self, day: str) -> None:
        assert status.valid_day(day)

    @pytest.mark.parametrize(
        "day", ["2026-13-45", "2026-02-30", "notadate", "2026-3-1", "..", "2026-03-01x"]
    )
    def test_invalid_day(self, day: str) -> None:
        assert not status.valid_day(day)

    @pytest.mark.parametrize("name", ["report.html", "report.pdf", "report.csv", "data.json"])
    def test_valid_report_file(self, name: str) -> None:
        assert status.valid_report_file(name)

    @pytest.mark.parametrize("name", [".hidden.html", "notes.txt", "../report.html", "a/b.html"])
    def test_invalid_report_file(self, name: str) -> None:
        assert not status.valid_report_file(name)

    def test_days_without_a_report_or_with_another_name_are_not_listed(
        self, tmp_path: Path
    ) -> None:
        settings = unreachable_settings(tmp_path / "data")
        for day in ("2026-03-01", "2026-02-30", "latest"):
            (settings.reports_dir / day).mkdir(parents=True)
            (settings.reports_dir / day / "report.html").write_text("report")
        (settings.reports_dir / "2026-03-02").mkdir()  # no report.html
        (settings.reports_dir / "2026-03-01" / "notes.txt").write_text("not a report file")
        reports = status.gather_reports(settings)
        assert [(d.day, d.files) for d in reports.days] == [("2026-03-01", ("report.html",))]
        assert not reports.has_index


@pytest.mark.unit
class TestKafkaNeverHangs:
    def test_a_broker_that_never_answers(self, tmp_path: Path) -> None:
        """A port that accepts connections and never replies: the status still answers."""
        with silent_broker_settings(tmp_path) as settings:
            started = time.monotonic()
            archive = status.gather_archive(settings, kafka_timeout_s=1.5)
            elapsed = time.monotonic() - started
            started = time.monotonic()
            again = status.gather_archive(settings, kafka_timeout_s=1.5)
            elapsed_again = time.monotonic() - started
        assert (archive.kafka_message or "").startswith("Kafka unreachable")
        assert elapsed < 10
        # The answer (here: none) is remembered a few seconds: a reload does not wait again.
        assert again.kafka_message == archive.kafka_message
        assert elapsed_again < 1.0


@pytest.mark.kafka
def test_lag_per_partition_from_a_real_broker(kafka_settings: Settings) -> None:
    """With Kafka up, every partition of the archived topics has its lag."""
    archive = status.gather_archive(kafka_settings, kafka_timeout_s=20.0)
    assert archive.kafka_message is None
    topics = {p["topic"] for p in archive.partitions}
    assert {kafka_settings.topic_readings, kafka_settings.topic_alerts} <= topics
    assert all(p["lag"] == 0 for p in archive.partitions)
