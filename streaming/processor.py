"""The speed layer's Kafka loop: readings → partial windows → regional windows → alerts.

One process runs both stages of :mod:`streaming.windowing`, each with its own consumer
group, so any number of instances share the work:

* stage 1 (group ``climatewatch-alerts``) reads ``temperature-data``; bad records go to
  the DLQ with their original key and bytes and the reason in a header; closed partial
  windows and the partition's watermark go to ``temperature-window-partials``, keyed by
  region;
* stage 2 (group ``climatewatch-alerts-regions``) reads the partials of the regions its
  partitions hold, closes regional windows on the lowest watermark of all input
  partitions, publishes them to ``temperature-window-stats``, runs the rules and
  publishes alerts to ``temperature-alerts`` (key = region, ``acks=all``), then notifies.

**Delivery.** Offsets are committed only after everything derived from the records is
acknowledged (one producer flush, then the commits), and only up to the first record of
a window that is still open. On revocation a stage commits what is safe and drops its
state; on assignment it starts empty and re-reads from the committed offset, which
rebuilds every open window. The rules' memory of the regions a stage-2 assignment brings
(who is firing, recent window means, sensors' last windows, which windows were already
evaluated) is rebuilt from the alerts and window-stats topics, where the previous owner
flushed everything on revocation, before any of their partials is processed. A crash
(kill -9) or a rebalance therefore repeats work, never loses it, and a repeated alert
carries the same ``alert_id``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from include.contract import (
    Rejection,
    format_epoch_ms,
    format_ts,
    future_limit_ms,
    parse_timestamp,
    parse_window_fields,
)
from include.errors import ClimateWatchError
from include.events import Alert, WindowStats
from include.kafka_clients import make_consumer, make_producer
from include.settings import Settings
from streaming.metrics import StreamMetrics
from streaming.notify import Notifier
from streaming.rules import (
    AlertTracker,
    Condition,
    RegionHistory,
    RulesConfig,
    evaluate,
    load_rules,
)
from streaming.silence import SilenceWatch, partition_of
from streaming.windowing import (
    NO_WATERMARK,
    ClosedWindow,
    Partial,
    PartitionWindows,
    RegionWindows,
    alignment,
)

log = logging.getLogger("climatewatch.stream")

HEARTBEAT_EVERY_S = 0.5
ALIGN_WINDOWS = 10  # how many windows a partition's event time may run ahead of the slowest
POLL_WAIT_MS = 20  # longest wait for readings before the loop looks at the partials again
# A consumer between revocation and assignment polls this long. kafka-python 3.0.12 applies
# a join (JoinGroup + SyncGroup) only if it completes while a poll waits for it; one that
# completes between polls is dropped and the join starts over, a new rebalance for the
# whole group. Short waits on a busy loop would make every rebalance repeat itself.
REJOIN_WAIT_MS = 500
UNREADABLE = ("not_json", "not_utf8", "not_object", "oversized")


@dataclass
class _Stage1Partition:
    windows: PartitionWindows
    last_record_wall: float = field(default_factory=time.monotonic)
    last_event_ms: int = NO_WATERMARK
    idle: bool = False
    caught_up: bool = False
    regions_seen: set[str] = field(default_factory=set)


def _partitions_of(consumer: Any, topic: str, timeout_s: float = 10.0) -> set[int]:
    """The topic's partitions, from a fresh metadata fetch (``topics()`` always asks the
    cluster): a topic created a moment ago may need a retry or two to show up, and a
    stream that counted no partition would never close a window."""
    deadline = time.monotonic() + timeout_s
    while True:
        consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            raise ClimateWatchError(
                f"topic {topic!r} does not exist: create the topics with 'climatewatch topics "
                "create' (or check the CLIMATEWATCH_TOPIC_* settings)"
            )
        time.sleep(0.1)


def _release_parked_records(consumer: Any) -> None:
    """Work around kafka-python 3.0.12 losing resumed partitions.

    Records buffered for a partition when it is paused are parked, and handed back after
    ``resume`` only while the fetcher's current-records slot is None; but an exhausted
    slot stays behind as an empty object, and a parked partition is never fetched again:
    the stream stalls for good. Emptying the exhausted slot lets the next poll hand the
    parked records back. Guarded, so a fixed or reshaped client is left alone.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_next_partition_records", None)
    if current is not None and not current and getattr(fetcher, "_paused_partition_records", None):
        fetcher._next_partition_records = None  # type: ignore[union-attr]


def _read_tail(consumer: Any, topic: str, keep: int, timeout_s: float) -> list[Any]:
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


class StreamProcessor:
    def __init__(
        self,
        settings: Settings,
        rules: RulesConfig | None = None,
        *,
        metrics: StreamMetrics | None = None,
        notifier: Notifier | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kafka import ConsumerRebalanceListener

        self.settings = settings
        self.rules = rules or load_rules(settings.rules_file)
        self.metrics = metrics or StreamMetrics()
        self.notifier = notifier or Notifier(settings, self.metrics)
        self.clock = wall_clock
        self.stopping = threading.Event()
        self.producer = make_producer(settings, linger_ms=5, batch_size=256 * 1024)
        consumer_options = {
            "max_poll_records": 5000,
            "fetch_max_bytes": 8 * 1024 * 1024,
            "max_partition_fetch_bytes": 1024 * 1024,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 3_000,
        }
        self.readings = make_consumer(
            settings, group_id=settings.stream_group_id, **consumer_options
        )
        self.partials = make_consumer(
            settings, group_id=f"{settings.stream_group_id}-regions", **consumer_options
        )
        self.stage1: dict[int, _Stage1Partition] = {}
        # stage 2, one lane per partials partition: a region's partials and the watermarks
        # that close its windows must come from the same partition, the only order Kafka
        # keeps (a heartbeat read on another partition may overtake the region's partials)
        self.stage2: dict[int, RegionWindows] = {}
        self.histories: dict[str, RegionHistory] = {}
        # rules already ran up to here (per region): windows re-closed after a restart are
        # republished, but never evaluated twice
        self.evaluated_until: dict[str, int] = {}
        self.tracker = AlertTracker()
        self._last_heartbeat = 0.0
        self._draining = False
        self._next_silence_check = 0.0
        self.silence = SilenceWatch(started=self.clock())
        self._pending_stage1: dict[int, int] = {}  # partition -> next offset, not yet committed
        self._pending_stage2: dict[int, int] = {}
        self._partitions: dict[tuple[str, str], int] = {}  # (topic, region key) -> partition
        self._stage2_assigned: set[int] | None = None  # set by the listener, read by the loop
        self._stage1_rejoining = self._stage2_rejoining = True  # see REJOIN_WAIT_MS
        processor = self

        # kafka-python 3 calls listeners on the consumer's IO thread, where a blocking
        # commit raises: on revocation the outputs are flushed (the producer has its own
        # IO thread) and the safe offsets committed asynchronously. Should that commit
        # lose the race with the rebalance, the next owner re-reads from the previous
        # commit and repeats alerts with the same ids, which is the guarantee anyway.
        class Stage1Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                processor._stage1_rejoining = True
                processor._flush_and_commit(blocking=False)
                for tp in revoked:
                    processor.stage1.pop(tp.partition, None)
                log.info(
                    "readings partitions revoked",
                    extra={"partitions": sorted(tp.partition for tp in revoked)},
                )

            def on_partitions_assigned(self, assigned: Any) -> None:
                processor._stage1_rejoining = False
                for tp in assigned:
                    processor.stage1[tp.partition] = _Stage1Partition(
                        PartitionWindows(
                            tp.partition, processor.rules.window_ms, processor.rules.lateness_ms
                        )
                    )
                log.info(
                    "readings partitions assigned",
                    extra={"partitions": sorted(tp.partition for tp in assigned)},
                )

        class Stage2Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                processor._stage2_rejoining = True
                processor._flush_and_commit(blocking=False)

            def on_partitions_assigned(self, assigned: Any) -> None:
                # the rebuild itself waits for the main loop: this runs on the client's
                # IO thread, and the loop may be in the middle of a batch
                processor._stage2_assigned = {tp.partition for tp in assigned}
                processor._stage2_rejoining = False
                log.info(
                    "region partitions assigned",
                    extra={"partitions": sorted(tp.partition for tp in assigned)},
                )

        self.readings.subscribe([settings.topic_readings], listener=Stage1Listener())
        self.partials.subscribe([settings.topic_window_partials], listener=Stage2Listener())
        # Counted after subscribing: the metadata fetch then also tells the group
        # coordinator the topic's partitions before its first join. The other way round,
        # a group leader joins with no partitions known, must rejoin at once, and
        # kafka-python 3.0.12 can lose that second join's assignment when the poll that
        # started it returns first: the partitions then stay "pending revocation", and
        # are never fetched again.
        self.input_partitions = len(_partitions_of(self.readings, settings.topic_readings))
        self.partials_partitions = sorted(
            _partitions_of(self.partials, settings.topic_window_partials)
        )

    # --- the rules' memory, rebuilt on every stage-2 assignment ----------------------------
    def restore_state(self, owned: set[int], timeout_s: float = 30.0) -> int:
        """Rebuild the rules' memory of the regions whose partials partitions are ``owned``
        from the outputs: the alerts topic says who is firing, the
        recent window stats give the means, sensors and windows already evaluated.

        Everything known before is dropped: for the regions kept, the topics hold at least
        what this instance knew (it flushed on revocation); the others are not ours now.
        """

        partials_count = len(self.partials_partitions)

        def ours(region: str) -> bool:
            return partition_of(region, partials_count) in owned

        self.histories = {}
        self.evaluated_until = {}
        self.tracker.firing.clear()
        consumer = make_consumer(self.settings)
        restored = 0
        try:
            for topic, keep in (
                (self.settings.topic_window_stats, 2000),
                (self.settings.topic_alerts, 20_000),
            ):
                records = _read_tail(consumer, topic, keep, timeout_s)
                for record in records:
                    try:
                        if topic == self.settings.topic_alerts:
                            alert = Alert.from_json(record.value)
                            if ours(alert.region):
                                self.tracker.restore(alert)
                                restored += 1
                        else:
                            stats = WindowStats.from_json(record.value)
                            if ours(stats.region):
                                restored += self._remember_window(stats)
                    except Exception:  # a record of another shape is not ours to judge here
                        continue
        finally:
            consumer.close()
        self.tracker.seed(self.histories, self.rules)
        self.silence.knows(set(self.histories))
        for history in self.histories.values():
            ordered = sorted(set(history.means))
            history.means.clear()
            history.means.extend(ordered)
        log.info(
            "rule state restored",
            extra={
                "records": restored,
                "regions": len(self.histories),
                "firing": len(self.tracker.firing),
                "partitions": sorted(owned),
            },
        )
        return restored

    def _remember_window(self, stats: WindowStats) -> int:
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

    # --- stage 1 -------------------------------------------------------------------------
    def _process_readings(self, batches: dict[Any, list[Any]]) -> int:
        produced = 0
        dlq = self.settings.topic_dlq
        metrics = self.metrics
        now = self.clock()
        limit_ms = future_limit_ms()  # once per poll, not per reading
        for tp, records in batches.items():
            state = self.stage1.get(tp.partition)
            if state is None:
                continue
            windows = state.windows
            add = windows.add
            regions_seen = state.regions_seen
            last_event_ms = state.last_event_ms
            valid = late = 0
            for record in records:
                fields = parse_window_fields(record.value, limit_ms)
                if type(fields) is tuple:
                    sensor_id, region, event_ms, temperature = fields
                    if add(region, sensor_id, event_ms, temperature, record.offset):
                        valid += 1
                    else:
                        late += 1
                    if event_ms > last_event_ms:
                        last_event_ms = event_ms
                    regions_seen.add(region)
                else:
                    self._to_dlq(dlq, record, fields, windows)
                    produced += 1
            state.last_event_ms = last_event_ms
            state.last_record_wall = now
            state.idle = False
            if records:
                self._pending_stage1[tp.partition] = records[-1].offset + 1
                metrics.records.labels("valid").inc(valid)
                metrics.records.labels("late").inc(late)
                metrics.latency.observe(max(0.0, time.time() - records[-1].timestamp / 1000))
            closed = windows.close_ready()
            if closed:  # tell stage 2 at once: waiting for the periodic heartbeat adds latency
                produced += self._send_partials(closed) + self._send_heartbeat(
                    tp.partition, state, now
                )
        return produced

    def _send_partials(self, partials: list[Partial]) -> int:
        """One message per region (its partials in order), keyed by region like each partial."""
        by_region: dict[str, list[dict[str, Any]]] = {}
        for partial in partials:
            by_region.setdefault(partial.region, []).append(partial.to_message())
        for region, items in by_region.items():
            self._send_keyed(
                self.settings.topic_window_partials,
                region,
                orjson.dumps({"type": "partials", "items": items}),
            )
        return len(by_region)

    def _send_keyed(self, topic: str, region: str, value: bytes) -> None:
        """Send keyed by region to the partition Kafka's default partitioner would pick,
        remembered per key: kafka-python hashes every key in pure Python (~20 µs)."""
        target = self._partitions.get((topic, region))
        if target is None:
            count = len(self.producer.partitions_for(topic))
            target = self._partitions[(topic, region)] = partition_of(region, count)
        self.producer.send(topic, key=region.encode(), value=value, partition=target)

    def _to_dlq(
        self, dlq: str, record: Any, rejection: Rejection, windows: PartitionWindows
    ) -> None:
        self.producer.send(
            dlq,
            key=record.key,
            value=record.value,
            headers=[
                ("reason", rejection.reason.encode()),
                ("detail", rejection.detail.encode()[:500]),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ],
        )
        self.metrics.records.labels("invalid").inc()
        self.metrics.invalid.labels(rejection.reason).inc()
        region = event_ms = None
        if rejection.reason not in UNREADABLE:
            try:
                body = orjson.loads(record.value)
                region = body.get("region") if isinstance(body.get("region"), str) else None
                ts = parse_timestamp(body.get("ts"))
                event_ms = None if isinstance(ts, Rejection) else int(ts.timestamp() * 1000)
            except Exception:
                region = event_ms = None
        windows.add_invalid(region, event_ms, record.offset)

    def _heartbeats(self, force: bool = False) -> int:
        """Each input partition's watermark (and idleness) to every partials partition."""
        now = self.clock()
        if not force and now - self._last_heartbeat < HEARTBEAT_EVERY_S:
            return 0
        self._last_heartbeat = now
        sent = 0
        for partition, state in self.stage1.items():
            self._update_idleness(partition, state, now)
            sent += self._send_partials(state.windows.close_ready())  # idleness moves watermarks
            sent += self._send_heartbeat(partition, state, now)
            state.regions_seen.clear()
        return sent

    def _align_partitions(self, now: float) -> None:
        """Pause the input partitions whose event time ran ahead on a backlog (see
        :func:`streaming.windowing.alignment`); a live stream, caught up, never pauses."""
        from kafka import TopicPartition

        own = {p: s.windows.watermark_ms for p, s in self.stage1.items() if not s.caught_up}
        others: dict[int, int] = {}
        for lane in self.stage2.values():
            for source, watermark in lane.watermarks.items():
                caught_up, _, heard_at = self.silence.sources.get(source, (True, 0.0, 0.0))
                if source in self.stage1 or caught_up or now - heard_at > 10:
                    continue  # ours (known first-hand), nothing left to read, or gone quiet
                others[source] = max(watermark, others.get(source, NO_WATERMARK))
        topic = self.settings.topic_readings
        paused = {tp.partition for tp in self.readings.paused() if tp.topic == topic}
        pause, resume = alignment(own, others, paused, self.rules.window_ms * ALIGN_WINDOWS)
        if pause:
            self.readings.pause(*(TopicPartition(topic, p) for p in sorted(pause)))
            self.metrics.pauses.inc(len(pause))
        if resume:
            self.readings.resume(*(TopicPartition(topic, p) for p in sorted(resume)))
        _release_parked_records(self.readings)
        self.metrics.paused.set(len(paused | pause) - len(resume))

    def _send_heartbeat(self, partition: int, state: _Stage1Partition, now: float) -> int:
        message = orjson.dumps(
            {
                "type": "watermark",
                "source": partition,
                "watermark_ms": state.windows.watermark_ms,
                "idle": state.idle,
                "caught_up": state.caught_up,
                "quiet_s": round(now - state.last_record_wall, 3),
                "regions": sorted(state.regions_seen),
            }
        )
        for target in self.partials_partitions:
            self.producer.send(self.settings.topic_window_partials, value=message, partition=target)
        return len(self.partials_partitions)

    def _update_idleness(self, partition: int, state: _Stage1Partition, now: float) -> None:
        """Idle: caught up with the partition's end and nothing read for the idle timeout.
        An idle partition's event clock then follows the wall clock from its last event."""
        from kafka import TopicPartition

        tp = TopicPartition(self.settings.topic_readings, partition)
        highwater = self.readings.highwater(tp)
        try:
            position = self.readings.position(tp, timeout_ms=100)
        except Exception:
            position = None
        caught_up = highwater is not None and position is not None and position >= highwater
        state.caught_up = caught_up
        quiet_s = now - state.last_record_wall
        # when draining (--until-caught-up), a caught-up partition that never had a reading
        # has nothing to wait for; a live stream gives it the idle timeout like any other
        never_had_data = self._draining and state.last_event_ms == NO_WATERMARK
        state.idle = caught_up and (never_had_data or quiet_s >= self.settings.idle_timeout_s)
        if state.idle and state.last_event_ms != NO_WATERMARK:
            state.windows.advance_to(
                state.last_event_ms + int(quiet_s * 1000) - state.windows.lateness_ms
            )

    # --- stage 2 -------------------------------------------------------------------------
    def _process_partials(self, batches: dict[Any, list[Any]]) -> int:
        produced = 0
        emitted_at = format_ts(datetime.now(UTC))  # once per poll: windows close in bursts
        for tp, records in batches.items():
            lane = self.stage2.get(tp.partition)
            if lane is None:
                lane = self.stage2[tp.partition] = RegionWindows(self.input_partitions)
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
                        produced += self._publish_window(update, emitted_at)
            if records:
                self._pending_stage2[tp.partition] = records[-1].offset + 1
        closed = [window for lane in self.stage2.values() for window in lane.close_ready()]
        for window in closed:
            produced += self._publish_window(window, emitted_at)
            if window.end_ms <= self.evaluated_until.get(window.region, NO_WATERMARK):
                continue
            self.evaluated_until[window.region] = window.end_ms
            history = self.histories.setdefault(window.region, RegionHistory())
            produced += self._alert_on(evaluate(window, history, self.rules))
        produced += self._silence_alerts()
        self.metrics.open_windows.set(
            sum(len(lane.open) for lane in self.stage2.values())
            + sum(len(s.windows.open) for s in self.stage1.values())
        )
        return produced

    def _silence_alerts(self) -> int:
        """Region and input silence, on processing time (no window closes for a silent region)."""
        now = self.clock()
        if now < self._next_silence_check:
            return 0
        self._next_silence_check = now + 1.0
        owned = {tp.partition for tp in self.partials.assignment()}
        return self._alert_on(
            self.silence.conditions(
                now, self.rules, owned, len(self.partials_partitions), self.input_partitions
            )
        )

    def _alert_on(self, conditions: list[Condition]) -> int:
        """Turn conditions into alert events: to the alerts topic, the metrics, the notifiers."""
        produced = 0
        for condition in conditions:
            alert = self.tracker.update(condition)
            if alert is not None:
                self._send_keyed(self.settings.topic_alerts, alert.region, alert.to_json())
                self.metrics.alerts.labels(alert.rule, alert.status).inc()
                self.notifier.notify(alert)
                produced += 1
        return produced

    def _publish_window(self, window: ClosedWindow, emitted_at: str) -> int:
        stats = WindowStats(
            region=window.region,
            window_start=format_epoch_ms(window.start_ms),
            window_end=format_epoch_ms(window.end_ms),
            count=window.count,
            mean_c=window.mean_c if window.mean_c is not None else float("nan"),
            min_c=window.min_c if window.min_c is not None else float("nan"),
            max_c=window.max_c if window.max_c is not None else float("nan"),
            sensors=len(window.sensors),
            late=window.late,
            invalid=window.invalid,
            closed_by=window.closed_by,  # type: ignore[arg-type]
            emitted_at=emitted_at,
            sensor_ids=sorted(window.sensors),
        )
        self._send_keyed(self.settings.topic_window_stats, window.region, stats.to_json())
        self.metrics.windows.labels(window.closed_by).inc()
        return 1

    # --- commits ---------------------------------------------------------------------------
    def _flush_and_commit(self, *, blocking: bool = True) -> None:
        """Flush every output, then commit what is safe: never past an open window's start.

        ``blocking=False`` (rebalance listeners) sends the commits without waiting.
        """
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        self.producer.flush(timeout=60)
        if self._pending_stage1:
            commits = {}
            for partition, next_offset in self._pending_stage1.items():
                state = self.stage1.get(partition)
                safe = state.windows.safe_commit_offset(next_offset) if state else next_offset
                commits[TopicPartition(self.settings.topic_readings, partition)] = (
                    OffsetAndMetadata(safe, "", -1)
                )
            (self.readings.commit if blocking else self.readings.commit_async)(commits)
            self._pending_stage1.clear()
        if self._pending_stage2:
            safe = {
                p: lane.commit_offsets({p: o})[p] if (lane := self.stage2.get(p)) else o
                for p, o in self._pending_stage2.items()
            }
            (self.partials.commit if blocking else self.partials.commit_async)(
                {
                    TopicPartition(self.settings.topic_window_partials, p): OffsetAndMetadata(
                        o, "", -1
                    )
                    for p, o in safe.items()
                }
            )
            self._pending_stage2.clear()

    # --- the loop ----------------------------------------------------------------------------
    def run(self, *, until_caught_up: bool = False, max_runtime_s: float | None = None) -> None:
        """Process until stopped (SIGTERM/SIGINT), or until everything present at start is done."""
        started = time.monotonic()
        target_readings: dict[Any, int] | None = None
        target_partials: dict[Any, int] | None = None
        commit_due = time.monotonic() + 1.0
        while not self.stopping.is_set():
            # Short waits on both consumers: a stage that blocks on an empty topic delays the
            # other's records (a 100 ms wait on the partials cost every alert ~100 ms).
            produced = self._process_readings(
                self.readings.poll(
                    timeout_ms=REJOIN_WAIT_MS if self._stage1_rejoining else POLL_WAIT_MS
                )
            )
            produced += self._heartbeats()
            self._align_partitions(self.clock())  # after every poll: one poll may jump far
            partials = self.partials.poll(
                timeout_ms=REJOIN_WAIT_MS if self._stage2_rejoining else 0
            )
            if self._stage2_assigned is not None:  # before any record of the new assignment
                owned, self._stage2_assigned = self._stage2_assigned, None
                self.stage2 = {}
                self.restore_state(owned)
            produced += self._process_partials(partials)
            if time.monotonic() >= commit_due or produced > 20_000:
                self._flush_and_commit()
                self._export_lag()
                commit_due = time.monotonic() + 1.0
            if max_runtime_s is not None and time.monotonic() - started > max_runtime_s:
                break
            if until_caught_up:
                assigned = self.readings.assignment()
                if target_readings is None and assigned:
                    target_readings = self.readings.end_offsets(list(assigned))
                if target_readings is not None and all(
                    self.readings.position(tp) >= end for tp, end in target_readings.items()
                ):
                    parts = self.partials.assignment()
                    if target_partials is None and parts:  # stage 2 may still be joining
                        self._draining = True
                        self._heartbeats(force=True)
                        self._flush_and_commit()
                        target_partials = self.partials.end_offsets(list(parts))
                    elif target_partials is not None and all(
                        self.partials.position(tp) >= end for tp, end in target_partials.items()
                    ):
                        break
        self.close()

    def _export_lag(self) -> None:
        for tp in self.readings.assignment():
            highwater = self.readings.highwater(tp)
            if highwater is not None:
                try:
                    self.metrics.lag.labels(str(tp.partition)).set(
                        highwater - self.readings.position(tp)
                    )
                except Exception:
                    continue

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Finish: flush, commit, leave both groups, stop the notifiers."""
        try:
            self._flush_and_commit()
        finally:
            self.readings.close()
            self.partials.close()
            self.producer.close(timeout=10)
            self.notifier.close()
        log.info("stream stopped")


def install_signal_handlers(processor: StreamProcessor) -> None:
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
