"""What keeping the simulated world costs a dry run (decision 0018): the headline recipe
(profiles/pop70-600-1600.toml) run as ``furnace run`` runs it, on the built-in station with
the dry-run clock, with every ``keep_world`` call (one per checkpoint: JSON of the world's
state, written beside ``sim_state.json`` and renamed) timed. Prints the calls, their total
and mean time, their share of the run's wall time and the state's size, ``--repeat`` times.

Run: python benchmarks/sim_state.py [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import controller.dry_run_world as dry_run_world  # noqa: E402
import controller.session as session  # noqa: E402
from controller.recipe.plan import load_recipe  # noqa: E402
from controller.recipe.station import load_station  # noqa: E402
from controller.run.clock import VirtualClock  # noqa: E402

RECIPE = ROOT / "profiles" / "pop70-600-1600.toml"


def one_run() -> tuple[float, int, float, int]:
    """(wall s of the run, keep calls, s spent in them, bytes of the last state)."""
    keep = dry_run_world.keep_world
    spent = [0.0]
    calls = [0]
    size = [0]

    def timed(world: Any, t_s: float, path: Path) -> None:
        started = time.perf_counter()
        keep(world, t_s, path)
        spent[0] += time.perf_counter() - started
        calls[0] += 1
        size[0] = path.stat().st_size

    dry_run_world.keep_world = timed  # what WorldKeeper calls at each checkpoint
    try:
        station, station_text = load_station(None)
        _, plan, frozen = load_recipe(RECIPE, {}, station)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            asyncio.run(session.run_batch(
                plan=plan, station=station, recipe_text=frozen, station_text=station_text,
                clock=VirtualClock.for_dry_run(), batches_dir=Path(tmp), operator="benchmark"))
            wall_s = time.perf_counter() - started
    finally:
        dry_run_world.keep_world = keep
    return wall_s, calls[0], spent[0], size[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shares = []
    for i in range(args.repeat):
        wall_s, calls, spent_s, size = one_run()
        share = 100.0 * spent_s / wall_s
        shares.append(share)
        print(f"run {i + 1}/{args.repeat}: {wall_s:6.2f} s wall, {calls} keeps, "
              f"{spent_s:.3f} s in them ({1e3 * spent_s / max(calls, 1):.2f} ms each), "
              f"{share:.1f} % of the run; state {size:,} bytes")
    print(f"median share of a headline dry run: {statistics.median(shares):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
