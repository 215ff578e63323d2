"""The notification service through the real broker, to real local receivers.

Each test runs ``NotifyService`` (in a thread, or ``climatewatch notify`` as a process
where it is killed) on topics of its own, publishes alerts to the alerts topic as the
stream and data quality do, and watches what the receivers get.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition
from pydantic import SecretStr

from include.contract import format_ts
from include.events import Alert, alert_id_for
from include.kafka_clients import make_producer
from include.settings import Settings
from streaming.notify.config import (
    Matcher,
    NotifyConfig,
    Route,
    SmtpReceiver,
    TwilioReceiver,
    WebhookReceiver,
)
from streaming.notify.service import NotifyService
from tests.fixtures.notify_servers import FakeTwilio, SmtpServer, WebhookServer
from tests.fixtures.settings import run_cli, settings_env
from tests.fixtures.stream import read_topic
from tests.streaming.test_stream_failures import committed as committed_offsets

pytestmark = pytest.mark.kafka

START = datetime(2026, 7, 1, 12, tzinfo=UTC)


def firing(region: str, rule: str = "heat", minute: int = 0, severity: str = "warning") -> Alert:
    window_start = format_ts(START + timedelta(minutes=minute))
    return Alert(
        alert_id=alert_id_for(rule, region, window_start),
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        region=region,
        window_start=window_start,
        window_end=format_ts(START + timedelta(minutes=minute + 1)),
        value=34.5,
        threshold=30.0,
        status="firing",
        message=f"{region} mean 34.5 °C above 30.0 °C",
        emitted_at=format_ts(datetime.now(UTC)),
    )


def resolved(alert: Alert) -> Alert:
    return replace(alert, status="resolved", message=f"resolved: {alert.message}", value=25.0)


def publish(settings: Settings, records: list[Alert | bytes]) -> None:
    producer = make_producer(settings, linger_ms=0)
    try:
        for record in records:
            if isinstance(record, Alert):
                producer.send(settings.topic_alerts, record.to_json(), record.region.encode())
            else:
                producer.send(settings.topic_alerts, record, b"junk")
        producer.flush(timeout=30)
    finally:
        producer.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.1)


@contextmanager
def running(settings: Settings, config: NotifyConfig) -> Iterator[NotifyService]:
    service = NotifyService(settings, config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # the test says it, instead of a silent thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="notify-under-test", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the notification service did not stop within 60 s"
        if errors:  # said first: it explains whatever the test saw
            raise AssertionError(f"the notification service failed: {errors[0]!r}") from errors[0]


def webhooks(*servers: tuple[str, WebhookServer], route: Route | None = None) -> NotifyConfig:
    receivers = {name: WebhookReceiver(name, server.url, "json") for name, server in servers}
    return NotifyConfig(receivers, route or Route(receivers=tuple(receivers)))


def delivered(server: WebhookServer) -> list[tuple[str, str]]:
    """(alert_id, status) of every alert in every request the server accepted, in order."""
    out = []
    for request in server.messages:
        for alert in orjson.loads(request.body)["alerts"]:
            out.append((alert["alert_id"], alert["status"]))
    return out


def committed(settings: Settings) -> int:
    """Sum of the notification group's committed offsets on the alerts topic."""
    return sum(
        committed_offsets(settings, settings.notify_group_id, settings.topic_alerts).values()
    )


# --- delivery and commits ---------------------------------------------------------------------
def test_every_alert_reaches_every_receiver_and_offsets_follow(kafka_settings: Settings) -> None:
    # the speed layer's alerts and data quality's alike
    alerts = [firing(f"region-{i}") for i in range(9)]
    alerts.append(firing("all", rule="data_quality", severity="critical"))
    with WebhookServer() as first, WebhookServer() as second:
        config = webhooks(("first", first), ("second", second))
        publish(kafka_settings, [*alerts, resolved(alerts[0])])
        with running(kafka_settings, config):
            wait_until(
                lambda: len(delivered(first)) == 11 and len(delivered(second)) == 11,
                30,
                "11 alerts at both receivers",
            )
            wait_until(lambda: committed(kafka_settings) == 11, 30, "offsets committed")
        expected = [(a.alert_id, "firing") for a in alerts] + [(alerts[0].alert_id, "resolved")]
        assert sorted(delivered(first)) == sorted(expected) == sorted(delivered(second))


def test_a_republished_alert_and_a_restart_send_nothing_twice(kafka_settings: Settings) -> None:
    alert = firing("paris")
    with WebhookServer() as server:
        config = webhooks(("hook", server))
        publish(kafka_settings, [alert, alert])  # the stream's at-least-once: same id twice
        with running(kafka_settings, config):
            wait_until(lambda: committed(kafka_settings) == 2, 60, "both records done")
        publish(kafka_settings, [alert])
        with running(kafka_settings, config):
            wait_until(lambda: committed(kafka_settings) == 3, 60, "the third record done")
        assert delivered(server) == [(alert.alert_id, "firing")]


def test_records_that_are_not_alerts_are_skipped_and_the_service_goes_on(
    kafka_settings: Settings,
) -> None:
    alert = firing("lyon")
    with WebhookServer() as server:
        publish(kafka_settings, [b"not json", b'{"rule": 3}', b"[]", alert])
        with running(kafka_settings, webhooks(("hook", server))) as service:
            wait_until(lambda: delivered(server) == [(alert.alert_id, "firing")], 60, "the alert")
            assert service.metrics.invalid._value.get() == 3


# --- kill -9 ------------------------------------------------------------------------------------
def test_kill_9_in_a_burst_of_200_alerts_loses_none_and_repeats_none(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Only a notification accepted in the last instant before the kill can come again,
    and then with the same idempotency key: the receiver can tell."""
    alerts = [firing(f"region-{i}") for i in range(200)]  # one group each
    with WebhookServer() as server:
        server.respond_with(lambda _request: time.sleep(0.02))  # a receiver that takes 20 ms
        env = {
            **settings_env(kafka_settings),
            "CLIMATEWATCH_WEBHOOK_URL": server.url,
            "CLIMATEWATCH_NOTIFY_METRICS_PORT": "0",
        }
        publish(kafka_settings, alerts)
        command = [sys.executable, "-m", "include.ops.cli", "notify"]
        log = (tmp_path / "notify.log").open("ab")
        first = subprocess.Popen(command, env=env, stderr=log)
        try:
            wait_until(
                lambda: len(server.messages) >= 60 or first.poll() is not None,
                60,
                "60 notifications before the kill",
            )
            assert first.poll() is None, (tmp_path / "notify.log").read_text()[-2000:]
        except AssertionError:
            raise AssertionError((tmp_path / "notify.log").read_text()[-3000:]) from None
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        at_kill = len(server.messages)
        assert at_kill < 200, "the burst was over before the kill: nothing was tested"
        second = subprocess.Popen(command, env=env, stderr=log)
        try:
            wait_until(
                lambda: {a for a, _ in delivered(server)} >= {a.alert_id for a in alerts},
                90,
                "every alert delivered after the restart",
            )
            wait_until(lambda: committed(kafka_settings) == 200, 60, "all offsets committed")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
            log.close()
    keys = Counter(r.headers["idempotency-key"] for r in server.messages)
    repeated = {key: n for key, n in keys.items() if n > 1}
    # at most the one notification in flight at the kill, and never a third time
    assert len(repeated) <= 1 and all(n == 2 for n in repeated.values()), repeated
    assert len(keys) == 200


# --- a receiver down, a receiver that refuses ---------------------------------------------------
RECEIVER_DOWN_S = 120


@pytest.mark.slow
def test_a_receiver_down_for_two_minutes_gets_everything_after_in_order_per_region(
    kafka_settings: Settings,
) -> None:
    regions = ("north", "south", "east")
    history = []
    for minute in range(4):
        for region in regions:
            alert = firing(region, minute=minute * 10)
            history += [alert, resolved(alert)]
    with WebhookServer() as server:
        server.stop()
        with running(kafka_settings, webhooks(("hook", server))):
            publish(kafka_settings, history)
            time.sleep(RECEIVER_DOWN_S)
            assert committed(kafka_settings) == 0, "offsets committed for undelivered alerts"
            server.start()
            wait_until(lambda: len(delivered(server)) == len(history), 60, "everything delivered")
            wait_until(lambda: committed(kafka_settings) == len(history), 30, "offsets committed")
    got = delivered(server)
    for region in regions:
        sent = [(a.alert_id, a.status) for a in history if a.region == region]
        assert [d for d in got if d in set(sent)] == sent, region


def test_a_receiver_that_refuses_for_good_parks_the_alert_and_the_rest_goes_on(
    kafka_settings: Settings,
) -> None:
    alerts = [firing("north"), firing("south")]
    with WebhookServer() as refusing, WebhookServer() as working:
        refusing.respond_with(400)
        config = webhooks(("refusing", refusing), ("working", working))
        publish(kafka_settings, alerts)
        with running(kafka_settings, config) as service:
            wait_until(lambda: len(delivered(working)) == 2, 60, "the working receiver")
            wait_until(lambda: committed(kafka_settings) == 2, 60, "offsets committed")
            assert service.metrics.parked.labels("refusing")._value.get() == 2
    parked = [
        orjson.loads(r.value) for r in read_topic(kafka_settings, kafka_settings.topic_notify_dlq)
    ]
    assert {p["alert"]["alert_id"] for p in parked} == {a.alert_id for a in alerts}
    assert all(p["receiver"] == "refusing" and "400" in p["error"] for p in parked)


# --- routing, grouping, reminders, silences, acks -----------------------------------------------
def test_routes_send_each_alert_where_it_belongs(kafka_settings: Settings) -> None:
    with FakeTwilio() as twilio, SmtpServer() as smtp, WebhookServer() as hook:
        receivers = {
            "sms": TwilioReceiver(
                "sms",
                twilio.account_sid,
                SecretStr(twilio.auth_token),
                "+15005550006",
                ("+15551234567",),
                api_base_url=twilio.url,
            ),
            "mail": SmtpReceiver(
                "mail",
                "127.0.0.1",
                smtp.port,
                "cw@example.org",
                ("ops@example.org",),
                username=smtp.username,
                password=SecretStr(smtp.password),
                ca_file=str(smtp.ca_file),
            ),
            "hook": WebhookReceiver("hook", hook.url),
        }
        route = Route(
            receivers=("hook",),
            routes=(
                Route(("sms",), (Matcher("severity", "critical"),), continue_matching=True),
                Route(("mail",), (Matcher("region", pattern="north(-.*)?"),)),
            ),
        )
        critical_south = firing("south", severity="critical")
        warning_north = firing("north-east")
        warning_west = firing("west")
        critical_north = firing("north", rule="cold", severity="critical")
        publish(kafka_settings, [critical_south, warning_north, warning_west, critical_north])
        with running(kafka_settings, NotifyConfig(receivers, route)):
            wait_until(lambda: committed(kafka_settings) == 4, 60, "all four routed")
        texts = [m["Body"] for m in twilio.messages]
        assert (
            len(texts) == 2
            and any("south" in t for t in texts)
            and any("north" in t for t in texts)
        )
        subjects = sorted(m.message["Subject"] for m in smtp.messages)
        assert len(subjects) == 2 and all("north" in s for s in subjects), subjects
        assert [a for a, _ in delivered(hook)] == [warning_west.alert_id], (
            "the default route takes only what no route took"
        )


def test_alerts_of_one_group_arrive_in_one_notification(kafka_settings: Settings) -> None:
    with WebhookServer() as hook:
        route = Route(receivers=("hook",), group_by=("region",), group_wait_s=2.0)
        alerts = [firing("north", rule) for rule in ("heat", "drastic_change", "silent_sensor")]
        publish(kafka_settings, [*alerts, firing("south")])
        with running(kafka_settings, webhooks(("hook", hook), route=route)):
            wait_until(lambda: len(delivered(hook)) == 4, 60, "four alerts")
        groups = sorted(len(orjson.loads(r.body)["alerts"]) for r in hook.messages)
        assert groups == [1, 3]


def test_a_firing_alert_is_repeated_until_acknowledged_then_resolved(
    kafka_settings: Settings,
) -> None:
    alert = firing("north")
    with WebhookServer() as hook:
        route = Route(receivers=("hook",), repeat_interval_s=2.0)
        publish(kafka_settings, [alert])
        with running(kafka_settings, webhooks(("hook", hook), route=route)):
            wait_until(lambda: len(hook.messages) >= 3, 60, "the alert and two reminders")
            result = run_cli(kafka_settings, "alerts", "ack", alert.alert_id, "--comment", "on it")
            assert result.returncode == 0, result.stderr
            time.sleep(1)  # a reminder already queued at the ack may still go
            after_ack = len(hook.messages)
            time.sleep(6)
            assert len(hook.messages) == after_ack, "reminders went on after the ack"
            publish(kafka_settings, [resolved(alert)])
            wait_until(lambda: delivered(hook)[-1] == (alert.alert_id, "resolved"), 60, "resolved")
        sequences = [orjson.loads(r.body)["sequence"] for r in hook.messages]
        assert sequences[:3] == [0, 1, 2]


def test_a_silenced_region_is_held_back_and_delivered_when_the_silence_ends(
    kafka_settings: Settings,
) -> None:
    result = run_cli(
        kafka_settings,
        "alerts",
        "silence",
        "--region",
        "north",
        "--for",
        "1h",
        "--comment",
        "maintenance",
    )
    assert result.returncode == 0, result.stderr
    silence_id = result.stdout.split()[1].rstrip(":")
    listed = run_cli(kafka_settings, "alerts", "silences")
    assert silence_id in listed.stdout and "maintenance" in listed.stdout
    held, spared, free = firing("north"), firing("north", rule="cold"), firing("south")
    with WebhookServer() as hook:
        publish(kafka_settings, [held, spared, resolved(spared), free])
        with running(kafka_settings, webhooks(("hook", hook))) as service:
            wait_until(lambda: committed(kafka_settings) == 4, 60, "all four read and done")
            assert delivered(hook) == [(free.alert_id, "firing")]
            assert service.metrics.silenced.labels("hook")._value.get() == 3
            ended = run_cli(kafka_settings, "alerts", "unsilence", silence_id)
            assert ended.returncode == 0, ended.stderr
            wait_until(lambda: len(delivered(hook)) == 2, 60, "the held alert after the silence")
        # the one still firing comes; the one that resolved meanwhile is not news
        assert delivered(hook)[1] == (held.alert_id, "firing")
    assert run_cli(kafka_settings, "alerts", "silences").stdout.strip() == "no silence in force"


def test_unknown_silence_and_bad_duration_are_one_line_errors(kafka_settings: Settings) -> None:
    missing = run_cli(kafka_settings, "alerts", "unsilence", "nope")
    bad = run_cli(
        kafka_settings, "alerts", "silence", "--region", "x", "--for", "soon", "--comment", "c"
    )
    for result in (missing, bad):
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_committed_offsets_never_pass_an_alert_in_flight(kafka_settings: Settings) -> None:
    """While the only receiver is down, nothing is committed; TopicPartition as consumed."""
    with WebhookServer() as hook:
        hook.stop()
        publish(kafka_settings, [firing("north")])
        with running(kafka_settings, webhooks(("hook", hook))) as service:
            wait_until(lambda: service.next_offset, 60, "the alert read")
            time.sleep(2)
            assert service.positions() == {
                TopicPartition(kafka_settings.topic_alerts, p): 0
                for p in [next(iter(service.next_offset)).partition]
            }
            assert committed(kafka_settings) == 0
