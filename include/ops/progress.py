"""Live terminal displays for long-running commands (rich)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from include.simulator import SimulationStats


def simulation_table(stats: SimulationStats, arrived: dict[str, int] | None = None) -> Table:
    """Readings sent per region (and arrived back from the topic, when known)."""
    title = (
        f"sent {stats.sent:,}  acknowledged {stats.acknowledged:,}  failed {stats.failed:,}  "
        f"{stats.rate:,.0f} readings/s"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("region")
    table.add_column("sent", justify="right")
    if arrived is not None:
        table.add_column("arrived in Kafka", justify="right")
    regions = sorted(set(stats.by_region) | set(arrived or {}))
    for region in regions:
        row = [region, f"{stats.by_region.get(region, 0):,}"]
        if arrived is not None:
            row.append(f"{arrived.get(region, 0):,}")
        table.add_row(*row)
    return table


@contextlib.contextmanager
def simulation_progress(console: Console) -> Iterator[Callable[[SimulationStats], None]]:
    """A callback that refreshes a live per-region table while the simulator runs."""
    if not console.is_terminal:
        last = [0]

        def log_line(stats: SimulationStats) -> None:
            if stats.sent - last[0] >= 10_000:
                last[0] = stats.sent
                console.print(f"sent {stats.sent:,} ({stats.rate:,.0f}/s)")

        yield log_line
        return
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        yield lambda stats: live.update(simulation_table(stats))
