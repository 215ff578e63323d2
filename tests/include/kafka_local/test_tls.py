"""TLS on the local secure broker: ``climatewatch kafka start --sasl --tls`` generates a CA
and a broker certificate and serves SASL_SSL; clients that trust the CA work, others get
one line."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import TopicPartition

from include.kafka_clients import make_consumer, make_producer
from include.kafka_local.security import TlsConfig
from include.processes import free_port
from include.settings import Settings, load_settings
from tests.fixtures.kafka import role_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))


@dataclass(frozen=True)
class TlsBroker:
    env: dict[str, str]  # CLIMATEWATCH_* of the CLI that started it (data dir, ports)
    kafka_dir: Path
    port: int

    def role_env(self, role: str) -> dict[str, str]:
        """The variables ``clients/<role>.env`` exports."""
        return role_env(self.kafka_dir, role)

    def settings(self, role: str) -> Settings:
        values = {
            name.removeprefix("CLIMATEWATCH_").lower(): value
            for name, value in self.role_env(role).items()
        }
        return load_settings(**values, kafka_timeout_ms=5000)


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(variables)
    return env


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    data = tmp_path_factory.mktemp("tls-kafka") / "data"
    port = free_port()
    env = clean_env(
        CLIMATEWATCH_DATA_DIR=str(data),
        CLIMATEWATCH_KAFKA_PORT=str(port),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_KAFKA_HEAP="384m",
    )
    try:
        started = cli(env, "kafka", "start", "--sasl", "--tls", timeout=240)
        assert started.returncode == 0, started.stderr
        assert "TLS on (SASL_SSL)" in started.stdout
        broker = TlsBroker(env, data / "kafka", port)
        created = cli({**env, **broker.role_env("admin")}, "topics", "create")
        assert created.returncode == 0, created.stderr + created.stdout
        yield broker
    finally:
        cli(env, "kafka", "stop", timeout=90)


def test_start_generates_certificates_and_client_settings(tls_broker: TlsBroker) -> None:
    tls = tls_broker.kafka_dir / "tls"
    assert sorted(p.name for p in tls.iterdir()) == ["broker-key.pem", "broker.pem", "ca.pem"]
    assert oct(tls.stat().st_mode & 0o777) == "0o700"
    assert oct((tls / "broker-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((tls_broker.kafka_dir / "server.properties").stat().st_mode & 0o777) == "0o600"
    for role in ("admin", "stream", "archiver", "simulator", "quality"):
        env = tls_broker.role_env(role)
        assert env["CLIMATEWATCH_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["CLIMATEWATCH_SSL_CAFILE"] == str(tls / "ca.pem")
    # the listener speaks TLS with a certificate for 127.0.0.1 and localhost, signed by the CA
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    for host in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as wrapped,
        ):
            names = dict(wrapped.getpeercert()["subjectAltName"])
            assert names == {"IP Address": "127.0.0.1", "DNS": "localhost"}
    status = cli(tls_broker.env, "kafka", "status")  # the CLI's own admin client speaks TLS
    assert status.returncode == 0 and "answering" in status.stdout, status.stderr
    # the key never reaches a log
    key_body = "".join((tls / "broker-key.pem").read_text().splitlines()[1:-1])
    log = (tls_broker.kafka_dir / "broker.log").read_text(errors="replace")
    assert key_body[:40] not in log and "PRIVATE KEY" not in log
    assert "ssl.keystore.key = [hidden]" in log


def test_sasl_ssl_clients_trusting_the_ca_produce_and_consume(tls_broker: TlsBroker) -> None:
    simulator = tls_broker.settings("simulator")
    assert simulator.security_protocol == "SASL_SSL" and simulator.ssl_cafile is not None
    payload = f'{{"probe": "{uuid.uuid4().hex}"}}'.encode()
    producer = make_producer(simulator, max_block_ms=10_000)
    try:
        producer.send(simulator.topic_readings, key=b"tls", value=payload).get(timeout=30)
    finally:
        producer.close(timeout=5)

    archiver = tls_broker.settings("archiver")  # reads as the archiver does: no group
    consumer = make_consumer(archiver, group_id=None)
    try:
        partitions = [
            TopicPartition(archiver.topic_readings, p)
            for p in consumer.partitions_for_topic(archiver.topic_readings) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen = []
        for _ in range(30):
            for batch in consumer.poll(timeout_ms=1000).values():
                seen.extend(record.value for record in batch)
            if payload in seen:
                break
        assert payload in seen
    finally:
        consumer.close()


@pytest.mark.parametrize("trust", ["system", "another-ca"])
def test_a_client_not_trusting_the_ca_gets_one_line(
    tls_broker: TlsBroker, trust: str, tmp_path: Path
) -> None:
    env = {
        **tls_broker.env,
        **tls_broker.role_env("admin"),
        "CLIMATEWATCH_KAFKA_TIMEOUT_MS": "3000",
    }
    if trust == "system":
        del env["CLIMATEWATCH_SSL_CAFILE"]
    else:
        other = TlsConfig(tmp_path / "other-ca")
        other.ensure()
        env["CLIMATEWATCH_SSL_CAFILE"] = str(other.ca_file)
    result = cli(env, "topics", "create")
    assert result.returncode == 1
    assert result.stderr.startswith("climatewatch: error: Kafka at 127.0.0.1:")
    assert "TLS certificate this client does not trust" in result.stderr
    assert "CLIMATEWATCH_SSL_CAFILE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert env["CLIMATEWATCH_SASL_PASSWORD"] not in result.stderr + result.stdout


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_plaintext_to_the_tls_port_is_refused_cleanly(tls_broker: TlsBroker, protocol: str) -> None:
    env = {**tls_broker.env, "CLIMATEWATCH_KAFKA_TIMEOUT_MS": "3000"}
    if protocol == "SASL_PLAINTEXT":
        env.update(tls_broker.role_env("admin"))
        del env["CLIMATEWATCH_SSL_CAFILE"]
    else:
        env["CLIMATEWATCH_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{tls_broker.port}"
    env["CLIMATEWATCH_SECURITY_PROTOCOL"] = protocol
    result = cli(env, "topics", "create")
    assert result.returncode == 1
    assert result.stderr.startswith("climatewatch: error: Kafka at 127.0.0.1:")
    assert "closed the connection" in result.stderr
    assert "CLIMATEWATCH_SECURITY_PROTOCOL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    # and the broker still serves clients that do speak TLS
    assert (
        cli({**tls_broker.env, **tls_broker.role_env("admin")}, "topics", "create").returncode == 0
    )


def test_tls_without_sasl_is_refused(tmp_path: Path) -> None:
    env = clean_env(CLIMATEWATCH_DATA_DIR=str(tmp_path / "data"))
    result = cli(env, "kafka", "start", "--no-sasl", "--tls")
    assert result.returncode == 1
    assert result.stderr.strip() == "climatewatch: error: --tls needs SASL: use --sasl --tls"


def test_generated_certificates_are_reused_and_name_loopback(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    tls = TlsConfig(tmp_path / "tls")
    assert tls.ensure() is True
    first = tls.cert_file.read_bytes()
    assert tls.ensure() is False and tls.cert_file.read_bytes() == first
    leaf, ca = x509.load_pem_x509_certificates(first)
    assert ca.public_bytes(Encoding.PEM) == tls.ca_file.read_bytes()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert not any("CA" in p.name and "key" in p.name for p in tls.directory.iterdir())
