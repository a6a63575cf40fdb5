"""The ``furnace`` command line: the composition root's front door.

Bad input (recipe, station, arguments) ends with one line naming the file, field and rule
and exit code 2, never a traceback. Exit 0 = completed/valid/intact, 1 = not completed or
tampered. Not here: any decision about the process.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from controller.operator.console import (
    LiveView,
    TerminalConsole,
    hang_up,
    setup_logging,
    summary_table,
)
from controller.operator.control_client import send_command
from controller.operator.keys import (
    InterruptPolicy,
    KeyCommands,
    KeyReader,
    TerminationPolicy,
    install_interrupt_handler,
    install_termination_handlers,
)
from controller.recipe.plan import load_recipe, summarize
from controller.recipe.schema import ResolvedRecipe, parse_overrides
from controller.recipe.station import Station, load_station
from controller.recipe.steps import Plan
from controller.recipe.validation import unsafe_char
from controller.records.audit import RecordError
from controller.records.batch import check_batches_dir
from controller.records.verify import Verdict, verify_batch
from controller.run.clock import (
    MAX_SPEED,
    MIN_SPEED,
    Clock,
    ScaledClock,
    VirtualClock,
    WallClock,
    check_speed,
)
from controller.run.commands import STARTING, TRIGGERS, CommandQueue
from controller.run.runstate import Phase
from controller.session import BatchResult, resume_batch, run_batch
from controller.station_factory import serve_simulator
from drivers.errors import ConfigurationError

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"furnace: {message} (see 'furnace --help')\n")


def _factor(text: str) -> float:
    """A ``--speed`` factor: a number from ``MIN_SPEED`` (real time) to ``MAX_SPEED``."""
    try:
        return check_speed(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number from {MIN_SPEED:g} (real time) to {MAX_SPEED:g}, got "
            f"{text!r}") from None


def _speed(text: str) -> float | None:
    """``--speed`` of run and resume: ``max`` (the virtual clock, None) or a factor."""
    if text == "max":
        return None
    try:
        return _factor(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'max' or a number from {MIN_SPEED:g} (real time) to {MAX_SPEED:g}, "
            f"got {text!r}") from None


def _port(text: str, lowest: int = 1) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from {lowest} to 65535, got "
                                         f"{text!r}")
    return port


def _port_or_none(text: str) -> int:
    return _port(text, lowest=0)


def _balance(text: str) -> str:
    """``--balance``: a serial device, or ``tcp:PORT``."""
    if text.startswith("tcp:"):
        _port(text.removeprefix("tcp:"))
    elif not text or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError(f"expected a serial device or tcp:PORT, got {text!r}")
    return text


def _reason(text: str) -> str:
    """``--reason``: goes into the audit; one line of printable text (may be empty)."""
    if len(text) > 500 or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError("expected at most 500 printable characters on one "
                                         f"line, got {text!r}")
    return text


def _name(text: str) -> str:
    """``--operator``: a name that goes into the audit, one line of printable text."""
    if not text.strip() or len(text) > 80 or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError("expected a name: 1-80 printable characters on one "
                                         f"line, got {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="furnace", description="Tube-furnace recipe controller and simulator.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def recipe_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("recipe", help="recipe TOML file (profiles/...)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe parameter (repeatable)")
        sp.add_argument("--station", default=None, help="station TOML (default: built-in sim)")

    run = sub.add_parser("run", help="run a recipe as a batch")
    recipe_args(run)
    run.add_argument("--speed", type=_speed, default=None,
                     help="'max' (virtual clock, simulator only) or a factor (default max)")
    run.add_argument("--yes", action="store_true", help="do not ask before starting")
    run.add_argument("--operator", type=_name, default="unknown",
                     help="who is running the batch")
    run.add_argument("--batches", default="batches", help="folder for batch records")
    run.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="inject a fault into the built-in simulator: KIND[:TARGET]@TIME")
    resume = sub.add_parser("resume", help="continue an interrupted batch from its folder")
    resume.add_argument("batch_dir")
    resume.add_argument("--speed", type=_speed, default=None,
                        help="as for run: a factor for a simulated station")
    resume.add_argument("--yes", action="store_true", help="do not ask before resuming")
    validate = sub.add_parser("validate", help="check a recipe against a station")
    recipe_args(validate)
    plan = sub.add_parser("plan", help="show a recipe's plan: durations, peak, gas use")
    recipe_args(plan)
    verify = sub.add_parser("verify", help="check a batch folder: audit chain, frozen files, "
                                           "trace and summary (exit 0 intact, 1 tampered)")
    verify.add_argument("batch_dir")
    verify.add_argument("--anchor", default=None, metavar="LOG",
                        help="also check the batch against this anchor log (the station's "
                             "log in the machine-wide state folder)")
    report = sub.add_parser("report", help="events, summary and report.png of a batch")
    report.add_argument("batch_dir")
    report.add_argument("--json", action="store_true", help="print the numbers as JSON")
    sim = sub.add_parser("sim", help="the furnace simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, parser_class=_Parser)
    serve = sim_sub.add_parser("serve", help="serve the simulated station over Modbus")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default loopback only)")
    serve.add_argument("--port", type=_port_or_none, default=5020,
                       help="Modbus TCP port (0: none)")
    serve.add_argument("--rtu", default=None, metavar="DEVICE",
                       help="also serve Modbus RTU on this serial device")
    serve.add_argument("--rtu-port", type=_port, default=None, metavar="PORT",
                       help="also serve RTU framing over TCP (reach it as socket://HOST:PORT)")
    serve.add_argument("--balance", type=_balance, default=None, metavar="DEVICE",
                       help="serve the balance (MT-SICS) on this serial device, or tcp:PORT")
    serve.add_argument("--speed", type=_factor, default=1.0,
                       help=f"physics speed factor, {MIN_SPEED:g} to {MAX_SPEED:g}")
    serve.add_argument("--station", default=None,
                       help="station whose instruments to play (default: built-in layout)")
    serve.add_argument("--seed", type=int, default=0, help="noise seed")
    serve.add_argument("--fault", action="append", default=[], metavar="SPEC",
                       help="inject a fault: KIND[:TARGET]@TIME (time since serving began)")
    ctl = sub.add_parser("ctl", help="hold, resume, stop, abort or confirm a running batch")
    ctl.add_argument("batch_dir")
    ctl.add_argument("action", choices=TRIGGERS)
    ctl.add_argument("--operator", type=_name, default=None,
                     help="who (default: the login name)")
    ctl.add_argument("--reason", type=_reason, default="",
                     help="why (required for resume, stop, abort)")
    return p


def _load(args: argparse.Namespace) -> tuple[Station, str, ResolvedRecipe, Plan, str]:
    station, station_text = load_station(args.station)
    resolved, plan, frozen = load_recipe(args.recipe, parse_overrides(args.set), station)
    return station, station_text, resolved, plan, frozen


async def _with_console(view: LiveView, operator: str,
                        start: Callable[[CommandQueue], Awaitable[BatchResult]]
                        ) -> BatchResult:
    """Run a batch with the console's controls: keys (see ``HELP_LINE``) and Ctrl-C (once:
    hold at the next safe point; twice: hold now; more: abort with a controlled cool-down;
    five times: leave the furnace to its own fallback). SIGTERM, SIGHUP and SIGBREAK halt:
    the batch ends faulted at the next scan cycle, the heat left to the instrument's own
    fallback, summary written; a signal or Ctrl-C after that changes nothing. Outputs are
    never left undefined: the scan loop's ``finally`` makes them safe whatever ends the run.
    The previous signal handlers are back when this returns."""
    commands = CommandQueue()
    keys = KeyCommands(operator)
    policy = InterruptPolicy(operator)
    terminate = TerminationPolicy()
    human = WallClock()  # a double press is measured in real time, even at --speed max
    main_task = asyncio.current_task()

    def on_key(key: str) -> None:
        cmd = keys.feed(key)
        if cmd is not None:
            result = commands.post(cmd)
            logger.info("%s: %s", cmd.trigger, result.message)

    def on_interrupt() -> None:
        if main_task is None:
            return
        if terminate.halting:  # the same end is on its way; cancelling would lose the summary
            logger.warning("Ctrl-C ignored: halting on %s", terminate.halting)
            return
        if not view.started:  # still connecting: nothing written yet
            main_task.cancel()
            return
        result = commands.post(policy.on_interrupt(human.now()))
        logger.warning("Ctrl-C: %s", result.message)
        if policy.halt_requested:
            main_task.cancel()

    def on_signal(name: str) -> None:
        if main_task is None:
            return
        if name == "SIGHUP":  # by convention the terminal has gone: stop writing to it
            hang_up(view.console)
        cmd = terminate.on_signal(name)
        if cmd is None:
            logger.warning("%s ignored: already halting on %s", name, terminate.halting)
            return
        if commands.state() == STARTING:  # no scan loop yet: nothing to halt
            logger.warning("%s before the batch began: stopping", name)
            main_task.cancel()
            return
        result = commands.post(cmd)
        logger.warning("%s: halting at the next scan cycle to the instrument's fallback, "
                       "inert gas on (%s)", name, result.message)
        if not result.ok:  # cannot happen for a valid halt; the supervisor is the backstop
            main_task.cancel()

    loop = asyncio.get_running_loop()
    uninstall = install_interrupt_handler(loop, on_interrupt)
    uninstall_signals = install_termination_handlers(loop, on_signal)
    try:
        with KeyReader(on_key):
            return await start(commands)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        uninstall_signals()
        uninstall()


def cmd_ctl(args: argparse.Namespace, out: Console) -> int:
    operator = args.operator
    if not operator:
        try:
            operator = getpass.getuser()
        except (OSError, KeyError):
            raise ConfigurationError("give --operator NAME", field="--operator") from None
    reply = asyncio.run(send_command(Path(args.batch_dir), args.action, operator,
                                     args.reason))
    out.print(f"{args.action}: {reply.get('status')} ({reply.get('state')}): "
              f"{reply.get('message')}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK if reply.get("ok") else EXIT_FAILED


def _hm(seconds: float) -> str:
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def cmd_validate(args: argparse.Namespace, out: Console) -> int:
    station, _, _, plan, _ = _load(args)
    out.print(f"{args.recipe}: valid for station {station.name} "
              f"({plan.sample_name}, {len(plan.steps)} steps)")
    _print_notes(out, args.recipe, plan.notes)
    return EXIT_OK


def _print_notes(out: Console, recipe: str, notes: tuple[str, ...]) -> None:
    """One line per change the compiler made to the recipe (a capped ramp)."""
    for note in notes:
        out.print(f"{recipe}: note: {note}", markup=False, highlight=False, soft_wrap=True)


def cmd_plan(args: argparse.Namespace, out: Console) -> int:
    station, _, _, plan, _ = _load(args)
    summary = summarize(plan, station)
    table = Table(title=f"{summary.sample_name} on {station.name}")
    for col in ("stage", "atmosphere", "steps", "planned"):
        table.add_column(col)
    for s in summary.stages:
        table.add_row(s.name, s.atmosphere, str(s.steps), _hm(s.duration_s))
    table.add_section()
    table.add_row("total", "", str(summary.steps), _hm(summary.duration_s))
    out.print(table)
    out.print(f"peak temperature: {summary.peak_c:g} °C")
    for gas, litres in summary.gas_l.items():
        out.print(f"{gas}: {litres:.1f} L")
    steps = Table(title="steps")
    for col in ("#", "stage", "step", "planned"):
        steps.add_column(col)
    for i, (step, dur) in enumerate(zip(plan.steps, summary.step_durations_s, strict=True)):
        steps.add_row(str(i), step.stage, step.label, _hm(dur))
    out.print(steps)
    out.print("cooling below ~400 °C is slower than programmed (natural cooling): "
              "planned times are lower bounds")
    _print_notes(out, args.recipe, summary.notes)
    return EXIT_OK


def _clock(station: Station, speed: float | None, start_s: float = 0.0) -> Clock:
    """The clock for a run or a resume (process time from ``start_s``): virtual
    (``--speed max``, in-process simulator only), scaled (a simulator, faster than real
    time; it slows itself rather than let the physics lag the scan loop) or real. An
    in-process simulator runs at real speed while the batch is held (a person is awaited);
    one served over a bus keeps its own pace, and so does the clock."""
    if station.is_simulated and station.bus.kind == "sim":
        return VirtualClock.for_dry_run(start_s) if speed is None else ScaledClock(
            speed, start_s, period_s=station.scan_period_s, pace_holds=True)
    if station.is_simulated:  # a simulator over a real bus: it runs at its own pace
        return (ScaledClock(speed, start_s, period_s=station.scan_period_s)
                if speed is not None else WallClock(start_s))
    if speed not in (None, 1.0):
        raise ConfigurationError("a real station never runs faster than real time",
                                 field="--speed")
    return WallClock(start_s)


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    station, station_text, _, plan, frozen = _load(args)
    check_batches_dir(Path(args.batches))
    clock = _clock(station, args.speed)
    summary = summarize(plan, station)
    compact = args.speed is None
    view = LiveView(out, summary, compact=compact, refresh_every=500 if compact else 1)
    with view:
        result = asyncio.run(_with_console(view, args.operator, lambda commands: run_batch(
            plan=plan, station=station, recipe_text=frozen,
            station_text=station_text, clock=clock, batches_dir=Path(args.batches),
            operator=args.operator, seed=args.seed, observer=view,
            station_source=args.station or "built-in station", commands=commands,
            faults=args.fault)))
    return _finished(out, result)


def _finished(out: Console, result: BatchResult) -> int:
    """The closing summary and the batch folder; the exit code of the outcome."""
    out.print(summary_table(result.summary))
    out.print(f"batch: {result.batch_dir}", soft_wrap=True, markup=False, highlight=False)
    return EXIT_OK if result.state is Phase.COMPLETED else EXIT_FAILED


def cmd_resume(args: argparse.Namespace, out: Console) -> int:
    batch_dir = Path(args.batch_dir)
    if not batch_dir.is_dir():
        raise ConfigurationError("not a batch folder", source=str(batch_dir))
    station, _ = load_station(batch_dir / "station.toml")
    speed = args.speed
    _clock(station, speed)  # the same speed rules as a run

    def make_clock(start_s: float) -> Clock:
        return _clock(station, speed, start_s)

    rate = speed if speed is not None and station.is_simulated else 1.0
    with LiveView(out, summarize(load_recipe(batch_dir / "recipe.toml", {}, station)[1],
                                 station), compact=speed is None,
                  refresh_every=500 if speed is None else 1) as view:
        result = asyncio.run(_with_console(view, "resume", lambda commands: resume_batch(
            batch_dir, make_clock=make_clock, speed=rate,
            station_source=str(batch_dir / "station.toml"), observer=view,
            commands=commands)))
    return _finished(out, result)


def cmd_verify(args: argparse.Namespace, out: Console) -> int:
    """Exit 0 intact or intact so far (interrupted), 1 tampered or damaged, 2 not a batch
    or an unreadable ``--anchor`` log. One verdict line, then any warnings."""
    path = Path(args.batch_dir)
    anchor = Path(args.anchor) if args.anchor is not None else None
    if anchor is not None and not anchor.is_file():
        raise ConfigurationError("no such anchor log", source=str(anchor), field="--anchor")
    try:
        result = verify_batch(path, anchor_log=anchor)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the anchor log ({exc.strerror or exc})",
                                 source=str(anchor), field="--anchor") from None
    if result.verdict is Verdict.NOT_A_BATCH:
        raise ConfigurationError(f"not a batch folder: {result.reason}", source=str(path))

    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    say(f"{path}: {result.reason}" if result.ok
        else f"{path}: TAMPERED or damaged: {result.reason}")
    for warning in result.warnings:
        say(f"{path}: warning: {warning}")
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_report(args: argparse.Namespace, out: Console) -> int:
    # matplotlib is heavy: imported only when a report is asked for
    from controller.analysis.report import (
        REPORT_FILE,
        analyse,
        format_events,
        load_batch,
        write_report_png,
    )

    batch_dir = Path(args.batch_dir)
    data = load_batch(batch_dir)
    result = analyse(data)
    try:
        png = write_report_png(data, result, batch_dir / REPORT_FILE)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the report ({exc.strerror or exc}); is it "
                                 "open in a viewer?", source=str(batch_dir / REPORT_FILE)
                                 ) from None
    if args.json:
        out.print_json(json.dumps(result.to_dict()))
        return EXIT_OK
    table = Table(title=f"{batch_dir.name}", show_header=False)
    table.add_column("event", style="bold")
    table.add_column("value")
    for key, value in format_events(result):
        table.add_row(key, value)
    out.print(table)
    out.print(f"report: {png}", soft_wrap=True, markup=False, highlight=False)
    return EXIT_OK


async def _serve(args: argparse.Namespace, station: Station) -> None:
    clock = ScaledClock(args.speed)
    served = await serve_simulator(station, clock, host=args.host,
                                   port=args.port or None, rtu=args.rtu,
                                   rtu_port=args.rtu_port, balance=args.balance,
                                   seed=args.seed, faults=args.fault)
    try:
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        await served.stop()


def cmd_sim(args: argparse.Namespace, out: Console) -> int:
    station, _ = load_station(args.station)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: the simulator is reachable from other machines",
                       args.host)
    out.print(f"simulating station {station.name} at {args.speed:g}x; Ctrl-C stops")
    try:
        asyncio.run(_serve(args, station))
    except KeyboardInterrupt:
        out.print("simulator stopped")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "plan": cmd_plan,
            "verify": cmd_verify, "sim": cmd_sim, "report": cmd_report,
            "resume": cmd_resume, "ctl": cmd_ctl}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the exit code (also used as the process's)."""
    args = _parser().parse_args(argv)
    out = TerminalConsole()
    err = TerminalConsole(stderr=True, emoji=False)
    setup_logging(err)
    try:
        return COMMANDS[args.command](args, out)
    except ConfigurationError as exc:
        err.print(f"furnace: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except RecordError as exc:
        err.print(f"furnace: {exc}: the run was stopped and its outputs made safe "
                  "(heat to the instrument's fallback, inert gas on)", markup=False,
                  highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("furnace: interrupted; outputs were left in the safe state", markup=False)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
