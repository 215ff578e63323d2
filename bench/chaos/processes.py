"""The ``climatewatch`` subprocesses of a scenario: they die with the run, and stop politely."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from include.processes import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


def spawn_cli(args: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m include.ops.cli ARGS`` in its own session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "include.ops.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # no child outlives a crashed chaos run
        )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit code, or None when the process was still running after ``timeout_s`` (killed)."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        return None
