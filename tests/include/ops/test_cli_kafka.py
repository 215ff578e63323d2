"""`climatewatch kafka start|stop|status` against a real broker, and each documented failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.errors import ClimateWatchError
from include.kafka_local.broker import LocalBroker
from include.kafka_local.jars import jars_dir
from include.processes import free_port
from include.settings import load_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def broker_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a broker of this test only (own data dir and free ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    port = free_port()
    env.update(
        CLIMATEWATCH_DATA_DIR=str(tmp_path / "data"),
        CLIMATEWATCH_KAFKA_PORT=str(port),
        CLIMATEWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        CLIMATEWATCH_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        CLIMATEWATCH_KAFKA_HEAP="384m",
    )
    yield env
    run_cli("kafka", "stop", env=env)  # never leave a broker behind, even on failure


def test_start_twice_stop_twice_and_status(broker_env: dict[str, str]) -> None:
    first = run_cli("kafka", "start", env=broker_env)
    assert first.returncode == 0, first.stderr
    assert "Kafka broker started on 127.0.0.1:" in first.stdout

    second = run_cli("kafka", "start", env=broker_env)
    assert second.returncode == 0
    assert "already running" in second.stdout

    status = run_cli("kafka", "status", env=broker_env)
    assert status.returncode == 0 and "answering" in status.stdout

    topics = run_cli("topics", "create", env=broker_env)
    assert topics.returncode == 0, topics.stderr
    assert topics.stdout.count("created") == 8
    again = run_cli("topics", "create", env=broker_env)
    assert "nothing to change" in again.stdout and "created" not in again.stdout

    stopped = run_cli("kafka", "stop", env=broker_env)
    assert "Kafka broker stopped" in stopped.stdout
    assert run_cli("kafka", "stop", env=broker_env).stdout.strip() == "Kafka broker is not running"
    down = run_cli("kafka", "status", env=broker_env)
    assert down.returncode == 1 and "not running" in down.stdout


def test_restart_keeps_topics_and_data(broker_env: dict[str, str]) -> None:
    assert run_cli("kafka", "start", env=broker_env).returncode == 0
    assert run_cli("topics", "create", env=broker_env).returncode == 0
    assert run_cli("kafka", "stop", env=broker_env).returncode == 0
    assert run_cli("kafka", "start", env=broker_env).returncode == 0
    assert "nothing to change" in run_cli("topics", "create", env=broker_env).stdout


def test_port_taken_says_which_setting_to_change(broker_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(broker_env["CLIMATEWATCH_KAFKA_PORT"])))
        squatter.listen()
        result = run_cli("kafka", "start", env=broker_env)
    assert result.returncode == 1
    assert "is taken by another process" in result.stderr
    assert "CLIMATEWATCH_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_java_missing(broker_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**broker_env, "PATH": str(empty)}
    env.pop("JAVA_HOME", None)
    result = run_cli("kafka", "start", env=env)
    assert result.returncode == 1
    assert "Java 17 or newer is needed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_jars_not_fetched_and_maven_missing(broker_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {
        **broker_env,
        "PATH": str(empty),
        "CLIMATEWATCH_KAFKA_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = run_cli("kafka", "start", env=env)
    assert result.returncode == 1
    assert "Maven (mvn) is needed once to fetch the Kafka jars" in result.stderr

    broker = LocalBroker(tmp_path / "state", jars=tmp_path / "cache" / "none", port=free_port())
    with pytest.raises(ClimateWatchError, match="Kafka jars not fetched"):
        broker.start()


def test_storage_formatted_for_another_cluster(broker_env: dict[str, str]) -> None:
    assert run_cli("kafka", "start", env=broker_env).returncode == 0
    assert run_cli("kafka", "stop", env=broker_env).returncode == 0
    cluster_id = Path(broker_env["CLIMATEWATCH_DATA_DIR"]) / "kafka" / "cluster.id"
    cluster_id.write_text("AAAAAAAAAAAAAAAAAAAAAA")
    result = run_cli("kafka", "start", env=broker_env)
    assert result.returncode == 1
    assert "is formatted for another cluster" in result.stderr
    assert "CLIMATEWATCH_DATA_DIR" in result.stderr


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMATEWATCH_")}
    env.update(
        CLIMATEWATCH_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        CLIMATEWATCH_KAFKA_TIMEOUT_MS="1000",
    )
    result = run_cli("topics", "create", env=env)
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_jar_cache_is_shared_and_reused() -> None:
    assert (jars_dir(load_settings()) / ".complete").exists()
