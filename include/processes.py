"""Process utilities shared by the local Kafka broker and the local-stack supervisor.

Both ``include.kafka_local`` (one JVM per node) and ``include.ops.stack`` (Airflow, the
stream, the simulator) start long-running children, find free ports for them, signal them
and wait for them to go. One copy of each of those primitives lives here; they read
Linux's ``/proc`` and use only the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from pathlib import Path


# --- ports -----------------------------------------------------------------------------------
def port_is_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound right now (nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- one process -------------------------------------------------------------------------------
def _stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` line after the command name: state, ppid, pgrp..."""
    return stat.rsplit(")", 1)[-1].split()


def _state(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z``...), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return _stat_fields(stat)[0]


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    return _state(pid) not in (None, "Z")


def send_signal(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``; a process that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit (reaping it if it is our child)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _state(pid) == "Z":
            return True
        time.sleep(0.1)
    return False


def die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills the child when its parent dies.

    Meant as a ``preexec_fn`` of ``subprocess.Popen``.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


# --- a process group -------------------------------------------------------------------------------
def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pgid``; a group that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists and is not a zombie."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = _stat_fields(stat)
        if fields[0] != "Z" and int(fields[3]) == pgid:
            return True
    return False


def stop_group(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and group_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if group_alive(pid):
        signal_group(pid, signal.SIGKILL)
        time.sleep(0.5)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
