-- The windows of one date ($date) whose difference late data does not explain.
SELECT region, window_start, window_end, speed_count, batch_count, count_diff, late,
       speed_mean_c, batch_mean_c
FROM reconciliation
WHERE date = $date AND NOT explained
ORDER BY region, window_start;
