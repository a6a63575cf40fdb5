"""``furnace sweep``: a recipe's parameter grid as dry runs on every core. Every variant is
compiled before any runs; each then runs as ``furnace run RECIPE --set ...`` would, in a
worker process (``controller.sweep``), and is announced as it ends; at the end come the
comparison table (printed, and ``sweep.csv``), the TGA overlay (``sweep.png``) and the time
the pool saved. Exit 0 if every variant completed, 1 if any did not (or Ctrl-C stopped the
sweep), 2 for bad input, nothing run.

Imported by the front door only when ``sweep`` is chosen: it brings the session, the station
factory and the simulator, and the archive's comparison (SQLAlchemy); matplotlib only while
the overlay is drawn. Not here: the pool, the workers and sweep.csv (``controller.sweep``);
the comparison's numbers (``controller.archive.compare``). A real bus is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.archive.compare import table_rows, write_overlay_png
from controller.cli import EXIT_FAILED, EXIT_OK
from controller.cli_tools import execute, operator_name
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station
from controller.recipe.steps import Plan
from controller.recipe.summary import summarize
from controller.records.folder import check_batches_dir
from controller.run.clock import (
    MAX_SPEED,
    MIN_SPEED,
    VirtualClock,
    WallClock,
    check_speed,
    utc_now,
)
from controller.station_factory import build_devices, inject_faults
from controller.sweep import (
    NOT_RUN,
    SWEEP_CSV,
    SWEEP_PNG,
    VariantJob,
    VariantResult,
    grid_variants,
    label,
    make_sweep_dir,
    parameter_cells,
    parse_grid,
    run_sweep,
)
from controller.sweep_table import write_csv
from drivers.errors import ConfigurationError

__all__ = ["add_arguments", "main"]

logger = logging.getLogger(__name__)

_FROM_COMPARE = ("yield (loaded)", "yield (precursor)", "exotherm peak")


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------- arguments
def _speed(text: str) -> float | None:
    """``--speed``, as for ``furnace run``: ``max`` (the virtual clock, None) or a factor."""
    try:
        return None if text == "max" else check_speed(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'max' or a number from {MIN_SPEED:g} "
                                         f"(real time) to {MAX_SPEED:g}, got {text!r}") from None


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, 1 or more, "
                                         f"got {text!r}")
    return jobs


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe TOML file (profiles/...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a parameter and the values to sweep; repeat for more parameters "
                        "(every combination runs)")
    p.add_argument("--station", default=None,
                   help="station TOML simulated in process (default: the built-in sim)")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="worker processes (default: one per core)")
    p.add_argument("--speed", type=_speed, default=None,
                   help="'max' (virtual clock) or a factor, as for run (default max)")
    p.add_argument("--batches", default="batches",
                   help="folder for the batch records and the sweep's folder")
    p.add_argument("--operator", type=operator_name, default="unknown",
                   help="who is running the sweep")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault into every variant's simulator: KIND[:TARGET]@TIME")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


# --------------------------------------------------------------------- checks
def _in_process(args: argparse.Namespace) -> Station:
    station, _ = load_station(args.station)
    if station.bus.kind != "sim":
        raise ConfigurationError(
            f"a sweep runs on the in-process simulator; this station's bus is "
            f"{station.bus.kind!r} (a real bus, or a simulator served over one)",
            source=args.station, field="bus.kind")
    return station


def _compile(args: argparse.Namespace, station: Station,
             variants: Sequence[dict[str, str]]) -> list[Plan]:
    """Every variant's plan, or the first one's error naming the variant. Raises
    ``ConfigurationError``."""
    plans = []
    for overrides in variants:
        try:
            plans.append(load_recipe(args.recipe, overrides, station)[1])
        except ConfigurationError as exc:
            if len(variants) == 1:
                raise
            raise ConfigurationError(f"{exc} (variant {label(list(overrides.items()))})"
                                     ) from None
    if args.fault:  # the specs are the simulator's to read: a world checks them
        inject_faults(build_devices(station, VirtualClock(), material=plans[0].material),
                      args.fault)
    return plans


# --------------------------------------------------------------------- output
def _announce(out: Console, result: VariantResult, done: int, total: int) -> None:
    took = "" if result.wall_s is None else f" in {result.wall_s:.1f} s"
    why = "" if result.is_completed else f" ({result.reason})"
    where = f": {result.batch_dir}" if result.batch_dir else ""
    _say(out, f"[{done}/{total}] {label(result.job.overrides)}: {result.outcome}{why}"
              f"{took}{where}")


def _table(results: Sequence[VariantResult], names: Sequence[str],
           gases: Sequence[str]) -> Table:
    """The sweep as a console table; yields and exotherm as ``furnace compare`` shows
    them (``compare.table_rows``)."""
    found = [r.compared for r in results if r.compared is not None]
    header, rows = table_rows(found)
    compared = {c.batch_id: dict(zip(header, row, strict=True))
                for c, row in zip(found, rows, strict=True)}
    table = Table(title="sweep")
    for name in ("#", *names, "outcome", "duration (h)", *(f"{g} (L)" for g in gases),
                 *_FROM_COMPARE, "trips / alarms", "batch"):
        table.add_column(name, overflow="fold")
    for r in results:
        summary = r.summary or {}
        cells = compared.get(r.compared.batch_id, {}) if r.compared is not None else {}
        gas = summary.get("gas_used_l") or {}
        actual_s = summary.get("actual_s")
        table.add_row(
            str(r.job.index + 1), *parameter_cells(r.job, names),
            r.outcome if r.is_completed else f"{r.outcome}: {r.reason}",
            "—" if actual_s is None else f"{float(actual_s) / 3600.0:.2f}",
            *("—" if gas.get(g) is None else f"{float(gas[g]):.1f}" for g in gases),
            *(cells.get(k, "—") for k in _FROM_COMPARE),
            "—" if r.interlock_trips is None else f"{r.interlock_trips} / {r.alarms}",
            Path(r.batch_dir).name if r.batch_dir else "—")
    return table


def _timing(out: Console, wall_s: float, results: Sequence[VariantResult],
            workers: int) -> None:
    """The sweep's wall time against its variants' own, added up: the pool's speed-up."""
    serial_s = sum(r.wall_s for r in results if r.wall_s is not None)
    ran = sum(r.wall_s is not None for r in results)
    speedup = f"{serial_s / wall_s:.2f}x" if wall_s > 0 else "—"
    _say(out, f"time: {wall_s:.1f} s for {ran} variant(s) on {workers} worker(s); the "
              f"variants' own wall times add up to {serial_s:.1f} s: speed-up {speedup}")


# --------------------------------------------------------------------- the command
def cmd_sweep(args: argparse.Namespace, out: Console) -> int:
    station = _in_process(args)
    grid = parse_grid(args.set)
    variants = grid_variants(grid)
    plans = _compile(args, station, variants)
    batches = Path(args.batches)
    check_batches_dir(batches)
    workers = min(args.jobs or os.cpu_count() or 1, len(variants))
    try:
        sweep_dir = make_sweep_dir(batches, plans[0].recipe_name, utc_now())
    except OSError as exc:
        raise ConfigurationError(f"cannot create the sweep's folder ({exc.strerror or exc})",
                                 source=str(batches), field="--batches") from None
    jobs = [VariantJob(i, tuple(v.items()), args.recipe, args.station, str(batches),
                       args.speed, tuple(args.fault), args.operator, args.seed)
            for i, v in enumerate(variants)]
    names, gases = list(grid), [m.gas for m in station.mfc]
    csv_path = sweep_dir / SWEEP_CSV
    _say(out, f"sweep: {len(jobs)} variant(s) of {args.recipe} on {workers} worker "
              f"process(es); table and overlay in {sweep_dir}")
    results: list[VariantResult] = []

    def on_result(result: VariantResult) -> None:
        results.append(result)
        _announce(out, result, len(results), len(jobs))
        try:  # the table so far, on disk as each variant ends
            write_csv(csv_path, names, gases, results)
        except OSError as exc:
            logger.warning("%s not written (%s); trying again at the end", csv_path, exc)

    # Longest first (the plan's nominal duration): the last variants to start are the
    # short ones, so the workers finish nearly together instead of one waiting on a long
    # straggler. The table keeps the grid's order.
    planned_s = [summarize(plan, station).duration_s for plan in plans]
    longest_first = sorted(jobs, key=lambda job: -planned_s[job.index])
    stopwatch = WallClock()
    stopped = run_sweep(longest_first, workers, on_result)
    wall_s = stopwatch.real_s()
    results.sort(key=lambda r: r.job.index)
    # a table as wide as it needs where no terminal wraps it (a file, a pipe)
    out.print(_table(results, names, gases), width=None if out.is_terminal else 200)
    try:
        _say(out, f"table: {write_csv(csv_path, names, gases, results)}")
        found = [r.compared for r in results if r.compared is not None]
        if found:
            _say(out, f"overlay: {write_overlay_png(found, sweep_dir / SWEEP_PNG)}")
    except OSError as exc:  # the batches are written; only the sweep's own files are not
        logger.error("%s: cannot write the sweep's files (%s)", sweep_dir, exc.strerror or exc)
        return EXIT_FAILED
    _timing(out, wall_s, results, workers)
    if stopped:
        _say(out, f"sweep stopped by {stopped}: the running batches were halted; "
                  f"{sum(r.outcome == NOT_RUN for r in results)} variant(s) not run")
    return EXIT_OK if not stopped and all(r.is_completed for r in results) else EXIT_FAILED


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``sweep``'s arguments (``controller.cli.CommandModule``)."""
    del command
    _sweep_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``furnace sweep``; the exit code (``controller.cli.CommandModule``)."""
    return execute(cmd_sweep, args)
