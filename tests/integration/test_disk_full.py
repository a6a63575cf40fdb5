"""Disk full during a run (faults.md P5): the trace stops and the audit goes on, in the
space held for it (the reserve, docs/decisions/0010); if the audit itself cannot be
written, the run stops and the outputs go safe."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from controller import session as session_module
from controller.operator.control import ControlFile
from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.records import audit as audit_module
from controller.records import trace as trace_module
from controller.records.audit import AuditLog, RecordError, scan_chain
from controller.records.folder import AUDIT_FILE, CONTROL_FILE, RESERVE_FILE, SUMMARY_FILE
from controller.records.storage import AUDIT_RESERVE_BYTES, DiskReserve
from controller.records.trace import TraceWriter
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import BatchResult, Serve, run_batch
from controller.session_resume import resume_batch
from controller.station_factory import Built, build_devices
from controller.web.server import serve_batch
from tests.conftest import PROFILES

SMOKE = PROFILES / "smoke-600.toml"


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


async def test_trace_stops_on_disk_full_and_the_batch_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TraceWriter.write_row
    rows = {"n": 0}

    def failing(self: TraceWriter, values: Any) -> None:
        rows["n"] += 1
        if rows["n"] > 500:
            raise _enospc()
        original(self, values)

    monkeypatch.setattr(TraceWriter, "write_row", failing)
    station, text = load_station(None)
    _, plan, frozen = load_recipe(SMOKE, {}, station)
    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=text, clock=VirtualClock(), batches_dir=tmp_path,
                             operator="pytest")
    assert result.state is Phase.COMPLETED
    audit = (result.batch_dir / "audit.jsonl").read_text()
    assert '"event":"records_degraded"' in audit
    assert '"disk_full":true' in audit
    assert verify_batch(result.batch_dir).ok


async def test_audit_write_failure_stops_the_run_safely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = AuditLog.append
    calls = {"n": 0}

    def failing(self: AuditLog, event: str, **kw: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] > 25:  # some way into the batch
            raise _enospc()
        return original(self, event, **kw)

    monkeypatch.setattr(AuditLog, "append", failing)
    station, text = load_station(None)
    _, plan, frozen = load_recipe(SMOKE, {}, station)
    clock = VirtualClock()
    built = build_devices(station, clock, material=plan.material)
    with pytest.raises(RecordError, match="disk full"):
        await run_batch(plan=plan, station=station, recipe_text=frozen, station_text=text,
                        clock=clock, batches_dir=tmp_path, operator="pytest", built=built)
    world = built.world
    assert world is not None
    furnace = world.furnace.bank
    assert furnace.get("L-R") == 0  # handed to the instrument's own fallback
    assert world.mfcs["Ar"].setpoint_sccm > 0  # inert gas on
    assert world.mfcs["air"].setpoint_sccm == 0


class FullDisk:
    """A disk that fills up, faked at the batch's write paths (faults.md §4 L4): the
    trace's and the audit's raw writes and summary.json. Until it is full every write
    fits; then only bytes given back fit (the reserve, unless ``give_back`` is False:
    someone else takes them at once), and a write that does not fit writes what fits
    and fails with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *,
                 full_after_trace_bytes: int | None = None,
                 full_at_audit_line: int | None = None, leave_bytes: int = 0,
                 give_back: bool = True) -> None:
        self.free_bytes: int | None = None  # None: not full yet
        self.full_after_trace_bytes = full_after_trace_bytes
        self.full_at_audit_line = full_at_audit_line
        self.leave_bytes = leave_bytes
        self.give_back = give_back
        self.trace_bytes = 0
        self.audit_lines = 0
        self.refused: list[tuple[str, bytes]] = []  # (what, what it was given)
        write_all, write_line = trace_module._write_all, audit_module._write_line
        write_summary, release = session_module.write_summary, DiskReserve.release

        def trace_write(file: BinaryIO, data: bytes) -> tuple[int, OSError | None]:
            self.trace_bytes += len(data)
            if self.full_after_trace_bytes is not None and \
                    self.trace_bytes > self.full_after_trace_bytes:
                self.fill()
            fit = self._take("trace", data)
            written, error = write_all(file, data[:fit])
            return written, error or (_enospc() if fit < len(data) else None)

        def audit_write(file: BinaryIO, line: bytes) -> None:
            self.audit_lines += 1
            if self.audit_lines == self.full_at_audit_line:
                self.fill()
            fit = self._take("audit", line)
            write_line(file, line[:fit])
            if fit < len(line):
                raise _enospc()

        def summary_write(batch_dir: Path, data: Mapping[str, Any]) -> Path:
            text = json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n"
            if self._take("summary", text) < len(text):
                raise _enospc()
            return write_summary(batch_dir, data)

        def released(reserve: DiskReserve) -> int:
            freed_bytes = release(reserve)
            if self.free_bytes is not None and self.give_back:
                self.free_bytes += freed_bytes
            return freed_bytes

        monkeypatch.setattr(trace_module, "_write_all", trace_write)
        monkeypatch.setattr(audit_module, "_write_line", audit_write)
        monkeypatch.setattr(session_module, "write_summary", summary_write)
        monkeypatch.setattr(DiskReserve, "release", released)

    def fill(self) -> None:
        if self.free_bytes is None:
            self.free_bytes = self.leave_bytes

    def _take(self, what: str, data: bytes) -> int:
        """How many of ``data``'s bytes fit; they are taken from the free space."""
        if self.free_bytes is None:
            return len(data)
        fit = min(len(data), self.free_bytes)
        self.free_bytes -= fit
        if fit < len(data):
            self.refused.append((what, data))
        return fit


async def _smoke(batches: Path, built: Built | None = None, clock: VirtualClock | None = None,
                 observer: Any = None, serve: Serve | None = None) -> BatchResult:
    station, text = load_station(None)
    _, plan, frozen = load_recipe(SMOKE, {}, station)
    return await run_batch(plan=plan, station=station, recipe_text=frozen, station_text=text,
                           clock=clock or VirtualClock(), batches_dir=batches,
                           operator="pytest", built=built, observer=observer, serve=serve)


def _events(batch_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (batch_dir / AUDIT_FILE).read_bytes().splitlines()]


async def test_trace_fills_the_disk_the_reserve_keeps_the_audit_and_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk(monkeypatch, full_after_trace_bytes=60_000)
    result = await _smoke(tmp_path)
    assert [what for what, _ in disk.refused] == ["trace"]  # nothing else ever failed
    assert result.state is Phase.COMPLETED
    events = _events(result.batch_dir)
    names = [e["event"] for e in events]
    released = names.index("disk_reserve_released")
    assert events[released]["freed_bytes"] == AUDIT_RESERVE_BYTES
    assert "trace.csv" in events[released]["cause"]
    assert names[released + 1] == "records_degraded"
    assert "safe_state" in names[released:]
    assert names[-1] == "batch_ended"
    assert (result.batch_dir / SUMMARY_FILE).exists()
    assert not (result.batch_dir / RESERVE_FILE).exists()  # given back at the end too
    assert verify_batch(result.batch_dir).ok


async def test_audit_fills_the_disk_the_reserve_takes_the_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The disk fills in the middle of an audit line: 100 bytes of it reach the file.
    disk = FullDisk(monkeypatch, full_at_audit_line=25, leave_bytes=100)
    result = await _smoke(tmp_path)
    ((what, line),) = disk.refused
    assert what == "audit"
    failed = json.loads(line)
    assert result.state is Phase.COMPLETED
    events = _events(result.batch_dir)
    assert events[failed["seq"]] == failed  # it landed, once, whole, where it belonged
    after = [e["event"] for e in events[failed["seq"] + 1 :]]
    assert after[:2] == ["disk_reserve_released", "records_degraded"]  # the trace stops
    assert events[failed["seq"] + 1]["freed_bytes"] == AUDIT_RESERVE_BYTES
    assert "audit.jsonl" in events[failed["seq"] + 1]["cause"]
    assert "safe_state" in after
    assert after[-1] == "batch_ended"
    scan = scan_chain((result.batch_dir / AUDIT_FILE).read_bytes())
    assert (scan.bad_index, scan.torn_tail) == (None, b"")
    assert verify_batch(result.batch_dir).ok


async def test_a_disk_full_stop_leaves_no_control_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone else takes the reserve's space as soon as it is given back.
    disk = FullDisk(monkeypatch, full_at_audit_line=25, give_back=False)
    served: list[bool] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        served.append(any(tmp_path.glob(f"*/{CONTROL_FILE}")))

    station, _ = load_station(None)
    clock = VirtualClock()
    built = build_devices(station, clock, material=load_recipe(SMOKE, {}, station)[1].material)
    with pytest.raises(RecordError, match="disk full"):
        await _smoke(tmp_path, built, clock, observer, serve=serve_batch())
    assert served
    assert all(served)  # the control endpoint was there while the run went on
    assert [what for what, _ in disk.refused][:2] == ["audit", "audit"]  # the retry too
    (batch_dir,) = tmp_path.iterdir()
    assert not (batch_dir / CONTROL_FILE).exists()
    assert not (batch_dir / RESERVE_FILE).exists()
    world = built.world
    assert world is not None
    assert world.furnace.bank.get("L-R") == 0  # handed to the instrument's own fallback
    assert verify_batch(batch_dir).ok  # intact so far: the chain ends at its last record


async def test_a_control_file_that_cannot_be_written_is_not_left_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise _enospc()

    monkeypatch.setattr(os, "write", full)  # control.json is written with os.write
    with pytest.raises(OSError, match="No space"):
        ControlFile(tmp_path).write(host="127.0.0.1", port=1, token="t")
    monkeypatch.undo()
    assert not (tmp_path / CONTROL_FILE).exists()


class _CrashError(Exception):
    """The controller dies mid-run."""


async def test_resume_takes_the_reserve_again_and_verify_ignores_it(tmp_path: Path) -> None:
    station, _ = load_station(None)
    clock = VirtualClock()
    built = build_devices(station, clock, material=load_recipe(SMOKE, {}, station)[1].material)
    world = built.world
    assert world is not None
    held: list[int] = []

    def crash(snap: Snapshot, runner: RecipeRunner) -> None:
        held.append(next(tmp_path.glob(f"*/{RESERVE_FILE}")).stat().st_size)
        if len(held) == 100:
            raise _CrashError

    with pytest.raises(_CrashError):
        await _smoke(tmp_path, built, clock, crash)
    (batch_dir,) = tmp_path.iterdir()
    assert set(held) == {AUDIT_RESERVE_BYTES}
    (batch_dir / RESERVE_FILE).write_bytes(b"\x01" * 1000)  # as a killed process left it
    assert verify_batch(batch_dir).ok
    held.clear()

    def watch(snap: Snapshot, runner: RecipeRunner) -> None:
        held.append((batch_dir / RESERVE_FILE).stat().st_size)

    result = await resume_batch(batch_dir, make_clock=lambda _start_s: clock,
                                built=build_devices(station, clock, world=world),
                                now_utc=clock.wall, observer=watch)
    assert result.state is Phase.COMPLETED
    assert set(held) == {AUDIT_RESERVE_BYTES}  # topped up for the resumed run
    assert not (batch_dir / RESERVE_FILE).exists()
    assert verify_batch(batch_dir).ok
