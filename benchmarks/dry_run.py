"""Dry-run speed: the headline batch on the in-process simulator with a virtual clock.

Prints simulated seconds per wall second, scan cycles per second and where the time goes
(a ratio against the wall clock is the only baseline a dry run has: real time).
Run: python benchmarks/dry_run.py [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.run.clock import VirtualClock
from controller.session import run_batch

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = ROOT / "profiles" / "pop70-600-1600.toml"


async def one_run(batches: Path) -> tuple[float, float, int]:
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(HEADLINE, {}, station)
    started = time.perf_counter()
    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=VirtualClock(),
                             batches_dir=batches, operator="benchmark")
    wall_s = time.perf_counter() - started
    assert result.summary["outcome"] == "completed", result.summary["end_reason"]
    return result.summary["actual_s"], wall_s, result.summary["scan_cycles"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top of cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(one_run(Path(tmp)))
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            return
        runs = [asyncio.run(one_run(Path(tmp))) for _ in range(args.repeat)]
    sim_s, _, cycles = runs[0]
    walls = [w for _, w, _ in runs]
    best, median = min(walls), statistics.median(walls)
    print(f"headline batch {HEADLINE.name}: {sim_s / 3600:.2f} h simulated, {cycles} scan cycles")
    print(f"wall time: best {best:.2f} s, median {median:.2f} s over {len(walls)} runs")
    print(f"simulated seconds per wall second: {sim_s / median:,.0f} (best {sim_s / best:,.0f})")
    print(f"scan cycles per wall second: {cycles / median:,.0f}")
    print(f"wall time per scan cycle: {median / cycles * 1e6:.0f} us")


if __name__ == "__main__":
    main()
