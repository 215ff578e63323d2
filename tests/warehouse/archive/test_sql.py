"""The archive answers the SQL the README gives users, verbatim, from the project directory."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from include.settings import Settings
from tests.fixtures.archive import produce_scenario
from warehouse.archive.run import archive_topic

# Exactly the README's snippets (the archive under the default data/archive).
README_READINGS_SQL = """
SELECT date, region,
       count(*)                     AS readings,
       round(avg(temperature_c), 2) AS mean_c,
       min(temperature_c)           AS min_c,
       max(temperature_c)           AS max_c
FROM read_parquet('data/archive/readings/**/*.parquet', hive_partitioning = true)
GROUP BY date, region
ORDER BY date, region;
"""
README_REJECTED_SQL = """
SELECT date, reason, count(*) AS records
FROM read_parquet('data/archive/rejected/**/*.parquet', hive_partitioning = true)
GROUP BY date, reason
ORDER BY date, reason;
"""


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
