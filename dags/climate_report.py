"""
### climate_report: the daily climate report of the previous UTC day

Runs once a day (`@daily`, UTC) and reports the day the run's data interval covers
(the previous UTC day), or the day given in the `day` parameter of a manual run:

* **wait_until_day_is_final** (a sensor, rescheduled every minute, for up to 6 hours):
  the archive has data after the day, every archive batch with rows of that day is in
  the published warehouse (`regional_stats` processed it) and data quality has results
  for each of its readings batches (`data_quality`).
* **write_report**: reads the warehouse read-only and writes
  `DATA_DIR/reports/YYYY-MM-DD/` — `report.html` (one self-contained page with inline
  SVG charts), `report.pdf`, `report.csv`, `report.json` — and rebuilds
  `DATA_DIR/reports/index.html`. Returns the headline numbers.

A re-run (or a run for an older day) rewrites that day's files atomically; a day is
flagged *incomplete* in the report when a region's coverage is below
`CLIMATEWATCH_REPORT_MIN_COVERAGE`, a quarantined batch holds rows of it, or it has no
data. **Manual run**: `climatewatch report --date YYYY-MM-DD` is the same code.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task

from include.dag_defaults import DEFAULT_ARGS, START_DATE


def _day_of_run() -> str:
    """The UTC day this run reports (YYYY-MM-DD): the ``day`` param, else the data interval's."""
    from datetime import date

    from warehouse.report import report_day_for

    context = get_current_context()
    wanted = (context["params"] or {}).get("day")
    if wanted:
        return date.fromisoformat(str(wanted)).isoformat()
    return report_day_for(context["data_interval_start"], context["data_interval_end"]).isoformat()


@dag(
    dag_id="climate_report",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["climatewatch", "report"],
    default_args=DEFAULT_ARGS,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            description="UTC day to report (YYYY-MM-DD); empty: the run's data interval.",
        )
    },
)
def climate_report() -> None:
    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_until_day_is_final() -> PokeReturnValue:
        """Poke until the day's statistics and quality results cover every archive batch."""
        import logging
        from datetime import date

        from include.settings import load_settings
        from warehouse.report import day_is_final

        day = _day_of_run()
        final, why = day_is_final(load_settings(), date.fromisoformat(day))
        logging.getLogger(__name__).info("%s: %s", day, why)
        return PokeReturnValue(is_done=final, xcom_value=day)

    @task
    def write_report(day: str) -> dict[str, Any]:
        """Write the day's report files and the index; return the headline numbers."""
        from datetime import date

        from include.settings import load_settings
        from warehouse.report import write_report

        return write_report(load_settings(), date.fromisoformat(day)).to_dict()

    write_report(wait_until_day_is_final())


climate_report()
