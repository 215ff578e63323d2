-- reconciliation: each closed window the speed layer published (window_stats) against
-- the batch layer's recompute of the same region and window from the archive, for the
-- window-start dates in recompute_dates(date DATE). Replaces those dates' rows.
--
-- The speed layer drops readings that arrive after their window closed and counts them
-- in the window's `late`; the archive has them all. So:
--   agree              counts, mean (within 1e-6 °C), min, max and sensors are equal;
--   explained_by_late  batch_count - speed_count = late > 0: the late readings are the
--                      whole difference;
--   unexplained        anything else (lost or quarantined data, a speed-layer bug …).
-- Windows are tumbling and aligned to the epoch (a window of length L starts at a
-- multiple of L), which is how readings are bucketed here: no range join.

DELETE FROM reconciliation WHERE date IN (SELECT date FROM recompute_dates);

INSERT INTO reconciliation BY NAME
WITH speed AS (
    -- a window published twice (a restarted speed layer, late counts that came after it
    -- closed) counts once: the newest record. A window of invalid records only has no
    -- mean, min or max (NaN on the topic): NULL here, as in the batch.
    SELECT * REPLACE (
               nullif(mean_c, 'NaN'::DOUBLE) AS mean_c,
               nullif(min_c, 'NaN'::DOUBLE) AS min_c,
               nullif(max_c, 'NaN'::DOUBLE) AS max_c
           ),
           epoch_us(window_end) - epoch_us(window_start) AS length_us
    FROM window_stats
    WHERE date IN (SELECT date FROM recompute_dates)
    QUALIFY row_number() OVER (
        PARTITION BY region, window_start, window_end
        ORDER BY emitted_at DESC, kafka_partition DESC, kafka_offset DESC
    ) = 1
),
lengths AS (
    SELECT DISTINCT length_us FROM speed WHERE length_us > 0
),
batch AS (
    SELECT
        r.region,
        l.length_us,
        epoch_us(r.ts) // l.length_us   AS bucket,
        count(*)                        AS batch_count,
        avg(r.temperature_c)            AS batch_mean_c,
        min(r.temperature_c)            AS batch_min_c,
        max(r.temperature_c)            AS batch_max_c,
        count(DISTINCT r.sensor_id)     AS batch_sensors
    FROM readings AS r
    CROSS JOIN lengths AS l
    WHERE r.date IN (SELECT date FROM recompute_dates)
    GROUP BY r.region, l.length_us, bucket
),
joined AS (
    SELECT
        s.region,
        s.date,
        s.window_start,
        s.window_end,
        s.count                         AS speed_count,
        coalesce(b.batch_count, 0)      AS batch_count,
        coalesce(b.batch_count, 0) - s.count AS count_diff,
        coalesce(s.late, 0)             AS late,
        s.mean_c                        AS speed_mean_c,
        b.batch_mean_c,
        b.batch_mean_c - s.mean_c       AS mean_diff_c,
        s.min_c                         AS speed_min_c,
        b.batch_min_c,
        s.max_c                         AS speed_max_c,
        b.batch_max_c,
        s.sensors                       AS speed_sensors,
        coalesce(b.batch_sensors, 0)    AS batch_sensors
    FROM speed AS s
    LEFT JOIN batch AS b
      ON b.region = s.region
     AND b.length_us = s.length_us
     AND epoch_us(s.window_start) % s.length_us = 0
     AND b.bucket = epoch_us(s.window_start) // s.length_us
)
SELECT
    *,
    CASE
        WHEN count_diff = 0
         AND coalesce(abs(mean_diff_c) <= 1e-6, speed_mean_c IS NULL AND batch_mean_c IS NULL)
         AND speed_min_c IS NOT DISTINCT FROM batch_min_c
         AND speed_max_c IS NOT DISTINCT FROM batch_max_c
         AND speed_sensors IS NOT DISTINCT FROM batch_sensors
            THEN 'agree'
        WHEN late > 0 AND count_diff = late
            THEN 'explained_by_late'
        ELSE 'unexplained'
    END AS status,
    status <> 'unexplained' AS explained
FROM joined;
