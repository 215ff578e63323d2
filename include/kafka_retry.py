"""Riding through the loss or freeze of one broker: retried within one bounded wait.

Kafka's clients are meant to survive a leader change, and kafka-python 3.0.12 does for
much of what it does: a producer retries its sends for their delivery timeout, a consumer
retries its fetches, offset lookups and commits. Not for everything, though (measured on
a 3-node cluster):

* a metadata request (``partitions_for_topic``, ``topics``) goes to one node, chosen
  before the cluster noticed that node was killed, and raises ``KafkaConnectionError``
  (``111 ECONNREFUSED``) at the first refused connection; sent to a frozen node
  (SIGSTOP), it raises ``RequestTimedOutError`` after the request timeout;
* a client built while one broker of the bootstrap list is frozen may pick that one, and
  its bootstrap then times out although the other brokers answer;
* a commit made while the group coordinator moves or the group rebalances fails
  (``NotCoordinatorError``, ``CommitFailedError``) until the member has rejoined;
* an offsets lookup (``end_offsets``, ``beginning_offsets``) sent to a partition's former
  leader, answered ``NOT_LEADER_OR_FOLLOWER``, is sent to that same broker again and again
  without a metadata refresh until it times out, and so is every later lookup until the
  metadata's maximum age (5 minutes): one leader change seen through stale metadata
  outlived the bound.

:class:`BrokerLoss` is the one owner of that wait, for every component (the stream, the
archiver, data quality's alerts): a request that fails for a reason that passes once a
new leader or coordinator is elected (:func:`retriable`) is tried again, after a growing
backoff and a metadata refresh asked of the client that failed (:func:`refresh_metadata`),
for up to
``CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S`` since it first failed; only past that bound does
it stop, with one line naming the setting (:class:`BrokerLossTimeout`). Anything else (a
refused credential, a denied ACL, a record too large) is not retried: it fails at once,
as before. Sends keep their own bound, ``CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from include.errors import ClimateWatchError
from include.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kafka_errors

log = logging.getLogger("climatewatch.kafka")

T = TypeVar("T")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
SETTING = "CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S"

# A group member whose generation ended (the group rebalanced, its session expired while
# the coordinator moved): its next poll rejoins, after which the request can succeed.
GROUP_CHANGED: tuple[type[BaseException], ...] = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)
# Never retried, whatever kafka-python says of them: waiting does not fix a credential.
NEVER_RETRIED: tuple[type[BaseException], ...] = (
    kafka_errors.AuthorizationError,
    kafka_errors.SaslAuthenticationFailedError,
)


def retriable(exc: BaseException) -> bool:
    """True for what the loss or freeze of a broker causes, and a leader or coordinator
    election cures: a refused or timed-out connection, no leader or the wrong one, a
    coordinator moving, a request timed out, too few in-sync replicas, a group rebalancing."""
    if isinstance(exc, NEVER_RETRIED) or not isinstance(exc, kafka_errors.KafkaError):
        return False
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, GROUP_CHANGED)


def describe(exc: BaseException) -> str:
    """One line for a client or broker error: its name and what it says."""
    text = " ".join(str(arg) for arg in exc.args if arg not in (None, "")).strip()
    name = type(exc).__name__
    first = text.splitlines()[0][:200] if text else ""
    return first if first.startswith(name) else f"{name}: {first}" if first else name


OFFSETS_ATTEMPT_MS = 5000  # one try of an offsets lookup; its retry asks for fresh metadata


def refresh_metadata(client: Any) -> bool:
    """Ask a kafka-python client to refresh its cluster metadata (the leaders) now, without
    waiting for it; False for a client of another shape, left alone."""
    cluster = getattr(client, "_cluster", None) or getattr(client, "_metadata", None)
    request_update = getattr(cluster, "request_update", None)
    if not callable(request_update):
        return False
    request_update()
    return True


class BrokerLossTimeout(ClimateWatchError):
    """A request still failed for a broker's loss after the bound: one line naming it."""


class BrokerLoss:
    """Since when one operation has been failing for a broker's loss, and for how long it
    may still be retried (``CLIMATEWATCH_BROKER_LOSS_TIMEOUT_S`` from its first failure).

    Either :meth:`call` a request (retried in place), or, for one retried by the next turn
    of a loop, report each outcome: :meth:`within_bound` after a failure, :meth:`recovered`
    after a success. ``client``: the kafka-python client whose requests these are, asked
    for fresh metadata after each retriable failure.
    """

    def __init__(
        self,
        settings: Settings,
        what: str,
        *,
        hint: str = "check that the brokers are up and every partition has a leader, then "
        "run the command again",
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        self.client = client
        self.bootstrap = settings.bootstrap_servers
        self.what = what
        self.hint = hint
        self.timeout_s = settings.broker_loss_timeout_s if timeout_s is None else timeout_s
        self.clock = clock
        self.since: float | None = None  # first failure of the current run of failures
        self.failures = 0

    @property
    def failing_for(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def within_bound(self, exc: BaseException, *, announce: bool = True) -> bool:
        """Note a failure; True while it may be retried (retriable, and within the bound).
        ``announce``: log the first failure of a run (a warning)."""
        if not retriable(exc):
            return False
        now = self.clock()
        if self.since is None:
            self.since = now
        if self.client is not None:
            refresh_metadata(self.client)  # a moved leader: the retry must not ask the old one
        if announce and self.failures == 0:
            log.warning(
                "a Kafka request failed, retried while the cluster recovers",
                extra={"operation": self.what, "error": describe(exc), "bound_s": self.timeout_s},
            )
        self.failures += 1
        return now - self.since < self.timeout_s

    def backoff(self) -> float:
        """Seconds to wait before the next attempt: doubling, capped, never past the bound."""
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, self.failures - 1))
        return max(0.0, min(delay, self.timeout_s - self.failing_for))

    def recovered(self) -> None:
        if self.failures and self.failing_for >= 1.0:
            log.info(
                "Kafka request succeeded again",
                extra={"operation": self.what, "after_s": round(self.failing_for, 1)},
            )
        self.since = None
        self.failures = 0

    def timeout_error(self, exc: BaseException) -> BrokerLossTimeout:
        return BrokerLossTimeout(
            f"Kafka at {self.bootstrap} did not recover within {self.timeout_s:.0f} s ({SETTING}) "
            f"while {self.what}: {describe(exc)}; {self.hint}"
        )

    def failed(self, exc: BaseException, *, announce: bool = True, pause: bool = True) -> None:
        """A failure: raised again at once if not retriable, as :class:`BrokerLossTimeout`
        past the bound; else (``pause``) wait the backoff before the caller tries again."""
        if not retriable(exc):
            raise exc
        if not self.within_bound(exc, announce=announce):
            raise self.timeout_error(exc) from None
        if pause:
            time.sleep(self.backoff())

    def call(self, request: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``request(*args, **kwargs)``, retried through a broker's loss (see :meth:`failed`)."""
        while True:
            try:
                result = request(*args, **kwargs)
            except kafka_errors.KafkaError as exc:
                self.failed(exc)
                continue
            self.recovered()
            return result


def ride_through(
    settings: Settings, what: str, request: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """``request(*args, **kwargs)`` retried through a broker's loss (see :class:`BrokerLoss`);
    ``what`` says what it was doing, in the error past the bound. A request that is a
    client's method (``consumer.end_offsets``) refreshes that client's metadata to retry."""
    client = getattr(request, "__self__", None)
    return BrokerLoss(settings, what, client=client).call(request, *args, **kwargs)


def leader_offsets(
    settings: Settings, what: str, consumer: Any, partitions: list[Any], *, end: bool = True
) -> dict[Any, int]:
    """The end (or, ``end=False``, beginning) offsets of ``partitions``, asked of their
    leaders through a broker's loss or a leader's move: each try is bounded to
    :data:`OFFSETS_ATTEMPT_MS`, so a lookup stuck on a former leader is retried, with fresh
    metadata, long before the bound."""
    lookup = consumer.end_offsets if end else consumer.beginning_offsets
    loss = BrokerLoss(settings, what, client=consumer)
    return loss.call(lookup, partitions, timeout_ms=OFFSETS_ATTEMPT_MS)
