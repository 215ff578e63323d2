"""The archive: Kafka topics as Hive-partitioned Parquet, exactly once, with an offset ledger."""
