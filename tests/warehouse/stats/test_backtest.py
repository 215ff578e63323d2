"""Backtesting: the speed layer's rules (streaming.rules) over an archived heat wave."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.events import alert_id_for
from include.settings import Settings, load_settings
from tests.fixtures.settings import run_cli
from tests.fixtures.stats import FakeArchive
from warehouse.stats.backtest import backtest

pytestmark = pytest.mark.unit

START = datetime(2026, 7, 1, 23, 50, tzinfo=UTC)  # the heat wave starts after midnight
HEAT_RULES = """
[windows]
size_seconds = 60
allowed_lateness_seconds = 30

[rules.heat]
severity = "critical"
threshold_c = {threshold}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = load_settings(data_dir=tmp_path / "data")
    rows = []
    for minute in range(30):  # 23:50 .. 00:19, two sensors every 20 s
        heat = 10 <= minute < 15  # 00:00 .. 00:04: 32 °C
        for second in (0, 20, 40):
            for sensor in ("paris-1", "paris-2"):
                ts = START + timedelta(minutes=minute, seconds=second)
                rows.append((sensor, "paris", ts, 32.0 if heat else 15.0))
                rows.append((sensor.replace("paris", "nice"), "nice", ts, 20.0))
    FakeArchive(Path(settings.archive_root)).add_readings(rows)
    return settings


def rules_file(tmp_path: Path, threshold: float) -> Path:
    path = tmp_path / f"rules-{threshold}.toml"
    path.write_text(HEAT_RULES.format(threshold=threshold))
    return path


def test_backtest_fires_and_resolves_the_heat_alert_with_the_speed_layer_ids(
    settings: Settings, tmp_path: Path
) -> None:
    result = backtest(settings, rules_file(tmp_path, 30.0), "2026-07-01", "2026-07-02")
    assert result.windows == 60 and result.readings == 360  # 30 minutes × 2 regions
    assert [(a.status, a.rule, a.region) for a in result.alerts] == [
        ("firing", "heat", "paris"),
        ("resolved", "heat", "paris"),
    ]
    firing, resolved = result.alerts
    assert firing.window_start == "2026-07-02T00:00:00.000Z" and firing.severity == "critical"
    assert firing.value == 32.0 and firing.threshold == 30.0
    assert firing.alert_id == alert_id_for("heat", "paris", firing.window_start)
    assert resolved.alert_id == firing.alert_id
    assert resolved.window_end == "2026-07-02T00:06:00.000Z"  # first window back below

    # a higher threshold: nothing would have fired; one day only: no window of the wave
    assert backtest(settings, rules_file(tmp_path, 35.0), "2026-07-01", "2026-07-02").alerts == []
    assert backtest(settings, rules_file(tmp_path, 30.0), "2026-07-01", "2026-07-01").alerts == []


def test_backtest_command(settings: Settings, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(settings, "backtest", *args, timeout_s=60)

    rules = str(rules_file(tmp_path, 30.0))
    table = run("--rules", rules, "--from", "2026-07-01", "--to", "2026-07-02")
    assert table.returncode == 0, table.stderr
    assert "60 window(s), 360 reading(s): heat 1 alert(s) would have fired" in table.stdout
    as_json = run("--rules", rules, "--from", "2026-07-01", "--to", "2026-07-02", "-f", "json")
    assert [a["status"] for a in json.loads(as_json.stdout)] == ["firing", "resolved"]
    bad = run("--rules", rules, "--from", "2026-07-02", "--to", "2026-07-01")
    assert bad.returncode == 1 and "before --from" in bad.stderr
    missing = run(
        "--rules", str(tmp_path / "nope.toml"), "--from", "2026-07-01", "--to", "2026-07-01"
    )
    assert missing.returncode == 1 and "rules file not found" in missing.stderr
