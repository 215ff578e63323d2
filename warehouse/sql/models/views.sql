-- Views over the Parquet archive: every query reads the archive as it is now.
--
-- ${readings}, ${rejected}, ${alerts}, ${window_stats} and ${quality_results} stand for
-- their source: read_parquet('<absolute archive root>/<dataset>/**/*.parquet', ...) when
-- the dataset has files, else the typed empty table empty_<dataset> (schema.sql), so a
-- view never fails on an empty archive. warehouse/stats/recompute.py fills them in; to run this by
-- hand, replace each with its read_parquet(...) call.
--
-- `date` (and `region` for readings) come from the Hive partition path: readings by event
-- date and region, rejected records by Kafka record date, alerts and window statistics by
-- window start date. Quarantined readings (set aside from a batch, or a whole batch) live
-- in quarantine/, outside readings/, and are not seen here.

-- Every valid reading exactly once.
CREATE OR REPLACE VIEW readings AS
SELECT sensor_id, region, ts, temperature_c, humidity_pct, pressure_hpa,
       kafka_partition, kafka_offset, date
FROM ${readings};

-- Records that are not valid readings, with their original bytes and the reason.
CREATE OR REPLACE VIEW rejected AS
SELECT kafka_partition, kafka_offset, kafka_timestamp, key, value, reason, detail, date
FROM ${rejected};

-- Alerts the speed layer published (firing and resolved events).
CREATE OR REPLACE VIEW alerts AS
SELECT alert_id, rule, severity, region, window_start, window_end, value, threshold,
       status, message, emitted_at, kafka_partition, kafka_offset, date
FROM ${alerts};

-- The speed layer's closed windows, as it published them.
CREATE OR REPLACE VIEW window_stats AS
SELECT region, window_start, window_end, count, mean_c, min_c, max_c, sensors, late,
       invalid, closed_by, emitted_at, kafka_partition, kafka_offset, date
FROM ${window_stats};

-- Data-quality results per batch, date, region and expectation (issue 6 writes them).
CREATE OR REPLACE VIEW quality_results AS
SELECT * FROM ${quality_results};
