"""The broker-kill fault scenario of `make chaos`, small: no acknowledged reading is lost
or archived twice when a broker of a 3-node cluster is killed (kill -9) mid-production,
and the in-sync replicas return to 3 once it restarts."""

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
