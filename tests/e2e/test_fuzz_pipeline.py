"""Fuzz through the running product (issue #17's acceptance): 20,007 generated records
through a real ``climatewatch stream`` process and ``climatewatch archive run``.

The records are drawn by hypothesis from the strategies shared with the in-process stream
fuzz (``tests/fixtures/fuzz.py``: valid and near-valid readings, odd JSON, arbitrary
bytes, tombstones and records with neither key nor value, huge values, timestamps across
the whole representable range at every UTC offset), seeded, so every run sends the same
records, plus the records at the size limits (:func:`~tests.fixtures.fuzz.edge_records`).

``parse_reading`` is the oracle. The archiver judges "too far in the future" against
each record's Kafka timestamp, so its verdicts are exact; the stream judges it against its
clock, somewhere between the record's Kafka timestamp and the time it had consumed
everything (a record whose verdict changes in between is undecided for the stream, and
only has to be handled consistently). Then:

* the stream exits 0 on SIGTERM with no traceback, ``archive run`` exits 0;
* every record the stream rejects is on the DLQ with its original key and bytes (or the
  stub the README describes) and the verdict's ``reason``, once (a rebalance may repeat
  it, identically); nothing else is;
* every rejected record is in the archive's ``rejected/`` with its reason and bytes, and
  every accepted one in ``readings/`` exactly once (by Kafka partition and offset, with
  its sensor and event time); accepted + rejected == produced.

Measured (2 cores shared with other work, load 4-8), one run: 20,007 records produced
(20,000 drawn + 7 at the limits); 5,529 accepted, each archived exactly once; 14,478
rejected (not_json 3,600, not_finite 2,864, not_utf8 2,603, missing_field 2,281,
not_object 1,837, wrong_type 667, oversized 287, future_timestamp 194, out_of_range 53,
unknown_schema_version 47, bad_timestamp 45), all 14,478 on the DLQ (724 of them stubs for
neither key nor value, 2 truncated stubs) and in ``rejected/``; 0 undecided, 0 DLQ
repeats, 0 crashes, no error logged. ``rejected/`` also held 2,614 of the stream's window
stats (windows without a valid reading have no mean). After SIGTERM the stream's
committed offsets were 19,890 records behind the end: they stop at the first record of a
window still open, and a rejected reading that claims a far-future window keeps its
window open. The counts move by a few between runs (the future-skew boundary moves with
the time the records are produced). Time: 70-86 s (drawing the records ~50 s of it, in
two processes), plus the session broker's start when the test runs alone (22-38 s).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from include.contract import EPOCH, Reading, Rejection, parse_reading
from include.kafka_clients import make_consumer, make_producer
from include.processes import free_port
from include.settings import Settings
from tests.fixtures.fuzz import Record, edge_records, generate_records
from tests.fixtures.settings import run_cli, settings_env
from tests.fixtures.stream import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("climatewatch"))
GENERATED = 20_000
STREAM_START_TIMEOUT_S = 60
CONSUME_TIMEOUT_S = 150
STOP_TIMEOUT_S = 60
ARCHIVE_TIMEOUT_S = 300
US = timedelta(microseconds=1)


# --- producing -----------------------------------------------------------------------------------
def produce_records(settings: Settings, records: list[Record]) -> list[tuple[int, int, int]]:
    """Produce ``records`` in order; the (partition, offset, Kafka timestamp ms) of each.

    kafka-python's ``send`` refuses a record with neither key nor value (other clients
    produce them): those go through the producer's accumulator, real records on the real
    broker, round-robin over the partitions.
    """
    topic = settings.topic_readings
    producer = make_producer(settings, max_request_size=2 * 1024 * 1024)
    try:
        partitions = sorted(producer.partitions_for(topic))
        futures = []
        for index, (key, value) in enumerate(records):
            if key is None and value is None:
                tp = TopicPartition(topic, partitions[index % len(partitions)])
                future, *_ = producer._accumulator.append(
                    tp, int(time.time() * 1000), None, None, []
                )
                producer._sender.wakeup()
            else:
                future = producer.send(topic, key=key, value=value)
            futures.append(future)
        producer.flush(timeout=120)
        return [
            (metadata.partition, metadata.offset, metadata.timestamp)
            for metadata in (future.get(timeout=60) for future in futures)
        ]
    finally:
        producer.close(timeout=10)


# --- watching the stream -------------------------------------------------------------------------
RECORDS_TOTAL = re.compile(r'^climatewatch_stream_records_total\{outcome="(\w+)"\} (\S+)$', re.M)


def consumed(port: int) -> dict[str, int] | None:
    """The stream's records by outcome (valid, late, invalid), from its /metrics; None
    while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {outcome: int(float(count)) for outcome, count in RECORDS_TOTAL.findall(text)}


def wait_until_consumed(stream: subprocess.Popen, port: int, count: int, log: Path) -> None:
    started = time.monotonic()
    while (outcomes := consumed(port)) is None:
        assert stream.poll() is None, f"the stream exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() - started < STREAM_START_TIMEOUT_S, "no /metrics from the stream"
        time.sleep(0.2)
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    # ">=": a rebalance would make the stream read records again (at least once)
    while sum(outcomes.values()) < count:
        assert stream.poll() is None, f"the stream exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"the stream consumed {outcomes} of {count} in {CONSUME_TIMEOUT_S}s"
        )
        time.sleep(0.5)
        outcomes = consumed(port) or outcomes


def committed_lag(settings: Settings) -> int:
    """Records of the readings topic past the stream group's committed offsets."""
    consumer = make_consumer(settings, group_id=settings.stream_group_id, enable_auto_commit=False)
    try:
        topic = settings.topic_readings
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        return sum(end - (consumer.committed(tp) or 0) for tp, end in ends.items())
    finally:
        consumer.close()


# --- reading the archive -------------------------------------------------------------------------
def archive_rows(settings: Settings) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """Readings rows (partition, offset, sensor_id, ts µs), rejected rows of the readings
    topic (partition, offset, Kafka timestamp µs, key, value, reason, detail), and how
    many rejected rows came from the other topics (windows without a valid reading have
    no mean: the speed layer's window stats of those are rejected, by design)."""
    import duckdb

    root = settings.archive_root
    with duckdb.connect() as con:
        readings = con.execute(
            "SELECT kafka_partition, kafka_offset, sensor_id, epoch_us(ts) "
            "FROM read_parquet(?, hive_partitioning = true)",
            [f"{root}/readings/**/*.parquet"],
        ).fetchall()
        rejected = con.execute(
            "SELECT kafka_partition, kafka_offset, epoch_us(kafka_timestamp), key, value, "
            "reason, detail FROM read_parquet(?, hive_partitioning = true, filename = true) "
            "WHERE starts_with(parse_filename(filename), ?)",
            [f"{root}/rejected/**/*.parquet", f"{settings.topic_readings}-"],
        ).fetchall()
        (others,) = con.execute(
            "SELECT count(*) FROM read_parquet(?, filename = true) "
            "WHERE NOT starts_with(parse_filename(filename), ?)",
            [f"{root}/rejected/**/*.parquet", f"{settings.topic_readings}-"],
        ).fetchone()
    return readings, rejected, others


# --- checking the DLQ ---------------------------------------------------------------------------
def check_dlq_record(record: Any, key: bytes | None, value: bytes | None, reason: str) -> str:
    """One DLQ record against the record it stands for; returns its stub kind ('' if none)."""
    headers = dict(record.headers)
    assert headers["reason"] == reason.encode(), (headers, value and value[:80])
    assert headers["detail"], headers
    stub = headers.get("stub", b"").decode()
    if not stub:
        assert (record.key, record.value) == (key, value), (record.key, key, value and value[:80])
    elif stub == "null key and value":
        assert (key, value) == (None, None)
        assert (record.key, record.value) == (None, b"")
    else:
        assert stub == "truncated", headers
        if key is not None:
            assert int(headers["original_key_bytes"]) == len(key)
            assert record.key is not None and key.startswith(record.key)
        if value is not None:
            assert int(headers["original_value_bytes"]) == len(value)
            assert record.value is not None and value.startswith(record.value)
        assert (record.key, record.value) != (key, value), "truncated, but nothing was cut"
    return stub


# --- the test -------------------------------------------------------------------------------------
def test_generated_records_through_the_running_stream_and_the_archiver(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 1)

    # the real stream, started first: it joins its groups while the records are drawn
    port = free_port()
    env = {**settings_env(settings), "CLIMATEWATCH_METRICS_PORT": str(port)}
    log = tmp_path / "stream.log"
    with open(log, "wb") as output:
        stream = subprocess.Popen([CLI, "stream"], env=env, stdout=output, stderr=output)
    try:
        records = generate_records(GENERATED) + edge_records()
        lap("generate")
        positions = produce_records(settings, records)
        lap("produce")
        wait_until_consumed(stream, port, len(records), log)
        after = datetime.now(UTC)
        lap("stream")
        stream.send_signal(signal.SIGTERM)
        exit_code = stream.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait(timeout=10)
    stream_log = log.read_text(errors="replace")
    assert exit_code == 0, stream_log[-3000:]
    assert "Traceback" not in stream_log and "level=error" not in stream_log, stream_log[-3000:]
    lag = committed_lag(settings)

    archived = run_cli(settings, "archive", "run", timeout_s=ARCHIVE_TIMEOUT_S)
    assert archived.returncode == 0, (archived.stdout[-2000:], archived.stderr[-3000:])
    assert "Traceback" not in archived.stderr, archived.stderr[-3000:]
    lap("archive")

    # what came out
    dlq: dict[tuple[int, int], Any] = {}
    repeated = 0  # only after a rebalance (at least once), each time the same record
    for record in read_topic(settings, settings.topic_dlq, timeout_s=120):
        headers = dict(record.headers)
        assert headers["source_topic"] == settings.topic_readings.encode()
        source = (int(headers["source_partition"]), int(headers["source_offset"]))
        if source in dlq:
            first = dlq[source]
            assert (first.key, first.value, first.headers) == (
                record.key,
                record.value,
                record.headers,
            ), f"{source} is twice on the DLQ, differently"
            repeated += 1
        dlq[source] = record
    readings_rows, rejected_rows, other_rejected = archive_rows(settings)
    archived_readings = Counter((p, o) for p, o, _, _ in readings_rows)
    reading_of = {(p, o): (sensor, us) for p, o, sensor, us in readings_rows}
    rejected_of: dict[tuple[int, int], tuple[Any, ...]] = {}
    for partition, offset, *rest in rejected_rows:
        assert (partition, offset) not in rejected_of, f"{(partition, offset)} rejected twice"
        rejected_of[(partition, offset)] = tuple(rest)
    assert not set(archived_readings) & set(rejected_of), "archived as a reading and rejected"
    produced = {(p, o) for p, o, _ in positions}
    assert len(produced) == len(records)
    assert set(dlq) <= produced, "the DLQ holds records nobody produced"
    assert set(archived_readings) | set(rejected_of) == produced, "the archive lost records"

    # each record against the oracle
    accepted = rejected = undecided = 0
    reasons: Counter[str] = Counter()
    stubs: Counter[str] = Counter()
    for (key, value), (partition, offset, timestamp_ms) in zip(records, positions, strict=True):
        position = (partition, offset)
        # the archiver: judged at the record's Kafka timestamp, exactly
        verdict = parse_reading(value, now=EPOCH + timedelta(milliseconds=max(timestamp_ms, 0)))
        if isinstance(verdict, Rejection):
            rejected += 1
            reasons[verdict.reason] += 1
            assert position in rejected_of, f"rejected ({verdict}), not in rejected/: {value!r:.80}"
            kafka_us, row_key, row_value, reason, detail = rejected_of[position]
            assert (reason, row_key, row_value) == (verdict.reason, key, value), position
            assert detail and kafka_us == timestamp_ms * 1000
        else:
            assert isinstance(verdict, Reading)
            accepted += 1
            assert archived_readings[position] == 1, f"archived {archived_readings[position]} times"
            assert reading_of[position] == (verdict.sensor_id, (verdict.ts - EPOCH) // US)
        # the stream: judged at its clock, between the record's Kafka timestamp and `after`
        early, late = verdict, parse_reading(value, now=after)
        if type(early) is not type(late):
            undecided += 1
            if position in dlq:
                check_dlq_record(dlq[position], key, value, "future_timestamp")
        elif isinstance(early, Rejection):
            assert position in dlq, f"rejected ({early}) but not on the DLQ: {value!r:.80}"
            stubs[check_dlq_record(dlq[position], key, value, early.reason)] += 1
        else:
            assert position not in dlq, f"accepted but on the DLQ: {value!r:.80}"
    lap("check")

    stubs.pop("", None)
    print(
        f"\nfuzz pipeline: generated {len(records)} ({GENERATED} drawn + {len(records) - GENERATED}"
        f" at the limits), accepted {accepted}, rejected {rejected} "
        f"({', '.join(f'{r} {n}' for r, n in reasons.most_common())}), undecided for the "
        f"stream {undecided}; DLQ {len(dlq)} (stubs: {dict(stubs) or 'none'}), rejected/ "
        f"{len(rejected_of)} (and {other_rejected} records of the stream's own topics), "
        f"archived readings {sum(archived_readings.values())}; DLQ repeats {repeated}, stream "
        f"committed lag after SIGTERM {lag}; seconds {timings}, total "
        f"{time.monotonic() - started:.0f}"
    )
    assert accepted + rejected == len(records)
    assert len(rejected_of) == rejected and sum(archived_readings.values()) == accepted
    assert rejected - undecided <= len(dlq) <= rejected + undecided
    assert undecided < 20, undecided
    # the mix exercises both sides, every reason and both kinds of stub
    assert accepted > 3000 and rejected > 10_000, (accepted, rejected)
    assert len(reasons) == 11, reasons
    assert set(stubs) == {"null key and value", "truncated"}, stubs
