"""A batch resumed from its folder (never the original recipe file): the last checkpoint
recovered, the devices opened again (a dry run with the simulated world it kept), the
decision how to go on recorded in ``batch_resumed``, then the same scan loop and tear-down
as a new batch (``session``).

Not here: what the policy is (``run.resume``), or the loop itself (``session``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Final

from controller import software_version
from controller.dry_run_world import kept_world
from controller.recorder import BatchRecorder
from controller.records.audit import AuditLog, RecordError
from controller.records.columns import trace_columns
from controller.records.folder import AUDIT_FILE, STATION_FILE, TRACE_FILE, BatchFolder
from controller.records.trace import TraceWriter
from controller.run.clock import Clock, utc_now
from controller.run.commands import CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.resume import Decision, decide, recover
from controller.run.scan import ScanLoop
from controller.run.snapshot import Snapshot
from controller.session import (
    BatchResult,
    Serve,
    close_trace,
    hold_reserve,
    loop_and_finish,
    make_runner,
    open_station,
)
from controller.station_factory import Built, build_devices
from drivers.errors import ConfigurationError

__all__ = ["DRY_RUN_OUTAGE_MAX_S", "resume_batch"]

logger = logging.getLogger(__name__)

#: The longest outage a resumed dry run (the in-process simulator) simulates, s: longer
#: ones are counted as this much process time (``batch_resumed``: outage_to_t_s).
DRY_RUN_OUTAGE_MAX_S: Final = 12 * 3600.0


async def resume_batch(batch_dir: Path, *, make_clock: Callable[[float], Clock],
                       speed: float = 1.0, station_source: str = STATION_FILE,
                       observer: Callable[[Snapshot, RecipeRunner], None] | None = None,
                       built: Built | None = None,
                       commands: CommandQueue | None = None,
                       now_utc: Callable[[], datetime] = utc_now,
                       serve: Serve | Sequence[Serve] | None = None) -> BatchResult:
    """Continue an interrupted batch from its folder (never the original recipe file).

    ``make_clock(start_s)`` builds the clock, its process time starting where the batch
    stopped plus the outage (wall-clock gap × ``speed``). The run state comes from the
    last checkpoint in the audit chain; the chain goes on: a torn last line is cut and
    recorded, and ``batch_resumed`` records the outage, the furnace's state now against
    then, and the policy applied. Raises ``ConfigurationError`` for a folder that cannot
    be resumed. ``now_utc`` tells the wall time now (a test's virtual clock).
    """
    rec = recover(batch_dir)
    station, plan = rec.station, rec.plan
    outage_wall_s = max((now_utc() - rec.last_wall).total_seconds(), 0.0)
    outage_s = outage_wall_s * speed
    if station.bus.kind == "sim" and outage_s > DRY_RUN_OUTAGE_MAX_S:
        # The in-process simulator integrates the outage in 0.5 s steps: a dry run resumed
        # months later would take hours to start. After this long alone any furnace is at
        # the room's temperature, and the policy is a person's decision either way.
        logger.info("dry run: the outage of %.0f h counted as %.0f h of process time",
                    outage_s / 3600, DRY_RUN_OUTAGE_MAX_S / 3600)
        outage_s = DRY_RUN_OUTAGE_MAX_S
    resumed_t_s = rec.last_t_s + outage_s
    clock = make_clock(resumed_t_s)
    world_note = None
    if built is None and station.bus.kind == "sim":  # a dry run: its furnace as it was
        world, world_note = kept_world(station, plan.material,
                                       BatchFolder(batch_dir).sim_state_json, rec.last_t_s)
        if world is not None:
            built = build_devices(station, clock, material=plan.material, world=world)
    async with AsyncExitStack() as stack:
        opened = await open_station(stack, station, clock, built, station_source, plan)
        if opened.lock is not None:
            opened.lock.update(batch_dir=batch_dir)
        reserve = hold_reserve(stack, batch_dir)
        try:
            audit = AuditLog.open_existing(BatchFolder(batch_dir).audit_jsonl)
            stack.callback(audit.close)
            trace = TraceWriter.open_existing(BatchFolder(batch_dir).trace_csv,
                                              trace_columns(station))
            stack.callback(close_trace, trace)
        except (OSError, RecordError) as exc:
            raise ConfigurationError(f"cannot continue the records: {exc}",
                                     source=str(batch_dir)) from None
        runner = make_runner(plan, station)
        chosen: list[Decision] = []

        async def prepare(loop: ScanLoop, recorder: BatchRecorder) -> None:
            snap = await loop.read()
            decision = decide(rec, snap, outage_s)
            chosen.append(decision)
            if decision.state is not None:
                runner.run = decision.state
            for name, torn in ((AUDIT_FILE, audit.torn_tail), (TRACE_FILE, trace.torn_tail)):
                if torn:
                    recorder.audit("torn_tail_recovered", resumed_t_s,
                                   {"file": name, "bytes": len(torn)})
            if opened.took_over is not None:
                recorder.audit("stale_lock_taken_over", resumed_t_s,
                               {"previous": opened.took_over.describe()})
            recorder.audit("batch_resumed", resumed_t_s, {
                "outage_from_t_s": rec.last_t_s, "outage_to_t_s": resumed_t_s,
                "outage_wall_s": round(outage_wall_s, 3), "checkpoint_t_s": rec.checkpoint_t_s,
                "state_then": str(rec.state.phase) if rec.state else "idle",
                "step_index": rec.state.step_index if rec.state else 0,
                "furnace_then_c": rec.furnace_c, "furnace_now_c": snap.furnace_c,
                "setpoint_then_c": rec.setpoint_c, "trace_until_t_s": rec.trace_t_s,
                "flows_now_sccm": {m.gas: snap.flow_sccm(m.gas) for m in station.mfc},
                "o2_now_ppm": snap.o2_ppm, "policy": str(decision.policy),
                **({"simulated_world": world_note} if world_note is not None else {}),
                "reason": decision.reason, "operator": rec.operator,
                "software_version": software_version()})

        def start(snap: Snapshot) -> None:
            decision = chosen[0]
            if decision.state is None:
                runner.preflight_done(snap.t_s)
                return
            runner.resumed(snap.t_s, setpoint_c=decision.setpoint_c, trigger=decision.trigger,
                           reason=decision.reason, ramp_back=decision.ramp_back)

        return await loop_and_finish(batch_dir=batch_dir, station=station,
                                      built=opened.built, audit=audit, trace=trace,
                                      runner=runner, clock=clock, t0_s=0.0, observer=observer,
                                      on_start=start, prepare=prepare, commands=commands,
                                      mass0_g=rec.mass0_g, reserve=reserve, serve=serve)
