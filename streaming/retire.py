"""Retirement: the regions and sensors the stream has not heard from for a while are forgotten.

Every name the stream reads costs memory in stage 2 (when it was last heard, the rules'
history, who is firing, closed windows, the output partition of its key), and every
region it ever heard would keep a silence alert firing forever. A region or sensor not
heard from for ``CLIMATEWATCH_RETIRE_AFTER_S`` of processing time (the clock, like
silence, never event time) is therefore **retired**:

* a region: each alert still firing for it resolves with a message starting with
  :data:`RETIRED` ("retired: not heard from for N s", the Alert contract unchanged: the
  same ``alert_id``, ``status`` resolved), then every per-region structure drops it;
* a sensor (of a region still reporting): its region's history forgets it, and the
  region's silent-sensor alert resolves at its next window, saying how many were retired.

A retired name that comes back is simply new again. Stage 2 sweeps at most once a second
(regions) and once per 1/60 of the retire time (sensors), never per record.

**Restarts.** The rebuild (:mod:`streaming.restore`) must not bring a retired name back
as known, or it would raise a silence alert again. A region is not restored when the last
thing the topics say about it is its retirement (resolved alerts with the
:data:`RETIRED` message, nothing of the region published after them); a region
retired without an alert firing (its region_silent off) comes back as known, with the
usual grace period, and is retired again later: no false alert either way. A sensor is
not restored when its last window's stats were published longer than the retire time
ago (wall clock).

The retire time must exceed every ``silent_seconds`` of ``region_silent`` and
``silent_sensor``: a name must have had the time to raise its silence alert before it is
forgotten. :func:`check_retire_after` refuses anything else at start.
"""

from __future__ import annotations

from include.errors import ClimateWatchError
from include.settings import Settings
from streaming.rules import RulesConfig

RETIRED = "retired: "  # the message of every alert resolved because its region was retired
SILENCE_RULES = ("region_silent", "silent_sensor")
SENSOR_SWEEPS_PER_RETIRE_TIME = 60  # sensors are swept this often within the retire time


def retired_message(quiet_s: float) -> str:
    return f"{RETIRED}not heard from for {quiet_s:.0f} s"


def retired_sensors_note(count: int, retire_after_s: float) -> str:
    return f"{count} sensor(s) {RETIRED}not heard from for {retire_after_s:g} s"


def longest_silence(rules: RulesConfig) -> tuple[str, float] | None:
    """The largest ``silent_seconds`` of the enabled silence rules, with where it is set."""
    longest: tuple[str, float] | None = None
    for rule in SILENCE_RULES:
        tables = [(f"rules.{rule}", rules.rules.get(rule, {}))]
        tables += [
            (f"regions.{region}.{rule}", rules.for_region(rule, region))
            for region, overrides in rules.regions.items()
            if rule in overrides
        ]
        for where, config in tables:
            if not config or config.get("enabled", True) is False:
                continue
            seconds = float(config.get("silent_seconds", 0))
            if longest is None or seconds > longest[1]:
                longest = (f"{where}.silent_seconds", seconds)
    return longest


def check_retire_after(settings: Settings, rules: RulesConfig) -> None:
    """Refuse a retire time that would forget a name before its silence alert could fire."""
    longest = longest_silence(rules)
    if longest is not None and settings.retire_after_s <= longest[1]:
        where, seconds = longest
        raise ClimateWatchError(
            f"invalid setting: CLIMATEWATCH_RETIRE_AFTER_S ({settings.retire_after_s:g} s) must "
            f"be greater than {where} of the rules file ({seconds:g} s): a region or sensor "
            "must have had the time to raise its silence alert before it is retired"
        )
