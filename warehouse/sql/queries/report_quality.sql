-- report_quality: data-quality results of $day from the summary Parquet that data
-- quality writes (DATA_DIR/quality/summary.parquet), read directly rather than through
-- the warehouse's quality_results view, which is only as fresh as the last recompute.
-- $summary is the file's path. A batch validated twice keeps its latest result per
-- (batch, region, expectation).

SELECT
    batch_id,
    region,
    expectation,
    severity,
    success,
    coalesce(unexpected_count, 0)   AS unexpected_count,
    validated_at
FROM read_parquet($summary)
WHERE date = $day
QUALIFY row_number() OVER (
    PARTITION BY batch_id, region, expectation ORDER BY validated_at DESC
) = 1
ORDER BY batch_id, region NULLS FIRST, expectation;
