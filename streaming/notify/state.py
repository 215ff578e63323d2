"""What the notification service remembers, and the records it keeps it in.

Two compacted topics hold it, so that a restarted (or another) instance knows it:

- the **delivery log** (``CLIMATEWATCH_TOPIC_NOTIFY_DELIVERIES``), one record per
  (receiver, alert id, status), written after the receiver accepted the notification (or
  after it was parked or silenced): a record already in the log is never sent again;
- the **silences** (``CLIMATEWATCH_TOPIC_SILENCES``): silences by id, and acknowledgements
  by alert id.

The classes here are pure: they apply records and answer questions; the service owns the
consumers and producers.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from include.contract import format_ts, parse_timestamp
from include.events import Alert

DeliveryState = Literal["delivered", "parked", "silenced"]


def _instant(text: object) -> datetime | None:
    parsed = parse_timestamp(text) if isinstance(text, str) else None
    return parsed if isinstance(parsed, datetime) else None


# --- the delivery log -----------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """What became of one (receiver, alert, status)."""

    receiver: str
    alert: Alert
    state: DeliveryState
    at: str  # RFC 3339 UTC: when it was accepted, parked or silenced
    sequence: int = 0  # 0: the first notification, n: the n-th reminder
    repeat_interval_s: float = 0.0
    detail: str = ""  # the silence id, or the receiver's last error for a parked one

    @property
    def key(self) -> bytes:
        return delivery_key(self.receiver, self.alert.alert_id, self.alert.status)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["alert"] = orjson.loads(self.alert.to_json())
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, raw: bytes) -> Delivery | None:
        """The record, or None when it is not one (a log record is never fatal)."""
        try:
            body = orjson.loads(raw)
            alert = Alert.from_json(orjson.dumps(body["alert"]))
            return cls(
                receiver=str(body["receiver"]),
                alert=alert,
                state=body["state"],
                at=str(body["at"]),
                sequence=int(body.get("sequence", 0)),
                repeat_interval_s=float(body.get("repeat_interval_s", 0.0)),
                detail=str(body.get("detail", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def delivery_key(receiver: str, alert_id: str, status: str) -> bytes:
    return f"{receiver}|{alert_id}|{status}".encode()


class DeliveryLog:
    """The log as read so far: what is done, and which firing alerts may need a reminder.

    ``open`` holds the firing entries whose resolution the receiver has not had, so the
    service's sweep looks at what fires now, not at every delivery ever made."""

    def __init__(self) -> None:
        self.done: dict[bytes, Delivery] = {}
        # firing, not resolved for its receiver: (the delivery, when it was made, epoch s)
        self.open: dict[bytes, tuple[Delivery, float]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone
            self.done.pop(key, None)
            self.open.pop(key, None)
            return
        delivery = Delivery.from_json(value)
        if delivery is None or delivery.key != key:
            return
        self.done[key] = delivery
        receiver, alert_id = delivery.receiver, delivery.alert.alert_id
        if delivery.alert.status == "resolved":
            self.open.pop(delivery_key(receiver, alert_id, "firing"), None)
        elif not self.resolved(receiver, alert_id):
            at = _instant(delivery.at)
            self.open[key] = (delivery, at.timestamp() if at is not None else 0.0)

    def get(self, receiver: str, alert: Alert) -> Delivery | None:
        return self.done.get(delivery_key(receiver, alert.alert_id, alert.status))

    def resolved(self, receiver: str, alert_id: str) -> bool:
        """Has this receiver been told (or been spared, silenced) that the alert resolved?"""
        return delivery_key(receiver, alert_id, "resolved") in self.done

    def firing(self) -> list[tuple[Delivery, float]]:
        """Firing alerts not resolved for their receiver, with when each was delivered (or
        silenced, epoch s): the candidates for reminders and for delivery once their
        silence ends."""
        return list(self.open.values())

    def expired(self, now: datetime, retention: timedelta) -> list[bytes]:
        """Keys of alerts resolved longer than ``retention`` ago (both of their records):
        what the service tombstones so the log, and its memory, stay bounded."""
        keys = []
        for key, delivery in self.done.items():
            at = _instant(delivery.at)
            if delivery.alert.status == "resolved" and at is not None and now - at > retention:
                firing = delivery_key(delivery.receiver, delivery.alert.alert_id, "firing")
                keys += [key, firing] if firing in self.done else [key]
        return keys


# --- silences and acknowledgements ----------------------------------------------------------
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta | None:
    """``2h``, ``90m``, ``1h30m``, ``1d``, ``45s``; None for anything else (or zero)."""
    match = DURATION.match(text.strip())
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    length = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return length if length > timedelta(0) else None


@dataclass(frozen=True)
class Silence:
    """No notification for ``region`` (and ``rule``, when set) from ``starts_at`` to
    ``ends_at``; the alerts are still counted and delivered if firing when it ends."""

    silence_id: str
    region: str
    rule: str | None
    starts_at: str
    ends_at: str
    comment: str
    created_by: str

    @classmethod
    def new(
        cls, region: str, rule: str | None, length: timedelta, comment: str, created_by: str
    ) -> Silence:
        now = datetime.now(UTC)
        return cls(
            silence_id=uuid.uuid4().hex[:12],
            region=region,
            rule=rule,
            starts_at=format_ts(now),
            ends_at=format_ts(now + length),
            comment=comment,
            created_by=created_by,
        )

    def matches(self, alert: Alert) -> bool:
        return alert.region == self.region and self.rule in (None, alert.rule)

    def active(self, now: datetime) -> bool:
        starts, ends = _instant(self.starts_at), _instant(self.ends_at)
        return starts is not None and ends is not None and starts <= now < ends

    def ended(self, now: datetime) -> Silence:
        return replace(self, ends_at=format_ts(min(now, _instant(self.ends_at) or now)))


@dataclass(frozen=True)
class Ack:
    """A person took a firing alert in hand: no more reminders for it."""

    alert_id: str
    at: str
    by: str
    comment: str = ""


def silence_key(silence_id: str) -> bytes:
    return f"silence:{silence_id}".encode()


def ack_key(alert_id: str) -> bytes:
    return f"ack:{alert_id}".encode()


def encode(record: Silence | Ack) -> tuple[bytes, bytes]:
    key = (
        silence_key(record.silence_id) if isinstance(record, Silence) else ack_key(record.alert_id)
    )
    return key, orjson.dumps(asdict(record))


class Silences:
    """Silences and acknowledgements as read so far from their topic."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}
        self.acks: dict[str, Ack] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        kind, _, name = key.decode("utf-8", "replace").partition(":")
        if value is None:
            (self.silences if kind == "silence" else self.acks).pop(name, None)
            return
        try:
            body: dict[str, Any] = orjson.loads(value)
            if kind == "silence":
                self.silences[name] = Silence(**body)
            elif kind == "ack":
                self.acks[name] = Ack(**body)
        except (orjson.JSONDecodeError, TypeError):
            return  # not ours: ignored, never fatal

    def silencing(self, alert: Alert, now: datetime) -> Silence | None:
        """The active silence that covers ``alert``, if any."""
        for silence in self.silences.values():
            if silence.active(now) and silence.matches(alert):
                return silence
        return None

    def acked(self, alert_id: str) -> bool:
        return alert_id in self.acks

    def listed(self, now: datetime, include_ended: bool = False) -> list[Silence]:
        return sorted(
            (s for s in self.silences.values() if include_ended or s.active(now)),
            key=lambda s: s.ends_at,
        )
