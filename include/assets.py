"""The Airflow Assets that connect the batch layer's DAGs (data-aware scheduling).

``archive_readings`` emits ARCHIVE; ``regional_stats`` and ``data_quality`` are scheduled
on it and emit their own. ``climate_report`` is not scheduled on them (yet): it runs daily
and a sensor checks the warehouse and the quality results for the day. One owner for
their names.
"""

from __future__ import annotations

from airflow.sdk import Asset

ARCHIVE = Asset(name="climatewatch_archive", uri="climatewatch://archive/readings")
REGIONAL_STATS = Asset(
    name="climatewatch_regional_stats", uri="climatewatch://warehouse/regional_stats"
)
DATA_QUALITY = Asset(name="climatewatch_data_quality", uri="climatewatch://quality/results")
