"""What the notification service remembers: the delivery log and the silences, as records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.contract import format_ts
from streaming.notify.state import (
    Ack,
    Delivery,
    DeliveryLog,
    Silence,
    Silences,
    encode,
    parse_duration,
)
from tests.streaming.notify.test_service import firing, resolved

pytestmark = pytest.mark.unit

NOW = datetime(2026, 7, 2, 12, tzinfo=UTC)


def delivered(alert, receiver="hook", at=NOW, **changes) -> Delivery:  # type: ignore[no-untyped-def]
    return Delivery(receiver, alert, "delivered", format_ts(at), **changes)


def apply(log: DeliveryLog, *deliveries: Delivery) -> DeliveryLog:
    for delivery in deliveries:
        log.apply(delivery.key, delivery.to_json())
    return log


def test_a_delivery_survives_its_record_and_a_tombstone_forgets_it() -> None:
    record = delivered(firing("north"), sequence=2, repeat_interval_s=60.0)
    assert Delivery.from_json(record.to_json()) == record
    log = apply(DeliveryLog(), record)
    assert log.get("hook", record.alert) == record
    log.apply(record.key, None)
    assert log.get("hook", record.alert) is None and log.firing() == []


def test_only_firing_alerts_not_yet_resolved_for_their_receiver_are_open() -> None:
    north, south = firing("north"), firing("south")
    log = apply(DeliveryLog(), delivered(north), delivered(south), delivered(north, "sms"))
    apply(log, delivered(resolved(north)))
    assert sorted((d.receiver, d.alert.region) for d, _ in log.firing()) == [
        ("hook", "south"),
        ("sms", "north"),
    ]


def test_resolved_alerts_expire_after_the_retention_with_both_records() -> None:
    old, recent = firing("north"), firing("south")
    log = apply(
        DeliveryLog(),
        delivered(old, at=NOW - timedelta(days=9)),
        delivered(resolved(old), at=NOW - timedelta(days=8)),
        delivered(recent, at=NOW - timedelta(days=9)),  # still firing: kept however old
        delivered(resolved(firing("east")), at=NOW - timedelta(days=1)),
    )
    expired = log.expired(NOW, timedelta(days=7))
    assert sorted(expired) == sorted([delivered(resolved(old)).key, delivered(old).key])


def test_silences_cover_their_region_and_rule_while_in_force() -> None:
    silence = replace(
        Silence.new("north", "heat", timedelta(hours=2), "maintenance", "ops"),
        starts_at=format_ts(NOW),
        ends_at=format_ts(NOW + timedelta(hours=2)),
    )
    state = Silences()
    state.apply(*encode(silence))
    assert state.silencing(firing("north"), NOW + timedelta(hours=1)) == silence
    assert state.silencing(firing("north", rule="cold"), NOW) is None
    assert state.silencing(firing("south"), NOW) is None
    assert state.silencing(firing("north"), NOW + timedelta(hours=2)) is None
    state.apply(*encode(silence.ended(NOW + timedelta(minutes=5))))
    assert state.silencing(firing("north"), NOW + timedelta(minutes=10)) is None
    state.apply(*encode(Ack("a-1", format_ts(NOW), "ops")))
    assert state.acked("a-1") and not state.acked("a-2")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400), ("45s", 45), (" 5m ", 300)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0m", "soon", "2 h", "-1h", "1.5h", "h"])
def test_what_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(key=st.none() | st.binary(max_size=64), value=st.none() | st.binary(max_size=512))
def test_any_record_on_the_state_topics_is_applied_or_ignored_never_fatal(
    key: bytes | None, value: bytes | None
) -> None:
    DeliveryLog().apply(key, value)
    Silences().apply(key, value)
    Delivery.from_json(value or b"")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    body=st.dictionaries(
        st.sampled_from(["silence_id", "region", "rule", "starts_at", "ends_at", "comment", "x"]),
        st.none() | st.text(max_size=30) | st.integers(-(2**63), 2**63 - 1) | st.floats(),
        max_size=8,
    ),
    kind=st.sampled_from([b"silence:s1", b"ack:a1", b"other"]),
)
def test_any_json_under_a_silence_key_is_applied_or_ignored(body: dict, kind: bytes) -> None:
    import orjson

    state = Silences()
    state.apply(kind, orjson.dumps(body))
    for silence in state.silences.values():  # what was kept can be asked about
        silence.active(NOW)
        silence.matches(firing("north"))
