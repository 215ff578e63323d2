"""
### archive_readings: Kafka → Parquet archive, exactly once

Every run archives the ClimateWatch topics into the Parquet archive
(`CLIMATEWATCH_ARCHIVE_URI`, default `data/archive`):

* **one mapped task per partition** of the readings topic (`temperature-data`), so
  partitions archive in parallel on any executor: valid readings go to
  `readings/date=YYYY-MM-DD/region=<region>/` by *event* date, invalid ones to
  `rejected/` with their reason;
* one task for the speed layer's topics (`temperature-alerts` → `alerts/`,
  `temperature-window-stats` → `window_stats/`);
* **compaction** of closed days (no new file for `CLIMATEWATCH_ARCHIVE_COMPACT_AFTER_MINUTES`):
  their small files become one per region, the ledger stays true;
* a **summary** of the offset ledger (`_summary.json` in the archive root), which
  emits the `climatewatch_archive` Asset that `regional_stats` and `data_quality` are
  scheduled on; its event's extra lists the new batch ids and the dates they touched.

Each task reads from the archive's own offset ledger (`_ledger/` under the archive root)
up to the partition's end offset taken when it starts, never from consumer-group
commits: a retried task or a re-run DAG never duplicates and never skips a record.
Records deleted by Kafka retention before they were archived are logged and counted
(`lost` in the summary).

**Kafka connection**: the Airflow connection `kafka_default` if it exists
(`bootstrap.servers`, `security.protocol`, `sasl.*` in its extra, as the Apache Kafka
provider writes them), else the ClimateWatch settings (`CLIMATEWATCH_BOOTSTRAP_SERVERS`, …).

**Schedule**: every `CLIMATEWATCH_ARCHIVE_INTERVAL_MINUTES` (15) minutes, one run at a
time, no catchup.

**Backfill**: there is nothing to backfill by date. A run archives *everything* Kafka
still holds beyond the ledger, whatever its logical date, so after an outage just
trigger the DAG once (or `climatewatch archive run`); `climatewatch archive status` shows
the lag per partition. To rebuild the archive from Kafka, stop the DAG, move the archive
root away, and trigger it: it starts from the earliest offset Kafka kept.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from include.assets import ARCHIVE
from include.dag_defaults import DEFAULT_ARGS, START_DATE
from include.settings import get_settings

_settings = get_settings()


def _archive_settings() -> Any:
    """ClimateWatch settings, with the Kafka connection of ``kafka_default`` when defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.kafka_clients import kafka_overrides_from_extra
    from include.settings import load_settings

    try:
        connection = Connection.get("kafka_default")
    except AirflowNotFoundException:
        return load_settings()
    return load_settings(**kafka_overrides_from_extra(connection.extra_dejson))


@dag(
    dag_id="archive_readings",
    schedule=timedelta(minutes=_settings.archive_interval_minutes),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["climatewatch", "batch", "archive", "kafka"],
    default_args=DEFAULT_ARGS,
)
def archive_readings() -> None:
    @task
    def readings_partitions() -> list[int]:
        """The partitions of the readings topic: one archive task each."""
        from warehouse.archive.run import partitions_of

        settings = _archive_settings()
        return partitions_of(settings, settings.topic_readings)

    @task(max_active_tis_per_dagrun=4)
    def archive_partition(partition: int) -> dict[str, Any]:
        """Archive one readings partition from the ledger's next offset to its current end."""
        from warehouse.archive.run import archive_partition as archive

        settings = _archive_settings()
        return archive(settings, settings.topic_readings, partition).to_dict()

    @task
    def archive_speed_layer_topics() -> list[dict[str, Any]]:
        """Archive the alerts and window-stats topics (few records: one task)."""
        from warehouse.archive.run import archive_topic

        settings = _archive_settings()
        results = []
        for topic in (settings.topic_alerts, settings.topic_window_stats):
            results.extend(r.to_dict() for r in archive_topic(settings, topic))
        return results

    @task
    def compact_closed_days() -> dict[str, Any]:
        """Merge the small files of days no batch added to for a while."""
        from warehouse.archive.compaction import compact

        settings = _archive_settings()
        closed_after = timedelta(minutes=settings.archive_compact_after_minutes)
        return compact(settings.archive_root, closed_after=closed_after).to_dict()

    @task(outlets=[ARCHIVE])
    def summarize_ledger(
        readings: list[dict[str, Any]],
        speed_layer: list[dict[str, Any]],
        compaction: dict[str, Any],
        *,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        """Write the ledger summary (``_summary.json``); the Asset event names the new batches."""
        import logging

        from warehouse.archive.summary import run_totals, write_ledger_summary

        settings = _archive_settings()
        run = run_totals([*readings, *speed_layer]) | {
            "compacted_files": compaction["files_before"]
        }
        if run["lost"]:
            logging.getLogger(__name__).warning(
                "%d record(s) were deleted by Kafka retention before they were archived",
                run["lost"],
            )
        summary = write_ledger_summary(settings.archive_root, run)
        if outlet_events is not None:
            outlet_events[ARCHIVE].extra = {
                "archive_root": settings.archive_root,
                "batch_ids": run["batch_ids"],
                "dates": run["dates"],
            }
        return summary

    readings = archive_partition.expand(partition=readings_partitions())
    speed_layer = archive_speed_layer_topics()
    compaction = compact_closed_days()
    [readings, speed_layer] >> compaction
    summarize_ledger(readings, speed_layer, compaction)


archive_readings()
