-- Reconciliation of one date ($date), per region: how many of the speed layer's windows
-- agree with the batch recompute, how many differ only by the readings the speed layer
-- counted late, and how many differ for a reason late data does not explain.
SELECT
    region,
    count(*)                                           AS windows,
    count(*) FILTER (WHERE status = 'agree')           AS agree,
    count(*) FILTER (WHERE status = 'explained_by_late') AS explained_by_late,
    count(*) FILTER (WHERE status = 'unexplained')     AS unexplained,
    sum(speed_count)                                   AS speed_readings,
    sum(batch_count)                                   AS batch_readings,
    sum(count_diff)                                    AS count_diff,
    sum(late)                                          AS late
FROM reconciliation
WHERE date = $date
GROUP BY region
ORDER BY region;
