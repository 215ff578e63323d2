"""The regions of the default sensor network and their climate.

The simulator draws its signal from these, data quality checks readings against their
plausible bands, and the report orders regions by them. A deployment with other regions
replays its own data: readings from unknown regions are
still archived and aggregated, and data quality flags them as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    baseline_c: float  # mean temperature of the season
    diurnal_amplitude_c: float  # half the day-night swing
    plausible_min_c: float
    plausible_max_c: float


DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("paris", 11.0, 4.0, -20.0, 42.0),
    Region("lyon", 10.0, 5.0, -22.0, 42.0),
    Region("marseille", 15.0, 4.0, -12.0, 44.0),
    Region("lille", 9.0, 3.5, -22.0, 40.0),
    Region("bordeaux", 13.0, 5.0, -16.0, 43.0),
    Region("nantes", 12.0, 4.0, -16.0, 41.0),
    Region("strasbourg", 8.0, 5.0, -25.0, 40.0),
    Region("toulouse", 13.0, 5.5, -18.0, 44.0),
    Region("nice", 16.0, 3.5, -8.0, 42.0),
    Region("brest", 11.0, 2.5, -12.0, 36.0),
    Region("dakar", 25.0, 3.5, 10.0, 45.0),
    Region("saint-louis", 24.0, 5.0, 8.0, 47.0),
    Region("thies", 26.0, 5.0, 10.0, 47.0),
    Region("ziguinchor", 27.0, 4.0, 12.0, 45.0),
    Region("kaolack", 28.0, 6.0, 12.0, 48.0),
    Region("tambacounda", 29.0, 7.0, 12.0, 50.0),
    Region("montreal", -2.0, 4.0, -40.0, 36.0),
    Region("oslo", 1.0, 3.0, -35.0, 34.0),
    Region("reykjavik", 2.0, 2.0, -25.0, 26.0),
    Region("lisbon", 15.0, 4.0, -5.0, 46.0),
)
REGIONS_BY_NAME = {region.name: region for region in DEFAULT_REGIONS}
KNOWN_REGION_NAMES = frozenset(REGIONS_BY_NAME)


def regions(count: int) -> tuple[Region, ...]:
    """The first ``count`` default regions (the simulator's ``--regions``)."""
    if not 1 <= count <= len(DEFAULT_REGIONS):
        raise ValueError(f"regions must be between 1 and {len(DEFAULT_REGIONS)}, got {count}")
    return DEFAULT_REGIONS[:count]
