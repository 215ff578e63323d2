"""The notification service: alerts from the alerts topic to people (``climatewatch notify``)."""
