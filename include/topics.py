"""The ClimateWatch topics and their idempotent provisioning.

Topic names come from the settings (one owner); this module says how many partitions,
which replication and which retention each one gets, creates what is missing and
reports — never hides — an existing topic that differs from what is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from include.errors import ClimateWatchError
from include.kafka_clients import kafka_errors, make_admin, translate_kafka_errors
from include.settings import Settings

TopicState = Literal["created", "exists", "mismatch"]
COMPACTED = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicResult:
    name: str
    state: TopicState
    detail: str


def topic_specs(settings: Settings, brokers: int = 1) -> list[TopicSpec]:
    """What every ClimateWatch topic should look like under these settings.

    Unless set, topics are replicated 3 times (fewer on a smaller cluster) with
    ``min.insync.replicas=2`` once there are 3 replicas, so that with ``acks=all`` an
    acknowledged reading survives the loss of any one broker.
    """
    rf = settings.replication_factor or min(3, brokers)
    min_isr = settings.min_insync_replicas or (2 if rf >= 3 else None)
    common: dict[str, str] = {}
    if min_isr is not None:
        common["min.insync.replicas"] = str(min_isr)
    readings = {**common, "retention.ms": str(settings.retention_ms)}
    return [
        TopicSpec(settings.topic_readings, settings.readings_partitions, rf, readings),
        TopicSpec(settings.topic_alerts, settings.output_partitions, rf, dict(common)),
        TopicSpec(settings.topic_window_stats, settings.output_partitions, rf, dict(common)),
        TopicSpec(settings.topic_dlq, settings.readings_partitions, rf, readings),
        TopicSpec(settings.topic_window_partials, settings.output_partitions, rf, readings),
        # The notification service's own: what each receiver accepted, and the silences
        # and acks, kept by key for good (read whole at every start); what was refused.
        TopicSpec(settings.topic_notify_deliveries, 1, rf, {**common, **COMPACTED}),
        TopicSpec(settings.topic_silences, 1, rf, {**common, **COMPACTED}),
        TopicSpec(settings.topic_notify_dlq, settings.output_partitions, rf, dict(common)),
    ]


def ensure_topics(settings: Settings) -> list[TopicResult]:
    """Create missing topics; report existing ones and any partition-count mismatch."""
    from kafka.admin import NewTopic

    admin = make_admin(settings)
    try:
        with translate_kafka_errors(settings):
            specs = topic_specs(settings, brokers=len(admin.describe_cluster()["brokers"]))
            existing = _partition_counts(admin, [spec.name for spec in specs])
            results: list[TopicResult] = []
            missing = [spec for spec in specs if spec.name not in existing]
            if missing:
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                s.name, s.partitions, s.replication_factor, topic_configs=s.config
                            )
                            for s in missing
                        ],
                        timeout_ms=settings.kafka_timeout_ms,
                    )
                except kafka_errors.TopicAlreadyExistsError:
                    pass  # another process created it between our look and our create
                except kafka_errors.InvalidReplicationFactorError as exc:
                    raise ClimateWatchError(
                        f"cannot create topics with replication factor {specs[0].replication_factor} "
                        f"(CLIMATEWATCH_REPLICATION_FACTOR): the cluster has fewer brokers ({exc})"
                    ) from None
            for spec in specs:
                if spec in missing:
                    results.append(
                        TopicResult(
                            spec.name,
                            "created",
                            f"{spec.partitions} partitions, replication {spec.replication_factor}",
                        )
                    )
                elif existing[spec.name] < spec.partitions:
                    results.append(
                        TopicResult(
                            spec.name,
                            "mismatch",
                            f"has {existing[spec.name]} partitions, {spec.partitions} asked "
                            "(Kafka never removes partitions; add them with kafka-topics --alter "
                            "if you need the parallelism)",
                        )
                    )
                else:
                    results.append(
                        TopicResult(
                            spec.name, "exists", f"{existing[spec.name]} partitions, unchanged"
                        )
                    )
            return results
    finally:
        admin.close()


def _partition_counts(admin: object, names: list[str]) -> dict[str, int]:
    known = set(admin.list_topics())  # type: ignore[attr-defined]
    wanted = [name for name in names if name in known]
    if not wanted:
        return {}
    described = admin.describe_topics(wanted)  # type: ignore[attr-defined]
    return {topic["name"]: len(topic["partitions"]) for topic in described}
