"""The speed layer's output contracts: alerts and closed-window statistics.

Both are JSON objects on their topics (``temperature-alerts`` keyed by region,
``temperature-window-stats`` keyed by region) and rows in the archive; this module owns
their fields, their serialization and their pyarrow schemas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["firing", "resolved"]


def alert_id_for(rule: str, region: str, window_start: str) -> str:
    """Deterministic id: the same rule, region and window always give the same id,
    so reprocessing after a crash repeats an alert instead of inventing a new one."""
    digest = hashlib.sha1(f"{rule}|{region}|{window_start}".encode()).hexdigest()[:16]
    return f"{rule}-{region}-{digest}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event; ``window_start``/``window_end`` are RFC 3339 UTC strings."""

    alert_id: str
    rule: str
    severity: Severity
    region: str
    window_start: str
    window_end: str
    value: float | None
    threshold: float | None
    status: AlertStatus
    message: str
    emitted_at: str

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # natively, without asdict()'s deep copy of every field

    @classmethod
    def from_json(cls, raw: bytes) -> Alert:
        body: dict[str, Any] = orjson.loads(raw)
        return cls(**{name: body.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Aggregates of one closed event-time window of one region, as the speed layer saw it."""

    region: str
    window_start: str
    window_end: str
    count: int
    mean_c: float
    min_c: float
    max_c: float
    sensors: int
    late: int
    invalid: int
    closed_by: Literal["watermark", "idle"]
    emitted_at: str
    # The sensors that reported in the window: lets a restarted stream rebuild which
    # sensors it knows (silent-sensor rule). Not archived; `sensors` is their count.
    sensor_ids: list[str] | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # natively, without asdict()'s deep copy of every field

    @classmethod
    def from_json(cls, raw: bytes) -> WindowStats:
        body: dict[str, Any] = orjson.loads(raw)
        return cls(**{name: body.get(name) for name in cls.__dataclass_fields__})


def alert_arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("alert_id", pa.string()),
            ("rule", pa.string()),
            ("severity", pa.string()),
            ("region", pa.string()),
            ("window_start", pa.timestamp("us", tz="UTC")),
            ("window_end", pa.timestamp("us", tz="UTC")),
            ("value", pa.float64()),
            ("threshold", pa.float64()),
            ("status", pa.string()),
            ("message", pa.string()),
            ("emitted_at", pa.timestamp("us", tz="UTC")),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
        ]
    )


def window_stats_arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("region", pa.string()),
            ("window_start", pa.timestamp("us", tz="UTC")),
            ("window_end", pa.timestamp("us", tz="UTC")),
            ("count", pa.int64()),
            ("mean_c", pa.float64()),
            ("min_c", pa.float64()),
            ("max_c", pa.float64()),
            ("sensors", pa.int64()),
            ("late", pa.int64()),
            ("invalid", pa.int64()),
            ("closed_by", pa.string()),
            ("emitted_at", pa.timestamp("us", tz="UTC")),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
        ]
    )
