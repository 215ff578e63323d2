-- sensor_hourly (a temp table, not kept): what each sensor sent per UTC hour, for the
-- dates in recompute_dates(date DATE). The hourly and daily models roll their counts,
-- extremes, means and standard deviations up from it (exactly: m2_c is the sum of
-- squared deviations from the sensor-hour mean, combined with Chan's formula), and count
-- sensors from it; a count(DISTINCT sensor_id) per hour over the raw readings alone
-- would cost more than this whole pre-aggregation. Only percentiles need raw values.
--
-- Hours are bucketed with epoch arithmetic on the UTC timestamp: date_trunc on a
-- TIMESTAMPTZ goes through the time-zone library and is several times slower.

CREATE OR REPLACE TEMP TABLE sensor_hourly AS
SELECT
    region,
    date,
    epoch_us(ts) // 3600000000  AS hour_bucket,
    sensor_id,
    count(*)                    AS reading_count,
    min(temperature_c)          AS min_c,
    max(temperature_c)          AS max_c,
    sum(temperature_c)          AS sum_c,
    var_pop(temperature_c) * count(*) AS m2_c,
    min(ts)                     AS first_ts,
    max(ts)                     AS last_ts
FROM readings
WHERE date IN (SELECT date FROM recompute_dates)
GROUP BY ALL;
