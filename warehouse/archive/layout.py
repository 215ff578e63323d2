"""Where the archive puts things: datasets, Hive partitions, file names, day numbers.

The archive root holds one directory per dataset (:data:`DATASETS`), partitioned by day
(``date=YYYY-MM-DD``) and, for readings, by region (``region=<region>``). A data file is
named after the offsets it holds: ``<topic>-p<partition>-<start:012d>-<end:012d>.parquet``
(offsets ``[start, end)`` of one batch), so the ledger and a directory listing can be
matched without opening a file.

Pure functions and constants only, no I/O: cheap to import (the warehouse reads
:data:`DATASETS`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from include.errors import ClimateWatchError

if TYPE_CHECKING:
    from include.settings import Settings

Kind = Literal["readings", "alerts", "window_stats"]
READINGS = "readings"
ALERTS = "alerts"
WINDOW_STATS = "window_stats"
REJECTED = "rejected"
DATASETS = (READINGS, REJECTED, ALERTS, WINDOW_STATS)

# The Hive partition column of readings: in the path, not stored in the data files.
READINGS_PARTITION_COLUMN = "region"

# Alerts and window statistics are partitioned by the day of this field.
EVENT_DAY_FIELD = "window_start"

# Day numbers (days since the epoch) name the ``date=`` partitions.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
US_PER_DAY = 86_400_000_000
MS_PER_DAY = 86_400_000


# --- topics ---------------------------------------------------------------------------------
def topic_kinds(settings: Settings) -> dict[str, Kind]:
    """Which decoder each archived topic uses."""
    return {
        settings.topic_readings: READINGS,
        settings.topic_alerts: ALERTS,
        settings.topic_window_stats: WINDOW_STATS,
    }


def kind_of(settings: Settings, topic: str) -> Kind:
    kinds = topic_kinds(settings)
    if topic not in kinds:
        raise ClimateWatchError(f"topic {topic!r} is not archived (known: {', '.join(kinds)})")
    return kinds[topic]


def archived_topics(settings: Settings) -> list[str]:
    return list(topic_kinds(settings))


# --- file names and paths -------------------------------------------------------------------
def batch_file_name(topic: str, partition: int, start: int, end: int) -> str:
    return f"{topic}-p{partition}-{start:012d}-{end:012d}.parquet"


def day_text(day: int) -> str:
    """YYYY-MM-DD of a day number (days since the epoch)."""
    return date.fromordinal(EPOCH.date().toordinal() + day).isoformat()


def hive_value(value: str) -> str:
    """A partition value safe in a path segment (``/``, ``=``, ``%`` and controls escaped)."""
    return quote(value, safe=" -_.,:;@+()'!~")


def data_path(dataset: str, day: str, region: str | None, name: str) -> str:
    """Path of a data file relative to the archive root."""
    parts = [dataset, f"date={day}"]
    if region is not None:
        parts.append(f"{READINGS_PARTITION_COLUMN}={hive_value(region)}")
    parts.append(name)
    return "/".join(parts)


def batch_file_pattern(topic: str, partition: int) -> re.Pattern[str]:
    """Data files of one partition (groups ``start``, ``end``), and their hidden temporaries."""
    prefix = rf"{re.escape(topic)}-p{partition}-"
    return re.compile(
        rf"^(?:{prefix}(?P<start>\d{{12}})-(?P<end>\d{{12}})\.parquet"
        rf"|\.{prefix}\d{{12}}-\d{{12}}\.parquet\.[0-9a-f]+\.tmp)$"
    )
