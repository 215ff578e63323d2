"""The rules' memory replayed from published records (no broker: records are built here;
the real-broker handover is ``test_stream_delivery.py``)."""

from __future__ import annotations

import pytest

from include.events import Alert, WindowStats
from streaming.restore import RuleMemory
from streaming.rules import load_rules
from tests.streaming.fakes import T0, FakeRecord

pytestmark = pytest.mark.unit

RULES = load_rules()
T0_MS = int(T0.timestamp() * 1000)
MIN = 60_000


def window(region: str, minute: int, mean: float, sensors: list[str], count: int = 5) -> bytes:
    return WindowStats(
        region=region,
        window_start=f"2024-01-01T00:{minute:02d}:00.000Z",
        window_end=f"2024-01-01T00:{minute + 1:02d}:00.000Z",
        count=count,
        mean_c=mean,
        min_c=mean,
        max_c=mean,
        sensors=len(sensors),
        late=0,
        invalid=0,
        closed_by="watermark",
        emitted_at="2024-01-01T01:00:00.000Z",
        sensor_ids=sensors,
    ).to_json()


def alert(rule: str, region: str, status: str, message: str = "m") -> bytes:
    return Alert(
        alert_id=f"{rule}-{region}-x",
        rule=rule,
        severity="warning",
        region=region,
        window_start="2024-01-01T00:00:00.000Z",
        window_end="2024-01-01T00:10:00.000Z",
        value=1.0,
        threshold=1.0,
        status=status,  # type: ignore[arg-type]
        message=message,
        emitted_at="2024-01-01T01:00:00.000Z",
    ).to_json()


def records(*values: bytes) -> list[FakeRecord]:
    return [FakeRecord("t", 0, i, value) for i, value in enumerate(values)]


def ours(region: str) -> bool:
    return region != "oslo"


def test_window_stats_rebuild_means_sensors_and_how_far_the_rules_ran() -> None:
    memory = RuleMemory()
    used = memory.replay(
        records(
            window("lyon", 2, 21.0, ["s1", "s2"]),
            window("lyon", 1, 20.0, ["s1"]),
            window("lyon", 2, 21.0, ["s1", "s2"]),  # republished
            window("lyon", 3, 0.0, [], count=0),  # an empty window has no mean
            window("oslo", 5, 1.0, ["o1"]),  # not ours
            b"not a window",
        ),
        ours,
        alerts=False,
    )
    assert used == 4
    memory.settle(RULES)
    history = memory.histories["lyon"]
    assert list(history.means) == [(T0_MS + MIN, 20.0), (T0_MS + 2 * MIN, 21.0)]
    assert history.sensor_last_seen_ms == {"s1": T0_MS + 3 * MIN, "s2": T0_MS + 3 * MIN}
    assert memory.evaluated_until == {"lyon": T0_MS + 4 * MIN}
    assert "oslo" not in memory.histories


def test_alerts_rebuild_who_is_firing() -> None:
    memory = RuleMemory()
    memory.replay(
        records(
            alert("heat", "lyon", "firing"),
            alert("cold", "lyon", "firing"),
            alert("cold", "lyon", "resolved"),
            alert("heat", "oslo", "firing"),  # not ours
        ),
        ours,
        alerts=True,
    )
    assert set(memory.tracker.firing) == {("heat", "lyon")}


def test_a_firing_silent_sensor_alert_keeps_its_sensors_known() -> None:
    memory = RuleMemory()
    memory.replay(
        records(alert("silent_sensor", "lyon", "firing", "2 sensor(s) silent in lyon: s7, s8")),
        ours,
        alerts=True,
    )
    memory.settle(RULES)
    assert set(memory.histories["lyon"].sensor_last_seen_ms) == {"s7", "s8"}


def test_forgetting_drops_everything() -> None:
    memory = RuleMemory()
    memory.replay(records(window("lyon", 1, 20.0, ["s1"])), ours, alerts=False)
    memory.replay(records(alert("heat", "lyon", "firing")), ours, alerts=True)
    tracker = memory.tracker
    memory.forget()
    assert memory.histories == {} and memory.evaluated_until == {}
    assert memory.tracker is tracker and tracker.firing == {}
