"""A secured local broker: SASL/SCRAM-SHA-512 and least-privilege ACLs per client role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.errors import ClimateWatchError
from include.kafka_clients import make_consumer, make_producer
from include.kafka_local.cluster import LocalCluster
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
from include.settings import Settings, load_settings
from include.topics import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    from include.kafka_local.security import SaslConfig

    cluster = LocalCluster(
        tmp_path_factory.mktemp("secure-kafka"),
        jars=fetch_jars(load_settings()),
        port=free_port(),
        controller_port=free_port(),
        heap="384m",
        sasl=SaslConfig.generate(),
    )
    cluster.start(timeout_s=120, die_with_parent=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def as_role(cluster: LocalCluster, role: str, **changes: object) -> Settings:
    assert cluster.sasl is not None
    suffix = "shared"
    values = {
        "bootstrap_servers": cluster.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": role,
        "sasl_password": cluster.sasl.passwords[role],
        "kafka_timeout_ms": 4000,
        "topic_readings": f"secure-readings-{suffix}",
        "topic_alerts": f"secure-alerts-{suffix}",
        "topic_window_stats": f"secure-window-stats-{suffix}",
        "topic_dlq": f"secure-readings-{suffix}.dlq",
        "topic_window_partials": f"secure-window-partials-{suffix}",
    }
    values.update(changes)
    return load_settings(**values)


@pytest.fixture(scope="module")
def provisioned(secure_cluster: LocalCluster) -> LocalCluster:
    admin = as_role(secure_cluster, "admin")
    ensure_topics(admin)
    secure_cluster.grant_client_acls(admin)
    return secure_cluster


def send_one(settings: Settings, topic: str) -> None:
    producer = make_producer(settings, max_block_ms=5000)
    try:
        producer.send(topic, key=b"k", value=b'{"probe": 1}').get(timeout=20)
    finally:
        producer.close(timeout=5)


def test_unauthenticated_client_is_refused_with_one_line(provisioned: LocalCluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(
        CLIMATEWATCH_BOOTSTRAP_SERVERS=provisioned.bootstrap, CLIMATEWATCH_KAFKA_TIMEOUT_MS="3000"
    )
    result = subprocess.run(
        [CLI, "topics", "create"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.startswith("climatewatch: error: Kafka at 127.0.0.1:")
    assert "may require authentication" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_wrong_password_is_refused_with_one_line(provisioned: LocalCluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(provisioned.sasl.client_env("simulator", provisioned.bootstrap))
    env.update(CLIMATEWATCH_SASL_PASSWORD="not-the-password", CLIMATEWATCH_KAFKA_TIMEOUT_MS="3000")
    result = subprocess.run(
        [CLI, "simulate", "--count", "1", "--rate", "0", "--start", "2026-01-01T00:00:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    # Kafka either answers the handshake with "invalid credentials" or hangs up first
    assert "user 'simulator'" in result.stderr and "CLIMATEWATCH_SASL_PASSWORD" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_simulator_may_only_write_readings(provisioned: LocalCluster) -> None:
    simulator = as_role(provisioned, "simulator")
    send_one(simulator, simulator.topic_readings)
    with pytest.raises(Exception, match="TopicAuthorizationFailed"):
        send_one(simulator, simulator.topic_alerts)
    with pytest.raises(ClimateWatchError, match="denied user 'simulator'"):
        consumer = make_consumer(simulator, simulator.topic_readings, group_id="climatewatch-probe")
        try:
            from include.kafka_clients import translate_kafka_errors

            with translate_kafka_errors(simulator):
                consumer.poll(timeout_ms=5000)
                consumer.poll(timeout_ms=5000)
        finally:
            consumer.close()


def test_stream_reads_readings_and_writes_its_outputs_archiver_only_reads(
    provisioned: LocalCluster,
) -> None:
    stream = as_role(provisioned, "stream")
    for topic in (stream.topic_alerts, stream.topic_window_stats, stream.topic_dlq):
        send_one(stream, topic)
    with pytest.raises(Exception, match="TopicAuthorizationFailed"):
        send_one(stream, stream.topic_readings)

    archiver = as_role(provisioned, "archiver")
    with pytest.raises(Exception, match="AuthorizationFailed"):  # no write anywhere: no producer id
        send_one(archiver, archiver.topic_alerts)
    consumer = make_consumer(
        archiver, archiver.topic_alerts, group_id=f"climatewatch-archiver-{uuid.uuid4().hex[:6]}"
    )
    try:
        seen = []
        for _ in range(20):
            for batch in consumer.poll(timeout_ms=1000).values():
                seen.extend(batch)
            if seen:
                break
        assert [record.value for record in seen] == [b'{"probe": 1}']
    finally:
        consumer.close()


def test_cli_starts_a_secure_broker_and_writes_client_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(
        CLIMATEWATCH_DATA_DIR=str(tmp_path / "data"),
        CLIMATEWATCH_KAFKA_PORT=str(port),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_KAFKA_HEAP="384m",
    )
    try:
        started = subprocess.run(
            [CLI, "kafka", "start", "--sasl"], env=env, capture_output=True, text=True, timeout=180
        )
        assert started.returncode == 0, started.stderr
        assert "SASL/SCRAM-SHA-512 on" in started.stdout
        clients = tmp_path / "data" / "kafka" / "clients"
        assert sorted(p.name for p in clients.iterdir()) == [
            "admin.env",
            "archiver.env",
            "simulator.env",
            "stream.env",
        ]
        assert oct((clients / "stream.env").stat().st_mode & 0o777) == "0o600"
        status = subprocess.run(
            [CLI, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0 and "answering" in status.stdout
    finally:
        subprocess.run([CLI, "kafka", "stop"], env=env, capture_output=True, timeout=60)
