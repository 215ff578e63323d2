"""`make demo` as a user runs it: within 5 minutes a heat alert and its notification, a
successful run of each DAG, a report when the report DAG is there, a working
`climatewatch sql`; then Ctrl-C leaves no process behind (checked in the process table)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.ops.airflow_api import AirflowClient
from include.processes import free_port
from include.settings import load_settings
from tests.fixtures.stream import alerts

pytestmark = [pytest.mark.airflow, pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))
REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 300


def processes_of(data_dir: Path) -> list[str]:
    """Processes whose command line or environment names this demo's data directory."""
    return [f"{pid}: {cmdline[:120]!r}" for pid, cmdline in _demo_processes(data_dir)]


def kill_leftovers(data_dir: Path) -> None:
    """A failed run must not leave its broker, Airflow and stream to load the next tests."""
    for pid, _ in _demo_processes(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _demo_processes(data_dir: Path) -> list[tuple[int, bytes]]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                continue
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(data_dir).encode() in text:
            found.append((int(proc.name), (proc / "cmdline").read_bytes()))
    return found


def test_demo_runs_the_whole_product_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIMATEWATCH_", "AIRFLOW"))}
    env.update(
        CLIMATEWATCH_DATA_DIR=str(data_dir),
        CLIMATEWATCH_KAFKA_PORT=str(port),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        CLIMATEWATCH_METRICS_PORT="0",
        COLUMNS="140",
    )
    settings = load_settings(bootstrap_servers=f"127.0.0.1:{port}", data_dir=data_dir)
    expected_dags = sorted(p.stem for p in (REPO / "dags").glob("*.py"))
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(
            [CLI, "demo", "--rate", "100", "--api-port", str(api_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seen: dict[str, bool] = {}
    try:
        deadline = time.monotonic() + DEADLINE_S
        secrets_file = data_dir / "airflow" / "climatewatch-secrets.json"
        client = None
        while time.monotonic() < deadline:
            assert demo.poll() is None, log.read_text()[-3000:]
            time.sleep(5)
            if "simulating" not in log.read_text():
                continue
            if client is None:
                client = AirflowClient(
                    f"http://127.0.0.1:{api_port}",
                    "admin",
                    json.loads(secrets_file.read_text())["admin_password"],
                )
            seen["heat alert"] = any(
                a.rule == "heat" and a.status == "firing" for a in alerts(settings)
            )
            # the notification service delivered it to the demo's webhook receiver
            seen["notification"] = "notification received" in log.read_text()
            for dag_id in expected_dags:
                try:
                    seen[f"DAG {dag_id}"] = any(
                        r["state"] == "success" for r in client.dag_runs(dag_id)
                    )
                except Exception:
                    seen[f"DAG {dag_id}"] = False
            if "climate_report" in expected_dags:
                seen["report"] = any((data_dir / "reports").glob("*/report.html"))
            query = subprocess.run(
                [
                    CLI,
                    "sql",
                    "SELECT region, round(max(mean_c), 1) AS hottest FROM regional_hourly GROUP BY region",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            seen["climatewatch sql"] = query.returncode == 0 and "marseille" in query.stdout
            if all(seen.values()) and len(seen) >= 4 + len(expected_dags) - 1:
                break
        assert all(seen.values()), f"after {DEADLINE_S}s: {seen}\n{log.read_text()[-3000:]}"
        output = log.read_text()
        assert "Airflow UI: http://127.0.0.1:" in output and "password" in output
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if demo.poll() is None:  # a failure above: stop it as a user would, then for sure
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(timeout=30)
            kill_leftovers(data_dir)
    assert "demo stopped" in log.read_text()
    time.sleep(1)
    left_behind = processes_of(data_dir)
    kill_leftovers(data_dir)
    assert left_behind == []
