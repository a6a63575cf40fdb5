"""``furnace web --batches DIR``: browse the batches under a folder (list, summary, report,
TGA overlay with CSV) until Ctrl-C; with ``--fleet FILE`` also the lab overview (every
station of the fleet file, read over OPC UA). Imported by the front door only when ``web``
is chosen.

Not here: a running batch's dashboard (``furnace run --web``, ``server.BatchWebServer``).
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from rich.console import Console

from controller.cli import EXIT_OK
from controller.cli_tools import execute
from controller.recipe.fleet_config import load_fleet
from controller.web.server import is_loopback, parse_web, serve_batches
from drivers.errors import ConfigurationError

__all__ = ["add_arguments", "main"]


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``web``'s arguments (``controller.cli.CommandModule``)."""
    del command
    parser.add_argument("--batches", default="batches", help="folder of batch records")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback only)")
    parser.add_argument("--port", default="8080", help="TCP port (default 8080; 0: any)")
    parser.add_argument("--db", default=None, metavar="URL",
                        help="also list the batches of this archive (furnace archive's "
                             "--db; SQLite file or postgresql://...)")
    parser.add_argument("--fleet", default=None, metavar="FILE",
                        help="the lab overview: the stations of this fleet file (their OPC "
                             "UA endpoints), at /fleet")


def cmd_web(args: argparse.Namespace, out: Console) -> int:
    root: Path | None = Path(args.batches)
    fleet = load_fleet(Path(args.fleet)) if args.fleet is not None else None
    if root is not None and not root.is_dir():
        if fleet is None and args.db is None:
            raise ConfigurationError("no such folder", source=str(root), field="--batches")
        root = None  # the overview, or the archive, alone
    if args.db is not None:  # a bad URL or an unreachable database: one line, now
        from controller.archive.db import connect

        connect(args.db).dispose()
    try:
        host, port = parse_web(f"[{args.host}]:{args.port}" if ":" in args.host
                               else f"{args.host}:{args.port}")
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="--port") from None
    if not is_loopback(host):
        out.print(f"warning: --host {host}: the pages are reachable from other machines",
                  markup=False, highlight=False)
    reader = None
    if fleet is not None:
        from controller.opcua.fleet import FleetReader  # asyncua only for the overview

        logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO: one line a read

        reader = FleetReader(fleet)
        reader.start()
    server, cache = serve_batches(root, host, port,
                                  fleet=reader.views if reader is not None else None,
                                  archive=args.db)
    bound_host, bound_port = server.address
    if root is not None or args.db is not None:
        where = " and ".join(x for x in (str(root) if root else "", "the archive"
                                         if args.db else "") if x)
        out.print(f"batches of {where}: http://{bound_host}:{bound_port}/batches",
                  markup=False, highlight=False, soft_wrap=True)
    if fleet is not None:
        out.print(f"lab overview ({len(fleet.stations)} stations): "
                  f"http://{bound_host}:{bound_port}/fleet", markup=False, highlight=False,
                  soft_wrap=True)
    out.print("Ctrl-C stops", markup=False, highlight=False)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        server.stop()
        if reader is not None:
            reader.stop()
        cache.cleanup()
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    """Run ``furnace web`` (``controller.cli.CommandModule``)."""
    return execute(cmd_web, args)
