"""Data-quality alerts reach the alerts topic, or the run says they did not (real broker:
the topic is given a ``max.message.bytes`` smaller than an alert, so the broker refuses)."""

from __future__ import annotations

import time

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from include.errors import ClimateWatchError
from include.events import Alert
from include.kafka_clients import make_admin
from include.settings import Settings
from tests.fixtures.stream import alerts
from warehouse.quality.validate import RULE, publish_alerts

pytestmark = pytest.mark.kafka


def quality_alert(batch: str) -> Alert:
    return Alert(
        alert_id=f"{RULE}-all-{batch}",
        rule=RULE,
        severity="critical",
        region="all",
        window_start="2026-11-26T00:00:00+00:00",
        window_end="2026-11-26T01:00:00+00:00",
        value=12.0,
        threshold=0.0,
        status="firing",
        message=f"archive batch {batch}: quarantined whole",
        emitted_at="2026-11-26T02:00:00+00:00",
    )


def limit_topic(settings: Settings, topic: str, max_message_bytes: int) -> None:
    admin = make_admin(settings)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    configs={"max.message.bytes": max_message_bytes},
                )
            ],
            raise_on_unknown=False,  # a topic created a moment ago may not list its configs yet
        )
        deadline = time.monotonic() + 30
        while True:  # until the broker applies it
            described = admin.describe_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None}
                    )
                ],
                config_filter="all",
            )
            if described["topic"][topic]["max.message.bytes"]["value"] == str(max_message_bytes):
                return
            assert time.monotonic() < deadline, "the topic's limit was never applied"
            time.sleep(0.2)
    finally:
        admin.close()


def test_published_alerts_are_acknowledged(kafka_settings: Settings) -> None:
    assert publish_alerts(kafka_settings, [quality_alert("b1"), quality_alert("b2")]) == 2
    assert [a.alert_id for a in alerts(kafka_settings)] == [f"{RULE}-all-b1", f"{RULE}-all-b2"]


def test_alerts_the_broker_refuses_raise_one_line_naming_the_topic(
    kafka_settings: Settings,
) -> None:
    limit_topic(kafka_settings, kafka_settings.topic_alerts, 100)  # an alert is ~300 bytes
    with pytest.raises(ClimateWatchError) as refused:
        publish_alerts(kafka_settings, [quality_alert("b1")])
    message = str(refused.value)
    assert "\n" not in message
    assert f"topic {kafka_settings.topic_alerts!r}" in message
    assert "MessageSizeTooLargeError" in message
    assert alerts(kafka_settings) == []
