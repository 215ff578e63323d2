"""The commit protocol: offsets never pass outputs that were not acknowledged.

Every output of both stages goes through one producer, and every send's outcome is
tracked (:class:`streaming.outputs.Deliveries`). A checkpoint first flushes the producer
and waits until every send so far is acknowledged (``acks=all``); window stats held for
their region's alerts are released then and flushed too. Only then does it commit each
stage's pending positions, held back by the stage to the first record of any window still
open. A crash between the two repeats work; it never loses any. A commit that fails for a
broker's loss (its connection refused or timed out, the group coordinator moving, the
group rebalancing: :func:`include.kafka_retry.retriable`) is left to the next checkpoint,
not committing being always safe; only commits failing for longer than
``CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S`` stop the stream (:class:`CommitFailed`, one line),
and one refused for any other reason (an ACL) stops it at once.

**A member the group dropped** (its session expired while the coordinator was frozen or
moving) gets ``on_partitions_lost``: nothing can be committed for those partitions any
more, so their pending offsets are dropped with the stage's state, and the member rejoins
at its next poll and re-reads from the last committed offsets (at-least-once: the outputs
of what it re-reads are published again, with the same keys and alert ids).

**A failed send is never committed past.** kafka-python's ``flush`` returns even when
batches failed (it only logs them), so the checkpoint asks the tracked outcomes instead:
if any send since the stream started failed (after the producer's own retries, for up to
``CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS``), or some send neither succeeded nor failed
in time, it commits nothing and raises :class:`~streaming.outputs.DeliveryFailed`, one
line naming the topic and the broker's error. The stream stops on it without committing
(``climatewatch stream`` exits 1 with that line); restarted, it re-reads from the last
committed offsets and publishes everything derived from them again: at-least-once, with
the same keys and alert ids, so a repeat is harmless and nothing is lost.

kafka-python 3 calls rebalance listeners on the consumer's IO thread, where a blocking
commit raises: on revocation the outputs are flushed (the producer has its own IO thread)
and the safe offsets committed asynchronously; after a failed send a revocation commits
nothing (and does not raise into the client): the loop's next checkpoint stops the
stream. Should that commit lose the race with the rebalance, the next owner re-reads from
the previous commit and repeats alerts with the same ids, which is the guarantee anyway.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError

from include.errors import ClimateWatchError
from include.kafka_retry import SETTING as BROKER_LOSS_SETTING
from include.kafka_retry import retriable
from streaming.outputs import Deliveries, DeliveryFailed, describe_error

log = logging.getLogger("climatewatch.stream")

FLUSH_TIMEOUT_S = 60
COMMIT_TIMEOUT_S = 60.0  # CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S's default
RECHECK_S = 0.01  # flush returned with sends still in flight (a split batch): look again


class Stage(Protocol):
    """What the protocol and the listener need of a stage."""

    pending: dict[int, int]  # partition -> next offset read, not yet committed

    def safe_offsets(self) -> dict[int, int]: ...
    def commit_metadata(self, partition: int) -> str: ...
    def assigned(self, partitions: Iterable[int]) -> None: ...
    def revoked(self, partitions: Iterable[int]) -> None: ...


@dataclass(frozen=True)
class Input:
    """One stage's input: the consumer that reads ``topic`` for ``stage``."""

    consumer: Any
    topic: str
    stage: Stage


class CommitFailed(ClimateWatchError):
    """The cluster refused or timed out a commit: the outputs are safe, a restart repeats."""


class Checkpoint:
    def __init__(
        self,
        producer: Any,
        inputs: Sequence[Input],
        deliveries: Deliveries | None = None,
        *,
        release: Callable[[], int] | None = None,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self.producer = producer
        self.inputs = inputs
        self.deliveries = deliveries if deliveries is not None else Deliveries()
        self.release = release  # sends what waited for acknowledgements; how many
        self.flush_timeout_s = flush_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self._commits_failing_since: float | None = None

    def flush_and_commit(self, *, blocking: bool = True) -> None:
        """Wait for every output to be acknowledged, then commit what is safe: never past
        an open window's start, never after a failed send (:class:`DeliveryFailed`).

        ``blocking=False`` (rebalance listeners) sends the commits without waiting.
        """
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self.settle()
        for source in self.inputs:
            if not source.stage.pending:
                continue
            stage = source.stage
            offsets = {  # the metadata tells the next owner what this one closed
                TopicPartition(source.topic, p): OffsetAndMetadata(o, stage.commit_metadata(p), -1)
                for p, o in stage.safe_offsets().items()
            }
            if not blocking:
                source.consumer.commit_async(offsets)
            elif not self._commit(source, offsets):
                continue  # kept pending: the next checkpoint commits them
            source.stage.pending.clear()

    def _commit(self, source: Input, offsets: dict[Any, Any]) -> bool:
        """Commit; a commit failing for a broker's loss is retried by the next checkpoint
        (not committing is always safe), until commits have failed for longer than
        ``commit_timeout_s``; one refused for another reason raises at once."""
        try:
            source.consumer.commit(offsets)
        except KafkaError as exc:
            now = time.monotonic()
            if self._commits_failing_since is None:
                self._commits_failing_since = now
            group = getattr(source.consumer, "config", {}).get("group_id")
            failing_s = now - self._commits_failing_since
            if not retriable(exc) or failing_s >= self.commit_timeout_s:
                during = f" for {failing_s:.0f} s ({BROKER_LOSS_SETTING})" if retriable(exc) else ""
                raise CommitFailed(
                    f"could not commit the offsets of topic {source.topic!r} (group {group!r})"
                    f"{during}: {describe_error(exc)}; the outputs are published: fix the cause "
                    "and restart the stream, which reprocesses from the last committed offsets"
                ) from None
            log.warning(
                "commit failed, retried at the next checkpoint",
                extra={"topic": source.topic, "group": group, "error": describe_error(exc)},
            )
            return False
        self._commits_failing_since = None
        return True

    def settle(self) -> None:
        """Flush until every send so far is acknowledged (held outputs released and
        flushed too); raise :class:`DeliveryFailed` if one failed or some never completed."""
        deliveries = self.deliveries
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            # a timeout, or a batch split while waiting: the counts below decide
            with contextlib.suppress(KafkaError):
                self.producer.flush(timeout=max(remaining, 0.001))
            failure = deliveries.error()
            if failure is not None:
                raise failure
            if self.release is not None and self.release():
                continue  # window stats whose alerts are acknowledged now: flush them too
            if not deliveries.in_flight:
                return
            if time.monotonic() >= deadline:
                raise deliveries.not_acknowledged(self.flush_timeout_s)
            time.sleep(RECHECK_S)


class StageListener(ConsumerRebalanceListener):
    """A stage's rebalance callbacks: on revocation, checkpoint (asynchronously) and let
    the stage drop the partitions; on assignment, hand them to the stage.

    ``rejoining`` is true between a revocation and the next assignment (and before the
    first): the loop then polls with a long wait, see ``include.kafka_clients.REJOIN_WAIT_MS``.
    """

    def __init__(self, checkpoint: Checkpoint, stage: Stage) -> None:
        self.checkpoint = checkpoint
        self.stage = stage
        self.rejoining = True
        self.commits = True  # false while the stream closes after a failure

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.rejoining = True
        if self.commits:
            try:
                self.checkpoint.flush_and_commit(blocking=False)
            except DeliveryFailed as exc:  # nothing committed; the loop stops the stream
                log.error("revocation committed nothing: a send failed", extra={"error": str(exc)})
        self.stage.revoked([tp.partition for tp in revoked])

    def on_partitions_lost(self, lost: Any) -> None:
        """Dropped by the group: nothing can be committed for ``lost`` any more; their
        pending offsets go with the stage's state, the next assignment re-reads them."""
        self.rejoining = True
        partitions = [tp.partition for tp in lost]
        for partition in partitions:
            self.stage.pending.pop(partition, None)
        log.warning(
            "dropped by the group: partitions lost, re-read from the last commit",
            extra={"partitions": sorted(partitions)},
        )
        self.stage.revoked(partitions)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.stage.assigned([tp.partition for tp in assigned])
        self.rejoining = False
