"""Record fields declared once: each record type's dataclass is the one declaration.

A reading, an alert and a window statistic are frozen dataclasses whose fields carry
their archive type in metadata (:func:`column`). Everything else that must agree with
them derives from that declaration: the Arrow schemas of the archive
(:func:`arrow_schema`), the archive's decoder and column order (:func:`specs`), the
validator's list of required fields and the data-quality suite's column types. Adding a
field to a dataclass is the whole change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa

Kind = Literal["str", "int", "float", "ts"]
"""How a field is typed in the archive: text, integer, float, or an instant (UTC, µs)."""

_METADATA_KEY = "climatewatch"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One archived field: its name, its kind, whether a record may omit it, and whether
    its archive column may hold nulls (by default exactly when it may be omitted)."""

    name: str
    kind: Kind
    required: bool
    nullable: bool


def column(
    kind: Kind,
    *,
    required: bool = True,
    nullable: bool | None = None,
    archived: bool = True,
    **field_args: Any,
) -> Any:
    """A dataclass field with its archive type.

    ``required=False``: a record without it is still valid (the column is nullable).
    ``nullable=True`` on a required field: the archive column may hold nulls all the same
    (rows written by other means than the decoder, such as the speed layer's empty windows).
    ``archived=False``: carried on the topic only (for instance a restart hint), never a
    column of the archive.
    """
    metadata = {
        _METADATA_KEY: (kind, required, not required if nullable is None else nullable, archived)
    }
    return dataclasses.field(metadata=metadata, **field_args)


def specs(record_type: type) -> tuple[FieldSpec, ...]:
    """The archived fields of a record dataclass, in declaration order."""
    found = []
    for field in dataclasses.fields(record_type):
        kind, required, nullable, archived = field.metadata[_METADATA_KEY]
        if archived:
            found.append(FieldSpec(field.name, kind, required, nullable))
    return tuple(found)


def field_names(record_type: type) -> tuple[str, ...]:
    """Every field of a record dataclass, archived or not (what its JSON may carry)."""
    return tuple(field.name for field in dataclasses.fields(record_type))


def arrow_type(kind: Kind) -> pa.DataType:
    import pyarrow as pa

    return {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "ts": pa.timestamp("us", tz="UTC"),
    }[kind]


def arrow_schema(record_type: type, *, without: tuple[str, ...] = ()) -> pa.Schema:
    """Archive schema of a record: its archived fields, then where in Kafka it was.

    ``without`` leaves out columns held elsewhere (the Hive partition column ``region``
    of the readings archive).
    """
    import pyarrow as pa

    columns = [
        pa.field(spec.name, arrow_type(spec.kind), nullable=spec.nullable)
        for spec in specs(record_type)
        if spec.name not in without
    ]
    columns += [
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ]
    return pa.schema(columns)
