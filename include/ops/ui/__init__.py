"""The ClimateWatch page in the Airflow UI: data gathering, HTML and the FastAPI app.

Importable and testable without Airflow; ``plugins/climatewatch_plugin.py`` only hands
the app built here to Airflow's API server.
"""
