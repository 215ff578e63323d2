"""What a scenario found: lost and duplicated readings counted with DuckDB, and the table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ScenarioResult:
    scenario: str
    produced: int = 0
    acknowledged: int = 0
    failed: int = 0
    archived: int = 0
    lost: int = 0
    duplicated: int = 0
    alerts_expected: int = 0
    alerts_seen: int = 0
    isr_recovered_s: float | None = None
    restarts: int = 0  # stream instances restarted after exiting on their own
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what makes the scenario fail

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.lost == 0
            and self.duplicated == 0
            and self.alerts_seen >= self.alerts_expected
        )


def count_archive(root: Path, acknowledged: list[tuple[str, int]]) -> tuple[int, int, int]:
    """(archived rows, lost, duplicated) of the readings archive under ``root``.

    Lost: an acknowledged (sensor_id, epoch ms) that no archived row has; duplicated: a
    (sensor_id, ts) archived more than once.
    """
    import duckdb
    import pyarrow as pa

    acked = pa.table(
        {
            "sensor_id": [k[0] for k in acknowledged],
            "ms": pa.array([k[1] for k in acknowledged], pa.int64()),
        }
    )
    con = duckdb.connect()
    try:
        con.register("acked", acked)
        if not any(root.rglob("*.parquet")):
            con.execute("CREATE TABLE archived (sensor_id VARCHAR, ms BIGINT, n BIGINT)")
        else:
            con.execute(
                "CREATE TABLE archived AS SELECT sensor_id, epoch_ms(ts) AS ms, count(*) AS n "
                f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true) GROUP BY ALL"
            )
        archived, duplicated = con.execute(
            "SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n > 1) FROM archived"
        ).fetchone()
        (lost,) = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT sensor_id, ms FROM acked) "
            "ANTI JOIN archived USING (sensor_id, ms)"
        ).fetchone()
    finally:
        con.close()
    return int(archived), int(lost), int(duplicated)


COLUMNS = (
    ("scenario", 14),
    ("produced", 9),
    ("acked", 9),
    ("archived", 9),
    ("lost", 5),
    ("dup", 5),
    ("alerts exp", 10),
    ("alerts seen", 11),
    ("isr→3 s", 8),
    ("restarts", 8),
    ("time s", 7),
    ("ok", 3),
)


def table(results: list[ScenarioResult]) -> Iterator[str]:
    """The result table, one row per scenario (then the notes)."""
    yield "  ".join(
        f"{title:>{width}}" if i else f"{title:<{width}}"
        for i, (title, width) in enumerate(COLUMNS)
    )
    for r in results:
        cells = (
            r.scenario,
            r.produced,
            r.acknowledged,
            r.archived,
            r.lost,
            r.duplicated,
            r.alerts_expected,
            r.alerts_seen,
            "-" if r.isr_recovered_s is None else f"{r.isr_recovered_s:.1f}",
            r.restarts,
            f"{r.elapsed_s:.0f}",
            "yes" if r.ok else "NO",
        )
        yield "  ".join(
            f"{cell!s:>{width}}" if i else f"{cell!s:<{width}}"
            for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
        )
    for r in results:
        for line in [*r.problems, *r.notes]:
            yield f"  {r.scenario}: {line}"
