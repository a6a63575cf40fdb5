"""Rung 3: the PC freezes for 30 s in the middle of a ramp (SIGSTOP, a hung driver, a
starved VM). The stall is recorded as an outage, the loop goes on from the present with no
burst of missed cycles, and the setpoint does not jump: the frozen time moves no ramp."""

from __future__ import annotations

from pathlib import Path

from controller.records.folder import BatchFolder
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from tests.integration.helpers import in_process
from tests.integration.recipes import STALL

STALL_AT_S = 1500.0  # inside the ramp
STALL_S = 30.0


class FreezingClock(VirtualClock):
    """A virtual clock whose process is frozen once: the wait for the first deadline after
    ``STALL_AT_S`` ends ``STALL_S`` late, as after SIGSTOP/SIGCONT."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = False

    async def sleep_until(self, t: float) -> None:
        if not self.frozen and t > STALL_AT_S:
            self.frozen = True
            t += STALL_S
        await super().sleep_until(t)


async def test_a_frozen_pc_is_recorded_and_the_ramp_does_not_jump(tmp_path: Path) -> None:
    batch = in_process(tmp_path, STALL, "stall.toml", clock=FreezingClock())
    station = batch.station
    result = await batch.run(tmp_path / "b")
    assert result.state is Phase.COMPLETED
    records = BatchFolder(result.batch_dir).read_audit()
    stalls = [r for r in records if r["event"] == "scan_overrun"]
    assert len(stalls) == 1
    assert stalls[0]["to_t_s"] - stalls[0]["from_t_s"] >= STALL_S
    rows = [(float(r["elapsed_s"]), float(r["setpoint_c"]))
            for r in BatchFolder(result.batch_dir).read_trace().records() if r["stage"] == "heat"]
    # No catch-up burst: after the gap the rows are a scan period apart again ...
    gap = next(i for i, (a, b) in enumerate(zip(rows, rows[1:], strict=False))
               if b[0] - a[0] > STALL_S)
    assert rows[gap + 2][0] - rows[gap + 1][0] == station.scan_period_s
    # ... and the setpoint moved by no more than one period of the ramp across it.
    per_period_c = 10.0 * station.scan_period_s / 60.0
    assert rows[gap + 1][1] - rows[gap][1] <= per_period_c + 1e-6


async def test_halt_with_the_argon_mfc_unreachable_turns_on_nitrogen(tmp_path: Path) -> None:
    """A sensor break at 400 °C while the Ar MFC is not answering: the halt cannot command
    argon, so the safe state turns the other inert gas on (issue 9 item 13)."""
    batch = in_process(tmp_path, STALL, "halt.toml")
    station, world = batch.station, batch.world
    ar_unit = next(m.unit for m in station.mfc if m.gas == "Ar")

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if snap.furnace_c > 390.0 and world.furnace.powered and \
                not world.furnace.sensor_break:
            world.set_responding(ar_unit, False)
            world.furnace.inject_sensor_break(True)

    result = await batch.run(tmp_path / "b", observer=observer)
    assert result.state is Phase.FAULTED
    records = BatchFolder(result.batch_dir).read_audit()
    safe = next(r for r in records if r["event"] == "safe_state")
    assert safe["outputs"]["Ar"].startswith("failed")
    assert safe["outputs"]["N2"].startswith("200 sccm")
    world.advance_to(batch.clock.now() + 120.0)
    assert world.truth().flows_sccm["N2"] > 150.0
