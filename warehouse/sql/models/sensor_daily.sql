-- sensor_daily: what each sensor sent per day, for the dates in the temp table
-- recompute_dates(date DATE), rolled up from sensor_hourly (sensor_hourly.sql).
-- Replaces those dates' rows (idempotent). By hand, first:
--   CREATE TEMP TABLE recompute_dates AS SELECT DISTINCT date FROM readings;
--   .read warehouse/sql/sensor_hourly.sql

DELETE FROM sensor_daily WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO sensor_daily BY NAME
SELECT
    region,
    date,
    sensor_id,
    sum(reading_count)                          AS reading_count,
    100.0 * sum(reading_count)
        / (86400.0 / (SELECT reporting_interval_s FROM warehouse_settings))
                                                AS coverage_pct,
    min(min_c)                                  AS min_c,
    max(max_c)                                  AS max_c,
    sum(sum_c) / sum(reading_count)             AS mean_c,
    min(first_ts)                               AS first_ts,
    max(last_ts)                                AS last_ts
FROM sensor_hourly
GROUP BY region, date, sensor_id;
