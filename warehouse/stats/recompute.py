"""Authoritative regional statistics: the SQL models of ``warehouse/sql`` run in DuckDB.

The batch layer sees every reading, late ones included. A recompute replaces the rows of
the dates that changed, never more: the dates touched by archive batches the warehouse
has not processed yet (the ledger says which; processed batch ids are stored in the
warehouse itself), plus the days after them whose look-back (known sensors, trailing
baseline) includes them. ``rebuild`` computes every date into a fresh file; both give the
same tables. Every write goes through :func:`warehouse.db.build_warehouse`, so users
querying the warehouse never wait for it and never see it half-written.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.archive.layout import DATASETS
from warehouse.archive.ledger import Ledger, filesystem_for
from warehouse.db import (
    absolute_root,
    build_warehouse,
    model_sql,
    register_views,
    run_model,
    sql_string,
)

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# Stage 1 reads the archive for the recomputed dates; stage 2 only warehouse tables.
ARCHIVE_MODELS = (
    "sensor_hourly",
    "sensor_daily",
    "regional_hourly",
    "regional_daily",
    "reconciliation",
)
LOOK_BACK_MODEL = "coverage_and_anomaly"
DATE_TABLES = ("sensor_daily", "regional_hourly", "regional_daily", "reconciliation")


@dataclass
class RecomputeResult:
    """What a recompute did, for the DAG's log, its Asset event and the CLI."""

    mode: str  # "rebuild", "incremental" or "dates"
    batches: int = 0
    dates: list[str] = field(default_factory=list)
    dependent_dates: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)
    daily_rows: int = 0
    hourly_rows: int = 0
    warehouse: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "batches": self.batches,
            "dates": self.dates,
            "dependent_dates": self.dependent_dates,
            "seconds": round(self.seconds, 3),
            "model_seconds": {k: round(v, 3) for k, v in self.model_seconds.items()},
            "daily_rows": self.daily_rows,
            "hourly_rows": self.hourly_rows,
            "warehouse": self.warehouse,
        }


# --- archive ---------------------------------------------------------------------------------


def archive_dates(root: str) -> dict[str, set[str]]:
    """Event dates that have a partition directory, per dataset (a cheap listing)."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    found: dict[str, set[str]] = {}
    for dataset in DATASETS:
        selector = pafs.FileSelector(posixpath.join(base, dataset), allow_not_found=True)
        found[dataset] = {
            info.base_name.removeprefix("date=")
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory and info.base_name.startswith("date=")
        }
    return found


# --- settings the tables depend on ----------------------------------------------------------
def _climatology_fingerprint(settings: Settings) -> str | None:
    if settings.climatology_csv is None:
        return None
    path = Path(settings.climatology_csv)
    if not path.is_file():
        raise ClimateWatchError(f"CLIMATEWATCH_CLIMATOLOGY_CSV: no file at {path}")
    return f"{path.resolve()}#{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def _settings_row(settings: Settings) -> tuple[Any, ...]:
    return (
        float(settings.degree_day_base_c),
        float(settings.reporting_interval_s),
        int(settings.warehouse_trailing_days),
        _climatology_fingerprint(settings),
        absolute_root(settings.archive_root),
    )


def _apply_settings(con: duckdb.DuckDBPyConnection, settings: Settings) -> bool:
    """Store the settings the tables are computed with; True when they changed."""
    row = _settings_row(settings)
    stored = con.execute("SELECT * FROM warehouse_settings").fetchall()
    if stored and tuple(stored[0]) == row:
        return False
    con.execute("DELETE FROM warehouse_settings")
    con.execute("INSERT INTO warehouse_settings VALUES (?, ?, ?, ?, ?)", row)
    con.execute("DELETE FROM climatology")
    if settings.climatology_csv is not None:
        path = sql_string(str(Path(settings.climatology_csv).resolve()))
        try:
            con.execute(
                "INSERT INTO climatology SELECT region, month, day, normal_c FROM read_csv("
                f"{path}, header = true, columns = {{'region': 'VARCHAR', 'month': 'INTEGER', "
                "'day': 'INTEGER', 'normal_c': 'DOUBLE'})"
            )
        except Exception as exc:
            raise ClimateWatchError(
                f"climatology CSV {settings.climatology_csv} (expected columns region, month, "
                f"day, normal_c): {str(exc).splitlines()[0]}"
            ) from None
    return bool(stored)


# --- recompute ---------------------------------------------------------------------------------
def _dates_table(con: duckdb.DuckDBPyConnection, name: str, dates: list[str]) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (date DATE)")
    if dates:
        con.executemany(f"INSERT INTO {name} VALUES (?)", [(d,) for d in dates])


def _dependent_dates(
    con: duckdb.DuckDBPyConnection, dates: list[str], trailing_days: int
) -> list[str]:
    """``dates`` and the later days whose look-back window contains one of them."""
    if not dates:
        return []
    existing = {
        row[0].isoformat()
        for row in con.execute("SELECT DISTINCT date FROM regional_daily").fetchall()
    }
    wanted = set(dates)
    for text in dates:
        day = date.fromisoformat(text)
        for offset in range(1, trailing_days + 1):
            later = (day + timedelta(days=offset)).isoformat()
            if later in existing:
                wanted.add(later)
    return sorted(wanted)


def _recompute_in(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dates: list[str],
    timings: dict[str, float] | None = None,
) -> list[str]:
    """Replace the rows of ``dates`` in every model, in one transaction."""
    timings = {} if timings is None else timings
    con.execute("BEGIN TRANSACTION")
    try:
        _dates_table(con, "recompute_dates", dates)
        for model in ARCHIVE_MODELS:
            started = time.perf_counter()
            run_model(con, model)
            timings[model] = time.perf_counter() - started
        started = time.perf_counter()
        dependent = _dependent_dates(con, dates, settings.warehouse_trailing_days)
        _dates_table(con, "dependent_dates", dependent)
        run_model(con, LOOK_BACK_MODEL)
        timings[LOOK_BACK_MODEL] = time.perf_counter() - started
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return dependent


def _schema_fingerprint() -> str:
    return hashlib.sha256(model_sql("schema").encode()).hexdigest()[:16]


def _reset_if_schema_changed(con: duckdb.DuckDBPyConnection) -> bool:
    """A warehouse made by another version of schema.sql is emptied (then rebuilt)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if not tables:
        return False
    if "warehouse_schema" in tables:
        stored = con.execute("SELECT fingerprint FROM warehouse_schema").fetchall()
        if stored == [(_schema_fingerprint(),)]:
            return False
    log.warning("warehouse tables come from another version of schema.sql: rebuilding")
    for (view,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall():
        con.execute(f'DROP VIEW "{view}"')
    for table in tables:
        con.execute(f'DROP TABLE "{table}"')
    return True


def _prepare(con: duckdb.DuckDBPyConnection, settings: Settings) -> bool:
    """Schema, settings and views; True when every date must be recomputed."""
    reset = _reset_if_schema_changed(con)
    run_model(con, "schema")
    con.execute(
        "CREATE OR REPLACE TABLE warehouse_schema AS SELECT ? AS fingerprint",
        [_schema_fingerprint()],
    )
    changed = _apply_settings(con, settings)
    register_views(con, settings)
    return reset or changed


def _all_dates(
    con: duckdb.DuckDBPyConnection, settings: Settings, ledger_dates: set[str]
) -> list[str]:
    """Every date the archive, the ledger or the tables know (so vanished data is removed)."""
    dates = set(ledger_dates)
    for found in archive_dates(settings.archive_root).values():
        dates |= found
    for table in DATE_TABLES:
        dates |= {
            r[0].isoformat() for r in con.execute(f"SELECT DISTINCT date FROM {table}").fetchall()
        }
    return sorted(dates)


def _finish(con: duckdb.DuckDBPyConnection, result: RecomputeResult, settings: Settings) -> None:
    result.daily_rows = con.execute("SELECT count(*) FROM regional_daily").fetchone()[0]
    result.hourly_rows = con.execute("SELECT count(*) FROM regional_hourly").fetchone()[0]
    result.warehouse = str(settings.warehouse_path)


def recompute(settings: Settings, *, rebuild: bool = False) -> RecomputeResult:
    """Bring the warehouse up to date with the archive's ledger (or rebuild it all).

    Incremental: the dates of ledger batches not processed yet. When the settings the
    tables depend on changed (degree-day base, reporting interval, climatology …), every
    date is recomputed, so the tables always match a rebuild with the current settings.
    """
    started = datetime.now(UTC)
    ledger = Ledger(settings.archive_root)
    with build_warehouse(settings.warehouse_path, fresh=rebuild) as con:
        changed = _prepare(con, settings)
        processed = {r[0] for r in con.execute("SELECT batch_id FROM processed_batches").fetchall()}
        new = [e for e in ledger.entries() if e.batch_id not in processed]
        new_dates = {d for e in new for d in e.dates}
        if rebuild or changed:
            mode = "rebuild"
            dates = _all_dates(con, settings, new_dates)
        else:
            mode = "incremental"
            dates = sorted(new_dates)
        timings: dict[str, float] = {}
        dependent = _recompute_in(con, settings, dates, timings)
        if new:
            con.executemany(
                "INSERT OR REPLACE INTO processed_batches VALUES (?, ?, ?)",
                [(e.batch_id, list(e.dates), started) for e in new],
            )
        result = RecomputeResult(mode, len(new), dates, dependent, model_seconds=timings)
        _finish(con, result, settings)
    result.seconds = (datetime.now(UTC) - started).total_seconds()
    log.info(
        "warehouse %s: %d new batch(es), %d date(s) recomputed (%d with look-back) in %.2f s",
        mode,
        result.batches,
        len(dates),
        len(dependent),
        result.seconds,
    )
    return result


def rebuild(settings: Settings) -> RecomputeResult:
    """Recompute every table from the whole archive into a fresh warehouse file."""
    return recompute(settings, rebuild=True)


def recompute_dates(settings: Settings, dates: list[str]) -> None:
    """Recompute exactly these event dates (data quality calls it after quarantine/release).

    The ledger's processed batches are left as they are: quarantine moves or rewrites
    files (with the ledger's row counts), it does not add batches.
    """
    for text in dates:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ClimateWatchError(f"not a date (YYYY-MM-DD): {text!r}") from None
    started = datetime.now(UTC)
    with build_warehouse(settings.warehouse_path) as con:
        if _prepare(con, settings):
            ledger_dates = {d for e in Ledger(settings.archive_root).entries() for d in e.dates}
            wanted = _all_dates(con, settings, ledger_dates)
        else:
            wanted = sorted(set(dates))
        dependent = _recompute_in(con, settings, wanted)
    log.info(
        "warehouse: %d date(s) recomputed (%d with look-back) in %.2f s",
        len(wanted),
        len(dependent),
        (datetime.now(UTC) - started).total_seconds(),
    )
