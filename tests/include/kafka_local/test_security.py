"""A secured local cluster: SASL/SCRAM-SHA-512 and least-privilege ACLs per client role.

One cluster for the module, started the way a user starts it (``climatewatch kafka start
--sasl``), topics created as ``admin``. Every component then runs as its own principal
with the settings of its ``clients/<role>.env``: the stream (and its restart with state
restore), the archiver, the data-quality alert publisher, the simulator. What a role was
not granted is refused by the broker's authorizer, with Kafka's own error.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from include.contract import format_ts
from include.events import Alert
from include.kafka_clients import kafka_errors, make_admin, make_consumer, make_producer
from include.processes import free_port
from include.settings import Settings, load_settings
from include.simulator import SimulationConfig, run_simulation
from streaming.notify.config import NotifyConfig, Route, WebhookReceiver
from streaming.notify.service import NotifyService
from tests.fixtures.kafka import role_env
from tests.fixtures.notify_servers import WebhookServer
from tests.fixtures.stream import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))
ROLES = ["admin", "archiver", "notifier", "quality", "simulator", "stream"]
SCENARIO_START = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(variables)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class SecureCluster:
    """The module's cluster, as ``climatewatch kafka start --sasl`` left it."""

    env: dict[str, str]  # CLIMATEWATCH_* of the CLI that started it (data dir, ports)
    kafka_dir: Path
    started: subprocess.CompletedProcess

    def role_env(self, role: str) -> dict[str, str]:
        """The variables ``clients/<role>.env`` exports (read again on every call)."""
        return role_env(self.kafka_dir, role)

    @property
    def bootstrap(self) -> str:
        return self.role_env("admin")["CLIMATEWATCH_BOOTSTRAP_SERVERS"]

    def settings(self, role: str, **changes: Any) -> Settings:
        """What a process that sourced ``<role>.env`` loads (default topics and groups)."""
        values: dict[str, Any] = {
            name.removeprefix("CLIMATEWATCH_").lower(): value
            for name, value in self.role_env(role).items()
        }
        values.update(data_dir=self.kafka_dir.parent, metrics_port=0, kafka_timeout_ms=5000)
        values.update(changes)
        return load_settings(**values)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    data = tmp_path_factory.mktemp("secure-kafka") / "data"
    env = clean_env(
        CLIMATEWATCH_DATA_DIR=str(data),
        CLIMATEWATCH_KAFKA_PORT=str(free_port()),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_KAFKA_HEAP="384m",
    )
    try:
        started = cli(env, "kafka", "start", "--sasl", timeout=240)
        assert started.returncode == 0, started.stderr
        cluster = SecureCluster(env, data / "kafka", started)
        created = cli({**env, **cluster.role_env("admin")}, "topics", "create")
        assert created.returncode == 0, created.stderr + created.stdout
        yield cluster
    finally:
        cli(env, "kafka", "stop", timeout=90)


# --- helpers: every wait is bounded -----------------------------------------------------------
def poll_partition_zero(settings: Settings, topic: str, *, group_id: str | None = None) -> None:
    """Read ``topic``-0 for ~10 s as the components do: assigned (offsets looked up first,
    as the archiver and the restore do), or subscribed in ``group_id``."""
    consumer = make_consumer(settings, *([topic] if group_id else []), group_id=group_id)
    try:
        if not group_id:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.end_offsets([tp])
            consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def send_one(settings: Settings, topic: str, **options: Any) -> None:
    producer = make_producer(settings, max_block_ms=5000, **options)
    try:
        producer.send(topic, key=b"k", value=b'{"probe": 1}').get(timeout=20)
    finally:
        producer.close(timeout=5)


def simulate(settings: Settings, **options: Any) -> int:
    """Run the simulator (as the principal of ``settings``); returns the readings acknowledged."""
    config = SimulationConfig(
        **{
            "regions": 3,
            "sensors_per_region": 5,
            "rate": 0,
            "start": SCENARIO_START,
            "interval_s": 10,
            **options,
        }
    )
    stats = run_simulation(settings, config)
    assert stats.failed == 0 and stats.acknowledged == stats.sent > 0, stats.last_error
    return stats.acknowledged


# --- the CLI and authentication ----------------------------------------------------------------
def test_cli_starts_the_secure_cluster_and_writes_settings_per_role(secure: SecureCluster) -> None:
    assert "SASL/SCRAM-SHA-512 on" in secure.started.stdout
    assert "roles stream, archiver, simulator, quality, notifier" in " ".join(
        secure.started.stdout.split()
    )
    clients = secure.kafka_dir / "clients"
    assert sorted(p.name for p in clients.iterdir()) == [f"{role}.env" for role in ROLES]
    for role in ROLES:
        assert oct((clients / f"{role}.env").stat().st_mode & 0o777) == "0o600"
        assert secure.role_env(role)["CLIMATEWATCH_SASL_USERNAME"] == role
    status = cli(secure.env, "kafka", "status", timeout=60)
    assert status.returncode == 0 and "answering" in status.stdout, status.stderr


def test_unauthenticated_client_is_refused_with_one_line(secure: SecureCluster) -> None:
    env = clean_env(
        CLIMATEWATCH_BOOTSTRAP_SERVERS=secure.bootstrap, CLIMATEWATCH_KAFKA_TIMEOUT_MS="3000"
    )
    result = cli(env, "topics", "create")
    assert result.returncode == 1
    assert result.stderr.startswith("climatewatch: error: Kafka at 127.0.0.1:")
    assert "may require authentication" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_wrong_password_is_refused_with_one_line(secure: SecureCluster) -> None:
    env = clean_env(**secure.role_env("simulator"))
    env.update(CLIMATEWATCH_SASL_PASSWORD="not-the-password", CLIMATEWATCH_KAFKA_TIMEOUT_MS="3000")
    result = cli(env, "simulate", "--count", "1", "--rate", "0", "--start", "2026-01-01T00:00:00")
    assert result.returncode == 1
    # Kafka either answers the handshake with "invalid credentials" or hangs up first
    assert "user 'simulator'" in result.stderr and "CLIMATEWATCH_SASL_PASSWORD" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


# --- each component as its own principal -------------------------------------------------------
def test_stream_as_stream_alerts_then_restarts_with_state_restore(
    secure: SecureCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream's state restore reads the alerts and window-stats topics back at every
    start: a restart after alerts exist needs READ on both (issue #17)."""
    from streaming.processor import StreamProcessor

    simulator, stream = secure.settings("simulator"), secure.settings("stream")
    archiver = secure.settings("archiver")  # reads the outputs back, as the batch layer does
    # 20 minutes, lyon heating up after 10 and staying hot, and one record that is no reading
    simulate(
        simulator, duration_s=20 * 60, heat_wave="lyon", heat_wave_at_s=600, heat_wave_for_s=7200
    )
    send_one(simulator, simulator.topic_readings)
    StreamProcessor(stream).run(until_caught_up=True, max_runtime_s=120)

    def heat_firing() -> set[str]:
        published = [Alert.from_json(r.value) for r in read_topic(archiver, archiver.topic_alerts)]
        return {
            a.alert_id
            for a in published
            if (a.rule, a.region, a.status) == ("heat", "lyon", "firing")
        }

    fired = heat_firing()
    assert len(fired) == 1
    assert read_topic(archiver, archiver.topic_window_stats)
    dlq = read_topic(secure.settings("admin"), stream.topic_dlq)  # nobody else reads the DLQ
    assert b'{"probe": 1}' in [r.value for r in dlq]

    # the stream stopped; 10 more minutes of the same heat wave, and a restart
    simulate(
        simulator,
        start=SCENARIO_START + timedelta(minutes=20),
        duration_s=10 * 60,
        heat_wave="lyon",
        heat_wave_at_s=0,
        heat_wave_for_s=7200,
    )
    with caplog.at_level(logging.INFO, logger="climatewatch.stream"):
        StreamProcessor(stream).run(until_caught_up=True, max_runtime_s=120)
    restored = [r for r in caplog.records if r.getMessage() == "rule state restored"]
    assert restored and sum(r.records for r in restored) > 0  # type: ignore[attr-defined]
    # the restored memory knew lyon was already hot: no second heat alert
    assert heat_firing() == fired
    last = max(
        datetime.fromisoformat(json.loads(r.value)["window_end"].replace("Z", "+00:00"))
        for r in read_topic(archiver, archiver.topic_window_stats)
    )
    assert last > SCENARIO_START + timedelta(minutes=25)


def test_archiver_as_archiver_archives_the_topics(secure: SecureCluster, tmp_path: Path) -> None:
    from warehouse.archive.layout import archived_topics
    from warehouse.archive.run import archive_topic

    simulate(secure.settings("simulator"), regions=2, sensors_per_region=2, duration_s=120)
    archiver = secure.settings("archiver", data_dir=tmp_path)
    results = archive_topic(archiver, archiver.topic_readings)
    end = {r.partition: r.end_offset for r in results}
    assert sum(r.rows for r in results) >= 2 * 2 * 12
    assert sum(r.rows + r.rejected for r in results) == sum(r.end_offset for r in results)
    assert list(tmp_path.glob("archive/readings/date=*/region=*/*.parquet"))
    again = archive_topic(archiver, archiver.topic_readings)  # the ledger, not a group, resumes
    assert {r.partition: r.start_offset for r in again} == end and not any(r.rows for r in again)
    for topic in archived_topics(archiver):  # alerts and window stats too: READ on each
        assert archive_topic(archiver, topic) is not None


def test_quality_publishes_its_alert_as_quality(secure: SecureCluster) -> None:
    from warehouse.quality.validate import publish_alerts

    now = format_ts(datetime.now(UTC))
    alert = Alert(
        alert_id=f"dq-{uuid.uuid4().hex}",
        rule="data_quality",
        severity="critical",
        region="all",
        window_start=now,
        window_end=now,
        value=1.0,
        threshold=0.0,
        status="firing",
        message="probe from the security tests",
        emitted_at=now,
    )
    assert publish_alerts(secure.settings("quality"), [alert]) == 1
    archiver = secure.settings("archiver")
    published = [Alert.from_json(r.value) for r in read_topic(archiver, archiver.topic_alerts)]
    assert alert in published


def test_notifier_delivers_as_notifier_and_writes_only_its_own_topics(
    secure: SecureCluster,
) -> None:
    now = format_ts(datetime.now(UTC))
    alert = Alert(
        alert_id=f"heat-{uuid.uuid4().hex}",
        rule="heat",
        severity="warning",
        region="secured",
        window_start=now,
        window_end=now,
        value=35.0,
        threshold=30.0,
        status="firing",
        message="probe from the security tests",
        emitted_at=now,
    )
    send_one(secure.settings("stream"), secure.settings("stream").topic_alerts)  # not an alert
    producer = make_producer(secure.settings("stream"))
    producer.send(alert_topic := secure.settings("stream").topic_alerts, alert.to_json(), b"s")
    producer.flush(timeout=20)
    producer.close(timeout=5)
    notifier = secure.settings("notifier")
    with WebhookServer() as hook:
        config = NotifyConfig({"hook": WebhookReceiver("hook", hook.url)}, Route(("hook",)))
        service = NotifyService(notifier, config)
        thread = threading.Thread(target=service.run, kwargs={"max_runtime_s": 60}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        try:
            while not any(alert.alert_id.encode() in m.body for m in hook.messages):
                assert time.monotonic() < deadline, "the alert did not reach the webhook in 60 s"
                time.sleep(0.2)
        finally:
            service.stop()
            thread.join(timeout=60)
    assert alert_topic == notifier.topic_alerts
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        send_one(notifier, notifier.topic_alerts)  # it reads alerts, never writes them
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        poll_partition_zero(notifier, notifier.topic_readings)


# --- what a role was not granted ---------------------------------------------------------------
def test_archiver_cannot_produce_or_use_a_consumer_group(secure: SecureCluster) -> None:
    archiver = secure.settings("archiver")
    # no WRITE anywhere: the broker gives it no producer id (idempotent producers need one)
    with pytest.raises(kafka_errors.KafkaError, match="ClusterAuthorizationFailedError"):
        send_one(archiver, archiver.topic_readings)
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        send_one(archiver, archiver.topic_readings, enable_idempotence=False, retries=0)
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        poll_partition_zero(archiver, archiver.topic_readings, group_id="climatewatch-archiver")


def test_simulator_cannot_read_readings_or_write_elsewhere(secure: SecureCluster) -> None:
    simulator = secure.settings("simulator")
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        poll_partition_zero(simulator, simulator.topic_readings)
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        send_one(simulator, simulator.topic_alerts)


def test_stream_cannot_manage_topics_or_write_readings(secure: SecureCluster) -> None:
    from kafka.admin import NewTopic

    stream = secure.settings("stream")
    admin = make_admin(stream)
    try:
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            admin.create_topics([NewTopic("not-granted", 1, 1)], timeout_ms=5000)
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            admin.delete_topics([stream.topic_readings], timeout_ms=5000)
    finally:
        admin.close()
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        send_one(stream, stream.topic_readings)
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        poll_partition_zero(stream, stream.topic_readings, group_id="climatewatch-other")


def test_quality_cannot_read_readings_or_write_other_topics(secure: SecureCluster) -> None:
    quality = secure.settings("quality")
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        poll_partition_zero(quality, quality.topic_readings)
    for topic in (quality.topic_readings, quality.topic_window_stats):
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            send_one(quality, topic)


# --- an older cluster ---------------------------------------------------------------------------
def test_start_again_adds_a_new_role_and_drops_grants_no_role_has(secure: SecureCluster) -> None:
    """A cluster set up before the quality role existed (no password, no SCRAM user) and
    with grants this version no longer gives: ``kafka start`` on the running cluster puts
    the role in and takes the stale grant away."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
        ScramMechanism,
        UserScramCredentialDeletion,
    )

    admin_settings = secure.settings("admin")
    stale = ACL(
        "User:archiver",
        "*",
        ACLOperation.READ,
        ACLPermissionType.ALLOW,
        ResourcePattern(ResourceType.GROUP, "climatewatch-", ACLResourcePatternType.PREFIXED),
    )
    admin = make_admin(admin_settings)
    try:
        assert not admin.create_acls([stale])["failed"]
        deleted = admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion("quality", ScramMechanism.SCRAM_SHA_512)]
        )
        assert deleted == {"quality": None}
    finally:
        admin.close()
    users = secure.kafka_dir / "sasl-users.json"
    passwords = json.loads(users.read_text())
    old_password = passwords.pop("quality")
    users.write_text(json.dumps(passwords))
    (secure.kafka_dir / "clients" / "quality.env").unlink()

    again = cli(secure.env, "kafka", "start", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    quality = secure.settings("quality")
    assert quality.sasl_password is not None
    assert quality.sasl_password.get_secret_value() != old_password
    send_one(quality, quality.topic_alerts)
    archiver = secure.settings("archiver")
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        poll_partition_zero(archiver, archiver.topic_readings, group_id="climatewatch-archiver")
