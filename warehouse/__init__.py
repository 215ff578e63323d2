"""The batch layer: the Parquet archive, the DuckDB warehouse, data quality and reports.

Subpackages, each with its own ``cli.py``, from the ground up: ``archive`` (Kafka →
Parquet, ledger, compaction, quarantine), ``stats`` (the SQL models, reconciliation,
backtest), ``quality`` (Great Expectations), ``report`` (the daily report). ``db`` owns
the warehouse file and the loading of ``sql/``; ``status`` holds the read models that
the UI page, the demo and the status commands show.
"""
