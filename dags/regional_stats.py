"""
### regional_stats: authoritative regional statistics in the DuckDB warehouse

Runs whenever `archive_readings` updates the archive (it is scheduled on the
`climatewatch_archive` Asset) and brings the warehouse
`DATA_DIR/warehouse/climatewatch.duckdb` up to date:

* **recompute**: the dates touched by archive batches the warehouse has not processed
  yet (from the archive's offset ledger; processed batch ids live in the warehouse) are
  recomputed from the Parquet archive: `sensor_daily`, `regional_hourly`,
  `regional_daily` (coverage, percentiles, degree days, anomaly, alerts by rule) and
  `reconciliation`; the following days' look-back columns are updated too. The SQL
  models are the files in `warehouse/sql/`.
* **reconciliation summary**: the speed layer's windows against the batch recompute
  for the dates just recomputed; windows whose difference late data does not explain
  are logged as warnings (`climatewatch warehouse reconcile --date …` shows them).

The warehouse is built in a copy and swapped in atomically: users' long queries
(`climatewatch sql`, `duckdb -readonly`) never block this DAG and never see a
half-written table. One run at a time; a retried run recomputes the same dates.

**Manual runs**: `climatewatch warehouse recompute` is the same code;
`climatewatch warehouse rebuild` recomputes everything from the archive (after changing
the climatology, say — a change of the warehouse settings also triggers it).
Emits the `climatewatch_regional_stats` Asset (no DAG is scheduled on it yet:
`climate_report` runs daily and its sensor checks the warehouse itself).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from include.assets import ARCHIVE, REGIONAL_STATS
from include.dag_defaults import DEFAULT_ARGS, START_DATE


@dag(
    dag_id="regional_stats",
    schedule=[ARCHIVE],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["climatewatch", "batch", "warehouse", "duckdb"],
    default_args=DEFAULT_ARGS,
)
def regional_stats() -> None:
    @task(outlets=[REGIONAL_STATS])
    def recompute_statistics(*, outlet_events: Any = None) -> dict[str, Any]:
        """Recompute the dates new archive batches touched, then swap the warehouse in."""
        from include.settings import load_settings
        from warehouse.stats.recompute import recompute

        result = recompute(load_settings()).to_dict()
        if outlet_events is not None:
            outlet_events[REGIONAL_STATS].extra = {
                "warehouse": result["warehouse"],
                "dates": result["dates"],
                "mode": result["mode"],
            }
        return result

    @task
    def summarize_reconciliation(result: dict[str, Any]) -> dict[str, Any]:
        """Per recomputed date: windows that agree, are explained by late data, or are not."""
        from include.settings import load_settings
        from warehouse.stats.reconcile import log_reconciliation

        return log_reconciliation(load_settings(), result["dates"])

    summarize_reconciliation(recompute_statistics())


regional_stats()
