"""One dry run in a fresh process, for ``benchmarks/dry_run.py``: its source text is passed to
``python -P -c`` with ``PYTHONPATH`` set to the tree under test (this one, or a baseline's
temporary git worktree), so it runs unchanged against older revisions.

It therefore uses only entry points every measured revision has: ``load_station(None)``,
``load_recipe(path, {}, station)``, ``run_batch(plan=, station=, recipe_text=, station_text=,
clock=VirtualClock.for_dry_run(), batches_dir=, operator=)`` (the clock ``furnace run`` gives
a dry run; ``VirtualClock()`` on a revision without it) and ``summary["actual_s"]`` /
``summary["scan_cycles"]``; and only the standard library (psutil if importable on Windows).

Usage: ``python -P -c "$(cat dry_run_child.py)" RECIPE BATCHES_DIR [--profile OUT]
[--loop-rss]``. Prints one line ``DRY-RUN-RESULT {json}``: the simulated and wall seconds of
``run_batch`` alone (imports and recipe loading excluded), scan cycles, outcome, peak RSS of
the process (KiB, or null where it cannot be read) and the ``__file__`` of each imported
package, so the parent can check that the tree it meant is the one that ran. ``--profile``
runs ``run_batch`` under cProfile and dumps the stats to OUT. ``--loop-rss`` also reports the
peak RSS as of the last scan cycle, before the batch's summary reads its records back; it
passes ``run_batch`` an ``observer`` (a keyword main has had since before issue 14), called
every cycle, so it is kept out of timed runs.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import sys
import time
from pathlib import Path
from typing import Any

MARKER = "DRY-RUN-RESULT "


def peak_rss_kib() -> int | None:
    """The process's peak resident set so far, KiB (None where it cannot be read)."""
    try:
        import resource
    except ImportError:  # Windows: no resource module
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            return None
        return int(psutil.Process().memory_info().peak_wset) // 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024 if sys.platform == "darwin" else peak)  # macOS: bytes


def main(argv: list[str]) -> int:
    """Run the recipe ``argv[0]`` into ``argv[1]``; options as in the module docstring."""
    recipe, batches, rest = Path(argv[0]), Path(argv[1]), argv[2:]
    profile_out = rest[rest.index("--profile") + 1] if "--profile" in rest else None
    loop_rss = "--loop-rss" in rest

    import controller
    import drivers
    import simulator
    from controller.recipe.plan import load_recipe
    from controller.recipe.station import load_station
    from controller.run.clock import VirtualClock

    # furnace run's clock for a dry run (real-time cadences: hold timeouts, trace fsyncs)
    clock = getattr(VirtualClock, "for_dry_run", VirtualClock)
    from controller.session import run_batch

    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(recipe, {}, station)

    loop_peak: list[int | None] = [None]
    extra: dict[str, Any] = {}
    if loop_rss:
        def observer(snapshot: Any, runner: Any) -> None:
            loop_peak[0] = peak_rss_kib()
        extra["observer"] = observer

    async def batch() -> Any:
        return await run_batch(plan=plan, station=station, recipe_text=frozen,
                               station_text=station_text, clock=clock(),
                               batches_dir=batches, operator="benchmark", **extra)

    prof = cProfile.Profile() if profile_out else None
    started = time.perf_counter()
    if prof is not None:
        prof.enable()
    result = asyncio.run(batch())
    if prof is not None:
        prof.disable()
    wall_s = time.perf_counter() - started
    if prof is not None and profile_out is not None:
        prof.dump_stats(profile_out)

    summary = result.summary
    report = {
        "sim_s": float(summary["actual_s"]),
        "wall_s": wall_s,
        "cycles": int(summary["scan_cycles"]),
        "outcome": summary.get("outcome"),
        "end_reason": summary.get("end_reason"),
        "peak_rss_kib": peak_rss_kib(),
        "loop_peak_rss_kib": loop_peak[0],
        "files": {m.__name__: m.__file__ for m in (controller, drivers, simulator)},
        "python": sys.version.split()[0],
    }
    print(MARKER + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
