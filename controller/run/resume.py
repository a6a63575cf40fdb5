"""Recovery after a crash, kill -9 or reboot: load a batch's last checkpoint, check that the
furnace is plausibly where the batch left it, and decide how to go on.

Not here: running (``session_resume.resume_batch``). The frozen ``recipe.toml`` and
``station.toml`` and the last ``checkpoint`` record of the audit chain are the inputs; the
original recipe file is never read again, and no event is replayed: the checkpoint holds
the whole run state (docs/decisions/0008-run-state.md). The trace's last row serves only
the plausibility check (where the furnace was, and when).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp
from controller.records.audit import scan_chain
from controller.records.folder import (
    AUDIT_FILE,
    RECIPE_FILE,
    STATION_FILE,
    TRACE_FILE,
    BatchFolder,
)
from controller.run.interlocks import O2_LIMIT_PPM
from controller.run.runstate import (
    FINAL,
    CheckpointError,
    Phase,
    RunState,
    StepProgress,
    current_step,
    from_record,
)
from controller.run.snapshot import Snapshot
from drivers.errors import ConfigurationError

__all__ = ["Decision", "Policy", "Recovered", "decide", "recover"]

# The furnace is where the batch left it if within this of the setpoint then in force.
PLAUSIBLE_BAND_C: Final = 25.0
# Away longer than this, a person decides: the process may have changed too much.
MAX_UNATTENDED_OUTAGE_S: Final = 4 * 3600.0


class Policy(StrEnum):
    """How a resumed batch goes on (judged on the furnace's state now)."""

    CONTINUE = "continue"  # the furnace is where it was: carry on with the step
    RAMP_BACK = "ramp back"  # it cooled (instrument fallback): ramp back, then carry on
    HOLD = "hold for the operator"  # implausible or uncertain: a person decides
    ABORT = "abort with a controlled cool-down"  # unsafe to go on


@dataclass(frozen=True, slots=True)
class Recovered:
    """A batch as its folder leaves it: frozen inputs, last checkpoint, last trace row."""

    batch_dir: Path
    plan: Plan
    station: Station
    recipe_text: str
    station_text: str
    state: RunState | None  # the last checkpoint's run state (None: none was written)
    checkpoint_t_s: float | None  # when it was written (None: no checkpoint)
    mass0_g: float | None  # the balance's first reading of the batch (100 %)
    last_t_s: float  # process time of the last record (audit or trace)
    last_wall: datetime  # its wall time (UTC)
    setpoint_c: float  # the last recorded setpoint
    furnace_c: float  # the last recorded furnace temperature (NaN if unknown)
    operator: str = ""
    trace_t_s: float | None = None  # the trace's last row that survived


@dataclass(frozen=True, slots=True)
class Decision:
    """What resume does: the policy, why (one line), the state to run from (None: start
    the plan from its first step), the setpoint to start at, the trigger to fire after
    preflight ("" to carry on), and whether a ramp back was inserted."""

    policy: Policy
    reason: str
    state: RunState | None
    setpoint_c: float
    trigger: str = ""
    ramp_back: bool = False


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _audit_tail(folder: BatchFolder) -> tuple[dict[str, Any], dict[str, Any] | None, bool, str]:
    """The last record, the last checkpoint, whether a step ever started, the operator.
    Raises ``ConfigurationError`` for a broken chain or a batch that already ended."""
    path = folder.audit_jsonl
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read ({exc.strerror})", source=str(path)) from None
    scan = scan_chain(data)
    if scan.bad_index is not None:
        raise ConfigurationError(f"audit chain broken, cannot resume: {scan.reason}",
                                 source=str(path))
    if scan.first_record is None:
        raise ConfigurationError("no audit record: not a batch folder", source=str(path))
    last: dict[str, Any] = scan.first_record
    checkpoint: dict[str, Any] | None = None
    started = False
    for line in data[:scan.end_offset].splitlines():
        record = json.loads(line)
        event = record["event"]
        if event == "batch_ended":
            raise ConfigurationError("this batch already ended; nothing to resume",
                                     source=str(folder.path))
        if event == "checkpoint":
            checkpoint = record
        elif event == "step_started":
            started = True
        last = record
    return last, checkpoint, started, str(scan.first_record.get("operator", ""))


def _float(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def recover(batch_dir: Path) -> Recovered:
    """Load the batch's last checkpoint. Raises ``ConfigurationError`` (one line) if the
    folder is not an interrupted batch: missing files, a broken chain, a batch that
    already ended, or a checkpoint this software cannot read (``CheckpointError``)."""
    folder = BatchFolder.open(batch_dir, needs=(RECIPE_FILE, STATION_FILE, AUDIT_FILE,
                                                TRACE_FILE))
    station, station_text = folder.read_station()
    _, plan, recipe_text = load_recipe(folder.recipe_toml, {}, station)
    last, checkpoint, started, operator = _audit_tail(folder)
    if checkpoint is None:
        if started:
            raise CheckpointError("no checkpoint in the audit chain although steps ran: "
                                  "written by a version without checkpoints, resume it with "
                                  "that version", source=str(folder.audit_jsonl))
        state: RunState | None = None
        checkpoint_t_s, mass0_g = None, None
    else:
        saved = checkpoint.get("state")
        if not isinstance(saved, dict):
            raise CheckpointError("the last checkpoint holds no run state",
                                  source=str(folder.audit_jsonl), field="state")
        try:
            state = from_record(saved, plan)
        except CheckpointError as exc:
            raise CheckpointError(exc.reason, source=str(folder.audit_jsonl),
                                  field=f"checkpoint.{exc.field}") from None
        checkpoint_t_s = float(checkpoint["t_s"])
        mass0 = checkpoint.get("mass0_g")
        mass0_g = float(mass0) if isinstance(mass0, int | float) else None
    if state is not None and state.phase in FINAL:
        raise ConfigurationError(f"this batch already ended ({state.phase}); nothing to "
                                 "resume", source=str(batch_dir))
    last_t_s, last_wall = float(last["t_s"]), _parse_utc(str(last["wall_utc"]))
    setpoint_c = state.setpoint_c if state is not None else station.envelope.ambient_c
    furnace_c, trace_t_s = math.nan, None
    row = folder.last_trace_row()
    if row is not None:
        setpoint_c = _float(row.get("setpoint_c")) if row.get("setpoint_c") else setpoint_c
        furnace_c = _float(row.get("furnace_c"))
        row_t_s = trace_t_s = _float(row.get("elapsed_s"))
        if row_t_s > last_t_s:
            last_t_s, last_wall = row_t_s, _parse_utc(row["wall_utc"])
    return Recovered(batch_dir, plan, station, recipe_text, station_text, state,
                     checkpoint_t_s, mass0_g, last_t_s, last_wall, setpoint_c, furnace_c,
                     operator, trace_t_s)


def decide(rec: Recovered, snap: Snapshot, outage_s: float) -> Decision:
    """How to go on with ``rec``, given the furnace now (``snap``) after ``outage_s``.

    The returned state is ready to run after preflight: the time since the checkpoint is
    forgotten (no dwell time is credited for the outage; at most the checkpoint interval
    is counted again), the setpoint starts where the furnace is unless it carries on
    with a dwell or gas step, and a ramp back is inserted before the step that was
    running (never into the plan, so it cannot shift a step).
    """
    env = rec.station.envelope
    if rec.state is None:
        return Decision(Policy.CONTINUE, "no step had started: the batch starts from its "
                        "first step", None, snap.furnace_c)
    state = rec.state
    step = current_step(rec.plan, replace(state, phase=Phase.RUNNING))
    # Idle again: the resumed run goes through start and preflight like a new one.
    ready = replace(state, phase=Phase.IDLE, last_t_s=None, hold_clear_since_t_s=None,
                    ramp_paused=False)

    def from_here(policy: Policy, reason: str, trigger: str = "") -> Decision:
        setpoint_c = snap.furnace_c if snap.furnace is not None else state.setpoint_c
        return Decision(policy, reason, ready, setpoint_c, trigger)

    if state.phase in (Phase.ABORTING, Phase.STOPPING):
        trigger = "abort" if state.phase is Phase.ABORTING else "stop"
        return from_here(Policy.ABORT, f"the batch was {state.phase} when it stopped", trigger)
    if snap.furnace is None:
        return from_here(Policy.ABORT, "the furnace controller does not answer", "abort")
    now_c = snap.furnace_c
    inert = [g for g, f in state.flows_sccm.items()
             if f > 0 and (m := rec.station.gas(g)) is not None and not m.oxidising]
    if now_c > env.air_max_c and inert:
        if not [g for g in inert if snap.flow_sccm(g) >= 0.5 * state.flows_sccm[g]]:
            return from_here(Policy.ABORT, f"furnace at {now_c:.0f} °C without verified "
                             "inert flow", "abort")
        if snap.o2_ppm is not None and snap.o2_ppm > O2_LIMIT_PPM and state.purged:
            return from_here(Policy.ABORT, f"O2 {snap.o2_ppm:.0f} ppm in the hot inert "
                             "tube", "abort")
    if outage_s > MAX_UNATTENDED_OUTAGE_S:
        return from_here(Policy.HOLD, f"away {outage_s / 3600:.1f} h: longer than "
                         f"{MAX_UNATTENDED_OUTAGE_S / 3600:.0f} h, a person decides", "hold")
    if state.phase is Phase.HELD and state.hold_auto_resume_s is None:
        return from_here(Policy.HOLD, f"the batch was held ({state.hold_cause or 'operator'})"
                         " when it stopped: it stays held", "hold")
    if state.phase is Phase.HELD:  # held by a condition that lifts itself (stale comms):
        # the interlocks judge it afresh after preflight
        ready = replace(ready, hold_cause="", hold_auto_resume_s=None)
    if isinstance(step, Cool | End):
        # Cooling: the setpoint runs ahead of the furnace, and the outage only cools it
        # more. Hotter than the furnace was is what would be implausible.
        then_c = rec.furnace_c if math.isfinite(rec.furnace_c) else rec.setpoint_c
        if now_c > then_c + PLAUSIBLE_BAND_C:
            return from_here(Policy.HOLD, f"furnace at {now_c:.0f} °C, {now_c - then_c:.0f} K "
                             "above where the batch left it: implausible", "hold")
        return Decision(Policy.CONTINUE, f"furnace at {now_c:.0f} °C, cooling (it was at "
                        f"{then_c:.0f} °C)", ready, now_c)
    expected_c = step.at_c if isinstance(step, Dwell) else rec.setpoint_c
    deviation_c = now_c - expected_c
    if step is None or isinstance(step, OperatorStep | Purge) or \
            abs(deviation_c) <= PLAUSIBLE_BAND_C:
        reason = (f"furnace at {now_c:.0f} °C, {deviation_c:+.0f} K from {expected_c:.0f} °C"
                  if step is not None else "at the end of the recipe")
        moving = isinstance(step, Ramp | Cool)  # a ramp goes on from where the furnace is
        setpoint_c = now_c if moving else state.setpoint_c
        return Decision(Policy.CONTINUE, reason, ready, setpoint_c)
    if deviation_c > 0:
        return from_here(Policy.HOLD, f"furnace at {now_c:.0f} °C, {deviation_c:.0f} K above "
                         "where the batch left it: implausible", "hold")
    target_c = expected_c if isinstance(step, Dwell | Ramp) else now_c
    # No faster than the instrument's rate limit, which stays at its fallback rate
    # (decision 0005): the plan's own ramps are already capped to it.
    rate = min(env.max_rate_between(now_c, target_c), fallback_rate_c_per_min(rec.station))
    if isinstance(step, Ramp):
        rate = min(rate, step.rate_c_per_min)
    back = Ramp(stage=step.stage, label=f"ramp back to {target_c:g} °C after the outage",
                to_c=target_c, rate_c_per_min=rate)
    # A ramp back replaces one already inserted (it ramps to the same place); the plan's
    # step keeps its progress for when the ramp is done.
    suspended = state.suspended if state.inserted else state.progress
    resumed = replace(ready, inserted=(back,), suspended=suspended or StepProgress(0.0))
    return Decision(Policy.RAMP_BACK, f"furnace at {now_c:.0f} °C, {-deviation_c:.0f} K below "
                    f"{expected_c:.0f} °C: ramping back at {rate:g} °C/min", resumed, now_c,
                    ramp_back=True)
