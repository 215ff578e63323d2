-- sensor_daily: what each sensor sent per day, for the dates in the temp table
-- recompute_dates(date DATE). Replaces those dates' rows (idempotent).
-- By hand: CREATE TEMP TABLE recompute_dates AS SELECT DISTINCT date FROM readings;

DELETE FROM sensor_daily WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO sensor_daily BY NAME
WITH day_readings AS (
    SELECT region, date, sensor_id, ts, temperature_c
    FROM readings
    WHERE date IN (SELECT date FROM recompute_dates)
)
SELECT
    region,
    date,
    sensor_id,
    count(*)                  AS reading_count,
    100.0 * count(*) / (86400.0 / (SELECT reporting_interval_s FROM warehouse_settings))
                              AS coverage_pct,
    min(temperature_c)        AS min_c,
    max(temperature_c)        AS max_c,
    avg(temperature_c)        AS mean_c,
    min(ts)                   AS first_ts,
    max(ts)                   AS last_ts
FROM day_readings
GROUP BY region, date, sensor_id;
