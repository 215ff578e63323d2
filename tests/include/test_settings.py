"""Settings: defaults run locally; a bad value names its environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.errors import ClimateWatchError
from include.settings import Settings, describe_settings, load_settings

pytestmark = pytest.mark.unit


def test_defaults_run_everything_on_one_machine() -> None:
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_readings == "temperature-data"
    assert settings.archive_root.endswith("archive")
    assert settings.kafka_client_config()["security_protocol"] == "PLAINTEXT"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIMATEWATCH_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CLIMATEWATCH_READINGS_PARTITIONS", "12")
    settings = load_settings()
    assert settings.kafka_client_config()["bootstrap_servers"] == ["kafka-1:9092", "kafka-2:9092"]
    assert settings.readings_partitions == 12


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLIMATEWATCH_READINGS_PARTITIONS", "zero"),
        ("CLIMATEWATCH_READINGS_PARTITIONS", "0"),
        ("CLIMATEWATCH_BOOTSTRAP_SERVERS", "localhost"),
        ("CLIMATEWATCH_SECURITY_PROTOCOL", "SASL_SMOKE"),
        ("CLIMATEWATCH_KAFKA_PORT", "70000"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ClimateWatchError, match=variable):
        load_settings()


def test_sasl_without_credentials_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIMATEWATCH_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CLIMATEWATCH_SASL_MECHANISM", "SCRAM-SHA-512")
    with pytest.raises(
        ClimateWatchError, match="CLIMATEWATCH_SASL_USERNAME, CLIMATEWATCH_SASL_PASSWORD"
    ):
        load_settings()


def test_password_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIMATEWATCH_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CLIMATEWATCH_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CLIMATEWATCH_SASL_USERNAME", "stream")
    monkeypatch.setenv("CLIMATEWATCH_SASL_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert settings.kafka_client_config()["sasl_plain_password"] == "hunter2"


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    assert len(rows) == len(Settings.model_fields)
    assert all(row.description for row in rows)


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env["CLIMATEWATCH_KAFKA_PORT"] = "not-a-port"
    cli = str(Path(sys.executable).with_name("climatewatch"))
    result = subprocess.run(
        [cli, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        "climatewatch: error: invalid setting: CLIMATEWATCH_KAFKA_PORT"
    )
    assert "Traceback" not in result.stderr
