"""Two archivers on one partition, and power loss: the lease and the fsync order."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.settings import Settings, load_settings
from tests.fixtures.archive import (
    archived_offsets,
    object_store_lease_worker,
    produce_scenario,
    race_worker,
    reading_value,
)
from warehouse.archive.ledger import (
    ArchivedFile,
    LeaseBusy,
    LeaseLost,
    Ledger,
    LedgerEntry,
    ObjectStoreLease,
    partition_lease,
    write_atomically,
)
from warehouse.archive.summary import archive_status

REPO_ROOT = Path(__file__).resolve().parents[3]
BUSY = re.compile(r"^\S+-p\d+ is being archived by another run \(pid \d+ on .+\)")


# --- the lease on a local path: flock -----------------------------------------------------------
@pytest.mark.unit
def test_a_local_lease_has_one_holder_and_names_it_to_the_others(tmp_path: Path) -> None:
    first, second = partition_lease(str(tmp_path), "t", 3), partition_lease(str(tmp_path), "t", 3)
    with first.held(0):
        began = time.monotonic()
        with pytest.raises(LeaseBusy) as busy:
            second.acquire(0.3)
        assert time.monotonic() - began >= 0.3  # it waited, bounded
        message = str(busy.value)
        assert "\n" not in message and BUSY.match(message), message
        assert message.startswith("t-p3 ") and f"pid {os.getpid()} on " in message
        with partition_lease(str(tmp_path), "t", 4).held(0):
            pass  # another partition is another lease
        first.check()
    with second.held(0):  # released: the next run takes it at once
        second.check()
    assert Path(tmp_path, "_leases", "t", "p3.lock").is_file()  # never deleted


@pytest.mark.unit
def test_a_local_lease_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from warehouse.archive.ledger import partition_lease; "
            f"partition_lease({str(tmp_path)!r}, 't', 0).acquire(0); print('held', flush=True); "
            "time.sleep(120)",
        ],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseBusy, match=f"pid {holder.pid} on "):
            partition_lease(str(tmp_path), "t", 0).acquire(0)
        holder.kill()  # like kill -9: no clean-up of any kind
        holder.wait(timeout=30)
        with partition_lease(str(tmp_path), "t", 0).held(5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


@pytest.mark.unit
def test_a_run_refused_the_instant_after_the_holder_locked_still_names_it(
    tmp_path: Path,
) -> None:
    """The holder locks, then writes its record: a waiter in between must not say "unknown"."""
    import fcntl
    import threading

    lease = partition_lease(str(tmp_path), "t", 5)
    os.makedirs(os.path.dirname(lease.path))
    descriptor = os.open(lease.path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # locked, its record not written yet
    record = lease.holder.to_json()  # as the holder is about to write it
    writer = threading.Timer(0.2, os.pwrite, (descriptor, record, 0))
    writer.start()
    try:
        with pytest.raises(LeaseBusy) as busy:
            partition_lease(str(tmp_path), "t", 5).acquire(0)
        assert BUSY.match(str(busy.value)), busy.value
    finally:
        writer.join(timeout=5)
        os.close(descriptor)


@pytest.mark.unit
def test_a_local_lease_whose_lock_file_was_replaced_is_lost(tmp_path: Path) -> None:
    lease = partition_lease(str(tmp_path), "t", 0)
    with lease.held(0):
        lock = Path(tmp_path, "_leases", "t", "p0.lock")
        lock.rename(lock.with_name("p0.lock.old"))  # someone "cleaned up" the lease files
        replacement = partition_lease(str(tmp_path), "t", 0)  # a new run locks a new file
        with replacement.held(0), pytest.raises(LeaseLost, match="t-p0: this run lost its lease"):
            lease.check()


# --- the lease on an object store: a record with an expiry ---------------------------------------
def _object_store(root: Path):  # -> pafs.FileSystem
    import pyarrow.fs as pafs

    return pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())  # not LocalFileSystem


@pytest.mark.unit
def test_an_object_store_lease_expires_and_its_old_holder_then_stops(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    fs = _object_store(tmp_path)

    def lease(ttl_s: float, margin_s: float = 0.1) -> ObjectStoreLease:
        return ObjectStoreLease(
            fs, "_leases/t/p0.lock", "t-p0", ttl_s=ttl_s, renew_s=60, margin_s=margin_s,
            settle_s=0.05,
        )  # fmt: skip

    stalled, other = lease(ttl_s=0.8), lease(ttl_s=60)
    stalled.acquire(0)
    stalled.check()
    with pytest.raises(
        LeaseBusy, match=r"^t-p0 is being archived by another run \(pid .*lease until"
    ):
        other.acquire(0)
    time.sleep(0.9)  # the holder stalls past its lease's expiry
    other.acquire(0)  # expired: taken over
    with pytest.raises(LeaseLost, match="taken over: pid"):
        stalled.check()  # so it deletes and records nothing more
    stalled.release()  # and leaves the new holder's record alone
    other.check()
    other.release()
    assert fs.get_file_info("_leases/t/p0.lock").type == pafs.FileType.NotFound

    late = lease(ttl_s=0.5, margin_s=0.3)
    late.acquire(0)
    time.sleep(0.3)  # less than the margin left: stop before someone may take it
    with pytest.raises(LeaseLost, match="about to expire"):
        late.check()


@pytest.mark.unit
@pytest.mark.slow
def test_object_store_lease_holders_in_two_processes_never_interleave(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    log = tmp_path / "steps.log"
    workers = [
        context.Process(target=object_store_lease_worker, args=(str(tmp_path), str(log), 4, 0.5))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join(timeout=240)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    lines = [line.split() for line in log.read_text().splitlines()]
    holdings = []  # consecutive steps of one (process, holding)
    for pid, holding, step in lines:
        if not holdings or holdings[-1][0] != (pid, holding):
            holdings.append(((pid, holding), []))
        holdings[-1][1].append(step)
    # each holding's steps are together, none resumed after the other process's
    assert len({key for key, _ in holdings}) == len(holdings) == 8
    for _, steps in holdings:  # all three, or fewer and then "lost" (a stall: stopped)
        assert steps == ["0", "1", "2"] or steps == [*["0", "1", "2"][: len(steps) - 1], "lost"]


def _assert_ledger_is_whole(settings: Settings) -> dict[int, int]:
    """Each partition's ledger runs from 0 to Kafka's end without a gap or an overlap, and
    every file an entry names is there; returns each partition's end offset."""
    root, topic = settings.archive_root, settings.topic_readings
    ledger = Ledger(root)
    ends = {}
    for status in archive_status(settings):
        if status.topic != topic:
            continue
        ranges = ledger.ranges(topic, status.partition)
        starts, stops = [start for start, _ in ranges], [end for _, end in ranges]
        assert starts == [0, *stops][: len(starts)], ranges
        assert status.lag == 0, status
        ends[status.partition] = status.end_offset
    missing = [
        f.path for e in ledger.entries(topic) for f in e.files if not Path(root, f.path).is_file()
    ]
    assert not missing, f"ledger entries point at deleted files: {missing[:5]}"
    assert not [p for p in Path(root).rglob(".*") if p.is_file()]  # no leftover temporaries
    return ends


@pytest.mark.kafka
@pytest.mark.slow
def test_two_archiver_processes_racing_archive_every_record_exactly_once(
    kafka_settings: Settings,
) -> None:
    """20 rounds: new readings, then two processes archive the same partitions at once.

    They start a random fraction of a second apart, take the partitions in different
    orders, with different batch sizes (so their files have different names), and either
    give up at once on a busy partition or wait for it.
    """
    import multiprocessing

    rng = random.Random(17)
    context = multiprocessing.get_context("spawn")  # kafka-python's threads: no fork
    results = context.Queue()
    commands = [context.Queue() for _ in range(2)]
    workers = [
        context.Process(target=race_worker, args=(kafka_settings, queue, results), daemon=True)
        for queue in commands
    ]
    for worker in workers:
        worker.start()
    partitions = list(range(kafka_settings.readings_partitions))
    produced = 0
    seen: Counter[str] = Counter()
    try:
        for number in range(20):
            scenario = produce_scenario(kafka_settings, 240, seed=number + 1)
            produced += scenario.valid_count + scenario.malformed_count
            for queue in commands:
                order = rng.sample(partitions, len(partitions))
                kwargs = {
                    "batch_records": rng.choice((11, 19, 31)),
                    "lease_wait_s": rng.choice((0.0, 30.0)),  # give up at once, or wait
                }
                queue.put({"partitions": order, "delay": rng.uniform(0, 0.4), "kwargs": kwargs})
            answers = [results.get(timeout=300) for _ in commands]

            ends = _assert_ledger_is_whole(kafka_settings)
            for partition in partitions:
                outcomes = [answer[partition] for answer in answers]
                assert all(kind in ("ok", "refused") for kind, _ in outcomes), outcomes
                for kind, detail in outcomes:
                    assert kind == "ok" or BUSY.match(detail), detail
                seen.update(kind for kind, _ in outcomes)
                archived = sorted(detail for kind, detail in outcomes if kind == "ok")
                if ends[partition] and len(archived) == 2 and archived[0] == 0:
                    seen["found it done"] += 1  # it waited for the other one, or came second
        for queue in commands:
            queue.put(None)
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()

    counts = archived_offsets(kafka_settings.archive_root)
    assert {n for n in counts.values()} == {1}  # no record twice
    assert sum(counts.values()) == produced  # no record lost
    assert set(counts) == {(p, o) for p, end in ends.items() for o in range(end)}
    assert seen["refused"] + seen["found it done"] > 0, seen  # they did run into each other


# --- fsync: data files, then their directories, then the ledger -----------------------------------
def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """Every ``os.fsync`` from now on, in order: (path, names in it when it is a directory)."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        calls.append((path, tuple(sorted(os.listdir(path))) if os.path.isdir(path) else ()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _first(calls: list[tuple[str, tuple[str, ...]]], after: int, test) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, call in enumerate(calls) if i > after and test(*call))


def _temporary_of(path: Path):  # type: ignore[no-untyped-def]
    """The test 'this fsync was of ``path``'s hidden temporary' (before its rename)."""
    return lambda synced, _: (
        Path(synced).parent == path.parent and Path(synced).name.startswith(f".{path.name}.")
    )


def _directory_holding(path: Path):  # type: ignore[no-untyped-def]
    """The test 'this fsync was of ``path``'s directory, once ``path`` was renamed into it'."""
    return lambda synced, names: Path(synced) == path.parent and path.name in names


@pytest.mark.unit
def test_a_batch_is_fsynced_files_then_their_directories_then_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse.archive.batch import BatchBuilder
    from warehouse.archive.layout import READINGS
    from warehouse.archive.run import _PartitionRun

    settings = load_settings(data_dir=tmp_path / "data", topic_readings="t")
    root = settings.archive_root
    builder = BatchBuilder(READINGS, "t")
    now_ms = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp() * 1000)
    for offset, (region, day) in enumerate([("paris", 23), ("paris", 24), ("lyon", 24)]):
        ts = datetime(2026, 11, day, 10, tzinfo=UTC)
        builder.add(0, offset, now_ms, b"s", reading_value("s", region, ts, 1.0))
    builder.add(0, 3, now_ms, b"s", b"junk")
    calls = _record_fsyncs(monkeypatch)
    run = _PartitionRun(settings, "t", 0, None, 100, None)
    with run.lease.held(0):
        run.remove_orphans()
        run._flush(builder, 0, 4, 0)  # one batch: its files, then its ledger entry

    (entry,) = Ledger(root).entries()
    assert len(entry.files) == 4  # three (day, region) files and one of rejects
    ledger_entry = Path(root, "_ledger", "t", "p0", "000000000000-000000000004.json")
    ledger_written = _first(calls, -1, _temporary_of(ledger_entry))
    ledger_renamed = _first(calls, ledger_written, _directory_holding(ledger_entry))
    assert ledger_renamed == len(calls) - 1  # the last thing the batch did
    for archived in entry.files:
        data_file = Path(root, archived.path)
        written = _first(calls, -1, _temporary_of(data_file))
        renamed = _first(calls, written, _directory_holding(data_file))
        assert written < renamed < ledger_written, (archived.path, calls)
    # each new directory is fsynced into its parent before anything is renamed into it
    day_directory = Path(root, entry.files[0].path).parent
    made = _first(calls, -1, lambda synced, names: Path(synced) == day_directory.parent)
    assert made < _first(calls, -1, _directory_holding(Path(root, entry.files[0].path)))


@pytest.mark.unit
def test_compaction_fsyncs_the_merged_file_before_the_ledger_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse.archive.batch import BatchBuilder
    from warehouse.archive.compaction import compact
    from warehouse.archive.layout import READINGS, batch_file_name, data_path
    from warehouse.archive.ledger import filesystem_for
    from warehouse.archive.parquet import write_parquet_atomically

    root = str(tmp_path)
    fs, base = filesystem_for(root)
    now_ms = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp() * 1000)
    old = []
    for offset in (0, 1):
        builder = BatchBuilder(READINGS, "t")
        ts = datetime(2026, 11, 24, 10, offset, tzinfo=UTC)
        builder.add(0, offset, now_ms, b"s", reading_value("s", "paris", ts, 1.0))
        ((dataset, day, region, table),) = builder.tables()
        path = data_path(dataset, day, region, batch_file_name("t", 0, offset, offset + 1))
        write_parquet_atomically(fs, f"{base}/{path}", [table])
        files = (ArchivedFile(path, dataset, 1, day, region),)
        Ledger(root).append(
            LedgerEntry("t", 0, offset, offset + 1, files, 1, 0, 0, "2026-11-24T11:00:00+00:00")
        )
        old.append(Path(root, path))
    calls = _record_fsyncs(monkeypatch)
    (group,) = compact(root, closed_after=timedelta(0)).groups
    merged = Path(root, group.merged)

    merged_written = _first(
        calls, -1, _temporary_of(merged.with_name(f".{merged.name}.compacting"))
    )
    intent = _first(calls, merged_written, lambda synced, _: "/_compaction/" in synced)
    renamed = _first(calls, intent, _directory_holding(merged))
    olds_gone = _first(
        calls, renamed - 1, lambda synced, names: Path(synced) == merged.parent
        and not {p.name for p in old} & set(names)
    )  # fmt: skip
    ledger = _first(calls, olds_gone, lambda synced, _: "/_ledger/" in synced)
    assert merged_written < intent < renamed <= olds_gone < ledger
    assert all(e.files[0].path == group.merged for e in Ledger(root).entries())


@pytest.mark.unit
def test_nothing_is_fsynced_on_an_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_fsyncs(monkeypatch)
    write_atomically(_object_store(tmp_path), "_ledger/t/p0/x.json", b"{}")  # a PUT is durable
    assert Path(tmp_path, "_ledger/t/p0/x.json").read_bytes() == b"{}" and calls == []
    write_atomically(_object_store(tmp_path).base_fs, f"{tmp_path}/y.json", b"{}")
    assert [Path(path).name for path, _ in calls][-1] == tmp_path.name  # local: fsynced
