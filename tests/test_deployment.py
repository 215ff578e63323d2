"""docker-compose.yaml is the deployment: no Docker engine runs here, so check its shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from include.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_kafka_runs_in_kraft_mode_from_the_pinned_official_image(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in key for key in env)
    assert len(env["CLUSTER_ID"]) == 22  # a base64 UUID, as `kafka-storage format` wants
    assert "9092:9092" in kafka["ports"]
    assert any(v.startswith("kafka-data:") for v in kafka["volumes"])
    assert "kafka-data" in compose["volumes"]
    assert "test" in kafka["healthcheck"]


def test_same_kafka_version_as_the_local_broker(compose: dict) -> None:
    local = Settings.model_fields["kafka_version"].default
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{local}"


def default_of(value: str) -> str:
    """The default of a ``${VAR:-default}`` interpolation (the value itself otherwise)."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match.group(1) if match else value


CLIMATEWATCH_SERVICES = (
    "topics-init",
    "simulator",
    "stream",
    "notify",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


def test_climatewatch_services_reach_kafka_on_its_internal_listener(compose: dict) -> None:
    listeners = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = re.search(r"INTERNAL://([^,]+)", listeners).group(1)
    for name in CLIMATEWATCH_SERVICES:
        service = compose["services"][name]
        assert default_of(service["environment"]["CLIMATEWATCH_BOOTSTRAP_SERVERS"]) == internal, (
            name
        )
        assert service["build"]["context"] == "."
        assert (ROOT / service["build"]["dockerfile"]).exists()
        assert "climatewatch-data:/opt/climatewatch/data" in service["volumes"], name
        assert service["environment"]["CLIMATEWATCH_DATA_DIR"] == "/opt/climatewatch/data"


def test_airflow_runs_every_component_on_postgres_after_its_init(compose: dict) -> None:
    services = compose["services"]
    commands = {name: services[name]["command"] for name in services if name.startswith("airflow-")}
    assert commands["airflow-api-server"] == ["airflow", "api-server"]
    assert commands["airflow-scheduler"] == ["airflow", "scheduler"]
    assert commands["airflow-dag-processor"] == ["airflow", "dag-processor"]
    assert commands["airflow-triggerer"] == ["airflow", "triggerer"]
    init = " ".join(commands["airflow-init"])
    assert "airflow db migrate" in init and "connections add kafka_default" in init
    for name in (
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ):
        service = services[name]
        env = service["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/climatewatch/dags"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert (
            service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        )
        assert "test" in service["healthcheck"], name
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    kafka_conn = services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_KAFKA_DEFAULT"]
    assert '"bootstrap.servers": "kafka:19092"' in kafka_conn


def test_the_cluster_profile_has_three_kraft_voters(compose: dict) -> None:
    nodes = {name: s for name, s in compose["services"].items() if re.fullmatch(r"kafka-\d", name)}
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    ids = set()
    for name, node in nodes.items():
        env = node["environment"]
        assert node["profiles"] == ["cluster"]
        assert (
            env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        )
        assert (
            env["KAFKA_MIN_INSYNC_REPLICAS"] == 2 and env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        )
        assert f"INTERNAL://{name}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert len(env["CLUSTER_ID"]) == 22
        ids.add(env["KAFKA_NODE_ID"])
        assert any(v.startswith(f"{name}-data:") for v in node["volumes"])
    assert ids == {1, 2, 3}


def test_environment_uses_only_real_settings(compose: dict) -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith(ENV_PREFIX):
                assert variable in known, f"{name} sets unknown {variable}"


def test_stream_notify_and_simulator_wait_for_the_topics(compose: dict) -> None:
    for name in ("stream", "notify"):
        assert compose["services"][name]["command"] == ["climatewatch", name]
        assert (
            compose["services"][name]["depends_on"]["topics-init"]["condition"]
            == "service_completed_successfully"
        )


def test_simulator_is_a_profile_and_waits_for_topics(compose: dict) -> None:
    simulator = compose["services"]["simulator"]
    assert simulator["profiles"] == ["simulator"]
    assert simulator["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert (
        compose["services"]["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    )
    assert simulator["command"][:2] == ["climatewatch", "simulate"]


def test_images_are_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+", image), f"{name}: {image} is not pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE).group(1)
    assert re.fullmatch(r"apache/airflow:\d+\.\d+\.\d+-python3\.11", base)


def test_dockerfile_copies_paths_that_exist() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
