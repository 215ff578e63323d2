"""Factories for the kafka-python clients ClimateWatch uses, built from the settings.

Every client gets the same connection and security options, fails fast when the
cluster is unreachable (``bootstrap_timeout_ms``), and turns kafka-python's exceptions
into one-line :class:`ClimateWatchError` messages a user can act on. An Airflow Kafka
connection's extra maps to the same settings (:func:`kafka_overrides_from_extra`).

A bootstrap picks one broker of the list at random; one that is frozen (SIGSTOP, a stuck
JVM) accepts the connection and never answers, and the bootstrap times out although the
other brokers answer. Such a bootstrap is tried again, within the broker-loss bound
(:mod:`include.kafka_retry`); one that failed for any other reason (nothing listening,
refused credentials, an untrusted certificate) fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from include.errors import ClimateWatchError
from include.kafka_retry import BrokerLoss
from include.settings import Settings

# kafka-python 3.0.x reads its resources the deprecated way at import time.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka
    import kafka.errors as kafka_errors
    from kafka.admin import KafkaAdminClient

T = TypeVar("T")

# A group member between revocation and assignment polls this long. kafka-python 3.0.12
# applies a join (JoinGroup + SyncGroup) only if it completes while a poll waits for it;
# one that completes between polls is dropped: the join starts over (a new rebalance for
# the whole group), or, seen with a lone member, the member stays joined with no
# partition at all. Short waits on a busy loop make rebalances repeat or stick.
REJOIN_WAIT_MS = 500


def make_producer(settings: Settings, **overrides: Any) -> kafka.KafkaProducer:
    """A producer that waits for all in-sync replicas and never reorders a sensor's readings.

    Its sends retry for their delivery timeout; a send that needs a topic's metadata first
    waits for it up to the broker-loss bound (``max_block_ms``)."""
    config: dict[str, Any] = {
        **settings.kafka_client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "max_block_ms": int(settings.broker_loss_timeout_s * 1000),
    }
    config.update(overrides)
    return _connected(settings, lambda: kafka.KafkaProducer(**config))


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> kafka.KafkaConsumer:
    """A consumer (``group_id`` and offsets policy come from the caller's overrides)."""
    config: dict[str, Any] = {
        **settings.kafka_client_config(),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    return _connected(settings, lambda: kafka.KafkaConsumer(*topics, **config))


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    config = {**settings.kafka_client_config(), **overrides}
    config.pop("request_timeout_ms", None)
    return _connected(settings, lambda: KafkaAdminClient(**config))


def _connected(settings: Settings, build: Callable[[], T]) -> T:
    """``build()`` a client; a bootstrap that timed out on a broker that never answered
    while the list names others is tried again (see the module's docstring)."""
    loss = BrokerLoss(settings, "connecting to the cluster")
    several = len([s for s in settings.bootstrap_servers.split(",") if s.strip()]) > 1
    while True:
        with translate_kafka_errors(settings) as diagnosis:
            try:
                return build()
            except kafka_errors.KafkaTimeoutError as exc:
                frozen = diagnosis.timed_out and not (diagnosis.auth_failed or diagnosis.untrusted)
                if not (several and frozen and loss.within_bound(exc)):
                    raise
        time.sleep(loss.backoff())


class _ConnectionDiagnosis(logging.Handler):
    """Keeps what kafka-python logs while it bootstraps: it only says *why* a bootstrap
    failed in its log (refused credentials, a listener that hung up), not in the error."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.auth_failed: str | None = None
        self.untrusted: str | None = None
        self.hung_up = False
        self.timed_out = False  # a broker accepted the connection and never answered

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailedError" in message and self.auth_failed is None:
            self.auth_failed = message.rsplit("SaslAuthenticationFailedError:", 1)[-1].strip(" )")[
                :160
            ]
        elif "CERTIFICATE_VERIFY_FAILED" in message and self.untrusted is None:
            self.untrusted = message.rsplit("certificate verify failed:", 1)[-1].split("(_ssl")[0]
            self.untrusted = self.untrusted.strip(" )")[:160]
        elif "socket disconnected" in message:
            self.hung_up = True
        elif "Request timed out" in message:
            self.timed_out = True


@contextlib.contextmanager
def translate_kafka_errors(settings: Settings) -> Iterator[_ConnectionDiagnosis]:
    """Turn the client errors a user can fix into one sentence naming the fix (yields
    what the client logged meanwhile)."""
    kafka_logger = logging.getLogger("kafka")
    diagnosis = _ConnectionDiagnosis()
    previous = (kafka_logger.level, kafka_logger.propagate)
    kafka_logger.addHandler(diagnosis)
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False  # the retries of a failing bootstrap are not the user's news
    try:
        yield diagnosis
    except kafka_errors.KafkaTimeoutError as exc:
        if "bootstrap" not in str(exc):
            raise
        if diagnosis.auth_failed is not None:
            raise ClimateWatchError(
                f"Kafka refused the credentials of user {settings.sasl_username!r} "
                f"(CLIMATEWATCH_SASL_USERNAME / CLIMATEWATCH_SASL_PASSWORD): {diagnosis.auth_failed}"
            ) from None
        if diagnosis.untrusted is not None:
            raise ClimateWatchError(
                f"Kafka at {settings.bootstrap_servers} presented a TLS certificate this client "
                f"does not trust ({diagnosis.untrusted}): set CLIMATEWATCH_SSL_CAFILE to the CA "
                f"that signed it (local broker: DATA_DIR/kafka/tls/ca.pem)"
            ) from None
        if diagnosis.hung_up and settings.security_protocol.startswith("SASL_"):
            raise ClimateWatchError(
                f"Kafka at {settings.bootstrap_servers} closed the connection of user "
                f"{settings.sasl_username!r} before answering: check CLIMATEWATCH_SASL_USERNAME / "
                f"CLIMATEWATCH_SASL_PASSWORD and CLIMATEWATCH_SECURITY_PROTOCOL"
            ) from None
        if diagnosis.hung_up:
            raise ClimateWatchError(
                f"Kafka at {settings.bootstrap_servers} closed the connection before answering: "
                f"it may require authentication or TLS (CLIMATEWATCH_SECURITY_PROTOCOL is "
                f"{settings.security_protocol})"
            ) from None
        raise ClimateWatchError(
            f"cannot reach Kafka at {settings.bootstrap_servers} "
            f"(CLIMATEWATCH_BOOTSTRAP_SERVERS): start the local broker with "
            f"'climatewatch kafka start' or point the setting at your cluster"
        ) from None
    except kafka_errors.SaslAuthenticationFailedError as exc:
        raise ClimateWatchError(
            f"Kafka refused the credentials of user {settings.sasl_username!r} "
            f"(CLIMATEWATCH_SASL_USERNAME / CLIMATEWATCH_SASL_PASSWORD): {_first_line(exc)}"
        ) from None
    except (
        kafka_errors.TopicAuthorizationFailedError,
        kafka_errors.GroupAuthorizationFailedError,
        kafka_errors.ClusterAuthorizationFailedError,
        kafka_errors.AuthorizationError,
    ) as exc:
        raise ClimateWatchError(denied_message(settings, exc)) from None
    except kafka_errors.KafkaConnectionError as exc:  # a broker died mid-command
        raise ClimateWatchError(
            f"lost the connection to a Kafka broker of {settings.bootstrap_servers} "
            f"({_first_line(exc)}): run the command again once the cluster has a leader for "
            "every partition"
        ) from None
    finally:
        kafka_logger.removeHandler(diagnosis)
        kafka_logger.setLevel(previous[0])
        kafka_logger.propagate = previous[1]


def denied_message(settings: Settings, exc: BaseException) -> str:
    """One line for an operation the cluster's ACLs refuse."""
    return f"Kafka denied user {settings.sasl_username!r} this operation (ACLs): {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:200]


# --- an Airflow Kafka connection ----------------------------------------------------------------
# The keys of an Airflow Kafka connection's extra (Apache Kafka provider spellings, which
# are librdkafka's, and kafka-python's) → the ClimateWatch settings they set.
_EXTRA_TO_SETTING = {
    "bootstrap.servers": "bootstrap_servers",
    "bootstrap_servers": "bootstrap_servers",
    "security.protocol": "security_protocol",
    "security_protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl_mechanism": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl_plain_username": "sasl_username",
    "sasl.password": "sasl_password",
    "sasl_plain_password": "sasl_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl_cafile": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl_certfile": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl_keyfile": "ssl_keyfile",
}


def kafka_overrides_from_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Settings overrides from a Kafka connection's extra (Apache Kafka provider keys).

    What lets the DAGs connect with an Airflow connection (``kafka_default``) instead of
    the ``CLIMATEWATCH_*`` settings: pass the result to ``load_settings(**overrides)``.
    """
    overrides = {}
    for key, value in extra.items():
        setting = _EXTRA_TO_SETTING.get(key)
        if setting is not None and value not in (None, ""):
            overrides[setting] = value
    return overrides
