"""Local processes of ClimateWatch: start them in order, stop them in reverse, list them.

``climatewatch up`` / ``down`` / ``ps`` and ``make demo`` run the same set: the Kafka
broker, the streaming consumer and a real Airflow 3 (API server, scheduler, DAG
processor, triggerer) with SQLite metadata and the LocalExecutor, each in its own
process group with a pid file and a log file under ``DATA_DIR/run``. Stopping sends
SIGTERM to the whole group, waits, and only then SIGKILLs, so no child (Airflow's task
runners, for one) is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from include.errors import ClimateWatchError
from include.processes import alive, stop_group
from include.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]  # include/ops/stack.py -> the checkout
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """One long-running process (or a one-shot step when ``oneshot``)."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None
    ready_timeout_s: float = 120.0
    oneshot: bool = False


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int | None
    running: bool
    log: Path


class Supervisor:
    """Pid files and logs of the services under one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.log_dir = self.run_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self.pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def start(self, service: Service) -> str:
        """Start ``service`` unless it runs; wait for its readiness probe (or its exit)."""
        if not service.oneshot and self.pid(service.name) is not None:
            return "already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **service.env}
        with open(self.log_file(service.name), "ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start\n".encode()
            )
            log.flush()
            process = subprocess.Popen(
                service.command,
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if service.oneshot:
            try:
                code = process.wait(timeout=service.ready_timeout_s)
            except subprocess.TimeoutExpired:
                stop_group(process.pid, 10)
                raise ClimateWatchError(
                    f"{service.name} did not finish within {service.ready_timeout_s:.0f}s "
                    f"(log: {self.log_file(service.name)})"
                ) from None
            if code != 0:
                raise ClimateWatchError(
                    f"{service.name} failed with exit code {code}: {self._last_line(service.name)} "
                    f"(log: {self.log_file(service.name)})"
                )
            return "done"
        self.pid_file(service.name).write_text(str(process.pid))
        if service.ready is not None:
            deadline = time.monotonic() + service.ready_timeout_s
            while not service.ready():
                if process.poll() is not None:
                    self.pid_file(service.name).unlink(missing_ok=True)
                    raise ClimateWatchError(
                        f"{service.name} exited with code {process.returncode} while starting: "
                        f"{self._last_line(service.name)} (log: {self.log_file(service.name)})"
                    )
                if time.monotonic() > deadline:
                    raise ClimateWatchError(
                        f"{service.name} was not ready within {service.ready_timeout_s:.0f}s "
                        f"(log: {self.log_file(service.name)})"
                    )
                time.sleep(0.5)
        return "started"

    def stop(self, name: str, timeout_s: float = 30.0) -> str:
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True) if pid is None else None
        if pid is None:
            return "not running"
        stop_group(pid, timeout_s)
        self.pid_file(name).unlink(missing_ok=True)
        return "stopped"

    def states(self, names: list[str]) -> list[ServiceState]:
        return [
            ServiceState(name, self.pid(name), self.pid(name) is not None, self.log_file(name))
            for name in names
        ]

    def _last_line(self, name: str) -> str:
        try:
            lines = [
                line
                for line in self.log_file(name).read_text(errors="replace").splitlines()
                if line.strip()
            ]
        except FileNotFoundError:
            return "no output"
        return lines[-1][:300] if lines else "no output"


# --- Airflow, locally -------------------------------------------------------------------------
AIRFLOW_COMPONENTS = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


def airflow_env(settings: Settings, *, api_port: int = 8080) -> dict[str, str]:
    """Environment of every local Airflow process: SQLite + LocalExecutor sized for a small
    machine, examples off, the project's DAGs and plugins, the ClimateWatch DAGs unpaused,
    ``kafka_default`` pointing at the ClimateWatch Kafka."""
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    secrets_file = home / "climatewatch-secrets.json"
    if not secrets_file.exists():
        secrets_file.touch(mode=0o600)
        secrets_file.write_text(
            json.dumps(
                {
                    "jwt_secret": secrets.token_urlsafe(32),
                    "admin_password": secrets.token_urlsafe(9),
                }
            )
        )
    generated = json.loads(secrets_file.read_text())
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({"admin": generated["admin_password"]}))
    kafka_extra = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        kafka_extra.update(
            {
                "sasl.mechanism": settings.sasl_mechanism,
                "sasl.username": settings.sasl_username or "",
                "sasl.password": settings.sasl_password.get_secret_value()
                if settings.sasl_password
                else "",
            }
        )
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": generated["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps({"conn_type": "kafka", "extra": kafka_extra}),
        "PYTHONPATH": str(REPO_ROOT),
    }


def airflow_admin_password(settings: Settings) -> str:
    return json.loads((settings.airflow_home / "climatewatch-secrets.json").read_text())[
        "admin_password"
    ]


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 500
    except (urllib.error.URLError, OSError):
        return False


def settings_environment(settings: Settings) -> dict[str, str]:
    """``CLIMATEWATCH_*`` variables that reproduce ``settings`` in a child process."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"CLIMATEWATCH_{name.upper()}"] = str(
            value.absolute() if isinstance(value, Path) else value
        )
    return env


def airflow_services(settings: Settings, *, api_port: int = 8080) -> list[Service]:
    env = {**settings_environment(settings), **airflow_env(settings, api_port=api_port)}
    airflow = str(BIN / "airflow")
    return [
        Service(
            "airflow-db-migrate", [airflow, "db", "migrate"], env, oneshot=True, ready_timeout_s=300
        ),
        Service(
            "airflow-api-server",
            [airflow, "api-server", "--port", str(api_port), "--host", "127.0.0.1"],
            env,
            ready=lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"),
            ready_timeout_s=180,
        ),
        Service("airflow-scheduler", [airflow, "scheduler"], env),
        Service("airflow-dag-processor", [airflow, "dag-processor"], env),
        Service("airflow-triggerer", [airflow, "triggerer"], env),
    ]


# --- the whole local stack -------------------------------------------------------------------
def stream_service(settings: Settings) -> Service:
    return Service(
        "stream",
        [str(BIN / "climatewatch"), "stream"],
        settings_environment(settings),
        ready_timeout_s=60,
    )


def notify_service(settings: Settings) -> Service:
    return Service(
        "notify",
        [str(BIN / "climatewatch"), "notify"],
        settings_environment(settings),
        ready_timeout_s=60,
    )


def simulator_service(rate: float = 50.0) -> Service:
    return Service(
        "simulator",
        [
            str(BIN / "climatewatch"),
            "simulate",
            "--rate",
            f"{rate:g}",
            "--heat-wave",
            "marseille",
            "--heat-wave-at",
            "60",
            "--heat-wave-for",
            "300",
            "--malformed-ratio",
            "0.005",
        ],
    )


def stack_services(
    settings: Settings, *, api_port: int = 8080, simulate: bool = False, rate: float = 50.0
) -> list[Service]:
    """Every long-running service of ``climatewatch up``, in start order (Kafka apart)."""
    services = [
        *airflow_services(settings, api_port=api_port),
        stream_service(settings),
        notify_service(settings),
    ]
    if simulate:
        services.append(simulator_service(rate))
    return services


STACK_ORDER = (*AIRFLOW_COMPONENTS, "stream", "notify", "simulator")
