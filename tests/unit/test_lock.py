"""The station lock: keyed on the furnace's endpoint, machine-wide, an OS lock that dies with
its process, and a one-line refusal that names the holder."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.operator import lock as lockmod
from controller.operator.endpoint import endpoint_key
from controller.operator.lock import (
    StationBusyError,
    StationLock,
    lock_for_station,
    lock_stem,
    machine_lock_dir,
    read_info,
)
from controller.recipe.station import BusConfig, Station, load_station
from drivers.errors import ConfigurationError
from tests.conftest import ROOT

SIM_TCP = ROOT / "stations" / "sim-tcp.toml"


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"unexpected name lookup of {host!r}")


def _variant(name: str, *, host: str = "127.0.0.1", port: int = 5020, unit: int = 1
             ) -> Station:
    """The sim-tcp station renamed and moved, as a copied and edited station file is."""
    base = load_station(SIM_TCP)[0]
    return base.model_copy(update={
        "name": name, "bus": base.bus.model_copy(update={"host": host, "port": port}),
        "furnace": base.furnace.model_copy(update={"unit": unit})})


def _station_file(folder: Path, name: str, host: str) -> Path:
    text = SIM_TCP.read_text(encoding="utf-8")
    text = text.replace('name = "sim-tcp"', f'name = "{name}"')
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"', 1)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the key ---------------------------------------------------------------------------


def test_renamed_station_files_on_one_endpoint_cannot_both_lock(tmp_path: Path) -> None:
    first = lock_for_station(_variant("furnace-a", host="localhost"), lock_dir=tmp_path)
    copy = lock_for_station(_variant("copy-of-a", host="127.0.0.1"), lock_dir=tmp_path)
    assert first is not None
    assert copy is not None
    with first:
        with pytest.raises(StationBusyError, match="in use by pid") as info:
            copy.acquire()
        message = str(info.value)
        assert "\n" not in message
        assert "tcp 127.0.0.1:5020 unit 1" in message
        assert "station furnace-a" in message  # the holder, as its info file says
        assert info.value.owner is not None
        assert info.value.owner.pid == os.getpid()
        # another furnace behind the same gateway, or another gateway, is not in use
        for other in (_variant("b", unit=7), _variant("c", port=5021)):
            lock = lock_for_station(other, lock_dir=tmp_path)
            assert lock is not None
            with lock:
                pass


@pytest.mark.parametrize(("a", "b"), [
    ("localhost", "127.0.0.1"),
    ("LOCALHOST.", "127.0.0.1"),
    ("::1", "127.0.0.1"),
    ("[::1]", "127.0.0.1"),
    ("127.0.1.1", "127.0.0.1"),
    ("0.0.0.0", "127.0.0.1"),
    ("::ffff:10.0.0.5", "10.0.0.5"),
    ("[2001:DB8::0:1]", "2001:db8::1"),
])
def test_host_spellings_of_one_address_share_a_key(a: str, b: str) -> None:
    def key(host: str) -> str:
        return endpoint_key(BusConfig(kind="tcp", host=host, port=502), 1, resolve=_no_dns)

    assert key(a) == key(b)


def test_host_names_are_resolved_and_compared_by_address() -> None:
    table = {"gw.lab": ["10.0.0.9", "10.0.0.5"], "furnace-gw": ["10.0.0.5", "10.0.0.9"],
             "me": ["127.0.1.1"]}

    def resolve(host: str, port: int) -> list[str]:
        return table.get(host, [])

    def key(host: str) -> str:
        return endpoint_key(BusConfig(kind="tcp", host=host, port=502), 1, resolve=resolve)

    assert key("gw.lab") == key("GW.LAB.") == key("furnace-gw") == key("10.0.0.5")
    assert key("gw.lab") == "tcp 10.0.0.5:502 unit 1"
    assert key("me") == key("localhost")
    assert key("unknown.lab") == "tcp unknown.lab:502 unit 1"  # no address: the name


def test_rtu_over_tcp_urls_are_the_tcp_endpoint() -> None:
    rtu = BusConfig(kind="rtu", device="socket://localhost:5021?logging=debug")
    tcp = BusConfig(kind="tcp", host="127.0.0.1", port=5021)
    assert endpoint_key(rtu, 1, resolve=_no_dns) == endpoint_key(tcp, 1, resolve=_no_dns)
    assert endpoint_key(BusConfig(kind="rtu", device="RFC2217://[::1]:5021"), 1,
                        resolve=_no_dns) == "tcp 127.0.0.1:5021 unit 1"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX device paths")
def test_serial_device_symlinks_resolve_to_one_key(tmp_path: Path) -> None:
    tty = tmp_path / "ttyUSB0"
    tty.write_text("")
    (tmp_path / "by-id").mkdir()
    link = tmp_path / "by-id" / "usb-FTDI_FT232R-if00-port0"
    link.symlink_to(tty)

    def key(device: str) -> str:
        return endpoint_key(BusConfig(kind="rtu", device=device), 1, windows=False)

    assert key(str(link)) == key(str(tty)) == key(f"{tmp_path}/by-id/../ttyUSB0")
    assert key(str(tty)) == f"serial {os.path.realpath(tty)} unit 1"
    assert key(str(tty)) != endpoint_key(BusConfig(kind="rtu", device=str(tty)), 2,
                                         windows=False)


def test_windows_com_port_names_are_case_insensitive() -> None:
    def key(device: str) -> str:
        return endpoint_key(BusConfig(kind="rtu", device=device), 3, windows=True)

    assert key("COM3") == key("com3") == key("\\\\.\\COM3") == key("//./com3") == \
        key("COM3:") == "serial COM3 unit 3"
    assert key("COM30") != key("COM3")


def test_the_in_process_simulator_takes_no_lock(station: Station) -> None:
    assert station.bus.kind == "sim"
    assert lock_for_station(station) is None


@pytest.mark.parametrize("key", ["tcp 127.0.0.1:5020 unit 1", "CON", "COM1", "../../x",
                                 "a/b\\c:d", "", "..", "é" * 300, "nul.txt"])
def test_lock_file_names_are_safe_and_distinct(key: str) -> None:
    stem = lock_stem(key)
    assert "/" not in stem
    assert "\\" not in stem
    assert stem.isascii()
    assert not stem.startswith(".")
    assert stem.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}
    assert len(stem) <= 100
    assert stem != lock_stem(key + "_")


# --- the folder ------------------------------------------------------------------------


def test_default_lock_dir_is_machine_wide(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """Not in the user's home: another account's run must see the lock."""
    machine = machine_lock_dir()
    assert not machine.is_relative_to(Path.home())
    if sys.platform == "win32":
        assert machine == Path(os.environ["PROGRAMDATA"]) / "furnace" / "locks"
    elif sys.platform.startswith("linux"):
        assert machine == Path("/var/lib/furnace/locks")
    monkeypatch.setenv(lockmod.LOCK_DIR_ENV, str(tmp_path / "override"))
    assert lockmod.default_lock_dir() == tmp_path / "override"
    monkeypatch.delenv(lockmod.LOCK_DIR_ENV)
    monkeypatch.setattr(lockmod, "machine_lock_dir", lambda: tmp_path / "machine" / "locks")
    assert lockmod.default_lock_dir() == tmp_path / "machine" / "locks"
    assert (tmp_path / "machine" / "locks").is_dir()
    assert list((tmp_path / "machine" / "locks").iterdir()) == []  # the probe is gone


def test_unusable_machine_folder_falls_back_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "var-lib"
    blocker.write_text("a file where the folder should be")
    monkeypatch.delenv(lockmod.LOCK_DIR_ENV)
    monkeypatch.setattr(lockmod, "machine_lock_dir", lambda: blocker / "locks")
    monkeypatch.setattr(lockmod, "user_lock_dir", lambda: tmp_path / "home" / "locks")
    monkeypatch.setattr(lockmod, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="controller.operator.lock"):
        first = lockmod.default_lock_dir()
        second = lockmod.default_lock_dir()
    assert first == second == tmp_path / "home" / "locks"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert "\n" not in text
    assert str(blocker / "locks") in text
    assert str(tmp_path / "home" / "locks") in text
    assert "same account" in text


def test_unwritable_lock_dir_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError) as info:
        StationLock(blocker / "locks", "tcp 127.0.0.1:5020 unit 1").acquire()
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, StationBusyError)


# --- one process -----------------------------------------------------------------------


def test_acquire_writes_who_holds_it_and_release_clears_it(tmp_path: Path) -> None:
    source = _station_file(tmp_path, "sim-tcp", "127.0.0.1")
    lock = lock_for_station(load_station(source)[0], str(source), lock_dir=tmp_path / "locks")
    assert lock is not None
    assert lock.acquire() is None
    info = read_info(lock.info_path)
    assert (info.pid, info.station, info.key, info.batch_dir) == (
        os.getpid(), "sim-tcp", "tcp 127.0.0.1:5020 unit 1", None)
    assert info.station_file == os.path.abspath(source)
    assert info.started_utc.endswith("Z")
    lock.update(batch_dir=tmp_path / "batches" / "b1")
    assert read_info(lock.info_path).batch_dir == str(tmp_path / "batches" / "b1")
    lock.release()
    assert not lock.info_path.exists()
    assert not lock.held
    assert [p.name for p in (tmp_path / "locks").iterdir()] == [lock.path.name]
    again = StationLock(tmp_path / "locks", lock.key)
    assert again.acquire() is None  # free, and nothing left behind to report
    again.release()


def test_name_keyed_lock_still_works_for_the_current_session(tmp_path: Path) -> None:
    """``StationLock(default_lock_dir(), station.name)`` as session.py calls it today."""
    with StationLock(tmp_path, "sim-tcp") as held:
        with pytest.raises(StationBusyError, match=r"^station sim-tcp is in use by pid"):
            StationLock(tmp_path, "sim-tcp").acquire()
        assert held.held


def test_acquire_twice_on_one_object_is_a_programming_error(tmp_path: Path) -> None:
    with StationLock(tmp_path, "k") as lock, pytest.raises(RuntimeError):
        lock.acquire()


def test_hostile_info_contents_stay_one_line(tmp_path: Path) -> None:
    holder = StationLock(tmp_path, "k")
    holder.acquire()
    hostile = {"format": 2, "pid": 4242, "host": "lab\npc\x1b[31m", "station": "a\u2028b",
               "station_file": "x" * 5000, "started_utc": "now\r\n", "batch_dir": "b\x00"}
    holder.info_path.write_text(json.dumps(hostile), encoding="utf-8")
    with pytest.raises(StationBusyError) as busy:
        StationLock(tmp_path, "k").acquire()
    assert "\n" not in str(busy.value)
    assert "\r" not in str(busy.value)
    assert "\u2028" not in str(busy.value)
    assert len(str(busy.value)) < 1000
    holder.info_path.write_bytes(b"\x00\xff garbage {")
    with pytest.raises(StationBusyError, match="has not said who yet"):
        StationLock(tmp_path, "k").acquire()
    holder._os_lock.release()  # type: ignore[union-attr]  # as if the holder died
    holder._os_lock = None
    with StationLock(tmp_path, "k") as lock:
        assert lock.took_over is not None
        assert lock.took_over.previous is None
        assert "\n" not in lock.took_over.describe()
        assert "process gone" in lock.took_over.describe()


# --- two processes ---------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from controller.operator.lock import StationBusyError, lock_for_station
from controller.recipe.station import load_station
lock = lock_for_station(load_station(sys.argv[2])[0], sys.argv[2], lock_dir=Path(sys.argv[1]))
if sys.argv[3] == "try":
    try:
        lock.acquire()
    except StationBusyError as exc:
        print(exc)
        sys.exit(3)
    lock.release()
    sys.exit(0)
lock.acquire()
lock.update(batch_dir="batches/child")
print("holding", flush=True)
sys.stdin.readline()  # holds the lock until killed
"""


def _child(lock_dir: Path, station_file: Path, mode: str) -> list[str]:
    return [sys.executable, "-c", _CHILD, str(lock_dir), str(station_file), mode]


def test_a_second_process_is_refused_in_one_line_naming_the_holder(tmp_path: Path) -> None:
    mine = _station_file(tmp_path, "furnace-a", "127.0.0.1")
    renamed = _station_file(tmp_path, "copy-of-a", "localhost")
    lock = lock_for_station(load_station(mine)[0], str(mine), lock_dir=tmp_path / "locks")
    assert lock is not None
    with lock:
        lock.update(batch_dir="batches/20260509T073525Z-POP70")
        proc = subprocess.run(_child(tmp_path / "locks", renamed, "try"),
                              capture_output=True, text=True, cwd=ROOT, timeout=60,
                              check=False)
        assert proc.returncode == 3, proc.stderr
        line = proc.stdout.rstrip("\n")
        assert "\n" not in line
        assert f"in use by pid {os.getpid()} on " in line
        assert "station furnace-a" in line
        assert os.path.abspath(mine) in line
        assert "batch batches/20260509T073525Z-POP70" in line
    proc = subprocess.run(_child(tmp_path / "locks", renamed, "try"), capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_killed_holder_frees_the_lock_and_is_reported(tmp_path: Path) -> None:
    source = _station_file(tmp_path, "sim-tcp", "127.0.0.1")
    child = subprocess.Popen(_child(tmp_path / "locks", source, "hold"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"  # blocks until it holds
        lock = lock_for_station(load_station(source)[0], str(source),
                                lock_dir=tmp_path / "locks")
        assert lock is not None
        with pytest.raises(StationBusyError, match=f"in use by pid {child.pid} "):
            lock.acquire()
        child.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no clean-up runs
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert lock.info_path.exists()  # the dead holder's info file is still there
    takeover = lock.acquire()
    try:
        assert takeover is not None
        assert lock.took_over is takeover
        assert takeover.previous is not None
        assert takeover.previous.pid == child.pid
        assert takeover.previous.batch_dir == "batches/child"
        text = takeover.describe()
        assert "\n" not in text
        assert f"pid {child.pid}" in text
        assert "process gone" in text
        assert read_info(lock.info_path).pid == os.getpid()
    finally:
        lock.release()
