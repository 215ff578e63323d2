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
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

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
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.jars = jars
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.host = host

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
        try:
            self.wait_until_answering(timeout_s=timeout_s, process=process)
        except ClimateWatchError:
            self.stop()
            raise
        return "started"

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
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.check.interval.ms": "60000",
        }
        return "".join(f"{key}={value}\n" for key, value in properties.items())

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
                "--standalone",
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
