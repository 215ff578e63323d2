"""One local KRaft node (broker and controller) as a JVM process managed through a directory.

``LocalBroker`` writes the node's ``server.properties``, formats its storage once, starts
``kafka.Kafka`` on 127.0.0.1 and stops it gracefully; its pid file, log and data live in
its state directory. ``include.kafka_local.cluster`` runs one or more of these together.
"""

from __future__ import annotations

import base64
import logging
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from include import processes
from include.errors import ClimateWatchError
from include.kafka_local.jars import KAFKA_FILES, READY_MARKER, jars_dir, require_java
from include.kafka_local.security import SaslConfig, TlsConfig, security_protocol
from include.settings import Settings

log = logging.getLogger(__name__)

LOG4J_CONFIG = KAFKA_FILES / "log4j2.properties"


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
        java = require_java()
        for port in (self.port, self.controller_port):
            if not processes.port_is_free(self.host, port):
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
                preexec_fn=processes.die_with_parent if die_with_parent else None,
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
        processes.send_signal(pid, signal.SIGTERM)
        if not processes.wait_for_exit(pid, timeout_s):
            log.warning("kafka broker pid=%s ignored SIGTERM for %ss, killing it", pid, timeout_s)
            processes.send_signal(pid, signal.SIGKILL)
            processes.wait_for_exit(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the broker without waiting (fault-injection tests)."""
        pid = self.pid()
        if pid is not None:
            processes.send_signal(pid, sig)

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


def _escape_property(value: str) -> str:
    """A value for a Java .properties line: backslashes and line breaks escaped (PEM text)."""
    return value.replace("\\", "\\\\").replace("\r", "").replace("\n", "\\n")


def _is_our_broker(pid: int, properties_file: Path) -> bool:
    if not processes.alive(pid):  # a zombie is not a running broker
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(properties_file).encode() in cmdline
