"""``furnace web --batches DIR``: browse the batches under a folder (list, summary, report,
TGA overlay with CSV) until Ctrl-C. Imported by the front door only when ``web`` is chosen.

Not here: a running batch's dashboard (``furnace run --web``, ``server.BatchWebServer``).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from rich.console import Console

from controller.cli import EXIT_OK
from controller.cli_tools import execute
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


def cmd_web(args: argparse.Namespace, out: Console) -> int:
    root = Path(args.batches)
    if not root.is_dir():
        raise ConfigurationError("no such folder", source=str(root), field="--batches")
    try:
        host, port = parse_web(f"[{args.host}]:{args.port}" if ":" in args.host
                               else f"{args.host}:{args.port}")
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="--port") from None
    if not is_loopback(host):
        out.print(f"warning: --host {host}: the pages are reachable from other machines",
                  markup=False, highlight=False)
    server, cache = serve_batches(root, host, port)
    bound_host, bound_port = server.address
    out.print(f"batches of {root}: http://{bound_host}:{bound_port}/batches (Ctrl-C stops)",
              markup=False, highlight=False, soft_wrap=True)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        server.stop()
        cache.cleanup()
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    """Run ``furnace web`` (``controller.cli.CommandModule``)."""
    return execute(cmd_web, args)
