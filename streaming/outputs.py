"""The stream's producer side: everything either stage publishes goes through here.

Both stages share one producer, so one ``flush`` (see :mod:`streaming.checkpoint`)
acknowledges every output before any offset is committed. Keyed outputs (partials,
window stats, alerts) go to the partition Kafka's default partitioner would pick for the
region, so a region's records keep their order; heartbeats go to every partials
partition; a rejected reading goes to the DLQ with its original key and bytes and the
reason in headers. What is published is counted here (windows, alerts, DLQ records).

**Every send's outcome is tracked** (:class:`Deliveries`): a callback on each send's
future counts it acknowledged, or keeps the first failure of its topic (kafka-python
itself only logs a failed batch, and ``flush`` returns anyway). The producer retries on
its own for ``CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS``; a send that still fails, or
that the client refuses outright, is final: the checkpoint then refuses to commit and the
stream stops with one line naming the topic and the error (:class:`DeliveryFailed`). A
restart re-reads from the last committed offsets and publishes again; every output is
idempotent by its key and deterministic content (an alert repeats its ``alert_id``), so
the guarantee is at-least-once, never a silent loss.

A region's window stats wait for the acknowledgement of its alerts: they are what the
rules' memory is rebuilt from (:mod:`streaming.restore`, "evaluated up to here"), so a
window's stats must never be on the topic while one of the alerts its evaluation raised
could still be lost. Windows without a pending alert go out at once.

**Poison pills never reach the DLQ as a crash.** A record the DLQ cannot take as it is
goes there as a *stub*, with the reason and its source topic, partition and offset in the
headers like any DLQ record: one with neither key nor value gets an empty value and a
``stub`` header saying so; one too large for the producer's ``max_request_size`` (or the
DLQ topic's ``max.message.bytes``, read at start) keeps as many of its first bytes as fit,
with a ``truncated`` header and the original sizes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from kafka.errors import KafkaError, MessageSizeTooLargeError

from include.contract import Rejection, format_epoch_ms
from include.errors import ClimateWatchError
from include.events import Alert, WindowStats
from include.settings import Settings
from streaming.metrics import StreamMetrics
from streaming.silence import partition_of
from streaming.windowing import ClosedWindow, Partial, compacted

DEFAULT_MAX_REQUEST_SIZE = 1024 * 1024  # kafka-python's default max_request_size
# What a DLQ record needs besides its key and value: batch and record framing (~100
# bytes), the headers (detail ≤ 500 bytes, a topic name ≤ 249) and a stub's own headers.
DLQ_RESERVED_BYTES = 2048
STUB_KEY_BYTES = 1024  # a stub keeps at most this much of a key too large to keep whole
PARTITIONS_CACHED = 65_536  # (topic, region) -> partition entries kept, then started over
# what the client raises from send() instead of queueing the record
REFUSED = (KafkaError, ValueError, TypeError)
# ... of those, the ones about the record itself: a DLQ record then goes as a stub
RECORD_REFUSED = (MessageSizeTooLargeError, ValueError, TypeError)


class DeliveryFailed(ClimateWatchError):
    """A send failed for good: the stream stops without committing past it."""


def delivery_options(settings: Settings, linger_ms: int) -> dict[str, int]:
    """Producer options that bound how long a send may retry before it fails.

    kafka-python requires ``delivery_timeout_ms >= linger_ms + request_timeout_ms``: a
    short delivery timeout shortens the request timeout with it.
    """
    delivery = settings.producer_delivery_timeout_ms
    request = settings.kafka_client_config()["request_timeout_ms"]
    return {
        "delivery_timeout_ms": delivery,
        "request_timeout_ms": max(1, min(request, delivery - linger_ms)),
    }


def describe_error(exc: BaseException) -> str:
    """One line for a client or broker error: its name, the broker's error code, what it says."""
    label = type(exc).__name__
    errno = getattr(exc, "errno", None)
    if errno is not None:
        label += f" (broker error {errno})"
    text = " ".join(str(arg) for arg in exc.args if arg not in (None, "")).strip()
    text = text or (getattr(exc, "description", None) or "")
    return f"{label}: {text.splitlines()[0][:300]}" if text else label


class Deliveries:
    """What became of every send: how many are not acknowledged yet, and the first
    failure of each topic.

    kafka-python completes a send's future on its IO thread (or at once, when it failed it
    before queueing); the callbacks only count, under a lock: O(1) per send. A failure is
    kept for good: the stream stops on it (see :mod:`streaming.checkpoint`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.acknowledged = 0
        self.failed = 0
        self.failures: dict[str, BaseException] = {}  # topic -> its first failure
        self._errbacks: dict[str, Any] = {}

    def track(self, future: Any, topic: str) -> Any:
        """Count ``future`` (a send to ``topic``) until it completes; returns it."""
        errback = self._errbacks.get(topic)
        if errback is None:
            errback = self._errbacks[topic] = functools.partial(self._failed, topic)
        with self._lock:
            self.sent += 1
        both = getattr(future, "_add_cb_eb", None)  # kafka-python's one-lock registration
        if both is not None:
            both(self._acknowledged, errback)
        else:
            future.add_callback(self._acknowledged)
            future.add_errback(errback)
        return future

    def _acknowledged(self, _metadata: Any) -> None:
        with self._lock:
            self.acknowledged += 1

    def _failed(self, topic: str, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self.failures.setdefault(topic, exc)

    def refused(self, topic: str, exc: BaseException) -> DeliveryFailed:
        """A send the client refused before queueing it: recorded like a failure."""
        with self._lock:
            self.failures.setdefault(topic, exc)
        return self.error()  # type: ignore[return-value]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self.sent - self.acknowledged - self.failed

    def error(self) -> DeliveryFailed | None:
        """The one-line error for the failures so far (None: nothing failed)."""
        with self._lock:
            failures = list(self.failures.items())
        if not failures:
            return None
        (topic, exc), others = failures[0], [t for t, _ in failures[1:]]
        also = f" (and to {', '.join(repr(t) for t in others)})" if others else ""
        return DeliveryFailed(
            f"could not publish to topic {topic!r}{also}: {describe_error(exc)}; nothing was "
            "committed past it: fix the cause and restart the stream, which reprocesses from "
            "the last committed offsets and publishes again (same keys and alert ids)"
        )

    def not_acknowledged(self, seconds: float) -> DeliveryFailed:
        return DeliveryFailed(
            f"{self.in_flight} record(s) sent by the stream were neither acknowledged nor "
            f"failed within {seconds:.0f} s; nothing was committed past them: check the "
            "cluster and restart the stream, which reprocesses from the last committed offsets"
        )


class Outputs:
    def __init__(
        self,
        settings: Settings,
        producer: Any,
        metrics: StreamMetrics,
        *,
        dlq_max_message_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.deliveries = Deliveries()
        self._partitions: dict[tuple[str, str], int] = {}  # (topic, region key) -> partition
        limit = getattr(producer, "config", {}).get("max_request_size", DEFAULT_MAX_REQUEST_SIZE)
        if dlq_max_message_bytes is not None:
            limit = min(limit, dlq_max_message_bytes)
        # key + value bytes a DLQ record may carry; larger ones go as truncated stubs
        self.dlq_budget = max(0, limit - DLQ_RESERVED_BYTES)
        # a region's window stats wait for the acknowledgement of its alerts (see above)
        self._hold = threading.Lock()
        self._alerts_in_flight: dict[str, list[Any]] = {}  # region -> futures of its alerts
        self._held: dict[str, list[bytes]] = {}  # region -> window stats, in order

    # --- every send --------------------------------------------------------------------------
    def send(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Send one record and track its outcome; a send the client refuses raises
        :class:`DeliveryFailed` at once."""
        try:
            future = self.producer.send(
                topic, key=key, value=value, partition=partition, headers=headers
            )
        except REFUSED as exc:
            raise self.deliveries.refused(topic, exc) from None
        return self.deliveries.track(future, topic)

    def send_keyed(self, topic: str, region: str, value: bytes) -> Any:
        """Send keyed by region to the partition Kafka's default partitioner would pick,
        remembered per key: kafka-python hashes every key in pure Python (~20 µs)."""
        target = self._partitions.get((topic, region))
        if target is None:
            if len(self._partitions) >= PARTITIONS_CACHED:  # a flood of names: start over
                self._partitions.clear()
            try:
                count = len(self.producer.partitions_for(topic))
            except REFUSED as exc:
                raise self.deliveries.refused(topic, exc) from None
            target = self._partitions[(topic, region)] = partition_of(region, count)
        return self.send(topic, key=region.encode(), value=value, partition=target)

    # --- what the stages publish -------------------------------------------------------------
    def partials(self, partials: list[Partial]) -> int:
        """One message per region (its partials in order), keyed by region like each partial."""
        by_region: dict[str, list[dict[str, Any]]] = {}
        for partial in partials:
            by_region.setdefault(partial.region, []).append(partial.to_message())
        for region, items in by_region.items():
            self.send_keyed(
                self.settings.topic_window_partials,
                region,
                orjson.dumps({"type": "partials", "items": items}),
            )
        return len(by_region)

    def heartbeat(self, message: bytes, partitions: Sequence[int]) -> int:
        """One input partition's watermark message to each of the partials ``partitions``."""
        topic = self.settings.topic_window_partials
        for target in partitions:
            self.send(topic, value=message, partition=target)
        return len(partitions)

    def dlq(self, record: Any, rejection: Rejection) -> None:
        """A rejected reading, as it arrived, with why and where it came from in headers;
        as a stub when it cannot go as it is (see the module's docstring)."""
        topic = self.settings.topic_dlq
        headers = [
            ("reason", rejection.reason.encode()),
            ("detail", rejection.detail.encode()[:500]),
            ("source_topic", str(record.topic).encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        key, value = record.key, record.value
        if value is None and key is None:
            value = b""
            headers.append(("stub", b"null key and value"))
        elif (len(key) if key else 0) + (len(value) if value else 0) > self.dlq_budget:
            key, value = self._truncate(key, value, headers)
        try:
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except RECORD_REFUSED as exc:  # for a reason not foreseen above: a stub of nothing
            headers.append(("stub", f"refused: {describe_error(exc)}".encode()[:300]))
            self.send(topic, value=b"", headers=headers)
        except REFUSED as exc:
            raise self.deliveries.refused(topic, exc) from None
        else:
            self.deliveries.track(future, topic)
        self.metrics.records.labels("invalid").inc()
        self.metrics.invalid.labels(rejection.reason).inc()

    def _truncate(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> tuple[bytes | None, bytes | None]:
        """As much of a too large record as fits the DLQ budget; the headers say what was cut."""
        cut = []
        headers.append(("stub", b"truncated"))
        if key is not None:
            headers.append(("original_key_bytes", str(len(key)).encode()))
            if len(key) > self.dlq_budget // 2:
                key, cut = key[:STUB_KEY_BYTES], ["key"]
        if value is not None:
            headers.append(("original_value_bytes", str(len(value)).encode()))
            room = max(0, self.dlq_budget - (len(key) if key else 0))
            if len(value) > room:
                value, cut = value[:room], [*cut, "value"]
        headers.append(("truncated", ",".join(cut).encode()))
        return key, value

    def window(self, window: ClosedWindow, emitted_at: str) -> int:
        """A closed (or republished) regional window to the window-stats topic (after the
        acknowledgement of its region's alerts, see the module's docstring)."""
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
        value = stats.to_json()
        region = window.region
        with self._hold:  # sends under the lock too: a region's stats stay in order
            if region in self._held or self._alerts_unacknowledged(region):
                self._held.setdefault(region, []).append(value)
            else:
                self.send_keyed(self.settings.topic_window_stats, region, value)
        self.metrics.windows.labels(window.closed_by).inc()
        return 1

    def alert(self, alert: Alert) -> None:
        """An alert event to the alerts topic (key = region)."""
        future = self.send_keyed(self.settings.topic_alerts, alert.region, alert.to_json())
        with self._hold:
            self._alerts_in_flight.setdefault(alert.region, []).append(future)
        self.metrics.alerts.labels(alert.rule, alert.status).inc()

    # --- window stats held for their alerts --------------------------------------------------
    def _alerts_unacknowledged(self, region: str) -> bool:
        """True while an alert of ``region`` is not acknowledged (call under the lock)."""
        futures = self._alerts_in_flight.get(region)
        if futures is None:
            return False
        if all(future.succeeded() for future in futures):
            del self._alerts_in_flight[region]
            return False
        return True

    def release_windows(self) -> int:
        """Send the held window stats whose region's alerts are all acknowledged now;
        returns how many were sent (a failed alert keeps its region's stats held)."""
        if not self._held:
            return 0
        sent = 0
        with self._hold:
            for region in [r for r in self._held if not self._alerts_unacknowledged(r)]:
                for value in self._held.pop(region):
                    self.send_keyed(self.settings.topic_window_stats, region, value)
                    sent += 1
        return sent

    # --- retirement (see streaming.retire) ---------------------------------------------------
    def forget(self, regions: Iterable[str]) -> None:
        """Drop what is remembered of retired ``regions``' keys."""
        settings = self.settings
        topics = (
            settings.topic_window_partials,
            settings.topic_window_stats,
            settings.topic_alerts,
        )
        for region in regions:
            for topic in topics:
                self._partitions.pop((topic, region), None)
        self._partitions = compacted(self._partitions)

    def prune_acknowledged(self) -> None:
        """Forget the alerts acknowledged since (a region whose windows no longer close, a
        silent one, would otherwise keep its alerts' futures for good)."""
        with self._hold:
            for region in list(self._alerts_in_flight):
                self._alerts_unacknowledged(region)
            self._alerts_in_flight = compacted(self._alerts_in_flight)

    def held_windows(self) -> int:
        return sum(len(values) for values in self._held.values())
