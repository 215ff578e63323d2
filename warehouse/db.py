"""The warehouse file: one writer at a time, readers never blocked, never half-written.

DuckDB lets one process write a database file while nobody else holds it. Users keep
long ad-hoc queries open on ``climatewatch.duckdb``, so the warehouse is never written
in place. A writer (the DAG, ``climatewatch warehouse …``, data quality after a
quarantine) takes an exclusive lock on a side file, copies the current database to a
hidden temporary file (or starts empty for a rebuild), changes the copy, checkpoints it
and renames it over ``climatewatch.duckdb``. The rename is atomic: a reader that opened
the file read-only keeps the old inode and its consistent tables until it closes; the
next reader opens the new file. Nothing ever waits for a reader.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from include.errors import ClimateWatchError

if TYPE_CHECKING:
    import duckdb

BUILDING_SUFFIX = ".building"


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def writer_lock(path: Path, *, timeout_s: float = 600.0) -> Iterator[None]:
    """Serialise warehouse writers (the DAG, the CLI, data quality) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(path), "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClimateWatchError(
                        f"another warehouse writer held {lock_path(path)} for {timeout_s:.0f} s; "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(path: Path) -> None:
    """Temporary files of a writer that crashed (we hold the lock: nobody else writes)."""
    for leftover in path.parent.glob(f".{path.name}.*{BUILDING_SUFFIX}*"):
        leftover.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_warehouse(
    path: Path, *, fresh: bool = False, lock_timeout_s: float = 600.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable copy of the warehouse (empty when ``fresh``), swapped in on success.

    On an exception the copy is deleted and the published file is untouched.
    """
    import duckdb

    with writer_lock(path, timeout_s=lock_timeout_s):
        _remove_leftovers(path)
        building = path.with_name(f".{path.name}.{uuid.uuid4().hex}{BUILDING_SUFFIX}")
        if not fresh and path.exists():
            shutil.copyfile(path, building)
        connection = duckdb.connect(str(building))
        try:
            yield connection
            connection.execute("CHECKPOINT")
            connection.close()
            _fsync(building)
            os.replace(building, path)
            _fsync(path.parent)
        except BaseException:
            connection.close()
            for leftover in path.parent.glob(building.name + "*"):
                leftover.unlink(missing_ok=True)
            raise


def connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what users and reports use)."""
    import duckdb

    if not path.exists():
        raise ClimateWatchError(
            f"no warehouse at {path} yet: run `climatewatch warehouse rebuild` "
            "(or let the regional_stats DAG run)"
        )
    return duckdb.connect(str(path), read_only=True)
