"""Prometheus metrics of the stream (one registry per processor, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "climatewatch_stream_records",
            "Readings consumed, by outcome (valid, late, invalid).",
            ["outcome"],
            registry=r,
        )
        self.invalid = Counter(
            "climatewatch_stream_invalid_records",
            "Records sent to the DLQ, by reason.",
            ["reason"],
            registry=r,
        )
        self.lag = Gauge(
            "climatewatch_stream_consumer_lag",
            "Records behind the end, per partition.",
            ["partition"],
            registry=r,
        )
        self.open_windows = Gauge(
            "climatewatch_stream_open_windows", "Windows open in this instance.", registry=r
        )
        self.paused = Gauge(
            "climatewatch_stream_paused_partitions",
            "Input partitions paused because their event time ran ahead (backlog only).",
            registry=r,
        )
        self.pauses = Counter(
            "climatewatch_stream_partition_pauses",
            "Times an input partition was paused to let the slowest one catch up.",
            registry=r,
        )
        self.windows = Counter(
            "climatewatch_stream_windows_closed",
            "Regional windows published, by what closed them.",
            ["closed_by"],
            registry=r,
        )
        self.alerts = Counter(
            "climatewatch_stream_alerts",
            "Alerts published, by rule and status.",
            ["rule", "status"],
            registry=r,
        )
        self.names = Gauge(
            "climatewatch_stream_known_names",
            "Regions and sensors the rules remember, by kind (retired ones are forgotten).",
            ["kind"],
            registry=r,
        )
        self.retired = Counter(
            "climatewatch_stream_retired_names",
            "Regions and sensors retired: not heard from for CLIMATEWATCH_RETIRE_AFTER_S.",
            ["kind"],
            registry=r,
        )
        self.latency = Histogram(
            "climatewatch_stream_processing_latency_seconds",
            "From a record's Kafka timestamp to its processing.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (0: not at all)."""
        if port:
            start_http_server(port, registry=self.registry)
