-- regional_daily: per region and UTC day, for the dates in recompute_dates(date DATE).
-- Replaces those dates' rows. Degree days come from the day's mean temperature:
--   hdd = max(0, base - mean_c), cdd = max(0, mean_c - base)
-- with base = warehouse_settings.degree_day_base_c (CLIMATEWATCH_DEGREE_DAY_BASE_C).
-- Sensors reporting come from sensor_daily (run sensor_daily.sql first); coverage,
-- baseline, anomaly and alerts are filled by coverage_and_anomaly.sql.

DELETE FROM regional_daily WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO regional_daily BY NAME
WITH day_readings AS (
    SELECT region, date, ts, temperature_c
    FROM readings
    WHERE date IN (SELECT date FROM recompute_dates)
),
daily AS (
    SELECT
        region,
        date,
        count(*)                                            AS reading_count,
        min(temperature_c)                                  AS min_c,
        max(temperature_c)                                  AS max_c,
        avg(temperature_c)                                  AS mean_c,
        stddev_samp(temperature_c)                          AS stddev_c,
        quantile_cont(temperature_c, [0.05, 0.5, 0.95])     AS q,
        min(ts)                                             AS first_ts,
        max(ts)                                             AS last_ts
    FROM day_readings
    GROUP BY region, date
),
sensors AS (
    SELECT region, date, count(*) AS sensors_reporting
    FROM sensor_daily
    WHERE date IN (SELECT date FROM recompute_dates)
    GROUP BY region, date
)
SELECT
    region,
    date,
    reading_count,
    sensors.sensors_reporting,
    min_c,
    max_c,
    mean_c,
    stddev_c,
    q[1] AS p05_c,
    q[2] AS p50_c,
    q[3] AS p95_c,
    first_ts,
    last_ts,
    greatest(0.0, (SELECT degree_day_base_c FROM warehouse_settings) - mean_c) AS hdd,
    greatest(0.0, mean_c - (SELECT degree_day_base_c FROM warehouse_settings)) AS cdd
FROM daily
JOIN sensors USING (region, date);
