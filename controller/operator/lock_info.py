"""The info file beside a station lock: who holds the lock, written after it is taken and
removed before it is released; and the report of an abandoned one (``StaleTakeover``).

Not here: taking or releasing the OS lock, where locks live or what they are keyed on
(``lock``). The file, ``<key>-<hash>.json`` beside ``<key>-<hash>.lock``::

    {"format": 2, "key": "tcp 127.0.0.1:5020 unit 1", "station": "sim-tcp",
     "station_file": "/lab/stations/sim-tcp.toml", "pid": 4242, "host": "labpc-3",
     "started_utc": "2026-05-09T07:35:25.123Z", "batch_dir": "batches/…" | null}

An info file found by the next holder was therefore left by a process that died holding
the lock; ``find_abandoned`` reports it so the session can audit it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.text import one_line as _one_line
from drivers.errors import ConfigurationError


def one_line(text: str) -> str:
    """Text safe for a one-line message (``controller.text.one_line``, 200 characters)."""
    return _one_line(text, 200)


__all__ = [
    "LockInfo",
    "StaleTakeover",
    "find_abandoned",
    "new_record",
    "read_info",
    "write_info",
]

_FORMAT = 2
_MAX_INFO_BYTES = 64 * 1024  # a real info file is ~300 bytes; anything larger is damage
_REPLACE_ATTEMPTS = 8  # Windows: os.replace fails while another process reads the file


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds (or held) a lock, as read from its info file (``path``)."""

    key: str
    station: str
    station_file: str
    pid: int
    host: str
    started_utc: str
    batch_dir: str | None
    path: Path

    def describe(self) -> str:
        """``pid N on HOST since T (station S, FILE; batch B)`` on one line."""
        where = ", ".join(one_line(x) for x in (self.station, self.station_file) if x)
        batch = f"batch {one_line(self.batch_dir)}" if self.batch_dir else "no batch yet"
        return (f"pid {self.pid} on {one_line(self.host)} since {one_line(self.started_utc)} "
                f"(station {where or '?'}; {batch})")


@dataclass(frozen=True, slots=True)
class StaleTakeover:
    """The lock was free but its previous holder's info file was still there: that process
    died holding it. ``previous`` is None if the file was unreadable. Audit it."""

    path: Path
    previous: LockInfo | None
    reason: str
    raw_preview: str  # the first bytes of an unreadable info file

    def describe(self) -> str:
        """One line: whose lock it was and why it counts as abandoned."""
        owner = (self.previous.describe() if self.previous
                 else f"an unreadable holder ({self.raw_preview})")
        return f"took over lock {self.path} of {owner}: {self.reason}"


def new_record(*, key: str, station: str, station_file: str,
               started_utc: str) -> dict[str, Any]:
    """The info record of a lock this process has just taken (no batch yet)."""
    return {"format": _FORMAT, "key": key, "station": station,
            "station_file": station_file, "pid": os.getpid(),
            "host": socket.gethostname(), "started_utc": started_utc, "batch_dir": None}


def find_abandoned(lock_path: Path, info_path: Path) -> StaleTakeover | None:
    """Holding the lock: an info file still here belongs to a holder that died. Removes
    that holder's torn temporary writes too."""
    for tmp in info_path.parent.glob(f".{info_path.name}.*.tmp"):  # its torn writes
        with contextlib.suppress(OSError):
            tmp.unlink()
    try:
        raw = _read_raw(info_path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return StaleTakeover(lock_path, None, "previous holder's info file found, "
                             "process gone", f"unreadable: {exc.strerror or exc}")
    try:
        previous: LockInfo | None = _parse(raw, info_path)
    except ConfigurationError:
        previous = None
    return StaleTakeover(lock_path, previous, "previous holder's info file found, "
                         "process gone", one_line(raw[:80].decode("utf-8", "replace")))


def write_info(info_path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` completely to a temporary file beside ``info_path``, then rename it
    into place (readable by the other accounts it may refuse). Raises ``OSError``."""
    data = (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode()
    tmp = info_path.parent / f".{info_path.name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o644)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o644)  # readable by the other accounts it may refuse
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        for attempt in range(_REPLACE_ATTEMPTS):
            try:
                os.replace(tmp, info_path)
                break
            except PermissionError:  # Windows: a refused run is reading it right now
                if attempt == _REPLACE_ATTEMPTS - 1:
                    raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_info(path: Path) -> LockInfo:
    """Read one lock info file, for diagnostics. Takes no lock and changes nothing.

    Raises ``FileNotFoundError`` if there is none, ``ConfigurationError`` (naming the file)
    if it is not an info record, and ``OSError`` if it cannot be read.
    """
    return _parse(_read_raw(path), path)


def _read_raw(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_MAX_INFO_BYTES + 1)


def _parse(raw: bytes, path: Path) -> LockInfo:
    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(f"not a station lock info file ({why})", source=str(path))

    if len(raw) > _MAX_INFO_BYTES:
        raise bad("too large")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("empty or not JSON" if not raw.strip() else "not JSON") from None
    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    pid = obj.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise bad("pid missing or not a positive integer")
    text = {k: obj.get(k) for k in ("host", "started_utc")}
    if not all(isinstance(v, str) and v for v in text.values()):
        raise bad("host or started_utc missing")
    batch = obj.get("batch_dir")
    if batch is not None and not isinstance(batch, str):
        raise bad("batch_dir not text")

    def opt(name: str) -> str:
        value = obj.get(name)
        return value if isinstance(value, str) else ""

    return LockInfo(key=opt("key"), station=opt("station"), station_file=opt("station_file"),
                    pid=pid, host=str(text["host"]), started_utc=str(text["started_utc"]),
                    batch_dir=batch, path=path)
