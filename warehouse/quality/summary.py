"""The data-quality summary: one row per batch, date, region and expectation.

``quality/summary.parquet`` is what the warehouse's ``quality_results`` view and the
report read; region is null for batch-wide expectations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from include.settings import Settings
from warehouse.archive.ledger import LedgerEntry, filesystem_for, write_atomically
from warehouse.quality.expectations import CRITICAL, expectation_name

if TYPE_CHECKING:
    import pyarrow as pa


def observed(result: Any) -> str | None:
    value = result.result.get("observed_value")
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def summary_rows(
    entry: LedgerEntry,
    validation: Any,
    unexpected: Mapping[str, list[dict[str, Any]]],
    validated_at: datetime,
) -> list[dict[str, Any]]:
    """Rows of the summary table: per (date, region) for row-level expectations.

    The (date, region) pairs are the batch's files (the archive partitions by both);
    ``unexpected`` holds the rows of each failed row-level expectation, by name
    (:meth:`~warehouse.quality.gx.GxValidator.unexpected_rows`).
    """
    pairs = sorted(
        {(f.date, f.region) for f in entry.files if f.dataset == "readings"},
        key=lambda pair: (pair[0] or "", pair[1] or ""),
    )
    rows = []
    for result in validation.results:
        config = result.expectation_config
        name = expectation_name(config)
        severity = (config.meta or {}).get("severity", CRITICAL)
        if result.result.get("unexpected_count") is None:  # batch-wide: schema, row count …
            rows += [
                {
                    "date": day,
                    "region": None,
                    "expectation": name,
                    "severity": severity,
                    "success": bool(result.success),
                    "unexpected_count": None,
                }
                for day in (entry.dates or (None,))
            ]
            continue
        per_pair: dict[tuple[str, str], int] = {}
        for row in unexpected.get(name, ()):
            key = (str(row.get("date")), str(row.get("region")))
            per_pair[key] = per_pair.get(key, 0) + 1
        for day, region in pairs:
            count = per_pair.get((str(day), str(region)), 0)
            rows.append(
                {
                    "date": day,
                    "region": region,
                    "expectation": name,
                    "severity": severity,
                    "success": bool(result.success) or count == 0,
                    "unexpected_count": count,
                }
            )
    for row in rows:
        row["batch_id"] = entry.batch_id
        row["validated_at"] = validated_at
    return rows


def summary_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("batch_id", pa.string()),
            ("date", pa.date32()),
            ("region", pa.string()),
            ("expectation", pa.string()),
            ("severity", pa.string()),
            ("success", pa.bool_()),
            ("unexpected_count", pa.int64()),
            ("validated_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def write_summary(settings: Settings, batch_ids: set[str], rows: list[dict[str, Any]]) -> None:
    """Replace these batches' rows in the summary Parquet (atomically)."""
    import io
    from datetime import date

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = settings.quality_summary_path
    schema = summary_schema()
    for row in rows:
        if isinstance(row["date"], str):
            row["date"] = date.fromisoformat(row["date"])
    new = pa.Table.from_pylist(rows, schema=schema)
    if path.exists():
        old = pq.read_table(path).cast(schema)
        keep = pc.invert(pc.is_in(old["batch_id"], value_set=pa.array(sorted(batch_ids))))
        new = pa.concat_tables([old.filter(keep), new])
    buffer = io.BytesIO()
    pq.write_table(new, buffer, compression="zstd")
    fs, _ = filesystem_for(str(path.parent))
    write_atomically(fs, str(path.resolve()), buffer.getvalue())
