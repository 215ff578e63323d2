"""Lambda reconciliation: the speed layer's windows against the batch layer's recompute.

The ``reconciliation`` table is filled by ``warehouse/sql/models/reconciliation.sql`` during
every recompute; this module reads it for a date (``climatewatch warehouse reconcile``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.db import query_sql

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionReconciliation:
    """One region's windows of one date, by outcome."""

    region: str
    windows: int
    agree: int
    explained_by_late: int
    unexplained: int
    speed_readings: int
    batch_readings: int
    count_diff: int
    late: int


@dataclass(frozen=True)
class Reconciliation:
    day: str
    regions: list[RegionReconciliation]
    unexplained_windows: list[dict[str, Any]]

    @property
    def windows(self) -> int:
        return sum(r.windows for r in self.regions)

    @property
    def unexplained(self) -> int:
        return sum(r.unexplained for r in self.regions)


def reconciliation_for(con: duckdb.DuckDBPyConnection, day: str) -> Reconciliation:
    """The reconciliation of ``day`` (YYYY-MM-DD) as stored in the warehouse."""
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise ClimateWatchError(f"not a date (YYYY-MM-DD): {day!r}") from None
    regions = [
        RegionReconciliation(*(0 if v is None else v for v in row))
        for row in con.execute(query_sql("reconcile_summary"), {"date": when}).fetchall()
    ]
    cursor = con.execute(query_sql("reconcile_unexplained"), {"date": when})
    names = [d[0] for d in cursor.description]
    unexplained = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return Reconciliation(when.isoformat(), regions, unexplained)


def log_reconciliation(settings: Settings, days: list[str]) -> dict[str, Any]:
    """Log the reconciliation of ``days``; unexplained windows as warnings. Returns totals."""
    from warehouse.db import connect_read_only

    totals = {"windows": 0, "agree": 0, "explained_by_late": 0, "unexplained": 0}
    if not days:
        return totals
    con = connect_read_only(settings.warehouse_path)
    try:
        found = [reconciliation_for(con, day) for day in days]
    finally:
        con.close()
    for day in found:
        for region in day.regions:
            for key in totals:
                totals[key] += getattr(region, key)
        if day.unexplained:
            log.warning(
                "%s: %d of %d speed-layer window(s) differ from the archive beyond late data: %s",
                day.day,
                day.unexplained,
                day.windows,
                ", ".join(
                    f"{w['region']} {w['window_start']:%H:%M} ({w['count_diff']:+d}, late {w['late']})"
                    for w in day.unexplained_windows[:10]
                ),
            )
        elif day.windows:
            log.info(
                "%s: %d window(s), every difference explained by late data", day.day, day.windows
            )
    return totals
