"""What every ClimateWatch DAG shares: owner, retries with backoff, start date.

One owner for these conventions; the DAG-integrity test checks that each DAG keeps them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "climatewatch",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
