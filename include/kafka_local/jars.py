"""The Kafka broker's jars and the Java that runs them.

The official jars come from Maven Central (``include/kafka/pom.xml``) into a cache shared
by every checkout, once; this module fetches them and finds ``java``, so that starting a
broker never needs the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from include.errors import ClimateWatchError
from include.settings import Settings

# include/kafka/: package data (pom.xml, log4j2.properties) beside this package
KAFKA_FILES = Path(__file__).parents[1] / "kafka"
POM = KAFKA_FILES / "pom.xml"
READY_MARKER = ".complete"


def jars_dir(settings: Settings) -> Path:
    return settings.kafka_cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def fetch_jars(settings: Settings, *, quiet: bool = True) -> Path:
    """Download the broker jars with Maven once; later calls return the cache at once."""
    return fetch_runtime(
        POM, jars_dir(settings), settings.kafka_version, "kafka_2.13-*.jar", quiet=quiet
    )


def fetch_runtime(
    pom: Path, target: Path, kafka_version: str, expected: str, *, quiet: bool = True
) -> Path:
    """The runtime dependencies of ``pom`` copied into ``target`` by Maven, once (a jar
    matching ``expected`` among them); later calls return ``target`` at once. The copy is
    staged and renamed, so an interrupted fetch never leaves a cache that looks done."""
    if (target / READY_MARKER).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ClimateWatchError(
            "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central: "
            "install it (apt-get install maven) or copy the jars into " + str(target)
        )
    require_java()
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom),
        f"-Dkafka.version={kafka_version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob(expected)):
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise ClimateWatchError(
            f"could not fetch {pom.parent.name} {kafka_version} with Maven: {' | '.join(tail)}"
        )
    (staging / READY_MARKER).write_text(kafka_version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def require_java() -> str:
    """The ``java`` executable (PATH, then JAVA_HOME), or a ClimateWatchError saying how to get it."""
    java = shutil.which("java")
    if java is None and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        java = str(candidate) if candidate.exists() else None
    if java is None:
        raise ClimateWatchError(
            "Java 17 or newer is needed to run the Kafka broker: install it "
            "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return java
