"""Alert backtesting: the speed layer's own rule code run over archived readings.

An operator tunes thresholds on history before deploying them: ``climatewatch backtest
--rules FILE --from DATE --to DATE`` lists the alerts the rules would have raised.
Windows are aggregated from the archive with DuckDB (``warehouse/sql/queries/backtest_windows.sql``,
the speed layer's tumbling, epoch-aligned windows of the rules file's size), then fed in
event-time order to ``streaming.rules.evaluate`` and ``streaming.rules.AlertTracker`` —
the functions the stream runs, not a copy of them. The archive holds every reading, late
ones included, so a backtest sees each window complete. Invalid records cannot be placed
in a region's window from the archive, so the bad-data rule sees none here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.db import query_sql, register_views, run_model

if TYPE_CHECKING:
    import duckdb

    from include.events import Alert
    from streaming.windowing import ClosedWindow

MS_PER_DAY = 86_400_000


@dataclass
class BacktestResult:
    alerts: list[Alert] = field(default_factory=list)
    windows: int = 0
    readings: int = 0

    def firing_by_rule(self) -> Counter[str]:
        return Counter(a.rule for a in self.alerts if a.status == "firing")


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ClimateWatchError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


def archive_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the archive views (no warehouse file needed)."""
    import duckdb

    con = duckdb.connect()
    run_model(con, "schema")  # the typed empty stand-ins of views.sql
    register_views(con, settings)
    return con


def closed_windows(
    con: duckdb.DuckDBPyConnection, first: date, last: date, size_ms: int
) -> Iterator[ClosedWindow]:
    """Every region's windows starting from ``first`` to ``last`` (inclusive), in event-time
    order, one day at a time (memory stays bounded by a day of windows)."""
    from streaming.windowing import ClosedWindow

    query = query_sql("backtest_windows")
    day = first
    while day <= last:
        start_ms = _day_ms(day)
        # a window starting today may end tomorrow: read both dates' partitions
        dates = [day.isoformat(), (day + timedelta(days=1)).isoformat()]
        rows = con.execute(
            query,
            {
                "size_ms": size_ms,
                "start_ms": start_ms,
                "end_ms": start_ms + MS_PER_DAY,
                "dates": dates,
            },
        ).fetchall()
        for region, start, count, mean, minimum, maximum, sensors in rows:
            yield ClosedWindow(
                region=region,
                start_ms=start,
                end_ms=start + size_ms,
                count=count,
                mean_c=mean,
                min_c=minimum,
                max_c=maximum,
                sensors=frozenset(sensors),
                late=0,
                invalid=0,
                closed_by="backtest",
            )
        day += timedelta(days=1)


def backtest(
    settings: Settings, rules_file: Path | None, date_from: str, date_to: str
) -> BacktestResult:
    """The alerts the rules of ``rules_file`` would have raised over the archived days."""
    from streaming.rules import AlertTracker, RegionHistory, evaluate, load_rules

    first = _parse_day(date_from, "--from")
    last = _parse_day(date_to, "--to")
    if last < first:
        raise ClimateWatchError(f"--to {date_to} is before --from {date_from}")
    rules = load_rules(rules_file)
    histories: defaultdict[str, RegionHistory] = defaultdict(RegionHistory)
    tracker = AlertTracker()
    result = BacktestResult()
    con = archive_connection(settings)
    try:
        for window in closed_windows(con, first, last, rules.window_ms):
            result.windows += 1
            result.readings += window.count
            closed_at = datetime.fromtimestamp(window.end_ms / 1000, UTC)
            for condition in evaluate(window, histories[window.region], rules):
                alert = tracker.update(condition, now=closed_at)
                if alert is not None:
                    result.alerts.append(alert)
    finally:
        con.close()
    return result
