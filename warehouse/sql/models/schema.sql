-- The warehouse's own tables. Safe to run again: nothing here replaces data.
--
-- Tables with data computed from the archive (replaced date by date by a recompute):
--   sensor_daily, regional_hourly, regional_daily, reconciliation.
-- Bookkeeping: warehouse_settings (one row: the settings the tables were computed with),
-- processed_batches (ledger batches already reflected in the tables), climatology.

CREATE TABLE IF NOT EXISTS warehouse_settings (
    degree_day_base_c    DOUBLE  NOT NULL,  -- base of heating/cooling degree days (°C)
    reporting_interval_s DOUBLE  NOT NULL,  -- seconds between two readings of one sensor
    trailing_days        INTEGER NOT NULL,  -- anomaly baseline and known-sensors window
    climatology          VARCHAR,           -- fingerprint of the climatology CSV, or NULL
    archive_root         VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS processed_batches (
    batch_id     VARCHAR PRIMARY KEY,       -- warehouse.archive.ledger.LedgerEntry.batch_id
    dates        VARCHAR[],                 -- event dates the batch touched
    processed_at TIMESTAMPTZ NOT NULL
);

-- Daily normals per region (from CLIMATEWATCH_CLIMATOLOGY_CSV; empty when unset).
CREATE TABLE IF NOT EXISTS climatology (
    region   VARCHAR NOT NULL,
    month    INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    normal_c DOUBLE  NOT NULL
);

-- One row per sensor and day: what each sensor sent (the base of coverage).
CREATE TABLE IF NOT EXISTS sensor_daily (
    region        VARCHAR NOT NULL,
    date          DATE    NOT NULL,
    sensor_id     VARCHAR NOT NULL,
    reading_count BIGINT  NOT NULL,
    coverage_pct  DOUBLE,                   -- reading_count / (86400 / reporting interval)
    min_c         DOUBLE,
    max_c         DOUBLE,
    mean_c        DOUBLE,
    first_ts      TIMESTAMPTZ,
    last_ts       TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS regional_hourly (
    region            VARCHAR     NOT NULL,
    date              DATE        NOT NULL,  -- UTC date of the hour
    hour_start        TIMESTAMPTZ NOT NULL,
    reading_count     BIGINT      NOT NULL,
    sensors_reporting BIGINT      NOT NULL,
    known_sensors     BIGINT,                -- sensors seen in the region over the trailing days
    expected_readings DOUBLE,                -- known_sensors * 3600 / reporting interval
    coverage_pct      DOUBLE,                -- 100 * reading_count / expected_readings
    min_c             DOUBLE,
    max_c             DOUBLE,
    mean_c            DOUBLE,
    stddev_c          DOUBLE,                -- sample standard deviation (NULL for one reading)
    p05_c             DOUBLE,                -- percentiles: linear interpolation (quantile_cont)
    p50_c             DOUBLE,
    p95_c             DOUBLE,
    first_ts          TIMESTAMPTZ,
    last_ts           TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS regional_daily (
    region            VARCHAR NOT NULL,
    date              DATE    NOT NULL,
    reading_count     BIGINT  NOT NULL,
    sensors_reporting BIGINT  NOT NULL,
    known_sensors     BIGINT,
    expected_readings DOUBLE,                -- known_sensors * 86400 / reporting interval
    coverage_pct      DOUBLE,
    min_c             DOUBLE,
    max_c             DOUBLE,
    mean_c            DOUBLE,
    stddev_c          DOUBLE,
    p05_c             DOUBLE,
    p50_c             DOUBLE,
    p95_c             DOUBLE,
    first_ts          TIMESTAMPTZ,
    last_ts           TIMESTAMPTZ,
    hdd               DOUBLE,                -- heating degree days: max(0, base - mean_c)
    cdd               DOUBLE,                -- cooling degree days: max(0, mean_c - base)
    baseline_c        DOUBLE,                -- climatology normal, else trailing mean of daily means
    baseline_source   VARCHAR,               -- 'climatology', 'trailing_mean' or NULL (no history)
    anomaly_c         DOUBLE,                -- mean_c - baseline_c
    alerts_total      BIGINT,                -- distinct firing alerts of the day (window start date)
    alerts_by_rule    MAP(VARCHAR, BIGINT)   -- the same, by rule: alerts_by_rule['heat']
);

-- Speed layer (window_stats) against the batch recompute of the same window.
CREATE TABLE IF NOT EXISTS reconciliation (
    region        VARCHAR     NOT NULL,
    date          DATE        NOT NULL,      -- UTC date of window_start
    window_start  TIMESTAMPTZ NOT NULL,
    window_end    TIMESTAMPTZ NOT NULL,
    speed_count   BIGINT,
    batch_count   BIGINT,
    count_diff    BIGINT,                    -- batch_count - speed_count
    late          BIGINT,                    -- readings the speed layer counted late for it
    speed_mean_c  DOUBLE,
    batch_mean_c  DOUBLE,
    mean_diff_c   DOUBLE,
    speed_min_c   DOUBLE,
    batch_min_c   DOUBLE,
    speed_max_c   DOUBLE,
    batch_max_c   DOUBLE,
    speed_sensors BIGINT,
    batch_sensors BIGINT,
    status        VARCHAR     NOT NULL,      -- 'agree', 'explained_by_late' or 'unexplained'
    explained     BOOLEAN     NOT NULL       -- status <> 'unexplained'
);

-- Typed empty stand-ins for archive datasets that have no file yet (see views.sql).
CREATE TABLE IF NOT EXISTS empty_readings (
    sensor_id VARCHAR, ts TIMESTAMPTZ, temperature_c DOUBLE, humidity_pct DOUBLE,
    pressure_hpa DOUBLE, kafka_partition INTEGER, kafka_offset BIGINT, date DATE, region VARCHAR
);
CREATE TABLE IF NOT EXISTS empty_rejected (
    kafka_partition INTEGER, kafka_offset BIGINT, kafka_timestamp TIMESTAMPTZ, key BLOB,
    value BLOB, reason VARCHAR, detail VARCHAR, date DATE
);
CREATE TABLE IF NOT EXISTS empty_alerts (
    alert_id VARCHAR, rule VARCHAR, severity VARCHAR, region VARCHAR,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, value DOUBLE, threshold DOUBLE,
    status VARCHAR, message VARCHAR, emitted_at TIMESTAMPTZ, kafka_partition INTEGER,
    kafka_offset BIGINT, date DATE
);
CREATE TABLE IF NOT EXISTS empty_window_stats (
    region VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, count BIGINT,
    mean_c DOUBLE, min_c DOUBLE, max_c DOUBLE, sensors BIGINT, late BIGINT, invalid BIGINT,
    closed_by VARCHAR, emitted_at TIMESTAMPTZ, kafka_partition INTEGER, kafka_offset BIGINT,
    date DATE
);
CREATE TABLE IF NOT EXISTS empty_quality_results (
    batch_id VARCHAR, date DATE, region VARCHAR, expectation VARCHAR, severity VARCHAR,
    success BOOLEAN, unexpected_count BIGINT, validated_at TIMESTAMPTZ
);
