"""ClimateWatch benchmarks: scripts that print a table comparing against an in-run baseline."""
