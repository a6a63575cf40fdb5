"""Is a process on this host still running? For ``furnace ctl``'s check of control.json.

Not here: the station lock, which needs no such check (an OS lock dies with its process;
see ``lock`` and docs/decisions/0006-station-lock.md). Works on POSIX and Windows.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

__all__ = ["STILL_ACTIVE", "process_alive"]


def process_alive(pid: int) -> bool:
    """True if process ``pid`` exists on this host (a zombie counts as dead).

    POSIX: ``os.kill(pid, 0)``: ProcessLookupError is dead, PermissionError is alive (it
    exists but belongs to another user). Windows: ``OpenProcess`` + ``GetExitCodeProcess``
    (``os.kill`` there would *terminate* the process). Unknown errors count as alive: the
    safe side is to refuse, not to take over. Never raises; does not block.
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


def _linux_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (``Z`` for a zombie), None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text("utf-8", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 1:].split()  # after the parenthesised command name
    return fields[0] if fields else None


# Windows: the logic below takes the API as a parameter so it can be tested anywhere.
STILL_ACTIVE = 259
_ERROR_ACCESS_DENIED = 5
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


class _WinApi:
    """The three kernel32 calls the liveness check needs, behind plain Python methods."""

    def open_process(self, pid: int) -> int:
        """A handle (0 on failure; then ``last_error`` says why)."""
        raise NotImplementedError

    def last_error(self) -> int:
        raise NotImplementedError

    def exit_code(self, handle: int) -> int | None:
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

        def close(self, handle: int) -> None:
            self._k.CloseHandle(handle)
