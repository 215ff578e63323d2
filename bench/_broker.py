"""The broker every Kafka benchmark measures against: fresh, in a temporary directory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from include.kafka_local.broker import LocalBroker
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
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


@contextmanager
def bench_broker(prefix: str | None = None) -> Iterator[tuple[LocalBroker, Path]]:
    """``(broker, directory)``: a fresh broker in a temporary directory, stopped on the way
    out (even on an error), the directory then deleted."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        directory = Path(tmp)
        broker = start_bench_broker(directory)
        try:
            yield broker, directory
        finally:
            broker.stop()


def bench_settings(broker: LocalBroker, directory: Path, **overrides: object) -> Settings:
    """Settings for a benchmark on ``broker`` (data under ``directory``), topics created.

    ``overrides`` may replace the defaults (no metrics port, 5 s idle timeout) too."""
    options: dict[str, object] = {
        "bootstrap_servers": broker.bootstrap,
        "data_dir": directory / "data",
        "metrics_port": 0,
        "idle_timeout_s": 5,
        **overrides,
    }
    settings = load_settings(**options)
    ensure_topics(settings)
    return settings
