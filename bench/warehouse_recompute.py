"""Warehouse recompute: DuckDB over the Parquet archive vs the same aggregation in pandas.

Generates N readings (100,000,000; ``--quick``: 10,000,000) as a Parquet archive laid
out like the archiver's (``readings/date=…/region=…/``, zstd, 122,880-row groups; 1,000
sensors, 20 regions, 60 days) with DuckDB itself, plus one ledger entry per day. Then,
each phase in its own process so that its peak RSS is its own:

(a) full rebuild of the warehouse (``warehouse.stats.recompute.rebuild``: sensor_daily,
    regional_hourly and regional_daily with percentiles, reconciliation, coverage and
    anomaly) — target under 30 s for 100M;
(b) incremental recompute after a new batch for one day in the middle of the range
    (that day's rows replaced, the 30 following days' look-back columns updated) —
    target under 2 s;
(c) baseline: the daily per-region aggregation (count, sensors, min, max, mean,
    stddev, p05/p50/p95, first/last) in pandas on a subset of 10,000,000 readings
    (``--quick``: 2,000,000), Parquet read included;
(d) the same daily aggregation in DuckDB on the same subset.

Prints rows/s of each, the ratios, and peak RSS; deletes the generated data at the end.
``--json`` adds one JSON object of these figures as the last line.

    .venv/bin/python bench/warehouse_recompute.py [--quick] [--readings N] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import own_peak_rss_mb, print_json, run_phase_process  # noqa: E402

SENSORS = 1_000
REGIONS = 20
DAYS = 60
FIRST_DAY = "2026-01-01"
REBUILD_TARGET_S = 30.0
INCREMENTAL_TARGET_S = 2.0
LATE_BATCH = 10_000  # readings of the new batch for one day (the incremental phase)


def interval_s(readings: int) -> float:
    """Seconds between two readings of one sensor that yield ``readings`` over the days."""
    return DAYS * 86_400 * SENSORS / readings


def bench_settings(workdir: Path, readings: int):  # -> Settings
    from include.settings import load_settings

    return load_settings(data_dir=workdir / "data", reporting_interval_s=interval_s(readings))


# --- data --------------------------------------------------------------------------------------
def generate(workdir: Path, readings: int) -> float:
    """Write the archive one day at a time with DuckDB (bounded memory); returns seconds."""
    import duckdb

    from warehouse.archive.ledger import ArchivedFile, Ledger, LedgerEntry

    root = workdir / "data" / "archive"
    (root / "readings").mkdir(parents=True)
    per_sensor_day = readings // (SENSORS * DAYS)
    step_us = 86_400_000_000 // per_sensor_day
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ledger = Ledger(str(root))
    started = time.perf_counter()
    offset = 0
    for day in range(DAYS):
        day_rows = SENSORS * per_sensor_day
        out = root / "readings"
        con.execute(
            f"""
            COPY (
                WITH g AS (
                    SELECT i, i % {SENSORS} AS sensor, i // {SENSORS} AS k
                    FROM range({day_rows}) t(i)
                )
                SELECT
                    'sensor-' || lpad(sensor::VARCHAR, 4, '0')                 AS sensor_id,
                    make_timestamp((epoch_us(TIMESTAMPTZ '{FIRST_DAY} 00:00:00+00')
                        + {day} * 86400000000 + k * {step_us} + sensor * 1000)::BIGINT)::TIMESTAMPTZ
                                                                            AS ts,
                    round(5 + (sensor % {REGIONS}) + 6 * sin(k * 6.283 / {per_sensor_day})
                        + (hash(i + {offset}) % 1000) / 200.0, 2)            AS temperature_c,
                    60.0 + (hash(i) % 40)::DOUBLE                           AS humidity_pct,
                    NULL::DOUBLE                                            AS pressure_hpa,
                    (sensor % 6)::INTEGER                                   AS kafka_partition,
                    ({offset} + i)::BIGINT                                  AS kafka_offset,
                    DATE '{FIRST_DAY}' + {day}                              AS date,
                    'region-' || lpad((sensor % {REGIONS})::VARCHAR, 2, '0') AS region
                FROM g
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880,
                          PARTITION_BY (date, region), APPEND)
            """
        )
        date = con.execute(f"SELECT (DATE '{FIRST_DAY}' + {day})::VARCHAR").fetchone()[0]
        files = tuple(
            ArchivedFile(str(p.relative_to(root)), "readings", 0, date)
            for p in (out / f"date={date}").rglob("*.parquet")
        )
        ledger.append(LedgerEntry("bench", 0, offset, offset + day_rows, files, rows=day_rows))
        offset += day_rows
    con.close()
    return time.perf_counter() - started


def add_late_batch(workdir: Path, day: int, rows: int) -> None:
    """A new archived batch of ``rows`` readings for one day (what a late batch looks like)."""
    import duckdb

    from warehouse.archive.ledger import ArchivedFile, Ledger, LedgerEntry

    root = workdir / "data" / "archive"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    date = con.execute(f"SELECT (DATE '{FIRST_DAY}' + {day})::VARCHAR").fetchone()[0]
    relative = f"readings/date={date}/region=region-00/bench-p9-000000000000-{rows:012d}.parquet"
    con.execute(
        f"""
        COPY (
            SELECT 'sensor-late' AS sensor_id,
                   make_timestamp((epoch_us(DATE '{date}'::TIMESTAMPTZ) + i * 1000000)::BIGINT)::TIMESTAMPTZ
                       AS ts,
                   20.0 + (i % 10) AS temperature_c, NULL::DOUBLE AS humidity_pct,
                   NULL::DOUBLE AS pressure_hpa, 9::INTEGER AS kafka_partition,
                   i::BIGINT AS kafka_offset
            FROM range({rows}) t(i)
        ) TO '{root / relative}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    con.close()
    Ledger(str(root)).append(
        LedgerEntry("bench", 9, 0, rows, (ArchivedFile(relative, "readings", rows, date),), rows)
    )


def subset_files(workdir: Path, subset: int, readings: int) -> list[str]:
    """Whole days of files adding up to about ``subset`` readings."""
    days = max(1, round(subset / (readings / DAYS)))
    root = workdir / "data" / "archive" / "readings"
    dates = sorted(p.name for p in root.iterdir())[:days]
    return sorted(str(p) for d in dates for p in (root / d).rglob("*.parquet"))


# --- phases (each in its own process) ----------------------------------------------------------
def phase_rebuild(workdir: Path, readings: int) -> dict:
    from warehouse.stats.recompute import rebuild

    result = rebuild(bench_settings(workdir, readings))
    return {"seconds": result.seconds, "models": result.model_seconds, "rss": own_peak_rss_mb()}


def phase_incremental(workdir: Path, readings: int) -> dict:
    from warehouse.stats.recompute import recompute

    result = recompute(bench_settings(workdir, readings))
    return {
        "seconds": result.seconds,
        "models": result.model_seconds,
        "dates": len(result.dates),
        "dependent": len(result.dependent_dates),
        "rss": own_peak_rss_mb(),
    }


def phase_pandas(workdir: Path, readings: int, subset: int) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = subset_files(workdir, subset, readings)
    started = time.perf_counter()
    tables = []
    for file in files:  # region and date come from the Hive path, as DuckDB reads them
        table = pq.read_table(file, columns=["sensor_id", "ts", "temperature_c"])
        parts = dict(part.split("=", 1) for part in Path(file).parts if "=" in part)
        for column in ("region", "date"):
            values = pa.array([parts[column]] * table.num_rows).dictionary_encode()
            table = table.append_column(column, values)
        tables.append(table)
    frame = pa.concat_tables(tables).to_pandas()
    read = time.perf_counter() - started
    grouped = frame.groupby(["region", "date"], sort=False, observed=True)
    temperature = grouped["temperature_c"]
    daily = pd.DataFrame(
        {
            "reading_count": grouped.size(),
            "sensors_reporting": grouped["sensor_id"].nunique(),
            "min_c": temperature.min(),
            "max_c": temperature.max(),
            "mean_c": temperature.mean(),
            "stddev_c": temperature.std(),
            "p05_c": temperature.quantile(0.05),
            "p50_c": temperature.quantile(0.5),
            "p95_c": temperature.quantile(0.95),
            "first_ts": grouped["ts"].min(),
            "last_ts": grouped["ts"].max(),
        }
    )
    seconds = time.perf_counter() - started
    return {
        "rows": len(frame),
        "seconds": seconds,
        "read": read,
        "groups": len(daily),
        "checksum": float(daily["reading_count"].sum()),
        "rss": own_peak_rss_mb(),
    }


def phase_duckdb_subset(workdir: Path, readings: int, subset: int) -> dict:
    import duckdb

    files = subset_files(workdir, subset, readings)
    con = duckdb.connect()
    started = time.perf_counter()
    # every aggregate fetched: DuckDB would skip the ones a query does not use
    daily = con.execute(
        """
        SELECT region, date, count(*) AS reading_count, count(DISTINCT sensor_id),
               min(temperature_c), max(temperature_c), avg(temperature_c),
               stddev_samp(temperature_c),
               quantile_cont(temperature_c, [0.05, 0.5, 0.95]), min(ts), max(ts)
        FROM read_parquet(?, hive_partitioning = true,
                          hive_types = {'date': DATE, 'region': VARCHAR})
        GROUP BY region, date
        """,
        [files],
    ).fetchall()
    seconds = time.perf_counter() - started
    rows, groups = sum(row[2] for row in daily), len(daily)
    return {"rows": rows, "seconds": seconds, "groups": groups, "rss": own_peak_rss_mb()}


PHASES = {
    "rebuild": phase_rebuild,
    "incremental": phase_incremental,
    "pandas": phase_pandas,
    "duckdb_subset": phase_duckdb_subset,
}


def run_phase(name: str, workdir: Path, readings: int, subset: int) -> dict:
    options = ["--workdir", str(workdir), "--readings", str(readings), "--subset", str(subset)]
    return run_phase_process(__file__, name, *options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10M readings, 2M subset")
    parser.add_argument("--readings", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--phase", choices=sorted(PHASES), default=None)
    return parser.parse_args()


def measure_phase(phase: str, workdir: Path, readings: int, subset: int) -> int:
    """A phase in its own process: prints its result as one JSON line."""
    if phase in ("pandas", "duckdb_subset"):
        out = PHASES[phase](workdir, readings, subset)
    else:
        out = PHASES[phase](workdir, readings)
    print(json.dumps(out))
    return 0


def measure(readings: int, subset: int, keep: bool) -> dict[str, dict]:
    """Generate the archive, then every phase in its own process; the data is deleted
    afterwards unless ``keep``."""
    base = REPO / "data" if (REPO / "data").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="warehouse-bench-", dir=base))
    try:
        print(
            f"generating {readings:,} readings ({SENSORS} sensors, {REGIONS} regions, "
            f"{DAYS} days) in {workdir} …",
            flush=True,
        )
        generated_s = generate(workdir, readings)
        size_gb = sum(p.stat().st_size for p in workdir.rglob("*.parquet")) / 1e9
        print(f"generated in {generated_s:.1f} s, {size_gb:.2f} GB of Parquet", flush=True)

        rebuild = run_phase("rebuild", workdir, readings, subset)
        add_late_batch(workdir, DAYS // 2, LATE_BATCH)
        incremental = run_phase("incremental", workdir, readings, subset)
        pandas = run_phase("pandas", workdir, readings, subset)
        duck = run_phase("duckdb_subset", workdir, readings, subset)
        if pandas["checksum"] != duck["rows"] or pandas["groups"] != duck["groups"]:
            print(f"WARNING: pandas and DuckDB disagree: {pandas} vs {duck}")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"rebuild": rebuild, "incremental": incremental, "pandas": pandas, "duck": duck}


def print_table(readings: int, rebuild: dict, incremental: dict, pandas: dict, duck: dict) -> None:
    rows = [
        (
            "(a) DuckDB full rebuild (hourly + daily + all)",
            readings,
            rebuild["seconds"],
            readings / rebuild["seconds"],
            rebuild["rss"],
        ),
        (
            f"(b) DuckDB incremental: 1 day + {incremental['dependent'] - 1} look-back days",
            readings // DAYS + LATE_BATCH,
            incremental["seconds"],
            None,
            incremental["rss"],
        ),
        (
            "(c) pandas daily aggregation (read included)",
            pandas["rows"],
            pandas["seconds"],
            pandas["rows"] / pandas["seconds"],
            pandas["rss"],
        ),
        (
            "(d) DuckDB daily aggregation, same subset",
            duck["rows"],
            duck["seconds"],
            duck["rows"] / duck["seconds"],
            duck["rss"],
        ),
    ]
    print()
    print(f"{'phase':<52} {'readings':>12} {'seconds':>9} {'readings/s':>13} {'peak RSS':>10}")
    for name, count, seconds, rate, rss in rows:
        shown = f"{rate:,.0f}" if rate else "-"
        print(f"{name:<52} {count:>12,} {seconds:>9.2f} {shown:>13} {rss:>8.0f} MB")


def print_ratios(readings: int, rebuild: dict, incremental: dict, pandas: dict, duck: dict) -> None:
    rebuild_rate = readings / rebuild["seconds"]
    pandas_rate = pandas["rows"] / pandas["seconds"]
    duck_rate = duck["rows"] / duck["seconds"]
    print()
    print(
        "rebuild by model (s): " + ", ".join(f"{k} {v:.2f}" for k, v in rebuild["models"].items())
    )
    print(
        "incremental by model (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in incremental["models"].items())
    )
    print(f"pandas: {pandas['read']:.2f} s of the {pandas['seconds']:.2f} s reading Parquet")
    print(
        f"ratio DuckDB full rebuild / pandas daily (readings/s): {rebuild_rate / pandas_rate:.1f}x"
    )
    print(f"ratio DuckDB daily / pandas daily, same subset:        {duck_rate / pandas_rate:.1f}x")
    if readings == 100_000_000:
        ok_rebuild = rebuild["seconds"] < REBUILD_TARGET_S
        ok_incremental = incremental["seconds"] < INCREMENTAL_TARGET_S
        print(
            f"targets at 100M: full rebuild < {REBUILD_TARGET_S:.0f} s "
            f"{'met' if ok_rebuild else 'MISSED'}; incremental < {INCREMENTAL_TARGET_S:.0f} s "
            f"{'met' if ok_incremental else 'MISSED'}"
        )
    else:
        print("targets (30 s rebuild, 2 s incremental) apply to the full size, 100M readings")


def figures(
    readings: int, subset: int, rebuild: dict, incremental: dict, pandas: dict, duck: dict
) -> dict:
    """What :func:`print_table` and :func:`print_ratios` print, for ``--json`` (the
    targets are checked at 100M readings only: None otherwise)."""
    full = readings == 100_000_000
    rebuild_rate = readings / rebuild["seconds"]
    pandas_rate = pandas["rows"] / pandas["seconds"]
    duck_rate = duck["rows"] / duck["seconds"]
    return {
        "readings": readings,
        "subset_readings": subset,
        "rebuild_s": round(rebuild["seconds"], 3),
        "rebuild_readings_per_s": round(rebuild_rate),
        "rebuild_peak_rss_mb": round(rebuild["rss"], 1),
        **{f"rebuild_{k}_s": round(v, 3) for k, v in rebuild["models"].items()},
        "incremental_s": round(incremental["seconds"], 3),
        "incremental_readings": readings // DAYS + LATE_BATCH,
        "incremental_dates": incremental["dependent"],
        "incremental_peak_rss_mb": round(incremental["rss"], 1),
        **{f"incremental_{k}_s": round(v, 3) for k, v in incremental["models"].items()},
        "pandas_readings": pandas["rows"],
        "pandas_s": round(pandas["seconds"], 3),
        "pandas_read_s": round(pandas["read"], 3),
        "pandas_readings_per_s": round(pandas_rate),
        "pandas_peak_rss_mb": round(pandas["rss"], 1),
        "duckdb_subset_readings": duck["rows"],
        "duckdb_subset_s": round(duck["seconds"], 3),
        "duckdb_subset_readings_per_s": round(duck_rate),
        "duckdb_subset_peak_rss_mb": round(duck["rss"], 1),
        "ratio_rebuild_over_pandas": round(rebuild_rate / pandas_rate, 2),
        "ratio_duckdb_over_pandas": round(duck_rate / pandas_rate, 2),
        "pandas_duckdb_agree": pandas["checksum"] == duck["rows"]
        and pandas["groups"] == duck["groups"],
        "rebuild_target_s": REBUILD_TARGET_S,
        "rebuild_target_met": rebuild["seconds"] < REBUILD_TARGET_S if full else None,
        "incremental_target_s": INCREMENTAL_TARGET_S,
        "incremental_target_met": incremental["seconds"] < INCREMENTAL_TARGET_S if full else None,
    }


def main() -> int:
    args = parse_args()
    readings = args.readings or (10_000_000 if args.quick else 100_000_000)
    subset = args.subset or (2_000_000 if args.quick else 10_000_000)
    if args.phase:
        return measure_phase(args.phase, args.workdir, readings, subset)
    results = measure(readings, subset, args.keep)
    print_table(readings, **results)
    print_ratios(readings, **results)
    if args.json:
        print_json(figures(readings, subset, **results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
