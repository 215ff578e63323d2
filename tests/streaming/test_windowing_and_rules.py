"""Windows and rules as pure functions: no Kafka, no clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.errors import ClimateWatchError
from streaming.rules import AlertTracker, RegionHistory, evaluate, load_rules
from streaming.windowing import (
    NO_WATERMARK,
    ClosedWindow,
    Partial,
    PartitionWindows,
    RegionWindows,
    alignment,
)

pytestmark = pytest.mark.unit

MIN = 60_000
RULES = load_rules()


def closed(
    region: str,
    start_min: int,
    mean: float,
    sensors: tuple[str, ...] = ("a", "b"),
    invalid: int = 0,
    count: int = 12,
) -> ClosedWindow:
    return ClosedWindow(
        region,
        start_min * MIN,
        (start_min + 1) * MIN,
        count,
        mean,
        mean - 1,
        mean + 1,
        frozenset(sensors),
        0,
        invalid,
        "watermark",
    )


def test_partition_window_closes_when_the_watermark_passes_its_end() -> None:
    windows = PartitionWindows(0, size_ms=MIN, lateness_ms=30_000)
    windows.add("lyon", "lyon-1", 10_000, 20.0, offset=0)
    windows.add("lyon", "lyon-2", 50_000, 22.0, offset=1)
    windows.add("lyon", "lyon-1", 80_000, 21.0, offset=2)  # watermark 50 s: first window still open
    assert windows.close_ready() == []
    assert windows.safe_commit_offset(3) == 0  # a restart must re-read the open window
    windows.add("lyon", "lyon-1", 95_000, 21.0, offset=3)  # watermark 65 s > 60 s
    [partial] = windows.close_ready()
    assert (partial.count, partial.total, partial.minimum, partial.maximum, partial.sensors) == (
        2,
        42.0,
        20.0,
        22.0,
        {"lyon-1", "lyon-2"},
    )
    assert windows.safe_commit_offset(4) == 2


def test_out_of_order_within_lateness_counts_beyond_is_late() -> None:
    windows = PartitionWindows(0, size_ms=MIN, lateness_ms=30_000)
    windows.add("lyon", "s", 70_000, 20.0, offset=0)
    assert windows.add("lyon", "s", 40_000, 10.0, offset=1)  # 30 s behind: still in its window
    windows.add("lyon", "s", 100_000, 20.0, offset=2)  # watermark 70 s closes [0, 60)
    assert windows.add("lyon", "s", 30_000, 10.0, offset=3) is False  # its window is closed: late
    closed_partials = windows.close_ready()
    counted = [p for p in closed_partials if p.count]
    late = [p for p in closed_partials if p.late]
    assert counted[0].count == 1 and late[0].late == 1 and late[0].start_ms == 0


def test_regional_window_merges_sources_and_waits_for_the_lowest_watermark() -> None:
    regions = RegionWindows(input_partitions=2)
    a = Partial(
        "lyon",
        0,
        MIN,
        source=0,
        count=2,
        total=40.0,
        minimum=19.0,
        maximum=21.0,
        sensors={"x", "y"},
    )
    b = Partial(
        "lyon", 0, MIN, source=1, count=1, total=30.0, minimum=30.0, maximum=30.0, sensors={"z"}
    )
    regions.add_partial(a, partition=0, offset=5)
    regions.add_partial(b, partition=0, offset=6)
    regions.add_partial(a, partition=0, offset=7)  # re-sent after a restart: replaces, not adds
    regions.add_watermark(0, 2 * MIN)
    assert regions.close_ready() == []  # source 1 has not reported
    assert regions.commit_offsets({0: 8}) == {0: 5}
    regions.add_watermark(1, MIN)
    [window] = regions.close_ready()
    assert (window.count, window.mean_c, window.min_c, window.max_c, len(window.sensors)) == (
        3,
        70 / 3,
        19.0,
        30.0,
        3,
    )
    late = Partial("lyon", 0, MIN, source=1, late=2)
    update = regions.add_partial(late, partition=0, offset=9)
    assert update is not None and update.late == 2 and update.republished


def test_closed_windows_are_kept_for_late_counts_then_dropped_even_when_closed_out_of_order() -> (
    None
):
    regions = RegionWindows(input_partitions=1, keep_closed_ms=10 * MIN)

    def minute(region: str, start_min: int) -> None:
        partial = Partial(region, start_min * MIN, (start_min + 1) * MIN, source=0, count=1)
        regions.add_partial(partial, partition=0, offset=start_min)

    for start in range(30):
        minute("lyon", start)
        regions.add_watermark(0, (start + 1) * MIN)
        regions.close_ready()
    assert sorted(start // MIN for _, start in regions.closed) == list(range(19, 30))
    late = Partial("lyon", 25 * MIN, 26 * MIN, source=0, late=1)  # within the kept hours
    assert regions.add_partial(late, partition=0, offset=99).late == 1

    minute("lyon", 3)  # a partial of a window dropped long ago: a new window, closed at once
    [reopened] = regions.close_ready()
    assert reopened.start_ms == 3 * MIN
    regions.add_watermark(0, 45 * MIN)
    regions.close_ready()
    assert regions.closed == {}  # every kept window is dropped once past the horizon


def test_idle_sources_do_not_hold_back_the_watermark() -> None:
    regions = RegionWindows(input_partitions=3)
    regions.add_watermark(0, 5 * MIN)
    regions.add_watermark(1, 4 * MIN)
    regions.add_watermark(2, -1, idle=True)
    assert regions.watermark_ms == 4 * MIN


def test_alignment_pauses_a_partition_running_ahead_and_resumes_it_within_half() -> None:
    minute = 60_000
    ahead = 10 * minute
    # partition 2 is 11 minutes ahead of the slowest (partition 0): paused
    assert alignment({0: 0, 1: 5 * minute, 2: 11 * minute}, {}, set(), ahead) == ({2}, set())
    # still 6 minutes ahead: stays paused (no flapping at the edge)
    assert alignment({0: 5 * minute, 2: 11 * minute}, {}, {2}, ahead) == (set(), set())
    # within half of the limit: resumed
    assert alignment({0: 6 * minute, 2: 11 * minute}, {}, {2}, ahead) == (set(), {2})
    # the slowest partition may belong to another instance (its heartbeats say where it is)
    assert alignment({3: 11 * minute}, {0: 0}, set(), ahead) == ({3}, set())
    # a partition with nothing read yet holds nobody back; nothing left behind: all resume
    assert alignment({0: NO_WATERMARK, 1: 0}, {}, set(), ahead) == (set(), set())
    assert alignment({}, {}, {1, 4}, ahead) == (set(), {1, 4})


def test_heat_fires_once_then_resolves_with_the_same_id() -> None:
    history, tracker = RegionHistory(), AlertTracker()
    events = []
    for minute, mean in enumerate([25, 31, 33, 32, 28, 27]):
        for condition in evaluate(closed("lyon", minute, mean), history, RULES):
            if condition.rule == "heat" and (alert := tracker.update(condition)):
                events.append(alert)
    assert [(a.status, a.window_start) for a in events] == [
        ("firing", "1970-01-01T00:01:00.000Z"),
        ("resolved", "1970-01-01T00:01:00.000Z"),
    ]
    assert events[0].alert_id == events[1].alert_id


def test_per_region_override_raises_the_heat_limit() -> None:
    conditions = evaluate(closed("dakar", 0, 35.0), RegionHistory(), RULES)
    heat = next(c for c in conditions if c.rule == "heat")
    assert heat.threshold == 38.0 and not heat.active


def test_drastic_change_compares_with_n_windows_earlier() -> None:
    history = RegionHistory()
    for minute in range(5):
        evaluate(closed("paris", minute, 12.0), history, RULES)
    change = next(
        c for c in evaluate(closed("paris", 5, 3.0), history, RULES) if c.rule == "drastic_change"
    )
    assert change.active and change.value == -9.0


def test_silent_sensor_after_its_silence_period() -> None:
    history = RegionHistory()
    evaluate(closed("nice", 0, 15.0, sensors=("nice-1", "nice-2")), history, RULES)
    for minute in range(1, 6):
        conditions = evaluate(closed("nice", minute, 15.0, sensors=("nice-1",)), history, RULES)
    silent = next(c for c in conditions if c.rule == "silent_sensor")
    assert silent.active and "nice-2" in silent.message


def test_bad_data_share() -> None:
    bad = next(
        c
        for c in evaluate(closed("brest", 0, 10.0, invalid=5, count=10), RegionHistory(), RULES)
        if c.rule == "bad_data"
    )
    assert bad.active and bad.value == round(5 / 15, 4)


def test_rules_file_errors_name_the_problem(tmp_path: Path) -> None:
    broken = tmp_path / "rules.toml"
    broken.write_text("[rules.hot]\nthreshold_c = 1\n")
    with pytest.raises(ClimateWatchError, match=r"unknown rule\(s\) \['hot'\]"):
        load_rules(broken)
    with pytest.raises(ClimateWatchError, match="rules file not found"):
        load_rules(tmp_path / "missing.toml")


# --- a handover: the next owner does not close again what the previous one closed --------------
def lyon_partial(source: int, start_min: int, sensors: set[str]) -> Partial:
    partial = Partial("lyon", start_min * MIN, (start_min + 1) * MIN, source)
    for sensor in sensors:
        partial.count += 1
        partial.total += 20.0
        partial.minimum, partial.maximum = min(partial.minimum, 20.0), max(partial.maximum, 20.0)
        partial.sensors.add(sensor)
    return partial


def test_a_new_owner_leaves_the_windows_its_predecessor_closed_alone() -> None:
    """The previous owner closed minute 0 (both sources' partials in) and committed at the
    first partial of minute 1, the window still open. Source 1 was slow: its partial of
    minute 0 came after that offset. Re-read from there alone, minute 0 would close again
    with lyon-b only: a window missing half its sensors, as if they had gone silent."""
    before = RegionWindows(input_partitions=2)
    before.add_partial(lyon_partial(0, 0, {"lyon-a"}), partition=0, offset=10)
    before.add_partial(lyon_partial(0, 1, {"lyon-a"}), partition=0, offset=11)  # committed here
    before.add_partial(lyon_partial(1, 0, {"lyon-b"}), partition=0, offset=12)
    before.add_watermark(0, 2 * MIN)
    before.add_watermark(1, 1 * MIN)
    [minute_0] = before.close_ready()
    assert minute_0.sensors == {"lyon-a", "lyon-b"}
    assert before.commit_offsets({0: 14}) == {0: 11}
    mark = before.handover_mark()
    assert mark == 1 * MIN

    after = RegionWindows(input_partitions=2)  # the next owner, from offset 11
    after.closed_until_ms = mark
    after.add_partial(lyon_partial(0, 1, {"lyon-a"}), partition=0, offset=11)
    assert after.add_partial(lyon_partial(1, 0, {"lyon-b"}), partition=0, offset=12) is None
    after.add_partial(lyon_partial(1, 1, {"lyon-b"}), partition=0, offset=15)
    after.add_watermark(0, 2 * MIN)
    after.add_watermark(1, 2 * MIN)
    [minute_1] = after.close_ready()  # minute 0 is not closed again, minute 1 is whole
    assert (minute_1.start_ms, minute_1.sensors) == (1 * MIN, {"lyon-a", "lyon-b"})
    assert after.handover_mark() == 2 * MIN


def test_the_handover_mark_never_falls_back() -> None:
    lane = RegionWindows(input_partitions=2)
    lane.add_watermark(0, 5 * MIN)
    lane.add_watermark(1, 2 * MIN, idle=True)  # idle: it holds nothing back
    lane.close_ready()
    lane.add_watermark(1, 2 * MIN)  # readings again: the watermark falls back to 2 min …
    assert lane.watermark_ms == 2 * MIN
    assert lane.handover_mark() == 5 * MIN  # … but what closed on 5 min stays closed
    assert RegionWindows(input_partitions=2).handover_mark() == NO_WATERMARK
