"""The operator's terminal: a rich live view of the running batch, or a progress bar at
``--speed max``, and the closing summary table. Reads snapshots; never touches a device.
A terminal that goes away (a closed pipe, the hung-up terminal of a closed SSH session)
silences the console; it never ends the process.

Not here: decisions. The view is fed by the scan cycle's observer hook.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from controller.recipe.steps import OperatorStep, StepField
from controller.records.columns import Phase
from controller.text import hms

if TYPE_CHECKING:  # annotations only: `furnace ctl` and `validate` need none of the run
    from controller.recipe.summary import PlanSummary
    from controller.run.forecast import Forecast
    from controller.run.handle import RecipeRunner
    from controller.run.snapshot import Snapshot

__all__ = ["LiveView", "TerminalConsole", "hang_up", "hold_countdown", "setup_logging",
           "summary_table"]

logger = logging.getLogger(__name__)


class TerminalConsole(Console):
    """A rich ``Console`` whose reader may go away without ending the process. Rich's own
    reaction to a broken pipe is ``SystemExit``, which would end a running batch without
    its summary from inside the logging call that hit the pipe; this console goes quiet
    instead, and the batch ends by its own rules (its records are on disk, not on the
    screen)."""

    def on_broken_pipe(self) -> None:
        """Called by rich on ``BrokenPipeError``: go quiet, do not exit."""
        self.detach()

    def detach(self) -> None:
        """Write nothing from now on, and point the stream's file descriptor at the null
        device so that nothing still buffered fails when the interpreter exits (which
        would turn the exit code into 120)."""
        self.quiet = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.file.fileno())
            finally:
                os.close(devnull)


def hang_up(*consoles: Console) -> None:
    """The terminal has hung up (SIGHUP): silence ``consoles`` and every console that
    logging writes to (writes to a hung-up terminal fail with EIO)."""
    handlers = [h.console for h in logging.getLogger().handlers if isinstance(h, RichHandler)]
    for console in (*consoles, *handlers):
        if isinstance(console, TerminalConsole):
            console.detach()
        else:
            console.quiet = True


def setup_logging(console: Console, level: int = logging.INFO) -> None:
    """Route stdlib logging through rich on ``console``."""
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    # pymodbus logs every failed transaction itself; our bus translates those into one
    # error that the caller reports with context, so its own chatter stays at DEBUG.
    logging.getLogger("pymodbus").setLevel(max(level, logging.CRITICAL))
    # furnace ctl's HTTP client would log every request it makes
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:{spec}}{unit}"


def hold_countdown(snap: Snapshot, runner: RecipeRunner) -> str:
    """"operator: abort in 0:59:12 unless resumed" while held (real time), else ""."""
    left_s = runner.hold_left_s(snap)
    if left_s is None:
        return ""
    cause = runner.run.hold_cause or "hold"
    return f"{cause}: {runner.station.hold.on_timeout} in {hms(left_s)} unless resumed"


class LiveView:
    """Observer for ``ScanLoop``: a full table in real time, a progress bar at max speed.

    ``refresh_every`` limits redraws to one per that many scan cycles (a dry run makes
    tens of thousands of cycles a second). Never raises for a terminal that went away
    (EIO after a hangup): the console goes quiet and the scan loop goes on.
    """

    def __init__(self, console: Console, summary: PlanSummary, *, compact: bool,
                 refresh_every: int = 1) -> None:
        self.console = console
        self.summary = summary
        self.compact = compact
        self.refresh_every = refresh_every
        self._count = 0
        self._started = False
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TaskProgressColumn(), TextColumn("{task.fields[info]}"),
                                  console=console, transient=False)
        self._task = self._progress.add_task("batch", total=summary.duration_s or 1.0,
                                             info="")
        self._live = Live(self._progress, console=console, refresh_per_second=4,
                          transient=False)
        self.asks: tuple[StepField, ...] = ()
        """The fields the operator step now waiting for a person asks for (keys read it)."""
        self.prompt: Callable[[], str] = str
        """The keys' pending question or entry (``KeyCommands.prompt``), shown as a row."""
        self.forecast: Callable[[], Forecast] | None = None
        """The live ETA (``controller.eta.EtaForecaster.latest``); None: the plan counted
        down (``remaining_s``)."""

    @property
    def started(self) -> bool:
        """True once the first scan has drawn (the batch is under way)."""
        return self._started

    def __enter__(self) -> LiveView:
        return self  # the live display starts with the first scan, after connecting

    def __exit__(self, *exc: object) -> None:
        if self._started:
            try:
                self._live.__exit__(None, None, None)
            except OSError as error:
                self._gone(error)

    def _gone(self, error: OSError) -> None:
        logger.warning("the terminal is gone (%s); the batch goes on without it", error)
        hang_up(self.console)

    def remaining_s(self, runner: RecipeRunner, t_s: float) -> float:
        """Planned time left: the rest of the current stage plus every later stage."""
        stage = runner.stage_name
        names = [s.name for s in self.summary.stages]
        if stage not in names:
            return 0.0
        i = names.index(stage)
        started = runner.run.stage_started_t_s.get(stage, t_s)
        left = max(self.summary.stages[i].duration_s - (t_s - started), 0.0)
        return left + sum(s.duration_s for s in self.summary.stages[i + 1:])

    def __call__(self, snap: Snapshot, runner: RecipeRunner) -> None:
        if self.console.quiet:
            return
        try:
            self._draw(snap, runner)
        except OSError as error:  # the scan loop must never end for want of a screen
            self._gone(error)

    def _draw(self, snap: Snapshot, runner: RecipeRunner) -> None:
        self.asks = waiting_fields(runner)
        if not self._started:
            self._live.__enter__()
            self._started = True
        self._count += 1
        # Held, the clock runs at real speed (a dry run's too): draw every cycle.
        if (self._count % self.refresh_every and not runner.is_final
                and runner.phase is not Phase.HELD):
            return
        remaining = self.remaining_s(runner, snap.t_s)
        if self.forecast is not None:  # re-predicted from the batch's present state
            f = self.forecast()
            remaining = max(f.remaining_s - (snap.t_s - f.as_of_s), 0.0)
        done = max(self.summary.duration_s - remaining, 0.0)
        info = (f"{runner.stage_name} · {runner.phase} · {_fmt(snap.furnace_c, '.0f', ' °C')}"
                f" · ETA {hms(remaining)}")
        hold = hold_countdown(snap, runner)
        if hold:
            info += f" · {hold}"
        self._progress.update(self._task, completed=done, info=info)
        if not self.compact:
            self._live.update(Group(self._table(snap, runner, remaining), self._progress))

    def _table(self, snap: Snapshot, runner: RecipeRunner, remaining_s: float) -> Table:
        step = runner.current_step
        reading = snap.furnace
        table = Table(title=f"{runner.plan.sample_name} — {runner.plan.recipe_name}",
                      show_header=False, expand=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        rows: list[tuple[str, str]] = [
            ("state", str(runner.phase)),
            ("stage", runner.stage_name),
            ("step", f"{runner.step_index + 1}/{len(runner.plan.steps)} "
                     f"{step.label if step else ''}"),
            ("setpoint", _fmt(runner.setpoint_c, ".1f", " °C")),
            ("furnace", _fmt(snap.furnace_c, ".1f", " °C")),
            ("output", _fmt(reading.output_pct if reading else None, ".1f", " %")),
        ]
        for gas, flow in snap.flows.items():
            rows.append((f"flow {gas}", f"{_fmt(flow.flow_sccm if flow else None, '.0f')} / "
                                        f"{runner.flows_sccm[gas]:.0f} sccm"))
        if snap.o2_ppm is not None:
            rows.append(("O2", _fmt(snap.o2_ppm, ".1f", " ppm")))
        hold = hold_countdown(snap, runner)
        if hold:
            rows.append(("hold", hold))
        rows += _operator_rows(runner, self.asks, self.prompt())
        rows += [("process time", hms(snap.t_s)), ("ETA", hms(remaining_s))]
        for k, v in rows:
            table.add_row(k, v)
        return table


def waiting_fields(runner: RecipeRunner) -> tuple[StepField, ...]:
    """The fields of the operator step waiting for a person now; () if none waits."""
    step = runner.current_step
    if not isinstance(step, OperatorStep) or runner.run.progress.confirmed:
        return ()
    return step.fields


def _operator_rows(runner: RecipeRunner, asks: tuple[StepField, ...], prompt: str
                   ) -> list[tuple[str, str]]:
    """What the operator step waiting for a person asks, and how to answer it."""
    step = runner.current_step
    if not isinstance(step, OperatorStep) or runner.run.progress.confirmed:
        return [("keys", prompt)] if prompt else []
    rows = [("operator", step.message)]
    if asks:
        rows.append(("record", "; ".join(f.describe() for f in asks)))
        sets = " ".join(f"--set {f.name}=…" for f in asks if f.required)
        rows.append(("confirm", f"press c and type them in, or: furnace ctl BATCH confirm "
                                f"{sets}"))
    else:
        rows.append(("confirm", "press c then y, or: furnace ctl BATCH confirm"))
    if prompt:
        rows.append(("keys", prompt))
    return rows


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The closing table: outcome, reason, planned vs actual per stage, gas used."""
    table = Table(title=f"Batch {summary['batch_id']}: {summary['outcome']}")
    table.add_column("stage")
    table.add_column("planned", justify="right")
    table.add_column("actual", justify="right")
    for stage, row in summary["stages"].items():
        actual = row.get("actual_s")
        table.add_row(stage, hms(row["planned_s"]), hms(actual) if actual is not None
                      else "—")
    table.add_section()
    table.add_row("total", hms(summary["planned_s"]), hms(summary["actual_s"]))
    table.add_row("holdback", "", hms(summary["holdback_s"]))
    for gas, litres in summary["gas_used_l"].items():
        table.add_row(f"{gas} used", f"{summary['gas_planned_l'].get(gas, 0):.1f} L",
                      f"{litres:.1f} L")
    table.caption = f"end reason: {summary['end_reason']}"
    return table
