"""Fixtures shared by the whole suite: a real Kafka broker and isolated settings.

The session starts one real KRaft broker on free ports in a temporary directory; the
JVM is tied to the pytest process (it dies with it even on a crash) and is stopped at
the end of the session. Tests that publish get their own topics (unique names), so they
never see each other's records.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never read the developer's own ClimateWatch configuration.
for _name in [name for name in os.environ if name.startswith("CLIMATEWATCH_")]:
    if _name != "CLIMATEWATCH_KAFKA_CACHE_DIR":
        del os.environ[_name]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from include.kafka_local.broker import LocalBroker
    from include.kafka_local.jars import fetch_jars
    from include.processes import free_port
    from include.settings import Settings, load_settings
    from include.topics import ensure_topics

from tests.fixtures.markers import refuse_unmarked_tests  # noqa: E402 (after the env clean-up)
from tests.fixtures.topics import unique_names  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A fresh, isolated, real Kafka broker for the whole test session."""
    jars = fetch_jars(load_settings())
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka-broker"),
        jars=jars,
        port=free_port(),
        controller_port=free_port(),
        heap="768m",
    )
    broker.start(timeout_s=120, die_with_parent=True)
    try:
        yield broker
    finally:
        broker.stop(timeout_s=20)


@pytest.fixture
def kafka_settings(kafka_broker: LocalBroker, tmp_path: Path) -> Settings:
    """Settings pointing at the session broker, with topics of this test only (created)."""
    settings = load_settings(
        bootstrap_servers=kafka_broker.bootstrap,
        data_dir=tmp_path / "data",
        **unique_names(),
        metrics_port=0,
        notify_metrics_port=0,
        kafka_timeout_ms=5000,
    )
    ensure_topics(settings)
    return settings


# Markers say what a test needs; a test that names none of them is refused at collection.
pytest_collection_modifyitems = refuse_unmarked_tests
