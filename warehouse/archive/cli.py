"""``climatewatch archive``: run the archiver by hand (same code as the DAG) and see its state."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()
archive_app = typer.Typer(
    help="The Parquet archive of the Kafka topics (exactly once, offset ledger).",
    no_args_is_help=True,
)


@archive_app.command("run")
def archive_run(
    topic: Annotated[
        list[str] | None,
        typer.Option(
            help="Topic to archive (repeatable; default: readings, alerts, window stats)."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Partitions archived in parallel (one process each).")
    ] = 1,
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="Merge the small files of closed days.")
    ] = True,
) -> None:
    """Archive every partition up to its current end, then compact closed days."""
    from datetime import timedelta

    from rich.table import Table

    from include.settings import get_settings
    from warehouse.archive.compaction import compact as compact_archive
    from warehouse.archive.layout import archived_topics
    from warehouse.archive.run import archive_topic
    from warehouse.archive.summary import run_totals, write_ledger_summary

    settings = get_settings()
    table = Table("topic", "partition", "offsets", "rows", "rejected", "lost", "files")
    results = []
    for name in topic or archived_topics(settings):
        for result in archive_topic(settings, name, workers=workers):
            results.append(result)
            table.add_row(
                result.topic,
                str(result.partition),
                f"{result.start_offset}..{result.end_offset}",
                str(result.rows),
                str(result.rejected),
                str(result.lost),
                str(result.files),
            )
    console.print(table)
    if compact:
        done = compact_archive(
            settings.archive_root,
            closed_after=timedelta(minutes=settings.archive_compact_after_minutes),
        )
        console.print(
            f"compaction: {done.files_before} files merged into {len(done.groups)}"
            + (f", {done.recovered} interrupted compaction(s) recovered" if done.recovered else "")
        )
    write_ledger_summary(settings.archive_root, run_totals(results))
    console.print(f"archive: {settings.archive_root}")


@archive_app.command("status")
def archive_status_command() -> None:
    """Per partition: archived up to, Kafka end offset, lag in records, files, rejected count."""
    from rich.table import Table

    from include.settings import get_settings
    from warehouse.archive.summary import archive_status

    settings = get_settings()
    table = Table(
        "topic", "partition", "archived to", "kafka end", "lag", "files", "rows", "rejected", "lost"
    )
    for status in archive_status(settings):
        table.add_row(
            status.topic,
            str(status.partition),
            "-" if status.archived_to is None else str(status.archived_to),
            str(status.end_offset),
            str(status.lag),
            str(status.files),
            str(status.rows),
            str(status.rejected),
            str(status.lost),
        )
    console.print(table)
    console.print(f"archive: {settings.archive_root}")
