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


def connect_read_only(
    path: Path, *, config: dict[str, str | bool] | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what users and reports use)."""
    import duckdb

    if not path.exists():
        raise ClimateWatchError(
            f"no warehouse at {path} yet: run `climatewatch warehouse rebuild` "
            "(or let the regional_stats DAG run)"
        )
    return duckdb.connect(str(path), read_only=True, config=config or {})


# Set at connect time. They also give the connection its own DuckDB instance: the
# settings below are the instance's, and must not reach another connection of the process
# (DuckDB refuses a second connection to the same file with a different configuration).
_SANDBOX_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
}


def read_access(settings: Settings) -> tuple[list[str], list[str]]:
    """What the archive views read, and nothing more: each dataset's directory of the
    archive (not the ledger beside them) and the quality summary file."""
    root = absolute_root(settings.archive_root)
    directories = [f"{root}/{dataset}/" for dataset in DATASETS]
    return directories, [str(settings.quality_summary_path.resolve())]


def connect_query_only(path: Path, settings: Settings) -> duckdb.DuckDBPyConnection:
    """A read-only connection that reaches no file but the warehouse and what its archive
    views read (``climatewatch sql``).

    External access is off (no COPY TO, EXPORT, ATTACH of another file, INSTALL or LOAD,
    secrets, file readers elsewhere) except :func:`read_access`'s directories and file,
    and the configuration is locked, so no SET, RESET or PRAGMA can open it up again.
    DuckDB lets an allowed directory be written as well as read: the caller must also run
    queries only (``warehouse.stats.cli`` refuses every other statement).
    """
    import duckdb

    directories, paths = read_access(settings)
    con = connect_read_only(path, config=_SANDBOX_CONFIG)
    try:
        root = absolute_root(settings.archive_root)
        if "://" in root and not root.startswith("file://"):
            # an object store: its extension can no longer be loaded once access is off
            with contextlib.suppress(duckdb.Error):
                con.execute("LOAD httpfs")
        # DuckDB takes the allowed paths only once started and while access is still on
        con.execute(f"SET allowed_directories = [{', '.join(map(sql_string, directories))}]")
        con.execute(f"SET allowed_paths = [{', '.join(map(sql_string, paths))}]")
        con.execute("SET allowed_configs = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        [locked] = con.execute(
            "SELECT current_setting('enable_external_access'), "
            "current_setting('lock_configuration')"
        ).fetchall()
    except BaseException:
        con.close()
        raise
    if locked != (False, True):
        con.close()
        raise ClimateWatchError(
            f"could not lock the DuckDB connection down (external access, locked: {locked})"
        )
    return con


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
