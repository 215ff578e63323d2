"""The archiver against the real broker: exactly once, by event date, rejects kept, crash-safe."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from include.errors import ClimateWatchError
from include.events import Alert, WindowStats
from include.kafka_clients import kafka_overrides_from_extra, make_admin, make_producer
from include.settings import Settings
from tests.fixtures.archive import (
    archived_readings,
    parquet_files,
    produce_scenario,
    rejected_reasons,
)
from tests.fixtures.settings import settings_env
from warehouse.archive.batch import BatchBuilder, dataset_schema
from warehouse.archive.decode import decode_event
from warehouse.archive.layout import READINGS
from warehouse.archive.ledger import Lease, Ledger, LedgerEntry, partition_lease
from warehouse.archive.run import (
    CRASH_AFTER_FILES_ENV,
    CRASH_EXIT_CODE,
    archive_partition,
    archive_topic,
)
from warehouse.archive.summary import archive_status


# --- pure decoding ----------------------------------------------------------------------------
@pytest.mark.unit
class TestBatchBuilder:
    def test_groups_by_event_date_and_region_and_keeps_rejects(self) -> None:
        builder = BatchBuilder(READINGS, "t")
        now_ms = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp() * 1000)
        late = b'{"schema_version":1,"sensor_id":"a","region":"paris","ts":"2026-11-23T23:59:59.999Z","temperature_c":1}'
        today = b'{"schema_version":1,"sensor_id":"a","region":"paris","ts":"2026-11-24T00:00:00Z","temperature_c":2}'
        other = b'{"schema_version":1,"sensor_id":"b","region":"lyon","ts":"2026-11-24T01:00:00+01:00","temperature_c":3}'
        for offset, value in enumerate([late, today, other, b"junk"]):
            builder.add(0, offset, now_ms, b"k", value)
        files = {(d, day, region): t for d, day, region, t in builder.tables()}
        assert set(files) == {
            ("readings", "2026-11-23", "paris"),
            ("readings", "2026-11-24", "paris"),
            ("readings", "2026-11-24", "lyon"),  # 01:00+01:00 is midnight UTC
            ("rejected", "2026-11-24", None),
        }
        assert files["readings", "2026-11-24", "paris"].schema == dataset_schema(READINGS)
        assert "region" not in dataset_schema(READINGS).names
        rejected = files["rejected", "2026-11-24", None].to_pylist()
        assert rejected[0]["reason"] == "not_json" and rejected[0]["value"] == b"junk"
        assert rejected[0]["kafka_offset"] == 3

    def test_future_is_judged_against_the_record_time_not_the_wall_clock(self) -> None:
        builder = BatchBuilder(READINGS, "t")
        value = b'{"schema_version":1,"sensor_id":"a","region":"x","ts":"2020-01-01T01:00:00Z","temperature_c":1}'
        then_ms = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
        builder.add(0, 0, then_ms, None, value)  # an hour ahead of its record time
        assert builder.rejected_count == 1
        assert next(iter(builder.tables()))[3].column("reason").to_pylist() == ["future_timestamp"]

    def test_events_decode_with_their_contract_or_are_rejected(self) -> None:
        alert = Alert(
            "a1", "heat", "critical", "paris", "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z",
            31.5, 30.0, "firing", "hot", "2026-11-24T10:05:01Z",
        )  # fmt: skip
        row = decode_event(alert.to_json(), "alerts")
        assert isinstance(row, list) and row[0] == "a1" and row[6] == 31.5
        bad = orjson.loads(alert.to_json()) | {"window_start": "soon"}
        assert decode_event(orjson.dumps(bad), "alerts").reason == "bad_timestamp"
        assert decode_event(b"[]", "window_stats").reason == "not_object"
        assert decode_event(b'{"region": "x"}', "window_stats").reason == "missing_field"

    def test_kafka_connection_extra_maps_to_settings(self) -> None:
        extra = {"bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "SASL_SSL", "x": 1}
        assert kafka_overrides_from_extra(extra) == {
            "bootstrap_servers": "k1:9092,k2:9092",
            "security_protocol": "SASL_SSL",
        }


@pytest.mark.unit
def test_region_names_with_path_characters_read_back_unchanged(tmp_path: Path) -> None:
    import duckdb

    from warehouse.archive.layout import data_path
    from warehouse.archive.ledger import filesystem_for
    from warehouse.archive.parquet import write_parquet_atomically

    builder = BatchBuilder(READINGS, "t")
    now_ms = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp() * 1000)
    for offset, region in enumerate(["São Paulo/Centro", "a=b", "100%"]):
        value = orjson.dumps(
            {"schema_version": 1, "sensor_id": "s", "region": region,
             "ts": "2026-11-24T10:00:00Z", "temperature_c": 1.0}
        )  # fmt: skip
        builder.add(0, offset, now_ms, b"s", value)
    fs, base = filesystem_for(str(tmp_path))
    for dataset, day, region, table in builder.tables():
        write_parquet_atomically(
            fs, f"{base}/{data_path(dataset, day, region, 'f.parquet')}", [table]
        )
    assert len(list((tmp_path / "readings" / "date=2026-11-24").iterdir())) == 3
    with duckdb.connect() as con:
        regions = con.execute(
            "SELECT region FROM read_parquet(?, hive_partitioning = true) ORDER BY region",
            [f"{tmp_path}/readings/**/*.parquet"],
        ).fetchall()
    assert regions == [("100%",), ("São Paulo/Centro",), ("a=b",)]


@pytest.mark.unit
def test_only_files_of_unrecorded_ranges_and_temporaries_are_removed(tmp_path: Path) -> None:
    from warehouse.archive.ledger import filesystem_for
    from warehouse.archive.parquet import remove_unrecorded_files

    day = tmp_path / "readings" / "date=2026-11-24" / "region=paris"
    day.mkdir(parents=True)
    names = {
        "t-p0-000000000000-000000000010.parquet": True,  # recorded
        "t-p0-000000000010-000000000020.parquet": False,  # crash leftover
        ".t-p0-000000000020-000000000030.parquet.0123abcd.tmp": False,  # partial write
        "t-p1-000000000010-000000000020.parquet": True,  # another partition's
        "t-compacted-0123456789abcdef.parquet": True,  # compaction's
    }
    for name in names:
        (day / name).write_bytes(b"x")
    fs, base = filesystem_for(str(tmp_path))
    removed = remove_unrecorded_files(fs, base, "t", 0, [(0, 10)])
    assert sorted(Path(r).name for r in removed) == sorted(
        n for n, keep in names.items() if not keep
    )
    assert sorted(p.name for p in day.iterdir()) == sorted(n for n, keep in names.items() if keep)


@pytest.mark.unit
def test_the_ledger_next_offset_comes_from_entry_names(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    assert ledger.next_offset("t", 0) is None
    ledger.append(LedgerEntry("t", 0, 0, 10))
    ledger.append(LedgerEntry("t", 0, 10, 25))
    ledger.append(LedgerEntry("t", 1, 0, 99))
    (tmp_path / "_ledger" / "t" / "p0" / ".000000000025-000000000030.json.x.tmp").write_text("")
    assert ledger.next_offset("t", 0) == 25
    assert ledger.ranges("t", 0) == [(0, 10), (10, 25)]
    assert ledger.next_offset("t", 0) == max(e.end_offset for e in ledger.entries("t", 0))


# --- against the broker -----------------------------------------------------------------------
def _archive(settings: Settings, **kwargs: object) -> list:
    return archive_topic(settings, settings.topic_readings, **kwargs)


@pytest.mark.kafka
def test_every_valid_reading_once_every_malformed_one_with_its_reason(
    kafka_settings: Settings,
) -> None:
    root = kafka_settings.archive_root
    produced = produce_scenario(kafka_settings, 600)
    results = _archive(kafka_settings)

    rows = archived_readings(root)
    assert len(rows) == produced.valid_count
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert len({(p, o) for _, _, p, o in rows}) == len(rows)  # each Kafka record once
    assert rejected_reasons(root) == produced.malformed
    assert sum(r.rows for r in results) == produced.valid_count
    assert sum(r.rejected for r in results) == produced.malformed_count

    # late readings went to their event day; readings crossed midnight
    days = sorted(p.parent.parent.name for p in Path(root, "readings").glob("*/*/*.parquet"))
    assert {"date=2026-11-22", "date=2026-11-23", "date=2026-11-24"} <= set(days)
    # file names carry topic, partition and offset range; no temporary file is left
    names = [p.name for p in parquet_files(root)]
    assert all(n.startswith(f"{kafka_settings.topic_readings}-p") for n in names)
    assert not [p for p in Path(root).rglob(".*") if p.is_file()]

    # a second run writes nothing
    before = sorted(str(p) for p in Path(root).rglob("*") if p.is_file())
    again = _archive(kafka_settings)
    assert sum(r.rows + r.rejected + r.files for r in again) == 0
    assert sorted(str(p) for p in Path(root).rglob("*") if p.is_file()) == before

    # M more records: exactly M more rows
    more = produce_scenario(kafka_settings, 130, seed=2)
    _archive(kafka_settings)
    produced.add(more)
    rows = archived_readings(root)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert rejected_reasons(root) == produced.malformed


@pytest.mark.kafka
def test_batches_bound_the_run_and_the_ledger_is_contiguous(kafka_settings: Settings) -> None:
    produced = produce_scenario(kafka_settings, 500, malformed_every=None)
    results = _archive(kafka_settings, batch_records=40)
    assert sum(r.batches for r in results) > len(results)
    ledger = Ledger(kafka_settings.archive_root)
    for result in results:
        entries = ledger.entries(kafka_settings.topic_readings, result.partition)
        if result.end_offset == 0:  # no sensor hashed to this partition
            assert not entries
            continue
        assert [e.start_offset for e in entries][1:] == [e.end_offset for e in entries][:-1]
        assert entries[-1].end_offset == result.end_offset
        assert all(e.rows <= 40 + 10_000 for e in entries)
        for entry in entries:  # the ledger names exactly the files on disk
            for archived in entry.files:
                assert Path(kafka_settings.archive_root, archived.path).is_file()
    assert len(archived_readings(kafka_settings.archive_root)) == produced.valid_count


@pytest.mark.kafka
@pytest.mark.slow
def test_a_crash_between_files_and_ledger_archives_nothing_twice(
    kafka_settings: Settings,
) -> None:
    produced = produce_scenario(kafka_settings, 900, malformed_every=None, duplicate_every=None)
    assert all(n == 1 for n in produced.valid.values())
    env = settings_env(kafka_settings) | {CRASH_AFTER_FILES_ENV: "4"}
    command = [
        str(Path(sys.executable).with_name("climatewatch")),
        "archive", "run", "--topic", kafka_settings.topic_readings, "--no-compact",
    ]  # fmt: skip
    crashed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    root = kafka_settings.archive_root
    on_disk = parquet_files(root)
    assert len(on_disk) >= 4  # files of the crashed batch are there, its ledger entry is not
    ledger_files = {f.path for e in Ledger(root).entries() for f in e.files}
    unrecorded = [p for p in on_disk if str(p.relative_to(root)) not in ledger_files]
    assert unrecorded

    env.pop(CRASH_AFTER_FILES_ENV)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = archived_readings(root)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid  # exactly once
    # the files of the crashed batch were removed and written again, all in the ledger
    ledger_files = {f.path for e in Ledger(root).entries() for f in e.files}
    assert {str(p.relative_to(root)) for p in parquet_files(root)} == ledger_files


@pytest.mark.kafka
def test_records_lost_to_retention_are_counted_and_the_run_continues(
    kafka_settings: Settings,
) -> None:
    from kafka import TopicPartition

    topic = kafka_settings.topic_readings
    producer = make_producer(kafka_settings)
    value = b'{"schema_version":1,"sensor_id":"a","region":"x","ts":"2026-11-24T10:00:00Z","temperature_c":1}'
    for _ in range(10):
        producer.send(topic, key=b"a", value=value, partition=0)
    producer.flush(timeout=30)
    assert archive_partition(kafka_settings, topic, 0).rows == 10
    for _ in range(10):
        producer.send(topic, key=b"a", value=value, partition=0)
    producer.flush(timeout=30)
    producer.close(timeout=10)
    admin = make_admin(kafka_settings)
    try:  # what retention does: records before offset 16 are gone
        admin.delete_records({TopicPartition(topic, 0): 16})
    finally:
        admin.close()

    result = archive_partition(kafka_settings, topic, 0)
    assert (result.lost, result.start_offset, result.rows) == (6, 16, 4)
    entries = Ledger(kafka_settings.archive_root).entries(topic, 0)
    assert entries[-1].lost_before == 6 and entries[-1].end_offset == 20
    status = {(s.topic, s.partition): s for s in archive_status(kafka_settings)}
    assert status[topic, 0].lost == 6 and status[topic, 0].lag == 0
    assert status[topic, 0].archived_to == 20


@pytest.mark.kafka
def test_alerts_and_window_stats_are_archived_by_window_date(kafka_settings: Settings) -> None:
    import duckdb

    alert = Alert(
        "heat-paris-1", "heat", "critical", "paris", "2026-11-23T23:55:00Z",
        "2026-11-24T00:00:00Z", 31.0, 30.0, "firing", "hot", "2026-11-24T00:00:02Z",
    )  # fmt: skip
    stats = WindowStats(
        "paris", "2026-11-24T00:00:00Z", "2026-11-24T00:05:00Z", 10, 12.5, 10.0, 15.0, 3, 1, 0,
        "watermark", "2026-11-24T00:05:01Z",
    )  # fmt: skip
    producer = make_producer(kafka_settings)
    producer.send(kafka_settings.topic_alerts, key=b"paris", value=alert.to_json())
    producer.send(kafka_settings.topic_alerts, key=b"paris", value=b"{oops")
    producer.send(kafka_settings.topic_window_stats, key=b"paris", value=stats.to_json())
    producer.flush(timeout=30)
    producer.close(timeout=10)
    for topic in (kafka_settings.topic_alerts, kafka_settings.topic_window_stats):
        archive_topic(kafka_settings, topic)

    root = Path(kafka_settings.archive_root)
    assert [p.parent.name for p in (root / "alerts").rglob("*.parquet")] == ["date=2026-11-23"]
    assert [p.parent.name for p in (root / "window_stats").rglob("*.parquet")] == [
        "date=2026-11-24"
    ]
    with duckdb.connect() as con:
        ids = con.execute(
            "SELECT alert_id, value FROM read_parquet(?, hive_partitioning = true)",
            [f"{root}/alerts/**/*.parquet"],
        ).fetchall()
        mean = con.execute(
            "SELECT mean_c FROM read_parquet(?)", [f"{root}/window_stats/**/*.parquet"]
        ).fetchall()
        rejected = con.execute(
            "SELECT reason, filename FROM read_parquet(?, filename = true)",
            [f"{root}/rejected/**/*.parquet"],
        ).fetchall()
    assert ids == [("heat-paris-1", 31.0)] and mean == [(12.5,)]
    assert len(rejected) == 1 and rejected[0][0] == "not_json"
    assert Path(rejected[0][1]).name.startswith(kafka_settings.topic_alerts)  # topic noted


@pytest.mark.kafka
def test_cli_status_shows_lag_then_run_clears_it(kafka_settings: Settings) -> None:
    produce_scenario(kafka_settings, 60)
    env = settings_env(kafka_settings)
    cli = str(Path(sys.executable).with_name("climatewatch"))

    def run(*args: str) -> str:
        done = subprocess.run(
            [cli, "archive", *args], env=env | {"COLUMNS": "200"}, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = run("status")
    assert kafka_settings.topic_readings in before
    statuses = archive_status(kafka_settings)
    assert sum(s.lag for s in statuses if s.topic == kafka_settings.topic_readings) > 60
    run("run")
    after = archive_status(kafka_settings)
    assert all(s.lag == 0 for s in after)
    assert sum(s.rejected for s in after) > 0
    assert "lag" in run("status")
    summary = orjson.loads(Path(kafka_settings.archive_root, "_summary.json").read_bytes())
    assert summary["last_run"]["rows"] == sum(s.rows for s in after)
    assert os.path.isdir(kafka_settings.archive_root)


@pytest.mark.kafka
@pytest.mark.slow
def test_partitions_archived_by_parallel_processes_are_each_archived_once(
    kafka_settings: Settings,
) -> None:
    produced = produce_scenario(kafka_settings, 300)
    results = _archive(kafka_settings, workers=2)
    assert sorted(r.partition for r in results) == list(range(kafka_settings.readings_partitions))
    rows = archived_readings(kafka_settings.archive_root)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert rejected_reasons(kafka_settings.archive_root) == produced.malformed
    assert sum(r.files for r in _archive(kafka_settings, workers=2)) == 0


def _busiest_partition(settings: Settings) -> int:
    ends = {
        s.partition: s.end_offset
        for s in archive_status(settings)
        if s.topic == settings.topic_readings
    }
    return max(ends, key=lambda p: ends[p])


@pytest.mark.kafka
def test_a_second_archiver_on_the_same_partition_waits_then_stops_having_touched_nothing(
    kafka_settings: Settings,
) -> None:
    """Another run holds the partition's lease: this one waits, then stops with one line
    naming the partition and that run. (The two-process race: test_lease.py.)"""
    produce_scenario(kafka_settings, 120)
    topic, root = kafka_settings.topic_readings, kafka_settings.archive_root
    p = _busiest_partition(kafka_settings)
    leftover = Path(root, "readings", "date=2026-11-24", "region=paris")
    leftover.mkdir(parents=True)  # an unrecorded file: "the other run's, being written"
    (leftover / f"{topic}-p{p}-000000000000-000000000009.parquet").write_bytes(b"x")

    with partition_lease(root, topic, p).held(0):
        with pytest.raises(ClimateWatchError) as refused:
            archive_partition(kafka_settings, topic, p, lease_wait_s=0.5)
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(
            f"{topic}-p{p} is being archived by another run (pid {os.getpid()} on "
        )
        assert [f.name for f in leftover.iterdir()] == [
            f"{topic}-p{p}-000000000000-000000000009.parquet"
        ]
        assert Ledger(root).entries() == []
    result = archive_partition(kafka_settings, topic, p)  # released: the next run proceeds
    assert result.removed_orphans == 1 and result.end_offset > 0
    assert Ledger(root).next_offset(topic, p) == result.end_offset


@pytest.mark.kafka
def test_a_run_that_lost_its_lease_records_nothing(kafka_settings: Settings) -> None:
    produced = produce_scenario(kafka_settings, 200, malformed_every=None, duplicate_every=None)
    topic, root = kafka_settings.topic_readings, kafka_settings.archive_root
    partition = _busiest_partition(kafka_settings)
    lock = Path(root, "_leases", topic, f"p{partition}.lock")
    taken: list[Lease] = []

    def lease_taken_over(_path: str) -> None:  # what a broken lease looks like to its holder
        if not taken:
            lock.rename(lock.with_name("stolen"))
            taken.append(partition_lease(root, topic, partition))
            taken[0].acquire(0)

    with pytest.raises(ClimateWatchError, match=f"{topic}-p{partition}: this run lost its lease"):
        archive_partition(
            kafka_settings, topic, partition, batch_records=20, on_file=lease_taken_over
        )
    assert Ledger(root).entries() == []  # its batch's files were written, never recorded
    taken[0].release()
    archive_topic(kafka_settings, topic)
    rows = archived_readings(root)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid  # exactly once


@pytest.mark.kafka
def test_behind_the_lease_a_ledger_that_moved_under_a_run_still_stops_it(
    kafka_settings: Settings,
) -> None:
    produce_scenario(kafka_settings, 120)
    topic = kafka_settings.topic_readings
    partition = next(r.partition for r in _archive(kafka_settings) if r.end_offset)
    Path(kafka_settings.archive_root).joinpath("_ledger").rename(
        Path(kafka_settings.archive_root, "old-ledger")
    )  # start over, then let something write the ledger while this run writes its files

    def ledger_written_meanwhile(_path: str) -> None:
        Ledger(kafka_settings.archive_root).append(LedgerEntry(topic, partition, 0, 1))

    with pytest.raises(ClimateWatchError, match="another archiver"):
        archive_partition(kafka_settings, topic, partition, on_file=ledger_written_meanwhile)


@pytest.mark.kafka
def test_a_uri_root_goes_through_pyarrow_filesystems(kafka_settings: Settings) -> None:
    from datetime import timedelta

    from warehouse.archive.compaction import compact

    local = Path(kafka_settings.data_dir, "uri-archive")
    settings = kafka_settings.model_copy(update={"archive_uri": f"file://{local}"})
    produced = produce_scenario(settings, 150)
    archive_topic(settings, settings.topic_readings, batch_records=30)
    compact(settings.archive_root, closed_after=timedelta(0))
    rows = archived_readings(local)
    assert Counter((s, ts) for s, ts, _, _ in rows) == produced.valid
    assert sum(s.rows for s in archive_status(settings)) == produced.valid_count
    assert all(e.files for e in Ledger(settings.archive_root).entries() if e.rows)


@pytest.mark.kafka
def test_a_ledger_ahead_of_kafka_is_refused_not_ignored(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_readings
    Ledger(kafka_settings.archive_root).append(LedgerEntry(topic, 0, 0, 500))
    with pytest.raises(ClimateWatchError, match="deleted and created again"):
        archive_partition(kafka_settings, topic, 0)
