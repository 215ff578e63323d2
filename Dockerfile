# The ClimateWatch image: the official Airflow image (pinned) with the project's pinned
# dependencies and code. Airflow services, the streaming consumer and the simulator in
# docker-compose.yaml all run from it.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.lock /opt/climatewatch/requirements.lock
RUN pip install --no-cache-dir -r /opt/climatewatch/requirements.lock

COPY --chown=airflow:root pyproject.toml README.md /opt/climatewatch/
COPY --chown=airflow:root include /opt/climatewatch/include
COPY --chown=airflow:root streaming /opt/climatewatch/streaming
COPY --chown=airflow:root warehouse /opt/climatewatch/warehouse
COPY --chown=airflow:root dags /opt/climatewatch/dags
COPY --chown=airflow:root plugins /opt/climatewatch/plugins
RUN pip install --no-cache-dir --no-deps -e /opt/climatewatch

WORKDIR /opt/climatewatch
ENV CLIMATEWATCH_DATA_DIR=/opt/climatewatch/data
