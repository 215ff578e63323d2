-- regional_hourly: per region and UTC hour, for the dates in recompute_dates(date DATE).
-- Replaces those dates' rows. Sensors reporting come from sensor_hourly
-- (sensor_hourly.sql); coverage columns (known_sensors, expected_readings,
-- coverage_pct) are filled by coverage_and_anomaly.sql, which looks back over days.
-- Hours are bucketed with epoch arithmetic (see sensor_hourly.sql).

DELETE FROM regional_hourly WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO regional_hourly BY NAME
WITH bucketed AS (
    SELECT region, date, ts, temperature_c, epoch_us(ts) // 3600000000 AS hour_bucket
    FROM readings
    WHERE date IN (SELECT date FROM recompute_dates)
),
hourly AS (
    SELECT
        region,
        date,
        hour_bucket,
        count(*)                                            AS reading_count,
        min(temperature_c)                                  AS min_c,
        max(temperature_c)                                  AS max_c,
        avg(temperature_c)                                  AS mean_c,
        stddev_samp(temperature_c)                          AS stddev_c,
        quantile_cont(temperature_c, [0.05, 0.5, 0.95])     AS q,
        min(ts)                                             AS first_ts,
        max(ts)                                             AS last_ts
    FROM bucketed
    GROUP BY region, date, hour_bucket
),
sensors AS (
    SELECT region, hour_bucket, count(*) AS sensors_reporting
    FROM sensor_hourly
    GROUP BY region, hour_bucket
)
SELECT
    region,
    date,
    to_timestamp(hour_bucket * 3600) AS hour_start,
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
    last_ts
FROM hourly
JOIN sensors USING (region, hour_bucket);
