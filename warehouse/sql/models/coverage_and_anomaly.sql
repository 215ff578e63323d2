-- Columns of regional_daily and regional_hourly that look back over several days, for
-- the dates in the temp table dependent_dates(date DATE): the recomputed dates and the
-- days within warehouse_settings.trailing_days after them (their look-back changed).
-- Reads only warehouse tables, never the archive, so it is cheap.
--
-- known_sensors: distinct sensors of the region over the trailing days (the day included)
-- expected_readings: known_sensors * period seconds / reporting interval
-- baseline_c: the climatology normal of the region and calendar day when there is one,
--             else the mean of the region's daily means over the trailing days before it
-- alerts_by_rule: distinct firing alerts whose window starts that day, by rule

CREATE OR REPLACE TEMP TABLE derived_daily AS
WITH settings AS (
    SELECT trailing_days, reporting_interval_s FROM warehouse_settings
),
days AS (
    SELECT d.region, d.date, d.mean_c, d.reading_count
    FROM regional_daily AS d
    WHERE d.date IN (SELECT date FROM dependent_dates)
),
known AS (
    SELECT days.region, days.date, count(DISTINCT s.sensor_id) AS known_sensors
    FROM days
    JOIN sensor_daily AS s
      ON s.region = days.region
     AND s.date >  days.date - (SELECT trailing_days FROM settings)
     AND s.date <= days.date
    GROUP BY days.region, days.date
),
look_back AS (
    SELECT days.region, days.date, avg(p.mean_c) AS trailing_mean_c
    FROM days
    JOIN regional_daily AS p
      ON p.region = days.region
     AND p.date >= days.date - (SELECT trailing_days FROM settings)
     AND p.date <  days.date
    GROUP BY days.region, days.date
),
rule_counts AS (
    SELECT region, date, rule, count(DISTINCT alert_id) AS alerts
    FROM alerts
    WHERE status = 'firing' AND date IN (SELECT date FROM dependent_dates)
    GROUP BY region, date, rule
),
day_alerts AS (
    SELECT region, date, sum(alerts)::BIGINT AS alerts_total,
           map_from_entries(list((rule, alerts) ORDER BY rule)) AS alerts_by_rule
    FROM rule_counts
    GROUP BY region, date
)
SELECT
    days.region,
    days.date,
    known.known_sensors,
    known.known_sensors * 86400.0 / (SELECT reporting_interval_s FROM settings) AS expected_readings,
    coalesce(c.normal_c, look_back.trailing_mean_c) AS baseline_c,
    CASE WHEN c.normal_c IS NOT NULL THEN 'climatology'
         WHEN look_back.trailing_mean_c IS NOT NULL THEN 'trailing_mean' END AS baseline_source,
    coalesce(day_alerts.alerts_total, 0) AS alerts_total,
    coalesce(day_alerts.alerts_by_rule, MAP {}::MAP(VARCHAR, BIGINT)) AS alerts_by_rule
FROM days
LEFT JOIN known USING (region, date)
LEFT JOIN look_back USING (region, date)
LEFT JOIN day_alerts USING (region, date)
LEFT JOIN climatology AS c
  ON c.region = days.region AND c.month = month(days.date) AND c.day = day(days.date);

UPDATE regional_daily AS d SET
    known_sensors     = x.known_sensors,
    expected_readings = x.expected_readings,
    coverage_pct      = 100.0 * d.reading_count / x.expected_readings,
    baseline_c        = x.baseline_c,
    baseline_source   = x.baseline_source,
    anomaly_c         = d.mean_c - x.baseline_c,
    alerts_total      = x.alerts_total,
    alerts_by_rule    = x.alerts_by_rule
FROM derived_daily AS x
WHERE d.region = x.region AND d.date = x.date;

UPDATE regional_hourly AS h SET
    known_sensors     = x.known_sensors,
    expected_readings = x.known_sensors * 3600.0 / (SELECT reporting_interval_s FROM warehouse_settings),
    coverage_pct      = 100.0 * h.reading_count
                        / (x.known_sensors * 3600.0 / (SELECT reporting_interval_s FROM warehouse_settings))
FROM derived_daily AS x
WHERE h.region = x.region AND h.date = x.date;

DROP TABLE derived_daily;
