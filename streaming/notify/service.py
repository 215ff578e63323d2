"""``climatewatch notify``: the one service that delivers alerts to people.

It reads ``temperature-alerts`` (speed-layer and data-quality alerts alike) in its own
consumer group, routes each alert to its receivers (:mod:`streaming.notify.routing`),
groups what arrives together, and hands each group to its receiver's worker thread
(:mod:`streaming.notify.worker`).

**An alert's offset is committed only when every receiver routed to it is done with it**:
accepted it, or it was parked on the undeliverable topic with the receiver and the last
error, or it was silenced. Each of those outcomes is first written to the delivery log
(a compacted topic, :mod:`streaming.notify.state`) and acknowledged by the brokers. After a
crash, the alerts past the committed offset are read again, and a (receiver, alert,
status) already in the log is not sent again. What remains at-least-once: a receiver that
accepted a notification just before a crash, before its log record was acknowledged, gets
it again, with the same delivery id (webhook ``Idempotency-Key``, e-mail ``Message-ID``),
so a receiver that deduplicates sees it once.

A receiver that fails (down, 5xx, a timeout) is retried with a growing backoff for
``CLIMATEWATCH_NOTIFY_GIVE_UP_AFTER_S``; its worker delivers in order, so a region's
notifications keep their order. One that refuses for good (a 4xx) is parked at once, and
the service goes on.

Reminders: a firing alert delivered and neither resolved nor acknowledged is sent again
every ``repeat_interval`` of its route. Silences hold notifications back (counted, logged,
written to the log as ``silenced``); a silenced alert still firing when its silence ends
is delivered then.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from include.contract import format_ts
from include.errors import ClimateWatchError
from include.events import Alert
from include.kafka_clients import REJOIN_WAIT_MS, make_consumer, make_producer
from include.kafka_retry import BrokerLoss
from include.settings import Settings
from streaming.notify.config import NotifyConfig, ResolvedRoute
from streaming.notify.messages import Notification
from streaming.notify.metrics import NotifyMetrics
from streaming.notify.reading import alert_from_record, read_to_end
from streaming.notify.receivers import build_sender
from streaming.notify.routing import group_key, load_notify_config, routes_for
from streaming.notify.state import Delivery, DeliveryLog, DeliveryState, Silences, delivery_key
from streaming.notify.worker import Job, PendingGroup, ReceiverWorker

log = logging.getLogger("climatewatch.notify")

POLL_MS = 200
MAX_POLL_RECORDS = 500
COMMIT_EVERY_S = 0.5
SWEEP_EVERY_S = 1.0  # reminders and ended silences
# A resolved alert's log records are tombstoned this long after: long past any re-read of
# its offsets (a restart re-reads minutes, not days), so the log and memory stay bounded.
LOG_RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 3600.0
MAX_OUTSTANDING = 5_000  # alerts read but not done: consumption pauses beyond this


class NotifyService:
    def __init__(
        self,
        settings: Settings,
        config: NotifyConfig | None = None,
        metrics: NotifyMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.config = config if config is not None else load_notify_config(settings)
        self.metrics = metrics or NotifyMetrics()
        self.clock = clock
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.log_state = DeliveryLog()
        self.silences = Silences()
        self.producer = make_producer(settings, linger_ms=0)
        self.state = make_consumer(settings, enable_auto_commit=False)
        self.consumer = make_consumer(
            settings,
            group_id=settings.notify_group_id,
            max_poll_records=MAX_POLL_RECORDS,
            enable_auto_commit=False,
        )
        self.workers = {
            name: ReceiverWorker(self, build_sender(receiver, self.config.ui_base_url))
            for name, receiver in self.config.receivers.items()
        }
        self.groups: dict[tuple[str, str], PendingGroup] = {}
        self.outstanding: dict[Any, dict[int, int]] = defaultdict(dict)  # tp -> offset -> n
        self.next_offset: dict[Any, int] = {}
        self.committed: dict[Any, int] = {}
        self.finished_jobs: queue.Queue[Job] = queue.Queue()
        self.swept: set[bytes] = set()  # log keys with a reminder or late delivery queued
        self.in_flight: set[bytes] = set()  # delivery keys grouped or queued, not yet logged
        self.paused = False
        self.rejoining = True  # until the group's first assignment (see REJOIN_WAIT_MS)
        self._lock = threading.Lock()  # the log state: written by workers, read by the loop

    # --- the loop ---------------------------------------------------------------------------
    def run(self, max_runtime_s: float | None = None) -> None:
        """Deliver until stopped (SIGTERM, :meth:`stop`) or ``max_runtime_s``."""
        deadline = None if max_runtime_s is None else time.monotonic() + max_runtime_s
        try:
            self._read_state_to_end()
            self._subscribe()
            for worker in self.workers.values():
                worker.start()
            log.info(
                "notification service started",
                extra={
                    "receivers": ",".join(self.workers) or "none (alerts are logged only)",
                    "group": self.settings.notify_group_id,
                    "topic": self.settings.topic_alerts,
                },
            )
            next_commit = next_sweep = 0.0
            next_prune = time.monotonic() + 60
            while not self.stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._poll_state()
                self._poll_alerts()
                self._drain_finished()
                self._flush_groups()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep()
                    next_sweep = now + SWEEP_EVERY_S
                if now >= next_prune:
                    self._prune()
                    next_prune = now + PRUNE_EVERY_S
                self._apply_backpressure()
                if now >= next_commit:
                    self._commit()
                    next_commit = now + COMMIT_EVERY_S
            if self.failure is not None:
                raise self.failure
        finally:
            self.close()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def fail(self, exc: BaseException) -> None:
        """A worker could not record an outcome: nothing is committed past it."""
        self.failure = exc
        self.stopping.set()

    def close(self) -> None:
        self.stopping.set()
        for worker in self.workers.values():
            worker.jobs.put(None)
        for worker in self.workers.values():
            if worker.is_alive():
                worker.join(timeout=10)
        with contextlib.suppress(Exception):  # the log records still on their way
            self.producer.flush(timeout=10)
        self._drain_finished()
        if self.failure is None:
            try:
                self._commit()
            except Exception as exc:
                log.warning("final commit failed: read again on restart", extra={"error": str(exc)})
        for client in (self.consumer, self.state):
            client.close()
        self.producer.close(timeout=10)

    # --- state topics -----------------------------------------------------------------------
    def _read_state_to_end(self) -> None:
        topics = (self.settings.topic_notify_deliveries, self.settings.topic_silences)
        read_to_end(self.settings, self.state, topics, self._apply_state)
        log.info(
            "notification state read",
            extra={
                "deliveries": len(self.log_state.done),
                "silences": len(self.silences.silences),
                "acks": len(self.silences.acks),
            },
        )

    def _apply_state(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        with self._lock:
            if topic == self.settings.topic_notify_deliveries:
                self.log_state.apply(key, value)
            else:
                self.silences.apply(key, value)

    def _poll_state(self) -> None:
        for tp, records in self.state.poll(timeout_ms=0).items():
            for record in records:
                self._apply_state(tp.topic, record.key, record.value)

    def _record(self, deliveries: Iterable[Delivery]) -> None:
        """Write outcomes to the delivery log and wait for the brokers' acknowledgement."""
        loss = BrokerLoss(self.settings, "writing the delivery log")
        records = list(deliveries)
        pending = records
        while pending:
            futures = [
                (d, self.producer.send(self.settings.topic_notify_deliveries, d.to_json(), d.key))
                for d in pending
            ]
            failed = []
            for delivery, future in futures:
                try:
                    future.get(timeout=self.settings.producer_delivery_timeout_ms / 1000)
                except Exception as exc:
                    loss.failed(exc)  # raises when not retriable or past the bound
                    failed.append(delivery)
            pending = failed
        self._logged(records)

    def _record_then(self, deliveries: list[Delivery], then: Callable[[], None]) -> None:
        """Write outcomes to the delivery log without waiting: ``then()`` runs once the
        brokers acknowledged all of them (the producer retries on its own for
        ``CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS``; a failure past that stops the
        service, uncommitted). The worker goes on to its next notification meanwhile."""
        remaining = [len(deliveries)]
        guard = threading.Lock()

        def acked(_metadata: Any) -> None:
            with guard:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._logged(deliveries)
                then()

        def failed(exc: BaseException) -> None:
            self.fail(ClimateWatchError(f"could not write the delivery log: {exc}"))

        topic = self.settings.topic_notify_deliveries
        for delivery in deliveries:
            future = self.producer.send(topic, delivery.to_json(), delivery.key)
            future.add_callback(acked)
            future.add_errback(failed)

    def _logged(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            for delivery in deliveries:
                self.log_state.apply(delivery.key, delivery.to_json())
                self.in_flight.discard(delivery.key)

    # --- alerts in --------------------------------------------------------------------------
    def _subscribe(self) -> None:
        from kafka import ConsumerRebalanceListener

        service = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                service.rejoining = True
                service._commit(only=set(revoked))
                for tp in revoked:
                    service.next_offset.pop(tp, None)
                    service.outstanding.pop(tp, None)

            def on_partitions_assigned(self, assigned: Any) -> None:
                service.rejoining = False
                service._poll_state()  # what another owner delivered, before reading on

        self.consumer.subscribe([self.settings.topic_alerts], listener=Listener())

    def _poll_alerts(self) -> None:
        batches = self.consumer.poll(timeout_ms=REJOIN_WAIT_MS if self.rejoining else POLL_MS)
        now = self.clock()
        for tp, records in batches.items():
            for record in records:
                self._take(tp, record.offset, record.value, now)
                self.next_offset[tp] = record.offset + 1

    def _take(self, tp: Any, offset: int, raw: bytes | None, now: datetime) -> None:
        alert = alert_from_record(raw)
        if isinstance(alert, str):
            self.metrics.invalid.inc()
            log.warning(
                "record on the alerts topic skipped",
                extra={"partition": tp.partition, "offset": offset, "reason": alert},
            )
            return
        log.info(
            "alert %s %s %s",
            alert.status,
            alert.rule,
            alert.region,
            extra={"alert_id": alert.alert_id, "severity": alert.severity},
        )
        waiting = 0
        silenced: list[Delivery] = []
        for route in routes_for(self.config, alert):
            if route.receiver not in self.workers:
                continue
            key = delivery_key(route.receiver, alert.alert_id, alert.status)
            with self._lock:
                done = self.log_state.done.get(key)
                firing_before = self.log_state.done.get(
                    delivery_key(route.receiver, alert.alert_id, "firing")
                )
                if done is None and key in self.in_flight:
                    done = key  # the same alert published again while the first is on its way
            if done is not None:
                self.metrics.deliveries.labels(route.receiver, "already_done").inc()
                continue
            silence = self.silences.silencing(alert, now)
            held_firing = (
                alert.status == "resolved"
                and firing_before is not None
                and firing_before.state == "silenced"
            )
            if silence is not None or held_firing:
                reason = silence.silence_id if silence else firing_before.detail  # type: ignore[union-attr]
                silenced.append(self._outcome(route, alert, "silenced", reason))
                self.metrics.silenced.labels(route.receiver).inc()
                continue
            grouped_by = group_key(alert, route.group_by)
            group = self.groups.get((route.receiver, grouped_by))
            if group is None:
                group = PendingGroup(route, grouped_by, time.monotonic())
                self.groups[(route.receiver, grouped_by)] = group
            group.alerts.append(alert)
            group.offsets.append((tp, offset))
            self.in_flight.add(key)
            waiting += 1
        if silenced:
            self._record(silenced)
            log.info(
                "alert silenced",
                extra={"alert_id": alert.alert_id, "receivers": len(silenced)},
            )
        if waiting:
            self.outstanding[tp][offset] = waiting

    def _outcome(
        self,
        route: ResolvedRoute,
        alert: Alert,
        state: DeliveryState,
        detail: str,
        sequence: int = 0,
    ) -> Delivery:
        return Delivery(
            receiver=route.receiver,
            alert=alert,
            state=state,
            at=format_ts(self.clock()),
            sequence=sequence,
            repeat_interval_s=route.repeat_interval_s,
            detail=detail,
        )

    def _flush_groups(self) -> None:
        now = time.monotonic()
        for where, group in list(self.groups.items()):
            if now - group.first_at < group.route.group_wait_s:
                continue
            del self.groups[where]
            notification = Notification(group.route.receiver, tuple(group.alerts), group.key)
            self._enqueue(Job(notification, group.route, group.offsets, group.read_at))

    def _enqueue(self, job: Job) -> None:
        self.metrics.queued.labels(job.route.receiver).inc()
        self.workers[job.route.receiver].jobs.put(job)

    # --- outcomes (called by the workers) --------------------------------------------------
    def delivered(self, job: Job, attempts: int) -> None:
        notification = job.notification
        self._record_then(
            [
                self._outcome(job.route, alert, "delivered", "", notification.sequence)
                for alert in notification.alerts
            ],
            then=lambda: self.finished(job),
        )
        receiver = notification.receiver
        self.metrics.deliveries.labels(receiver, "delivered").inc()
        self.metrics.latency.labels(receiver).observe(time.monotonic() - job.read_at)
        log.info(
            "notification delivered",
            extra={
                "receiver": receiver,
                "delivery_id": notification.delivery_id,
                "alerts": len(notification.alerts),
                "sequence": notification.sequence,
                "attempts": attempts,
            },
        )

    def park(self, job: Job, error: str) -> None:
        """Refused for good: to the undeliverable topic, then the log, and the service goes on."""
        import orjson

        notification = job.notification
        loss = BrokerLoss(self.settings, "parking an undeliverable notification")
        for alert in notification.alerts:
            body = orjson.dumps(
                {
                    "receiver": notification.receiver,
                    "delivery_id": notification.delivery_id,
                    "error": error,
                    "parked_at": format_ts(self.clock()),
                    "alert": orjson.loads(alert.to_json()),
                }
            )
            while True:
                try:
                    self.producer.send(
                        self.settings.topic_notify_dlq, body, alert.region.encode()
                    ).get(timeout=self.settings.producer_delivery_timeout_ms / 1000)
                    break
                except Exception as exc:
                    loss.failed(exc)
        self._record(
            [
                self._outcome(job.route, alert, "parked", error, notification.sequence)
                for alert in notification.alerts
            ]
        )
        self.finished(job)
        self.metrics.deliveries.labels(notification.receiver, "parked").inc()
        self.metrics.parked.labels(notification.receiver).inc()
        log.error(
            "notification parked: the receiver refused it for good",
            extra={
                "receiver": notification.receiver,
                "delivery_id": notification.delivery_id,
                "topic": self.settings.topic_notify_dlq,
                "error": error,
            },
        )

    def finished(self, job: Job) -> None:
        self.finished_jobs.put(job)

    def _drain_finished(self) -> None:
        while True:
            try:
                job = self.finished_jobs.get_nowait()
            except queue.Empty:
                return
            self.metrics.queued.labels(job.route.receiver).dec()
            if job.reminder_of is not None:
                self.swept.discard(job.reminder_of)
            for tp, offset in job.offsets:
                waiting = self.outstanding.get(tp)
                if waiting is None or offset not in waiting:
                    continue  # revoked meanwhile
                waiting[offset] -= 1
                if waiting[offset] <= 0:
                    del waiting[offset]

    # --- reminders and ended silences -------------------------------------------------------
    def _sweep(self) -> None:
        """Reminders that are due, and silenced alerts whose silence ended while they still
        fire. Runs every second over what fires now: the cheap tests come first."""
        now = self.clock()
        now_s = now.timestamp()
        with self._lock:
            candidates = self.log_state.firing()
        for delivery, at_s in candidates:
            if delivery.state == "delivered":
                repeat = delivery.repeat_interval_s
                if repeat <= 0 or now_s - at_s < repeat:
                    continue
                if self.silences.acked(delivery.alert.alert_id):
                    continue
                sequence = delivery.sequence + 1
            elif delivery.state == "silenced":
                sequence = 0  # delivered now if its silence ended while it still fires
            else:
                continue  # parked: on the undeliverable topic, for a person to look at
            if delivery.receiver not in self.workers or delivery.key in self.swept:
                continue
            if self.silences.silencing(delivery.alert, now) is not None:
                continue
            self.swept.add(delivery.key)
            route = ResolvedRoute(delivery.receiver, (), 0.0, delivery.repeat_interval_s, "log")
            notification = Notification(
                delivery.receiver, (delivery.alert,), delivery.alert.region, sequence
            )
            self._enqueue(Job(notification, route, reminder_of=delivery.key))

    def _prune(self) -> None:
        with self._lock:
            expired = self.log_state.expired(self.clock(), LOG_RETENTION)
        for key in expired:
            self.producer.send(self.settings.topic_notify_deliveries, None, key)
        if expired:
            self.producer.flush(timeout=30)
            log.info("delivery log pruned", extra={"records": len(expired)})

    # --- commits ----------------------------------------------------------------------------
    def positions(self) -> dict[Any, int]:
        """Per partition, the offset up to which every alert is done."""
        done = {}
        for tp, next_offset in self.next_offset.items():
            waiting = self.outstanding.get(tp)
            done[tp] = min(waiting) if waiting else next_offset
        return done

    def _commit(self, only: set[Any] | None = None) -> None:
        from kafka.structs import OffsetAndMetadata

        offsets = {
            tp: OffsetAndMetadata(position, "", -1)
            for tp, position in self.positions().items()
            if (only is None or tp in only) and self.committed.get(tp) != position
        }
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as exc:
            log.warning("commit failed: retried by the next one", extra={"error": str(exc)})
            return
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset
        self.metrics.outstanding.set(sum(len(w) for w in self.outstanding.values()))

    def _apply_backpressure(self) -> None:
        waiting = sum(len(w) for w in self.outstanding.values())
        self.metrics.outstanding.set(waiting)
        assigned = self.consumer.assignment()
        if not self.paused and waiting > MAX_OUTSTANDING:
            self.consumer.pause(*assigned)
            self.paused = True
        elif self.paused and waiting < MAX_OUTSTANDING // 2:
            self.consumer.resume(*assigned)
            self.paused = False
