"""What an ended batch leaves beside its records: the summary's fields and the facts read
back from the records just written, the final hash anchored outside the folder, and the
archive copy where one is configured; and what a batch interrupted for a resume leaves.

Not here: when these happen and in what order (``session``, after the last audit record),
or writing summary.json (``records.batch``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from controller.analysis.data import BatchData, load_batch
from controller.analysis.facts import record_facts
from controller.analysis.yields import mass_balance
from controller.recipe.plan import PlanSummary
from controller.recipe.station import Station
from controller.recipe.steps import Dwell, Plan
from controller.recorder import BatchRecorder
from controller.records.anchor import append_anchor, default_anchor_path
from controller.records.audit import AuditLog, format_utc
from controller.records.folder import AUDIT_FILE, SUMMARY_FILE, BatchFolder
from controller.run.clock import Clock, ScaledClock, VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from drivers.errors import ConfigurationError

__all__ = ["anchor_batch", "archive_if_configured", "clock_basis", "record_interrupted",
           "summary_facts", "summary_fields"]

logger = logging.getLogger(__name__)


def clock_basis(clock: Clock) -> str:
    """What the summary's wall times are: real, or a dry run's simulated time."""
    if isinstance(clock, VirtualClock):
        return "virtual: a dry run's simulated process time, counted from its real start"
    if isinstance(clock, ScaledClock):
        return "scaled: a dry run's simulated process time, counted from its real start"
    return "real"


def summary_facts(batch_dir: Path, runner: RecipeRunner, station: Station, clock: Clock
                  ) -> tuple[dict[str, Any], BatchData | None]:
    """summary.json's facts read back from the records just written (``analysis.facts``,
    ``analysis.yields``), and those records as read (None if the trace cannot be read:
    its facts are then None; the audit always can be, it is this process's own)."""
    try:
        data: BatchData | None = load_batch(batch_dir)
    except ConfigurationError as exc:
        logger.warning("summary: the trace cannot be read (%s); its facts are left out", exc)
        data = None
    audit = data.audit if data is not None else BatchFolder.open(
        batch_dir, needs=(AUDIT_FILE,)).read_audit()
    dwells = {i: {"stage": s.stage, "label": s.label, "at_c": s.at_c, "band_c": s.band_c,
                  "planned_s": s.duration_s}
              for i, s in enumerate(runner.plan.steps) if isinstance(s, Dwell)}
    facts = record_facts(audit, data, final_state=str(runner.run.phase),
                         end_reason=runner.run.end_reason, plan_dwells=dwells)
    facts["ended_utc"] = format_utc(clock.wall())
    facts["time_basis"] = clock_basis(clock)
    facts["station"] = {"name": station.name, "simulated": station.is_simulated}
    facts["yields"] = mass_balance(data).to_dict() if data is not None else None
    return facts, data


def summary_fields(batch_dir: Path, plan: Plan, planned: PlanSummary, runner: RecipeRunner,
                   actual_s: float, cycles: int) -> dict[str, Any]:
    """summary.json's fields from the plan and the run state."""
    run = runner.run
    started, ended = run.stage_started_t_s, run.stage_ended_t_s
    stages = {s.name: {"planned_s": s.duration_s,
                       "actual_s": (ended[s.name] - started[s.name]
                                    if s.name in started and s.name in ended else None)}
              for s in planned.stages}
    outcome = {Phase.COMPLETED: "completed", Phase.ABORTED: "aborted",
               Phase.FAULTED: "faulted"}.get(run.phase, str(run.phase))
    return {
        "batch_id": batch_dir.name,
        "sample": plan.sample_name,
        "recipe": plan.recipe_name,
        "parameters": dict(plan.parameters),
        "outcome": outcome,
        "end_reason": run.end_reason,
        "final_state": str(run.phase),
        "planned_s": planned.duration_s,
        "actual_s": actual_s,
        "stages": stages,
        "holdback_s": run.holdback_total_s,
        "gas_planned_l": dict(planned.gas_l),
        "gas_used_l": {g: round(v, 3) for g, v in run.gas_used_l.items()},
        "peak_setpoint_c": planned.peak_c,
        "scan_cycles": cycles,
    }


def anchor_batch(batch_dir: Path, station: Station, audit: AuditLog, clock: Clock) -> None:
    """Append the batch's final hash to the station's anchor log outside the folder, so
    that a folder rewritten later is caught (``furnace verify --anchor``). The batch is
    complete either way: a log that cannot be written is a warning, not a failure."""
    log_path = default_anchor_path(station.name)
    try:
        append_anchor(log_path, batch_id=batch_dir.name, final_hash=audit.final_hash,
                      records=audit.count, wall_utc=clock.wall(), station=station.name)
    except (OSError, ValueError) as exc:
        logger.warning("the batch's final hash could not be anchored in %s (%s); keep "
                       "%s's audit_final_hash somewhere safe", log_path, exc, SUMMARY_FILE)


def archive_if_configured(batch_dir: Path, station: Station) -> None:
    """Archive the ended batch where the station (``[archive] db``) or the user
    (``$FURNACE_ARCHIVE_DB``) says; best effort: a failure is one logged line, never the
    batch's (``furnace archive BATCH_DIR`` later does the same)."""
    import os

    url = station.archive.db if station.archive is not None else os.environ.get(
        "FURNACE_ARCHIVE_DB")
    if not url:
        return
    from sqlalchemy.exc import SQLAlchemyError  # the archive's libraries: only when used

    from controller.archive.db import connect
    from controller.archive.ingest import archive_batch

    try:
        engine = connect(url)
        try:
            result = archive_batch(engine, batch_dir)
        finally:
            engine.dispose()
    except (ConfigurationError, SQLAlchemyError, OSError, ValueError) as exc:
        logger.warning("the batch was not archived (%s); run furnace archive %s later",
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__, batch_dir)
        return
    logger.info("archive: %s", result.reason)


def record_interrupted(batch_dir: Path, recorder: BatchRecorder, runner: RecipeRunner,
                       summary: dict[str, Any], t_s: float) -> None:
    """The run halted on a condition resume can pick up (the furnace controller out of
    reach): the batch is not ended. No ``batch_ended``, no summary.json, no anchor; the
    last checkpoint is where ``furnace resume`` goes on once the link is back. ``summary``
    is updated to say so."""
    how = f"furnace resume {batch_dir} once the link is back"
    recorder.audit("batch_interrupted", t_s, {"reason": runner.run.end_reason,
                                              "resume": how})
    recorder.audit_log.close()
    logger.warning("batch %s interrupted (%s): %s", batch_dir.name, runner.run.end_reason, how)
    summary.update(outcome="interrupted", end_reason=f"{runner.run.end_reason}; {how}")
