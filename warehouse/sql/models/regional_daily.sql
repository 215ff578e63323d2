-- regional_daily: per region and UTC day, for the dates in recompute_dates(date DATE).
-- Replaces those dates' rows. Counts, extremes, mean and standard deviation are rolled
-- up from sensor_hourly (run sensor_hourly.sql first), percentiles come from the raw
-- readings. Degree days come from the day's mean temperature:
--   hdd = max(0, base - mean_c), cdd = max(0, mean_c - base)
-- with base = warehouse_settings.degree_day_base_c (CLIMATEWATCH_DEGREE_DAY_BASE_C).
-- Coverage, baseline, anomaly and alerts are filled by coverage_and_anomaly.sql.

DELETE FROM regional_daily WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO regional_daily BY NAME
WITH daily AS (
    SELECT
        region,
        date,
        sum(reading_count)                  AS reading_count,
        count(DISTINCT sensor_id)           AS sensors_reporting,
        min(min_c)                          AS min_c,
        max(max_c)                          AS max_c,
        sum(sum_c) / sum(reading_count)     AS mean_c,
        min(first_ts)                       AS first_ts,
        max(last_ts)                        AS last_ts
    FROM sensor_hourly
    GROUP BY region, date
),
spread AS (
    -- sum of squared deviations from the day's mean, from each sensor-hour's own
    SELECT
        s.region,
        s.date,
        sum(s.m2_c + s.reading_count * pow(s.sum_c / s.reading_count - d.mean_c, 2)) AS m2_c
    FROM sensor_hourly AS s
    JOIN daily AS d USING (region, date)
    GROUP BY s.region, s.date
),
percentiles AS (
    SELECT
        region,
        date,
        quantile_cont(temperature_c, [0.05, 0.5, 0.95])     AS q
    FROM readings
    WHERE date IN (SELECT date FROM recompute_dates)
    GROUP BY region, date
)
SELECT
    daily.region,
    daily.date,
    daily.reading_count,
    daily.sensors_reporting,
    daily.min_c,
    daily.max_c,
    daily.mean_c,
    CASE WHEN daily.reading_count > 1
         THEN sqrt(spread.m2_c / (daily.reading_count - 1)) END      AS stddev_c,
    percentiles.q[1]                                                 AS p05_c,
    percentiles.q[2]                                                 AS p50_c,
    percentiles.q[3]                                                 AS p95_c,
    daily.first_ts,
    daily.last_ts,
    greatest(0.0, (SELECT degree_day_base_c FROM warehouse_settings) - daily.mean_c) AS hdd,
    greatest(0.0, daily.mean_c - (SELECT degree_day_base_c FROM warehouse_settings)) AS cdd
FROM daily
JOIN spread USING (region, date)
JOIN percentiles USING (region, date);
