"""`make chaos`: fault scenarios run for real against a 3-node KRaft cluster.

Each scenario starts a fresh cluster, produces simulated readings (``acks=all``,
idempotent) with the stream and the archiver running, injects its fault (a broker killed
or frozen, a partition leader killed, a stream instance killed, the archiver killed
mid-run, topics refusing the stream's writes), then drains everything and counts in the Parquet archive, with DuckDB, what
was lost or duplicated among the acknowledged readings. One table row per scenario;
the exit code is 1 if any scenario lost or duplicated a reading or missed its alert.

    python -m bench.chaos [--quick] [--only NAME] [--rate N] [--duration S]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.chaos.harness import ChaosOptions
from bench.chaos.scenarios import SCENARIOS, run_scenario
from bench.chaos.table import table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="20 s per scenario, lower rate")
    parser.add_argument(
        "--only",
        choices=sorted(SCENARIOS),
        action="append",
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--rate", type=float, help="readings per second (default 2000; quick 800)")
    parser.add_argument("--duration", type=float, help="seconds of production per scenario")
    parser.add_argument("--freeze", type=float, help="seconds a broker stays frozen (SIGSTOP)")
    args = parser.parse_args(argv)

    overrides = {
        name: value
        for name, value in (
            ("rate", args.rate),
            ("duration_s", args.duration),
            ("freeze_s", args.freeze),
        )
        if value is not None
    }
    options = ChaosOptions.quick(**overrides) if args.quick else ChaosOptions(**overrides)
    names = [name for name in SCENARIOS if not args.only or name in args.only]
    print(
        f"chaos: {len(names)} scenario(s), {options.rate:.0f} readings/s for "
        f"{options.duration_s:.0f}s each, 3-node KRaft cluster per scenario",
        flush=True,
    )
    results = []
    started = time.monotonic()
    for name in names:
        results.append(run_scenario(name, options, log=lambda line: print(line, flush=True)))
        print(*table(results[-1:]), sep="\n", flush=True)  # the row now, the table at the end
    print()
    for line in table(results):
        print(line)
    failed = [r.scenario for r in results if not r.ok]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} scenarios passed in {time.monotonic() - started:.0f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
