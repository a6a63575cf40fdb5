"""The per-station lock: exclusive, one-line refusal, stale takeover, no double winners."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller import lock as lockmod
from controller.lock import (
    StaleTakeover,
    StationBusyError,
    StationLock,
    lock_file_name,
    process_alive,
    process_start_time,
    read_lock,
)
from drivers.errors import ConfigurationError
from tests.conftest import ROOT

STATION = "sim-tcp"


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    pid = int(proc.stdout)
    assert not process_alive(pid)
    return pid


def _write_lock(path: Path, **fields: object) -> None:
    record: dict[str, object] = {
        "format": 1, "station": STATION, "pid": _dead_pid(), "host": socket.gethostname(),
        "boot_id": lockmod.boot_id(), "process_start": None,
        "started_utc": "2026-01-01T00:00:00.000Z", "batch_dir": "batches/old",
        "token": "0" * 32}
    record.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")


def test_acquire_writes_a_complete_record_and_release_removes_it(tmp_path: Path) -> None:
    lock = StationLock(tmp_path / "locks", STATION)
    assert lock.acquire() is None
    info = read_lock(lock.path)
    assert lock.path == tmp_path / "locks" / "sim-tcp.lock"
    assert (info.pid, info.host, info.station) == (os.getpid(), socket.gethostname(), STATION)
    assert info.batch_dir is None
    assert info.started_utc.endswith("Z")
    if sys.platform.startswith("linux"):
        assert info.boot_id
        assert info.process_start
    lock.update(batch_dir=tmp_path / "batches" / "b1")
    assert read_lock(lock.path).batch_dir == str(tmp_path / "batches" / "b1")
    assert lock.still_held()
    lock.release()
    assert not lock.path.exists()
    assert [p.name for p in (tmp_path / "locks").iterdir()] == []  # no temp files left


def test_second_acquire_on_a_live_lock_is_refused_in_one_line(tmp_path: Path) -> None:
    with StationLock(tmp_path, STATION) as first:
        first.update(batch_dir="batches/20260101-POP70")
        second = StationLock(tmp_path, STATION)
        with pytest.raises(StationBusyError) as info:
            second.acquire()
        message = str(info.value)
        assert isinstance(info.value, ConfigurationError)  # the CLI turns it into exit 2
        assert "\n" not in message
        assert message.startswith(f"station {STATION} is in use by pid {os.getpid()} on ")
        assert "batch batches/20260101-POP70" in message
        assert str(first.path) in message
        assert info.value.owner is not None
        assert info.value.owner.pid == os.getpid()
        assert not second.held
    assert not first.path.exists()


def test_stale_lock_of_a_dead_process_is_taken_over_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "sim-tcp.lock"
    _write_lock(path)
    old = read_lock(path)
    lock = StationLock(tmp_path, STATION)
    takeover = lock.acquire()
    assert isinstance(takeover, StaleTakeover)
    assert lock.took_over is takeover
    assert takeover.previous is not None
    assert takeover.previous.pid == old.pid
    assert takeover.previous.batch_dir == "batches/old"
    assert "no longer running" in takeover.reason
    assert "\n" not in takeover.describe()
    assert read_lock(path).pid == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim-tcp.lock"]  # nothing aside
    lock.release()


def test_lock_from_before_a_reboot_is_stale_even_if_the_pid_is_alive(tmp_path: Path) -> None:
    if lockmod.boot_id() is None:
        pytest.skip("no boot id on this OS (the process start time covers reboots)")
    path = tmp_path / "sim-tcp.lock"
    _write_lock(path, pid=os.getpid(), boot_id="an-earlier-boot")
    with StationLock(tmp_path, STATION) as lock:
        assert lock.took_over is not None
        assert "restarted" in lock.took_over.reason


def test_reused_pid_with_another_start_time_is_stale(tmp_path: Path) -> None:
    if process_start_time(os.getpid()) is None:
        pytest.skip("process start time not available on this OS")
    path = tmp_path / "sim-tcp.lock"
    _write_lock(path, pid=os.getpid(), process_start="1")
    with StationLock(tmp_path, STATION) as lock:
        assert lock.took_over is not None
        assert "another process" in lock.took_over.reason


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"[]", b'{"pid": "12"}',
                                     b'{"pid": 0, "host": "h"}', b" " * 70_000],
                         ids=["empty", "torn", "not-utf8", "array", "pid-text", "pid-0",
                              "huge"])
def test_unreadable_lock_file_is_stale(tmp_path: Path, content: bytes) -> None:
    """A published lock is always complete (written, fsync'd, then linked into place), so
    an empty or unparsable one is damage from a crash, never a lock being written."""
    (tmp_path / "sim-tcp.lock").write_bytes(content)
    with StationLock(tmp_path, STATION) as lock:
        assert lock.took_over is not None
        assert lock.took_over.previous is None
        assert "unreadable" in lock.took_over.reason
        assert "\n" not in lock.took_over.describe()


def test_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path / "sim-tcp.lock", host="other-lab-pc", pid=_dead_pid())
    with pytest.raises(StationBusyError) as info:
        StationLock(tmp_path, STATION).acquire()
    message = str(info.value)
    assert "other-lab-pc" in message
    assert "another computer" in message
    assert "\n" not in message


def test_hostile_lock_contents_stay_one_line(tmp_path: Path) -> None:
    _write_lock(tmp_path / "sim-tcp.lock", pid=os.getpid(), boot_id=lockmod.boot_id(),
                batch_dir="a\nb\x1b[2J" + "x" * 500, started_utc="t\r\n")
    with pytest.raises(StationBusyError) as info:
        StationLock(tmp_path, STATION).acquire()
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    assert "\x1b" not in message


def test_release_only_removes_our_own_lock(tmp_path: Path) -> None:
    lock = StationLock(tmp_path, STATION)
    lock.acquire()
    _write_lock(lock.path, pid=os.getpid(), token="f" * 32)  # someone replaced it
    assert not lock.still_held()
    lock.release()
    assert lock.path.exists()
    assert read_lock(lock.path).token == "f" * 32
    lock.path.unlink()
    lock2 = StationLock(tmp_path, STATION)
    lock2.acquire()
    lock2.path.unlink()  # deleted by hand
    lock2.release()  # only logs


def test_acquire_twice_on_one_object_is_a_programming_error(tmp_path: Path) -> None:
    with StationLock(tmp_path, STATION) as lock, pytest.raises(RuntimeError):
        lock.acquire()


def _take(lock: StationLock, barrier: threading.Barrier, results: list[str]) -> None:
    barrier.wait()
    try:
        lock.acquire()
        results.append("won")
    except StationBusyError:
        results.append("busy")


@pytest.mark.parametrize("rounds", [25])
def test_racing_takers_of_a_stale_lock_exactly_one_wins(tmp_path: Path, rounds: int) -> None:
    for r in range(rounds):
        lock_dir = tmp_path / str(r)
        _write_lock(lock_dir / "sim-tcp.lock")
        takers = [StationLock(lock_dir, STATION) for _ in range(6)]
        barrier = threading.Barrier(len(takers))
        results: list[str] = []

        threads = [threading.Thread(target=_take, args=(t, barrier, results))
                   for t in takers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(results) == ["busy"] * 5 + ["won"], results
        winners = [t for t in takers if t.held]
        assert len(winners) == 1
        assert winners[0].still_held()
        assert sorted(p.name for p in lock_dir.iterdir()) == ["sim-tcp.lock"]


def _guard(lock_dir: Path, k: int) -> Path:
    """The takeover guard of the stale lock now in ``lock_dir`` (generation ``k``)."""
    digest = hashlib.sha256((lock_dir / "sim-tcp.lock").read_bytes()).hexdigest()[:16]
    return lock_dir / f".sim-tcp.lock.takeover-{digest}-{k}"


def test_guard_left_by_a_crashed_taker_is_skipped(tmp_path: Path) -> None:
    _write_lock(tmp_path / "sim-tcp.lock")
    _write_lock(_guard(tmp_path, 1), token="1" * 32)  # its taker died mid-takeover
    with StationLock(tmp_path, STATION) as lock:
        assert lock.took_over is not None
    assert list(tmp_path.iterdir()) == []  # the lock is released, the guards swept


def test_takeover_in_progress_by_a_live_process_is_busy(tmp_path: Path) -> None:
    _write_lock(tmp_path / "sim-tcp.lock")
    _write_lock(_guard(tmp_path, 1), pid=os.getpid(), token="2" * 32)
    with pytest.raises(StationBusyError, match=f"pid {os.getpid()} "):
        StationLock(tmp_path, STATION).acquire()
    assert read_lock(tmp_path / "sim-tcp.lock").token == "0" * 32  # untouched


def test_lock_dir_without_hard_links_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hard links there is no safe exclusive publish (a reader could see a
    half-written lock): say so in one line instead of locking unsafely."""
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(ConfigurationError, match="hard links") as info:
        StationLock(tmp_path, STATION).acquire()
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_lock_dir_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError) as info:
        StationLock(blocker / "locks", STATION).acquire()
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, StationBusyError)


_CHILD = """
import sys
from pathlib import Path
from controller.lock import StationBusyError, StationLock
lock = StationLock(Path(sys.argv[1]), sys.argv[2])
if sys.argv[3] == "try":
    try:
        lock.acquire()
    except StationBusyError as exc:
        print(exc)
        sys.exit(3)
    lock.release()
    sys.exit(0)
lock.acquire()
print("holding", flush=True)
sys.stdin.readline()
import os
os._exit(0)  # dies holding the lock, as a crash would
"""


def _child(tmp_path: Path, mode: str) -> list[str]:
    return [sys.executable, "-c", _CHILD, str(tmp_path), STATION, mode]


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    with StationLock(tmp_path, STATION):
        proc = subprocess.run(_child(tmp_path, "try"), capture_output=True, text=True,
                              cwd=ROOT, timeout=60, check=False)
        assert proc.returncode == 3, proc.stderr
        line = proc.stdout.strip()
        assert "\n" not in line
        assert f"in use by pid {os.getpid()}" in line
    proc = subprocess.run(_child(tmp_path, "try"), capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lock_of_a_crashed_process_is_taken_over(tmp_path: Path) -> None:
    child = subprocess.Popen(_child(tmp_path, "hold"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(StationBusyError, match=f"pid {child.pid} "):
            StationLock(tmp_path, STATION).acquire()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    with StationLock(tmp_path, STATION) as lock:
        assert lock.took_over is not None
        assert lock.took_over.previous is not None
        assert lock.took_over.previous.pid == child.pid


# --- liveness --------------------------------------------------------------------------


def test_posix_liveness() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert not process_alive(0)
    assert not process_alive(-1)
    assert not process_alive(2**62)
    if os.name == "posix":
        assert process_alive(1)  # init: exists, PermissionError when not root


class _FakeWin(lockmod._WinApi):
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

    def creation_time(self, handle: int) -> int | None:
        return 133_000_000_000_000_000 + handle

    def close(self, handle: int) -> None:
        self.open_handles.remove(handle)


def test_windows_liveness_logic() -> None:
    api = _FakeWin({10: lockmod.STILL_ACTIVE, 11: 0, 12: 1}, denied=frozenset({4}))
    assert lockmod._windows_alive(10, api)
    assert not lockmod._windows_alive(11, api)  # exited with 0
    assert not lockmod._windows_alive(12, api)
    assert not lockmod._windows_alive(99, api)  # no such process
    assert lockmod._windows_alive(4, api)  # exists, access denied (another user / system)
    assert lockmod._windows_start(10, api) == str(133_000_000_000_000_000 + 1010)
    assert lockmod._windows_start(99, api) is None
    assert api.open_handles == set()  # every handle closed


@pytest.mark.skipif(sys.platform != "win32", reason="the real kernel32 is only on Windows")
def test_windows_liveness_real() -> None:  # pragma: no cover - runs on the lab PCs
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert process_start_time(os.getpid()) is not None


@pytest.mark.parametrize(("name", "expected"), [
    ("sim-tcp", "sim-tcp.lock"), ("furnace_1.a", "furnace_1.a.lock")])
def test_lock_file_name_keeps_simple_names(name: str, expected: str) -> None:
    assert lock_file_name(name) == expected


@pytest.mark.parametrize("name", ["a/b", "..", "CON", "nul", "a b", "Öfen", "x" * 300,
                                  "a\nb", "", "COM1.x"])
def test_lock_file_name_is_safe_and_distinct(name: str) -> None:
    file = lock_file_name(name)
    assert file.endswith(".lock")
    assert len(file) < 100
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in file)
    assert file.split(".")[0].upper() not in lockmod._WINDOWS_RESERVED
    assert not file.startswith(".")
    assert file != lock_file_name(name + "_")


def test_default_lock_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(lockmod.LOCK_DIR_ENV, str(tmp_path))
    assert lockmod.default_lock_dir() == tmp_path
    monkeypatch.delenv(lockmod.LOCK_DIR_ENV)
    assert lockmod.default_lock_dir().parts[-2:] == ("furnace", "locks")


def test_read_lock_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.lock"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigurationError, match="not a station lock record") as info:
        read_lock(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_lock(tmp_path / "none.lock")
