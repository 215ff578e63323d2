"""The archiver of a scenario: ``climatewatch archive run`` runs, one at a time.

Runs repeat, as the DAG's schedule repeats them; a run that fails on its own (exit code
other than 0, or hung past its timeout) is a *problem* of the scenario: through a
broker's loss or freeze the archiver must ride on. Runs the scenario kills on purpose
(kill -9, archiver-kill) are not failures.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from bench.chaos.processes import wait_or_kill

if TYPE_CHECKING:
    from bench.chaos.harness import Harness


class Archiver:
    """Archiver runs on the readings topic; :meth:`kill` ends the ones under way (kill -9)."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self._running: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self.failed_runs = 0  # runs that failed on their own (each one a problem)

    def run_once(self, timeout_s: float = 180.0, **env: str) -> int | None:
        """One run to the end of the topic: its exit code, None if it timed out."""
        settings = self.h.require_settings()
        process = self.h.spawn(
            ["archive", "run", "--topic", settings.topic_readings], "archiver.log", **env
        )
        with self._lock:
            self._running.append(process)
        try:
            code = wait_or_kill(process, timeout_s)
        finally:
            with self._lock:
                self._running.remove(process)
        if code is None or code not in (0, -signal.SIGKILL):  # -9: killed by :meth:`kill`
            self.failed_runs += 1
            how = f"hung past {timeout_s:.0f}s, killed" if code is None else f"exit {code}"
            self.h.problem(f"archiver run failed on its own ({how}): {self._last_error()}")
        return code

    def _last_error(self) -> str:
        """The last line the archiver printed (its one-line error)."""
        try:
            lines = (self.h.workdir / "logs" / "archiver.log").read_text(errors="replace")
        except OSError:
            return "?"
        tail = [line for line in lines.splitlines() if line.strip()]
        return tail[-1][:200] if tail else "?"

    def kill(self) -> None:
        with self._lock:
            running = list(self._running)
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def until_caught_up(self) -> None:
        """Runs until one exits 0 with no lag left on the readings topic (or the timeout)."""
        from warehouse.archive.summary import archive_status

        s = self.h.require_settings()
        timeout_s = self.h.options.archive_timeout_s
        deadline = time.monotonic() + timeout_s
        runs = 0
        while time.monotonic() < deadline:
            code = self.run_once(timeout_s=max(10.0, deadline - time.monotonic()))
            runs += 1
            try:
                lag = sum(st.lag for st in archive_status(s) if st.topic == s.topic_readings)
            except Exception as exc:
                self.h.log(f"archive status failed: {str(exc)[:120]}")
                lag = -1
            if code == 0 and lag == 0:
                self.h.log(f"archive caught up after {runs} final run(s)")
                return
            self.h.log(f"archive run exit {code}, lag {lag}: again")
            time.sleep(1)
        self.h.problem(f"archive not caught up within {timeout_s:.0f}s")

    def files(self) -> int:
        """Parquet files in the readings archive so far."""
        return sum(1 for _ in self.h.archive_root().rglob("*.parquet"))


class ArchiverLoop:
    """``climatewatch archive run`` again and again, one run at a time, until stopped."""

    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver
        self.stopping = threading.Event()
        self.runs = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._loop, name="archiver-loop", daemon=True)

    def start(self) -> ArchiverLoop:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 240.0) -> None:
        self.stopping.set()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():  # a run that hangs: end it, the loop then exits
            self.archiver.kill()
            self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            code = self.archiver.run_once(timeout_s=180)
            self.runs += 1
            self.failures += code != 0
            self.stopping.wait(1.5)
