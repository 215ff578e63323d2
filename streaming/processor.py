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
  publishes alerts to ``temperature-alerts`` (key = region, ``acks=all``), logging one
  line per alert. The stream notifies no one: the notification service (``climatewatch
  notify``, :mod:`streaming.notify`) reads the alerts topic in its own consumer group and
  delivers them.

**Delivery.** Offsets are committed only after everything derived from the records is
acknowledged (one producer flush, every send's outcome checked, then the commits), and
only up to the first record of a window that is still open. A send that fails for good
(after the producer's retries) stops the stream with one line naming the topic, without
committing: a restart reprocesses from the last committed offsets and publishes again
(:mod:`streaming.checkpoint`). On revocation a stage commits what is safe and drops its
state; on assignment it starts empty and re-reads from the committed offset, which
rebuilds every open window. The rules' memory of the regions a stage-2 assignment brings
(who is firing, recent window means, sensors' last windows, which windows were already
evaluated) is rebuilt from the alerts and window-stats topics, where the previous owner
flushed everything on revocation, before any of their partials is processed. A crash
(kill -9) or a rebalance therefore repeats work, never loses it, and a repeated alert
carries the same ``alert_id``.

**A broker lost or frozen** (one of a replicated cluster) is ridden through
(:mod:`include.kafka_retry`): polls, metadata and offset requests that fail while a new
leader or group coordinator is elected are retried, commits are retried by the next
checkpoint, a member the group dropped meanwhile rejoins and re-reads from the committed
offsets; each for up to ``CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S``, then one line (exit 1).
Sends retry on their own, for ``CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS``.

**Layout.** :mod:`streaming.stage1` and :mod:`streaming.stage2` are the stages (the rules'
memory and its rebuild in :mod:`streaming.restore`), :mod:`streaming.outputs` everything
they publish, :mod:`streaming.checkpoint` the flush-then-commit protocol and the
rebalance listeners. This module wires them to one producer and two consumers and runs
the loop.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from include.errors import ClimateWatchError
from include.kafka_clients import REJOIN_WAIT_MS, make_admin, make_consumer, make_producer
from include.kafka_retry import BrokerLoss, leader_offsets, ride_through
from include.settings import Settings
from streaming.checkpoint import Checkpoint, Input, StageListener
from streaming.metrics import StreamMetrics
from streaming.outputs import Outputs, delivery_options
from streaming.retire import check_retire_after
from streaming.rules import RulesConfig, load_rules
from streaming.stage1 import ReadingsStage
from streaming.stage2 import PartialsStage

log = logging.getLogger("climatewatch.stream")

LINGER_MS = 5
POLL_WAIT_MS = 20  # longest wait for readings before the loop looks at the partials again
COMMIT_EVERY_S = 1.0
COMMIT_AFTER_MESSAGES = 20_000  # produced since the last checkpoint: commit early
CONSUMER_OPTIONS: dict[str, Any] = {
    "max_poll_records": 5000,
    "fetch_max_bytes": 8 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
}


RESTART_HINT = (
    "check that the brokers are up and every partition has a leader, then restart the "
    "stream, which reprocesses from the last committed offsets"
)


def consumer_options(settings: Settings) -> dict[str, Any]:
    """:data:`CONSUMER_OPTIONS`, and a request timeout within half the idle timeout.

    A fetch sent to a frozen leader waits for the request timeout before the consumer
    asks who leads now; meanwhile the partition looks caught up (with the end it last
    heard of) and quiet, and once that lasts the idle timeout its windows would close on
    the wall clock, its delayed readings late. Giving up on the request sooner moves the
    fetch to the new leader (elected within the brokers' session timeout, 9 s) first.
    """
    request_ms = settings.kafka_client_config()["request_timeout_ms"]
    stalled_ms = max(5000, int(settings.idle_timeout_s * 500))
    return {**CONSUMER_OPTIONS, "request_timeout_ms": min(request_ms, stalled_ms)}


def _partitions_of(
    settings: Settings, consumer: Any, topic: str, timeout_s: float = 10.0
) -> set[int]:
    """The topic's partitions, from a fresh metadata fetch (``topics()`` always asks the
    cluster, ridden through a broker's loss): a topic created a moment ago may need a
    retry or two to show up, and a stream that counted no partition would never close a
    window."""
    loss = BrokerLoss(settings, f"listing the partitions of {topic}", hint=RESTART_HINT)
    deadline = time.monotonic() + timeout_s
    while True:
        loss.call(consumer.topics)
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            raise ClimateWatchError(
                f"topic {topic!r} does not exist: create the topics with 'climatewatch topics "
                "create' (or check the CLIMATEWATCH_TOPIC_* settings)"
            )
        time.sleep(0.1)


@dataclass
class _DrainTargets:
    """--until-caught-up: the end offsets to reach, taken once each stage is assigned."""

    readings: dict[Any, int] | None = None
    partials: dict[Any, int] | None = None


class StreamProcessor:
    """Both stages on one producer and two consumers, and the loop that drives them."""

    def __init__(
        self,
        settings: Settings,
        rules: RulesConfig | None = None,
        *,
        metrics: StreamMetrics | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.rules = rules or load_rules(settings.rules_file)
        check_retire_after(settings, self.rules)  # before connecting: a mistake says so at once
        self.metrics = metrics or StreamMetrics()
        self.clock = wall_clock
        self.stopping = threading.Event()
        self.producer = make_producer(
            settings,
            linger_ms=LINGER_MS,
            batch_size=256 * 1024,
            **delivery_options(settings, LINGER_MS),
        )
        options = consumer_options(settings)
        self.readings = make_consumer(settings, group_id=settings.stream_group_id, **options)
        self.partials = make_consumer(
            settings, group_id=f"{settings.stream_group_id}-regions", **options
        )
        self.outputs = Outputs(
            settings,
            self.producer,
            self.metrics,
            dlq_max_message_bytes=topic_max_message_bytes(settings, settings.topic_dlq),
        )
        self.stage1 = ReadingsStage(
            settings, self.rules, self.metrics, self.readings, self.outputs, self.clock
        )
        self.stage2 = PartialsStage(
            settings,
            self.rules,
            self.metrics,
            self.partials,
            self.outputs,
            self.clock,
        )
        self.checkpoint = Checkpoint(
            self.producer,
            [
                Input(self.readings, settings.topic_readings, self.stage1),
                Input(self.partials, settings.topic_window_partials, self.stage2),
            ],
            self.outputs.deliveries,
            release=self.outputs.release_windows,
            # the producer's own retries decide first: a send fails by then or never
            flush_timeout_s=settings.producer_delivery_timeout_ms / 1000 + 10,
            commit_timeout_s=settings.broker_loss_timeout_s,
        )
        self.readings_listener = StageListener(self.checkpoint, self.stage1)
        self.partials_listener = StageListener(self.checkpoint, self.stage2)
        self.poll_losses = {  # a consumer's polls failing for a broker's loss, since when
            id(consumer): BrokerLoss(settings, f"polling {topic}", hint=RESTART_HINT)
            for consumer, topic in (
                (self.readings, settings.topic_readings),
                (self.partials, settings.topic_window_partials),
            )
        }
        self._subscribe()

    def _subscribe(self) -> None:
        """Join both groups, then count both topics' partitions for the stages."""
        settings = self.settings
        self.readings.subscribe([settings.topic_readings], listener=self.readings_listener)
        self.partials.subscribe([settings.topic_window_partials], listener=self.partials_listener)
        # Counted after subscribing: the metadata fetch then also tells the group
        # coordinator the topic's partitions before its first join. The other way round,
        # a group leader joins with no partitions known, must rejoin at once, and
        # kafka-python 3.0.12 can lose that second join's assignment when the poll that
        # started it returns first: the partitions then stay "pending revocation", and
        # are never fetched again.
        self.input_partitions = len(
            _partitions_of(settings, self.readings, settings.topic_readings)
        )
        self.partials_partitions = sorted(
            _partitions_of(settings, self.partials, settings.topic_window_partials)
        )
        self.stage1.partials_partitions = self.partials_partitions
        self.stage2.input_partitions = self.input_partitions
        self.stage2.partials_partitions = self.partials_partitions

    # --- the loop ----------------------------------------------------------------------------
    def run(self, *, until_caught_up: bool = False, max_runtime_s: float | None = None) -> None:
        """Process until stopped (SIGTERM/SIGINT), or until everything present at start is done.

        A failed send raises :class:`~streaming.outputs.DeliveryFailed` (one line naming
        the topic) after closing the clients without committing.
        """
        started = time.monotonic()
        targets = _DrainTargets()
        commit_due = time.monotonic() + COMMIT_EVERY_S
        try:
            while not self.stopping.is_set():
                produced = self._poll_once()
                if time.monotonic() >= commit_due or produced > COMMIT_AFTER_MESSAGES:
                    self.checkpoint.flush_and_commit()
                    self.stage1.export_lag()
                    commit_due = time.monotonic() + COMMIT_EVERY_S
                if max_runtime_s is not None and time.monotonic() - started > max_runtime_s:
                    break
                if until_caught_up and self._drained(targets):
                    break
        except BaseException:
            self.close(commit=False)  # what was not committed is reprocessed by a restart
            raise
        self.close()

    def _poll_once(self) -> int:
        """One turn: a poll of readings through stage 1, one of partials through stage 2."""
        # Short waits on both consumers: a stage that blocks on an empty topic delays the
        # other's records (a 100 ms wait on the partials cost every alert ~100 ms).
        produced = self.stage1.process(
            self._poll(
                self.readings,
                REJOIN_WAIT_MS if self.readings_listener.rejoining else POLL_WAIT_MS,
            )
        )
        produced += self.stage1.heartbeats()
        # after every poll: one poll may jump far
        others = self.stage2.backlog_watermarks(self.clock(), skip=self.stage1.partitions)
        self.stage1.align(others)
        partials = self._poll(
            self.partials, REJOIN_WAIT_MS if self.partials_listener.rejoining else 0
        )
        self.stage2.adopt_assignment()  # before any record of the new assignment
        produced += self.stage2.process(partials)
        produced += self.outputs.release_windows()  # stats whose alerts are acknowledged
        self.metrics.open_windows.set(self.stage2.open_windows() + self.stage1.open_windows())
        return produced

    def _poll(self, consumer: Any, timeout_ms: int) -> dict[Any, list[Any]]:
        """One poll. One that fails for a broker's loss returns nothing (after a backoff):
        the loop polls again, until the bound; any other failure is raised."""
        from kafka.errors import KafkaError

        loss = self.poll_losses[id(consumer)]
        try:
            polled = consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            loss.failed(exc)
            return {}
        loss.recovered()
        return polled

    def _drained(self, targets: _DrainTargets) -> bool:
        """--until-caught-up: every reading present at start read, then (after a last
        heartbeat and checkpoint) every partial present then."""
        settings, what = self.settings, "reading the end offsets"
        assigned = self.readings.assignment()
        if targets.readings is None and assigned:
            targets.readings = leader_offsets(settings, what, self.readings, list(assigned))
        if targets.readings is not None and all(
            ride_through(settings, what, self.readings.position, tp) >= end
            for tp, end in targets.readings.items()
        ):
            parts = self.partials.assignment()
            if targets.partials is None and parts:  # stage 2 may still be joining
                self.stage1.draining = True
                self.stage1.heartbeats(force=True)
                self.checkpoint.flush_and_commit()
                targets.partials = leader_offsets(settings, what, self.partials, list(parts))
            elif targets.partials is not None and all(
                ride_through(settings, what, self.partials.position, tp) >= end
                for tp, end in targets.partials.items()
            ):
                return True
        return False

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def close(self, *, commit: bool = True) -> None:
        """Finish: flush, commit (unless ``commit`` is false: after a failure), leave both
        groups, close the producer. (Alerts are delivered to people by the notification
        service, ``climatewatch notify``, in its own consumer group: nothing to stop here.)"""
        try:
            if commit:
                self.checkpoint.flush_and_commit()
        except BaseException:
            commit = False
            raise
        finally:
            if not commit:  # leaving the groups revokes: no commit there either
                self.readings_listener.commits = self.partials_listener.commits = False
            for close in (
                self.readings.close,
                self.partials.close,
                lambda: close_producer(self.producer, timeout_s=10 if commit else 1),
            ):
                try:
                    close()
                except Exception:  # one client failing to close must not hide why we stop
                    log.warning("a client failed to close", exc_info=True)
        log.info("stream stopped")


def close_producer(producer: Any, timeout_s: float) -> None:
    """Close, abandoning what is still unsent after ``timeout_s`` (after a failure: a
    restart sends it again).

    kafka-python 3.0.12's ``close`` flushes first and, when records are still pending at
    the timeout (a broker gone), raises without closing; its ``__del__`` then tries again
    at exit and prints a traceback. Guarded: a client without those parts is left alone.
    """
    from kafka.errors import KafkaTimeoutError

    try:
        producer.close(timeout=timeout_s)
    except KafkaTimeoutError:
        sender = getattr(producer, "_sender", None)
        if sender is None or not hasattr(producer, "_closed"):
            raise
        sender.force_close()  # what its close does after the timeout: drop what is unsent
        sender.join(timeout_s)
        producer._closed = True


def topic_max_message_bytes(settings: Settings, topic: str) -> int | None:
    """The topic's ``max.message.bytes`` (None when the cluster does not say): what the
    DLQ's stubs are sized for."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        admin = make_admin(settings)
    except Exception:
        return None
    try:
        described = ride_through(
            settings,
            f"reading the configs of {topic}",
            admin.describe_configs,
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})],
            config_filter="all",
        )
        value = described["topic"][topic]["max.message.bytes"]["value"]
        return int(value)
    except Exception:
        log.warning("max.message.bytes of the DLQ topic unknown", extra={"topic": topic})
        return None
    finally:
        admin.close()


def install_signal_handlers(processor: StreamProcessor) -> None:
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
