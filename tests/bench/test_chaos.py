"""Two fault scenarios of `make chaos`, small. broker-kill: no acknowledged reading is lost
or archived twice when a broker of a 3-node cluster is killed (kill -9) mid-production,
and the in-sync replicas return to 3 once it restarts. send-fail: when topics refuse the
stream's writes, it stops on them (one line, nothing committed past a failed send), and
once they take writes again the heat alert is on the topic and every reading archived."""

from __future__ import annotations

import pytest

from bench.chaos.harness import ChaosOptions
from bench.chaos.scenarios import run_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_kill_9_of_a_broker_loses_and_duplicates_no_acknowledged_reading() -> None:
    # its own 3-node cluster on free ports: the session's single broker is not touched
    options = ChaosOptions.quick(rate=300.0, duration_s=20.0, with_stream=False)
    lines: list[str] = []
    result = run_scenario("broker-kill", options, log=lines.append)
    report = "\n".join(lines[-15:])

    assert not result.problems, report
    assert result.produced >= options.rate * options.duration_s * 0.99
    assert result.acknowledged >= result.produced * 0.95, report
    assert result.archived >= result.acknowledged
    assert result.lost == 0, report
    assert result.duplicated == 0, report
    assert result.isr_recovered_s is not None  # in-sync replicas back to 3 after the restart


def test_sends_the_brokers_refuse_stop_the_stream_and_lose_no_alert_and_no_reading() -> None:
    # send-fail: the partials topic, then (during the heat wave) the alerts topic refuse
    # every write (max.message.bytes below any batch) on a healthy cluster
    options = ChaosOptions.quick()
    lines: list[str] = []
    result = run_scenario("send-fail", options, log=lines.append)
    report = "\n".join(lines[-30:])

    assert not result.problems, report
    for topic in ("temperature-window-partials", "temperature-alerts"):  # stopped on each
        assert any(
            "climatewatch: error: could not publish to topic" in line and f"'{topic}'" in line
            for line in lines
        ), report
    assert result.restarts >= 2, report  # the supervisor restarted it after each stop
    assert result.alerts_expected == 1
    assert result.alerts_seen >= 1, report  # published once the alerts topic took writes
    assert result.acknowledged == result.produced, report
    assert result.lost == 0, report
    assert result.duplicated == 0, report
