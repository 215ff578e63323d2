"""Stage 1 of the stream: readings → partial windows per input partition.

The contract: every reading polled from ``temperature-data`` is either folded into its
partition's partial window (or counted late against it) or sent to the DLQ and counted
invalid against the window it claims. A partial goes out, keyed by region, as soon as the
partition's watermark passes its window's end; the watermark itself (with idleness and
the regions read) goes to every partials partition right after, and every
:data:`HEARTBEAT_EVERY_S` anyway, so stage 2 can close windows and notice silence. The
offsets it leaves to commit (:meth:`ReadingsStage.safe_offsets`) never pass the first
reading of a window still open, so a restart re-reads every open window.

On a backlog it also pauses the partitions whose event time ran ahead of the slowest
(watermark alignment), to bound stage 2's open windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from include.contract import Rejection, future_limit_ms, parse_timestamp, parse_window_fields
from include.kafka_retry import refresh_metadata
from include.settings import Settings
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs
from streaming.rules import RulesConfig
from streaming.windowing import NO_WATERMARK, PartitionWindows, alignment

log = logging.getLogger("climatewatch.stream")

HEARTBEAT_EVERY_S = 0.5
CONFIRM_IDLE_EVERY_S = 2.0  # how often a quiet partition's leader is asked for its end
CONFIRM_RETRY_S = 5.0  # after a leader did not answer (each try blocks the loop)
CONFIRM_TIMEOUT_MS = 500
ALIGN_WINDOWS = 10  # how many windows a partition's event time may run ahead of the slowest
UNREADABLE = ("not_json", "not_utf8", "not_object", "oversized")


@dataclass
class InputPartition:
    """What stage 1 knows of one assigned input partition."""

    windows: PartitionWindows
    last_record_wall: float = field(default_factory=time.monotonic)
    last_event_ms: int = NO_WATERMARK
    idle: bool = False
    next_idle_check: float = 0.0  # when to ask the leader for the end again
    caught_up: bool = False
    regions_seen: set[str] = field(default_factory=set)


def idle_verdict(position: int | None, leader_end: int | None) -> bool:
    """A quiet, seemingly caught-up partition is idle only if its leader just confirmed
    that nothing lies past the position; an unknown position or end keeps it waiting."""
    return position is not None and leader_end is not None and position >= leader_end


def release_parked_records(consumer: Any) -> None:
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


class ReadingsStage:
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
        self.consumer = consumer  # the readings consumer: positions, pause and resume
        self.outputs = outputs
        self.clock = clock
        self.partitions: dict[int, InputPartition] = {}
        self.pending: dict[int, int] = {}  # partition -> next offset, not yet committed
        self.partials_partitions: list[int] = []  # heartbeat targets, known after subscribing
        self.draining = False  # --until-caught-up: the end is near, no idle timeout
        self._last_heartbeat = 0.0

    # --- assignment (called by the rebalance listener) ---------------------------------------
    def assigned(self, partitions: Iterable[int]) -> None:
        """Start every assigned partition empty: it re-reads from the committed offset."""
        partitions = list(partitions)
        for partition in partitions:
            self.partitions[partition] = InputPartition(
                PartitionWindows(partition, self.rules.window_ms, self.rules.lateness_ms)
            )
        log.info("readings partitions assigned", extra={"partitions": sorted(partitions)})

    def revoked(self, partitions: Iterable[int]) -> None:
        """Drop the state of revoked partitions (what was safe is committed by then)."""
        partitions = list(partitions)
        for partition in partitions:
            self.partitions.pop(partition, None)
        log.info("readings partitions revoked", extra={"partitions": sorted(partitions)})

    def safe_offsets(self) -> dict[int, int]:
        """The pending positions, held back to the first reading of any window still open."""
        return {
            p: state.windows.safe_commit_offset(o) if (state := self.partitions.get(p)) else o
            for p, o in self.pending.items()
        }

    def open_windows(self) -> int:
        return sum(len(s.windows.open) for s in self.partitions.values())

    def commit_metadata(self, partition: int) -> str:
        """Nothing to tell the next owner: it re-reads every open window's readings."""
        return ""

    # --- one poll of readings ------------------------------------------------------------------
    def process(self, batches: dict[Any, list[Any]]) -> int:
        """Fold one poll's records in; returns how many messages it produced."""
        produced = 0
        metrics = self.metrics
        outputs = self.outputs
        now = self.clock()
        limit_ms = future_limit_ms()  # once per poll, not per reading
        for tp, records in batches.items():
            state = self.partitions.get(tp.partition)
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
                    outputs.dlq(record, fields)
                    _count_invalid(record, fields, windows, limit_ms)
                    produced += 1
            state.last_event_ms = last_event_ms
            state.last_record_wall = now
            state.idle = False
            if records:
                self.pending[tp.partition] = records[-1].offset + 1
                metrics.records.labels("valid").inc(valid)
                metrics.records.labels("late").inc(late)
                metrics.latency.observe(max(0.0, time.time() - records[-1].timestamp / 1000))
            closed = windows.close_ready()
            if closed:  # tell stage 2 at once: waiting for the periodic heartbeat adds latency
                produced += outputs.partials(closed) + self._send_heartbeat(
                    tp.partition, state, now
                )
        return produced

    # --- watermarks and idleness ---------------------------------------------------------------
    def heartbeats(self, force: bool = False) -> int:
        """Each input partition's watermark (and idleness) to every partials partition."""
        now = self.clock()
        if not force and now - self._last_heartbeat < HEARTBEAT_EVERY_S:
            return 0
        self._last_heartbeat = now
        self._update_idleness(now)
        sent = 0
        for partition, state in self.partitions.items():
            sent += self.outputs.partials(state.windows.close_ready())  # idleness moves watermarks
            sent += self._send_heartbeat(partition, state, now)
            state.regions_seen.clear()
        return sent

    def _send_heartbeat(self, partition: int, state: InputPartition, now: float) -> int:
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
        return self.outputs.heartbeat(message, self.partials_partitions)

    def _update_idleness(self, now: float) -> None:
        """Idle: caught up with the partition's end and nothing read for the idle timeout.
        An idle partition's event clock then follows the wall clock from its last event.

        "Caught up" as the consumer sees it is the end its last fetch response reported:
        a frozen leader sends none, so its partitions look caught up and quiet while the
        sensors' readings wait on the producers' side. Closing their windows on the wall
        clock would make those readings late. So a partition becomes (and stays) idle
        only when its leader confirms the end: one ListOffsets request for every
        candidate, at most every :data:`CONFIRM_IDLE_EVERY_S` per partition; a leader that
        does not answer keeps its partitions waiting (:func:`idle_verdict`) and is asked
        again after :data:`CONFIRM_RETRY_S`.
        """
        from kafka import TopicPartition

        topic = self.settings.topic_readings
        positions: dict[int, int | None] = {}
        candidates: list[int] = []  # quiet and caught up, as far as the consumer knows
        for partition, state in self.partitions.items():
            tp = TopicPartition(topic, partition)
            highwater = self.consumer.highwater(tp)
            try:
                position = self.consumer.position(tp, timeout_ms=100)
            except Exception:
                position = None
            positions[partition] = position
            state.caught_up = (
                highwater is not None and position is not None and position >= highwater
            )
            # when draining (--until-caught-up), a caught-up partition that never had a
            # reading has nothing to wait for (its end was read at start)
            if self.draining and state.last_event_ms == NO_WATERMARK:
                state.idle = state.caught_up
            elif state.caught_up and now - state.last_record_wall >= self.settings.idle_timeout_s:
                if now >= state.next_idle_check:
                    candidates.append(partition)
            else:
                state.idle = False
        if candidates:
            ends = self._leaders_ends(candidates)
            for partition in candidates:
                state = self.partitions[partition]
                was_idle = state.idle
                state.idle = idle_verdict(positions[partition], ends.get(partition))
                answered = partition in ends
                state.next_idle_check = now + (
                    CONFIRM_IDLE_EVERY_S if answered else CONFIRM_RETRY_S
                )
                if state.idle != was_idle:
                    log.info(
                        "input partition idle" if state.idle else "input partition not idle",
                        extra={
                            "partition": partition,
                            "quiet_s": round(now - state.last_record_wall, 1),
                            "leader_end": ends.get(partition),
                            "position": positions[partition],
                        },
                    )
        for state in self.partitions.values():
            if state.idle and state.last_event_ms != NO_WATERMARK:
                quiet_ms = int((now - state.last_record_wall) * 1000)
                state.windows.advance_to(state.last_event_ms + quiet_ms - state.windows.lateness_ms)

    def _leaders_ends(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets the partitions' leaders report now; none on any failure."""
        from kafka import TopicPartition

        topic = self.settings.topic_readings
        try:
            ends = self.consumer.end_offsets(
                [TopicPartition(topic, p) for p in partitions], timeout_ms=CONFIRM_TIMEOUT_MS
            )
        except Exception as exc:  # a leader frozen or moving: nothing is confirmed
            refresh_metadata(self.consumer)  # moved: the next try asks the new leader
            log.info(
                "the end of quiet partitions could not be confirmed",
                extra={"partitions": partitions, "error": f"{type(exc).__name__}: {exc}"},
            )
            return {}
        return {tp.partition: end for tp, end in ends.items() if isinstance(end, int)}

    def align(self, others: dict[int, int]) -> None:
        """Pause the input partitions whose event time ran ahead on a backlog (see
        :func:`streaming.windowing.alignment`); a live stream, caught up, never pauses.
        ``others``: the watermarks of the input partitions other instances read, still on
        a backlog (from stage 2's heartbeats)."""
        from kafka import TopicPartition

        own = {p: s.windows.watermark_ms for p, s in self.partitions.items() if not s.caught_up}
        topic = self.settings.topic_readings
        paused = {tp.partition for tp in self.consumer.paused() if tp.topic == topic}
        pause, resume = alignment(own, others, paused, self.rules.window_ms * ALIGN_WINDOWS)
        if pause:
            self.consumer.pause(*(TopicPartition(topic, p) for p in sorted(pause)))
            self.metrics.pauses.inc(len(pause))
        if resume:
            self.consumer.resume(*(TopicPartition(topic, p) for p in sorted(resume)))
        release_parked_records(self.consumer)
        self.metrics.paused.set(len(paused | pause) - len(resume))

    def export_lag(self) -> None:
        """Records behind the end, per assigned partition, to the lag gauge."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                try:
                    self.metrics.lag.labels(str(tp.partition)).set(
                        highwater - self.consumer.position(tp)
                    )
                except Exception:
                    continue


def _count_invalid(
    record: Any, rejection: Rejection, windows: PartitionWindows, limit_ms: int
) -> None:
    """Count a rejected reading against the window it claims, when it is readable enough
    to claim one (else against its partition's latest window).

    A claim beyond the future limit counts at the limit: a record that claims the year
    9999 would otherwise open a window that never closes and hold its partition's
    committed offset there for good.
    """
    region = event_ms = None
    if rejection.reason not in UNREADABLE:
        try:
            body = orjson.loads(record.value)
            region = body.get("region") if isinstance(body.get("region"), str) else None
            ts = parse_timestamp(body.get("ts"))
            event_ms = None if isinstance(ts, Rejection) else int(ts.timestamp() * 1000)
            if event_ms is not None and event_ms > limit_ms:
                event_ms = limit_ms
        except Exception:
            region = event_ms = None
    windows.add_invalid(region, event_ms, record.offset)
