"""Process liveness on this host (``furnace ctl``'s check of control.json), POSIX and the
Windows branch against a fake kernel32."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controller.operator import process as procmod
from controller.operator.process import process_alive


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(proc.stdout)


def test_liveness() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert not process_alive(0)
    assert not process_alive(-1)
    assert not process_alive(2**62)
    if os.name == "posix":
        assert process_alive(1)  # init: exists, PermissionError when not root


class _FakeWin(procmod._WinApi):
    """kernel32 as the Windows branch sees it, for one process table."""

    def __init__(self, table: dict[int, int], denied: frozenset[int] = frozenset()) -> None:
        self.table = table  # pid -> exit code (259 = still running)
        self.denied = denied
        self.error = 0
        self.open_handles: set[int] = set()

    def open_process(self, pid: int) -> int:
        if pid in self.denied:
            self.error = 5
            return 0
        if pid not in self.table:
            self.error = 87  # ERROR_INVALID_PARAMETER
            return 0
        self.open_handles.add(pid + 1000)
        return pid + 1000

    def last_error(self) -> int:
        return self.error

    def exit_code(self, handle: int) -> int | None:
        return self.table[handle - 1000]

    def close(self, handle: int) -> None:
        self.open_handles.remove(handle)


def test_windows_liveness_logic() -> None:
    api = _FakeWin({10: procmod.STILL_ACTIVE, 11: 0, 12: 1}, denied=frozenset({4}))
    assert procmod._windows_alive(10, api)
    assert not procmod._windows_alive(11, api)  # exited with 0
    assert not procmod._windows_alive(12, api)
    assert not procmod._windows_alive(99, api)  # no such process
    assert procmod._windows_alive(4, api)  # exists, access denied (another user / system)
    assert api.open_handles == set()  # every handle closed


@pytest.mark.skipif(sys.platform != "win32", reason="the real kernel32 is only on Windows")
def test_windows_liveness_real() -> None:  # pragma: no cover - runs on the lab PCs
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
