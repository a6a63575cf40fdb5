"""One run per furnace: an exclusive lock file per station, with stale-lock detection.

Not here: the serial port's own exclusivity (the bus) or what a run does once it holds the
lock (``session``). Works the same on POSIX and Windows (reference/faults.md §2.8 K1).

The lock is ``<lock_dir>/<station>.lock``, a small JSON record written completely to a
temporary file (``open(tmp, "x")``), fsync'd, and then published under the lock name with
``os.link``, which fails if the name exists: exactly one creator wins and nobody ever reads
a half-written lock. A lock folder without hard links (FAT, some shares) is refused::

    {"format": 1, "station": "sim-tcp", "pid": 4242, "host": "labpc-3",
     "boot_id": "0f6c…" | null, "process_start": "123456" | null,
     "started_utc": "2026-05-09T07:35:25.123Z", "batch_dir": "batches/…" | null,
     "token": "<random hex, unique per acquisition>"}

A lock whose process has gone is *stale* and the next ``acquire`` takes it over: the
owner's host is this one and (the boot id differs, or the pid is not running, or the pid
now belongs to a process with another start time). An empty or unparsable lock file is
stale too: a published lock is always complete, so such a file is damage, not a lock
being written. A lock from another host is never judged stale (its process cannot be
checked from here); the message says which file to delete. Takers of one stale lock
serialise on a guard file (``_take_over``), so exactly one of them wins, and the lock
name is never momentarily free during a takeover.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.audit import format_utc, fsync_dir
from controller.clock import utc_now
from drivers.errors import ConfigurationError

__all__ = [
    "LOCK_DIR_ENV",
    "LockInfo",
    "StaleTakeover",
    "StationBusyError",
    "StationLock",
    "boot_id",
    "default_lock_dir",
    "lock_file_name",
    "process_alive",
    "process_start_time",
    "read_lock",
]

logger = logging.getLogger(__name__)

LOCK_DIR_ENV = "FURNACE_LOCK_DIR"
_FORMAT = 1
_MAX_LOCK_BYTES = 64 * 1024  # a real lock record is ~300 bytes; anything larger is damage
_ATTEMPTS = 8  # acquire rounds under contention before giving up (each round is I/O only)
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


@dataclass(frozen=True, slots=True)
class LockInfo:
    """One lock record as read from disk (``path`` is where it was read from)."""

    station: str
    pid: int
    host: str
    boot_id: str | None
    process_start: str | None
    started_utc: str
    batch_dir: str | None
    token: str
    path: Path

    def describe(self) -> str:
        """``pid N on HOST since T (batch B)`` on one line, for messages and audits."""
        batch = f"batch {_line(self.batch_dir)}" if self.batch_dir else "no batch yet"
        return (f"pid {self.pid} on {_line(self.host)} since {_line(self.started_utc)} "
                f"({batch})")


@dataclass(frozen=True, slots=True)
class StaleTakeover:
    """A stale lock that ``acquire`` replaced: who held it (None if unreadable) and why it
    was judged stale. The caller should audit it."""

    path: Path
    previous: LockInfo | None
    reason: str
    raw_preview: str  # the first bytes of the old file, for an unreadable one

    def describe(self) -> str:
        """One line: whose lock it was and why it was taken over."""
        owner = self.previous.describe() if self.previous else f"unreadable ({self.raw_preview})"
        return f"took over stale lock {self.path} of {owner}: {self.reason}"


class StationBusyError(ConfigurationError):
    """Another live process holds this station's lock. ``owner`` is its record (None when
    the lock could not be taken because of contention)."""

    def __init__(self, message: str, *, owner: LockInfo | None, path: Path) -> None:
        super().__init__(message)
        self.owner = owner
        self.path = path


def default_lock_dir() -> Path:
    """Where station locks live unless the caller passes a folder.

    ``$FURNACE_LOCK_DIR`` if set; on Windows ``%PROGRAMDATA%\\furnace\\locks`` (one folder
    for every account on the lab PC); elsewhere ``$XDG_STATE_HOME/furnace/locks`` (default
    ``~/.local/state/furnace/locks``). Not beside the batches folder: two runs given
    different ``--batches`` folders must still see each other's lock. Never a network share:
    liveness is checked on this host only.
    """
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("PROGRAMDATA") or os.environ.get("LOCALAPPDATA") or "C:\\"
        return Path(base) / "furnace" / "locks"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "furnace" / "locks"


def lock_file_name(station_name: str) -> str:
    """A file name safe on every OS for a station name: ``sim-tcp`` -> ``sim-tcp.lock``.

    Characters other than letters, digits and ``. _ -`` become ``_``, a Windows device name
    (``CON``, ``COM1``...) gets a leading ``_``, and a short hash of the real name is added
    whenever the name had to change, so two different stations never share a lock.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", station_name)[:64].strip(".") or "station"
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = f"_{safe}"  # CON, NUL.x, COM1...: device names on Windows, with any suffix
    if safe != station_name:
        digest = hashlib.sha256(station_name.encode("utf-8", "surrogatepass")).hexdigest()
        safe = f"{safe}-{digest[:10]}"
    return f"{safe}.lock"


def read_lock(path: Path) -> LockInfo:
    """Read and check one lock file, for diagnostics. Takes no lock and changes nothing.

    Raises ``FileNotFoundError`` if there is none, ``ConfigurationError`` (naming the file)
    if it is not a lock record, and ``OSError`` if it cannot be read.
    """
    return _parse(_read_raw(path), path)


class StationLock:
    """Exclusive, OS-level claim on one furnace station for the length of a run.

    Use as ``with StationLock(dir, station.name) as lock: ...`` or call ``acquire()`` and
    ``release()``. ``took_over`` tells whether a stale lock was replaced (audit it).
    Blocking: file I/O and an fsync, no waiting; a held lock fails at once.
    """

    def __init__(self, lock_dir: Path, station_name: str, *,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.lock_dir = Path(lock_dir)
        self.station_name = station_name
        self.path = self.lock_dir / lock_file_name(station_name)
        self.took_over: StaleTakeover | None = None
        self._wall = wall if wall is not None else utc_now
        self._record: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        """True between a successful ``acquire`` and ``release`` (no disk check)."""
        return self._record is not None

    def acquire(self) -> StaleTakeover | None:
        """Create the lock file, taking over a stale one. Returns the takeover, if any.

        Raises:
            StationBusyError: a live process on this host (or any process on another host)
                holds the lock; one line naming pid, host, start, batch and lock file.
            ConfigurationError: the lock folder or file cannot be created or written.
            RuntimeError: this object already holds the lock.
        """
        if self._record is not None:
            raise RuntimeError(f"{self.path} is already held by this StationLock")
        record = {"format": _FORMAT, "station": self.station_name, "pid": os.getpid(),
                  "host": socket.gethostname(), "boot_id": boot_id(),
                  "process_start": process_start_time(os.getpid()),
                  "started_utc": format_utc(self._wall()), "batch_dir": None,
                  "token": uuid.uuid4().hex}
        data = _encode(record)
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._write_temp(data, str(record["token"]))
        except OSError as exc:
            raise self._io_error("cannot create the lock file", exc) from None
        try:
            takeover = self._acquire_loop(tmp)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._record = record
        self.took_over = takeover
        if takeover is not None:
            logger.warning("%s", takeover.describe())
        return takeover

    def update(self, *, batch_dir: Path | str) -> None:
        """Record the batch folder in the lock (atomic replace). Raises ``RuntimeError`` if
        the lock is not held and ``ConfigurationError`` if the file cannot be rewritten."""
        if self._record is None:
            raise RuntimeError(f"{self.path} is not held")
        record = {**self._record, "batch_dir": str(batch_dir)}
        data = _encode(record)
        try:
            tmp = self._write_temp(data, f"{record['token']}-u")
            try:
                for attempt in range(_ATTEMPTS):
                    try:
                        os.replace(tmp, self.path)
                        break
                    except PermissionError:  # Windows: another process is reading it
                        if attempt == _ATTEMPTS - 1:
                            raise
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            fsync_dir(self.lock_dir)
        except OSError as exc:
            raise self._io_error("cannot update the lock file", exc) from None
        self._record = record

    def still_held(self) -> bool:
        """Re-read the lock file: True if it is still this acquisition's (a periodic check
        that nobody deleted or replaced it)."""
        if self._record is None:
            return False
        try:
            return read_lock(self.path).token == str(self._record["token"])
        except (OSError, ValueError):
            return False

    def release(self) -> None:
        """Remove the lock file if it is still ours; otherwise leave it alone. Never raises
        for I/O: a lock left behind is stale once this process ends."""
        record, self._record = self._record, None
        if record is None:
            return
        try:
            if read_lock(self.path).token != record["token"]:
                logger.warning("%s is no longer this process's lock; left in place", self.path)
                return
            self.path.unlink()
        except FileNotFoundError:
            logger.warning("%s was already gone at release", self.path)
        except (OSError, ValueError) as exc:
            logger.warning("could not release %s (%s); it will be stale after exit",
                           self.path, exc)

    def __enter__(self) -> StationLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # --- internals ------------------------------------------------------------------

    def _acquire_loop(self, tmp: Path) -> StaleTakeover | None:
        for _ in range(_ATTEMPTS):
            if self._publish(tmp, self.path):
                return None
            try:
                raw = _read_raw(self.path)
            except FileNotFoundError:
                continue  # released meanwhile: try to create it again
            except OSError as exc:  # e.g. a Windows sharing violation while another reads
                logger.debug("cannot read %s (%s); retrying", self.path, exc)
                continue
            owner, reason = _judge(raw, self.path)
            if reason is None:
                raise self._busy(owner)
            if self._take_over(raw, tmp):
                return StaleTakeover(path=self.path, previous=owner, reason=reason,
                                     raw_preview=_line(raw[:80].decode("utf-8", "replace")))
        raise StationBusyError(
            f"station {_line(self.station_name)} is contended: could not take its lock "
            f"after {_ATTEMPTS} attempts; lock file {self.path}", owner=None, path=self.path)

    def _take_over(self, stale: bytes, tmp: Path) -> bool:
        """Replace the stale lock ``stale`` by ours; True if we did.

        Takers of one stale record first claim a guard named after it,
        ``.<lock>.takeover-<hash of the record>-<k>``, by exclusive creation; only the
        guard's holder may replace the lock, and only while it still holds that record, by
        ``os.replace`` (never a moment without a lock file, so a fresh ``acquire`` cannot
        slip in). A guard whose holder died is skipped by claiming generation ``k + 1``.
        """
        digest = hashlib.sha256(stale).hexdigest()[:16]
        k = 1
        for _ in range(4 * _ATTEMPTS):
            guard = self.lock_dir / f".{self.path.name}.takeover-{digest}-{k}"
            if not self._publish(tmp, guard):
                try:
                    holder, dead = _judge(_read_raw(guard), guard)
                except FileNotFoundError:
                    continue  # its holder finished meanwhile: claim this generation again
                except OSError:
                    return False
                if dead is None:  # a live process is taking over right now: it wins
                    raise self._busy(holder)
                logger.debug("takeover guard %s is stale (%s)", guard, dead)
                k += 1
                continue
            try:
                won = self._replace_if(stale, tmp)
            finally:
                for j in range(1, k + 1):  # ours and the stale ones before it
                    with contextlib.suppress(OSError):
                        (self.lock_dir / f".{self.path.name}.takeover-{digest}-{j}").unlink()
            return won
        return False

    def _replace_if(self, stale: bytes, tmp: Path) -> bool:
        """Holding the takeover guard: replace the lock by ``tmp`` if it is still
        ``stale``. Nobody else may change it meanwhile (a fresh acquirer's ``os.link``
        fails, other takers lack the guard, and its owner is dead)."""
        try:
            if _read_raw(self.path) != stale:
                return False
        except OSError:
            return False
        for attempt in range(_ATTEMPTS):
            try:
                os.replace(tmp, self.path)
                break
            except PermissionError:  # Windows: another process has it open for reading
                if attempt == _ATTEMPTS - 1:
                    return False
            except OSError as exc:
                raise self._io_error("cannot replace the stale lock file", exc) from None
        with contextlib.suppress(OSError):
            fsync_dir(self.lock_dir)
        return True

    def _publish(self, src: Path, dst: Path) -> bool:
        """Make the complete, fsync'd file ``src`` appear as ``dst`` unless ``dst`` exists
        (``os.link``: atomic and exclusive). True if it did; ``src`` stays in place.

        Raises ``ConfigurationError`` if the lock folder cannot hold hard links (FAT, some
        network shares): without them there is no safe exclusive publish.
        """
        try:
            os.link(src, dst)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV) or (
                    getattr(exc, "winerror", None) in (1, 50)):
                raise ConfigurationError(
                    f"the lock folder does not support hard links ({exc.strerror or exc}); "
                    "use a folder on a local NTFS/ext4/APFS disk",
                    source=str(self.lock_dir)) from None
            raise self._io_error("cannot create the lock file", exc) from None
        with contextlib.suppress(OSError):  # the lock exists; only its durability is unsure
            fsync_dir(self.lock_dir)
        return True

    def _write_temp(self, data: bytes, tag: str) -> Path:
        tmp = self.lock_dir / f".{self.path.name}.{tag}.tmp"
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _busy(self, owner: LockInfo | None) -> StationBusyError:
        name = _line(self.station_name)
        if owner is None:
            return StationBusyError(f"station {name} is in use; lock file {self.path}",
                                    owner=None, path=self.path)
        remote = "" if _same_host(owner.host) else (
            "; that is another computer, so it cannot be checked from here: delete the lock "
            "file only if no run is active there")
        return StationBusyError(f"station {name} is in use by {owner.describe()}; lock file "
                                f"{self.path}{remote}", owner=owner, path=self.path)

    def _io_error(self, what: str, exc: OSError) -> ConfigurationError:
        return ConfigurationError(f"{what} ({exc.strerror or exc})", source=str(self.path))


# --- lock records ---------------------------------------------------------------------


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")


def _read_raw(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_MAX_LOCK_BYTES + 1)


def _parse(raw: bytes, path: Path) -> LockInfo:
    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(f"not a station lock record ({why})", source=str(path))

    if len(raw) > _MAX_LOCK_BYTES:
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
    text = {k: obj.get(k) for k in ("host", "started_utc", "token")}
    if not all(isinstance(v, str) and v for v in text.values()):
        raise bad("host, started_utc or token missing")
    opt = {k: obj.get(k) for k in ("boot_id", "process_start", "batch_dir")}
    if not all(v is None or isinstance(v, str) for v in opt.values()):
        raise bad("boot_id, process_start or batch_dir not text")
    station = obj.get("station")
    return LockInfo(station=station if isinstance(station, str) else "", pid=pid,
                    host=str(text["host"]), boot_id=opt["boot_id"],
                    process_start=opt["process_start"], started_utc=str(text["started_utc"]),
                    batch_dir=opt["batch_dir"], token=str(text["token"]), path=path)


def _judge(raw: bytes, path: Path) -> tuple[LockInfo | None, str | None]:
    """The lock's owner (None if unreadable) and why it is stale (None: it is live)."""
    try:
        owner = _parse(raw, path)
    except ConfigurationError as exc:
        return None, f"the lock file is unreadable: {exc}"
    if not _same_host(owner.host):
        return owner, None
    here = boot_id()
    if owner.boot_id and here and owner.boot_id != here:
        return owner, "this computer has restarted since (boot id differs)"
    if not process_alive(owner.pid):
        return owner, f"process {owner.pid} is no longer running"
    now_start = process_start_time(owner.pid) if owner.process_start else None
    if now_start is not None and now_start != owner.process_start:
        return owner, f"pid {owner.pid} now belongs to another process (start time differs)"
    return owner, None


def _same_host(host: str) -> bool:
    return host.casefold() == socket.gethostname().casefold()


def _line(text: str) -> str:
    """Text safe for a one-line message: control characters escaped, length capped."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= 200 else out[:197] + "..."


# --- this host: boot id, process liveness and start time ------------------------------


def boot_id() -> str | None:
    """An id that changes at every boot (Linux ``/proc/sys/kernel/random/boot_id``), or None
    where there is no cheap one (Windows and macOS rely on the process start time)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def process_alive(pid: int) -> bool:
    """True if process ``pid`` exists on this host (a zombie counts as dead).

    POSIX: ``os.kill(pid, 0)``: ProcessLookupError is dead, PermissionError is alive (it
    exists but belongs to another user). Windows: ``OpenProcess`` + ``GetExitCodeProcess``
    (``os.kill`` there would *terminate* the process). Unknown errors count as alive: the
    safe side is to refuse, not to take over.
    """
    if pid <= 0:
        return False  # os.kill(0, 0) would signal our own process group
    if sys.platform == "win32":
        return _windows_alive(pid, _win_api())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return _linux_state(pid) != "Z"


def process_start_time(pid: int) -> str | None:
    """An opaque start-time stamp of ``pid`` (Linux: clock ticks after boot from
    ``/proc/<pid>/stat``; Windows: the creation FILETIME), or None if not cheaply known.
    Two different processes that reuse one pid have different stamps."""
    if pid <= 0:
        return None
    if sys.platform == "win32":
        return _windows_start(pid, _win_api())
    fields = _linux_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _linux_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (after the parenthesised command name)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text("utf-8", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 1:].split()


def _linux_state(pid: int) -> str | None:
    fields = _linux_stat(pid)
    return fields[0] if fields else None


# Windows: the logic below takes the API as a parameter so it can be tested anywhere.
STILL_ACTIVE = 259
_ERROR_ACCESS_DENIED = 5
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


class _WinApi:
    """The four kernel32 calls the liveness check needs, behind plain Python methods."""

    def open_process(self, pid: int) -> int:
        """A handle (0 on failure; then ``last_error`` says why)."""
        raise NotImplementedError

    def last_error(self) -> int:
        raise NotImplementedError

    def exit_code(self, handle: int) -> int | None:
        raise NotImplementedError

    def creation_time(self, handle: int) -> int | None:
        raise NotImplementedError

    def close(self, handle: int) -> None:
        raise NotImplementedError


def _windows_alive(pid: int, api: _WinApi) -> bool:
    try:
        handle = api.open_process(pid)
    except (OverflowError, ValueError, TypeError):
        return False
    if not handle:
        # Access denied: the process exists (another user's, or elevated). Anything else,
        # e.g. ERROR_INVALID_PARAMETER (87): no such process.
        return api.last_error() == _ERROR_ACCESS_DENIED
    try:
        code = api.exit_code(handle)
        # A process that really exited with code 259 looks alive: refusing is the safe side.
        return code is None or code == STILL_ACTIVE
    finally:
        api.close(handle)


def _windows_start(pid: int, api: _WinApi) -> str | None:
    try:
        handle = api.open_process(pid)
    except (OverflowError, ValueError, TypeError):
        return None
    if not handle:
        return None
    try:
        created = api.creation_time(handle)
        return None if created is None else str(created)
    finally:
        api.close(handle)


def _win_api() -> _WinApi:
    if sys.platform == "win32":
        return _Kernel32()
    raise OSError("the Windows API is only available on Windows")


if sys.platform == "win32":  # pragma: no cover - exercised on the Windows lab PCs
    import ctypes
    from ctypes import wintypes

    class _Kernel32(_WinApi):
        def __init__(self) -> None:
            k = ctypes.WinDLL("kernel32", use_last_error=True)
            k.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
            k.OpenProcess.restype = wintypes.HANDLE
            k.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
            k.GetExitCodeProcess.restype = wintypes.BOOL
            k.GetProcessTimes.argtypes = [wintypes.HANDLE] + [
                ctypes.POINTER(wintypes.FILETIME)] * 4
            k.GetProcessTimes.restype = wintypes.BOOL
            k.CloseHandle.argtypes = [wintypes.HANDLE]
            k.CloseHandle.restype = wintypes.BOOL
            self._k = k

        def open_process(self, pid: int) -> int:
            return int(self._k.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
                       or 0)

        def last_error(self) -> int:
            return ctypes.get_last_error()

        def exit_code(self, handle: int) -> int | None:
            code = wintypes.DWORD()
            if not self._k.GetExitCodeProcess(handle, ctypes.byref(code)):
                return None
            return int(code.value)

        def creation_time(self, handle: int) -> int | None:
            times = [wintypes.FILETIME() for _ in range(4)]
            if not self._k.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
                return None
            return (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime

        def close(self, handle: int) -> None:
            self._k.CloseHandle(handle)
