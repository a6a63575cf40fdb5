"""A batch folder (DESIGN.md §3): the names of its files, creating and opening it, and the
one reader of each of its records for those who read them back (report, resume, tests).

The file names are written here and nowhere else: everyone else goes through these
constants or a ``BatchFolder``. Not here: writing the audit (``audit.py``) or the trace
(``trace.py``), the frozen inputs and the summary (``batch.py``), or checking a folder
(``verify.py``, which reads the bytes itself because it judges them).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from controller.records.audit import fsync_dir
from controller.records.columns import REQUIRED_COLUMNS
from drivers.errors import ConfigurationError

if TYPE_CHECKING:
    from controller.recipe.station import Station

__all__ = [
    "AUDIT_FILE",
    "CONTROL_FILE",
    "MAPS_DIR",
    "RECIPE_FILE",
    "REPORT_FILE",
    "RESERVE_FILE",
    "STATION_FILE",
    "SIM_STATE_FILE",
    "SUMMARY_FILE",
    "TRACE_FILE",
    "BatchFolder",
    "TraceTable",
    "batch_id",
    "check_batches_dir",
    "iter_trace",
    "read_trace",
]

logger = logging.getLogger(__name__)

RECIPE_FILE: Final = "recipe.toml"  # the resolved recipe, frozen at start
STATION_FILE: Final = "station.toml"  # the station, frozen at start
#: Each device's instrument map, frozen at start as ``maps/<device>.toml`` (furnace,
#: mfc_<gas>, o2, sample_tc); record 0 names each with its SHA-256.
MAPS_DIR: Final = "maps"
AUDIT_FILE: Final = "audit.jsonl"
TRACE_FILE: Final = "trace.csv"
SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.png"  # written by ``furnace report``
#: The running batch's loopback endpoint and token for ``furnace ctl``; removed at the end.
CONTROL_FILE: Final = "control.json"
#: Disk space held for the audit while the batch runs (``storage.DiskReserve``); deleted
#: when the disk fills and at batch end. Not a record: ``furnace verify`` ignores it.
RESERVE_FILE: Final = ".audit-reserve"
#: A dry run's simulated world as it was at the last checkpoint (``simulator.state``), so
#: that ``furnace resume`` goes on with the same furnace; removed at the end. Not a record:
#: ``furnace verify`` ignores it.
SIM_STATE_FILE: Final = "sim_state.json"
# Windows forbids <>:"/\|?* and control characters in names; whitespace is awkward in shells.
_UNSAFE: Final = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s]')
_MAX_SAMPLE_CHARS: Final = 80  # keeps batch paths well inside Windows' 260-character limit
_MAX_SUFFIX: Final = 999
_TAIL_BYTES: Final = 65536  # the trace's last rows are in its last 64 KiB


def batch_id(sample_name: str, wall_start: datetime) -> str:
    """``20261124T211840Z_POP70-600-1600``: UTC start time and the sanitised sample name.

    Unsafe characters become ``_``; trailing dots and spaces (which Windows drops) go; an
    empty name becomes ``unnamed``. Raises ``ValueError`` on a naive datetime.
    """
    if wall_start.utcoffset() is None:
        raise ValueError(f"wall_start must be timezone-aware (UTC), got {wall_start!r}")
    sample = _UNSAFE.sub("_", sample_name)[:_MAX_SAMPLE_CHARS].rstrip(". ") or "unnamed"
    return f"{wall_start.astimezone(UTC):%Y%m%dT%H%M%SZ}_{sample}"


def check_batches_dir(batches_dir: Path) -> None:
    """Refuse, before anything moves, a folder for batches that cannot hold them: a file,
    a path through a file, or a folder this user may not write. Creates nothing (a missing
    folder is made by ``BatchFolder.create``). Raises ``ConfigurationError`` naming the
    path and ``--batches``.
    """
    def fail(rule: str) -> ConfigurationError:
        return ConfigurationError(rule, source=str(batches_dir), field="--batches")

    probe = Path(batches_dir)
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            raise fail("is a file, not a folder" if probe == Path(batches_dir)
                       else f"{probe} is a file, not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise fail(f"cannot create batch folders in {probe} (permission denied)")
    except OSError as exc:
        raise fail(f"cannot use it for batches ({exc.strerror or exc})") from None


@dataclass(frozen=True, slots=True)
class TraceTable:
    """trace.csv as text: its header and its complete rows, in file order (for a whole
    read, row ``i`` is line ``i + 2`` of the file). Cells are as written: an empty cell is
    a missing reading."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, name: str) -> tuple[str, ...]:
        """Every row's cell of column ``name``. Raises ``KeyError`` if there is none."""
        if name not in self.columns:
            raise KeyError(name)
        i = self.columns.index(name)
        return tuple(row[i] for row in self.rows)

    def records(self) -> list[dict[str, str]]:
        """The rows as ``{column: cell}`` (what ``csv.DictReader`` gives)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _fail(path: Path, message: str) -> ConfigurationError:
    return ConfigurationError(message, source=str(path))


def read_trace(path: Path, *, tail_bytes: int | None = None) -> TraceTable:
    """Read a trace written by ``TraceWriter``; a torn last row (a crash) is not data yet.

    The whole file by default, strictly: ``ConfigurationError`` (one line naming the file)
    if it cannot be read, is not UTF-8, has no header or lacks a required column, or a row
    has another number of cells than the header. With ``tail_bytes``, only the header and
    the complete rows within the file's last ``tail_bytes`` bytes, leniently: a row of the
    wrong width or with bytes that are not UTF-8 is passed over, not refused (resume wants
    the last row that survived, not a verdict).
    """
    if tail_bytes is not None:
        try:
            return _read_tail(path, tail_bytes)
        except OSError as exc:
            raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    rows = iter_trace(path)
    header = next(rows)
    return TraceTable(header, tuple(tuple(row) for row in rows))


def iter_trace(path: Path) -> Iterator[tuple[str, ...]]:
    """The header, then each complete row, read from the file as they are needed (a 30 h
    batch's trace is never held as text), as strictly as ``read_trace``: the same
    ``ConfigurationError`` for the same faults, raised when reading reaches them, and a torn
    last row passed over."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            whole_header = f.readline().endswith(b"\n")  # else no header line, or a torn one
            f.seek(max(size - 1, 0))
            torn = size > 0 and f.read(1) != b"\n"
        text = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    with text:
        reader = csv.reader(text)
        try:
            header = tuple(next(reader, ()))
            if not header or not whole_header:
                raise _fail(path, "empty, no header line")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise _fail(path, f"not a batch trace: missing column(s) {', '.join(missing)}")
            yield header
            width = len(header)
            pending: list[str] | None = None
            for row in reader:  # one row behind, so that a torn last row is never yielded
                if pending is not None:
                    if len(pending) != width:
                        raise _fail(path, f"line {reader.line_num - 1}: {len(pending)} cells, "
                                          f"the header has {width}")
                    yield tuple(pending)
                pending = row
        except UnicodeDecodeError:
            raise _fail(path, "not UTF-8 text") from None
        except OSError as exc:
            raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
        if pending is None:
            return
        if torn:
            logger.warning("ignoring a torn last trace row", extra={"path": str(path)})
            return
        if len(pending) != width:
            raise _fail(path, f"line {reader.line_num}: {len(pending)} cells, the header has "
                              f"{width}")
        yield tuple(pending)


def _read_tail(path: Path, tail_bytes: int) -> TraceTable:
    with open(path, "rb") as f:
        header = f.readline()
        size = f.seek(0, io.SEEK_END)
        f.seek(max(len(header), size - tail_bytes))
        tail = f.read()
    pieces = tail.split(b"\n")[:-1]  # the last piece has no newline: torn, or empty
    if size - len(header) > tail_bytes:
        pieces = pieces[1:]  # the first piece may be cut
    columns = tuple(next(csv.reader([header.decode("utf-8-sig", errors="replace")]), []))
    rows = (next(csv.reader([raw.decode("utf-8", errors="replace")]), []) for raw in pieces)
    return TraceTable(columns, tuple(tuple(r) for r in rows if len(r) == len(columns)))


@dataclass(frozen=True, slots=True)
class BatchFolder:
    """One batch's folder: where each of its files is, and reading them back.

    ``create`` makes a new one, ``open`` checks an existing one; building it directly
    checks nothing (for a folder known to be a batch, such as the one being written).
    """

    path: Path

    @property
    def recipe_toml(self) -> Path:
        return self.path / RECIPE_FILE

    @property
    def station_toml(self) -> Path:
        return self.path / STATION_FILE

    @property
    def maps_dir(self) -> Path:
        return self.path / MAPS_DIR

    @property
    def audit_jsonl(self) -> Path:
        return self.path / AUDIT_FILE

    @property
    def trace_csv(self) -> Path:
        return self.path / TRACE_FILE

    @property
    def summary_json(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def report_png(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def control_json(self) -> Path:
        return self.path / CONTROL_FILE

    @property
    def audit_reserve(self) -> Path:
        return self.path / RESERVE_FILE

    @property
    def sim_state_json(self) -> Path:
        return self.path / SIM_STATE_FILE

    @classmethod
    def create(cls, batches_dir: Path, sample_name: str, wall_start: datetime) -> BatchFolder:
        """Create a new, empty batch folder under ``batches_dir`` (made if missing).

        Never reuses a folder: if the id (``batch_id``) is taken, ``-2``, ``-3``... is
        appended. Raises ``FileExistsError`` after 999 tries, ``OSError`` on I/O,
        ``ValueError`` on a naive time.
        """
        base = batch_id(sample_name, wall_start)
        batches_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, _MAX_SUFFIX + 1):
            path = batches_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()  # exclusive: fails if another run took the name first
            except FileExistsError:
                continue
            fsync_dir(batches_dir)
            logger.info("batch folder created", extra={"batch_dir": str(path)})
            return cls(path)
        raise FileExistsError(f"{batches_dir}: {base} and {_MAX_SUFFIX - 1} suffixes all exist")

    @classmethod
    def open(cls, path: Path, *, needs: Iterable[str] = (TRACE_FILE, AUDIT_FILE)
             ) -> BatchFolder:
        """An existing batch folder holding the files named in ``needs``. Raises
        ``ConfigurationError`` (one line naming the folder) if it is not a folder or one
        of them is missing: ``not a batch folder (no trace.csv)``."""
        path = Path(path)
        if not path.is_dir():
            raise _fail(path, "not a batch folder (not a folder)")
        for name in needs:
            if not (path / name).is_file():
                raise _fail(path, f"not a batch folder (no {name})")
        return cls(path)

    def read_trace(self) -> TraceTable:
        """The whole trace, strictly (``read_trace``). Raises ``ConfigurationError``."""
        return read_trace(self.trace_csv)

    def last_trace_row(self) -> dict[str, str] | None:
        """The trace's last complete row as ``{column: cell}`` (a torn last line is passed
        over), or None if it has none. Reads only the file's end. Raises
        ``ConfigurationError`` if it cannot be read."""
        table = read_trace(self.trace_csv, tail_bytes=_TAIL_BYTES)
        return dict(zip(table.columns, table.rows[-1], strict=True)) if table.rows else None

    def read_audit(self) -> tuple[dict[str, Any], ...]:
        """The audit records, in order, as parsed JSON; a torn last line is skipped (the
        verifier reports it). The chain is not checked (``verify``, ``audit.scan_chain``).
        Raises ``ConfigurationError`` (one line naming the file) for a line that is not
        a JSON object or a file that cannot be read."""
        path = self.audit_jsonl
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
        lines = raw.split(b"\n")
        if lines.pop().strip():  # b"" when the file ends with a newline
            logger.warning("ignoring a torn last audit record", extra={"path": str(path)})
        records = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                raise _fail(path, f"line {n}: not JSON") from None
            if not isinstance(record, dict):
                raise _fail(path, f"line {n}: not a JSON object")
            records.append(record)
        return tuple(records)

    def read_station(self) -> tuple[Station, str]:
        """The frozen station, validated, with its frozen maps (``maps/``; a batch from
        before maps were frozen: as the station names them), and its text. Raises
        ``ConfigurationError``."""
        from controller.recipe.station import load_station  # pydantic: only when asked

        maps = self.maps_dir
        return load_station(self.station_toml, frozen_maps=maps if maps.is_dir() else None)

    def read_recipe_toml(self) -> dict[str, Any] | None:
        """The frozen recipe as plain TOML (not validated: a report reads old batches too),
        or None if there is none. Raises ``ConfigurationError`` if it is not TOML."""
        path = self.recipe_toml
        if not path.exists():
            return None
        try:
            return tomllib.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise _fail(path, f"not valid TOML ({exc})") from None

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json as parsed, or None for a batch that has not ended (there is none).
        Raises ``ConfigurationError`` if it is not a JSON object. Whether it is the
        writer's own form is ``batch.read_summary``'s question (for verify)."""
        path = self.summary_json
        if not path.exists():
            return None
        try:
            value = json.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
        except (ValueError, RecursionError):
            raise _fail(path, "not valid UTF-8 JSON") from None
        if not isinstance(value, dict):
            raise _fail(path, "not a JSON object")
        return value
