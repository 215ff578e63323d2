"""A real Apache Kafka broker on this machine, without Docker.

The official broker jars come from Maven Central (``include/kafka/pom.xml``) into a
cache shared by every checkout; the broker runs in KRaft mode (``process.roles =
broker,controller``, a standalone controller quorum) on 127.0.0.1, with its storage,
configuration, pid file and log under ``DATA_DIR/kafka``. The CLI (``climatewatch kafka
start|stop|status``), ``make demo`` and the test suite all use this module.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.errors import ClimateWatchError
from include.settings import Settings

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka") / "pom.xml"
LOG4J_CONFIG = Path(__file__).with_name("kafka") / "log4j2.properties"
READY_MARKER = ".complete"


# --- the jars -----------------------------------------------------------------------------
def jars_dir(settings: Settings) -> Path:
    return settings.kafka_cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def fetch_jars(settings: Settings, *, quiet: bool = True) -> Path:
    """Download the broker jars with Maven once; later calls return the cache at once."""
    target = jars_dir(settings)
    if (target / READY_MARKER).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ClimateWatchError(
            "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central: "
            "install it (apt-get install maven) or copy the jars into " + str(target)
        )
    _require_java()
    staging = target.with_name(f"libs.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        f"-Dkafka.version={settings.kafka_version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise ClimateWatchError(
            f"could not fetch Kafka {settings.kafka_version} with Maven: {' | '.join(tail)}"
        )
    (staging / READY_MARKER).write_text(settings.kafka_version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _require_java() -> str:
    java = shutil.which("java")
    if java is None and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        java = str(candidate) if candidate.exists() else None
    if java is None:
        raise ClimateWatchError(
            "Java 17 or newer is needed to run the Kafka broker: install it "
            "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return java


# --- one broker -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    answering: bool
    bootstrap: str

    def describe(self) -> str:
        if not self.running:
            return f"Kafka broker is not running ({self.bootstrap})"
        state = "answering" if self.answering else "started but not answering yet"
        return f"Kafka broker running, pid {self.pid}, {self.bootstrap}, {state}"


class LocalBroker:
    """One KRaft node acting as broker and controller, managed through its state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        jars: Path,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        host: str = "127.0.0.1",
        node_id: int = 1,
        voters: tuple[tuple[int, int], ...] | None = None,
        sasl: SaslConfig | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        if tls is not None and sasl is None:
            raise ClimateWatchError("TLS on the local broker needs SASL too: use --sasl --tls")
        self.state_dir = Path(state_dir).absolute()
        self.jars = jars
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.host = host
        self.node_id = node_id
        # voters: (node id, controller port) of every node of a multi-node quorum; None is
        # a single node that is its own standalone controller quorum.
        self.voters = voters
        self.sasl = sasl
        self.tls = tls

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBroker:
        return cls(
            settings.kafka_state_dir,
            jars=jars_dir(settings),
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
        )

    # paths
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "kraft-data"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"

    # lifecycle
    def start(self, *, timeout_s: float = 90.0, die_with_parent: bool = False) -> str:
        """Start the broker and wait until it answers a metadata request.

        Returns ``"started"`` or ``"already running"``. ``die_with_parent`` ties the
        JVM's life to this process (tests: no broker outlives a crashed pytest).
        """
        if self.pid() is not None:
            self.wait_until_answering(timeout_s=timeout_s)
            return "already running"
        process = self.launch(die_with_parent=die_with_parent)
        try:
            self.wait_until_answering(timeout_s=timeout_s, process=process)
        except ClimateWatchError:
            self.stop()
            raise
        return "started"

    def launch(self, *, die_with_parent: bool = False) -> subprocess.Popen[bytes]:
        """Start the JVM without waiting for it (a quorum's nodes start together)."""
        if not (self.jars / READY_MARKER).exists():
            raise ClimateWatchError(
                f"Kafka jars not fetched into {self.jars}: run 'climatewatch kafka fetch' "
                "(or 'make kafka')"
            )
        java = _require_java()
        for port in (self.port, self.controller_port):
            if not _port_is_free(self.host, port):
                raise ClimateWatchError(
                    f"port {self.host}:{port} is taken by another process: stop it or choose "
                    "other ports with CLIMATEWATCH_KAFKA_PORT / CLIMATEWATCH_KAFKA_CONTROLLER_PORT"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:
            self.tls.ensure()
        # the properties hold the SASL passwords and, with TLS, the broker's private key
        self.properties_file.touch(mode=0o600)
        self.properties_file.chmod(0o600)
        self.properties_file.write_text(self._server_properties())
        self._format_storage_once(java)

        command = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{min_heap(self.heap)}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.jars}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with open(self.log_file, "ab") as log_stream:
            process = subprocess.Popen(
                command,
                stdout=log_stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        self.pid_file.write_text(str(process.pid))
        log.info("kafka broker starting pid=%s bootstrap=%s", process.pid, self.bootstrap)
        return process

    def stop(self, *, timeout_s: float = 30.0) -> str:
        """Stop gracefully (SIGTERM, controlled shutdown); SIGKILL only after ``timeout_s``."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        _signal(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, timeout_s):
            log.warning("kafka broker pid=%s ignored SIGTERM for %ss, killing it", pid, timeout_s)
            _signal(pid, signal.SIGKILL)
            _wait_for_exit(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the broker without waiting (fault-injection tests)."""
        pid = self.pid()
        if pid is not None:
            _signal(pid, sig)

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            answering=pid is not None and self.answers(),
            bootstrap=self.bootstrap,
        )

    def pid(self) -> int | None:
        """The broker's pid if this state directory's broker is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_our_broker(pid, self.properties_file) else None

    def answers(self, timeout_s: float = 3.0) -> bool:
        """True when the broker answers a metadata request."""
        from include.kafka_clients import KafkaAdminClient

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.bootstrap],
                bootstrap_timeout_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000) + 1000,
                **(self.sasl.client_config("admin", tls=self.tls) if self.sasl else {}),
            )
        except Exception:
            return False
        try:
            admin.describe_cluster()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def wait_until_answering(
        self, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ClimateWatchError(
                    f"Kafka broker exited with code {process.returncode} during start-up: "
                    f"{self._log_excerpt()} (full log: {self.log_file})"
                )
            if self.answers(timeout_s=2.0):
                return
            time.sleep(0.3)
        raise ClimateWatchError(
            f"Kafka broker did not answer on {self.bootstrap} within {timeout_s:.0f}s "
            f"(log: {self.log_file})"
        )

    # helpers
    def _server_properties(self) -> str:
        nodes = len(self.voters) if self.voters else 1
        replicas = str(min(3, nodes))
        min_isr = str(min(2, nodes))
        client_protocol = security_protocol(self.sasl, self.tls)
        controller_protocol = client_protocol
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"BROKER://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"BROKER://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "BROKER",
            "listener.security.protocol.map": f"BROKER:{client_protocol},CONTROLLER:{controller_protocol}",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.check.interval.ms": "60000",
        }
        if self.voters:
            properties["controller.quorum.voters"] = ",".join(
                f"{node}@{self.host}:{port}" for node, port in self.voters
            )
        else:
            properties["controller.quorum.bootstrap.servers"] = (
                f"{self.host}:{self.controller_port}"
            )
        if self.sasl:
            properties.update(self.sasl.broker_properties())
        if self.tls:
            properties.update(self.tls.broker_properties())
        return "".join(f"{key}={_escape_property(value)}\n" for key, value in properties.items())

    def _format_storage_once(self, java: str) -> None:
        meta = self.log_dir / "meta.properties"
        if self.cluster_id_file.exists():
            cluster_id = self.cluster_id_file.read_text().strip()
        else:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if meta.exists():
            formatted_for = _read_properties(meta).get("cluster.id")
            if formatted_for != cluster_id:
                raise ClimateWatchError(
                    f"Kafka storage {self.log_dir} is formatted for another cluster "
                    f"({formatted_for}, expected {cluster_id}): remove that directory or use "
                    "another CLIMATEWATCH_DATA_DIR"
                )
            return
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                f"{self.jars}/*",
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(self.properties_file),
                f"--cluster-id={cluster_id}",  # ids may start with "-"
                *([] if self.voters else ["--standalone"]),
                *(self.sasl.format_arguments() if self.sasl else []),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-2:]
            raise ClimateWatchError(f"formatting Kafka storage failed: {' | '.join(tail)}")
        self.cluster_id_file.write_text(cluster_id)

    def _log_excerpt(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "no log"
        errors = [line for line in lines if " ERROR " in line or "Exception" in line]
        return (errors or lines or ["empty log"])[-1][:300]


# --- security --------------------------------------------------------------------------------
CLIENT_ROLES = ("stream", "archiver", "simulator")
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SaslConfig:
    """SCRAM-SHA-512 users of a secured local cluster; ``admin`` is the brokers' own super user.

    Clients authenticate with SCRAM on the broker listener; the nodes talk to their
    controllers with SASL/PLAIN as admin (KRaft controllers cannot use SCRAM, whose
    credentials live in the metadata they serve). Authorization is Kafka's
    StandardAuthorizer: nothing is allowed without an ACL, except to admin.
    """

    passwords: dict[str, str]

    @classmethod
    def generate(cls) -> SaslConfig:
        return cls({name: secrets.token_urlsafe(18) for name in ("admin", *CLIENT_ROLES)})

    @classmethod
    def load(cls, path: Path) -> SaslConfig | None:
        return cls(json.loads(path.read_text())) if path.exists() else None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.passwords, indent=1))

    def client_config(self, user: str, *, tls: TlsConfig | None = None) -> dict[str, str]:
        """kafka-python options of ``user`` (with ``tls``: SASL_SSL, trusting the local CA)."""
        return {
            "security_protocol": security_protocol(self, tls),
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
            **({"ssl_cafile": str(tls.ca_file)} if tls else {}),
        }

    def client_env(
        self, user: str, bootstrap: str, *, tls: TlsConfig | None = None
    ) -> dict[str, str]:
        """The CLIMATEWATCH_* variables a client running as ``user`` needs."""
        return {
            "CLIMATEWATCH_BOOTSTRAP_SERVERS": bootstrap,
            "CLIMATEWATCH_SECURITY_PROTOCOL": security_protocol(self, tls),
            "CLIMATEWATCH_SASL_MECHANISM": SCRAM_MECHANISM,
            "CLIMATEWATCH_SASL_USERNAME": user,
            "CLIMATEWATCH_SASL_PASSWORD": self.passwords[user],
            **({"CLIMATEWATCH_SSL_CAFILE": str(tls.ca_file)} if tls else {}),
        }

    def broker_properties(self) -> dict[str, str]:
        admin = self.passwords["admin"]
        scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain_login = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": (
                f'{scram_login} required username="admin" password="{admin}";'
            ),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain_login} required username="admin" password="{admin}" user_admin="{admin}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """SCRAM credentials written into the metadata when the storage is formatted."""
        return [
            argument
            for user, password in self.passwords.items()
            for argument in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
        ]


def security_protocol(sasl: SaslConfig | None, tls: TlsConfig | None) -> str:
    """The protocol of the local listeners (TLS is only offered together with SASL)."""
    if sasl is None:
        return "PLAINTEXT"
    return "SASL_SSL" if tls is not None else "SASL_PLAINTEXT"


TLS_VALID_DAYS = 825
TLS_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsConfig:
    """A local certificate authority and one broker certificate, as PEM files in ``directory``.

    ``ensure`` generates them once (EC P-256; the broker certificate names 127.0.0.1 and
    localhost, so every local node can present it). The CA's private key is not kept: it
    signs the broker certificate and is gone, so nothing else can be issued in its name.
    Clients trust ``ca.pem`` (``CLIMATEWATCH_SSL_CAFILE``); the broker key is mode 0600
    and reaches Kafka only through ``server.properties`` (mode 0600), where Kafka treats it
    as a password (``[hidden]`` in its logs).
    """

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        """The broker certificate followed by the CA certificate (the chain it presents)."""
        return self.directory / "broker.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "broker-key.pem"

    def ensure(self) -> bool:
        """Generate the CA and broker certificate unless valid ones exist; True if generated."""
        if self._usable():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        ca_pem, cert_pem, key_pem = _generate_certificates(TLS_HOSTS, TLS_VALID_DAYS)
        for path, data, mode in (
            (self.key_file, key_pem, 0o600),
            (self.cert_file, cert_pem + ca_pem, 0o644),
            (self.ca_file, ca_pem, 0o644),
        ):
            partial = path.with_name(path.name + ".partial")
            partial.unlink(missing_ok=True)
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
            partial.replace(path)
        log.info("local TLS certificates generated in %s", self.directory)
        return True

    def _usable(self) -> bool:
        from datetime import UTC, datetime, timedelta

        from cryptography import x509

        if not all(p.exists() for p in (self.ca_file, self.cert_file, self.key_file)):
            return False
        try:
            cert = x509.load_pem_x509_certificates(self.cert_file.read_bytes())[0]
        except ValueError:
            return False
        return cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=1)

    def broker_properties(self) -> dict[str, str]:
        return {
            "ssl.keystore.type": "PEM",
            # inline PEM: Kafka reads an unencrypted key only this way (a PEM keystore
            # file needs an encrypted key and ssl.key.password)
            "ssl.keystore.certificate.chain": self.cert_file.read_text(),
            "ssl.keystore.key": self.key_file.read_text(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
        }


def _generate_certificates(hosts: tuple[str, ...], days: int) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, broker certificate, broker key), PEM; the key unencrypted PKCS#8."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate a little clock skew
    until = now + timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ClimateWatch local"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"ClimateWatch local CA {uuid.uuid4().hex[:8]}"
            ),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _escape_property(value: str) -> str:
    """A value for a Java .properties line: backslashes and line breaks escaped (PEM text)."""
    return value.replace("\\", "\\\\").replace("\r", "").replace("\n", "\\n")


def client_acls(settings: Settings) -> list[Any]:
    """Least privilege per role: the stream reads readings and writes its outputs, the
    archiver only reads, the simulator only writes readings."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    def allow(user: str, operation: Any, kind: Any, name: str, prefixed: bool = False) -> Any:
        pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
        return ACL(
            principal=f"User:{user}",
            host="*",
            operation=operation,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(kind, name, pattern),
        )

    read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    outputs = (settings.topic_alerts, settings.topic_window_stats, settings.topic_dlq)
    partials = settings.topic_window_partials  # the stream's own internal topic
    acls = [
        *(allow("stream", op, topic, partials) for op in (read, write, describe)),
        allow("stream", read, topic, settings.topic_readings),
        allow("stream", describe, topic, settings.topic_readings),
        allow("stream", read, group, "climatewatch-", prefixed=True),
        *(allow("stream", op, topic, name) for name in outputs for op in (write, describe)),
        allow("simulator", write, topic, settings.topic_readings),
        allow("simulator", describe, topic, settings.topic_readings),
    ]
    for name in (settings.topic_readings, *outputs):
        acls += [allow("archiver", read, topic, name), allow("archiver", describe, topic, name)]
    acls.append(allow("archiver", read, group, "climatewatch-", prefixed=True))
    return acls


# --- a cluster of local nodes -------------------------------------------------------------------
NODE_PORT_STEP = 100


class LocalCluster:
    """One or more local KRaft nodes (each broker and controller) started and stopped together.

    A single node keeps its state directly in ``DATA_DIR/kafka``; node *i* of a larger
    cluster lives in ``DATA_DIR/kafka/node-i`` and listens on the configured ports plus
    ``100 × (i − 1)``. The layout (node count, SASL, TLS) is remembered in ``cluster.json`` so
    ``stop`` and ``status`` need no options.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        jars: Path,
        nodes: int = 1,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        sasl: SaslConfig | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        if not 1 <= nodes <= 9:
            raise ClimateWatchError(f"--nodes must be between 1 and 9, got {nodes}")
        if tls is not None and sasl is None:
            raise ClimateWatchError("TLS on the local broker needs SASL too: use --sasl --tls")
        self.state_dir = Path(state_dir).absolute()
        self.sasl = sasl
        self.tls = tls
        voters = (
            tuple((i, controller_port + NODE_PORT_STEP * (i - 1)) for i in range(1, nodes + 1))
            if nodes > 1
            else None
        )
        self.nodes = [
            LocalBroker(
                self.state_dir if nodes == 1 else self.state_dir / f"node-{i}",
                jars=jars,
                port=port + NODE_PORT_STEP * (i - 1),
                controller_port=controller_port + NODE_PORT_STEP * (i - 1),
                heap=heap,
                node_id=i,
                voters=voters,
                sasl=sasl,
                tls=tls,
            )
            for i in range(1, nodes + 1)
        ]

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        nodes: int | None = None,
        sasl: bool | None = None,
        tls: bool | None = None,
    ) -> LocalCluster:
        """The cluster under DATA_DIR/kafka; ``nodes``/``sasl``/``tls`` default to what it was
        started with (``tls`` implies ``sasl``)."""
        state_dir = settings.kafka_state_dir
        layout = (
            json.loads((state_dir / "cluster.json").read_text())
            if (state_dir / "cluster.json").exists()
            else {}
        )
        if nodes is not None and layout.get("nodes", nodes) != nodes and _any_formatted(state_dir):
            raise ClimateWatchError(
                f"the local Kafka in {state_dir} was set up with {layout['nodes']} node(s): stop it and "
                "remove that directory (or use another CLIMATEWATCH_DATA_DIR) to change the node count"
            )
        nodes = nodes or layout.get("nodes", 1)
        use_sasl = layout.get("sasl", False) if sasl is None else sasl
        use_tls = layout.get("tls", False) and sasl is not False if tls is None else tls
        if use_tls and not use_sasl:
            if sasl is False:
                raise ClimateWatchError("--tls needs SASL: use --sasl --tls")
            use_sasl = True
        credentials = state_dir / "sasl-users.json"
        sasl_config = None
        if use_sasl:
            sasl_config = SaslConfig.load(credentials) or SaslConfig.generate()
        return cls(
            state_dir,
            jars=jars_dir(settings),
            nodes=nodes,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
            sasl=sasl_config,
            tls=TlsConfig(state_dir.absolute() / "tls") if use_tls else None,
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "sasl-users.json"

    def start(self, *, timeout_s: float = 120.0, die_with_parent: bool = False) -> str:
        """Start every node that is not running, then wait for all; ``"already running"`` if none needed it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cluster.json").write_text(
            json.dumps(
                {
                    "nodes": len(self.nodes),
                    "sasl": self.sasl is not None,
                    "tls": self.tls is not None,
                }
            )
        )
        if self.sasl is not None:
            self.sasl.save(self.credentials_file)
        shared_id = self.state_dir / "cluster.id"
        if len(self.nodes) > 1:
            if not shared_id.exists():
                shared_id.write_text(
                    base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                )
            for node in self.nodes:
                node.state_dir.mkdir(parents=True, exist_ok=True)
                if not node.cluster_id_file.exists():
                    node.cluster_id_file.write_text(shared_id.read_text())
        stopped = [node for node in self.nodes if node.pid() is None]
        launched = {node: node.launch(die_with_parent=die_with_parent) for node in stopped}
        try:
            for node in self.nodes:
                node.wait_until_answering(timeout_s=timeout_s, process=launched.get(node))
        except ClimateWatchError:
            for node in stopped:
                node.stop()
            raise
        return "started" if stopped else "already running"

    def stop(self) -> str:
        """SIGTERM every node at once: a node stopped after the others lost the quorum
        would wait for a controlled shutdown that can no longer happen."""
        running = [node for node in self.nodes if node.pid() is not None]
        for node in running:
            node.kill(signal.SIGTERM)
        for node in running:
            node.stop()
        for node in self.nodes:
            node.pid_file.unlink(missing_ok=True)
        return "stopped" if running else "not running"

    def status(self) -> list[BrokerStatus]:
        return [node.status() for node in self.nodes]

    def admin(self) -> Any:
        from include.kafka_clients import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=[node.bootstrap for node in self.nodes],
            bootstrap_timeout_ms=10_000,
            **(self.sasl.client_config("admin", tls=self.tls) if self.sasl else {}),
        )

    def grant_client_acls(self, settings: Settings) -> int:
        """Create the per-role ACLs (idempotent: Kafka ignores an ACL that exists)."""
        admin = self.admin()
        try:
            admin.create_acls(client_acls(settings))
        finally:
            admin.close()
        return len(client_acls(settings))

    def partitions(self, topics: list[str]) -> list[dict[str, Any]]:
        """Leader, replicas and in-sync replicas of every partition of ``topics``."""
        admin = self.admin()
        try:
            known = set(admin.list_topics())
            described = admin.describe_topics([t for t in topics if t in known]) if known else []
        finally:
            admin.close()
        rows = []
        for topic in described:
            for partition in sorted(topic["partitions"], key=lambda p: p["partition_index"]):
                rows.append(
                    {
                        "topic": topic["name"],
                        "partition": partition["partition_index"],
                        "leader": partition["leader_id"],
                        "replicas": list(partition["replica_nodes"]),
                        "isr": list(partition["isr_nodes"]),
                    }
                )
        return rows


def _any_formatted(state_dir: Path) -> bool:
    return any(state_dir.glob("**/kraft-data/meta.properties"))


def min_heap(heap: str) -> str:
    """Initial heap: a quarter of the maximum, so an idle broker stays small."""
    units = {"k": 1, "m": 1024, "g": 1024 * 1024}
    suffix = heap[-1].lower()
    if suffix not in units or not heap[:-1].isdigit():
        raise ClimateWatchError(f"CLIMATEWATCH_KAFKA_HEAP: expected e.g. 512m or 1g, got {heap!r}")
    kib = int(heap[:-1]) * units[suffix]
    return f"{max(kib // 4, 64 * 1024) // 1024}m"


def _read_properties(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _is_our_broker(pid: int, properties_file: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is not a running broker
        return False
    return b"kafka.Kafka" in cmdline and str(properties_file).encode() in cmdline


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").exists():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                    return True
        time.sleep(0.1)
    return False


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills the child when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)
