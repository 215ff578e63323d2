"""The stream instances of a scenario: started, supervised, reassigned, drained; heat alerts.

A stream instance that exits on its own is a *problem* of the scenario, reported in its
row and not restarted: through a broker's loss or freeze the stream must ride on (see
``include/kafka_retry.py``). Only scenarios where an exit is the expected outcome
(:data:`RESTARTING_SCENARIOS`: send-fail, where a refused send stops the stream) restart
it, as a service manager would, and count the restarts. :func:`components_report` is the
scenario's last word on it ("no component restarted").
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.chaos.processes import stop_process, wait_or_kill
from include.errors import ClimateWatchError

if TYPE_CHECKING:
    from bench.chaos.harness import Harness

STREAM_SESSION_TIMEOUT_S = 10.0  # streaming.processor's consumers
# Scenarios where a stream is expected to stop on its own, and is restarted.
RESTARTING_SCENARIOS = frozenset({"send-fail"})

_ASSIGNED = re.compile(
    r'msg="(?P<stage>readings|region) partitions assigned" partitions="?(?P<partitions>\[[0-9, ]*\])'
)


@dataclass
class StreamInstance:
    """One ``climatewatch stream`` subprocess and the log it writes."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    killed: bool = False  # killed on purpose: not restarted
    exited: int | None = None  # exit code, when it exited on its own and was not restarted

    def assignments(self, after: int = 0) -> tuple[list[int] | None, list[int] | None]:
        """Latest readings and region partitions this instance logged (from byte ``after``)."""
        try:
            text = self.log_file.read_bytes()[after:].decode(errors="replace")
        except OSError:
            return None, None
        latest: dict[str, list[int] | None] = {"readings": None, "region": None}
        for match in _ASSIGNED.finditer(text):
            latest[match["stage"]] = [int(p) for p in re.findall(r"\d+", match["partitions"])]
        return latest["readings"], latest["region"]

    def last_line(self) -> str:
        """The last line the instance printed (its one-line error, when it stopped on one)."""
        try:
            text = self.log_file.read_bytes()[-4000:].decode(errors="replace")
        except OSError:
            return "?"
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1][:300] if lines else "?"

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0


class Streams:
    """The scenario's stream instances; one that exits on its own is a problem, or, with
    ``restarts_allowed`` (the scenario expects it), restarted."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.instances: list[StreamInstance] = []
        self.restarts = 0
        self.exits = 0  # exits on their own, not restarted (each one a problem)
        self.restarts_allowed = harness.name in RESTARTING_SCENARIOS

    def start(self, count: int) -> None:
        for i in range(count):
            self._start(f"stream-{i + 1}")
        self.h.log(f"{count} stream instance(s) started")

    def _start(self, name: str) -> StreamInstance:
        process = self.h.spawn(["stream"], f"{name}.log")
        instance = StreamInstance(name, process, self.h.workdir / "logs" / f"{name}.log")
        existing = [i for i, s in enumerate(self.instances) if s.name == name]
        if existing:
            self.instances[existing[0]] = instance
        else:
            self.instances.append(instance)
        return instance

    def supervise(self) -> None:
        """A stream instance that exited on its own: restarted (as a service manager would)
        if the scenario allows it, else reported as a problem, once, and left stopped."""
        for instance in list(self.instances):
            code = instance.process.poll()
            if code is None or instance.killed or instance.exited is not None:
                continue
            if self.restarts_allowed:
                self.restarts += 1
                self.h.note(f"{instance.name} exited on its own (code {code}), restarted")
                self._start(instance.name)
            else:
                self.exits += 1
                instance.exited = code
                self.h.problem(
                    f"{instance.name} exited on its own (code {code}), not restarted: "
                    f"{instance.last_line()}"
                )

    def live(self) -> list[StreamInstance]:
        return [i for i in self.instances if not i.killed and i.process.poll() is None]

    def wait_for_assignments(self, timeout_s: float = 90.0) -> None:
        """Until the live instances together hold every readings and region partition."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.assignment_complete():
                self.h.log("stream group assigned every partition")
                return
            self.supervise()
            time.sleep(0.5)
        raise ClimateWatchError(
            f"stream instances did not get their partitions within {timeout_s:.0f}s"
        )

    def assignment_complete(self, after: dict[str, int] | None = None) -> bool:
        """The live instances hold every partition (and, with ``after``, some survivor was
        reassigned after that byte of its log: since a kill)."""
        s = self.h.require_settings()
        live = self.live()
        readings: list[int] = []
        regions: list[int] = []
        for instance in live:
            r, g = instance.assignments()
            if r is None or g is None:
                return False
            readings += r
            regions += g
        if after is not None:  # some survivor must have been reassigned since the kill
            moved = any(
                i.assignments(after.get(i.name, 0))[0] is not None
                and i.assignments(after.get(i.name, 0))[1] is not None
                for i in live
            )
            if not moved:
                return False
        return sorted(readings) == list(range(s.readings_partitions)) and sorted(regions) == list(
            range(s.output_partitions)
        )

    def stop(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                stop_process(instance.process, timeout_s=40)

    def drain(self) -> None:
        """Stop the live instances, then one ``stream --until-caught-up`` run."""
        self.stop()
        timeout = self.h.options.drain_timeout_s
        process = self.h.spawn(
            ["stream", "--until-caught-up", "--max-runtime", str(int(timeout))], "stream-drain.log"
        )
        code = wait_or_kill(process, timeout + 60)
        self.h.log(f"stream drained (exit {code})")
        if code != 0:
            self.h.note(f"stream drain exited with {code}")

    def heat_alerts(self) -> set[str]:
        """Ids of the firing heat alerts for the heat-wave region on the alerts topic."""
        from kafka import TopicPartition

        from include.events import Alert
        from include.kafka_clients import make_consumer

        s = self.h.require_settings()
        consumer = make_consumer(s)
        seen: set[str] = set()
        try:
            partitions = [
                TopicPartition(s.topic_alerts, p)
                for p in consumer.partitions_for_topic(s.topic_alerts) or ()
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise ClimateWatchError("could not read the alerts topic within 30 s")
                for batch in consumer.poll(timeout_ms=300).values():
                    for record in batch:
                        alert = Alert.from_json(record.value)
                        if (
                            alert.rule == "heat"
                            and alert.status == "firing"
                            and alert.region == self.h.heat_region
                        ):
                            seen.add(alert.alert_id)
        finally:
            consumer.close()
        return seen

    def wait_for_heat_alert(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.heat_alerts():
                self.h.log("heat alert seen on the alerts topic")
                return
            self.supervise()
            if not self.live():
                self.h.log("no stream instance left running; draining")
                return
            time.sleep(2)
        self.h.log(f"no heat alert within {timeout_s:.0f}s of live stream; draining")


def components_report(h: Harness) -> str:
    """The scenario's note on its components: "no component restarted" when no stream
    instance exited on its own and no archiver run failed, else what was."""
    streams, archiver = h.streams, h.archiver
    if not (streams.restarts or streams.exits or archiver.failed_runs):
        return (
            "no component restarted: every stream instance and archiver run rode through "
            "(none exited on its own)"
        )
    said = []
    if streams.restarts:
        said.append(f"stream restarted {streams.restarts} time(s) after exiting on its own")
    if streams.exits:
        said.append(f"{streams.exits} stream instance(s) exited on their own, not restarted")
    if archiver.failed_runs:
        said.append(f"{archiver.failed_runs} archiver run(s) failed and were run again")
    return "; ".join(said)
