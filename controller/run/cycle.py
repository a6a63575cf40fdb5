"""One call of the runner: ``Cycle``, a mutable working copy of a ``RunState`` that does the
cycle's work (gas used, interlock verdicts, holds and their time-out, stop and abort, entering
and leaving steps) and is frozen again by ``finish`` into the next state and a
``CycleOutput``: the commands, the audit events and the requests to the scan cycle.

Not here: the public API and the ``transitions`` machine that checks each phase change
(``runner``), or what each step kind does while running (``step_kinds``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from transitions import EventData, MachineError

from controller.errors import RunStateError
from controller.recipe.station import fallback_rate_c_per_min
from controller.recipe.steps import End, OperatorStep, Step
from controller.run.interlocks import Severity, Verdict
from controller.run.runstate import FINAL, Phase, RunState, StepProgress, frozen_map
from controller.run.snapshot import Commands, Snapshot
from controller.run.step_kinds import run_step

if TYPE_CHECKING:
    from controller.run.runner import Runner

__all__ = ["SAFE_INERT_FLOW_SCCM", "AuditEvent", "Cycle", "CycleOutput"]

logger = logging.getLogger(__name__)

P = Phase

# Default inert flow during a cool-down after abort or stop, if none is flowing.
SAFE_INERT_FLOW_SCCM = 200.0


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Something the audit log must record, returned by the runner for the scan cycle."""

    event: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CycleOutput:
    """What one step asks of the scan cycle, besides the next state."""

    commands: Commands
    events: tuple[AuditEvent, ...] = ()
    heater_off: bool = False  # a halt: the heater must go off now (manual 0 %)
    tube_opened: bool = False  # an operator step opened the tube (air gets in)
    boundary: bool = False  # a step or phase changed: a checkpoint is due


def _kept(was: MappingProxyType[str, float], now: Mapping[str, float]
          ) -> MappingProxyType[str, float]:
    """``was`` if the cycle left the mapping as it was, else a frozen copy of ``now``."""
    return was if now is was or was == now else frozen_map(now)


class Cycle:
    """One call of the runner: a mutable working copy of a ``RunState``, frozen again by
    ``finish``. Internal to ``runner``; nothing outlives the call."""

    def __init__(self, runner: Runner, state: RunState, t_s: float) -> None:
        self.r = runner
        self.plan = runner.plan
        self.station = runner.station
        self.env = runner.station.envelope
        self.t_s = t_s
        self.events: list[AuditEvent] = []
        self.heater_off_now = False
        self.tube_opened = False
        self.phase = state.phase
        self.step_index = state.step_index
        self.inserted = state.inserted
        self.progress = state.progress
        self.suspended = state.suspended
        self.setpoint_c = state.setpoint_c
        # Mappings a cycle rarely changes are the state's own until it does (copy on write)
        self.flows_sccm: Mapping[str, float] = state.flows_sccm
        self.rate_limit_c_per_min = state.rate_limit_c_per_min
        self.purged = set(state.purged)
        self.last_t_s = state.last_t_s
        self.stage_started: Mapping[str, float] = state.stage_started_t_s
        self.stage_ended: Mapping[str, float] = state.stage_ended_t_s
        self.holdback_total_s = state.holdback_total_s
        self.gas_used_l = dict(state.gas_used_l)
        self.hold_cause = state.hold_cause
        self.hold_auto_resume_s = state.hold_auto_resume_s
        self.held_since_t_s = state.held_since_t_s
        self.hold_started_real_s = state.hold_started_real_s
        self.hold_clear_since_t_s = state.hold_clear_since_t_s
        self.notes = state.notes
        self.ramp_paused = state.ramp_paused
        self.heater_off = state.heater_off
        self.needs_reconfigure = state.needs_reconfigure
        self.failed_gases = set(state.failed_gases)
        self.end_reason = state.end_reason
        self.interrupted = state.interrupted
        self.supervise = state.supervise
        self._state = state
        self._start = (state.phase, state.step_index, len(state.inserted))

    def finish(self) -> tuple[RunState, CycleOutput]:
        was = self._state
        # The frozen containers a cycle did not change are the last state's, so that a
        # cache keyed on them (the runner's context) sees the same objects.
        state = RunState(
            self.phase, self.step_index, self.inserted, self.progress, self.suspended,
            self.setpoint_c,
            _kept(was.flows_sccm, self.flows_sccm), self.rate_limit_c_per_min,
            was.purged if was.purged == self.purged else frozenset(self.purged),
            self.last_t_s, _kept(was.stage_started_t_s, self.stage_started),
            _kept(was.stage_ended_t_s, self.stage_ended),
            self.holdback_total_s, _kept(was.gas_used_l, self.gas_used_l), self.hold_cause,
            self.hold_auto_resume_s, self.held_since_t_s, self.hold_started_real_s,
            self.hold_clear_since_t_s,
            self.notes, self.ramp_paused, self.heater_off, self.needs_reconfigure,
            (was.failed_gases if was.failed_gases == self.failed_gases
             else frozenset(self.failed_gases)),
            self.end_reason, self.interrupted, self.supervise)
        boundary = (self.phase, self.step_index, len(self.inserted)) != self._start
        out = CycleOutput(self.r.commands(state), tuple(self.events), self.heater_off_now,
                          self.tube_opened, boundary)
        return state, out

    # --------------------------------------------------------------------- basics
    def audit(self, event: str, **fields: Any) -> None:
        self.events.append(AuditEvent(event, fields))

    def fire(self, trigger: str, *, reason: str, operator: str = "") -> None:
        transit = self.r._transit  # noqa: SLF001 - the runner's own scratch model
        transit.cycle = self
        self.r._machine.set_state(self.phase, model=transit)  # noqa: SLF001
        try:
            getattr(transit, trigger)(reason=reason, operator=operator)
        except (MachineError, AttributeError) as exc:
            raise RunStateError(f"cannot {trigger} while {self.phase}") from exc
        self.phase = transit.state

    def on_state_change(self, event: EventData) -> None:
        if event.transition is None:  # only internal transitions lack one; we declare none
            return
        old, new = Phase[event.transition.source], Phase[str(event.transition.dest)]
        self.phase = new
        reason = event.kwargs.get("reason", "")
        operator = event.kwargs.get("operator", "")
        if new is P.HELD:
            self.held_since_t_s, self.hold_started_real_s = self.t_s, None
        if new in FINAL or new in (P.STOPPING, P.ABORTING):
            self.end_reason = self.end_reason or reason
        if new in (P.STOPPING, P.ABORTING, P.FAULTED):
            self.make_safe_atmosphere()
        logger.info("state %s -> %s (%s)", old, new, reason,
                    extra={"trigger": event.event.name, "reason": reason})
        fields: dict[str, Any] = {"old": str(old), "new": str(new),
                                  "trigger": event.event.name, "reason": reason}
        if operator:
            fields["operator"] = operator
        self.audit("state_change", **fields)

    def finished_plan(self) -> bool:
        return not self.inserted and self.step_index >= len(self.plan.steps)

    def step_now(self) -> Step:
        return self.inserted[0] if self.inserted else self.plan.steps[self.step_index]

    # ------------------------------------------------------------------ the cycle
    def step(self, snap: Snapshot, verdicts: list[Verdict]) -> None:
        dt_s = 0.0 if self.last_t_s is None else max(snap.t_s - self.last_t_s, 0.0)
        self.last_t_s = snap.t_s
        self.integrate_gas(snap, dt_s)
        self.act_on(verdicts, snap)
        if self.phase is P.RUNNING:
            run_step(self, snap, dt_s)
        elif self.phase is P.HELD:
            self.time_out_hold(snap)
        if self.phase in (P.STOPPING, P.ABORTING):
            self.cool_down(snap, dt_s)

    def time_out_hold(self, snap: Snapshot) -> None:
        """A hold nobody lifts ends after ``max_hold_s``: of real time, counted from its
        first held cycle, while it waits for a person (at any clock speed: the time a person
        has to come); of process time while it waits for its cause to clear."""
        real_s = snap.t_s if snap.real_s is None else snap.real_s
        if self.hold_started_real_s is None:
            self.hold_started_real_s = real_s
        if self.hold_auto_resume_s is None:
            waited_s, what = real_s - self.hold_started_real_s, "of real time with nobody resuming"
        else:
            waited_s = snap.t_s - self.held_since_t_s
            what = f"with {self.hold_cause or 'its cause'} not clearing"
        if waited_s > self.r.max_hold_s:
            self.fire(self.station.hold.on_timeout,
                      reason=f"held for more than {self.r.max_hold_s / 60:.0f} min {what}")

    def integrate_gas(self, snap: Snapshot, dt_s: float) -> None:
        """Gas used, standard litres, from the measured flows."""
        dt_min = dt_s / 60.0
        for gas, reading in snap.flows.items():
            if reading is not None and dt_min > 0:
                self.gas_used_l[gas] = (self.gas_used_l.get(gas, 0.0)
                                        + reading.flow_sccm / 1000.0 * dt_min)

    def act_on(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        self.notes_edge(verdicts)
        self.pause_edge(verdicts, snap)
        self.auto_resume(verdicts, snap)
        for v in verdicts:
            fields = {"interlock": v.interlock, "severity": v.severity.name.lower(),
                      "measured": v.measured, "limit": v.limit,
                      "justification": v.justification}
            if v.gas:
                fields["gas"] = v.gas
            if v.severity is Severity.HALT and self.phase not in FINAL:
                # Heater off, unless the verdict hands the furnace to the instrument's own
                # fallback (the controller is out of reach: its remote-setpoint timeout
                # takes it to the local setpoint at the rate limit).
                self.heater_off = self.heater_off_now = not v.instrument_fallback
                self.interrupted = v.resumable
                self.supervise = not v.resumable  # the PC stays: nothing takes it away
                self.audit("interlock_trip", action="halt: heater off, inert gas on"
                           if self.heater_off else "halt: instrument fallback, inert gas on",
                           **fields)
                self.fire("fault", reason=f"{v.interlock}: {v.justification}")
                return
            if v.severity is Severity.ABORT and self.phase in (P.PREFLIGHT, P.RUNNING,
                                                               P.HELD, P.STOPPING):
                if v.gas:
                    self.failed_gases.add(v.gas)
                self.audit("interlock_trip", action="abort: controlled cool-down under "
                           "inert gas", **fields)
                self.fire("abort", reason=f"{v.interlock}: {v.justification}")
                return
            if v.severity is Severity.ABORT and self.phase is P.ABORTING and v.gas and \
                    v.gas not in self.failed_gases:
                # the cool-down gas failed too: switch to another inert gas
                self.failed_gases.add(v.gas)
                self.audit("interlock_trip", action="switch inert gas", **fields)
                self.make_safe_atmosphere()
            if v.severity is Severity.HOLD and self.phase is P.RUNNING:
                self.audit("interlock_trip", action="hold, heat cut" if v.cut_heat
                           else "hold", **fields)
                self.hold_cause, self.hold_auto_resume_s = v.interlock, v.auto_resume_after_s
                self.hold_clear_since_t_s = None
                self.needs_reconfigure = self.needs_reconfigure or v.reconfigure_on_resume
                self.fire("hold", reason=f"{v.interlock}: {v.justification}")
                self.setpoint_c = (self.env.ambient_c if v.cut_heat
                                   else min(self.setpoint_c, snap.furnace_c))
                return

    def notes_edge(self, verdicts: list[Verdict]) -> None:
        """NOTE verdicts change nothing; their onset and their end are audited once."""
        now = {v.interlock: v for v in verdicts if v.severity is Severity.NOTE}
        for name in sorted(now.keys() - self.notes):
            v = now[name]
            self.audit("alarm", alarm=name, measured=v.measured, limit=v.limit,
                       action="recorded; the batch goes on", justification=v.justification)
        for name in sorted(self.notes - now.keys()):
            self.audit("alarm_cleared", alarm=name)
        self.notes = frozenset(now)

    def pause_edge(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        pause = next((v for v in verdicts if v.severity is Severity.PAUSE), None)
        stronger = any(v.severity > Severity.PAUSE for v in verdicts)
        if (pause is not None) == self.ramp_paused or self.phase is not P.RUNNING or stronger:
            return
        self.ramp_paused = pause is not None
        if pause is not None:
            self.audit("interlock_trip", interlock=pause.interlock, severity="pause",
                       action="ramp stopped", measured=pause.measured, limit=pause.limit,
                       justification=pause.justification)
        else:
            self.audit("interlock_cleared", interlock="exotherm_guard",
                       action="ramp continues", delta_t_c=snap.delta_t_c)

    def auto_resume(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        """A hold whose verdict allows it lifts itself once the condition has been clear
        for the verdict's settle time; every other hold waits for a person."""
        settle_s = self.hold_auto_resume_s
        if self.phase is not P.HELD or settle_s is None:
            return
        if any(v.interlock == self.hold_cause for v in verdicts) or snap.health.flow_short_s:
            self.hold_clear_since_t_s = None
            return
        if self.hold_clear_since_t_s is None:
            self.hold_clear_since_t_s = snap.t_s
        elif snap.t_s - self.hold_clear_since_t_s >= settle_s:
            cause, self.hold_cause, self.hold_auto_resume_s = self.hold_cause, "", None
            self.fire("resume", reason=f"{cause} clear for {settle_s:.0f} s",
                      operator="interlock")


    # ------------------------------------------------------- setpoint and flows
    def ramp_toward(self, to_c: float, rate_c_per_min: float, dt_s: float) -> bool:
        """Move the setpoint toward ``to_c`` by at most rate * dt. True once there."""
        max_step_c = rate_c_per_min * dt_s / 60.0
        delta_c = to_c - self.setpoint_c
        if abs(delta_c) <= max_step_c:
            self.setpoint_c = to_c
            return True
        self.setpoint_c += max_step_c if delta_c > 0 else -max_step_c
        return False

    def set_flows(self, flows: dict[str, float]) -> None:
        new = {gas: flows.get(gas, 0.0) for gas in self.flows_sccm}
        if new != self.flows_sccm:
            self.audit("gas_change", old=dict(self.flows_sccm), new=new)
            self.flows_sccm = new
            if any(new[g] > 0 for g in self.r.oxidising):
                self.purged.clear()  # air in the tube again

    # ---------------------------------------------------------------- stop / abort
    def make_safe_atmosphere(self) -> None:
        """Oxidising gases off; an inert gas on: the one flowing, else the first, passing
        over any whose flow was lost."""
        inert = [m for m in self.station.mfc if not m.oxidising]
        healthy = [m for m in inert if m.gas not in self.failed_gases] or inert
        flowing = [m for m in healthy if self.flows_sccm[m.gas] > 0]
        mfc = flowing[0] if flowing else healthy[0]
        flow = max(self.flows_sccm[mfc.gas], min(SAFE_INERT_FLOW_SCCM, mfc.full_scale_sccm))
        self.set_flows({mfc.gas: flow})

    def cool_down(self, snap: Snapshot, dt_s: float) -> None:
        self.rate_limit_c_per_min = fallback_rate_c_per_min(self.station)
        self.ramp_toward(self.env.ambient_c, self.env.max_cooling_rate_c_per_min, dt_s)
        if snap.furnace_c <= self.env.open_tube_max_c:
            self.fire("cooled", reason=f"furnace below {self.env.open_tube_max_c:g} °C")

    # ------------------------------------------------------------------ bookkeeping
    def enter_step(self) -> None:
        step = self.step_now()
        if not self.inserted and self.suspended is not None:
            # back to the plan's step after an inserted ramp, with its counted time
            self.progress, self.suspended = self.suspended, None
            event = "step_resumed"
        else:
            self.progress = StepProgress(started_t_s=self.t_s)
            event = "step_started"
        # The instrument's own rate limit is what it falls back at if the PC goes silent, and
        # the 3216 has one, symmetric: it stays at the fallback rate in every step, and the
        # plan compiler caps every ramp to it (decision 0005).
        self.rate_limit_c_per_min = fallback_rate_c_per_min(self.station)
        if step.stage not in self.stage_started:
            self.stage_started = {**self.stage_started, step.stage: self.t_s}
        fields: dict[str, Any] = {"index": self.step_index, "stage": step.stage,
                                  "kind": step.kind, "label": step.label,
                                  "setpoint_c": self.setpoint_c}
        if self.inserted:
            fields["inserted"] = True
        if isinstance(step, OperatorStep):
            fields["sample_action"] = step.sample_action
            fields["fields"] = [f.name for f in step.fields]
        if event == "step_resumed":
            fields["counted_s"] = self.progress.counted_s
        self.audit(event, **fields)

    def leave_step(self, snap: Snapshot) -> None:
        step = self.step_now()
        fields: dict[str, Any] = {"index": self.step_index, "stage": step.stage,
                                  "kind": step.kind,
                                  "duration_s": snap.t_s - self.progress.started_t_s,
                                  "counted_s": self.progress.counted_s,
                                  "furnace_c": snap.furnace_c}
        if self.inserted:
            fields["inserted"] = True
            self.audit("step_completed", **fields)
            self.inserted = self.inserted[1:]
        else:
            self.audit("step_completed", **fields)
            self.stage_ended = {**self.stage_ended, step.stage: snap.t_s}
            self.step_index += 1
            if self.step_index >= len(self.plan.steps) or isinstance(step, End):
                self.fire("finish", reason="recipe completed")
                return
        self.enter_step()
