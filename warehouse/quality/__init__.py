"""Data quality: a Great Expectations suite over each new archive batch, with quarantine."""
