"""Every component rides through the loss or freeze of one broker of a 3-node cluster.

One real 3-node KRaft cluster for the module: a node is killed (kill -9) or frozen
(SIGSTOP) under the component, never mocked, and brought back (restart, SIGCONT) with the
in-sync replicas back to 3 before the next test. Topics are replicated 3 times with
``min.insync.replicas=2`` (``ensure_topics``), so one broker's loss loses nothing that
was acknowledged: what a component must not do is give up.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from include.kafka_clients import make_producer
from include.kafka_local.cluster import LocalCluster
from include.kafka_local.jars import fetch_jars
from include.processes import free_port
from include.settings import Settings, load_settings
from include.simulator import Record
from include.topics import ensure_topics
from streaming.processor import StreamProcessor
from tests.fixtures.settings import settings_env
from tests.fixtures.stream import SCENARIO_START, alerts, scenario
from tests.fixtures.topics import unique_names
from tests.streaming.test_stream_delivery import PROCESSING_TIME_RULES, eventful_scenario
from tests.warehouse.quality.test_publish_alerts import quality_alert
from warehouse.quality.validate import publish_alerts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[3]
ISR_TIMEOUT_S = 180
FREEZE_S = 25  # longer than the brokers' session timeout (9 s): leaders move meanwhile


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("ride-through"),
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
        for node in cluster.nodes:  # a failed test may leave one frozen
            node.kill(signal.SIGCONT)
        cluster.stop()


def cluster_settings(cluster: LocalCluster, data_dir: Path) -> Settings:
    """Settings on ``cluster`` with topics of their own (created, fully in sync)."""
    settings = load_settings(
        bootstrap_servers=cluster.bootstrap,
        data_dir=data_dir,
        **unique_names(),
        metrics_port=0,
        kafka_timeout_ms=5000,
    )
    ensure_topics(settings)
    wait_for_full_isr(cluster, settings)
    return settings


def topics(settings: Settings) -> list[str]:
    return [
        settings.topic_readings,
        settings.topic_alerts,
        settings.topic_window_stats,
        settings.topic_dlq,
        settings.topic_window_partials,
    ]


def wait_for_full_isr(cluster: LocalCluster, settings: Settings) -> None:
    deadline = time.monotonic() + ISR_TIMEOUT_S
    rows: list[dict] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a node may still be joining
            rows = cluster.partitions(topics(settings))
            if rows and all(len(r["isr"]) == 3 and r["leader"] >= 0 for r in rows):
                return
        time.sleep(1)
    raise AssertionError(f"in-sync replicas not back to 3 within {ISR_TIMEOUT_S}s: {rows[:3]}")


def busiest_leader(cluster: LocalCluster, topic: str) -> int:
    """The node that leads the most partitions of ``topic``."""
    leaders = Counter(r["leader"] for r in cluster.partitions([topic]))
    return leaders.most_common(1)[0][0]


@contextlib.contextmanager
def broker_down(
    cluster: LocalCluster, settings: Settings, node_id: int, sig: int
) -> Iterator[None]:
    """Node ``node_id`` killed (SIGKILL) or frozen (SIGSTOP) inside the block; afterwards
    restarted or resumed, and the in-sync replicas back to 3."""
    node = cluster.nodes[node_id - 1]
    node.kill(sig)
    try:
        yield
    finally:
        node.kill(signal.SIGCONT)
        if sig == signal.SIGKILL:
            cluster.start(timeout_s=180, die_with_parent=True)
        wait_for_full_isr(cluster, settings)


def cli(settings: Settings, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.ops.cli", *args],
        cwd=REPO_ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def produce_acknowledged(settings: Settings, records: list[Record], timeout_s: float = 150) -> int:
    """Send ``records`` to the readings topic; how many were acknowledged (all, or it fails)."""
    producer = make_producer(settings)
    try:
        futures = [
            producer.send(settings.topic_readings, key=r.key, value=r.value) for r in records
        ]
        producer.flush(timeout=timeout_s)
        return sum(1 for future in futures if future.get(timeout=timeout_s) is not None)
    finally:
        producer.close(timeout=10)


def archived_readings(settings: Settings) -> tuple[int, int]:
    """(rows, distinct (sensor_id, ts)) of the readings archive."""
    root = Path(settings.archive_root) / "readings"
    if not any(root.rglob("*.parquet")):
        return 0, 0
    con = duckdb.connect()
    try:
        rows, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (sensor_id, ts)) FROM "
            f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
        ).fetchone()
    finally:
        con.close()
    return int(rows), int(distinct)


# --- a leader moved while every broker is up ---------------------------------------------------
def move_leader(cluster: LocalCluster, topic: str, partition: int) -> tuple[int, int]:
    """Make another in-sync replica the leader of ``topic``-``partition``, every broker up:
    a reassignment that puts it first, then a preferred-leader election (what Kafka does on
    its own once a restarted broker is back in sync). Returns (old leader, new leader)."""
    from kafka import TopicPartition

    row = next(r for r in cluster.partitions([topic]) if r["partition"] == partition)
    old = row["leader"]
    order = [n for n in row["replicas"] if n != old] + [old]
    tp = TopicPartition(topic, partition)
    admin = cluster.admin()
    try:
        admin.alter_partition_reassignments({tp: order})
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(Exception):  # "election not needed" until it is
                admin.elect_leaders(0, {topic: [partition]})
            row = next(r for r in cluster.partitions([topic]) if r["partition"] == partition)
            if row["leader"] == order[0]:
                return old, order[0]
            assert time.monotonic() < deadline, f"the leader of {topic}-{partition} stayed {row}"
            time.sleep(0.5)
    finally:
        admin.close()


def test_offsets_are_asked_of_a_partitions_new_leader_once_it_moved(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A long-lived consumer (the stream's idleness checks, the archiver's offset lookups)
    asked a partition's end, then the leader moved: the next lookups must find the new
    leader, not ask the old one until the metadata ages out (5 minutes)."""
    from kafka import TopicPartition

    from include.kafka_clients import make_consumer
    from include.kafka_retry import leader_offsets, refresh_metadata

    settings = cluster_settings(cluster, tmp_path / "data").model_copy(
        update={"broker_loss_timeout_s": 20.0}  # kafka-python alone: 5 min, the metadata's age
    )
    records = scenario(regions=2, sensors_per_region=3, duration_s=10 * 60)
    assert produce_acknowledged(settings, records) == len(records)
    tp = TopicPartition(settings.topic_readings, 0)
    consumer = make_consumer(settings)
    try:
        consumer.assign([tp])
        end = leader_offsets(settings, "reading the end", consumer, [tp])[tp]
        assert end > 0
        old, new = move_leader(cluster, settings.topic_readings, 0)
        assert old != new
        for _ in range(3):  # each lookup, not only the first after the move
            assert leader_offsets(settings, "reading the end", consumer, [tp])[tp] == end
            assert leader_offsets(settings, "reading the start", consumer, [tp], end=False)[tp] == 0

        # the stream's idleness check: one short try, then a refresh, then the new leader
        move_leader(cluster, settings.topic_readings, 0)
        with contextlib.suppress(Exception):  # the former leader may say "not the leader"
            consumer.end_offsets([tp], timeout_ms=500)
        assert refresh_metadata(consumer)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert consumer.end_offsets([tp], timeout_ms=500)[tp] == end
                break
            except Exception:
                assert time.monotonic() < deadline, "the refreshed metadata never named the leader"
    finally:
        consumer.close()


# --- the archiver ----------------------------------------------------------------------------
def test_archive_run_right_after_a_kill_9_archives_everything_exactly_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = cluster_settings(cluster, tmp_path / "data")
    records = scenario(regions=3, sensors_per_region=5, duration_s=40 * 60)  # 3600 readings
    assert produce_acknowledged(settings, records) == len(records)
    victim = busiest_leader(cluster, settings.topic_readings)

    with broker_down(cluster, settings, victim, signal.SIGKILL):
        started = time.monotonic()
        run = cli(settings, "archive", "run", timeout_s=240)  # at once, no leader moved yet
        took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert "climatewatch: error" not in run.stderr, run.stderr[-2000:]
    assert took < settings.broker_loss_timeout_s + 60
    assert archived_readings(settings) == (len(records), len(records))

    # a mistake in the configuration still fails at once, not after the bound
    started = time.monotonic()
    missing = cli(settings, "archive", "run", "--topic", "no-such-topic", timeout_s=120)
    assert missing.returncode == 1
    assert "no-such-topic does not exist" in missing.stderr
    assert time.monotonic() - started < settings.broker_loss_timeout_s / 2


# --- the stream ------------------------------------------------------------------------------
def event_time_alerts(settings: Settings) -> set[tuple[str, str, str]]:
    return {
        (a.alert_id, a.rule, a.status)
        for a in alerts(settings)
        if a.rule not in PROCESSING_TIME_RULES
    }


def start_stream(settings: Settings, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "include.ops.cli", "stream"],
            cwd=REPO_ROOT,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def idleness_lines(streams: list) -> list[str]:
    """The streams' log lines that say why a window closed early, for a failure message."""
    keys = ("idle", "late", "could not be confirmed")
    return [
        line[:300]
        for _, log in streams
        for line in log.read_text(errors="replace").splitlines()
        if any(key in line for key in keys)
    ][-40:]


def wait_until(what: str, condition, streams: list, timeout_s: float, explain=None) -> None:
    """Until ``condition()``; every stream must stay up meanwhile (its log if not).
    ``explain()``: what is still missing, for the message of a timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process, log in streams:
            assert process.poll() is None, (
                f"a stream exited (code {process.returncode}) before {what}: "
                + log.read_text(errors="replace")[-1500:]
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            f": {explain()}" if explain else ""
        )
        time.sleep(0.5)


def test_the_stream_rides_through_a_frozen_leader_and_publishes_every_alert(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    records = eventful_scenario()  # heat wave in lyon, marseille drops, a silent sensor
    reference = cluster_settings(cluster, tmp_path / "reference")
    assert produce_acknowledged(reference, records) == len(records)
    StreamProcessor(reference).run(until_caught_up=True, max_runtime_s=180)
    expected = event_time_alerts(reference)
    assert {rule for _, rule, _ in expected} >= {"heat", "drastic_change"}, expected

    settings = cluster_settings(cluster, tmp_path / "live")
    first, second = tmp_path / "stream-1.log", tmp_path / "stream-2.log"
    streams = [(start_stream(settings, first), first)]
    try:
        wait_until(
            "the stream's first assignment",
            lambda: "region partitions assigned" in first.read_text(errors="replace"),
            streams,
            timeout_s=90,
        )
        heat_wave = SCENARIO_START + timedelta(seconds=900)
        quiet = sum(1 for r in records if r.event_time < heat_wave)
        assert produce_acknowledged(settings, records[:quiet]) == quiet
        produced: list[int] = []
        victim = busiest_leader(cluster, settings.topic_readings)
        with broker_down(cluster, settings, victim, signal.SIGSTOP):
            frozen_at = time.monotonic()
            # a second instance joins while the leader is frozen: both rebalance and
            # rebuild their rules' memory from the alerts and window-stats topics
            streams.append((start_stream(settings, second), second))
            producing = threading.Thread(  # the heat wave and the rest, during the freeze
                target=lambda: produced.append(produce_acknowledged(settings, records[quiet:]))
            )
            producing.start()
            wait_until(
                "the end of the freeze",
                lambda: time.monotonic() > frozen_at + FREEZE_S,
                streams,
                timeout_s=FREEZE_S + 5,
            )
        producing.join(timeout=180)
        assert produced == [len(records) - quiet]
        wait_until(
            "every alert of the reference run",
            lambda: event_time_alerts(settings) >= expected,
            streams,
            timeout_s=180,
            explain=lambda: (
                f"missing {sorted(expected - event_time_alerts(settings))}, "
                f"extra {sorted(event_time_alerts(settings) - expected)}; "
                f"idleness and late readings: {idleness_lines(streams)}"
            ),
        )
    finally:
        for process, _ in streams:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process, _ in streams]
    assert codes == [0, 0], [log.read_text(errors="replace")[-1500:] for _, log in streams]
    published = alerts(settings)
    ids_by_event: dict[tuple[str, str], set[str]] = {}
    for alert in published:
        ids_by_event.setdefault((alert.alert_id, alert.status), set()).add(alert.window_start)
    assert all(len(starts) == 1 for starts in ids_by_event.values()), "a repeat is the same alert"


# --- data quality ----------------------------------------------------------------------------
def test_data_quality_alerts_are_published_while_a_broker_is_frozen_then_killed(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = cluster_settings(cluster, tmp_path / "data")
    sent = []
    for sig, runs in ((signal.SIGSTOP, 6), (signal.SIGKILL, 3)):
        victim = busiest_leader(cluster, settings.topic_alerts)
        with broker_down(cluster, settings, victim, sig):
            for _ in range(runs):  # one producer each, like one data-quality run each
                alert = quality_alert(f"batch-{len(sent)}")
                assert publish_alerts(settings, [alert]) == 1
                sent.append(alert.alert_id)
    assert sorted(a.alert_id for a in alerts(settings)) == sorted(sent)
