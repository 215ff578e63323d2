"""Stage 2's memory for the rules, and how it is rebuilt from the stream's own outputs.

The rules remember, per region: who is firing, recent window means, each sensor's last
window, and up to which window they already ran. That memory is checkpointed nowhere but
in the outputs themselves: the alerts topic says who is firing, the recent window stats
give the rest. On every stage-2 assignment it is rebuilt for the regions the assignment
brings, before any of their partials is processed; the previous owner flushed everything
on revocation, so the topics hold at least what it knew. Windows re-closed after that
are republished but never evaluated twice, and a repeated alert carries the same id;
windows the previous owner's commit says it closed are not re-closed at all (see
:meth:`streaming.windowing.RegionWindows.handover_mark`).

Retired names stay retired (see :mod:`streaming.retire`): a region whose last records are
the alerts its retirement resolved is not rebuilt, nor a sensor whose last window's stats
are older than ``CLIMATEWATCH_RETIRE_AFTER_S``. The live memory forgets retired names
through :meth:`RuleMemory.forget_regions` and :meth:`RuleMemory.retire_sensors`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from include.contract import Rejection, parse_timestamp
from include.events import Alert, WindowStats
from include.kafka_clients import make_consumer
from include.kafka_retry import OFFSETS_ATTEMPT_MS, BrokerLoss
from include.settings import Settings
from streaming.retire import RETIRED, retired_sensors_note
from streaming.rules import AlertTracker, RegionHistory, RulesConfig
from streaming.windowing import NO_WATERMARK, compacted

WINDOW_STATS_TAIL = 2000  # records read back per window-stats partition
ALERTS_TAIL = 20_000  # records read back per alerts partition


def read_tail(consumer: Any, topic: str, keep: int, timeout_s: float) -> list[Any]:
    """The last ``keep`` records of every partition of ``topic``, in timestamp order."""
    from kafka import TopicPartition

    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:
        return []
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions, timeout_ms=OFFSETS_ATTEMPT_MS)
    begins = consumer.beginning_offsets(partitions, timeout_ms=OFFSETS_ATTEMPT_MS)
    for tp in partitions:
        consumer.seek(tp, max(begins[tp], ends[tp] - keep))
    deadline = time.monotonic() + timeout_s
    records: list[Any] = []
    while time.monotonic() < deadline and any(
        consumer.position(tp) < ends[tp] for tp in partitions
    ):
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    records.sort(key=lambda r: r.timestamp)
    return records


class RuleMemory:
    """What the rules of stage 2 remember of the regions it owns."""

    def __init__(self) -> None:
        self.histories: dict[str, RegionHistory] = {}
        # rules already ran up to here (per region): windows re-closed after a restart are
        # republished, but never evaluated twice
        self.evaluated_until: dict[str, int] = {}
        self.tracker = AlertTracker()
        # while replaying (wall-clock seconds, per region): when it last published
        # something, and when its retirement resolved its alerts
        self._activity: dict[str, float] = {}
        self._retired_at: dict[str, float] = {}

    def restore(
        self,
        settings: Settings,
        rules: RulesConfig,
        ours: Callable[[str], bool],
        timeout_s: float = 30.0,
        clock_now: float | None = None,
    ) -> int:
        """Forget everything, then rebuild the memory of the regions ``ours`` accepts from
        the tails of the window-stats and alerts topics; returns the records used.
        ``clock_now``: the stage's processing-time clock now (sensors' retirement)."""
        self.forget()
        consumer = make_consumer(settings)
        restored = 0
        try:
            for topic, keep in (
                (settings.topic_window_stats, WINDOW_STATS_TAIL),
                (settings.topic_alerts, ALERTS_TAIL),
            ):
                loss = BrokerLoss(settings, f"reading back {topic}", client=consumer)
                records = loss.call(read_tail, consumer, topic, keep, timeout_s)
                restored += self.replay(records, ours, alerts=topic == settings.topic_alerts)
        finally:
            consumer.close()
        self.settle(
            rules,
            now_wall=time.time(),
            clock_now=clock_now,
            retire_after_s=settings.retire_after_s,
        )
        return restored

    def forget(self) -> None:
        self.histories = {}
        self.evaluated_until = {}
        self.tracker.firing.clear()
        self._activity, self._retired_at = {}, {}

    def forget_regions(self, regions: Iterable[str]) -> None:
        """Drop retired regions (their firing alerts are resolved by then)."""
        for region in regions:
            self.histories.pop(region, None)
            self.evaluated_until.pop(region, None)
        self.histories = compacted(self.histories)
        self.evaluated_until = compacted(self.evaluated_until)
        self.tracker.firing = compacted(self.tracker.firing)

    def retire_sensors(self, now: float, after_s: float) -> int:
        """Forget the sensors not heard from for ``after_s`` (processing time); returns how
        many. Their region's next silent-sensor condition says so."""
        retired, cutoff = 0, now - after_s
        for history in self.histories.values():
            heard = history.sensor_heard
            if not heard or min(heard.values()) > cutoff:  # the common case, without a list
                continue
            gone = [s for s, at in heard.items() if at <= cutoff]
            if gone:
                history.forget_sensors(gone, retired_sensors_note(len(gone), after_s))
                retired += len(gone)
        return retired

    def sensor_count(self) -> int:
        return sum(len(history.sensor_last_seen_ms) for history in self.histories.values())

    def replay(self, records: Iterable[Any], ours: Callable[[str], bool], *, alerts: bool) -> int:
        """Fold published records (alerts, or else window stats) of our regions in."""
        restored = 0
        for record in records:
            try:
                if alerts:
                    alert = Alert.from_json(record.value)
                    if ours(alert.region):
                        self.tracker.restore(alert)
                        retired = alert.status == "resolved" and alert.message.startswith(RETIRED)
                        _latest(self._retired_at if retired else self._activity, alert, record)
                        restored += 1
                else:
                    stats = WindowStats.from_json(record.value)
                    if ours(stats.region):
                        restored += self.remember_window(
                            stats, _latest(self._activity, stats, record)
                        )
            except Exception:  # a record of another shape is not ours to judge here
                continue
        return restored

    def remember_window(self, stats: WindowStats, emitted_s: float = math.inf) -> int:
        """Fold one published window into its region's history, as the rules saw it;
        ``emitted_s``: when it was published (wall clock), the last time its sensors
        were heard when it is their latest window."""
        start = parse_timestamp(stats.window_start)
        end = parse_timestamp(stats.window_end)
        if isinstance(start, Rejection) or isinstance(end, Rejection):
            return 0
        history = self.histories.setdefault(stats.region, RegionHistory())
        if stats.count:
            history.means.append((int(start.timestamp() * 1000), stats.mean_c))
        end_ms = int(end.timestamp() * 1000)
        if end_ms > self.evaluated_until.get(stats.region, NO_WATERMARK):
            self.evaluated_until[stats.region] = end_ms
        for sensor in stats.sensor_ids or ():
            if end_ms > history.sensor_last_seen_ms.get(sensor, end_ms - 1):
                history.sensor_last_seen_ms[sensor] = end_ms
                history.sensor_heard[sensor] = emitted_s  # a republished window: not newer
        return 1

    def settle(
        self,
        rules: RulesConfig,
        *,
        now_wall: float | None = None,
        clock_now: float | None = None,
        retire_after_s: float = math.inf,
    ) -> None:
        """After a replay: retired regions and sensors are left out (see the module's
        docstring), the sensors firing silent-sensor alerts name are remembered, and each
        region's means are in window order, once each (the tails are in timestamp order,
        and a republished window repeats its record). ``now_wall`` (wall clock) and
        ``clock_now`` (the stage's clock) date when the sensors were heard."""
        now_wall = time.time() if now_wall is None else now_wall
        clock_now = now_wall if clock_now is None else clock_now
        firing = {region for _, region in self.tracker.firing}
        retired = [
            region
            for region, at in self._retired_at.items()
            if at >= self._activity.get(region, -math.inf) and region not in firing
        ]
        self.forget_regions(retired)
        self._activity, self._retired_at = {}, {}
        self.tracker.seed(self.histories, rules)
        for history in self.histories.values():
            ordered = sorted(set(history.means))
            history.means.clear()
            history.means.extend(ordered)
            _date_sensors(history, now_wall, clock_now, retire_after_s)


def _latest(latest: dict[str, float], published: Alert | WindowStats, record: Any) -> float:
    """When ``published`` was (its ``emitted_at``, else the record's timestamp), kept in
    ``latest`` if it is its region's latest; returns it (wall-clock seconds)."""
    emitted = parse_timestamp(published.emitted_at)
    if isinstance(emitted, Rejection):
        emitted_s = getattr(record, "timestamp", 0) / 1000
    else:
        emitted_s = emitted.timestamp()
    if emitted_s > latest.get(published.region, -math.inf):
        latest[published.region] = emitted_s
    return emitted_s


def _date_sensors(
    history: RegionHistory, now_wall: float, clock_now: float, retire_after_s: float
) -> None:
    """Replayed sensors were heard when their latest window was published (wall clock):
    older than the retire time, they were retired before the restart and stay so; the
    others get that time on the stage's clock (a sensor named only by a firing alert:
    now)."""
    heard = history.sensor_heard
    gone = [s for s in heard if now_wall - heard[s] >= retire_after_s]
    if gone:
        history.forget_sensors(gone, retired_sensors_note(len(gone), retire_after_s))
    for sensor in history.sensor_last_seen_ms:
        wall = heard.get(sensor, math.inf)
        heard[sensor] = clock_now - (now_wall - wall) if wall <= now_wall else clock_now
