-- Ten questions a climate analyst asks the warehouse, with their SQL.
-- Run one with `climatewatch sql "…"`, or open the warehouse read-only in DuckDB:
--   duckdb -readonly data/warehouse/climatewatch.duckdb
-- "This week" and "this month" are relative to the newest day in the warehouse, so the
-- questions also work on historical data. Each block starts with `-- name:`; the test
-- suite runs every one of them.

-- name: hottest_regions_this_week
-- question: Which regions were the hottest over the last 7 days?
SELECT region,
       round(sum(mean_c * reading_count) / sum(reading_count), 2) AS mean_c,
       max(max_c)                                                 AS max_c
FROM regional_daily
WHERE date > (SELECT max(date) FROM regional_daily) - 7
GROUP BY region
ORDER BY mean_c DESC
LIMIT 10;

-- name: days_above_30
-- question: How many days did each region go above 30 °C, and when was the last one?
SELECT region, count(*) AS days_above_30, max(date) AS last_day, max(max_c) AS hottest_c
FROM regional_daily
WHERE max_c > 30
GROUP BY region
ORDER BY days_above_30 DESC, region;

-- name: degree_days_this_month
-- question: Heating and cooling degree days of each region this month (base 18 °C by default)?
SELECT region,
       round(sum(hdd), 1) AS heating_degree_days,
       round(sum(cdd), 1) AS cooling_degree_days,
       count(*)           AS days
FROM regional_daily
WHERE date_trunc('month', date) = date_trunc('month', (SELECT max(date) FROM regional_daily))
GROUP BY region
ORDER BY heating_degree_days DESC;

-- name: worst_sensor_coverage
-- question: Which sensors sent the smallest share of their expected readings this week?
SELECT sensor_id, region,
       round(avg(coverage_pct), 1) AS coverage_pct,
       sum(reading_count)          AS readings,
       max(last_ts)                AS last_seen
FROM sensor_daily
WHERE date > (SELECT max(date) FROM sensor_daily) - 7
GROUP BY sensor_id, region
ORDER BY coverage_pct, sensor_id
LIMIT 20;

-- name: late_data_by_hour
-- question: How much data reached the speed layer too late, by hour of the day?
SELECT hour(window_start AT TIME ZONE 'UTC') AS hour_utc,
       sum(late)                             AS late_readings,
       sum(batch_count)                      AS readings,
       round(100.0 * sum(late) / nullif(sum(batch_count), 0), 2) AS late_pct
FROM reconciliation
GROUP BY hour_utc
ORDER BY hour_utc;

-- name: largest_anomalies
-- question: Which days were furthest from normal, and by how much?
SELECT region, date, round(mean_c, 2) AS mean_c, round(baseline_c, 2) AS baseline_c,
       round(anomaly_c, 2) AS anomaly_c, baseline_source
FROM regional_daily
WHERE anomaly_c IS NOT NULL
ORDER BY abs(anomaly_c) DESC
LIMIT 10;

-- name: diurnal_cycle
-- question: What does an average day look like in each region, hour by hour (UTC)?
SELECT region,
       hour(hour_start AT TIME ZONE 'UTC')                          AS hour_utc,
       round(sum(mean_c * reading_count) / sum(reading_count), 2)   AS mean_c,
       round(avg(p95_c), 2)                                         AS typical_p95_c
FROM regional_hourly
GROUP BY region, hour_utc
ORDER BY region, hour_utc;

-- name: alerts_by_rule_this_month
-- question: How many alerts fired per region and rule this month?
SELECT region, rule, sum(alerts) AS alerts
FROM (
    SELECT region, unnest(map_keys(alerts_by_rule)) AS rule,
           unnest(map_values(alerts_by_rule)) AS alerts
    FROM regional_daily
    WHERE date_trunc('month', date) = date_trunc('month', (SELECT max(date) FROM regional_daily))
)
GROUP BY region, rule
ORDER BY alerts DESC, region, rule;

-- name: rejected_by_reason
-- question: Why were records rejected, day by day?
SELECT date, reason, count(*) AS records, any_value(detail) AS example
FROM rejected
GROUP BY date, reason
ORDER BY date DESC, records DESC;

-- name: speed_layer_disagreements
-- question: Where did the speed layer's live numbers disagree with the archive beyond late data?
SELECT date, region,
       count(*) FILTER (WHERE status = 'unexplained')       AS unexplained_windows,
       count(*) FILTER (WHERE status = 'explained_by_late') AS late_windows,
       count(*)                                             AS windows,
       sum(count_diff) FILTER (WHERE status = 'unexplained') AS unexplained_readings
FROM reconciliation
GROUP BY date, region
HAVING unexplained_windows > 0
ORDER BY date DESC, unexplained_windows DESC;
