"""``climatewatch quality …``: the data_quality DAG's code, run by hand.

Registered in include/ops/cli.py. Great Expectations is imported only by the commands.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.console import Console

from include.errors import ClimateWatchError
from include.settings import get_settings

console = Console()
quality_app = typer.Typer(
    help="Data quality: Great Expectations on each archived batch, quarantine of the "
    "readings that fail, Data Docs.",
    no_args_is_help=True,
)


def _checked_dates(dates: list[str] | None) -> list[str] | None:
    for text in dates or ():
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ClimateWatchError(f"--date {text!r}: expected YYYY-MM-DD") from None
    return dates or None


@quality_app.command("validate")
def validate_command(
    dates: Annotated[
        list[str] | None,
        typer.Option(
            "--date",
            help="Validate every batch touching this event date again (repeatable). "
            "Default: the batches not validated yet.",
        ),
    ] = None,
    alerts: Annotated[
        bool, typer.Option(help="Publish a data_quality alert for each quarantine.")
    ] = True,
) -> None:
    """Validate new archive batches; exit 1 when one fails a critical expectation."""
    from warehouse.quality.validate import ensure_validated, validate_batches

    settings = get_settings()
    run = validate_batches(
        settings, dates=_checked_dates(dates), publish=alerts, progress=console.print
    )
    ensure_validated(run)


@quality_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validated and pending batches, quarantined batches, latest failures, Data Docs."""
    from rich.table import Table

    from warehouse.quality.validate import status

    found = status(get_settings())
    if as_json:
        print(json.dumps(found, indent=1, default=str))
        return
    console.print(
        f"{found['validated']} of {found['batches']} archive batches validated, "
        f"{found['pending']} pending; Data Docs: {found['data_docs'] or 'not built yet'}"
    )
    if found["quarantined"]:
        table = Table("quarantined batch", "set aside", "dates", "why", title="Quarantine")
        for item in found["quarantined"]:
            what = "whole batch" if item["scope"] == "batch" else "readings"
            table.add_row(
                item["batch_id"],
                f"{item['rows']:,} ({what})",
                ", ".join(item["dates"]),
                item["reason"],
            )
        console.print(table)
    else:
        console.print("no quarantined batch")
    if found["with_failures"]:
        table = Table("batch", "severity", "expectation", "unexpected", title="Latest failures")
        for outcome in found["with_failures"]:
            for failure in outcome["failures"]:
                count = failure["unexpected_count"]
                table.add_row(
                    outcome["batch_id"],
                    failure["severity"],
                    failure["expectation"],
                    "" if count is None else f"{count:,}",
                )
        console.print(table)


@quality_app.command("release")
def release_command(
    batch_id: Annotated[str, typer.Argument(help="The quarantined batch (see `quality status`).")],
) -> None:
    """Put a quarantined batch, or the readings set aside from it, back into the warehouse
    (after a person checked them)."""
    from warehouse.quality.validate import release

    done = release(get_settings(), batch_id)
    console.print(
        f"released {done['batch_id']}: {done['rows']:,} readings back in the warehouse "
        f"(recomputed {', '.join(done['dates'])})"
    )
