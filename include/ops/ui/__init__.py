"""The ClimateWatch page in the Airflow UI: the FastAPI app (``app``) and its HTML (``render``).

The data it shows comes from the read models of ``warehouse.status``. Importable and
testable without Airflow; ``plugins/climatewatch_plugin.py`` only hands the app built
here to Airflow's API server.
"""
