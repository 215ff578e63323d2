-- status_quality_failures: the $limit most recent failed expectations of the summary
-- Parquet data quality writes ($summary: its path).

SELECT validated_at, batch_id, date, region, expectation, severity, unexpected_count
FROM read_parquet($summary)
WHERE NOT success
ORDER BY validated_at DESC, batch_id, expectation
LIMIT $limit;
