"""Silence as an event: a region, or the whole input, that stops sending.

Event-time windows only close when newer events arrive, so silence needs processing time.
Every input partition's heartbeat (stage 1, every half second) says which regions it
read since the previous one, whether it is caught up with its end offset, and for how
long it has read nothing. From these, stage 2 derives two conditions, evaluated on the
instance that owns the region's partials partition (so exactly one instance alerts):

* ``region_silent``: no reading from any sensor of a known region for
  ``silent_seconds`` of processing time;
* ``input_silent`` (critical): every input partition is caught up and has read nothing for
  ``silent_seconds`` — the sensor network or its producers are down. A stream that is
  merely catching up on a backlog is never silent: its partitions are not caught up.

**Grace period after a (re)start**: a region the stream knew before it restarted (from
the window-stats topic) counts as heard at the start, so it alerts only after a full
``silent_seconds`` without readings since the start; the input alerts only once every
partition has reported. A restart therefore raises no false silence alert. A region whose
``region_silent`` alert was firing stays silent from when that alert says the silence
began (:meth:`SilenceWatch.still_silent`), so a restart neither resolves it falsely nor
restarts its retirement clock.

**Retirement**: a region not heard from for ``CLIMATEWATCH_RETIRE_AFTER_S`` leaves
``region_heard`` (:meth:`SilenceWatch.retire`); stage 2 then resolves its alerts and
forgets it everywhere (:mod:`streaming.retire`). Heard again, it is new again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka.partitioner.default import murmur2

from include.contract import Rejection, parse_timestamp
from include.events import Alert
from streaming.rules import Condition, RulesConfig
from streaming.windowing import compacted

INPUT = "all"  # the region name of input-wide alerts


def partition_of(region: str, partitions: int) -> int:
    """The partials partition Kafka's default partitioner gives a region's key."""
    return (murmur2(region.encode()) & 0x7FFFFFFF) % partitions


class SilenceWatch:
    def __init__(self, started: float, known_regions: set[str] | None = None) -> None:
        self.started = started
        self.region_heard: dict[str, float] = dict.fromkeys(known_regions or (), started)
        self.sources: dict[int, tuple[bool, float, float]] = {}  # caught_up, quiet_s, at
        # region -> its partials partition (murmur2 in pure Python costs ~12 µs: once per
        # region, not once per region every second); forgotten with the region
        self._partitions: dict[str, int] = {}
        self._partitions_of = 0  # the partition count they were computed for

    def partition(self, region: str, partitions: int) -> int:
        if partitions != self._partitions_of:
            self._partitions, self._partitions_of = {}, partitions
        owner = self._partitions.get(region)
        if owner is None:
            owner = self._partitions[region] = partition_of(region, partitions)
        return owner

    def knows(self, regions: set[str], at: float | None = None) -> None:
        """Regions known from the outputs count as heard ``at`` (default: the start)."""
        since = self.started if at is None else at
        for region in regions:
            self.region_heard.setdefault(region, since)

    def still_silent(
        self, firing: Iterable[Alert], rules: RulesConfig, now: float, now_wall: float
    ) -> None:
        """Regions whose ``region_silent`` alert was firing before a (re)start are silent
        since the silence began (the alert's window start, wall clock), and at least for
        their ``silent_seconds``: the alert keeps firing. Regions heard since keep that."""
        for alert in firing:
            if alert.rule != "region_silent":
                continue
            limit = float(rules.for_region(alert.rule, alert.region).get("silent_seconds", 0))
            began = parse_timestamp(alert.window_start)
            quiet = limit if isinstance(began, Rejection) else now_wall - began.timestamp()
            self.region_heard.setdefault(alert.region, now - max(limit, quiet))

    def retire(self, now: float, after_s: float) -> dict[str, float]:
        """Forget the regions not heard from for ``after_s``; returns them, with how long
        each was quiet."""
        cutoff = now - after_s
        gone = {r: now - at for r, at in self.region_heard.items() if at <= cutoff}
        for region in gone:
            del self.region_heard[region]
            self._partitions.pop(region, None)
        if gone:
            self.region_heard = compacted(self.region_heard)
            self._partitions = compacted(self._partitions)
        return gone

    def heard(self, heartbeat: dict[str, Any], now: float) -> None:
        for region in heartbeat.get("regions", ()):
            self.region_heard[region] = now
        self.sources[heartbeat["source"]] = (
            bool(heartbeat.get("caught_up", False)),
            float(heartbeat.get("quiet_s", 0.0)),
            now,
        )

    def conditions(
        self,
        now: float,
        rules: RulesConfig,
        owned: set[int],
        partials_partitions: int,
        input_partitions: int,
    ) -> list[Condition]:
        conditions = []
        wall_ms = int(time.time() * 1000)
        region_rule = rules.rules.get("region_silent", {})
        if region_rule and region_rule.get("enabled", True) and partials_partitions:
            for region, heard in self.region_heard.items():
                if self.partition(region, partials_partitions) not in owned:
                    continue
                config = rules.for_region("region_silent", region)
                limit = float(config["silent_seconds"])
                quiet = now - heard
                conditions.append(
                    _condition(
                        "region_silent",
                        region,
                        quiet >= limit,
                        quiet,
                        limit,
                        str(config.get("severity", "warning")),
                        f"no reading from any sensor of {region} for {quiet:.0f} s",
                        wall_ms,
                        rules.window_ms,
                    )
                )
        input_rule = rules.rules.get("input_silent", {})
        if (
            input_rule
            and input_rule.get("enabled", True)
            and partials_partitions
            and partition_of(INPUT, partials_partitions) in owned
            and len(self.sources) >= input_partitions > 0
        ):
            limit = float(input_rule["silent_seconds"])
            caught_up = all(c for c, _, _ in self.sources.values())
            quiet = min(q + (now - at) for _, q, at in self.sources.values())
            conditions.append(
                _condition(
                    "input_silent",
                    INPUT,
                    caught_up and quiet >= limit,
                    quiet,
                    limit,
                    str(input_rule.get("severity", "critical")),
                    f"no reading on the input topic for {quiet:.0f} s: sensors or producers are down",
                    wall_ms,
                    rules.window_ms,
                )
            )
        return conditions


def _condition(
    rule: str,
    region: str,
    active: bool,
    quiet_s: float,
    limit_s: float,
    severity: str,
    message: str,
    wall_ms: int,
    window_ms: int,
) -> Condition:
    since_ms = wall_ms - int(quiet_s * 1000)
    start = since_ms - since_ms % window_ms  # the alert's id names when the silence began
    return Condition(
        rule, region, active, start, wall_ms, round(quiet_s, 1), limit_s, severity, message
    )
