"""``GET /api/state``: a published ``LiveFrame`` in words and numbers (JSON), and the ETA seam.

Pure: reads the frame, the plan and the plan's summary; never the devices or the scan loop's
mutable objects. The ETA comes from an ``EtaSource``: by default the planned time left
(``planned_eta``); a predictor that re-plans from the present plugs in as another callable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.operator.console import hold_countdown, waiting_fields
from controller.recipe.steps import OperatorStep
from controller.recipe.summary import PlanSummary
from controller.run.runstate import FINAL, Phase
from controller.web.feed import LiveFeed, LiveFrame

if TYPE_CHECKING:
    from controller.run.handle import RecipeRunner

__all__ = ["EtaSource", "alarms", "planned_eta", "remaining_s", "runner_at", "state_json",
           "utc_text"]

EtaSource = Callable[[LiveFrame], datetime | None]
"""When the batch is expected to end (UTC, in the clock's wall-time basis), or None."""


def utc_text(when: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second; None stays None."""
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def runner_at(runner: RecipeRunner, frame: LiveFrame) -> RecipeRunner:
    """The runner as it was at ``frame``: a shallow copy whose state is the frame's (the
    plan and rules are shared and immutable; the live runner is never touched)."""
    view = copy.copy(runner)
    view.run = frame.run
    return view


def remaining_s(summary: PlanSummary, view: RecipeRunner, t_s: float) -> float:
    """Planned process seconds left: the rest of the current stage plus every later stage
    (0 once the batch has ended or outside the plan's stages)."""
    if view.run.phase in FINAL:
        return 0.0
    names = [s.name for s in summary.stages]
    stage = view.stage_name
    if stage not in names:
        return summary.duration_s if view.run.phase is Phase.IDLE else 0.0
    i = names.index(stage)
    started = view.run.stage_started_t_s.get(stage, t_s)
    left = max(summary.stages[i].duration_s - (t_s - started), 0.0)
    return left + sum(s.duration_s for s in summary.stages[i + 1:])


def planned_eta(summary: PlanSummary, runner: RecipeRunner) -> EtaSource:
    """The ETA counted down from the plan (process seconds taken as wall seconds of the
    clock's basis): the stand-in until a predictor re-plans from the present."""
    def eta(frame: LiveFrame) -> datetime | None:
        view = runner_at(runner, frame)
        if view.run.phase in FINAL:
            return None
        return frame.wall + timedelta(seconds=remaining_s(summary, view, frame.snap.t_s))
    return eta


def _num(value: float | None, digits: int = 2) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def alarms(frame: LiveFrame, view: RecipeRunner) -> list[dict[str, str]]:
    """What needs attention now: the hold and its cause, stale devices, interlock notes,
    lost gases, a paused ramp, settings changed under us."""
    run, snap = frame.run, frame.snap
    alarms: list[dict[str, str]] = []
    if run.phase is Phase.HELD:
        alarms.append({"name": "held", "detail": run.hold_cause or "hold"})
    for device, count in snap.failures.items():
        if count:
            alarms.append({"name": f"stale:{device}",
                           "detail": f"{count} failed polls in a row"})
    if snap.health.pv_spike:
        alarms.append({"name": "pv_spike", "detail": "implausible furnace reading held"})
    for note in sorted(run.notes):
        alarms.append({"name": note, "detail": "interlock note"})
    for gas in sorted(run.failed_gases):
        alarms.append({"name": f"flow_lost:{gas}", "detail": f"{gas} flow lost"})
    if run.ramp_paused:
        alarms.append({"name": "ramp_paused", "detail": "the exotherm guard holds the ramp"})
    for device, change in snap.foreign_changes.items():
        alarms.append({"name": f"changed_externally:{device}",
                       "detail": f"{change.what}: {change.found:g} {change.unit} found, "
                                 f"{change.ours:g} {change.unit} ours"})
    if run.needs_reconfigure:
        alarms.append({"name": "needs_reconfigure", "detail": "instrument settings changed"})
    return alarms


def _timeline(summary: PlanSummary, view: RecipeRunner, frame: LiveFrame
              ) -> list[dict[str, Any]]:
    """Each stage: planned seconds, actual start and end (process time), status, and the
    predicted start and end (wall time) from the plan for the stages still to come."""
    run, t_s = view.run, frame.snap.t_s
    current = view.stage_name
    rows: list[dict[str, Any]] = []
    at = frame.wall
    for s in summary.stages:
        started = run.stage_started_t_s.get(s.name)
        ended = run.stage_ended_t_s.get(s.name)
        if ended is not None:
            status = "done"
        elif s.name == current and run.phase not in FINAL:
            status = "current"
        else:
            status = "next" if run.phase not in FINAL else "skipped"
        row: dict[str, Any] = {"stage": s.name, "atmosphere": s.atmosphere,
                               "planned_s": round(s.duration_s, 1), "status": status,
                               "started_t_s": _num(started, 1), "ended_t_s": _num(ended, 1)}
        if status == "current":
            left = max(s.duration_s - (t_s - (started if started is not None else t_s)), 0.0)
            at = frame.wall + timedelta(seconds=left)
            row["predicted_end_utc"] = utc_text(at)
        elif status == "next":
            row["predicted_start_utc"] = utc_text(at)
            at = at + timedelta(seconds=s.duration_s)
            row["predicted_end_utc"] = utc_text(at)
        rows.append(row)
    return rows


def _waiting(view: RecipeRunner) -> dict[str, Any] | None:
    """The operator step waiting for a person: its message and the fields it asks for."""
    step = view.current_step
    if not isinstance(step, OperatorStep) or view.run.progress.confirmed:
        return None
    if view.run.phase in FINAL:
        return None
    return {"message": step.message, "label": step.label,
            "fields": [{"name": f.name, "kind": f.kind, "unit": f.unit, "min": f.min,
                        "max": f.max, "required": f.required, "describe": f.describe()}
                       for f in waiting_fields(view)]}


def state_json(feed: LiveFeed, summary: PlanSummary, eta: EtaSource, *,
               batch_id: str) -> dict[str, Any]:
    """The ``/api/state`` object of the latest frame (``state`` is ``starting`` before the
    first cycle)."""
    frame = feed.frame
    runner = feed.runner
    base: dict[str, Any] = {"batch_id": batch_id, "sample": runner.plan.sample_name,
                            "recipe": runner.plan.recipe_name,
                            "planned_s": round(summary.duration_s, 1)}
    if frame is None:
        return {**base, "state": "starting", "stage": "", "step": None, "setpoint_c": None,
                "furnace_c": None, "eta_utc": None, "alarms": [], "timeline": [],
                "waiting": None, "hold": "", "flows": {}}
    view = runner_at(runner, frame)
    snap = frame.snap
    step = view.current_step
    reading = snap.furnace
    hold_left = view.hold_left_s(snap)
    return {
        **base,
        "state": str(frame.run.phase),
        "stage": view.stage_name,
        "step": None if step is None else {
            "index": view.step_index, "count": len(runner.plan.steps), "label": step.label,
            "kind": step.kind},
        "t_s": round(snap.t_s, 1),
        "wall_utc": utc_text(frame.wall),
        "cycle": frame.cycle,
        "setpoint_c": _num(frame.run.setpoint_c),
        "furnace_c": _num(snap.furnace_c),
        "working_setpoint_c": _num(reading.working_setpoint_c if reading else None),
        "output_pct": _num(reading.output_pct if reading else None),
        "sample_c": _num(snap.sample_c),
        "delta_t_c": _num(snap.delta_t_c, 3),
        "mass_pct": _num(snap.mass_pct, 3),
        "dtg_pct_per_min": _num(snap.dtg_pct_per_min, 4),
        "o2_ppm": _num(snap.o2_ppm, 1),
        "flows": {gas: {"sccm": _num(snap.flow_sccm(gas), 1),
                        "setpoint_sccm": _num(frame.run.flows_sccm.get(gas))}
                  for gas in frame.run.flows_sccm},
        "eta_utc": utc_text(eta(frame)),
        "remaining_s": round(remaining_s(summary, view, snap.t_s), 1),
        "alarms": alarms(frame, view),
        "hold": hold_countdown(snap, view),
        "hold_left_s": _num(hold_left, 0),
        "waiting": _waiting(view),
        "timeline": _timeline(summary, view, frame),
    }
