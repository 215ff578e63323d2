"""The stream's producer side: everything either stage publishes goes through here.

Both stages share one producer, so one ``flush`` (see :mod:`streaming.checkpoint`)
acknowledges every output before any offset is committed. Keyed outputs (partials,
window stats, alerts) go to the partition Kafka's default partitioner would pick for the
region, so a region's records keep their order; heartbeats go to every partials
partition; a rejected reading goes to the DLQ with its original key and bytes and the
reason in headers. What is published is counted here (windows, alerts, DLQ records).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from include.contract import Rejection, format_epoch_ms
from include.events import Alert, WindowStats
from include.settings import Settings
from streaming.metrics import StreamMetrics
from streaming.silence import partition_of
from streaming.windowing import ClosedWindow, Partial


class Outputs:
    def __init__(self, settings: Settings, producer: Any, metrics: StreamMetrics) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self._partitions: dict[tuple[str, str], int] = {}  # (topic, region key) -> partition

    def send_keyed(self, topic: str, region: str, value: bytes) -> None:
        """Send keyed by region to the partition Kafka's default partitioner would pick,
        remembered per key: kafka-python hashes every key in pure Python (~20 µs)."""
        target = self._partitions.get((topic, region))
        if target is None:
            count = len(self.producer.partitions_for(topic))
            target = self._partitions[(topic, region)] = partition_of(region, count)
        self.producer.send(topic, key=region.encode(), value=value, partition=target)

    def partials(self, partials: list[Partial]) -> int:
        """One message per region (its partials in order), keyed by region like each partial."""
        by_region: dict[str, list[dict[str, Any]]] = {}
        for partial in partials:
            by_region.setdefault(partial.region, []).append(partial.to_message())
        for region, items in by_region.items():
            self.send_keyed(
                self.settings.topic_window_partials,
                region,
                orjson.dumps({"type": "partials", "items": items}),
            )
        return len(by_region)

    def heartbeat(self, message: bytes, partitions: Sequence[int]) -> int:
        """One input partition's watermark message to each of the partials ``partitions``."""
        for target in partitions:
            self.producer.send(self.settings.topic_window_partials, value=message, partition=target)
        return len(partitions)

    def dlq(self, record: Any, rejection: Rejection) -> None:
        """A rejected reading, as it arrived, with why and where it came from in headers."""
        self.producer.send(
            self.settings.topic_dlq,
            key=record.key,
            value=record.value,
            headers=[
                ("reason", rejection.reason.encode()),
                ("detail", rejection.detail.encode()[:500]),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ],
        )
        self.metrics.records.labels("invalid").inc()
        self.metrics.invalid.labels(rejection.reason).inc()

    def window(self, window: ClosedWindow, emitted_at: str) -> int:
        """A closed (or republished) regional window to the window-stats topic."""
        stats = WindowStats(
            region=window.region,
            window_start=format_epoch_ms(window.start_ms),
            window_end=format_epoch_ms(window.end_ms),
            count=window.count,
            mean_c=window.mean_c if window.mean_c is not None else float("nan"),
            min_c=window.min_c if window.min_c is not None else float("nan"),
            max_c=window.max_c if window.max_c is not None else float("nan"),
            sensors=len(window.sensors),
            late=window.late,
            invalid=window.invalid,
            closed_by=window.closed_by,  # type: ignore[arg-type]
            emitted_at=emitted_at,
            sensor_ids=sorted(window.sensors),
        )
        self.send_keyed(self.settings.topic_window_stats, window.region, stats.to_json())
        self.metrics.windows.labels(window.closed_by).inc()
        return 1

    def alert(self, alert: Alert) -> None:
        """An alert event to the alerts topic (key = region)."""
        self.send_keyed(self.settings.topic_alerts, alert.region, alert.to_json())
        self.metrics.alerts.labels(alert.rule, alert.status).inc()
