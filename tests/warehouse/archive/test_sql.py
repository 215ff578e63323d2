"""The archive answers the SQL the README gives users, verbatim, from the project directory."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.archive import produce_scenario
from tests.fixtures.readme import README_READINGS_SQL, README_REJECTED_SQL
from warehouse.archive.run import archive_topic


@pytest.mark.kafka
def test_the_readme_queries_answer_from_the_archive(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    assert Path(kafka_settings.archive_root) == tmp_path / "data" / "archive"
    produced = produce_scenario(kafka_settings, 240)
    archive_topic(kafka_settings, kafka_settings.topic_readings)
    monkeypatch.chdir(tmp_path)  # a user in the project directory

    with duckdb.connect() as con:
        readings = con.sql(README_READINGS_SQL).fetchall()
        rejected = con.sql(README_REJECTED_SQL).fetchall()

    per_day: Counter[str] = Counter()
    for day, region, count, mean_c, min_c, max_c in readings:
        assert isinstance(day, dt.date)  # the Hive partition comes back as a DATE
        assert region in {"paris", "lyon", "nice"}
        assert min_c <= mean_c <= max_c
        per_day[day.isoformat()] += count
    assert per_day == produced.by_day
    reasons: Counter[str] = Counter()
    for _day, reason, count in rejected:
        reasons[reason] += count
    assert reasons == produced.malformed
