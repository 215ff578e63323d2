"""ClimateWatch settings: one frozen object read from ``CLIMATEWATCH_*`` environment variables.

Defaults run everything on one machine (a local broker on 127.0.0.1:9092, data under
``./data``). Pointing ClimateWatch at an existing Kafka cluster or object store is
configuration only. Each field's description is the documentation of its variable;
``climatewatch settings`` prints them all.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from include.errors import ClimateWatchError

ENV_PREFIX = "CLIMATEWATCH_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Every knob of ClimateWatch. Read once per process with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        env_file=None,
        validate_default=True,
    )

    # --- Kafka connection -------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list of the Kafka cluster to use.",
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: SaslMechanism | None = Field(
        None,
        description="SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.",
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(
        None, description="CA certificate file (PEM) to verify the brokers."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    kafka_timeout_ms: int = Field(
        10_000, ge=100, description="How long a client waits for the cluster before giving up (ms)."
    )
    broker_loss_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long every component rides through the loss or freeze of a broker (metadata refreshed, requests retried with backoff while a new leader or group coordinator is elected) before it stops with a one-line error (s). Sends are bounded by CLIMATEWATCH_PRODUCER_DELIVERY_TIMEOUT_MS instead.",
    )

    # --- Topics -----------------------------------------------------------------------
    topic_readings: str = Field(
        "temperature-data", description="Topic the sensors publish readings to."
    )
    topic_alerts: str = Field(
        "temperature-alerts", description="Topic the speed layer publishes alerts to."
    )
    topic_window_stats: str = Field(
        "temperature-window-stats",
        description="Topic of the speed layer's closed-window aggregates.",
    )
    topic_dlq: str = Field(
        "temperature-data.dlq",
        description="Dead-letter topic: bad readings with the reason in a header.",
    )
    readings_partitions: int = Field(
        6, ge=1, description="Partitions of the readings topic (and its DLQ)."
    )
    output_partitions: int = Field(
        3, ge=1, description="Partitions of the alerts and window-stats topics."
    )
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replication factor of every ClimateWatch topic (unset: 3, or fewer when the cluster has fewer brokers).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of every topic (unset: 2 when replicated 3 times or more, else the broker's default).",
    )
    retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description="Retention of the readings topic in ms (-1: forever).",
    )

    # --- Speed layer ------------------------------------------------------------------
    topic_window_partials: str = Field(
        "temperature-window-partials",
        description="Internal topic keyed by region: per-partition partial windows and watermarks.",
    )
    stream_group_id: str = Field(
        "climatewatch-alerts",
        description="Consumer group of the stream (its merge stage adds -regions).",
    )
    rules_file: Path | None = Field(
        None, description="Alert rules file (TOML; default: include/rules.toml)."
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A caught-up partition with no reading for this long (processing time) is idle: its watermark follows the clock.",
    )
    retire_after_s: float = Field(
        86_400.0,
        gt=0,
        description="A region or sensor the stream has not heard from for this long (processing time) is retired: the region's firing alerts resolve with the reason, the stream forgets it, and a name that comes back is new again. Must exceed every silent_seconds of region_silent and silent_sensor in the rules file (checked at start).",
    )
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the stream's Prometheus metrics (0: off)."
    )
    producer_delivery_timeout_ms: int = Field(
        120_000,
        ge=1000,
        description="How long the stream's producer (and the data-quality alerts') keeps retrying a record before its send counts as failed (ms); a failed send stops the stream without committing, and a restart publishes again.",
    )

    # --- Notification service (`climatewatch notify`) ---------------------------------
    notify_file: Path | None = Field(
        None,
        description="Routes and receivers of the notification service (TOML; see include/notify.example.toml). Unset: the webhook and SMTP settings below make the one default route.",
    )
    notify_group_id: str = Field(
        "climatewatch-notify",
        description="Consumer group of the notification service on the alerts topic.",
    )
    topic_notify_deliveries: str = Field(
        "temperature-alerts-deliveries",
        description="Compacted topic: the notification service's log of what each receiver accepted.",
    )
    topic_notify_dlq: str = Field(
        "temperature-alerts-undeliverable",
        description="Notifications a receiver refused for good, with the receiver and the last error.",
    )
    topic_silences: str = Field(
        "temperature-alert-silences",
        description="Compacted topic: silences and acknowledgements (`climatewatch alerts silence`, `ack`).",
    )
    notify_give_up_after_s: float = Field(
        86_400.0,
        gt=0,
        description="A notification a receiver keeps failing (down, 5xx) is retried this long, then parked on the undeliverable topic.",
    )
    notify_metrics_port: int = Field(
        9109, ge=0, le=65535, description="Port of the notification service's metrics (0: off)."
    )
    ui_base_url: str | None = Field(
        None,
        description="Base URL of the Airflow UI (e.g. http://localhost:8080): messages link to the region's ClimateWatch page.",
    )
    webhook_url: str | None = Field(
        None,
        description="Default route: alerts are POSTed as JSON to this URL (Slack-compatible 'text' field).",
    )
    webhook_hmac_secret: SecretStr | None = Field(
        None,
        description="Signs the default webhook's body (header X-ClimateWatch-Signature: sha256=<HMAC>).",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook call.")
    smtp_host: str | None = Field(None, description="Default route: SMTP relay for alert e-mails.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="SMTP connection: starttls (587), tls (465) or none (a local relay only).",
    )
    smtp_username: str | None = Field(
        None, description="SMTP login (AUTH), when the relay needs one."
    )
    smtp_password: SecretStr | None = Field(None, description="SMTP password (never logged).")
    alert_email_from: str = Field("climatewatch@localhost", description="Sender of alert e-mails.")
    alert_email_to: str | None = Field(
        None, description="Comma-separated recipients of alert e-mails (with SMTP_HOST)."
    )

    # --- Local state ------------------------------------------------------------------
    data_dir: Path = Field(
        Path("data"), description="Directory for the local broker, archive, warehouse and reports."
    )
    archive_uri: str | None = Field(
        None,
        description="Root of the Parquet archive: a path or s3://… URI (default: DATA_DIR/archive).",
    )

    # --- Archive (batch layer) ----------------------------------------------------------
    archive_interval_minutes: int = Field(
        15, ge=1, description="How often the archive_readings DAG runs (minutes)."
    )
    archive_batch_records: int = Field(
        200_000,
        ge=1,
        description="Records per archived batch: bounds the archiver's memory, one ledger entry each.",
    )
    archive_compact_after_minutes: int = Field(
        120,
        ge=0,
        description="A day is closed, and its small archive files merged, once no file was added to it for this long (minutes).",
    )

    # --- Local broker (climatewatch kafka start) --------------------------------------
    kafka_version: str = Field(
        "4.3.1", description="Apache Kafka version fetched from Maven Central."
    )
    kafka_cache_dir: Path = Field(
        Path.home() / ".cache" / "climatewatch",
        description="Where the Kafka jars are cached, shared by every checkout on the machine.",
    )
    kafka_port: int = Field(9092, ge=1, le=65535, description="Client port of the local broker.")
    kafka_controller_port: int = Field(
        9093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    kafka_heap: str = Field("512m", description="JVM heap of the local broker (-Xmx).")

    # --- Warehouse (batch layer) -----------------------------------------------------------
    reporting_interval_s: float = Field(
        10.0,
        gt=0,
        description="Seconds between two readings of one sensor: the warehouse's coverage expects 3600/interval readings per known sensor and hour.",
    )
    degree_day_base_c: float = Field(
        18.0, description="Base temperature of heating and cooling degree days (°C)."
    )
    climatology_csv: Path | None = Field(
        None,
        description="CSV of daily normals (columns region, month, day, normal_c) for the warehouse's anomalies; unset: each region's trailing mean.",
    )
    warehouse_trailing_days: int = Field(
        30,
        ge=1,
        description="Days the warehouse looks back: the anomaly baseline without climatology, and which sensors a region knows (for coverage).",
    )

    # --- Report ---
    report_min_coverage: float = Field(
        0.9,
        ge=0,
        le=1,
        description="The daily report flags a day as incomplete when a region's coverage is below this fraction (0.9: 90% of the expected readings).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server.strip()!r}")
        return value

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        if self.kafka_port == self.kafka_controller_port:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_PORT and {ENV_PREFIX}KAFKA_CONTROLLER_PORT must differ"
            )
        return self

    # --- derived values -----------------------------------------------------------------
    @property
    def archive_root(self) -> str:
        """Root of the archive as a string (local path or object-store URI)."""
        return self.archive_uri or str(self.data_dir / "archive")

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB warehouse file users query (replaced atomically by each recompute)."""
        return self.data_dir / "warehouse" / "climatewatch.duckdb"

    @property
    def kafka_state_dir(self) -> Path:
        """State of the local broker or cluster (``climatewatch kafka start``)."""
        return self.data_dir / "kafka"

    @property
    def quality_dir(self) -> Path:
        """Data quality's results, summary and Data Docs."""
        return self.data_dir / "quality"

    @property
    def quality_results_dir(self) -> Path:
        """One JSON validation result per archive batch."""
        return self.quality_dir / "results"

    @property
    def quality_summary_path(self) -> Path:
        """Per-batch, per-expectation summary that the warehouse's ``quality_results`` reads."""
        return self.quality_dir / "summary.parquet"

    @property
    def data_docs_dir(self) -> Path:
        """Great Expectations' static Data Docs site."""
        return self.quality_dir / "data_docs"

    @property
    def reports_dir(self) -> Path:
        """Daily climate reports, one folder per day, and their ``index.html``."""
        return self.data_dir / "reports"

    @property
    def run_dir(self) -> Path:
        """Pid and log files of the services ``climatewatch up`` supervises."""
        return self.data_dir / "run"

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME of the local Airflow (metadata database, logs, config)."""
        return (self.data_dir / "airflow").absolute()

    def kafka_client_config(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client ClimateWatch creates."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": self.kafka_timeout_ms,
            "request_timeout_ms": max(self.kafka_timeout_ms, 30_000),
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                config[name] = str(value)
        return config


@dataclass(frozen=True)
class SettingDoc:
    """One setting as a user sets it: its variable, its default and what it means."""

    name: str
    variable: str
    default: str
    description: str


def describe_settings() -> list[SettingDoc]:
    """Every setting, for the README and ``climatewatch settings``."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None else str(default)
        rows.append(SettingDoc(name, f"{ENV_PREFIX}{name.upper()}", shown, field.description or ""))
    return rows


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value raises ClimateWatchError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            variable = f"{ENV_PREFIX}{location.upper()}" if location else "settings"
            problems.append(f"{variable}: {error['msg']}")
        raise ClimateWatchError("invalid setting: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return load_settings()
