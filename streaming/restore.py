"""Stage 2's memory for the rules, and how it is rebuilt from the stream's own outputs.

The rules remember, per region: who is firing, recent window means, each sensor's last
window, and up to which window they already ran. That memory is checkpointed nowhere but
in the outputs themselves: the alerts topic says who is firing, the recent window stats
give the rest. On every stage-2 assignment it is rebuilt for the regions the assignment
brings, before any of their partials is processed; the previous owner flushed everything
on revocation, so the topics hold at least what it knew. Windows re-closed after that
are republished but never evaluated twice, and a repeated alert carries the same id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from include.contract import Rejection, parse_timestamp
from include.events import Alert, WindowStats
from include.kafka_clients import make_consumer
from include.settings import Settings
from streaming.rules import AlertTracker, RegionHistory, RulesConfig
from streaming.windowing import NO_WATERMARK

WINDOW_STATS_TAIL = 2000  # records read back per window-stats partition
ALERTS_TAIL = 20_000  # records read back per alerts partition


def read_tail(consumer: Any, topic: str, keep: int, timeout_s: float) -> list[Any]:
    """The last ``keep`` records of every partition of ``topic``, in timestamp order."""
    from kafka import TopicPartition

    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:
        return []
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    begins = consumer.beginning_offsets(partitions)
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

    def restore(
        self,
        settings: Settings,
        rules: RulesConfig,
        ours: Callable[[str], bool],
        timeout_s: float = 30.0,
    ) -> int:
        """Forget everything, then rebuild the memory of the regions ``ours`` accepts from
        the tails of the window-stats and alerts topics; returns the records used."""
        self.forget()
        consumer = make_consumer(settings)
        restored = 0
        try:
            for topic, keep in (
                (settings.topic_window_stats, WINDOW_STATS_TAIL),
                (settings.topic_alerts, ALERTS_TAIL),
            ):
                records = read_tail(consumer, topic, keep, timeout_s)
                restored += self.replay(records, ours, alerts=topic == settings.topic_alerts)
        finally:
            consumer.close()
        self.settle(rules)
        return restored

    def forget(self) -> None:
        self.histories = {}
        self.evaluated_until = {}
        self.tracker.firing.clear()

    def replay(self, records: Iterable[Any], ours: Callable[[str], bool], *, alerts: bool) -> int:
        """Fold published records (alerts, or else window stats) of our regions in."""
        restored = 0
        for record in records:
            try:
                if alerts:
                    alert = Alert.from_json(record.value)
                    if ours(alert.region):
                        self.tracker.restore(alert)
                        restored += 1
                else:
                    stats = WindowStats.from_json(record.value)
                    if ours(stats.region):
                        restored += self.remember_window(stats)
            except Exception:  # a record of another shape is not ours to judge here
                continue
        return restored

    def remember_window(self, stats: WindowStats) -> int:
        """Fold one published window into its region's history, as the rules saw it."""
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
        return 1

    def settle(self, rules: RulesConfig) -> None:
        """After a replay: the sensors firing silent-sensor alerts name are remembered, and
        each region's means are in window order, once each (the tails are in timestamp
        order, and a republished window repeats its record)."""
        self.tracker.seed(self.histories, rules)
        for history in self.histories.values():
            ordered = sorted(set(history.means))
            history.means.clear()
            history.means.extend(ordered)
