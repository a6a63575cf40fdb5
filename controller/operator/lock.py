"""One controller per furnace: an OS file lock keyed on the instrument's physical endpoint.

Not here: the serial port's own exclusivity (the bus) or what a run does once it holds the
lock (``session``). Works the same on POSIX and Windows. Decision: docs/decisions/0006.

The key is the furnace controller's endpoint, not the station's name: the bus (TCP
``host:port`` with the host resolved, so ``localhost`` and ``127.0.0.1`` agree; or the
serial device with symlinks resolved, ``COM3`` case-insensitive on Windows; pyserial's
``socket://`` and ``rfc2217://`` URLs count as TCP) plus the furnace's unit id::

    tcp 127.0.0.1:5020 unit 1        serial /dev/ttyUSB0 unit 1        serial COM3 unit 1

The lock lives in one folder for every account on the PC (``/var/lib/furnace/locks``,
``%PROGRAMDATA%\\furnace\\locks``; ``$FURNACE_LOCK_DIR`` moves it) as ``<key>-<hash>.lock``,
held with ``filelock`` (``flock``/``LockFileEx``): the OS frees it when its process dies,
so there is no stale-lock guessing. Beside it, ``<key>-<hash>.json`` says who holds it,
written after the lock is taken and removed before it is released::

    {"format": 2, "key": "tcp 127.0.0.1:5020 unit 1", "station": "sim-tcp",
     "station_file": "/lab/stations/sim-tcp.toml", "pid": 4242, "host": "labpc-3",
     "started_utc": "2026-05-09T07:35:25.123Z", "batch_dir": "batches/…" | null}

An info file found by the next holder was therefore left by a process that died holding
the lock; ``acquire`` reports it (``StaleTakeover``) so the session can audit it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import filelock
import platformdirs

from controller.operator.endpoint import Resolver, endpoint_key
from controller.recipe.station import Station
from controller.records.audit import format_utc
from controller.run.clock import utc_now
from controller.text import one_line
from drivers.errors import ConfigurationError

__all__ = [
    "LOCK_DIR_ENV",
    "LockInfo",
    "StaleTakeover",
    "StationBusyError",
    "StationLock",
    "default_lock_dir",
    "lock_for_station",
    "lock_stem",
    "machine_lock_dir",
    "read_info",
    "user_lock_dir",
]

logger = logging.getLogger(__name__)

LOCK_DIR_ENV = "FURNACE_LOCK_DIR"
APP = "furnace"
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
        where = ", ".join(_line(x) for x in (self.station, self.station_file) if x)
        batch = f"batch {_line(self.batch_dir)}" if self.batch_dir else "no batch yet"
        return (f"pid {self.pid} on {_line(self.host)} since {_line(self.started_utc)} "
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


class StationBusyError(ConfigurationError):
    """Another process holds this furnace's lock. ``owner`` is its info (None if it has
    not written one yet or it is unreadable); ``path`` is the lock file."""

    def __init__(self, message: str, *, owner: LockInfo | None, path: Path) -> None:
        super().__init__(message)
        self.owner = owner
        self.path = path


# --- where locks live -----------------------------------------------------------------


def machine_lock_dir() -> Path:
    """The machine-wide lock folder, the same for every account: ``%PROGRAMDATA%\\furnace\\
    locks`` on Windows, platformdirs' site state folder elsewhere (``/var/lib/furnace/
    locks`` on Linux). Only computes the path."""
    if sys.platform == "win32":
        base = os.environ.get("PROGRAMDATA") or platformdirs.site_data_dir(
            appauthor=False)
        return Path(base) / APP / "locks"
    return platformdirs.site_state_path(APP, appauthor=False) / "locks"


def user_lock_dir() -> Path:
    """This account's lock folder (``~/.local/state/furnace/locks``, ``%LOCALAPPDATA%\\
    furnace\\locks``): the fallback when the machine-wide one cannot be used."""
    return platformdirs.user_state_path(APP, appauthor=False) / "locks"


_warned: set[Path] = set()  # machine-wide folders already warned about in this process


def default_lock_dir() -> Path:
    """The folder for station locks: ``$FURNACE_LOCK_DIR`` if set, else the machine-wide
    folder, created if missing, else (with one warning per process) this account's.

    Creating the machine-wide folder makes it writable by every account (POSIX mode
    0o777): it is how two users' runs see each other. Where that fails (a non-root user on
    Linux before an administrator created it, an account without write access to it), the
    per-user folder still keeps out a second run by the same user, and the warning says
    what the administrator can do. Blocking: a mkdir and a probe file; never raises.
    """
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    machine = machine_lock_dir()
    why = _prepare_shared(machine)
    if why is None:
        return machine
    fallback = user_lock_dir()
    if machine not in _warned:
        _warned.add(machine)
        logger.warning("the machine-wide lock folder %s cannot be used (%s): station locks "
                       "go to %s, which only keeps out a second run by this same account; "
                       "%s", machine, why, fallback, _setup_hint(machine),
                       extra={"lock_dir": str(fallback)})
    return fallback


def _prepare_shared(folder: Path) -> str | None:
    """Make ``folder`` exist and check this account can create files in it. None if it
    can, else why not (one line)."""
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not existed and os.name == "posix":
            with contextlib.suppress(OSError):  # umask-proof; a lock is no secret
                os.chmod(folder, 0o777)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _setup_hint(machine: Path) -> str:
    if sys.platform == "win32":
        return (f'an administrator can run once: icacls "{machine}" /grant '
                "*S-1-5-32-545:(OI)(CI)M")
    return (f"an administrator can run once: sudo install -d -m 2775 -g furnace {machine} "
            "(and add the lab's accounts to group furnace)")


# --- the key: the furnace's physical endpoint (``endpoint``) ---------------------


def lock_for_station(station: Station, station_source: str = "", *,
                     lock_dir: Path | None = None,
                     resolve: Resolver | None = None) -> StationLock | None:
    """The (not yet acquired) lock on ``station``'s furnace, or None for the in-process
    simulator (private to its process: nothing to share).

    ``station_source`` (the station file) goes into the info file. ``lock_dir`` defaults
    to ``default_lock_dir()``. Resolves the bus host (see ``endpoint_key``).
    """
    if station.bus.kind == "sim":
        return None
    key = endpoint_key(station.bus, station.furnace.unit, resolve=resolve)
    source = station_source
    if source and Path(source).is_file():  # absolute, for a user in another folder
        source = os.path.abspath(source)
    return StationLock(lock_dir if lock_dir is not None else default_lock_dir(), key,
                       station_name=station.name, station_file=source)


def lock_stem(key: str) -> str:
    """A file name stem safe on every OS for ``key``: the key's ASCII letters, digits and
    ``_`` (runs of anything else become ``-``), then a hash of the whole key, so two keys
    never share a file and, with no dot and a hash at the end, no stem is a Windows
    device name (``CON``, ``COM1.x``...)."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "-", key)[:80].strip("-") or "station"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{safe}-{digest}"


# --- the lock -------------------------------------------------------------------------


class StationLock:
    """Exclusive claim on one furnace for the length of a run, held as an OS file lock
    (dies with the process) plus an info file saying who holds it.

    Use as ``with lock_for_station(station, path) as lock: ...`` or call ``acquire()``,
    ``update()`` and ``release()``. ``key`` is normally an ``endpoint_key``; a plain
    station name (``StationLock(default_lock_dir(), station.name)``) still works but only
    keeps out runs of the same name. Blocking: file I/O, no waiting: a held lock fails at
    once. Not for sharing between threads of one run (acquire and release in one).
    """

    def __init__(self, lock_dir: Path, key: str, *, station_name: str = "",
                 station_file: str = "", wall: Callable[[], datetime] | None = None) -> None:
        self.lock_dir = Path(lock_dir)
        self.key = key
        self.station_name = station_name or key
        self.station_file = station_file
        stem = lock_stem(key)
        self.path = self.lock_dir / f"{stem}.lock"
        self.info_path = self.lock_dir / f"{stem}.json"
        self.took_over: StaleTakeover | None = None
        self._wall = wall if wall is not None else utc_now
        self._os_lock: filelock.BaseFileLock | None = None
        self._record: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        """True between a successful ``acquire`` and ``release``."""
        return self._os_lock is not None

    @property
    def label(self) -> str:
        """What the lock guards, for messages: ``furnace <key> (station S)``."""
        if self.station_name == self.key:
            return f"station {_line(self.key)}"
        return f"furnace {_line(self.key)} (station {_line(self.station_name)})"

    def acquire(self) -> StaleTakeover | None:
        """Take the lock and write the info file. Returns the abandoned previous holder, if
        its info file was still there, else None.

        Raises:
            StationBusyError: another process holds it; one line naming pid, host, start,
                station, station file, batch and lock file.
            ConfigurationError: the lock folder or files cannot be created or written, or
                the folder's file system has no OS locks (some network shares).
            RuntimeError: this object already holds the lock.
        """
        if self._os_lock is not None:
            raise RuntimeError(f"{self.path} is already held by this StationLock")
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._io_error("cannot create the lock folder", exc) from None
        # Never the soft (file-exists) fallback: it would outlive a killed process.
        os_lock = filelock.FileLock(self.path, mode=0o666, thread_local=False,
                                    blocking=False, fallback_to_soft=False)
        try:
            os_lock.acquire(blocking=False)
        except filelock.Timeout:  # before OSError: Timeout is a TimeoutError
            raise self._busy() from None
        except OSError as exc:
            raise self._io_error("cannot take the lock", exc) from None
        try:
            takeover = self._abandoned()
            record = {"format": _FORMAT, "key": self.key, "station": self.station_name,
                      "station_file": self.station_file, "pid": os.getpid(),
                      "host": socket.gethostname(), "started_utc": format_utc(self._wall()),
                      "batch_dir": None}
            self._write_info(record)
        except BaseException:
            os_lock.release()
            raise
        self._os_lock, self._record, self.took_over = os_lock, record, takeover
        if takeover is not None:
            logger.warning("%s", takeover.describe(), extra={"lock": str(self.path)})
        return takeover

    def update(self, *, batch_dir: Path | str) -> None:
        """Record the batch folder in the info file (atomic replace). Raises
        ``RuntimeError`` if the lock is not held, ``ConfigurationError`` on I/O errors."""
        if self._record is None:
            raise RuntimeError(f"{self.path} is not held")
        record = {**self._record, "batch_dir": str(batch_dir)}
        self._write_info(record)
        self._record = record

    def release(self) -> None:
        """Remove the info file, then release the OS lock. Never raises for I/O: a lock
        left behind is free once this process ends anyway."""
        os_lock, self._os_lock, self._record = self._os_lock, None, None
        if os_lock is None:
            return
        try:
            self.info_path.unlink()
        except FileNotFoundError:
            logger.warning("%s was already gone at release", self.info_path)
        except OSError as exc:
            logger.warning("could not remove %s (%s); the next run will report it",
                           self.info_path, exc)
        try:
            os_lock.release()
        except OSError as exc:
            logger.warning("could not release %s (%s); it is free once this process ends",
                           self.path, exc)

    def __enter__(self) -> StationLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # --- internals ------------------------------------------------------------------

    def _abandoned(self) -> StaleTakeover | None:
        """Holding the lock: an info file still here belongs to a holder that died."""
        for tmp in self.lock_dir.glob(f".{self.info_path.name}.*.tmp"):  # its torn writes
            with contextlib.suppress(OSError):
                tmp.unlink()
        try:
            raw = _read_raw(self.info_path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return StaleTakeover(self.path, None, "previous holder's info file found, "
                                 "process gone", f"unreadable: {exc.strerror or exc}")
        try:
            previous: LockInfo | None = _parse(raw, self.info_path)
        except ConfigurationError:
            previous = None
        return StaleTakeover(self.path, previous, "previous holder's info file found, "
                             "process gone", _line(raw[:80].decode("utf-8", "replace")))

    def _write_info(self, record: dict[str, Any]) -> None:
        """Write ``record`` completely to a temporary file, then rename it into place."""
        data = (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode()
        tmp = self.lock_dir / f".{self.info_path.name}.{uuid.uuid4().hex}.tmp"
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
                    os.replace(tmp, self.info_path)
                    break
                except PermissionError:  # Windows: a refused run is reading it right now
                    if attempt == _REPLACE_ATTEMPTS - 1:
                        raise
        except OSError as exc:
            raise self._io_error("cannot write the lock's info file", exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _busy(self) -> StationBusyError:
        try:
            owner: LockInfo | None = read_info(self.info_path)
        except (OSError, ConfigurationError):
            owner = None
        who = owner.describe() if owner is not None else (
            "another process (it has not said who yet)")
        return StationBusyError(f"{self.label} is in use by {who}; lock {self.path}",
                                owner=owner, path=self.path)

    def _io_error(self, what: str, exc: OSError) -> ConfigurationError:
        return ConfigurationError(f"{what} ({exc.strerror or exc})", source=str(self.path))


# --- info files -----------------------------------------------------------------------


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


def _line(text: str) -> str:
    """Text from a lock's info file, safe for a one-line message (``one_line``)."""
    return one_line(text, 200)
