-- report_processed_batches: archive batches whose rows the warehouse tables reflect.

SELECT batch_id
FROM processed_batches
ORDER BY batch_id;
