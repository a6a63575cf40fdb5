"""The commands that take a station's instruments: run and resume a batch (with the
console's keys, Ctrl-C and the termination signals) and serve the simulator (sim serve).

Imported by the front door (``controller.cli``) only when one of these commands is chosen:
it brings the session and the station factory, and with them pymodbus and the simulator.
Not here: the commands that never open a bus (``cli_tools``) or any decision about the
process (``session`` and below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Final

from rich.console import Console

from controller.cli import EXIT_FAILED, EXIT_OK
from controller.cli_tools import (
    Command,
    add_recipe_arguments,
    execute,
    load_inputs,
    operator_name,
)
from controller.eta import EtaForecaster, fan_out
from controller.operator.console import LiveView, hang_up, summary_table
from controller.operator.keys import (
    InterruptPolicy,
    KeyCommands,
    KeyReader,
    TerminationPolicy,
    install_interrupt_handler,
    install_termination_handlers,
)
from controller.recipe.opcua_config import DEFAULT_OPCUA_PORT, user_passwords
from controller.recipe.plan import PlanSummary, load_recipe, summarize
from controller.recipe.station import Station, describe_twin, load_station
from controller.records.folder import BatchFolder, check_batches_dir
from controller.run.clock import (
    MAX_SPEED,
    MIN_SPEED,
    Clock,
    ScaledClock,
    VirtualClock,
    WallClock,
    check_speed,
    utc_now,
)
from controller.run.commands import STARTING, CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.session import BatchResult, Serve, run_batch
from controller.session_resume import resume_batch
from controller.station_factory import serve_simulator
from controller.text import unsafe_char
from controller.web.server import EtaFactory, is_loopback, parse_web, serve_batch
from controller.web.state import EtaSource
from drivers.errors import ConfigurationError

__all__ = ["add_arguments", "main"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------- arguments
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


def _web(text: str) -> tuple[str, int]:
    """``--web [HOST:]PORT``: where the dashboard and the control API listen."""
    try:
        return parse_web(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_web(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web", type=_web, default=None, metavar="[HOST:]PORT",
                        help="serve the dashboard and the control API here (default host "
                             "127.0.0.1); without it they are served on an ephemeral "
                             "loopback port, announced in the batch's control.json")


def _serve_batch(out: Console, web: tuple[str, int] | None,
                 eta: EtaForecaster | None = None) -> Serve:
    """Every run serves its control API (``furnace ctl``) and dashboard; ``--web`` says
    where. A non-loopback address is reachable from other machines: said so. With ``eta``
    the page's ``eta_utc`` is its re-predicted ETA (read from the web thread: ``latest``
    only reads a reference the scan loop replaces whole), else the plan counted down."""
    host, port = web if web is not None else ("127.0.0.1", 0)
    if not is_loopback(host):
        out.print(f"warning: --web {host}: the dashboard is reachable from other machines; "
                  "commands need the token", markup=False, highlight=False)

    def ready(url: str) -> None:
        if web is not None:
            out.print(f"dashboard: {url}", markup=False, highlight=False, soft_wrap=True)

    return serve_batch(host=host, port=port, on_ready=ready, eta=_eta_factory(eta))


def _eta_factory(eta: EtaForecaster | None) -> EtaFactory | None:
    """The live servers' ETA: the forecaster's re-predicted one, else (None) the plan
    counted down. ``latest`` only reads a reference the scan loop replaces whole."""
    if eta is None:
        return None
    forecaster = eta

    def predicted(summary: PlanSummary, runner: RecipeRunner) -> EtaSource:
        del summary, runner
        return lambda frame: forecaster.latest().eta_utc

    return predicted


def _serves(out: Console, station: Station, args: argparse.Namespace,
            eta: EtaForecaster | None = None) -> list[Serve]:
    """The batch's servers: the control API and dashboard always; the OPC UA server with
    ``--opcua`` or the station's ``[opcua]`` (the flag's address wins). Its users'
    passwords come from the environment variables the station names."""
    serves = [_serve_batch(out, args.web, eta)]
    config = station.opcua
    if args.opcua is None and config is None:
        return serves
    host, port = args.opcua if args.opcua is not None else (config.host, config.port) \
        if config is not None else ("127.0.0.1", DEFAULT_OPCUA_PORT)
    passwords = user_passwords(config, os.environ)
    if not is_loopback(host):
        out.print(f"warning: OPC UA on {host}: reachable from other machines; anonymous "
                  "clients only read" + ("" if passwords else ", and with no [opcua] users "
                                         "nobody can call its methods"),
                  markup=False, highlight=False)
    from controller.opcua import serve_opcua  # asyncua only when OPC UA is asked for

    logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO is one line a request

    def ready(url: str) -> None:
        out.print(f"opc ua: {url}", markup=False, highlight=False, soft_wrap=True)

    serves.append(serve_opcua(host=host, port=port, passwords=passwords,
                              eta=_eta_factory(eta), on_ready=ready))
    return serves


def _add_opcua(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--opcua", type=_web, default=None, metavar="[HOST:]PORT",
                        help="serve the station over OPC UA here (default host 127.0.0.1; "
                             "the station's [opcua] section also switches it on)")


def _balance(text: str) -> str:
    """``--balance``: a serial device, or ``tcp:PORT``."""
    if text.startswith("tcp:"):
        _port(text.removeprefix("tcp:"))
    elif not text or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError(f"expected a serial device or tcp:PORT, got {text!r}")
    return text


def _run_arguments(run: argparse.ArgumentParser) -> None:
    add_recipe_arguments(run)
    run.add_argument("--speed", type=_speed, default=None,
                     help="'max' (virtual clock, simulator only) or a factor (default max)")
    run.add_argument("--yes", action="store_true", help="do not ask before starting")
    run.add_argument("--operator", type=operator_name, default="unknown",
                     help="who is running the batch")
    run.add_argument("--batches", default="batches", help="folder for batch records")
    run.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="inject a fault into the built-in simulator: KIND[:TARGET]@TIME")
    _add_web(run)
    _add_opcua(run)


def _resume_arguments(resume: argparse.ArgumentParser) -> None:
    resume.add_argument("batch_dir")
    resume.add_argument("--speed", type=_speed, default=None,
                        help="as for run: a factor for a simulated station")
    resume.add_argument("--yes", action="store_true", help="do not ask before resuming")
    _add_web(resume)
    _add_opcua(resume)


def _sim_arguments(sim: argparse.ArgumentParser) -> None:
    # the same parser class as the front door's: a usage error is one line, exit code 2
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, parser_class=type(sim))
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


# --------------------------------------------------------------------- run and resume
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
    keys = KeyCommands(operator, asks=lambda: view.asks)
    view.prompt = lambda: keys.prompt
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


#: Set to 1 to run without the live ETA's prediction process (the plan counted down
#: instead): a PC short of CPU, or a test suite running many batches at --speed.
NO_ETA_ENV: Final = "FURNACE_NO_ETA"


def _forecaster(compact: bool, summary: PlanSummary, wall: Callable[[], datetime],
                recipe_text: str, station_text: str) -> EtaForecaster | None:
    """The live ETA, re-predicted in a low-priority process; none at --speed max (a whole
    batch is over in the time one prediction takes) or with ``$FURNACE_NO_ETA=1``."""
    if compact or os.environ.get(NO_ETA_ENV) == "1":
        return None
    return EtaForecaster(summary=summary, wall=wall, recipe_text=recipe_text,
                         station_text=station_text)


def _say_twin(out: Console, station: Station) -> None:
    """A dry run (the in-process simulator) says which furnace it simulates."""
    if station.bus.kind == "sim":
        out.print(f"twin: {describe_twin(station)}", markup=False, highlight=False,
                  soft_wrap=True)


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    station, station_text, _, plan, frozen = load_inputs(args)
    check_batches_dir(Path(args.batches))
    _say_twin(out, station)
    clock = _clock(station, args.speed)
    summary = summarize(plan, station)
    compact = args.speed is None
    view = LiveView(out, summary, compact=compact, refresh_every=500 if compact else 1)
    eta = _forecaster(compact, summary, clock.wall, frozen, station_text)
    observer = view if eta is None else fan_out(view, eta)
    view.forecast = eta.latest if eta is not None else None
    with view, contextlib.closing(eta) if eta is not None else contextlib.nullcontext():
        result = asyncio.run(_with_console(view, args.operator, lambda commands: run_batch(
            plan=plan, station=station, recipe_text=frozen,
            station_text=station_text, clock=clock, batches_dir=Path(args.batches),
            operator=args.operator, seed=args.seed, observer=observer,
            station_source=args.station or "built-in station", commands=commands,
            faults=args.fault, serve=_serves(out, station, args, eta))))
    return _finished(out, result)


def _finished(out: Console, result: BatchResult) -> int:
    """The closing summary and the batch folder; the exit code of the outcome."""
    out.print(summary_table(result.summary))
    out.print(f"batch: {result.batch_dir}", soft_wrap=True, markup=False, highlight=False)
    return EXIT_OK if result.state is Phase.COMPLETED else EXIT_FAILED


def cmd_resume(args: argparse.Namespace, out: Console) -> int:
    folder = BatchFolder.open(Path(args.batch_dir), needs=())
    batch_dir = folder.path
    station, station_text = folder.read_station()
    speed = args.speed
    _clock(station, speed)  # the same speed rules as a run
    made: list[Clock] = []

    def make_clock(start_s: float) -> Clock:
        made.append(_clock(station, speed, start_s))
        return made[-1]

    def wall() -> datetime:  # the resumed batch's clock, once resume has made it
        return made[-1].wall() if made else utc_now()

    rate = speed if speed is not None and station.is_simulated else 1.0
    summary = summarize(load_recipe(folder.recipe_toml, {}, station)[1], station)
    compact = speed is None
    view = LiveView(out, summary, compact=compact, refresh_every=500 if compact else 1)
    eta = _forecaster(compact, summary, wall, folder.recipe_toml.read_text(encoding="utf-8"),
                      station_text)
    observer = view if eta is None else fan_out(view, eta)
    view.forecast = eta.latest if eta is not None else None
    with view, contextlib.closing(eta) if eta is not None else contextlib.nullcontext():
        result = asyncio.run(_with_console(view, "resume", lambda commands: resume_batch(
            batch_dir, make_clock=make_clock, speed=rate,
            station_source=str(folder.station_toml), observer=observer,
            commands=commands, serve=_serves(out, station, args, eta))))
    return _finished(out, result)


# --------------------------------------------------------------------- sim serve
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
    out.print(f"twin: {describe_twin(station)}", markup=False, highlight=False,
              soft_wrap=True)
    try:
        asyncio.run(_serve(args, station))
    except KeyboardInterrupt:
        out.print("simulator stopped")
    return EXIT_OK


# --------------------------------------------------------------------- the front door's
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {
    "run": (_run_arguments, cmd_run),
    "resume": (_resume_arguments, cmd_resume),
    "sim": (_sim_arguments, cmd_sim),
}


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``command``'s arguments (``controller.cli.CommandModule``)."""
    _COMMANDS[command][0](parser)


def main(args: argparse.Namespace) -> int:
    """Run ``args.command``; the exit code (``controller.cli.CommandModule``)."""
    return execute(_COMMANDS[args.command][1], args)
