"""The recipe runner: ``Runner.step(state, snapshot, verdicts) -> (state, CycleOutput)``.

A pure function of its inputs: the same state and snapshot give the same output. It does
no I/O and never waits; the commands, the audit events and the requests to the scan cycle
(heater off, reconfigure, tube opened) come back as data. ``transitions`` checks each phase
change against the literal table in ``runstate``. Not here: reading or writing devices,
records, or holding the state between cycles (``handle.RecipeRunner`` does that).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from transitions import EventData, Machine, MachineError

from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp, SetGas, Step
from controller.run.interlocks import Context, Severity, Verdict
from controller.run.runstate import (
    FINAL,
    TRANSITIONS,
    Phase,
    RunState,
    StepProgress,
    current_step,
    frozen_map,
    initial_state,
)
from controller.run.snapshot import Commands, Snapshot
from drivers.errors import RunStateError

__all__ = ["SAFE_INERT_FLOW_SCCM", "AuditEvent", "CycleOutput", "Runner"]

logger = logging.getLogger(__name__)
logging.getLogger("transitions").setLevel(logging.ERROR)  # model_override skip notices

P = Phase

# A gas step is done once every flow is within this fraction of full scale of its setpoint.
_FLOW_TOLERANCE_FRACTION = 0.05
# Purge time counts only while the flow is at least this fraction of its setpoint.
_PURGE_FLOW_FRACTION = 0.9
# Flows must settle within this much running time, else the run holds.
_GAS_SETTLE_TIMEOUT_S = 120.0
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


class _Transit:
    """The ``transitions`` model: carries one phase change of one ``_Cycle`` at a time.
    The triggers are declared so that ``model_override`` binds them (and type checkers
    see them)."""

    state: Phase
    cycle: _Cycle

    def start(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def preflight_ok(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def hold(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def resume(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def stop(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def abort(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def finish(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def cooled(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def fault(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704

    def _on_state_change(self, event: EventData) -> None:
        self.cycle.on_state_change(event)


class Runner:
    """Runs a compiled ``Plan`` on a ``Station``. Holds configuration only: the run itself
    is the ``RunState`` passed in and returned. A hold nobody lifts for ``max_hold_s`` of
    real time (default: the station's ``[hold] timeout_min``) ends the batch as the
    station's ``[hold] on_timeout`` says.
    """

    def __init__(self, plan: Plan, station: Station, *, auto_confirm: bool,
                 max_hold_s: float | None = None) -> None:
        self.plan = plan
        self.station = station
        self.auto_confirm = auto_confirm  # simulated stations confirm operator steps
        self.max_hold_s = (station.hold.timeout_min * 60.0 if max_hold_s is None
                           else max_hold_s)
        self.oxidising = frozenset(m.gas for m in station.mfc if m.oxidising)
        self._transit = _Transit()
        self._machine = Machine(model=self._transit, states=Phase, transitions=TRANSITIONS,
                                initial=P.IDLE, auto_transitions=False, queued=True,
                                model_override=True, send_event=True,
                                after_state_change="_on_state_change")

    # ----------------------------------------------------------------- reading a state
    def initial(self) -> RunState:
        """The state before ``start``."""
        return initial_state(self.plan, ambient_c=self.station.envelope.ambient_c,
                             gases=tuple(m.gas for m in self.station.mfc),
                             rate_limit_c_per_min=fallback_rate_c_per_min(self.station))

    def current_step(self, state: RunState) -> Step | None:
        """The step ``state`` is executing (an inserted ramp first), or None."""
        return current_step(self.plan, state)

    def context(self, state: RunState) -> Context:
        """What the interlocks need from the runner."""
        flowing = {g for g, f in state.flows_sccm.items() if f > 0}
        inert_only = bool(flowing) and not (flowing & self.oxidising)
        step = self.current_step(state)
        guard = (self.plan.stage(step.stage).guard
                 if step is not None and flowing & self.oxidising else None)
        return Context(setpoint_c=state.setpoint_c,
                       inert_unpurged=inert_only and not (flowing & state.purged),
                       guard=guard, ramp_paused=state.ramp_paused,
                       active=state.phase in (P.RUNNING, P.HELD, P.STOPPING, P.ABORTING),
                       inert_purged=inert_only and bool(flowing & state.purged),
                       flows_sccm=tuple(state.flows_sccm.items()),
                       heating=isinstance(step, Ramp) and step.to_c > state.setpoint_c)

    @staticmethod
    def commands(state: RunState) -> Commands:
        """The desired state of the outputs, as data."""
        return Commands(state.setpoint_c, state.flows_sccm, state.rate_limit_c_per_min)

    # ------------------------------------------------------------------ changing it
    def step(self, state: RunState, snap: Snapshot, verdicts: list[Verdict]
             ) -> tuple[RunState, CycleOutput]:
        """Advance by one scan cycle on ``snap``, acting on interlock ``verdicts`` first."""
        c = _Cycle(self, state, snap.t_s)
        c.step(snap, verdicts)
        return c.finish()

    def fire(self, state: RunState, trigger: str, t_s: float, *, reason: str,
             operator: str = "") -> tuple[RunState, CycleOutput]:
        """Fire ``trigger`` at ``t_s``. Raises ``RunStateError`` if it is not allowed now."""
        c = _Cycle(self, state, t_s)
        c.fire(trigger, reason=reason, operator=operator)
        return c.finish()

    def begin(self, state: RunState, t_s: float, furnace_c: float
              ) -> tuple[RunState, CycleOutput]:
        """Enter preflight at ``t_s`` with the setpoint at the furnace's temperature."""
        c = _Cycle(self, replace(state, setpoint_c=furnace_c), t_s)
        c.fire("start", reason="batch started")
        return c.finish()

    def preflight_done(self, state: RunState, t_s: float) -> tuple[RunState, CycleOutput]:
        """Preflight succeeded: run the first step."""
        c = _Cycle(self, state, t_s)
        c.fire("preflight_ok", reason="instruments configured and read back")
        c.enter_step()
        return c.finish()

    def resumed(self, state: RunState, t_s: float, *, setpoint_c: float, trigger: str,
                reason: str, ramp_back: bool = False) -> tuple[RunState, CycleOutput]:
        """Preflight done after an outage: carry on with ``state`` (the last checkpoint as
        the resume policy left it) from ``setpoint_c``, then fire ``trigger`` ("", "hold",
        "stop" or "abort"). With ``ramp_back`` the policy has inserted a ramp
        (``state.inserted[0]``), which starts now; the plan's step waits in
        ``state.suspended``."""
        c = _Cycle(self, replace(state, setpoint_c=setpoint_c, hold_started_real_s=None), t_s)
        c.fire("preflight_ok", reason=f"resumed after an outage: {reason}")
        if c.finished_plan():
            c.fire("finish", reason="recipe completed")
            return c.finish()
        if ramp_back:
            c.enter_step()
        else:
            step = c.step_now()
            c.audit("step_resumed", index=c.step_index, stage=step.stage, kind=step.kind,
                    label=step.label, inserted=bool(c.inserted),
                    counted_s=c.progress.counted_s, setpoint_c=c.setpoint_c,
                    policy=trigger or "continue")
        if trigger == "hold":
            c.hold_cause, c.hold_auto_resume_s = "resume", None
        if trigger:
            c.fire(trigger, reason=f"resume: {reason}")
        return c.finish()

    def confirm(self, state: RunState, t_s: float, operator: str
                ) -> tuple[RunState, CycleOutput]:
        """An operator confirms the current operator step. Raises ``RunStateError`` if
        none is waiting."""
        step = self.current_step(state)
        if not isinstance(step, OperatorStep):
            raise RunStateError("there is no operator step waiting for confirmation")
        c = _Cycle(self, state, t_s)
        c.progress = replace(c.progress, confirmed=True)
        c.audit("operator_confirmed", message=step.message, operator=operator,
                how="confirmed by operator")
        return c.finish()

    def halt(self, state: RunState, t_s: float, *, reason: str, operator: str = ""
             ) -> tuple[RunState, CycleOutput]:
        """The controller itself is going away (SIGTERM, SIGHUP, SIGBREAK): end the batch as
        faulted with the heat left to the instrument's own fallback (its local setpoint at
        its rate limit) and inert gas on. Not heater off: a forced 0 % output would wait for
        a PC that is not coming back. ``reason`` (naming the signal) becomes the end reason,
        after any earlier one (a halt during an abort's cool-down). Raises
        ``RunStateError`` once the batch has ended."""
        if state.phase in FINAL:
            raise RunStateError(f"cannot halt while {state.phase}")
        c = _Cycle(self, state, t_s)
        c.heater_off = False
        c.end_reason = f"{c.end_reason}; then {reason}" if c.end_reason else reason
        c.audit("halt", action="halt: instrument fallback, inert gas on", reason=reason,
                operator=operator)
        c.fire("fault", reason=reason, operator=operator)
        return c.finish()

    @staticmethod
    def outage(state: RunState) -> RunState:
        """The controller was away (a stalled scan loop): the next cycle's dt is 0, so the
        gap moves no ramp (no setpoint jump) and counts toward no dwell or purge."""
        return replace(state, last_t_s=None)

    @staticmethod
    def reconfigured(state: RunState) -> RunState:
        """The scan cycle re-applied our configuration to the instrument."""
        return replace(state, needs_reconfigure=False)


class _Cycle:
    """One call of the runner: a mutable working copy of a ``RunState``, frozen again by
    ``finish``. Private; nothing outlives the call."""

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
        self.flows_sccm = dict(state.flows_sccm)
        self.rate_limit_c_per_min = state.rate_limit_c_per_min
        self.purged = set(state.purged)
        self.last_t_s = state.last_t_s
        self.stage_started = dict(state.stage_started_t_s)
        self.stage_ended = dict(state.stage_ended_t_s)
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
        self._start = (state.phase, state.step_index, len(state.inserted))

    def finish(self) -> tuple[RunState, CycleOutput]:
        state = RunState(
            self.phase, self.step_index, self.inserted, self.progress, self.suspended,
            self.setpoint_c,
            frozen_map(self.flows_sccm), self.rate_limit_c_per_min, frozenset(self.purged),
            self.last_t_s, frozen_map(self.stage_started), frozen_map(self.stage_ended),
            self.holdback_total_s, frozen_map(self.gas_used_l), self.hold_cause,
            self.hold_auto_resume_s, self.held_since_t_s, self.hold_started_real_s,
            self.hold_clear_since_t_s,
            self.notes, self.ramp_paused, self.heater_off, self.needs_reconfigure,
            frozenset(self.failed_gases), self.end_reason, self.interrupted, self.supervise)
        boundary = (self.phase, self.step_index, len(self.inserted)) != self._start
        out = CycleOutput(Runner.commands(state), tuple(self.events), self.heater_off_now,
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
            self.run_step(snap, dt_s)
        elif self.phase is P.HELD:
            self.time_out_hold(snap)
        if self.phase in (P.STOPPING, P.ABORTING):
            self.cool_down(snap, dt_s)

    def time_out_hold(self, snap: Snapshot) -> None:
        """A hold nobody lifts ends after ``max_hold_s`` of real time, counted from its
        first held cycle, at any clock speed: the time a person has to come."""
        real_s = snap.t_s if snap.real_s is None else snap.real_s
        if self.hold_started_real_s is None:
            self.hold_started_real_s = real_s
        elif real_s - self.hold_started_real_s > self.r.max_hold_s:
            self.fire(self.station.hold.on_timeout,
                      reason=f"held for more than {self.r.max_hold_s / 60:.0f} min of real "
                      "time with nobody resuming")

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

    def run_step(self, snap: Snapshot, dt_s: float) -> None:
        step = self.step_now()
        done = False
        match step:
            case Ramp():
                done = not self.ramp_paused and self.ramp_toward(
                    step.to_c, step.rate_c_per_min, dt_s)
            case Dwell():
                done = self.dwell(step, snap, dt_s)
            case SetGas():
                done = self.gas(step.flow_map, snap, dt_s)
            case Purge():
                done = self.purge(step, snap, dt_s)
            case Cool():
                self.ramp_toward(self.env.ambient_c, step.rate_c_per_min, dt_s)
                done = snap.furnace_c <= step.to_c
            case OperatorStep():
                done = self.operator(step, snap)
            case End():
                self.ramp_toward(self.env.ambient_c, self.env.max_cooling_rate_c_per_min,
                                 dt_s)
                done = True
        if done:
            self.leave_step(snap)

    # ------------------------------------------------------------------ step kinds
    def ramp_toward(self, to_c: float, rate_c_per_min: float, dt_s: float) -> bool:
        """Move the setpoint toward ``to_c`` by at most rate * dt. True once there."""
        max_step_c = rate_c_per_min * dt_s / 60.0
        delta_c = to_c - self.setpoint_c
        if abs(delta_c) <= max_step_c:
            self.setpoint_c = to_c
            return True
        self.setpoint_c += max_step_c if delta_c > 0 else -max_step_c
        return False

    def dwell(self, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
        self.setpoint_c = step.at_c
        p = self.progress
        if abs(snap.furnace_c - step.at_c) <= step.band_c:
            p = replace(p, counted_s=p.counted_s + dt_s)
        else:
            p = replace(p, holdback_s=p.holdback_s + dt_s)
            self.holdback_total_s += dt_s
            if p.holdback_s > step.max_holdback_s:
                self.audit("alarm", alarm="holdback_exceeded", measured=snap.furnace_c,
                           limit=step.band_c, holdback_s=p.holdback_s,
                           max_holdback_s=step.max_holdback_s)
                self.progress = replace(p, holdback_s=0.0)
                self.hold_cause, self.hold_auto_resume_s = "holdback_exceeded", None
                self.fire("hold", reason="furnace out of the holdback band for longer "
                          f"than {step.max_holdback_s / 60:.0f} min")
                return False
        self.progress = p
        if step.endpoint is not None:
            return self.endpoint(step, snap, dt_s)
        return p.counted_s >= step.duration_s

    def endpoint(self, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
        """A cross-linking endpoint: |DTG| below the threshold for long enough, after the
        minimum dwell; the dwell's duration is the maximum."""
        ep = step.endpoint
        if ep is None:
            return False
        counted_s = self.progress.counted_s
        dtg = snap.dtg_pct_per_min
        quiet = (counted_s >= ep.min_s and dtg is not None
                 and abs(dtg) < ep.dtg_below_pct_per_min)
        self.progress = replace(self.progress,
                                quiet_s=self.progress.quiet_s + dt_s if quiet else 0.0)
        if self.progress.quiet_s >= ep.for_s:
            self.audit("endpoint_reached", dtg_pct_per_min=dtg,
                       limit=ep.dtg_below_pct_per_min, counted_s=counted_s)
            return True
        if counted_s >= step.duration_s:
            self.audit("alarm", alarm="endpoint_not_reached", dtg_pct_per_min=dtg,
                       limit=ep.dtg_below_pct_per_min, counted_s=counted_s,
                       action="dwell ended at its maximum duration")
            return True
        return False

    def set_flows(self, flows: dict[str, float]) -> None:
        new = {gas: flows.get(gas, 0.0) for gas in self.flows_sccm}
        if new != self.flows_sccm:
            self.audit("gas_change", old=dict(self.flows_sccm), new=new)
            self.flows_sccm = new
            if any(new[g] > 0 for g in self.r.oxidising):
                self.purged.clear()  # air in the tube again

    def flows_reached(self, snap: Snapshot) -> bool:
        for mfc in self.station.mfc:
            tolerance = _FLOW_TOLERANCE_FRACTION * mfc.full_scale_sccm
            if not abs(snap.flow_sccm(mfc.gas) - self.flows_sccm[mfc.gas]) <= tolerance:
                return False
        return True

    def gas(self, flows: dict[str, float], snap: Snapshot, dt_s: float) -> bool:
        self.set_flows(flows)
        if self.flows_reached(snap):
            return True
        # Only running time counts toward the settle timeout: time spent held (for an O2
        # or flow hold, say) is not the flows' fault.
        waited_s = self.progress.waited_s + dt_s
        self.progress = replace(self.progress, waited_s=waited_s)
        if waited_s > _GAS_SETTLE_TIMEOUT_S:
            self.audit("alarm", alarm="flow_not_reached", wanted=dict(self.flows_sccm),
                       measured={g: snap.flow_sccm(g) for g in self.flows_sccm})
            self.progress = replace(self.progress, waited_s=0.0)
            self.hold_cause, self.hold_auto_resume_s = "flow_not_reached", None
            self.fire("hold", reason="gas flows did not reach their setpoints")
        return False

    def purge(self, step: Purge, snap: Snapshot, dt_s: float) -> bool:
        self.set_flows({step.gas: step.flow_sccm})
        p = self.progress
        if snap.flow_sccm(step.gas) >= _PURGE_FLOW_FRACTION * step.flow_sccm:
            p = self.progress = replace(p, counted_s=p.counted_s + dt_s)
        if p.counted_s < step.duration_s:
            return False
        if step.o2_max_ppm is not None:
            o2 = snap.o2_ppm
            if o2 is None or o2 > step.o2_max_ppm:
                waited_s = p.counted_s - step.duration_s
                if step.timeout_s and waited_s > step.timeout_s:
                    self.audit("alarm", alarm="purge_o2_not_reached", measured=o2,
                               limit=step.o2_max_ppm)
                    self.hold_cause, self.hold_auto_resume_s = "purge_o2_not_reached", None
                    self.fire("hold", reason="O2 did not fall below the purge limit")
                return False
        self.purged.add(step.gas)
        self.audit("purge_complete", gas=step.gas, volumes=step.volumes,
                   counted_s=p.counted_s, o2_ppm=snap.o2_ppm)
        return True

    def operator(self, step: OperatorStep, snap: Snapshot) -> bool:
        if step.max_c is not None and not snap.furnace_c <= step.max_c:
            return False  # wait: the tube may not be opened yet
        if not self.progress.confirmed:
            if not self.r.auto_confirm:
                return False
            self.progress = replace(self.progress, confirmed=True)
            self.audit("operator_confirmed", message=step.message, operator="simulator",
                       how="confirmed automatically (simulated station)",
                       furnace_c=snap.furnace_c)
        if step.opens_tube:
            self.purged.clear()
            self.tube_opened = True
        return True

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
        self.stage_started.setdefault(step.stage, self.t_s)
        fields: dict[str, Any] = {"index": self.step_index, "stage": step.stage,
                                  "kind": step.kind, "label": step.label,
                                  "setpoint_c": self.setpoint_c}
        if self.inserted:
            fields["inserted"] = True
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
            self.stage_ended[step.stage] = snap.t_s
            self.step_index += 1
            if self.step_index >= len(self.plan.steps) or isinstance(step, End):
                self.fire("finish", reason="recipe completed")
                return
        self.enter_step()

