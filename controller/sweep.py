"""A sweep: the cartesian grid of a recipe's parameter values (``--set KEY=V1,V2``), each
variant one whole dry run (a normal batch folder, what ``furnace run`` writes) in a process
pool, and the sweep's table ``sweep.csv``.

The parent (``run_sweep``) hands each worker one variant at a time and stops handing them
out on Ctrl-C or a termination signal (SIGTERM, SIGHUP, SIGBREAK); it raises the pool's
stop flag, and each running batch ends at its next scan cycle the way a termination signal
ends ``furnace run`` (``halt``: faulted, the summary written, the chain intact). A worker
takes a signal of its own (a console sends Ctrl-C to every process attached to it) the
same way, and a batch is halted once whichever comes first. Workers are started with
``spawn`` on every platform, so POSIX and Windows behave alike; each sees no console (no
live view, no live ETA).

This module's top level imports the standard library (and the error classes) alone, so
that a worker has put Ctrl-C aside (``_init_worker``) before it imports the session and the
simulator; on POSIX the parent also starts each worker with SIGINT blocked (``_submit``).
What a variant or the parent needs beyond that is imported where it is used.

Not here: arguments, printing and the figure (``controller.cli_sweep``), running one batch
(``controller.session``), the table's yields and exotherm (``controller.archive.compare``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from drivers.errors import ConfigurationError

if TYPE_CHECKING:
    from controller.archive.compare import Compared
    from controller.operator.keys import TerminationPolicy
    from controller.run.clock import Clock, WallClock
    from controller.run.commands import CommandQueue
    from controller.run.handle import RecipeRunner
    from controller.run.snapshot import Snapshot
    from controller.session import BatchResult

__all__ = ["ERROR", "NOT_RUN", "SWEEP_CSV", "SWEEP_PNG", "VariantJob", "VariantResult",
           "grid_variants", "label", "make_sweep_dir", "parameter_cells", "parse_grid",
           "run_sweep", "run_variant"]

logger = logging.getLogger(__name__)

SWEEP_CSV: Final = "sweep.csv"
SWEEP_PNG: Final = "sweep.png"
NOT_RUN: Final = "not run"
ERROR: Final = "error"


# --------------------------------------------------------------------- the grid
def parse_grid(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["acid_wt=50,60", "carbonization_c=1400,1500"]`` (the ``--set`` arguments) as
    parameter -> values, in the order given. Raises ``ConfigurationError`` naming ``--set``
    for an item without ``=``, a parameter given twice, an empty list or value, a value
    listed twice, or no ``--set`` at all. Whether each value fits the recipe is
    ``load_recipe``'s to say."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(f"expected KEY=V1,V2,..., got {item!r}", field="--set")
        where = f"--set {key}"
        if key in grid:
            raise ConfigurationError("given more than once (list its values in one --set)",
                                     field=where)
        values = tuple(v.strip() for v in text.split(","))
        if not text.strip() or "" in values:
            raise ConfigurationError(f"expected a list of values V1,V2,..., got {text!r}"
                                     if text.strip() else "an empty list of values",
                                     field=where)
        twice = next((v for v in values if values.count(v) > 1), None)
        if twice is not None:
            raise ConfigurationError(f"{twice} is listed twice", field=where)
        grid[key] = values
    if not grid:
        raise ConfigurationError("give the values to sweep: --set KEY=V1,V2,... (repeatable)",
                                 field="--set")
    return grid


def grid_variants(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values (the ``--set`` overrides of one variant),
    the first parameter's values varying slowest."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(grid[n] for n in names))]


def label(overrides: Sequence[tuple[str, str]]) -> str:
    """``acid_wt=50 carbonization_c=1400``: a variant, as its ``--set`` values."""
    return " ".join(f"{k}={v}" for k, v in overrides)


def parameter_cells(job: VariantJob, names: Sequence[str]) -> list[str]:
    """The variant's value of each swept parameter as the sample name writes it (``70``,
    ``72.5``); "" for one it does not set."""
    from controller.recipe.schema import format_number

    values = dict(job.overrides)
    return [format_number(float(values[n])) if n in values else "" for n in names]


def make_sweep_dir(batches_dir: Path, recipe_name: str, wall: datetime) -> Path:
    """Create ``<batches>/<UTC stamp>_sweep_<recipe name>``, never an existing one (``-2``,
    ``-3``... appended, as for a batch folder). Raises ``OSError``."""
    from controller.records.folder import batch_id

    base = batch_id(f"sweep_{recipe_name}", wall)
    batches_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        path = batches_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------- one variant
@dataclass(frozen=True, slots=True)
class VariantJob:
    """One variant of a sweep, as a worker process receives it: the recipe file and its
    ``--set`` overrides, and the options of ``furnace run`` (``speed`` None: the virtual
    clock)."""

    index: int
    overrides: tuple[tuple[str, str], ...]
    recipe: str
    station: str | None
    batches_dir: str
    speed: float | None = None
    faults: tuple[str, ...] = ()
    operator: str = "unknown"
    seed: int = 0


@dataclass(frozen=True, slots=True)
class VariantResult:
    """How a variant went: outcome (summary.json's, or ``error``, ``not run``) and its
    reason, the wall time it took (s; None if not run), its batch folder, summary and
    comparison numbers (``compare.from_folder``), and the interlock trips and alarms its
    audit records."""

    job: VariantJob
    outcome: str
    reason: str
    wall_s: float | None = None
    batch_dir: str | None = None
    summary: dict[str, Any] | None = None
    compared: Compared | None = None
    interlock_trips: int | None = None
    alarms: int | None = None

    @property
    def is_completed(self) -> bool:
        return self.outcome == "completed"


class _Flag(Protocol):
    """The pool's shared stop flag: 0, or the number of the signal that stopped the sweep."""

    value: int


_stop_flag: _Flag | None = None  # this worker process's copy (``_init_worker``)


def _init_worker(stop: _Flag) -> None:
    """A worker process's start: keep the stop flag; between batches a Ctrl-C is the
    parent's to act on (ignored here, never a traceback); warnings to stderr."""
    global _stop_flag
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # POSIX: started with SIGINT blocked (``_submit``)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _stop_flag = stop
    from controller.operator.console import TerminalConsole, setup_logging

    setup_logging(TerminalConsole(stderr=True, emoji=False), logging.WARNING)


class _Halt:
    """Ends a batch the way a termination signal ends ``furnace run``: the first request
    (this process's own SIGINT/SIGTERM/SIGBREAK, or the parent's stop flag) posts ``halt``
    at the next scan cycle; later ones change nothing. Observes every scan cycle, so it
    must stay cheap: one attribute read of shared memory."""

    def __init__(self, stop: _Flag | None, name: str, commands: CommandQueue,
                 policy: TerminationPolicy) -> None:
        self.commands = commands
        self._stop = stop
        self._name = name
        self._asked = ""
        self._policy = policy

    def request(self, signal_name: str) -> None:
        self._asked = self._asked or signal_name

    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        del snap, runner
        if not self._asked and self._stop is not None and self._stop.value:
            self._asked = signal.Signals(self._stop.value).name
        command = self._policy.on_signal(self._asked) if self._asked else None
        if command is not None:  # the first time only: the policy is halting from now on
            result = self.commands.post(command)
            logger.warning("%s: %s: halting the batch (%s)", self._name, self._asked,
                           result.message)


def _clock(speed: float | None, period_s: float) -> Clock:
    """As ``furnace run`` on the in-process simulator: virtual, or scaled by ``speed``."""
    from controller.run.clock import ScaledClock, VirtualClock

    return VirtualClock.for_dry_run() if speed is None else ScaledClock(
        speed, period_s=period_s, pace_holds=True)


def _compared(result: BatchResult) -> Compared | None:
    """The batch's numbers and TGA curve for the table and the overlay, from the records
    its summary read back (the folder is read again only if it could not); None (and a
    warning) if they cannot give them: the batch itself has ended either way."""
    from controller.archive.compare import from_data, from_folder

    try:
        if result.data is not None:
            return from_data(result.data, result.summary)
        return from_folder(result.batch_dir)
    except (ConfigurationError, OSError, ValueError) as exc:
        logger.warning("%s: no comparison numbers (%s)", result.batch_dir, exc)
        return None


def _trips_and_alarms(result: BatchResult) -> tuple[int, int]:
    """How many interlock trips and alarms the batch's audit records."""
    from controller.records.folder import BatchFolder

    audit = (result.data.audit if result.data is not None
             else BatchFolder(result.batch_dir).read_audit())
    events = [r.get("event") for r in audit]
    return events.count("interlock_trip"), events.count("alarm")


async def _run(job: VariantJob, stopwatch: WallClock) -> VariantResult:
    from controller.operator.keys import (
        TerminationPolicy,
        install_interrupt_handler,
        install_termination_handlers,
    )
    from controller.recipe.plan import load_recipe
    from controller.recipe.station import load_station
    from controller.run.commands import CommandQueue
    from controller.session import run_batch

    station, station_text = load_station(job.station)
    _, plan, frozen = load_recipe(job.recipe, dict(job.overrides), station)
    halt = _Halt(_stop_flag, label(job.overrides), CommandQueue(), TerminationPolicy())
    loop = asyncio.get_running_loop()
    uninstall_int = install_interrupt_handler(loop, lambda: halt.request("SIGINT"))
    uninstall_term = install_termination_handlers(loop, halt.request)
    try:
        result = await run_batch(
            plan=plan, station=station, recipe_text=frozen, station_text=station_text,
            clock=_clock(job.speed, station.scan_period_s), batches_dir=Path(job.batches_dir),
            operator=job.operator, seed=job.seed,
            station_source=job.station or "built-in station", observer=halt.observe,
            commands=halt.commands, faults=job.faults)
    finally:
        uninstall_term()
        uninstall_int()
    summary = result.summary
    return VariantResult(job, str(summary.get("outcome", result.state)),
                         str(summary.get("end_reason", "")), stopwatch.real_s(),
                         str(result.batch_dir), summary, _compared(result),
                         *_trips_and_alarms(result))


def run_variant(job: VariantJob) -> VariantResult:
    """Run one variant as ``furnace run RECIPE --set ...`` would (a worker process's task).
    Never raises: an error is the variant's outcome (``error``) and reason, so that one
    variant's failure is its own row, never the sweep's."""
    from controller.run.clock import WallClock

    stopwatch = WallClock()
    if _stop_flag is not None and _stop_flag.value:
        return VariantResult(job, NOT_RUN, "the sweep was stopped before it began")
    try:
        return asyncio.run(_run(job, stopwatch))
    except Exception as exc:  # the sweep's supervisor of this variant: its row says why
        logger.debug("variant %s failed", label(job.overrides), exc_info=True)
        return VariantResult(job, ERROR, f"{type(exc).__name__}: {exc}", stopwatch.real_s())


# --------------------------------------------------------------------- the pool
class _Stop:
    """Whether and why the sweep stops early: the first signal's ``name`` ("" if none),
    also raised in the workers' shared ``flag`` (its number); later signals change
    nothing, and none once the pool has finished (nothing is left to stop)."""

    def __init__(self, flag: _Flag) -> None:
        self.flag = flag
        self.name = ""
        self.pool_done = False

    def on_signal(self, name: str) -> None:
        if self.pool_done:
            return
        if self.name:
            logger.warning("%s ignored: the sweep is already stopping on %s", name, self.name)
            return
        self.name = name
        self.flag.value = int(getattr(signal, name))
        logger.warning("%s: no more variants; the running batches halt at their next scan "
                       "cycle", name)


def run_sweep(jobs: Sequence[VariantJob], workers: int,
              on_result: Callable[[VariantResult], None]) -> str:
    """Run ``jobs`` on ``workers`` spawned processes, at most one each at a time; call
    ``on_result`` with each result as it comes, and with a ``not run`` one for each job
    never started. Returns the name of the signal that stopped the sweep early ("" if
    none): Ctrl-C, SIGTERM, SIGHUP or SIGBREAK stop handing out variants and halt the
    running batches (see the module docstring). Ctrl-C never raises KeyboardInterrupt
    here, even before the pool's event loop has taken it in hand; the previous handlers
    are back on return. Blocks (its own event loop); call from the main thread."""
    ctx = multiprocessing.get_context("spawn")
    stop = _Stop(ctx.RawValue("i", 0))

    def on_sigint(signum: int, frame: object) -> None:
        stop.on_signal("SIGINT")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        asyncio.run(_sweep(ctx, stop, jobs, workers, on_result))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    return stop.name


async def _sweep(ctx: BaseContext, stop: _Stop, jobs: Sequence[VariantJob], workers: int,
                 on_result: Callable[[VariantResult], None]) -> None:
    from controller.operator.keys import install_interrupt_handler, install_termination_handlers

    loop = asyncio.get_running_loop()
    uninstall_int = install_interrupt_handler(loop, lambda: stop.on_signal("SIGINT"))
    uninstall_term = install_termination_handlers(loop, stop.on_signal)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_init_worker, initargs=(stop.flag,)) as pool:
            await _drain(pool, deque(jobs), workers, stop, on_result)
        stop.pool_done = True
    finally:
        uninstall_term()
        uninstall_int()


def _submit(pool: ProcessPoolExecutor, job: VariantJob) -> Future[VariantResult]:
    """``pool.submit``, which is where a worker process is started. POSIX: with SIGINT
    blocked meanwhile, so that the worker starts with it blocked (a Ctrl-C to the whole
    process group waits instead of raising KeyboardInterrupt in a half-started worker,
    which ``_init_worker`` then ignores) and this process takes its own once unblocked.
    Windows has no signal mask; there a worker is exposed for the moment before its
    ``_init_worker``, which the light imports of this module keep short."""
    if not hasattr(signal, "pthread_sigmask"):
        return pool.submit(run_variant, job)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(run_variant, job)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def _drain(pool: ProcessPoolExecutor, todo: deque[VariantJob], workers: int,
                 stop: _Stop, on_result: Callable[[VariantResult], None]) -> None:
    running: dict[asyncio.Future[VariantResult], VariantJob] = {}
    while todo or running:
        while todo and len(running) < workers and not stop.name:
            job = todo.popleft()
            try:
                submitted = _submit(pool, job)
            except BrokenProcessPool:
                on_result(VariantResult(job, NOT_RUN, "the process pool broke"))
                continue
            running[asyncio.wrap_future(submitted)] = job
        if not running:
            break
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            job = running.pop(future)
            exc = future.exception()
            on_result(future.result() if exc is None else VariantResult(
                job, ERROR, f"the worker process failed: {type(exc).__name__}: {exc}"))
    why = f"the sweep was stopped ({stop.name})" if stop.name else "the process pool broke"
    for job in todo:
        on_result(VariantResult(job, NOT_RUN, why))
