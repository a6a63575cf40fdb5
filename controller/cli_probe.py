"""``furnace probe --station FILE``: the first command for a new lab. Reads every register of
every device's instrument map once (value, unit, the status bits by name, the role each
register plays), then runs the connect checks and says pass or fail per device.

Imported by the front door (``controller.cli``) only when probe is chosen: it brings the
station factory (pymodbus, and the simulator for a simulated station). Exit 0 every check
passed, 1 a check failed, 2 a bad station or map (or a line that cannot be opened), as a
run would refuse them. Not here: reading registers or the checks themselves (the drivers,
through ``station_factory``).
"""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.table import Table

from controller.cli import EXIT_FAILED, EXIT_OK
from controller.cli_tools import execute
from controller.recipe.station import Station, load_station
from controller.run.clock import VirtualClock
from controller.station_factory import DeviceProbe, build_devices

__all__ = ["add_arguments", "main"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--station", default=None,
                        help="station TOML whose instruments to read (default: the built-in "
                             "simulated station)")


async def _probe(station: Station, source: str) -> list[DeviceProbe]:
    built = build_devices(station, VirtualClock())
    try:
        await built.open_buses(source)
        return await built.probe(source)
    finally:
        await built.close()


def _table(probe: DeviceProbe) -> Table:
    table = Table(title=f"{probe.name}: {probe.model} at unit {probe.unit} ({probe.map_ref})",
                  title_justify="left")
    for column in ("register", "address", "value", "unit", "role", "status bits / error"):
        table.add_column(column, overflow="fold")
    for reg in probe.registers:
        table.add_row(reg.name, f"{reg.address}/0x{reg.address:04X}",
                      reg.text if reg.error == "" else "-", reg.unit,
                      ", ".join(reg.roles), reg.error or " ".join(reg.bits))
    return table


def cmd_probe(args: argparse.Namespace, out: Console) -> int:
    """Print each device's registers and notes, then its connect check; the exit code."""
    station, _ = load_station(args.station)
    source = args.station or "built-in station"
    probes = asyncio.run(_probe(station, source))

    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    for probe in probes:
        out.print(_table(probe))
        unread = sum(1 for r in probe.registers if r.error)
        if unread:
            say(f"{probe.name}: {unread} of {len(probe.registers)} registers not read")
        for note in probe.notes:
            say(f"{probe.name}: {note}")
    if station.balance is not None:
        say("balance: not probed (MT-SICS on its own serial line, not a Modbus map)")
    failed = [p for p in probes if p.failed]
    for probe in probes:
        verdict = "pass" if not probe.failed else f"FAIL: {probe.failed}"
        say(f"connect check {probe.name} (unit {probe.unit}): {verdict}")
    say(f"{len(probes) - len(failed)} of {len(probes)} connect checks passed")
    return EXIT_FAILED if failed else EXIT_OK


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``command``'s arguments (``controller.cli.CommandModule``)."""
    _arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``args.command``; the exit code (``controller.cli.CommandModule``)."""
    return execute(cmd_probe, args)
