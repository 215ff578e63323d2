-- report_regions: one row per region for the daily report of $day (a DATE parameter).
--
-- The day's rows of regional_daily, plus the regions the warehouse saw over the trailing
-- days (warehouse_settings.trailing_days) that sent nothing on $day: they are reported
-- with no reading and zero coverage, so a silent region makes the day incomplete.
-- By hand: SET VARIABLE day = DATE '2026-03-01'; then replace $day with getvariable('day').

WITH day_rows AS (
    SELECT
        region,
        reading_count,
        sensors_reporting,
        known_sensors,
        coverage_pct,
        min_c,
        max_c,
        mean_c,
        hdd,
        cdd,
        baseline_c,
        baseline_source,
        anomaly_c,
        coalesce(alerts_total, 0)   AS alerts_total,
        false                       AS missing
    FROM regional_daily
    WHERE date = $day
),
recent AS (
    SELECT DISTINCT region
    FROM regional_daily
    WHERE date <  $day
      AND date >= $day - (SELECT trailing_days FROM warehouse_settings)
),
silent AS (
    SELECT
        region,
        0::BIGINT                   AS reading_count,
        0::BIGINT                   AS sensors_reporting,
        0.0::DOUBLE                 AS coverage_pct,
        0::BIGINT                   AS alerts_total,
        true                        AS missing
    FROM recent
    WHERE region NOT IN (SELECT region FROM day_rows)
)
SELECT * FROM day_rows
UNION ALL BY NAME
SELECT * FROM silent
ORDER BY region;
