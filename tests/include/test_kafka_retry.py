"""The broker-loss wait on its own: what is retried, for how long, and the one line after.

The clients' real exception classes, raised by a plain function (no client, no broker);
``tests/include/kafka_local/test_ride_through.py`` kills and freezes real brokers under
every component.
"""

from __future__ import annotations

import pytest
from kafka import errors as kafka_errors

from include.kafka_retry import BrokerLoss, BrokerLossTimeout, retriable
from include.settings import load_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaConnectionError("111 ECONNREFUSED"),
        kafka_errors.NodeNotReadyError("node 2"),
        kafka_errors.RequestTimedOutError("Request timed out after 30000 ms"),
        kafka_errors.KafkaTimeoutError("Failed to get offsets by times in 30000 ms"),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.LeaderNotAvailableError(),
        kafka_errors.NotCoordinatorError("group"),
        kafka_errors.CoordinatorNotAvailableError("group"),
        kafka_errors.NotEnoughReplicasError(),
        kafka_errors.CommitFailedError("the group rebalanced"),
        kafka_errors.RebalanceInProgressError(),
        kafka_errors.UnknownMemberIdError("group"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_a_broker_loss_causes_is_retried(error: Exception) -> None:
    assert retriable(error)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.TopicAuthorizationFailedError({"temperature-alerts"}),
        kafka_errors.GroupAuthorizationFailedError("climatewatch-alerts"),
        kafka_errors.SaslAuthenticationFailedError("bad password"),
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.InvalidTopicError(),
        ValueError("not a Kafka error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_waiting_cannot_fix_is_not(error: Exception) -> None:
    assert not retriable(error)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def failing(errors: list[Exception], clock: Clock, step_s: float):
    """A request that raises ``errors`` in turn (time passing), then answers."""
    calls = []

    def request(value: str) -> str:
        calls.append(value)
        clock.now += step_s
        if errors:
            raise errors.pop(0)
        return value

    return request, calls


def test_a_retriable_failure_is_retried_until_the_request_succeeds(monkeypatch) -> None:
    monkeypatch.setattr("include.kafka_retry.time.sleep", lambda _s: None)
    clock = Clock()
    loss = BrokerLoss(load_settings(broker_loss_timeout_s=30), "listing", clock=clock)
    request, calls = failing(
        [kafka_errors.KafkaConnectionError("111"), kafka_errors.RequestTimedOutError()], clock, 5
    )
    assert loss.call(request, "partitions") == "partitions"
    assert len(calls) == 3
    assert loss.since is None and loss.failures == 0  # the next failure starts a new wait


def test_past_the_bound_one_line_names_the_setting_and_what_was_done(monkeypatch) -> None:
    monkeypatch.setattr("include.kafka_retry.time.sleep", lambda _s: None)
    clock = Clock()
    settings = load_settings(broker_loss_timeout_s=30, bootstrap_servers="a:1,b:2,c:3")
    loss = BrokerLoss(settings, "reading temperature-data-p3", clock=clock)
    request, calls = failing([kafka_errors.KafkaConnectionError("111")] * 100, clock, 4)
    with pytest.raises(BrokerLossTimeout) as stopped:
        loss.call(request, "x")
    line = str(stopped.value)
    assert "\n" not in line
    assert "CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S" in line and "within 30 s" in line
    assert "reading temperature-data-p3" in line and "KafkaConnectionError: 111" in line
    assert 7 <= len(calls) <= 9  # ~30 s of 4 s attempts, not one more


def test_a_non_retriable_failure_is_raised_at_once(monkeypatch) -> None:
    monkeypatch.setattr("include.kafka_retry.time.sleep", lambda _s: None)
    clock = Clock()
    loss = BrokerLoss(load_settings(), "committing", clock=clock)
    denied = kafka_errors.GroupAuthorizationFailedError("climatewatch-alerts")
    request, calls = failing([denied], clock, 1)
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        loss.call(request, "x")
    assert len(calls) == 1


def test_the_backoff_doubles_and_never_waits_past_the_bound() -> None:
    clock = Clock()
    loss = BrokerLoss(load_settings(broker_loss_timeout_s=3), "polling", clock=clock)
    delays = []
    for _ in range(6):
        assert loss.within_bound(kafka_errors.NodeNotReadyError())
        delays.append(loss.backoff())
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    clock.now = 2.5
    assert loss.backoff() == pytest.approx(0.5)
    clock.now = 3.0
    assert not loss.within_bound(kafka_errors.NodeNotReadyError())
