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


def test_climatewatch_services_reach_kafka_on_its_internal_listener(compose: dict) -> None:
    listeners = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = re.search(r"INTERNAL://([^,]+)", listeners).group(1)
    for name in ("topics-init", "simulator"):
        service = compose["services"][name]
        assert service["environment"]["CLIMATEWATCH_BOOTSTRAP_SERVERS"] == internal
        assert service["build"]["context"] == "."
        assert (ROOT / service["build"]["dockerfile"]).exists()


def test_environment_uses_only_real_settings(compose: dict) -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith(ENV_PREFIX):
                assert variable in known, f"{name} sets unknown {variable}"


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
        assert ":" in image and not image.endswith(":latest"), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE).group(1)
    assert re.fullmatch(r"apache/airflow:\d+\.\d+\.\d+-python3\.11", base)


def test_dockerfile_copies_paths_that_exist() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
