"""The data-quality rules of the readings archive, as a Great Expectations suite.

One owner for the rules: this module says what a good batch of readings looks like,
with a severity on each expectation (``meta.severity``): a *critical* failure means the
readings would corrupt the warehouse (they are quarantined); a *warning* is shown in the
summary and the report and never blocks anything. What a critical failure sets aside is
declared with it (``meta.set_aside``): the failing rows (:data:`SET_ASIDE_ROWS`, the
default of a row-level expectation), every repeat but the first (:data:`SET_ASIDE_REPEATS`,
uniqueness), or the whole batch (:data:`SET_ASIDE_BATCH`: the schema, and every
batch-wide expectation).

Limits a reading shares with the reading contract (``include/contract.py``) are the
contract's constants, imported: physical temperatures, the future skew of an event time,
the humidity band. A reading the contract accepted passes them all except the humidity
band, which the contract deliberately leaves to data quality (see its comment and the
README); duplicates of (sensor, time) are invisible to a contract that sees one record at
a time, so uniqueness is data quality's alone.

Some rules compare a reading with something outside its own row — its region's
plausible band, its sensor's reporting rate over the batch. Great Expectations checks
one column at a time, so :func:`with_derived_columns` adds those comparisons as columns
(``DERIVED_COLUMNS``) before validation; the suite checks them like any other column.
Volume and freshness depend on the batch (its time span, the partition's known sensors,
when it was archived): :class:`BatchFacts` carries them and the suite is built per batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.contract import (
    MAX_FUTURE_SKEW,
    MAX_HUMIDITY_PCT,
    MAX_TEMPERATURE_C,
    MIN_HUMIDITY_PCT,
    MIN_TEMPERATURE_C,
    Reading,
    reading_arrow_schema,
)
from include.fields import specs
from include.regions import KNOWN_REGION_NAMES, REGIONS_BY_NAME

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

SUITE_NAME = "readings_batch"
CRITICAL = "critical"
WARNING = "warning"
# What a failed critical expectation sets aside (``meta.set_aside``).
SET_ASIDE_ROWS = "rows"  # the unexpected rows
SET_ASIDE_REPEATS = "repeats"  # the unexpected rows but the first (by offset) of each group
SET_ASIDE_BATCH = "batch"  # the whole batch

# How Great Expectations names the type of an archive column in a frame read from the
# archive (pyarrow's to_pandas of the readings schema, the Hive region included).
_OBSERVED_TYPE_NAMES = {
    "string": "str",
    "timestamp[us, tz=UTC]": "Timestamp",
    "double": "float64",
    "int32": "int32",
    "int64": "int64",
}
DERIVED_COLUMNS = ("outside_plausible_band_c", "sensor_reporting_ratio")

# Tolerances (documented in the README's data-quality section). How far ahead an event
# time may be is the contract's MAX_FUTURE_SKEW: see future_limit.
MAX_STALENESS = timedelta(minutes=15)  # newest reading of a fresh batch vs archive time
RECENT_BATCH = timedelta(hours=1)  # freshness is judged only on batches this recent
VOLUME_BAND = (0.5, 1.5)  # rows / expected rows
SENSOR_RATE_BAND = (0.5, 1.5)  # a sensor's rows / its expected rows over the batch
SENSOR_RATE_MOSTLY = 0.95  # sensors joining or leaving mid-batch are normal


@dataclass(frozen=True)
class BatchFacts:
    """What the batch-dependent expectations need to know about one batch."""

    batch_id: str
    archived_at: datetime
    span_s: float  # event time from the oldest to the newest reading, plus one interval
    known_sensors: int  # sensors this partition normally carries (history, or this batch)
    reporting_interval_s: float
    check_freshness: bool  # the partition's newest batch, archived recently

    @property
    def expected_rows(self) -> float:
        return self.known_sensors * self.span_s / self.reporting_interval_s


def batch_span_s(ts: pd.Series, facts_limit: datetime, reporting_interval_s: float) -> float:
    """Event-time span of a batch's on-time readings, counted in whole reporting intervals.

    Readings past ``facts_limit`` (the future-timestamp limit) are left out: they already
    fail the timeliness rule and must not also stretch the volume expectations.
    """
    on_time = ts[ts <= facts_limit].dropna()
    if on_time.empty:
        return 0.0
    return float((on_time.max() - on_time.min()).total_seconds()) + reporting_interval_s


def future_limit(archived_at: datetime) -> datetime:
    """Event times after this are in the future for a batch archived at ``archived_at``.

    The contract's limit, measured from the archive run: the archiver judged each reading
    against its record's Kafka timestamp, which is not later than the run, so nothing the
    contract accepted is past this (only files the archiver did not write can be).
    """
    return archived_at + MAX_FUTURE_SKEW


def with_derived_columns(frame: pd.DataFrame, facts: BatchFacts) -> pd.DataFrame:
    """Add the cross-row comparisons the suite checks (see the module docstring).

    Each defect should fail one expectation: a temperature outside physical limits is
    left to that critical rule (its band excess is 0), and readings in the future do not
    count towards their sensor's reporting rate.
    """
    import numpy as np

    region = frame["region"]
    low = region.map({name: r.plausible_min_c for name, r in REGIONS_BY_NAME.items()})
    high = region.map({name: r.plausible_max_c for name, r in REGIONS_BY_NAME.items()})
    temperature = frame["temperature_c"]
    possible = temperature.between(MIN_TEMPERATURE_C, MAX_TEMPERATURE_C)
    excess = np.maximum(low - temperature, 0).fillna(0) + np.maximum(temperature - high, 0).fillna(
        0
    )
    excess = excess.where(possible, 0.0).astype("float64")
    on_time = frame["ts"] <= future_limit(facts.archived_at)
    expected_per_sensor = facts.span_s / facts.reporting_interval_s
    counts = on_time.groupby(frame["sensor_id"], dropna=False).transform("sum").astype("float64")
    ratio = counts / expected_per_sensor if expected_per_sensor > 0 else counts * np.nan
    return frame.assign(outside_plausible_band_c=excess, sensor_reporting_ratio=ratio)


@functools.cache
def archive_column_types() -> dict[str, str]:
    """Column -> observed type name of a readings batch, derived from the reading contract."""
    return {field.name: _OBSERVED_TYPE_NAMES[str(field.type)] for field in reading_arrow_schema()}


REQUIRED_COLUMNS = tuple(spec.name for spec in specs(Reading) if spec.required)
"""Columns every reading has (the contract's required fields)."""


def _meta(severity: str, check: str, why: str, set_aside: str | None = None) -> dict[str, Any]:
    meta = {"severity": severity, "check": check, "notes": why}
    if set_aside is not None:
        meta["set_aside"] = set_aside
    return meta


def set_aside_by(config: Any, row_level: bool) -> str:
    """What a failure of this critical expectation sets aside (see the module docstring)."""
    if not row_level:  # no unexpected rows to name: schema, row count, newest reading
        return SET_ASIDE_BATCH
    return (config.meta or {}).get("set_aside", SET_ASIDE_ROWS)


def expectations_for(facts: BatchFacts) -> list[Any]:
    """Every expectation of a batch, each with its severity (the rules, in one place)."""
    import great_expectations as gx

    e = gx.expectations
    return [
        *_schema_and_completeness(e),
        *_validity(e),
        e.ExpectCompoundColumnsToBeUnique(
            column_list=["sensor_id", "ts"],
            meta=_meta(
                CRITICAL,
                "uniqueness",
                "one reading per sensor and instant (the first archived is kept)",
                SET_ASIDE_REPEATS,
            ),
        ),
        *_timeliness(e, facts),
        *_volume(e, facts),
    ]


def _schema_and_completeness(e: Any) -> list[Any]:
    types = archive_column_types()
    return [
        e.ExpectTableColumnsToMatchSet(
            column_set=[*types, *DERIVED_COLUMNS],
            exact_match=True,
            meta=_meta(
                CRITICAL, "schema", "the archive's columns, no more, no fewer", SET_ASIDE_BATCH
            ),
        ),
        *(
            e.ExpectColumnValuesToBeOfType(
                column=column,
                type_=type_name,
                meta=_meta(CRITICAL, "schema", f"{column} is {type_name}", SET_ASIDE_BATCH),
            )
            for column, type_name in types.items()
        ),
        *(
            e.ExpectColumnValuesToNotBeNull(
                column=column, meta=_meta(CRITICAL, "completeness", f"every reading has {column}")
            )
            for column in REQUIRED_COLUMNS
        ),
    ]


def _validity(e: Any) -> list[Any]:
    return [
        e.ExpectColumnValuesToBeBetween(
            column="temperature_c",
            min_value=MIN_TEMPERATURE_C,
            max_value=MAX_TEMPERATURE_C,
            meta=_meta(CRITICAL, "validity", "physically possible on Earth"),
        ),
        e.ExpectColumnValuesToBeBetween(
            column="outside_plausible_band_c",
            min_value=0,
            max_value=0,
            meta=_meta(
                WARNING, "validity", "temperature within the region's plausible band (regions.py)"
            ),
        ),
        e.ExpectColumnValuesToBeBetween(
            column="humidity_pct",
            min_value=MIN_HUMIDITY_PCT,
            max_value=MAX_HUMIDITY_PCT,
            meta=_meta(
                CRITICAL,
                "validity",
                f"relative humidity within {MIN_HUMIDITY_PCT:g}..{MAX_HUMIDITY_PCT:g} %: "
                "a sensor reporting outside it is faulty, its temperature suspect",
            ),
        ),
        e.ExpectColumnValuesToBeInSet(
            column="region",
            value_set=sorted(KNOWN_REGION_NAMES),
            meta=_meta(WARNING, "validity", "a region of the sensor network"),
        ),
    ]


def _timeliness(e: Any, facts: BatchFacts) -> list[Any]:
    rules = [
        e.ExpectColumnValuesToBeBetween(
            column="ts",
            max_value=future_limit(facts.archived_at),
            meta=_meta(
                CRITICAL,
                "timeliness",
                f"no event time more than {MAX_FUTURE_SKEW} (the contract's limit) after "
                "the batch was archived",
            ),
        )
    ]
    if facts.check_freshness:
        rules.append(
            e.ExpectColumnMaxToBeBetween(
                column="ts",
                min_value=facts.archived_at - MAX_STALENESS,
                meta=_meta(
                    WARNING,
                    "timeliness",
                    f"the newest reading is at most {MAX_STALENESS} older than the archive run",
                ),
            )
        )
    return rules


def _volume(e: Any, facts: BatchFacts) -> list[Any]:
    return [
        e.ExpectTableRowCountToBeBetween(
            min_value=int(VOLUME_BAND[0] * facts.expected_rows),
            max_value=int(VOLUME_BAND[1] * facts.expected_rows) + facts.known_sensors,
            meta=_meta(
                WARNING,
                "volume",
                f"{facts.known_sensors} known sensors over {facts.span_s:.0f} s, one reading "
                f"every {facts.reporting_interval_s:g} s",
            ),
        ),
        e.ExpectColumnValuesToBeBetween(
            column="sensor_reporting_ratio",
            min_value=SENSOR_RATE_BAND[0],
            max_value=SENSOR_RATE_BAND[1],
            mostly=SENSOR_RATE_MOSTLY,
            meta=_meta(WARNING, "volume", "each sensor reports at the configured interval"),
        ),
    ]


def build_suite(facts: BatchFacts) -> gx.ExpectationSuite:
    """The suite for one batch (named after the batch, so Data Docs show which)."""
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=expectations_for(facts),
        meta={"batch_id": facts.batch_id},
    )


def expectation_name(config: Any) -> str:
    """A stable, readable name: the expectation type and its column(s)."""
    kwargs = config.kwargs
    target = kwargs.get("column") or ",".join(kwargs.get("column_list") or ()) or "table"
    return f"{config.type}({target})"
