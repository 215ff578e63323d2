"""The commit protocol: offsets never pass outputs that were not flushed.

Every output of both stages goes through one producer. A checkpoint first flushes it
(every record derived from the input read so far is acknowledged, ``acks=all``), and only
then commits each stage's pending positions, held back by the stage to the first record
of any window still open. A crash between the two repeats work; it never loses any.

kafka-python 3 calls rebalance listeners on the consumer's IO thread, where a blocking
commit raises: on revocation the outputs are flushed (the producer has its own IO thread)
and the safe offsets committed asynchronously. Should that commit lose the race with the
rebalance, the next owner re-reads from the previous commit and repeats alerts with the
same ids, which is the guarantee anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener

FLUSH_TIMEOUT_S = 60


class Stage(Protocol):
    """What the protocol and the listener need of a stage."""

    pending: dict[int, int]  # partition -> next offset read, not yet committed

    def safe_offsets(self) -> dict[int, int]: ...
    def assigned(self, partitions: Iterable[int]) -> None: ...
    def revoked(self, partitions: Iterable[int]) -> None: ...


@dataclass(frozen=True)
class Input:
    """One stage's input: the consumer that reads ``topic`` for ``stage``."""

    consumer: Any
    topic: str
    stage: Stage


class Checkpoint:
    def __init__(self, producer: Any, inputs: Sequence[Input]) -> None:
        self.producer = producer
        self.inputs = inputs

    def flush_and_commit(self, *, blocking: bool = True) -> None:
        """Flush every output, then commit what is safe: never past an open window's start.

        ``blocking=False`` (rebalance listeners) sends the commits without waiting.
        """
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        for source in self.inputs:
            if not source.stage.pending:
                continue
            commit = source.consumer.commit if blocking else source.consumer.commit_async
            commit(
                {
                    TopicPartition(source.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in source.stage.safe_offsets().items()
                }
            )
            source.stage.pending.clear()


class StageListener(ConsumerRebalanceListener):
    """A stage's rebalance callbacks: on revocation, checkpoint (asynchronously) and let
    the stage drop the partitions; on assignment, hand them to the stage.

    ``rejoining`` is true between a revocation and the next assignment (and before the
    first): the loop then polls with a long wait, see ``streaming.processor.REJOIN_WAIT_MS``.
    """

    def __init__(self, checkpoint: Checkpoint, stage: Stage) -> None:
        self.checkpoint = checkpoint
        self.stage = stage
        self.rejoining = True

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.rejoining = True
        self.checkpoint.flush_and_commit(blocking=False)
        self.stage.revoked([tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.stage.assigned([tp.partition for tp in assigned])
        self.rejoining = False
