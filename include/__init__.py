"""Shared contracts, settings and infrastructure helpers for ClimateWatch.

The speed layer (`streaming`), the batch layer (`warehouse`, `dags`) and the command
line import from here; only the command line (`include.cli`, the composition root)
imports them back.
"""
