"""`climatewatch replay`: a recorded file's rows reach Kafka exactly, with their event times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.contract import Reading, Rejection, parse_reading
from include.replay import ColumnMapping, row_to_reading_body
from include.settings import Settings
from tests.fixtures.kafka import consume_all
from tests.fixtures.settings import run_cli

CLI = str(Path(sys.executable).with_name("climatewatch"))

RECORDED_CSV = """station,time,temp_f,rh
KSEA-1,2024-07-01T12:00:00Z,68.0,55
KSEA-1,2024-07-01T12:10:00Z,69.8,54
KSEA-2,2024-07-01T12:00:00+02:00,71.6,
KSEA-2,2024-07-01 12:20:00,73.4,50
KSEA-3,2024-07-01T12:30:00Z,not-a-number,50
"""


@pytest.mark.unit
def test_mapping_renames_converts_fahrenheit_and_keeps_times() -> None:
    mapping = ColumnMapping(
        ts="time",
        temperature="temp_f",
        sensor_id="station",
        region=None,
        humidity="rh",
        pressure=None,
        fixed_region="seattle",
        fahrenheit=True,
    )
    body = row_to_reading_body(
        {"station": "KSEA-1", "time": "2024-07-01T12:00:00Z", "temp_f": "68.0", "rh": "55"}, mapping
    )
    assert body == {
        "schema_version": 1,
        "sensor_id": "KSEA-1",
        "region": "seattle",
        "ts": "2024-07-01T12:00:00Z",
        "temperature_c": 20.0,
        "humidity_pct": 55.0,
    }
    naive = row_to_reading_body(
        {"station": "s", "time": "2024-07-01 12:20:00", "temp_f": "32", "rh": ""}, mapping
    )
    assert naive["ts"] == "2024-07-01T12:20:00.000Z" and naive["temperature_c"] == 0.0


@pytest.mark.kafka
def test_replay_csv_publishes_exactly_its_rows_with_original_times(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    recorded = tmp_path / "seattle.csv"
    recorded.write_text(RECORDED_CSV)
    result = run_cli(
        kafka_settings,
        "replay",
        str(recorded),
        "--ts-column",
        "time",
        "--temperature-column",
        "temp_f",
        "--sensor-column",
        "station",
        "--humidity-column",
        "rh",
        "--region",
        "seattle",
        "--fahrenheit",
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 5 rows" in result.stdout and "invalid 1" in result.stdout

    records = consume_all(kafka_settings, kafka_settings.topic_readings, expected=5)
    assert len(records) == 5
    parsed = [parse_reading(r.value) for r in records]
    valid = sorted((p for p in parsed if isinstance(p, Reading)), key=lambda r: (r.sensor_id, r.ts))
    assert [(r.sensor_id, r.ts.isoformat(), r.temperature_c) for r in valid] == [
        ("KSEA-1", "2024-07-01T12:00:00+00:00", 20.0),
        ("KSEA-1", "2024-07-01T12:10:00+00:00", 21.0),
        ("KSEA-2", "2024-07-01T10:00:00+00:00", 22.0),
        ("KSEA-2", "2024-07-01T12:20:00+00:00", 23.0),
    ]
    assert {r.region for r in valid} == {"seattle"}
    bad = [p for p in parsed if isinstance(p, Rejection)]
    assert [b.reason for b in bad] == ["wrong_type"]
    keys = sorted(r.key for r in records)
    assert keys == [b"KSEA-1", b"KSEA-1", b"KSEA-2", b"KSEA-2", b"KSEA-3"]


@pytest.mark.kafka
def test_replay_parquet(kafka_settings: Settings, tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.parquet"
    pq.write_table(
        pa.table(
            {
                "sensor_id": ["a-1", "a-2"],
                "region": ["paris", "paris"],
                "ts": ["2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z"],
                "temperature_c": [1.5, -2.0],
            }
        ),
        recorded,
    )
    result = run_cli(kafka_settings, "replay", str(recorded))
    assert result.returncode == 0, result.stderr
    records = consume_all(kafka_settings, kafka_settings.topic_readings, expected=2)
    assert sorted(orjson.loads(r.value)["temperature_c"] for r in records) == [-2.0, 1.5]


@pytest.mark.unit
def test_replay_of_a_missing_file_or_column_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "replay", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "replay file not found" in result.stderr
    recorded = tmp_path / "other.csv"
    recorded.write_text("when,value\n2024-01-01T00:00:00Z,1\n")
    result = subprocess.run(
        [CLI, "replay", str(recorded)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "climatewatch: error: column 'sensor_id' not in the file (columns: when, value)"
    )
