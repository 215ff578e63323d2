-- status_quality_batches: passed and failed expectations per validated batch, the $limit
-- most recently validated first, from the summary Parquet data quality writes
-- ($summary: its path), read directly rather than through the warehouse's
-- quality_results view, which is only as fresh as the last recompute.

SELECT batch_id,
       min(date) AS first_date,
       max(date) AS last_date,
       string_agg(DISTINCT region, ', ' ORDER BY region) AS regions,
       count(*) FILTER (WHERE success) AS passed,
       count(*) FILTER (WHERE NOT success) AS failed,
       max(validated_at) AS validated_at
FROM read_parquet($summary)
GROUP BY batch_id
ORDER BY validated_at DESC, batch_id
LIMIT $limit;
