"""`climatewatch demo` (what `make demo` runs): readings arrive, Ctrl-C leaves no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.kafka_local import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))


def java_processes_using(data_dir: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(data_dir) in cmdline:
                found.append(proc.name)
    return found


def test_demo_shows_readings_per_region_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(
        CLIMATEWATCH_DATA_DIR=str(tmp_path / "data"),
        CLIMATEWATCH_KAFKA_PORT=str(port),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        COLUMNS="120",
    )
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(
            [CLI, "demo", "--rate", "100"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and "simulating" not in log.read_text():
                assert demo.poll() is None, log.read_text()
                time.sleep(0.5)
            time.sleep(6)
            assert java_processes_using(tmp_path / "data"), "the demo runs its own broker"
            demo.send_signal(signal.SIGINT)
            assert demo.wait(timeout=60) == 0
        finally:
            if demo.poll() is None:
                demo.kill()
    output = log.read_text()
    assert "Kafka broker started" in output
    assert "topic temperature-data: created" in output
    assert "arrived in Kafka" in output and "marseille" in output
    assert "Kafka broker stopped" in output
    sent = int(output.rsplit("demo stopped: ", 1)[1].split(" readings")[0].replace(",", ""))
    assert sent > 100
    assert java_processes_using(tmp_path / "data") == []
