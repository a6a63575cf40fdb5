"""The commands that never open a bus: validate, verify, report and ctl; and what every
command shares: the consoles, bad input as one line with exit code 2, the recipe arguments
and the operator's name. (``plan`` runs the simulator: ``cli_plan``.)

Imported by the front door (``controller.cli``) only when one of these commands is chosen.
Not here: anything that needs the session, a device or the simulator (``cli_station``);
pymodbus and the simulator are never imported, matplotlib only while ``report`` draws.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from controller.operator.console import TerminalConsole, setup_logging
from controller.operator.control_client import send_command
from controller.recipe.parameters import ResolvedRecipe, parse_overrides
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station
from controller.recipe.steps import Plan
from controller.records.audit import RecordError
from controller.records.folder import BatchFolder
from controller.records.verify import Verdict, verify_batch
from controller.run.commands import TRIGGERS
from controller.text import unsafe_char
from drivers.errors import ConfigurationError

__all__ = ["Command", "add_arguments", "add_recipe_arguments", "execute", "load_inputs",
           "main", "operator_name"]

Command = Callable[[argparse.Namespace, Console], int]
"""A command's implementation: its parsed arguments and the output console; the exit code."""


def execute(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` with the terminal's consoles and logging. Bad input
    (``ConfigurationError``) is one line and exit code 2; records that cannot be written
    and Ctrl-C are one line and exit code 1."""
    out = TerminalConsole()
    err = TerminalConsole(stderr=True, emoji=False)
    setup_logging(err)
    try:
        return command(args, out)
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


# --------------------------------------------------------------------- arguments
def _reason(text: str) -> str:
    """``--reason``: goes into the audit; one line of printable text (may be empty)."""
    if len(text) > 500 or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError("expected at most 500 printable characters on one "
                                         f"line, got {text!r}")
    return text


def operator_name(text: str) -> str:
    """``--operator``: a name that goes into the audit, one line of printable text."""
    if not text.strip() or len(text) > 80 or unsafe_char(text) is not None:
        raise argparse.ArgumentTypeError("expected a name: 1-80 printable characters on one "
                                         f"line, got {text!r}")
    return text


def add_recipe_arguments(sp: argparse.ArgumentParser) -> None:
    """A recipe file, its ``--set`` overrides and the ``--station`` (run, validate, plan)."""
    sp.add_argument("recipe", help="recipe TOML file (profiles/...)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe parameter (repeatable)")
    sp.add_argument("--station", default=None, help="station TOML (default: built-in sim)")


def _verify_arguments(verify: argparse.ArgumentParser) -> None:
    verify.add_argument("batch_dir")
    verify.add_argument("--anchor", default=None, metavar="LOG",
                        help="also check the batch against this anchor log (the station's "
                             "log in the machine-wide state folder)")
    verify.add_argument("--db", default=None, metavar="URL",
                        help="also check the batch against its final hash in this archive "
                             "database (sqlite:///FILE or postgresql://USER@HOST/DB)")


def _report_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("batch_dir")
    report.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _ctl_arguments(ctl: argparse.ArgumentParser) -> None:
    ctl.add_argument("batch_dir")
    ctl.add_argument("action", choices=TRIGGERS)
    ctl.add_argument("--operator", type=operator_name, default=None,
                     help="who (default: the login name)")
    ctl.add_argument("--reason", type=_reason, default="",
                     help="why (required for resume, stop, abort)")
    ctl.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="confirm: a value the operator step asks for "
                          "(e.g. --set mass_after_wash_g=0.71); repeat for each")


def load_inputs(args: argparse.Namespace) -> tuple[Station, str, ResolvedRecipe, Plan, str]:
    """The station (and its text) and the recipe (resolved, compiled, frozen text) that
    ``args`` name. Raises ``ConfigurationError``."""
    station, station_text = load_station(args.station)
    resolved, plan, frozen = load_recipe(args.recipe, parse_overrides(args.set), station)
    return station, station_text, resolved, plan, frozen


# --------------------------------------------------------------------- commands
def cmd_ctl(args: argparse.Namespace, out: Console) -> int:
    operator = args.operator
    if not operator:
        try:
            operator = getpass.getuser()
        except (OSError, KeyError):
            raise ConfigurationError("give --operator NAME", field="--operator") from None
    data = _step_data(args.set)
    if data and args.action != "confirm":
        raise ConfigurationError("step data goes only with confirm", field="--set")
    reply = asyncio.run(send_command(Path(args.batch_dir), args.action, operator,
                                     args.reason, data=data))
    out.print(f"{args.action}: {reply.get('status')} ({reply.get('state')}): "
              f"{reply.get('message')}", markup=False, highlight=False, soft_wrap=True)
    if reply.get("invalid"):
        return EXIT_BAD_INPUT
    return EXIT_OK if reply.get("ok") else EXIT_FAILED


def _step_data(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``["mass_after_wash_g=0.71", ...]`` as (name, text) pairs; the running batch checks
    them against the step's fields. Raises ``ConfigurationError`` for a malformed item."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(f"{item!r} is not FIELD=VALUE", field="--set")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def cmd_validate(args: argparse.Namespace, out: Console) -> int:
    station, _, _, plan, _ = load_inputs(args)
    out.print(f"{args.recipe}: valid for station {station.name} "
              f"({plan.sample_name}, {len(plan.steps)} steps)")
    _print_notes(out, args.recipe, plan.notes)
    where = args.station or "built-in station"
    for feature, lost in station.maps.what_is_lost():
        out.print(f"{where}: note: furnace runs without {feature}: {lost}", markup=False,
                  highlight=False, soft_wrap=True)
    return EXIT_OK


def _print_notes(out: Console, recipe: str, notes: tuple[str, ...]) -> None:
    """One line per change the compiler made to the recipe (a capped ramp)."""
    for note in notes:
        out.print(f"{recipe}: note: {note}", markup=False, highlight=False, soft_wrap=True)


def cmd_verify(args: argparse.Namespace, out: Console) -> int:
    """Exit 0 intact or intact so far (interrupted), 1 tampered or damaged (or, with
    ``--db``, another final hash than the archive's), 2 not a batch or an unreadable
    ``--anchor`` log or archive. One verdict line, then any warnings."""
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
    archived_ok = True
    if args.db is not None and result.ok:
        from controller.archive.verify import check_archived  # SQLAlchemy: only when asked

        archived_ok, line = check_archived(args.db, path)
        say(f"{path}: {line}")
    return EXIT_OK if result.ok and archived_ok else EXIT_FAILED


def cmd_report(args: argparse.Namespace, out: Console) -> int:
    # matplotlib is heavy: imported only when a report is asked for
    from controller.analysis.data import load_batch
    from controller.analysis.events import analyse
    from controller.analysis.report import write_report_png
    from controller.analysis.table import format_events

    batch_dir = Path(args.batch_dir)
    data = load_batch(batch_dir)
    result = analyse(data)
    png_path = BatchFolder(batch_dir).report_png
    try:
        png = write_report_png(data, result, png_path)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the report ({exc.strerror or exc}); is it "
                                 "open in a viewer?", source=str(png_path)) from None
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


# --------------------------------------------------------------------- the front door's
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {
    "validate": (add_recipe_arguments, cmd_validate),
    "verify": (_verify_arguments, cmd_verify),
    "report": (_report_arguments, cmd_report),
    "ctl": (_ctl_arguments, cmd_ctl),
}


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``command``'s arguments (``controller.cli.CommandModule``)."""
    _COMMANDS[command][0](parser)


def main(args: argparse.Namespace) -> int:
    """Run ``args.command``; the exit code (``controller.cli.CommandModule``)."""
    return execute(_COMMANDS[args.command][1], args)
