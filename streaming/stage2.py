"""Stage 2 of the stream: partial windows → regional windows → rules → alerts.

The contract: for each partials partition it owns (its own consumer group), it merges
the partials of the regions keyed there, one per source partition, and closes a regional
window once the lowest watermark of all input partitions that reached that partition
passes its end (a region's partials and the watermarks covering them share a partition,
the only order Kafka keeps). Every closed window goes to the window-stats topic; the
rules run once per window (:mod:`streaming.restore` remembers how far), and silence is
judged on processing time; alerts go to the alerts topic, with one structured log line
each (logger ``climatewatch.alerts``). Delivering them to people is the notification
service's job (``climatewatch notify``, reading the alerts topic in its own consumer
group), not the stream's. The offsets it leaves to commit
(:meth:`PartialsStage.safe_offsets`) never pass the first partial of a window still open.

A new assignment is adopted by the loop (:meth:`PartialsStage.adopt_assignment`), never
on the client's IO thread: the lanes start empty and the rules' memory is rebuilt from
the outputs before any record of the assignment is processed.

A window's stats are published only once the alerts of its evaluation are acknowledged
(:meth:`streaming.outputs.Outputs.window`): the rebuild trusts stats on the topic to mean
"evaluated, and its alerts published", so an alert whose send failed is raised again by
the restart that re-closes its window.

Regions and sensors not heard from for ``CLIMATEWATCH_RETIRE_AFTER_S`` are retired with
the silence checks (:meth:`PartialsStage._retire`, see :mod:`streaming.retire`): memory
stays bounded by the names heard within that time, whatever the flood of names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from include.contract import format_ts
from include.events import Alert
from include.kafka_retry import ride_through
from include.settings import Settings
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.restore import RuleMemory
from streaming.retire import SENSOR_SWEEPS_PER_RETIRE_TIME, retired_message
from streaming.rules import Condition, RegionHistory, RulesConfig, evaluate
from streaming.silence import INPUT, SilenceWatch, partition_of
from streaming.windowing import NO_WATERMARK, Partial, RegionWindows

log = logging.getLogger("climatewatch.stream")
alerts_log = logging.getLogger("climatewatch.alerts")

SILENCE_CHECK_EVERY_S = 1.0
GONE_QUIET_S = 10  # a source unheard for this long no longer holds the others back


class PartialsStage:
    def __init__(
        self,
        settings: Settings,
        rules: RulesConfig,
        metrics: StreamMetrics,
        consumer: Any,
        outputs: Outputs,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.metrics = metrics
        self.consumer = consumer  # the partials consumer: which partitions are ours
        self.outputs = outputs
        self.clock = clock
        # one lane per partials partition: a region's partials and the watermarks that
        # close its windows must come from the same partition, the only order Kafka keeps
        # (a heartbeat read on another partition may overtake the region's partials)
        self.lanes: dict[int, RegionWindows] = {}
        self.memory = RuleMemory()
        self.silence = SilenceWatch(started=clock())
        self.pending: dict[int, int] = {}  # partition -> next offset, not yet committed
        # per partials partition: the handover mark its last commit carried (adopted)
        self.closed_until: dict[int, int] = {}
        # known after subscribing
        self.input_partitions = 0
        self.partials_partitions: list[int] = []
        self._assigned: set[int] | None = None  # set by the listener, adopted by the loop
        self._next_silence_check = 0.0
        self.retire_after_s = settings.retire_after_s
        self._next_sensor_sweep = 0.0

    # --- assignment --------------------------------------------------------------------------
    def assigned(self, partitions: Iterable[int]) -> None:
        """Called by the rebalance listener. The rebuild itself waits for the main loop
        (:meth:`adopt_assignment`): this runs on the client's IO thread, and the loop may
        be in the middle of a batch."""
        partitions = list(partitions)
        self._assigned = set(partitions)
        log.info("region partitions assigned", extra={"partitions": sorted(partitions)})

    def revoked(self, partitions: Iterable[int]) -> None:
        """Nothing to drop yet: the next assignment replaces every lane and the memory."""

    def adopt_assignment(self) -> bool:
        """If an assignment came since the last call: start its lanes empty and rebuild
        the rules' memory of its regions. Call before processing any of its records."""
        if self._assigned is None:
            return False
        owned, self._assigned = self._assigned, None
        self.lanes = {}
        self.restore_state(owned)
        self.closed_until = self.committed_marks(owned)
        return True

    def committed_marks(self, owned: set[int]) -> dict[int, int]:
        """The handover mark each owned partition's last commit carried (its metadata)."""
        from kafka import TopicPartition

        topic, marks = self.settings.topic_window_partials, {}
        for partition in sorted(owned):
            committed = ride_through(
                self.settings,
                f"reading the committed offsets of {topic}",
                self.consumer.committed,
                TopicPartition(topic, partition),
                metadata=True,
            )
            mark = parse_handover_mark(getattr(committed, "metadata", None))
            if mark != NO_WATERMARK:
                marks[partition] = mark
        return marks

    def commit_metadata(self, partition: int) -> str:
        """What the commit of ``partition`` tells its next owner (see
        :meth:`streaming.windowing.RegionWindows.handover_mark`)."""
        lane = self.lanes.get(partition)
        mark = lane.handover_mark() if lane else self.closed_until.get(partition, NO_WATERMARK)
        return format_handover_mark(mark)

    def restore_state(self, owned: set[int], timeout_s: float = 30.0) -> int:
        """Rebuild the rules' memory of the regions whose partials partitions are ``owned``
        from the outputs (see :mod:`streaming.restore`).

        Everything known before is dropped: for the regions kept, the topics hold at least
        what this instance knew (it flushed on revocation); the others are not ours now.
        """
        partials_count = len(self.partials_partitions)

        def ours(region: str) -> bool:
            return partition_of(region, partials_count) in owned

        memory, now = self.memory, self.clock()
        restored = memory.restore(self.settings, self.rules, ours, timeout_s, now)
        firing = memory.tracker.firing
        self.silence.still_silent(firing.values(), self.rules, now, time.time())
        regions = {region for _, region in firing if region != INPUT}
        self.silence.knows(set(memory.histories) | regions, now)
        log.info(
            "rule state restored",
            extra={
                "records": restored,
                "regions": len(self.memory.histories),
                "firing": len(self.memory.tracker.firing),
                "partitions": sorted(owned),
            },
        )
        return restored

    def safe_offsets(self) -> dict[int, int]:
        """The pending positions, held back to the first partial of any window still open."""
        return {
            p: lane.commit_offsets({p: o})[p] if (lane := self.lanes.get(p)) else o
            for p, o in self.pending.items()
        }

    def open_windows(self) -> int:
        return sum(len(lane.open) for lane in self.lanes.values())

    # --- one poll of partials ----------------------------------------------------------------
    def process(self, batches: dict[Any, list[Any]]) -> int:
        """Merge one poll's partials and watermarks, close and publish the windows they
        complete, run the rules and the silence checks; returns the messages produced."""
        produced = 0
        emitted_at = format_ts(datetime.now(UTC))  # once per poll: windows close in bursts
        for tp, records in batches.items():
            lane = self.lanes.get(tp.partition)
            if lane is None:
                lane = self.lanes[tp.partition] = RegionWindows(self.input_partitions)
                lane.closed_until_ms = self.closed_until.get(tp.partition, NO_WATERMARK)
            for record in records:
                try:
                    body = orjson.loads(record.value)
                    if body.get("type") == "watermark":
                        lane.add_watermark(
                            body["source"], body["watermark_ms"], body.get("idle", False)
                        )
                        self.silence.heard(body, self.clock())
                        continue
                    partials = [Partial.from_message(item) for item in body["items"]]
                except Exception:
                    log.exception("unreadable partials skipped", extra={"offset": record.offset})
                    continue
                for partial in partials:
                    update = lane.add_partial(partial, tp.partition, record.offset)
                    if update is not None:
                        produced += self.outputs.window(update, emitted_at)
            if records:
                self.pending[tp.partition] = records[-1].offset + 1
        produced += self._close_windows(emitted_at)
        produced += self._silence_alerts()
        return produced

    def _close_windows(self, emitted_at: str) -> int:
        """Publish every window the watermarks closed; evaluate the rules on the new ones."""
        produced = 0
        memory = self.memory
        closed = [window for lane in self.lanes.values() for window in lane.close_ready()]
        now = self.clock()
        heard = self.silence.region_heard
        for window in closed:
            # the rules first: a window's stats wait for the acknowledgement of the alerts
            # its evaluation raised (the rules' memory is rebuilt from those stats)
            region = window.region
            if window.end_ms > memory.evaluated_until.get(region, NO_WATERMARK):
                memory.evaluated_until[region] = window.end_ms
                history = memory.histories.setdefault(region, RegionHistory())
                produced += self._alert_on(evaluate(window, history, self.rules))
                history.sensor_heard.update(dict.fromkeys(window.sensors, now))
                # remembered, so retired in time (its heartbeats named it, unless its
                # window closed long after them)
                heard.setdefault(region, now)
            produced += self.outputs.window(window, emitted_at)
        return produced

    def _silence_alerts(self) -> int:
        """Region and input silence, on processing time (no window closes for a silent region)."""
        now = self.clock()
        if now < self._next_silence_check:
            return 0
        self._next_silence_check = now + SILENCE_CHECK_EVERY_S
        owned = {tp.partition for tp in self.consumer.assignment()}
        produced = self._alert_on(
            self.silence.conditions(
                now, self.rules, owned, len(self.partials_partitions), self.input_partitions
            )
        )
        return produced + self._retire(now)

    def _retire(self, now: float) -> int:
        """Forget the regions (every second) and sensors (every 1/60 of the retire time) not
        heard from for the retire time; a retired region's firing alerts resolve, saying so."""
        memory, after = self.memory, self.retire_after_s
        gone = self.silence.retire(now, after)
        produced = 0
        if gone:
            for region, quiet in gone.items():
                produced += self._publish(memory.tracker.retire(region, retired_message(quiet)))
            sensors = sum(
                len(history.sensor_last_seen_ms)
                for region in gone
                if (history := memory.histories.get(region)) is not None
            )
            memory.forget_regions(gone)
            for lane in self.lanes.values():
                lane.forget(gone)
            self.outputs.forget(gone)
            self.metrics.retired.labels("region").inc(len(gone))
            self.metrics.retired.labels("sensor").inc(sensors)
            log.info("regions retired", extra={"regions": len(gone), "after_s": after})
        if now >= self._next_sensor_sweep:
            self._next_sensor_sweep = now + max(
                SILENCE_CHECK_EVERY_S, after / SENSOR_SWEEPS_PER_RETIRE_TIME
            )
            self.metrics.retired.labels("sensor").inc(memory.retire_sensors(now, after))
            self.metrics.names.labels("sensor").set(memory.sensor_count())
        self.metrics.names.labels("region").set(len(self.silence.region_heard))
        self.outputs.prune_acknowledged()
        return produced

    def _alert_on(self, conditions: list[Condition]) -> int:
        """Turn conditions into alert events: to the alerts topic, the metrics, the log."""
        tracker = self.memory.tracker
        return self._publish(
            alert for condition in conditions if (alert := tracker.update(condition)) is not None
        )

    def _publish(self, alerts: Iterable[Alert]) -> int:
        """Publish each alert to the alerts topic and log it; returns how many."""
        produced = 0
        for alert in alerts:
            self.outputs.alert(alert)
            log_alert(alert)
            produced += 1
        return produced

    # --- for stage 1's watermark alignment ---------------------------------------------------
    def backlog_watermarks(self, now: float, skip: Container[int]) -> dict[int, int]:
        """The watermarks heard from input partitions still reading a backlog, other than
        those in ``skip`` (this instance's own, known first-hand) and those gone quiet."""
        others: dict[int, int] = {}
        for lane in self.lanes.values():
            for source, watermark in lane.watermarks.items():
                caught_up, _, heard_at = self.silence.sources.get(source, (True, 0.0, 0.0))
                if source in skip or caught_up or now - heard_at > GONE_QUIET_S:
                    continue  # ours (known first-hand), nothing left to read, or gone quiet
                others[source] = max(watermark, others.get(source, NO_WATERMARK))
        return others


HANDOVER_KEY = "closed_until_ms"


def format_handover_mark(mark: int) -> str:
    """The commit metadata for a handover mark ("" for none): small, well under the
    brokers' 4 KB ``offset.metadata.max.bytes``."""
    return "" if mark == NO_WATERMARK else orjson.dumps({HANDOVER_KEY: mark}).decode()


def parse_handover_mark(metadata: object) -> int:
    """The handover mark in a commit's metadata; NO_WATERMARK for anything else (an older
    stream's commit, another tool's, garbage): never raises."""
    try:
        mark = orjson.loads(metadata)[HANDOVER_KEY]  # type: ignore[arg-type]
    except Exception:
        return NO_WATERMARK
    if type(mark) is not int or not NO_WATERMARK < mark < 2**62:
        return NO_WATERMARK
    return mark


def log_alert(alert: Alert) -> None:
    """The structured line of a published alert, on logger ``climatewatch.alerts``."""
    alerts_log.warning(
        "alert %s %s %s",
        alert.status,
        alert.rule,
        alert.region,
        extra={
            "alert_id": alert.alert_id,
            "severity": alert.severity,
            "value": alert.value,
            "threshold": alert.threshold,
            "text": alert.message,
        },
    )
