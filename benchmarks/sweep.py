"""``furnace sweep`` on a process pool against the same variants one after another: the 12
POP variants (profiles/pop70-600-1600.toml, acid_wt 50, 60, 70, 80 x carbonization_c 1400,
1500, 1600) swept once with ``--jobs 1`` and once with ``--jobs N`` (default 2), each as a
fresh ``furnace sweep`` process at --speed max, timed from process start to exit.

Prints each sweep's wall time, the CPU time its processes used and the machine's load
average (POSIX), and the sweep's own timing line (its wall time, the variants' own wall
times added up, the speed-up); then the ratio ``jobs N / jobs 1``. The ratio means something
only on an otherwise quiet machine: CPU time near N x wall time says the pool had the N
cores; well below it, that something else had them. The target (issue
14): at most 0.6 with ``--jobs 2`` on the 2-core machine. The whole grid takes minutes per
sweep; ``--set`` gives a smaller grid to check the benchmark itself. Batches, anchors and
tables go to a temporary folder.

Run: python benchmarks/sweep.py [--jobs N] [--set KEY=V1,V2...]... [--recipe FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "profiles" / "pop70-600-1600.toml"
POP_GRID = ["acid_wt=50,60,70,80", "carbonization_c=1400,1500,1600"]
TARGET_RATIO = 0.6


def cpu_s() -> float | None:
    """User + system time of the finished child processes so far (None off POSIX)."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return "" if not hasattr(os, "getloadavg") else \
        f", load average {os.getloadavg()[0]:.1f}"


def sweep(recipe: Path, sets: list[str], jobs: int, batches: Path
          ) -> tuple[float, float | None, str]:
    """One ``furnace sweep`` process: its wall time (s), the CPU time (s) it and its
    workers used, and its timing line."""
    argv = [sys.executable, "-m", "controller.cli", "sweep", str(recipe), "--jobs", str(jobs),
            "--speed", "max", "--batches", str(batches), *(x for s in sets for x in ("--set", s))]
    env = {**os.environ, "FURNACE_ANCHOR_DIR": str(batches / "anchors"),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT),
                                                       os.environ.get("PYTHONPATH"))))}
    cpu0_s, started = cpu_s(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    wall_s, cpu1_s = time.perf_counter() - started, cpu_s()
    if proc.returncode != 0:
        raise SystemExit(f"furnace sweep --jobs {jobs}: exit {proc.returncode}\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("time: ")), "")
    return wall_s, None if cpu0_s is None or cpu1_s is None else cpu1_s - cpu0_s, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the pool")
    parser.add_argument("--set", action="append", default=None, metavar="KEY=V1,V2,...",
                        help="the grid (default: the 12 POP variants)")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    args = parser.parse_args()
    sets = args.set or POP_GRID
    print(f"recipe {args.recipe}, grid {' x '.join(sets)}, {os.cpu_count()} CPU(s){load()}")
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        times = {}
        for jobs in (1, args.jobs):
            wall_s, used_s, line = sweep(args.recipe, sets, jobs, Path(tmp) / f"jobs{jobs}")
            times[jobs] = wall_s
            cpu = "" if used_s is None else f", {used_s:.1f} s CPU"
            print(f"--jobs {jobs}: {wall_s:.1f} s wall (process start to exit){cpu}{load()}")
            print(f"  furnace sweep says: {line}")
    ratio = times[args.jobs] / times[1]
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"ratio --jobs {args.jobs} / --jobs 1: {ratio:.2f} ({verdict} the target of "
          f"<= {TARGET_RATIO} for --jobs 2)")


if __name__ == "__main__":
    main()
