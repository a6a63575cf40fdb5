"""One controller per furnace: an OS file lock keyed on the instrument's physical endpoint.

Not here: the serial port's own exclusivity (the bus), what a run does once it holds the
lock (``session``) or what the info file beside the lock says (``lock_info``). Works the
same on POSIX and Windows. Decision: docs/decisions/0006.

The key is the furnace controller's endpoint, not the station's name: the bus (TCP
``host:port`` with the host resolved, so ``localhost`` and ``127.0.0.1`` agree; or the
serial device with symlinks resolved, ``COM3`` case-insensitive on Windows; pyserial's
``socket://`` and ``rfc2217://`` URLs count as TCP) plus the furnace's unit id::

    tcp 127.0.0.1:5020 unit 1        serial /dev/ttyUSB0 unit 1        serial COM3 unit 1

The lock lives in one folder for every account on the PC (``/var/lib/furnace/locks``,
``%PROGRAMDATA%\\furnace\\locks``; ``$FURNACE_LOCK_DIR`` moves it) as ``<key>-<hash>.lock``,
held with ``filelock`` (``flock``/``LockFileEx``): the OS frees it when its process dies,
so there is no stale-lock guessing. Beside it, ``<key>-<hash>.json`` says who holds it
(``lock_info``: its format, and the report of a holder that died with the lock, which
``acquire`` returns so the session can audit it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import filelock
import platformdirs

from controller.operator.endpoint import Resolver, endpoint_key
from controller.operator.lock_info import (
    LockInfo,
    StaleTakeover,
    find_abandoned,
    new_record,
    one_line,
    read_info,
    write_info,
)
from controller.recipe.station import Station
from controller.records.audit import format_utc
from controller.run.clock import utc_now
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
            return f"station {one_line(self.key)}"
        return f"furnace {one_line(self.key)} (station {one_line(self.station_name)})"

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
            takeover = find_abandoned(self.path, self.info_path)
            record = new_record(key=self.key, station=self.station_name,
                                station_file=self.station_file,
                                started_utc=format_utc(self._wall()))
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

    def _write_info(self, record: dict[str, Any]) -> None:
        """``write_info``, its I/O errors as ``ConfigurationError`` naming the lock."""
        try:
            write_info(self.info_path, record)
        except OSError as exc:
            raise self._io_error("cannot write the lock's info file", exc) from None

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
