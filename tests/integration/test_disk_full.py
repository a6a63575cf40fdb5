"""Disk full during a run (faults.md P5): the trace stops and the audit goes on; if the
audit itself cannot be written, the run stops and the outputs go safe."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from controller.audit import AuditLog, RecordError
from controller.batch import verify_batch
from controller.clock import VirtualClock
from controller.plan import load_recipe
from controller.runstate import Phase
from controller.session import run_batch
from controller.station import load_station
from controller.station_factory import build_devices
from controller.trace import TraceWriter
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
