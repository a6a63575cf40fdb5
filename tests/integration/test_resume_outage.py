"""Rung 3: the controller dies 30 min into a 600 °C dwell and comes back 10 min (or 2 h)
later. The instrument meanwhile fell back toward its local setpoint at its own
rate limit; resume picks the furnace up where it is: no long stretch of 0 % output below
the setpoint, no holdback hold, the dwell counted to its duration once."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from controller.recipe.steps import Dwell
from controller.records.audit import AuditLog
from controller.records.folder import BatchFolder
from controller.records.verify import verify_batch
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session_resume import resume_batch
from controller.station_factory import build_devices
from tests.integration.helpers import furnace, in_process
from tests.integration.recipes import OUTAGE


class _CrashError(Exception):
    """The controller process dies (its scan loop still leaves the outputs to the
    instrument, which is what the instrument's remote-setpoint timeout does anyway)."""


@pytest.mark.slow
@pytest.mark.parametrize(("outage_s", "aligned"), [(600.0, False), (7200.0, True)],
                         ids=["10 min", "2 h"])
async def test_outage_in_the_600_dwell(tmp_path: Path, outage_s: float, aligned: bool) -> None:
    """10 min: the instrument's fallback ramp pulls the furnace down with it. 2 h: the
    working setpoint falls far below the furnace, which cools more slowly by itself; resume
    brings the working setpoint up to the furnace before the first new setpoint. Each is the
    whole 5.4 h recipe, crash and resume included: ``slow`` (the quick suite keeps the
    resume after lost communication, below)."""
    sim = in_process(tmp_path, OUTAGE, "outage.toml")
    station, clock, world = sim.station, sim.clock, sim.world
    dwell_index = next(i for i, s in enumerate(sim.plan.steps) if isinstance(s, Dwell))

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if runner.step_index == dwell_index and runner.run.progress.counted_s > 1800.0:
            raise _CrashError

    batches = tmp_path / "batches"
    with pytest.raises(_CrashError):
        await sim.run(batches, observer=observer)
    batch = next(batches.iterdir())
    crashed_s = clock.now()
    await clock.sleep_until(crashed_s + outage_s)  # nobody there
    world.advance_to(crashed_s + outage_s)
    fell_c = 600.0 - world.truth().furnace_c
    result = await resume_batch(batch, make_clock=lambda _start_s: clock,
                                built=build_devices(station, clock, world=world),
                                now_utc=clock.wall)
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    assert verify_batch(batch).ok
    assert fell_c > 5.0  # the outage really cooled the furnace

    records = list(BatchFolder(batch).read_audit())
    resumed = next(r for r in records if r["event"] == "batch_resumed")
    assert resumed["policy"] in ("continue", "ramp back")
    after = [r for r in records if r["t_s"] >= resumed["t_s"]]
    assert not [r for r in after if r.get("alarm") == "holdback_exceeded"]
    assert not [r for r in after if r["event"] == "state_change" and r["new"] == "held"]
    assert bool([r for r in after if r["event"] == "working_setpoint_aligned"]) is aligned
    done = [r for r in records if r["event"] == "step_completed" and r["index"] == dwell_index
            and not r.get("inserted")]
    assert len(done) == 1
    assert done[0]["counted_s"] == pytest.approx(3600.0, abs=2.0)

    # 0 % output while the furnace is below the setpoint (it gets no heat where it
    # should) for at most 2 min in all, from the resume to the end of the dwell.
    rows = BatchFolder(batch).read_trace().records()
    cold_s = sum(station.scan_period_s for row in rows
                 if resumed["t_s"] <= float(row["elapsed_s"]) <= done[0]["t_s"]
                 and row["state"] == "running" and float(row["output_pct"]) <= 0.0
                 and float(row["furnace_c"]) < float(row["setpoint_c"]) - 0.5)
    assert cold_s <= 120.0, cold_s


def test_resume_refuses_a_checkpoint_of_another_schema_version(tmp_path: Path) -> None:
    """A checkpoint written by another schema version: exit 2, one line, nothing run."""
    sim = in_process(tmp_path, OUTAGE, "outage.toml")

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if snap.t_s > 60.0:
            raise _CrashError

    batches = tmp_path / "batches"
    with pytest.raises(_CrashError):
        asyncio.run(sim.run(batches, observer=observer))
    batch = next(batches.iterdir())
    records = list(BatchFolder(batch).read_audit())
    last = next(r for r in reversed(records) if r["event"] == "checkpoint")
    with AuditLog.open_existing(batch / "audit.jsonl") as audit:  # as an older version would
        audit.append("checkpoint", t_s=last["t_s"] + 1, wall=clock_wall(last),
                     schema_version=0, state={**last["state"], "schema_version": 0},
                     mass0_g=None)
    before = (batch / "audit.jsonl").read_bytes()
    resumed = subprocess.run(furnace("resume", str(batch)),
                             capture_output=True, text=True, check=False)
    assert resumed.returncode == 2
    lines = [x for x in (resumed.stdout + resumed.stderr).splitlines() if x.strip()]
    assert len(lines) == 1
    assert "schema_version" in lines[0]
    assert "audit.jsonl" in lines[0]
    assert (batch / "audit.jsonl").read_bytes() == before  # nothing appended, nothing run


def clock_wall(record: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(record["wall_utc"]).replace("Z", "+00:00"))


async def test_lost_communication_leaves_the_batch_resumable(tmp_path: Path) -> None:
    """The RS-485 line to the furnace controller is lost for 3 min in the dwell: the run
    halts to the instrument's own fallback but the batch is not ended (no summary, no
    batch_ended; verify says "interrupted"), and once the link is back ``resume`` follows
    the normal policy to the end (issue 9 item 6)."""
    sim = in_process(tmp_path, OUTAGE, "outage.toml")
    station, clock, world = sim.station, sim.clock, sim.world
    dwell_index = next(i for i, s in enumerate(sim.plan.steps) if isinstance(s, Dwell))
    lost_at: list[float] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if not lost_at and runner.step_index == dwell_index and \
                runner.run.progress.counted_s > 600.0:
            world.set_responding(station.furnace.unit, False)
            lost_at.append(snap.t_s)

    result = await sim.run(tmp_path / "b", observer=observer)
    batch = result.batch_dir
    assert result.summary["outcome"] == "interrupted"
    assert "furnace resume" in result.summary["end_reason"]
    assert not (batch / "summary.json").exists()
    records = list(BatchFolder(batch).read_audit())
    assert records[-1]["event"] == "batch_interrupted"
    assert not [r for r in records if r["event"] == "batch_ended"]
    assert verify_batch(batch).ok  # intact so far, interrupted

    await clock.sleep_until(lost_at[0] + 180.0)  # the line comes back after 3 min
    world.advance_to(clock.now())
    world.set_responding(station.furnace.unit, True)
    resumed = await resume_batch(batch, make_clock=lambda _start_s: clock,
                                 built=build_devices(station, clock, world=world),
                                 now_utc=clock.wall)
    assert resumed.state is Phase.COMPLETED, resumed.summary["end_reason"]
    assert verify_batch(batch).ok
    records = list(BatchFolder(batch).read_audit())
    policy = next(r for r in records if r["event"] == "batch_resumed")["policy"]
    assert policy in ("continue", "ramp back")
    done = [r for r in records if r["event"] == "step_completed" and r["index"] == dwell_index
            and not r.get("inserted")]
    assert len(done) == 1
    assert done[0]["counted_s"] == pytest.approx(3600.0, abs=2.0)
