"""The ``furnace`` command line: the composition root's front door.

Bad input (recipe, station, arguments) ends with one line naming the file, field and rule
and exit code 2, never a traceback. Exit 0 = completed/valid/intact, 1 = not completed or
tampered. Not here: any decision about the process.

This module holds the top-level parser, the exit codes and the dispatch, and imports the
standard library alone, so that ``furnace --help`` costs little more than starting Python.
Each command's arguments and its implementation live in the module ``COMMANDS`` names,
imported only once that command is chosen on the command line:

- ``controller.cli_station``: run, resume, sim serve (the session and the station
  factory, and with them pymodbus and the simulator);
- ``controller.cli_plan``: plan (runs the recipe on the simulated twin, so it brings the
  station factory and the simulator, never a real bus);
- ``controller.cli_tools``: validate, verify, report, ctl (never a bus or the simulator;
  matplotlib only while report draws its figure);
- ``controller.cli_probe``: probe (reads a station's instruments once and runs the connect
  checks: the station factory, pymodbus, and the simulator for a simulated station);
- ``controller.cli_archive``: archive, batches, compare (SQLAlchemy and Alembic;
  matplotlib only while compare draws);
- ``controller.cli_sweep``: sweep (worker processes that each run batches as run does, so
  the session, the station factory and the simulator; the archive's comparison);
- ``controller.cli_twin``: twin fit, twin tune (numpy, scipy and matplotlib; the
  simulator's physics as a model, never a bus);
- ``controller.web.cli``: web (the finished batches' pages).

The command modules import this one (for the exit codes); it reaches them by name only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NoReturn, Protocol, TypeVar, cast, overload

from controller import software_version

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "CommandModule", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# name: (module with its arguments and implementation, one-line help); in --help's order
COMMANDS: Final = {
    "run": ("controller.cli_station", "run a recipe as a batch"),
    "resume": ("controller.cli_station", "continue an interrupted batch from its folder"),
    "validate": ("controller.cli_tools", "check a recipe against a station"),
    "plan": ("controller.cli_plan", "predict a recipe on the simulated station: stages, "
                                    "operator steps, duration, peak, gas use"),
    "verify": ("controller.cli_tools", "check a batch folder: audit chain, frozen files, "
                                       "trace and summary (exit 0 intact, 1 tampered)"),
    "report": ("controller.cli_tools", "events, summary and report.png of a batch"),
    "sim": ("controller.cli_station", "the furnace simulator"),
    "probe": ("controller.cli_probe", "read every mapped register of a station's "
                                      "instruments once, then run the connect checks"),
    "ctl": ("controller.cli_tools", "hold, resume, stop, abort or confirm a running batch"),
    "archive": ("controller.cli_archive", "put ended batch folders into the archive database "
                                          "(SQLite by default, or PostgreSQL)"),
    "batches": ("controller.cli_archive", "list and filter the archived batches"),
    "compare": ("controller.cli_archive", "a table of yields, exotherm and time in band, "
                                          "and a TGA overlay, of several batches"),
    "sweep": ("controller.cli_sweep", "dry-run a parameter grid on every core: table, overlay"),
    "twin": ("controller.cli_twin", "fit the simulator to this furnace's past batches; the "
                                    "loop's overshoot on that twin"),
    "web": ("controller.web.cli", "browse batches in a web browser: list, summary, report, "
                                  "TGA overlay"),
}

_N = TypeVar("_N")


class CommandModule(Protocol):
    """What a module named in ``COMMANDS`` offers the front door."""

    def add_arguments(self, command: str, parser: argparse.ArgumentParser) -> None:
        """Declare ``command``'s arguments on its (sub)parser."""

    def main(self, args: argparse.Namespace) -> int:
        """Run ``args.command``; the exit code."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2; and a subcommand's
    arguments are declared (``arguments``) only when that subcommand is parsed, so that
    only the chosen command's module is imported."""

    def __init__(self, *args: Any,
                 arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"furnace: {message} (see 'furnace --help')\n")

    @overload
    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: None = None) -> tuple[argparse.Namespace, list[str]]: ...

    @overload
    def parse_known_args(self, args: Iterable[str] | None,
                         namespace: _N) -> tuple[_N, list[str]]: ...

    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: Any = None) -> tuple[Any, list[str]]:
        add, self._arguments = self._arguments, None
        if add is not None:
            add(self)
        return super().parse_known_args(args, namespace)


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS,
                 help: str = "show the version and exit") -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(f"{parser.prog} {software_version()}\n")
        parser.exit()


def _command(name: str) -> CommandModule:
    return cast(CommandModule, importlib.import_module(COMMANDS[name][0]))


def _arguments(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        _command(name).add_arguments(name, parser)

    return add


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="furnace", description="Tube-furnace recipe controller and simulator.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, arguments=_arguments(name))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the exit code (also used as the process's)."""
    args = _parser().parse_args(argv)
    return _command(args.command).main(args)


if __name__ == "__main__":
    sys.exit(main())
