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
import posixpath
import shutil
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.archive.layout import DATASETS
from warehouse.archive.ledger import filesystem_for

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


# --- SQL files and the archive views ------------------------------------------------------------
# Models build the warehouse (run in order by a recompute); queries read it.
HIVE_TYPES = {
    "readings": "{'date': DATE, 'region': VARCHAR}",
    "rejected": "{'date': DATE}",
    "alerts": "{'date': DATE}",
    "window_stats": "{'date': DATE}",
}


def model_sql(name: str) -> str:
    """The text of ``warehouse/sql/models/<name>.sql``."""
    return resources.files("warehouse").joinpath("sql", "models", f"{name}.sql").read_text()


def query_sql(name: str) -> str:
    """The text of ``warehouse/sql/queries/<name>.sql``."""
    return resources.files("warehouse").joinpath("sql", "queries", f"{name}.sql").read_text()


def run_model(con: duckdb.DuckDBPyConnection, name: str, **sources: str) -> None:
    """Run every statement of a model file (``${…}`` placeholders filled from ``sources``)."""
    text = model_sql(name)
    if sources:
        text = Template(text).substitute(sources)
    con.execute(text)


def absolute_root(root: str) -> str:
    """The archive root as views must name it: absolute, so the file works from any cwd."""
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).resolve())


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _has_parquet(root: str, dataset: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    selector = pafs.FileSelector(
        posixpath.join(base, dataset), recursive=True, allow_not_found=True
    )
    return any(
        info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith(".")
        for info in fs.get_file_info(selector)
    )


def view_sources(settings: Settings) -> dict[str, str]:
    """The FROM clause of each view: the archive's files, or a typed empty table."""
    root = absolute_root(settings.archive_root)
    sources = {}
    for dataset in DATASETS:
        if _has_parquet(root, dataset):
            glob = sql_string(f"{root}/{dataset}/**/*.parquet")
            sources[dataset] = (
                f"read_parquet({glob}, hive_partitioning = true, "
                f"hive_types = {HIVE_TYPES[dataset]})"
            )
        else:
            sources[dataset] = f"empty_{dataset}"
    quality = settings.quality_summary_path
    sources["quality_results"] = (
        f"read_parquet({sql_string(str(quality.resolve()))})"
        if quality.exists()
        else "empty_quality_results"
    )
    return sources


def register_views(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """(Re)create the archive views with absolute paths."""
    run_model(con, "views", **view_sources(settings))
