"""The speed layer's output contracts: alerts and closed-window statistics.

Both are JSON objects on their topics (``temperature-alerts`` keyed by region,
``temperature-window-stats`` keyed by region) and rows in the archive; this module owns
their fields (declared once, in the dataclasses; see :mod:`include.fields`), their
serialization and their pyarrow schemas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

import orjson

from include.fields import arrow_schema, column, field_names

if TYPE_CHECKING:
    import pyarrow as pa

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["firing", "resolved"]


def alert_id_for(rule: str, region: str, window_start: str) -> str:
    """Deterministic id: the same rule, region and window always give the same id,
    so reprocessing after a crash repeats an alert instead of inventing a new one."""
    digest = hashlib.sha1(f"{rule}|{region}|{window_start}".encode()).hexdigest()[:16]
    return f"{rule}-{region}-{digest}"


class _JsonRecord:
    """JSON on a topic: a record's fields, nothing else; unknown fields are ignored."""

    __slots__ = ()

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # natively, without asdict()'s deep copy of every field

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        body: dict[str, Any] = orjson.loads(raw)
        return cls(**{name: body.get(name) for name in field_names(cls)})


@dataclass(frozen=True, slots=True)
class Alert(_JsonRecord):
    """One alert event; ``window_start``/``window_end`` are RFC 3339 UTC strings."""

    alert_id: str = column("str")
    rule: str = column("str")
    severity: Severity = column("str")
    region: str = column("str")
    window_start: str = column("ts")
    window_end: str = column("ts")
    value: float | None = column("float", required=False)
    threshold: float | None = column("float", required=False)
    status: AlertStatus = column("str")
    message: str = column("str", required=False)
    emitted_at: str = column("ts", required=False)


@dataclass(frozen=True, slots=True)
class WindowStats(_JsonRecord):
    """Aggregates of one closed event-time window of one region, as the speed layer saw it."""

    region: str = column("str")
    window_start: str = column("ts")
    window_end: str = column("ts")
    count: int = column("int")
    # A window of invalid records only has no temperature: null on the topic (NaN in
    # memory). The decoder still requires them (such windows go to rejected/).
    mean_c: float = column("float", nullable=True)
    min_c: float = column("float", nullable=True)
    max_c: float = column("float", nullable=True)
    sensors: int = column("int", required=False)
    late: int = column("int", required=False)
    invalid: int = column("int", required=False)
    closed_by: Literal["watermark", "idle"] = column("str", required=False)
    emitted_at: str = column("ts", required=False)
    # The sensors that reported in the window: lets a restarted stream rebuild which
    # sensors it knows (silent-sensor rule). Not archived; `sensors` is their count.
    sensor_ids: list[str] | None = column("str", required=False, archived=False, default=None)


def alert_arrow_schema() -> pa.Schema:
    """Columns of ``alerts/`` in the archive (derived from :class:`Alert`)."""
    return arrow_schema(Alert)


def window_stats_arrow_schema() -> pa.Schema:
    """Columns of ``window_stats/`` in the archive (derived from :class:`WindowStats`)."""
    return arrow_schema(WindowStats)
