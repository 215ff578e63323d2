"""Each record's fields are declared once, in its dataclass; everything else derives from it.

The first test declares a new record type and shows that its schema follows from the
declaration alone; the others hold each consumer of the three real declarations (Arrow
schemas, the validator's required fields, the archive decoder, the quality suite) to
exactly the declared fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
import pytest

from include.contract import OPTIONAL_NUMBERS, REQUIRED_FIELDS, Reading, reading_arrow_schema
from include.events import Alert, WindowStats, alert_arrow_schema, window_stats_arrow_schema
from include.fields import FieldSpec, arrow_schema, column, field_names, specs

pytestmark = pytest.mark.unit

KAFKA_COLUMNS = ["kafka_partition", "kafka_offset"]


@dataclass(frozen=True, slots=True)
class _Gauge:
    station: str = column("str")
    at: str = column("ts")
    wind_ms: float | None = column("float", required=False)
    gusts: int = column("int", nullable=True)
    note: str | None = column("str", required=False, archived=False, default=None)


def test_a_new_record_gets_its_schema_from_its_declaration_alone() -> None:
    assert specs(_Gauge) == (
        FieldSpec("station", "str", True, False),
        FieldSpec("at", "ts", True, False),
        FieldSpec("wind_ms", "float", False, True),
        FieldSpec("gusts", "int", True, True),
    )
    assert field_names(_Gauge) == ("station", "at", "wind_ms", "gusts", "note")
    schema = arrow_schema(_Gauge)
    assert schema.names == ["station", "at", "wind_ms", "gusts", *KAFKA_COLUMNS]
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("gusts").type == pa.int64()
    assert not schema.field("station").nullable and schema.field("wind_ms").nullable
    assert schema.field("gusts").nullable
    assert arrow_schema(_Gauge, without=("station",)).names[0] == "at"


@pytest.mark.parametrize(
    ("record", "schema"),
    [
        (Reading, reading_arrow_schema),
        (Alert, alert_arrow_schema),
        (WindowStats, window_stats_arrow_schema),
    ],
)
def test_archive_schemas_are_the_declared_fields(record: type, schema: object) -> None:
    declared = [s.name for s in specs(record)]
    assert schema().names == [*declared, *KAFKA_COLUMNS]  # type: ignore[operator]


def test_window_stats_sensor_ids_travel_on_the_topic_but_are_not_archived() -> None:
    assert "sensor_ids" in field_names(WindowStats)
    assert "sensor_ids" not in [s.name for s in specs(WindowStats)]


def test_every_dataclass_field_is_declared_with_its_archive_type() -> None:
    for record in (Reading, Alert, WindowStats):
        for field in dataclasses.fields(record):
            assert "climatewatch" in field.metadata, f"{record.__name__}.{field.name}"


def test_the_validator_requires_exactly_the_required_fields() -> None:
    required = [s.name for s in specs(Reading) if s.required]
    assert ("schema_version", *required) == REQUIRED_FIELDS
    assert set(OPTIONAL_NUMBERS) == {s.name for s in specs(Reading) if not s.required}


def test_the_quality_suite_checks_the_archive_columns() -> None:
    from warehouse.quality.expectations import REQUIRED_COLUMNS, archive_column_types

    assert list(archive_column_types()) == reading_arrow_schema().names
    assert REQUIRED_FIELDS[1:] == REQUIRED_COLUMNS
