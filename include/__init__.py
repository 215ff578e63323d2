"""The ground floor: contracts, settings and clients that every part of ClimateWatch shares.

Modules here import only each other (and libraries). The one exception is
:mod:`include.ops`, the top floor: the command line, the demo, the local stack and the
Airflow UI page, which stand on the speed and batch layers and wire them together.
A test (``tests/test_layers.py``) holds the code to this rule.
"""
