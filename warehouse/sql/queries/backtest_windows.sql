-- Backtest: every region's event-time windows whose start lies in [$start_ms, $end_ms),
-- aggregated from the archive as the speed layer aggregates a closed window (count,
-- mean, min, max, the distinct sensors). Windows are tumbling and aligned to the epoch,
-- like the speed layer's: start = epoch_ms - epoch_ms % size. $dates are the event
-- dates the range touches (partition pruning).
SELECT
    region,
    epoch_ms(ts) - epoch_ms(ts) % $size_ms          AS start_ms,
    count(*)                                        AS count,
    avg(temperature_c)                              AS mean_c,
    min(temperature_c)                              AS min_c,
    max(temperature_c)                              AS max_c,
    list(DISTINCT sensor_id ORDER BY sensor_id)     AS sensors
FROM readings
WHERE date IN (SELECT unnest($dates::DATE[]))
  AND epoch_ms(ts) - epoch_ms(ts) % $size_ms >= $start_ms
  AND epoch_ms(ts) - epoch_ms(ts) % $size_ms <  $end_ms
GROUP BY region, start_ms
ORDER BY start_ms, region;
