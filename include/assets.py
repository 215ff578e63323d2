"""The Airflow Assets that connect the batch layer's DAGs (data-aware scheduling).

``archive_readings`` emits ARCHIVE; ``regional_stats`` and ``data_quality`` are scheduled
on it and emit their own; ``climate_report`` waits for both. One owner for their names.
"""

from __future__ import annotations

from airflow.sdk import Asset

ARCHIVE = Asset(name="climatewatch_archive", uri="climatewatch://archive/readings")
REGIONAL_STATS = Asset(
    name="climatewatch_regional_stats", uri="climatewatch://warehouse/regional_stats"
)
DATA_QUALITY = Asset(name="climatewatch_data_quality", uri="climatewatch://quality/results")
