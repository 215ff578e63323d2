"""The broker every Kafka benchmark measures against: fresh, in a temporary directory."""

from __future__ import annotations

from pathlib import Path

from include.kafka_local import LocalBroker, fetch_jars, free_port
from include.settings import Settings, load_settings
from include.topics import ensure_topics


def start_bench_broker(directory: Path) -> LocalBroker:
    """A local broker (1 GiB heap) on free ports that dies with this process."""
    broker = LocalBroker(
        directory / "kafka",
        jars=fetch_jars(load_settings()),
        port=free_port(),
        controller_port=free_port(),
        heap="1g",
    )
    broker.start(timeout_s=120, die_with_parent=True)
    return broker


def bench_settings(broker: LocalBroker, directory: Path, **overrides: object) -> Settings:
    """Settings for a benchmark on ``broker`` (data under ``directory``), topics created."""
    settings = load_settings(
        bootstrap_servers=broker.bootstrap,
        data_dir=directory / "data",
        metrics_port=0,
        idle_timeout_s=5,
        **overrides,
    )
    ensure_topics(settings)
    return settings
