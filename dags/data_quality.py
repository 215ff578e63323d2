"""
### data_quality: Great Expectations on every new archive batch

Runs whenever `archive_readings` updates the archive (scheduled on the
`climatewatch_archive` Asset) and validates exactly the batches of readings archived
since the last validation (the archive's offset ledger says which), against the suite in
`warehouse/quality/expectations.py`: schema, completeness, validity (physical limits, the
region's plausible band, humidity, known regions), uniqueness of (sensor, time),
timeliness and volume. Each expectation is *critical* or a *warning*.

* **validate_new_batches** records the results (`DATA_DIR/quality/results/<batch>.json`,
  the `quality_results` summary the warehouse joins, and the Data Docs site at
  `DATA_DIR/quality/data_docs/index.html`), quarantines what failed a critical
  expectation (the failing readings to `<archive>/quarantine/<batch>/rows.parquet`, the
  batch keeping its good ones; the whole batch only for a schema failure), has the
  warehouse recompute the dates concerned and publishes a `data_quality` alert. Emits
  the `climatewatch_data_quality` Asset.
* **fail_on_critical** then fails, naming the failed expectations and their counts, so a
  quarantine is red in the Airflow UI. Warnings never fail it.

**After a quarantine**: `climatewatch quality status` lists the quarantined batches
(whole, or the readings set aside) and why; once a person has looked,
`climatewatch quality release BATCH` brings them back.
`climatewatch quality validate [--date …]` is the same code from the command line.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from include.assets import ARCHIVE, DATA_QUALITY
from include.dag_defaults import DEFAULT_ARGS, START_DATE


@dag(
    dag_id="data_quality",
    schedule=[ARCHIVE],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["climatewatch", "batch", "quality", "great-expectations"],
    default_args=DEFAULT_ARGS,
)
def data_quality() -> None:
    @task(outlets=[DATA_QUALITY])
    def validate_new_batches(*, outlet_events: Any = None) -> dict[str, Any]:
        """Validate, record, quarantine and alert; never raises for failed expectations."""
        from include.settings import load_settings
        from warehouse.quality.validate import validate_batches

        run = validate_batches(load_settings()).to_dict()
        if outlet_events is not None:
            outlet_events[DATA_QUALITY].extra = {
                "validated": run["validated"],
                "critical_batches": run["critical_batches"],
                "quarantined": run["quarantined"],
            }
        return run

    @task
    def fail_on_critical(run: dict[str, Any]) -> None:
        """Red in the UI when a batch failed a critical expectation (it is quarantined).

        AirflowFailException: a verdict on data, not a transient error, so no retry.
        """
        from airflow.sdk.exceptions import AirflowFailException

        from warehouse.quality.validate import critical_failure_message

        message = critical_failure_message(run)
        if message:
            raise AirflowFailException(message)

    fail_on_critical(validate_new_batches())


data_quality()
