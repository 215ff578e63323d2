"""Write archive files and ledger entries exactly as the archiver lays them out.

The warehouse tests build their own small archives with pyarrow (the archive layout
contract: Hive partitions by event date, readings also by region, the ``region`` column
only in the path) and record each batch in the real ledger, so the warehouse is tested
on the same files and ledger it reads in production.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from include.contract import reading_arrow_schema
from include.events import alert_arrow_schema, window_stats_arrow_schema
from warehouse.ledger import ArchivedFile, Ledger, LedgerEntry

READINGS_TOPIC = "temperature-data"
ALERTS_TOPIC = "temperature-alerts"
WINDOW_STATS_TOPIC = "temperature-window-stats"


def readings_schema() -> pa.Schema:
    schema = reading_arrow_schema()
    return schema.remove(schema.get_field_index("region"))


@dataclass
class FakeArchive:
    """An archive root that batches are appended to, one ledger entry per batch."""

    root: Path
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)

    def _batch(self, topic: str, partition: int, count: int) -> tuple[int, int]:
        start = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = start + count
        return start, start + count

    def _write(self, relative: str, table: pa.Table) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")

    def add_readings(
        self,
        rows: list[tuple[str, str, datetime, float]],
        *,
        partition: int = 0,
        topic: str = READINGS_TOPIC,
    ) -> LedgerEntry:
        """One archived batch of readings (sensor_id, region, ts, temperature_c)."""
        start, end = self._batch(topic, partition, len(rows))
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for offset, (sensor, region, ts, temperature) in enumerate(rows, start):
            groups[(ts.date().isoformat(), region)].append(
                {
                    "sensor_id": sensor,
                    "ts": ts,
                    "temperature_c": temperature,
                    "humidity_pct": None,
                    "pressure_hpa": None,
                    "kafka_partition": partition,
                    "kafka_offset": offset,
                }
            )
        files = []
        name = f"{topic}-p{partition}-{start:012d}-{end:012d}.parquet"
        for (day, region), group in sorted(groups.items()):
            relative = f"readings/date={day}/region={region}/{name}"
            self._write(relative, pa.Table.from_pylist(group, schema=readings_schema()))
            files.append(ArchivedFile(relative, "readings", len(group), day, region))
        entry = LedgerEntry(topic, partition, start, end, tuple(files), rows=len(rows))
        Ledger(str(self.root)).append(entry)
        return entry

    def _add_events(
        self, dataset: str, topic: str, schema: pa.Schema, rows: list[dict], key: str
    ) -> LedgerEntry:
        start, end = self._batch(topic, 0, len(rows))
        groups: dict[str, list[dict]] = defaultdict(list)
        for offset, row in enumerate(rows, start):
            full = {"kafka_partition": 0, "kafka_offset": offset, **row}
            groups[row[key].date().isoformat()].append(full)
        files = []
        name = f"{topic}-p0-{start:012d}-{end:012d}.parquet"
        for day, group in sorted(groups.items()):
            relative = f"{dataset}/date={day}/{name}"
            self._write(relative, pa.Table.from_pylist(group, schema=schema))
            files.append(ArchivedFile(relative, dataset, len(group), day))
        entry = LedgerEntry(topic, 0, start, end, tuple(files), rows=len(rows))
        Ledger(str(self.root)).append(entry)
        return entry

    def add_alerts(self, rows: list[dict]) -> LedgerEntry:
        """Alert rows (alert_arrow_schema fields), partitioned by window start date."""
        return self._add_events("alerts", ALERTS_TOPIC, alert_arrow_schema(), rows, "window_start")

    def add_window_stats(self, rows: list[dict]) -> LedgerEntry:
        """Window-stats rows (window_stats_arrow_schema fields), by window start date."""
        return self._add_events(
            "window_stats", WINDOW_STATS_TOPIC, window_stats_arrow_schema(), rows, "window_start"
        )
