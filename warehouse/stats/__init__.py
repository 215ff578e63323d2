"""Authoritative regional statistics: the SQL models run in DuckDB, reconciliation, backtest."""
