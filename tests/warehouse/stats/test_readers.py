"""A long ad-hoc query and a recompute at the same time, in two real processes.

The reader opens the published warehouse read-only (as ``climatewatch sql`` and the
plain duckdb client with ``-readonly`` do) and runs a query that lasts seconds; the
recompute (``climatewatch warehouse recompute``, the DAG's code) must neither wait for
it nor break it, and the reader must keep seeing one consistent version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.settings import Settings, load_settings
from tests.fixtures.settings import settings_env
from tests.fixtures.stats import FakeArchive, day1_nice, day1_paris, day2_paris
from warehouse.db import build_warehouse, connect_read_only
from warehouse.stats.recompute import recompute

pytestmark = [pytest.mark.unit, pytest.mark.slow]

QUERY_SECONDS = 10.0

READER = """
import json, sys, time
import duckdb

con = duckdb.connect(sys.argv[1], read_only=True)
con.create_function("pause", lambda s: time.sleep(s) or s, ["DOUBLE"], "DOUBLE")
before = con.execute("SELECT sum(reading_count) FROM regional_daily").fetchone()[0]
print("started", flush=True)
started = time.time()
long = con.execute(
    "SELECT pause(?) AS slept, (SELECT sum(reading_count) FROM regional_daily) AS total",
    [float(sys.argv[2])],
).fetchone()
after = con.execute("SELECT sum(reading_count) FROM regional_daily").fetchone()[0]
print(json.dumps({"before": before, "during": long[1], "after": after,
                  "seconds": time.time() - started, "ended": time.time()}), flush=True)
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", reporting_interval_s=600)


def total(settings: Settings) -> int:
    con = connect_read_only(settings.warehouse_path)
    try:
        return con.execute("SELECT sum(reading_count) FROM regional_daily").fetchone()[0]
    finally:
        con.close()


def test_a_long_query_neither_blocks_nor_breaks_a_recompute(
    settings: Settings, tmp_path: Path
) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(day1_paris() + day1_nice())
    recompute(settings)
    assert total(settings) == 25

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.warehouse_path), str(QUERY_SECONDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "started"  # the query is running now
        archive.add_readings(day2_paris(), partition=1)
        began = time.time()
        writer = subprocess.run(
            [sys.executable, "-m", "include.ops.cli", "warehouse", "recompute"],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        writer_ended = time.time()
        assert writer.returncode == 0, writer.stderr
        assert total(settings) == 31  # a new reader sees the new version at once
        assert reader.poll() is None, "the long query should still be running"
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(timeout=10)
    assert reader.returncode == 0, err
    seen = json.loads(out)
    # the reader kept its version for the whole session: no half-written table, no error
    assert (seen["before"], seen["during"], seen["after"]) == (25, 25, 25)
    assert seen["seconds"] >= QUERY_SECONDS
    assert writer_ended < seen["ended"], "the recompute waited for the reader"
    assert writer_ended - began < QUERY_SECONDS


def test_a_failed_recompute_leaves_the_published_warehouse_untouched(settings: Settings) -> None:
    archive = FakeArchive(Path(settings.archive_root))
    archive.add_readings(day1_paris())
    recompute(settings)
    published = settings.warehouse_path.read_bytes()
    with pytest.raises(RuntimeError), build_warehouse(settings.warehouse_path) as con:
        con.execute("DELETE FROM regional_daily")
        raise RuntimeError("the task died half-way")
    assert settings.warehouse_path.read_bytes() == published
    assert total(settings) == 21
    leftovers = [p.name for p in settings.warehouse_path.parent.iterdir()]
    assert sorted(leftovers) == ["climatewatch.duckdb", "climatewatch.duckdb.lock"]


def test_writers_take_turns(settings: Settings) -> None:
    """Two writers never copy the same version: the second waits for the first's lock."""
    from include.errors import ClimateWatchError
    from warehouse.db import writer_lock

    with writer_lock(settings.warehouse_path):
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from warehouse.db import writer_lock\n"
                "with writer_lock(Path(sys.argv[1]), timeout_s=0.5): pass",
                str(settings.warehouse_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert holder.returncode == 1 and ClimateWatchError.__name__ in holder.stderr
    with writer_lock(settings.warehouse_path, timeout_s=1):
        pass
