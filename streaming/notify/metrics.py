"""Prometheus metrics of the notification service (one registry per service, for tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "climatewatch_notify_deliveries",
            "Notification outcomes by receiver: delivered, retried, parked, already_done.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "climatewatch_notify_delivery_latency_seconds",
            "From reading an alert to its receiver's acceptance (retries and group wait included).",
            ["receiver"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.queued = Gauge(
            "climatewatch_notify_queue_depth",
            "Notifications waiting for their receiver's worker, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.outstanding = Gauge(
            "climatewatch_notify_outstanding_alerts",
            "Alerts read and not yet done with (their offsets are not committed).",
            registry=r,
        )
        self.parked = Counter(
            "climatewatch_notify_parked",
            "Notifications parked on the undeliverable topic, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.silenced = Counter(
            "climatewatch_notify_silenced",
            "Notifications held back by a silence, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.invalid = Counter(
            "climatewatch_notify_invalid_records",
            "Records on the alerts topic that are not alerts (logged and skipped).",
            registry=r,
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (0: not at all)."""
        if port:
            start_http_server(port, registry=self.registry)
