"""Reading the notification service's topics: alerts in, and its state topics to their end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from include.errors import ClimateWatchError
from include.events import Alert
from include.kafka_retry import BrokerLoss, leader_offsets
from include.settings import Settings

STATE_CATCH_UP_TIMEOUT_S = 60.0
VALID_STATUSES = ("firing", "resolved")


def alert_from_record(raw: bytes | None) -> Alert | str:
    """The alert in a record of the alerts topic, or why it is not one (never raises)."""
    if raw is None:
        return "empty record"
    try:
        alert = Alert.from_json(raw)
    except Exception as exc:  # not JSON, not an object: whatever the bytes are
        return f"not an alert: {type(exc).__name__}"
    for name in ("alert_id", "rule", "region", "severity", "status"):
        if not isinstance(getattr(alert, name), str) or not getattr(alert, name):
            return f"not an alert: {name} missing or not a string"
    if alert.status not in VALID_STATUSES:
        return f"not an alert: status {alert.status[:32]!r}"
    return alert


def read_to_end(
    settings: Settings,
    consumer: Any,
    topics: Iterable[str],
    apply: Callable[[str, bytes | None, bytes | None], None],
    timeout_s: float = STATE_CATCH_UP_TIMEOUT_S,
) -> None:
    """Assign every partition of ``topics`` to ``consumer`` (no group), read each from its
    beginning to the end it had when asked, and ``apply(topic, key, value)`` each record;
    the consumer stays assigned, to follow what comes next."""
    from kafka import TopicPartition

    topics = tuple(topics)
    loss = BrokerLoss(settings, "reading the notification state", client=consumer)
    partitions = []
    for topic in topics:
        found = loss.call(consumer.partitions_for_topic, topic)
        if not found:
            raise ClimateWatchError(
                f"topic {topic!r} does not exist: run `climatewatch topics create` first"
            )
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = leader_offsets(settings, "reading the notification state", consumer, partitions)
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        if time.monotonic() > deadline:
            raise ClimateWatchError(
                f"could not read {', '.join(topics)} within {timeout_s:.0f} s: check the brokers"
            )
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                apply(tp.topic, record.key, record.value)
