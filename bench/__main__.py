"""`make bench`: run every benchmark script in bench/ one after the other.

Each script prints its own table (rates, the baseline measured in the same run, and the
ratio). Pass ``--quick`` (``make bench BENCH_ARGS=--quick``) for small sizes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the scripts are bench/*.py not starting with "_" (those are shared helpers); the fault
# scenarios of `make chaos` are the package bench/chaos/, not a benchmark


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))
    only = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    failed = []
    for script in scripts:
        if only and script.stem not in only:
            continue
        print(f"\n=== {script.stem} {' '.join(flags)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *flags], cwd=HERE.parent)
        print(f"=== {script.stem}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
