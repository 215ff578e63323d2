-- report_hourly: the temperature through the day per region for the report of $day:
-- one row per region and UTC hour that had readings (hours without any are absent).

SELECT
    region,
    hour_start,
    reading_count,
    coverage_pct,
    min_c,
    max_c,
    mean_c
FROM regional_hourly
WHERE date = $day
ORDER BY region, hour_start;
