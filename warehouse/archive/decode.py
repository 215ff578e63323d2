"""Decoding alert and window-stats records into archive rows, one record at a time.

A record is parsed with :mod:`include.events` (``Alert.from_json`` /
``WindowStats.from_json``), then typed field by field against the fields its dataclass
declares (:func:`include.fields.specs`, the one declaration the Arrow schemas derive from
too), so one bad record is rejected with a reason instead of failing the batch. Readings
are decoded by their own contract (:func:`include.contract.parse_reading`) in
:mod:`warehouse.archive.batch`.
"""

from __future__ import annotations

from typing import Any

import orjson

from include.contract import (
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    WRONG_TYPE,
    Rejection,
    parse_timestamp,
)
from include.events import Alert, WindowStats
from include.fields import FieldSpec, specs
from warehouse.archive.layout import ALERTS, EPOCH, US, WINDOW_STATS, Kind

_EVENT_TYPES: dict[str, type[Alert] | type[WindowStats]] = {
    ALERTS: Alert,
    WINDOW_STATS: WindowStats,
}
# kind -> its archived fields, in the order of its Arrow schema (and of a decoded row)
EVENT_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    kind: specs(record_type) for kind, record_type in _EVENT_TYPES.items()
}


def field_index(kind: Kind, name: str) -> int:
    """Position of the field ``name`` in the rows :func:`decode_event` returns for ``kind``."""
    return [spec.name for spec in EVENT_FIELDS[kind]].index(name)


def _epoch_us(ts: Any) -> int:
    return (ts - EPOCH) // US


def _timestamp_us(raw: Any, spec: FieldSpec) -> int | Rejection | None:
    if raw is None:
        return Rejection(MISSING_FIELD, spec.name) if spec.required else None
    ts = parse_timestamp(raw)
    if type(ts) is Rejection:
        return Rejection(ts.reason, f"{spec.name}: {ts.detail}")
    return _epoch_us(ts)


def _checked(value: Any, spec: FieldSpec) -> Any:
    if value is None:
        return Rejection(MISSING_FIELD, spec.name) if spec.required else None
    kind = spec.kind
    if kind == "str":
        ok = type(value) is str
    elif kind == "int":
        ok = type(value) is int
    else:
        ok = type(value) in (int, float)
        value = float(value) if ok else value
    if not ok:
        return Rejection(WRONG_TYPE, f"{spec.name} is {type(value).__name__}, expected {kind}")
    return value


def decode_event(value: bytes | None, kind: Kind) -> list[Any] | Rejection:
    """An alert or window-stats record as a row (schema order, without Kafka columns)."""
    if value is None:
        return Rejection(NOT_JSON, "record has no value (tombstone)")
    try:
        event = _EVENT_TYPES[kind].from_json(value)
    except orjson.JSONDecodeError as exc:
        return Rejection(NOT_JSON, f"{kind}: {str(exc)[:120]}")
    except (TypeError, AttributeError):
        return Rejection(NOT_OBJECT, f"{kind}: JSON is not an object")
    row: list[Any] = []
    for spec in EVENT_FIELDS[kind]:
        raw = getattr(event, spec.name)
        typed = _timestamp_us(raw, spec) if spec.kind == "ts" else _checked(raw, spec)
        if type(typed) is Rejection:
            return Rejection(typed.reason, f"{kind}: {typed.detail}")
        row.append(typed)
    return row
