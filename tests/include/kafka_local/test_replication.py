"""A replicated local cluster keeps every acknowledged reading when a broker is killed."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kafka import TopicPartition

from include.contract import Reading, parse_reading
from include.kafka_clients import make_consumer, make_producer
from include.kafka_local.cluster import LocalCluster
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
from include.settings import Settings, load_settings
from include.simulator import SimulationConfig, generate
from include.topics import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kafka-cluster"),
        jars=fetch_jars(load_settings()),
        nodes=3,
        port=free_port(),
        controller_port=free_port(),
        heap="256m",
    )
    cluster.start(timeout_s=180, die_with_parent=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for_full_isr(cluster: LocalCluster, topic: str, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = cluster.partitions([topic])
        if rows and all(len(r["isr"]) == 3 and r["leader"] >= 0 for r in rows):
            return rows
        time.sleep(1)
    raise AssertionError(
        f"in-sync replicas not back to 3 within {timeout_s}s: {cluster.partitions([topic])}"
    )


def test_kill_9_of_a_partition_leader_loses_no_acknowledged_reading(cluster: LocalCluster) -> None:
    settings: Settings = load_settings(bootstrap_servers=cluster.bootstrap, kafka_timeout_ms=10_000)
    ensure_topics(settings)
    rows = wait_for_full_isr(cluster, settings.topic_readings)
    assert all(len(r["replicas"]) == 3 for r in rows)

    records = list(
        generate(
            SimulationConfig(
                regions=5,
                sensors_per_region=10,
                start=datetime(2026, 7, 1, tzinfo=UTC),
                rate=0,
                count=4000,
            )
        )
    )
    acknowledged: list[tuple[str, str]] = []
    failed: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        producer = make_producer(settings, linger_ms=2)
        for i, record in enumerate(records):
            key = (record.reading.sensor_id, record.reading.ts.isoformat())
            future = producer.send(settings.topic_readings, key=record.key, value=record.value)
            future.add_callback(
                lambda _m, key=key: (lock.acquire(), acknowledged.append(key), lock.release())
            )
            future.add_errback(lambda e: failed.append(str(e)))
            if i % 200 == 0:
                time.sleep(0.05)  # spread the load over a few seconds so the kill lands mid-stream
        producer.flush(timeout=120)
        producer.close()

    producing = threading.Thread(target=produce)
    producing.start()
    time.sleep(1.0)
    leader = next(r["leader"] for r in rows if r["partition"] == 0)
    victim = cluster.nodes[leader - 1]
    victim.kill(signal.SIGKILL)
    producing.join(timeout=180)
    assert not producing.is_alive()

    assert cluster.start(timeout_s=120) == "started"  # only the killed node is started again
    wait_for_full_isr(cluster, settings.topic_readings)

    consumer = make_consumer(settings)
    try:
        partitions = [
            TopicPartition(settings.topic_readings, p) for p in range(settings.readings_partitions)
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        stored: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + 60
        while sum(stored.values()) < len(acknowledged) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    reading = parse_reading(message.value, now=datetime(2027, 1, 1, tzinfo=UTC))
                    assert isinstance(reading, Reading)
                    stored[(reading.sensor_id, reading.ts.isoformat())] += 1
    finally:
        consumer.close()
    assert len(acknowledged) + len(failed) == len(records)
    assert len(acknowledged) >= len(records) * 0.95, failed[:3]
    missing = set(acknowledged) - set(stored)
    duplicated = [key for key, n in stored.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged readings lost"
    assert not duplicated, f"{len(duplicated)} readings stored twice"
