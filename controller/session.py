"""One batch from start to summary: folder, frozen inputs, audit chain, trace, scan loop.

Not here: argument parsing and printing (``cli``), or device construction
(``station_factory``).
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from controller.audit import AuditLog
from controller.batch import create_batch_dir, write_frozen, write_summary
from controller.clock import Clock
from controller.plan import PlanSummary, summarize
from controller.runner import RecipeRunner, RunState
from controller.scan import ScanLoop, trace_columns
from controller.snapshot import Snapshot
from controller.station import Station
from controller.station_factory import Built, build_devices
from controller.steps import Plan
from controller.trace import TraceWriter

__all__ = ["BatchResult", "BatchRecorder", "run_batch", "software_version"]

logger = logging.getLogger(__name__)

_TRACE_FLUSH_ROWS = 30  # flush the trace about once a minute of process time at 2 s/cycle


def software_version() -> str:
    """The installed package version, or ``"unknown"`` from a bare checkout."""
    try:
        return version("furnace")
    except PackageNotFoundError:
        return "unknown"


class BatchRecorder:
    """Routes the scan loop's records: audit (fsync'd) and trace (buffered), and integrates
    the gas actually used from the measured flows."""

    def __init__(self, audit: AuditLog, trace: TraceWriter, clock: Clock) -> None:
        self.audit_log = audit
        self.trace_writer = trace
        self.clock = clock
        self.gas_used_l: dict[str, float] = {}
        self._last_t_s: float | None = None
        self._rows = 0

    def audit(self, event: str, t_s: float, fields: dict[str, Any]) -> None:
        self.audit_log.append(event, t_s=t_s, wall=self.clock.wall(), **fields)

    def trace(self, row: Sequence[object]) -> None:
        self.trace_writer.write_row(row)
        self._rows += 1
        if self._rows % _TRACE_FLUSH_ROWS == 0:
            self.trace_writer.flush()

    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        """Integrate measured flows (standard litres)."""
        if self._last_t_s is not None:
            dt_min = (snap.t_s - self._last_t_s) / 60.0
            for gas, reading in snap.flows.items():
                if reading is not None:
                    self.gas_used_l[gas] = (self.gas_used_l.get(gas, 0.0)
                                            + reading.flow_sccm / 1000.0 * dt_min)
        self._last_t_s = snap.t_s


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Where the batch is and how it ended."""

    batch_dir: Path
    state: RunState
    summary: dict[str, Any]


def _summary(batch_dir: Path, plan: Plan, planned: PlanSummary, runner: RecipeRunner,
             recorder: BatchRecorder, actual_s: float, cycles: int) -> dict[str, Any]:
    started = runner.progress.stage_started_t_s
    ended = runner.progress.stage_ended_t_s
    stages = {s.name: {"planned_s": s.duration_s,
                       "actual_s": (ended[s.name] - started[s.name]
                                    if s.name in started and s.name in ended else None)}
              for s in planned.stages}
    outcome = {RunState.COMPLETED: "completed", RunState.ABORTED: "aborted",
               RunState.FAULTED: "faulted"}.get(runner.state, str(runner.state))
    return {
        "batch_id": batch_dir.name,
        "sample": plan.sample_name,
        "recipe": plan.recipe_name,
        "parameters": dict(plan.parameters),
        "outcome": outcome,
        "end_reason": runner.end_reason,
        "final_state": str(runner.state),
        "planned_s": planned.duration_s,
        "actual_s": actual_s,
        "stages": stages,
        "holdback_s": runner.progress.holdback_s,
        "gas_planned_l": dict(planned.gas_l),
        "gas_used_l": {g: round(v, 3) for g, v in recorder.gas_used_l.items()},
        "peak_setpoint_c": planned.peak_c,
        "scan_cycles": cycles,
    }


async def run_batch(*, plan: Plan, station: Station, recipe_text: str, station_text: str,
                    clock: Clock, batches_dir: Path, operator: str, seed: int = 0,
                    station_source: str = "station",
                    observer: Callable[[Snapshot, RecipeRunner], None] | None = None,
                    built: Built | None = None) -> BatchResult:
    """Run ``plan`` on ``station`` as a batch under ``batches_dir``.

    The folder, frozen inputs and first audit record exist (fsync'd) before any device is
    written. ``built`` lets a caller (a test) keep hold of the devices and the simulated
    world; by default they are built from ``station``. Device errors inside the loop are
    handled there; an unexpected error still leaves the outputs safe (the scan loop's
    ``finally``) and is re-raised after the audit records it.
    """
    planned = summarize(plan, station)
    if built is None:
        built = build_devices(station, clock, seed=seed, material=plan.material)
    try:
        await built.connect(station_source)
    except BaseException:
        await built.close()
        raise
    batch_dir = create_batch_dir(batches_dir, plan.sample_name, clock.wall())
    recipe_sha256 = write_frozen(batch_dir, "recipe.toml", recipe_text)
    station_sha256 = write_frozen(batch_dir, "station.toml", station_text)
    t0_s = clock.now()
    audit = AuditLog.create(batch_dir / "audit.jsonl", software_version(),
                            recipe_sha256, station_sha256,
                            t_s=0.0, wall=clock.wall(), batch_id=batch_dir.name,
                            operator=operator, sample=plan.sample_name,
                            recipe=plan.recipe_name, station=station.name,
                            parameters=dict(plan.parameters), host=platform.node(),
                            simulated=station.is_simulated)
    trace = TraceWriter(batch_dir / "trace.csv", trace_columns(station))
    recorder = BatchRecorder(audit, trace, clock)
    world = built.world
    runner = RecipeRunner(plan, station, auto_confirm=station.is_simulated,
                          on_tube_opened=world.open_tube_for_wash if world else None)

    def observe(snap: Snapshot, r: RecipeRunner) -> None:
        recorder.observe(snap, r)
        if observer is not None:
            observer(snap, r)

    loop = ScanLoop(station=station, runner=runner, devices=built.devices, clock=clock,
                    recorder=recorder, observer=observe)
    try:
        state = await loop.run()
    except BaseException as exc:
        recorder.audit("supervisor_error", clock.now() - t0_s,
                       {"error": type(exc).__name__, "detail": str(exc)})
        raise
    finally:
        trace.close()
        await built.close()
    actual_s = clock.now() - t0_s
    summary = _summary(batch_dir, plan, planned, runner, recorder, actual_s, loop.cycles)
    recorder.audit("batch_ended", actual_s, {"outcome": summary["outcome"],
                                             "end_reason": runner.end_reason})
    summary["audit_final_hash"] = audit.final_hash
    summary["audit_records"] = audit.count
    audit.close()
    write_summary(batch_dir, summary)
    logger.info("batch %s %s", batch_dir.name, summary["outcome"])
    return BatchResult(batch_dir, state, summary)


