"""Kafka's own Java consumer, as the ceiling the stream's throughput is printed beside.

``kafka-consumer-perf-test`` (``org.apache.kafka.tools.ConsumerPerformance``) comes with
Kafka's tools jar, which the broker does not need: bench/kafka-tools/pom.xml fetches it
with Maven once, beside the broker jars in the same cache. Nothing is downloaded at run
time from elsewhere than Maven Central.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from include.settings import Settings

TOOLS_POM = Path(__file__).resolve().parent / "kafka-tools" / "pom.xml"
CONSUMER_PERFORMANCE = "org.apache.kafka.tools.ConsumerPerformance"


def tools_classpath(settings: Settings) -> str:
    from include.kafka_local.jars import fetch_runtime

    target = settings.kafka_cache_dir / f"kafka-tools-{settings.kafka_version}" / "libs"
    return str(fetch_runtime(TOOLS_POM, target, settings.kafka_version, "kafka-tools-*.jar") / "*")


def java_consumer_rate(
    settings: Settings, topic: str, total: int, fetch: dict[str, int], timeout_s: float = 600
) -> float | str:
    """Readings/s of Kafka's Java consumer reading ``total`` records of ``topic`` from the
    start with ``fetch`` (the stream's fetch settings), counted over its fetch time (the
    group join left out); a sentence instead when it could not run."""
    from include.errors import ClimateWatchError
    from include.kafka_local.jars import require_java

    try:
        command = [
            require_java(),
            "-Xmx512m",
            "-cp",
            tools_classpath(settings),
            CONSUMER_PERFORMANCE,
            "--bootstrap-server",
            settings.bootstrap_servers,
            "--topic",
            topic,
            "--num-records",
            str(total),
            "--group",
            f"bench-java-ceiling-{topic}",
            "--timeout",
            "30000",
            "--fetch-size",
            str(fetch["max_partition_fetch_bytes"]),
            "--command-property",
            f"fetch.max.bytes={fetch['fetch_max_bytes']}",
            "--command-property",
            f"max.poll.records={fetch['max_poll_records']}",
        ]
    except ClimateWatchError as exc:
        return f"not run: {exc}"
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    return parse_consumer_performance(run.stdout) or (
        f"not run: exit {run.returncode}, {(run.stderr or run.stdout).strip().splitlines()[-1:]}"
    )


def parse_consumer_performance(output: str) -> float | None:
    """``fetch.nMsg.sec`` from the tool's CSV (a header line, then one line of values)."""
    lines = [line for line in output.splitlines() if "," in line]
    for header, values in itertools.pairwise(lines):
        names = [name.strip() for name in header.split(",")]
        if "fetch.nMsg.sec" in names:
            fields = [value.strip() for value in values.split(",")]
            try:
                return float(fields[names.index("fetch.nMsg.sec")])
            except (IndexError, ValueError):
                return None
    return None
