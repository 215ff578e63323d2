-- report_validated_batches: every archive batch data quality has results for (any date),
-- from the summary Parquet at $summary: the daily report waits until they cover the day.

SELECT DISTINCT batch_id
FROM read_parquet($summary)
ORDER BY batch_id;
