"""The front doors, top floor: the ``climatewatch`` command, the demo, the local stack
(``climatewatch up``), the Airflow REST client and the ClimateWatch page in the Airflow UI.

Nothing below imports from here.
"""
