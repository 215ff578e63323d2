-- regional_hourly: per region and UTC hour, for the dates in recompute_dates(date DATE).
-- Replaces those dates' rows. Counts, extremes, mean and standard deviation are rolled
-- up from sensor_hourly (run sensor_hourly.sql first); percentiles come from the raw
-- readings. Coverage columns (known_sensors, expected_readings, coverage_pct) are
-- filled by coverage_and_anomaly.sql, which looks back over days.
-- Hours are bucketed with epoch arithmetic (see sensor_hourly.sql).

DELETE FROM regional_hourly WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO regional_hourly BY NAME
WITH hourly AS (
    SELECT
        region,
        date,
        hour_bucket,
        sum(reading_count)                  AS reading_count,
        count(*)                            AS sensors_reporting,
        min(min_c)                          AS min_c,
        max(max_c)                          AS max_c,
        sum(sum_c) / sum(reading_count)     AS mean_c,
        min(first_ts)                       AS first_ts,
        max(last_ts)                        AS last_ts
    FROM sensor_hourly
    GROUP BY region, date, hour_bucket
),
spread AS (
    -- sum of squared deviations from the hour's mean, from each sensor's own
    SELECT
        s.region,
        s.hour_bucket,
        sum(s.m2_c + s.reading_count * pow(s.sum_c / s.reading_count - h.mean_c, 2)) AS m2_c
    FROM sensor_hourly AS s
    JOIN hourly AS h USING (region, hour_bucket)
    GROUP BY s.region, s.hour_bucket
),
percentiles AS (
    SELECT
        region,
        epoch_us(ts) // 3600000000                          AS hour_bucket,
        quantile_cont(temperature_c, [0.05, 0.5, 0.95])     AS q
    FROM readings
    WHERE date IN (SELECT date FROM recompute_dates)
    GROUP BY region, hour_bucket
)
SELECT
    hourly.region,
    hourly.date,
    to_timestamp(hourly.hour_bucket * 3600)                          AS hour_start,
    hourly.reading_count,
    hourly.sensors_reporting,
    hourly.min_c,
    hourly.max_c,
    hourly.mean_c,
    CASE WHEN hourly.reading_count > 1
         THEN sqrt(spread.m2_c / (hourly.reading_count - 1)) END     AS stddev_c,
    percentiles.q[1]                                                 AS p05_c,
    percentiles.q[2]                                                 AS p50_c,
    percentiles.q[3]                                                 AS p95_c,
    hourly.first_ts,
    hourly.last_ts
FROM hourly
JOIN spread USING (region, hour_bucket)
JOIN percentiles USING (region, hour_bucket);
