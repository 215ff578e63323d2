"""The six fault scenarios, and :func:`run_scenario`: a fresh cluster to the DuckDB count.

A scenario starts producing, waits for a share of the production time
(``h.producer.at(share)``), injects its fault, undoes it, and waits for the in-sync
replicas; :meth:`Harness.finish` then drains and counts.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from bench.chaos.archiver import ArchiverLoop
from bench.chaos.harness import ChaosOptions, Harness, Log
from bench.chaos.stream import STREAM_SESSION_TIMEOUT_S, components_report
from bench.chaos.table import ScenarioResult
from include.errors import ClimateWatchError
from include.settings import ENV_PREFIX

SCENARIOS: dict[str, str] = {
    "broker-kill": "kill -9 of a broker while producing, heat wave after it, restart",
    "leader-kill": "kill -9 of the leader of temperature-data partition 0",
    "broker-freeze": "SIGSTOP of a partition leader, then SIGCONT",
    "stream-kill": "3 stream instances, kill -9 of the one holding the heat region",
    "archiver-kill": "kill -9 of the archiver mid-run during a broker failure, re-run",
    "send-fail": "the brokers refuse the stream's sends to the partials, then the alerts topic",
}

# send-fail: a topic's max.message.bytes below any record batch (its header alone is 61
# bytes), so its leader refuses every write with MESSAGE_TOO_LARGE while the cluster is
# healthy. (min.insync.replicas above the replication factor does not do it: Kafka 4 caps
# the effective minimum at the replica count, and writes with acks=all still succeed.)
REFUSING_MAX_MESSAGE_BYTES = "16"
SEND_FAIL_TIMEOUT_S = 180.0  # longest wait for the stream to stop on a refused send
STREAM_EXIT = "climatewatch: error: "  # how `climatewatch stream` prints its one-line error


def broker_kill(h: Harness) -> None:
    """kill -9 of one broker while producing; the heat wave comes after the kill; restart."""
    h.producer.start()
    h.producer.at(0.25)
    victim = 1
    h.kill_broker(victim)
    h.producer.at(0.7)
    restarted = h.restart_brokers()
    h.producer.wait()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {victim} restarted", since=restarted)
    heat_first_sent = h.producer.heat_first_sent
    if (
        heat_first_sent is not None
        and heat_first_sent < h.producer.started + 0.25 * h.options.duration_s
    ):
        h.problem("the heat wave started before the kill")


def leader_kill(h: Harness) -> None:
    """kill -9 of the leader of temperature-data partition 0."""
    h.producer.start()
    h.producer.at(0.3)
    leader = h.leader_of(h.require_settings().topic_readings, 0)
    h.log(f"temperature-data partition 0 is led by node {leader}")
    h.kill_broker(leader)
    h.producer.at(0.7)
    restarted = h.restart_brokers()
    h.producer.wait()
    h.result.isr_recovered_s = h.wait_for_full_isr(
        f"leader node {leader} restarted", since=restarted
    )


def broker_freeze(h: Harness) -> None:
    """SIGSTOP of one broker (a partition leader) for freeze_s seconds, then SIGCONT."""
    h.producer.start()
    h.producer.at(0.2)
    leader = h.leader_of(h.require_settings().topic_readings, 1)
    h.kill_broker(leader, signal.SIGSTOP)
    frozen_until = time.monotonic() + h.options.freeze_s
    while time.monotonic() < frozen_until:
        h.supervise()
        time.sleep(0.2)
    h.kill_broker(leader, signal.SIGCONT)
    resumed = time.monotonic()
    h.producer.wait()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {leader} resumed", since=resumed)


def stream_kill(h: Harness) -> None:
    """Three stream instances; the one holding the heat region is killed (kill -9)."""
    from kafka.partitioner.default import murmur2

    s = h.require_settings()
    h.producer.start()
    h.producer.at(0.25)
    region_partition = (murmur2(h.heat_region.encode()) & 0x7FFFFFFF) % s.output_partitions
    instances = h.streams.instances
    victim = next(
        (i for i in instances if region_partition in (i.assignments()[1] or ())), instances[0]
    )
    offsets = {i.name: i.log_size() for i in instances}
    victim.killed = True
    victim.process.kill()
    killed_at = time.monotonic()
    h.log(
        f"kill -9 → {victim.name} (pid {victim.process.pid}), holder of region partition "
        f"{region_partition} ({h.heat_region})"
    )
    moved = None
    while time.monotonic() < killed_at + 90:
        if h.streams.assignment_complete(after=offsets):
            moved = time.monotonic() - killed_at
            break
        h.supervise()
        time.sleep(0.2)
    if moved is None:
        h.problem("the killed instance's partitions did not move within 90 s")
    else:
        h.note(f"partitions moved to the 2 survivors {moved:.1f}s after the kill")
        if moved > STREAM_SESSION_TIMEOUT_S + 10:
            h.problem(
                f"partitions took {moved:.1f}s to move (session timeout {STREAM_SESSION_TIMEOUT_S:.0f}s)"
            )
    h.producer.wait()
    if h.producer.heat_first_sent is not None and h.producer.heat_first_sent < killed_at:
        h.problem("the heat wave started before the kill")


def archiver_kill(h: Harness, loop: ArchiverLoop) -> None:
    """A broker killed; the archiver killed (kill -9) mid-run meanwhile; then re-run."""
    h.producer.start()
    h.producer.at(0.3)
    loop.stop()  # one archiver at a time: the loop's run finishes first
    victim = h.leader_of(h.require_settings().topic_readings, 2)
    h.kill_broker(victim)
    for attempt in (1, 2):
        h.producer.at(0.3 + 0.15 * attempt)
        _kill_an_archiver_run(h, attempt)
    restarted = h.restart_brokers()
    h.producer.wait()
    h.result.isr_recovered_s = h.wait_for_full_isr(f"node {victim} restarted", since=restarted)


def _kill_an_archiver_run(h: Harness, attempt: int) -> None:
    """Start an archiver run (small batches) and kill -9 it once it has written a file."""
    archiver = h.archiver
    files_before = archiver.files()
    result: dict[str, int | None] = {}

    def killed_run() -> None:
        batch = {f"{ENV_PREFIX}ARCHIVE_BATCH_RECORDS": "300"}  # many small batches
        result["code"] = archiver.run_once(timeout_s=180, **batch)

    runner = threading.Thread(target=killed_run)
    runner.start()
    deadline = time.monotonic() + 60
    while runner.is_alive() and time.monotonic() < deadline and archiver.files() <= files_before:
        time.sleep(0.05)
    written = archiver.files() - files_before
    archiver.kill()
    runner.join(timeout=30)
    h.log(
        f"kill -9 → archiver run {attempt} after {written} new file(s) (exit {result.get('code')})"
    )
    if result.get("code") == 0:
        h.note(f"archiver run {attempt} finished before it could be killed")


def send_fail(h: Harness) -> None:
    """The brokers refuse the stream's writes for real, first to stage 1's output (the
    partials topic), then, while the heat wave is processed, to stage 2's (the alerts
    topic): each topic's ``max.message.bytes`` is set below the size of any record batch
    for at least ``send_fail_s`` and until the stream stopped on a refused send to it (its
    one-line error, exit 1, nothing committed past it; the supervisor restarts it), then
    restored. The alerts topic refuses writes before the partials topic takes them again,
    so the heat wave's partials can only reach stage 2 while its alert cannot be published.
    """
    if not h.options.with_stream:
        raise ClimateWatchError("send-fail needs the stream (with_stream)")
    s = h.require_settings()
    key = "max.message.bytes"
    restore: dict[str, str | None] = {}  # topic -> its own value before the fault
    try:
        h.producer.start()
        h.producer.at(0.15)
        marks = h.stream_logs()
        restore[s.topic_window_partials] = h.set_topic_config(
            s.topic_window_partials, key, REFUSING_MAX_MESSAGE_BYTES
        )
        began = time.monotonic()  # the brokers report the new value
        _refusing(h, s.topic_window_partials, marks, began)

        marks = h.stream_logs()
        restore[s.topic_alerts] = h.set_topic_config(
            s.topic_alerts, key, REFUSING_MAX_MESSAGE_BYTES
        )
        switched = time.monotonic()
        h.set_topic_config(s.topic_window_partials, key, restore.pop(s.topic_window_partials))
        h.note(f"{s.topic_window_partials} refused writes for {time.monotonic() - began:.1f}s")
        _refusing(h, s.topic_alerts, marks, switched, after=f"alert firing heat {h.heat_region}")

        on_topic = len(h.streams.heat_alerts())
        h.set_topic_config(s.topic_alerts, key, restore.pop(s.topic_alerts))
        restored = time.monotonic()
        h.supervise()  # the stream that stopped on the alert starts again at once
        h.note(
            f"{s.topic_alerts} refused writes for {restored - switched:.1f}s; "
            f"heat alerts on it meanwhile: {on_topic}"
        )
        if on_topic:
            h.problem("a heat alert reached the alerts topic while it refused writes")
        # the refused writes never reached a replica: the in-sync replicas stayed 3
        h.result.isr_recovered_s = h.wait_for_full_isr("topic configs restored", since=restored)
        h.producer.wait()
    finally:
        for topic, value in restore.items():  # a failed scenario leaves no topic refusing
            try:
                h.set_topic_config(topic, key, value)
            except Exception as exc:
                h.problem(f"could not restore {key} of {topic}: {exc}")


def _refusing(
    h: Harness, topic: str, marks: dict[str, int], began: float, after: str | None = None
) -> None:
    """While ``topic`` refuses writes: supervise the stream until it has stopped on a
    refused send to ``topic`` (with ``after``: once it logged that line first) and
    ``send_fail_s`` have passed; every exit line the stream printed goes to the log."""
    named = f"'{topic}'"  # the line names every topic whose sends failed
    deadline = began + SEND_FAIL_TIMEOUT_S
    reported = 0
    stopped: str | None = None
    while time.monotonic() < deadline:
        h.supervise()
        lines = h.stream_log_since(marks)
        exits = [line for line in lines if STREAM_EXIT in line]
        for line in exits[reported:]:
            h.log(f"stream exit line: {line[line.index(STREAM_EXIT) :][:1000]}")
        reported = len(exits)
        if stopped is None:
            start = 0
            if after is not None:
                start = next((i for i, line in enumerate(lines) if after in line), len(lines))
            stopped = next(
                (
                    line
                    for line in lines[start:]
                    if STREAM_EXIT + "could not publish to topic" in line and named in line
                ),
                None,
            )
            if stopped is not None:
                h.note(
                    f"stream stopped on a refused send to {topic} "
                    f"{time.monotonic() - began:.1f}s into the fault"
                    + (f" (after '{after}')" if after else "")
                )
        if stopped is not None and time.monotonic() >= began + h.options.send_fail_s:
            return
        time.sleep(0.25)
    h.problem(
        f"the stream did not stop on a refused send to {topic} within {SEND_FAIL_TIMEOUT_S:.0f}s"
        + (f" after '{after}'" if after else "")
    )


def _inject(name: str, h: Harness, loop: ArchiverLoop) -> None:
    """The fault of scenario ``name``, from the start of production to its end."""
    if name == "broker-kill":
        broker_kill(h)
    elif name == "leader-kill":
        leader_kill(h)
    elif name == "broker-freeze":
        broker_freeze(h)
    elif name == "stream-kill":
        stream_kill(h)
    elif name == "send-fail":
        send_fail(h)
    else:
        archiver_kill(h, loop)


def run_scenario(name: str, options: ChaosOptions, log: Log = print) -> ScenarioResult:
    """Run one scenario from a fresh cluster to the DuckDB count; never leaves processes."""
    if name not in SCENARIOS:
        raise ClimateWatchError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    harness = Harness(name, options, workdir, log)
    loop: ArchiverLoop | None = None
    try:
        harness.log(SCENARIOS[name])
        harness.start_cluster()
        if name == "send-fail":  # a short retry bound: a refused send stops the stream soon
            harness.extra_env[f"{ENV_PREFIX}PRODUCER_DELIVERY_TIMEOUT_MS"] = str(
                options.send_fail_delivery_timeout_ms
            )
        if options.with_stream:
            harness.streams.start(3 if name == "stream-kill" else 1)
            harness.streams.wait_for_assignments()
        loop = ArchiverLoop(harness.archiver).start()
        _inject(name, harness, loop)
        loop.stop()
        harness.log(f"archiver loop: {loop.runs} runs, {loop.failures} failed")
        harness.finish()
        harness.note(components_report(harness))
    except Exception as exc:
        harness.problem(f"{type(exc).__name__}: {exc}")
    finally:
        if loop is not None:
            loop.stop(timeout_s=30)
        harness.close()
    result = harness.result
    result.restarts = harness.streams.restarts
    result.elapsed_s = time.monotonic() - harness.started
    if result.ok or not options.keep_failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.notes.append(f"logs kept in {workdir}")
        log(f"{name}: work directory kept for inspection: {workdir}")
    return result
