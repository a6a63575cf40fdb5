"""The archive's commands: ``furnace archive`` (batch folders into the database),
``furnace batches`` (list and filter) and ``furnace compare`` (a table and a TGA overlay).

Imported by the front door only when one of these is chosen; SQLAlchemy and Alembic come
with it, matplotlib only while ``compare`` draws. Not here: the tables (``controller.archive``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.archive.db import connect
from controller.cli import EXIT_OK
from controller.cli_tools import Command, execute
from controller.text import hms
from drivers.errors import ConfigurationError

__all__ = ["add_arguments", "main"]

_DB_HELP = ("archive database URL: sqlite:///FILE or postgresql://USER@HOST/DB (default "
            "$FURNACE_ARCHIVE_DB, else archive.sqlite in the user's data folder)")


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------- archive
def _archive_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("batch_dir", nargs="+", help="ended batch folder(s)")
    p.add_argument("--db", default=None, metavar="URL", help=_DB_HELP)


def cmd_archive(args: argparse.Namespace, out: Console) -> int:
    """One line per folder; the exit code is the worst: 0 archived or already there, 1 a
    folder that does not verify or differs from the archive (TAMPERED), 2 not a batch or
    not ended."""
    from controller.archive.ingest import archive_batch

    engine = connect(args.db)
    worst = EXIT_OK
    try:
        for name in args.batch_dir:
            result = archive_batch(engine, Path(name))
            _say(out, f"{name}: {result.reason}")
            worst = max(worst, result.status.exit_code)
    finally:
        engine.dispose()
    return worst


# --------------------------------------------------------------------- batches
def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date (2026-03-01) or a UTC time "
                                         f"(2026-03-01T08:00), got {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _batches_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL", help=_DB_HELP)
    p.add_argument("--sample", default=None, metavar="PATTERN",
                   help="sample name, * and ? as wildcards (POP70-*-1600)")
    p.add_argument("--recipe", default=None, metavar="NAME")
    p.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="a recipe parameter (acid_wt=70); repeatable")
    p.add_argument("--since", type=_date, default=None, metavar="DATE",
                   help="started on or after (UTC)")
    p.add_argument("--outcome", default=None,
                   choices=("completed", "stopped", "aborted", "faulted"))
    p.add_argument("--station", default=None, metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    when = out.get("started_utc")
    if isinstance(when, datetime):
        out["started_utc"] = (when if when.tzinfo else when.replace(tzinfo=UTC)) \
            .astimezone(UTC).isoformat().replace("+00:00", "Z")
    return out


def cmd_batches(args: argparse.Namespace, out: Console) -> int:
    from controller.archive.query import BatchFilter, list_batches

    where = BatchFilter(sample=args.sample, recipe=args.recipe, params=tuple(args.param),
                        since=args.since, outcome=args.outcome, station=args.station)
    engine = connect(args.db)
    try:
        with engine.connect() as connection:
            rows = [_plain(r) for r in list_batches(connection, where)]
    finally:
        engine.dispose()
    if args.json:
        out.print_json(json.dumps(rows))
        return EXIT_OK
    table = Table(title=f"{len(rows)} batch(es)")
    for name in ("batch", "sample", "recipe", "station", "outcome", "actual",
                 "yield (loaded)", "yield (precursor)", "exotherm"):
        table.add_column(name)
    for r in rows:
        table.add_row(r["batch_id"], r["sample"], r["recipe"], r["station"], r["outcome"],
                      hms(r["actual_s"]), _pct(r["yield_loaded_pct"]),
                      _pct(r["yield_precursor_pct"]),
                      "—" if r["peak_exotherm_c"] is None else f"{r['peak_exotherm_c']:.1f} °C")
    out.print(table)
    return EXIT_OK


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


# --------------------------------------------------------------------- compare
def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("batch", nargs="+",
                   help="batch id or sample name in the archive, or a batch folder")
    p.add_argument("--db", default=None, metavar="URL", help=_DB_HELP)
    p.add_argument("-o", "--output", default="overlay.png", metavar="PNG",
                   help="where to write the TGA overlay (default overlay.png)")


def cmd_compare(args: argparse.Namespace, out: Console) -> int:
    from controller.archive.compare import (
        Compared,
        from_archive,
        from_folder,
        table_rows,
        write_overlay_png,
    )

    found: list[Compared] = []
    names = list(args.batch)
    folders = {n for n in names if Path(n).is_dir()}
    if len(folders) < len(names):
        engine = connect(args.db)
        try:
            with engine.connect() as connection:
                found = [from_folder(Path(n)) if n in folders else from_archive(connection, n)
                         for n in names]
        finally:
            engine.dispose()
    else:
        found = [from_folder(Path(n)) for n in names]
    header, rows = table_rows(found)
    table = Table(title="compare")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    try:
        png = write_overlay_png(found, Path(args.output))
    except OSError as exc:
        raise ConfigurationError(f"cannot write the overlay ({exc.strerror or exc})",
                                 source=str(args.output), field="-o") from None
    _say(out, f"overlay: {png}")
    return EXIT_OK


# --------------------------------------------------------------------- the front door's
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {
    "archive": (_archive_arguments, cmd_archive),
    "batches": (_batches_arguments, cmd_batches),
    "compare": (_compare_arguments, cmd_compare),
}


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``command``'s arguments (``controller.cli.CommandModule``)."""
    _COMMANDS[command][0](parser)


def main(args: argparse.Namespace) -> int:
    """Run ``args.command``; the exit code (``controller.cli.CommandModule``)."""
    return execute(_COMMANDS[args.command][1], args)
