"""The recipe runner: a ``transitions`` state machine plus the setpoint generator.

Stepped by the scan cycle once per snapshot; returns ``Commands`` as data and queues audit
events. It does no I/O and never waits. Not here: reading devices, writing them, or records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from transitions import EventData, Machine, MachineError

from controller.interlocks import Context, Severity, Verdict
from controller.snapshot import Commands, Snapshot
from controller.station import Station
from controller.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp, SetGas, Step
from drivers.errors import RunStateError

__all__ = ["AuditEvent", "RecipeRunner", "RunState", "TRANSITIONS"]

logger = logging.getLogger(__name__)
logging.getLogger("transitions").setLevel(logging.ERROR)  # model_override skip notices


class RunState(StrEnum):
    """Runner states; the values appear in the trace and the audit log."""

    IDLE = "idle"
    PREFLIGHT = "preflight"
    RUNNING = "running"
    HELD = "held"
    STOPPING = "stopping"  # operator stop: normal cool-down, batch not completed
    ABORTING = "aborting"  # controlled cool-down under inert gas after a trip
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAULTED = "faulted"


S = RunState
_ACTIVE = [S.PREFLIGHT, S.RUNNING, S.HELD, S.STOPPING, S.ABORTING]
FINAL = frozenset({S.COMPLETED, S.ABORTED, S.FAULTED})

# trigger          source                         destination
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start", "source": S.IDLE, "dest": S.PREFLIGHT},
    {"trigger": "preflight_ok", "source": S.PREFLIGHT, "dest": S.RUNNING},
    {"trigger": "hold", "source": S.RUNNING, "dest": S.HELD},
    {"trigger": "resume", "source": S.HELD, "dest": S.RUNNING},
    {"trigger": "stop", "source": [S.RUNNING, S.HELD], "dest": S.STOPPING},
    {"trigger": "abort", "source": _ACTIVE, "dest": S.ABORTING},
    {"trigger": "finish", "source": S.RUNNING, "dest": S.COMPLETED},
    {"trigger": "cooled", "source": [S.STOPPING, S.ABORTING], "dest": S.ABORTED},
    {"trigger": "fault", "source": [S.IDLE, *_ACTIVE], "dest": S.FAULTED},
]

# The instrument's fallback rate as a fraction of the station's maximum cooling rate (its
# PID tracks its own ramp ~10 % fast for a few minutes after a handover).
FALLBACK_RATE_FRACTION = 0.9


def fallback_rate_c_per_min(station: Station) -> float:
    """The instrument's own rate limit: what it cools at if the PC goes silent."""
    return FALLBACK_RATE_FRACTION * station.envelope.max_cooling_rate_c_per_min
# Holds for these causes lift themselves after the condition has been clear this long.
AUTO_RESUME_CAUSES = ("flow_lost", "o2_high", "comms_stale")
AUTO_RESUME_SETTLE_S = 60.0
# A gas step is done once every flow is within this fraction of full scale of its setpoint.
_FLOW_TOLERANCE_FRACTION = 0.05
# Purge time counts only while the flow is at least this fraction of its setpoint.
_PURGE_FLOW_FRACTION = 0.9
# Flows must settle within this time, else the run holds.
_GAS_SETTLE_TIMEOUT_S = 120.0
# Default inert flow during a cool-down after abort or stop, if none is flowing.
SAFE_INERT_FLOW_SCCM = 200.0


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Something the audit log must record, queued by the runner for the scan cycle."""

    event: str
    fields: dict[str, Any]


@dataclass(slots=True)
class _StepState:
    started_t_s: float
    counted_s: float = 0.0  # dwell/purge time that counted
    holdback_s: float = 0.0  # dwell time out of band
    quiet_s: float = 0.0  # dwell time with |DTG| below the endpoint threshold
    confirmed: bool = False


@dataclass(slots=True)
class _Progress:
    stage_started_t_s: dict[str, float] = field(default_factory=dict)
    stage_ended_t_s: dict[str, float] = field(default_factory=dict)
    holdback_s: float = 0.0


class RecipeRunner:
    """Runs a compiled ``Plan``. Triggers (``hold``, ``resume``, ``stop``, ``abort``...) are
    bound by the machine; call them through ``command()`` so an illegal one becomes a
    ``RunStateError`` rather than a ``MachineError``.
    """

    state: RunState

    def __init__(self, plan: Plan, station: Station, *, auto_confirm: bool,
                 max_hold_s: float = 3600.0,
                 on_tube_opened: Callable[[], None] | None = None) -> None:
        self.plan = plan
        self.station = station
        self.auto_confirm = auto_confirm
        # What the (simulated) operator does with the open tube; real stations: nothing.
        self.on_tube_opened = on_tube_opened
        self.max_hold_s = max_hold_s
        self.events: list[AuditEvent] = []
        self.setpoint_c = station.envelope.ambient_c
        self.flows_sccm: dict[str, float] = {m.gas: 0.0 for m in station.mfc}
        self.rate_limit_c_per_min = fallback_rate_c_per_min(station)
        self.purged: set[str] = set()
        self.step_index = 0
        self.end_reason = ""
        self.progress = _Progress()
        self._step = _StepState(started_t_s=0.0)
        self._last_t_s: float | None = None
        self._held_since_t_s = 0.0
        self._now_t_s = 0.0
        self._oxidising = {m.gas for m in station.mfc if m.oxidising}
        self.ramp_paused = False  # the exotherm guard is holding the ramp back
        self.halt_heater = False  # a halt wants the heater off now (manual 0 %)
        self.needs_reconfigure = False  # the instrument was changed under us: re-apply
        self.failed_gases: set[str] = set()  # inert gases whose flow was lost
        self.hold_cause = ""  # the interlock that held the run, if one did
        self._hold_clear_since_t_s: float | None = None
        self._notes: set[str] = set()  # NOTE verdicts currently active (edge audit)
        self._machine = Machine(model=self, states=RunState, transitions=TRANSITIONS,
                                initial=S.IDLE, auto_transitions=False, queued=True,
                                model_override=True, send_event=True,
                                after_state_change="_on_state_change")

    # Triggers, bound by the machine (declared here so type checkers see them).
    def start(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def preflight_ok(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def hold(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def resume(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def stop(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def abort(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def finish(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def cooled(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704
    def fault(self, **kw: Any) -> bool: raise NotImplementedError  # noqa: E704

    # ----------------------------------------------------------------- public surface
    @property
    def is_final(self) -> bool:
        """True once the batch has ended (completed, aborted or faulted)."""
        return self.state in FINAL

    @property
    def current_step(self) -> Step | None:
        """The step being executed, or None before start and after the end."""
        if self.state in (S.RUNNING, S.HELD) and self.step_index < len(self.plan.steps):
            return self.plan.steps[self.step_index]
        return None

    @property
    def stage_name(self) -> str:
        """The current stage, or the state name outside the recipe's steps."""
        step = self.current_step
        return step.stage if step is not None else str(self.state)

    @property
    def context(self) -> Context:
        """What the interlocks need from the runner."""
        flowing = {g for g, f in self.flows_sccm.items() if f > 0}
        inert_only = bool(flowing) and not (flowing & self._oxidising)
        step = self.current_step
        guard = (self.plan.stage(step.stage).guard
                 if step is not None and flowing & self._oxidising else None)
        return Context(setpoint_c=self.setpoint_c,
                       inert_unpurged=inert_only and not (flowing & self.purged),
                       guard=guard, ramp_paused=self.ramp_paused,
                       active=self.state in (S.RUNNING, S.HELD, S.STOPPING, S.ABORTING),
                       inert_purged=inert_only and bool(flowing & self.purged),
                       flows_sccm=tuple(self.flows_sccm.items()),
                       heating=isinstance(step, Ramp) and step.to_c > self.setpoint_c)

    def command(self, trigger: str, *, reason: str, operator: str = "") -> None:
        """Fire ``trigger`` with a reason. Raises ``RunStateError`` if not allowed now."""
        try:
            getattr(self, trigger)(reason=reason, operator=operator)
        except (MachineError, AttributeError) as exc:
            raise RunStateError(f"cannot {trigger} while {self.state}") from exc

    def begin(self, t_s: float, furnace_c: float) -> None:
        """Enter preflight at ``t_s``, starting the setpoint at the furnace temperature."""
        self._now_t_s = t_s
        self.setpoint_c = furnace_c
        self.command("start", reason="batch started")

    def preflight_done(self, t_s: float) -> None:
        """Preflight succeeded: start the first step."""
        self._now_t_s = t_s
        self.command("preflight_ok", reason="instruments configured and read back")
        self._enter_step(t_s)

    def resume_from(self, t_s: float, *, step_index: int, setpoint_c: float,
                    flows_sccm: dict[str, float], purged: frozenset[str], counted_s: float,
                    holdback_s: float, stage_started_t_s: dict[str, float], policy: str,
                    reason: str) -> None:
        """Preflight done after an outage: carry on at ``step_index`` with the recovered
        state, then apply ``policy`` ("continue", "ramp back", "hold ...", "abort ...")."""
        self._now_t_s = t_s
        self.step_index = step_index
        self.setpoint_c = setpoint_c
        self.flows_sccm = {g: flows_sccm.get(g, 0.0) for g in self.flows_sccm}
        self.purged = set(purged)
        self.progress.stage_started_t_s.update(stage_started_t_s)
        self.command("preflight_ok", reason=f"resumed after an outage: {reason}")
        if step_index >= len(self.plan.steps):
            self.command("finish", reason="recipe completed")
            return
        step = self.plan.steps[step_index]
        self._enter_step(t_s)
        self._step.counted_s, self._step.holdback_s = counted_s, holdback_s
        self._audit("step_resumed", index=step_index, stage=step.stage, kind=step.kind,
                    label=step.label, counted_s=counted_s, setpoint_c=setpoint_c,
                    policy=policy)
        if policy.startswith("hold"):
            self.hold_cause = "resume"
            self.command("hold", reason=f"resume: {reason}")
        elif policy.startswith("abort"):
            self.command("abort", reason=f"resume: {reason}")

    def commands(self) -> Commands:
        """The desired state of the outputs, as data."""
        return Commands(self.setpoint_c, MappingProxyType(dict(self.flows_sccm)),
                        self.rate_limit_c_per_min)

    # -------------------------------------------------------------------- the cycle
    def step(self, snap: Snapshot, verdicts: list[Verdict]) -> Commands:
        """Advance by one scan cycle on ``snap``, acting on interlock ``verdicts`` first."""
        dt_s = 0.0 if self._last_t_s is None else max(snap.t_s - self._last_t_s, 0.0)
        self._last_t_s = snap.t_s
        self._now_t_s = snap.t_s
        self._act_on(verdicts, snap)
        if self.state is S.RUNNING:
            self._run_step(snap, dt_s)
        elif self.state is S.HELD and snap.t_s - self._held_since_t_s > self.max_hold_s:
            self.command("abort", reason=f"held for more than {self.max_hold_s / 60:.0f} min "
                         "with nobody resuming")
        if self.state in (S.STOPPING, S.ABORTING):
            self._cool_down(snap, dt_s)
        return self.commands()

    def _act_on(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        self._notes_edge(verdicts, snap)
        self._pause_edge(verdicts, snap)
        self._auto_resume(verdicts, snap)
        for v in verdicts:
            fields = {"interlock": v.interlock, "severity": v.severity.name.lower(),
                      "measured": v.measured, "limit": v.limit,
                      "justification": v.justification}
            if v.gas:
                fields["gas"] = v.gas
            if v.severity is Severity.HALT and self.state not in FINAL:
                # Heater off, unless the controller itself is out of reach: then its own
                # remote-setpoint timeout takes it to the local setpoint at the rate limit.
                self.halt_heater = v.interlock != "comms_loss"
                self._audit("interlock_trip", action="halt: heater off, inert gas on"
                            if self.halt_heater else "halt: instrument fallback, inert gas on",
                            **fields)
                self.command("fault", reason=f"{v.interlock}: {v.justification}")
                return
            if v.severity is Severity.ABORT and self.state in (S.PREFLIGHT, S.RUNNING, S.HELD,
                                                               S.STOPPING):
                if v.gas:
                    self.failed_gases.add(v.gas)
                self._audit("interlock_trip", action="abort: controlled cool-down under "
                            "inert gas", **fields)
                self.command("abort", reason=f"{v.interlock}: {v.justification}")
                return
            if v.severity is Severity.ABORT and self.state is S.ABORTING and v.gas and \
                    v.gas not in self.failed_gases:
                # the cool-down gas failed too: switch to another inert gas
                self.failed_gases.add(v.gas)
                self._audit("interlock_trip", action="switch inert gas", **fields)
                self._make_safe_atmosphere()
            if v.severity is Severity.HOLD and self.state is S.RUNNING:
                self._audit("interlock_trip", action="hold, heat cut" if v.cut_heat
                            else "hold", **fields)
                self.hold_cause = v.interlock
                self._hold_clear_since_t_s = None
                if v.interlock in ("front_panel_manual", "remote_setpoint_lost"):
                    self.needs_reconfigure = True
                self.command("hold", reason=f"{v.interlock}: {v.justification}")
                self.setpoint_c = (self.station.envelope.ambient_c if v.cut_heat
                                   else min(self.setpoint_c, snap.furnace_c))
                return

    def _notes_edge(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        """NOTE verdicts change nothing; their onset and their end are audited once."""
        now = {v.interlock: v for v in verdicts if v.severity is Severity.NOTE}
        for name in now.keys() - self._notes:
            v = now[name]
            self._audit("alarm", alarm=name, measured=v.measured, limit=v.limit,
                        action="recorded; the batch goes on", justification=v.justification)
        for name in self._notes - now.keys():
            self._audit("alarm_cleared", alarm=name)
        self._notes = set(now)

    def _pause_edge(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        pause = next((v for v in verdicts if v.severity is Severity.PAUSE), None)
        stronger = any(v.severity > Severity.PAUSE for v in verdicts)
        if (pause is not None) == self.ramp_paused or self.state is not S.RUNNING or stronger:
            return
        self.ramp_paused = pause is not None
        if pause is not None:
            self._audit("interlock_trip", interlock=pause.interlock, severity="pause",
                        action="ramp stopped", measured=pause.measured, limit=pause.limit,
                        justification=pause.justification)
        else:
            self._audit("interlock_cleared", interlock="exotherm_guard",
                        action="ramp continues", delta_t_c=snap.delta_t_c)

    def _auto_resume(self, verdicts: list[Verdict], snap: Snapshot) -> None:
        """A hold for a lost flow or for oxygen in the tube lifts itself once the condition
        has been clear for ``AUTO_RESUME_SETTLE_S``; every other hold waits for a person."""
        if self.state is not S.HELD or not self.hold_cause.startswith(AUTO_RESUME_CAUSES):
            return
        if any(v.interlock == self.hold_cause for v in verdicts) or \
                snap.health.flow_short_s:
            self._hold_clear_since_t_s = None
            return
        if self._hold_clear_since_t_s is None:
            self._hold_clear_since_t_s = snap.t_s
        elif snap.t_s - self._hold_clear_since_t_s >= AUTO_RESUME_SETTLE_S:
            cause, self.hold_cause = self.hold_cause, ""
            self.command("resume", reason=f"{cause} clear for {AUTO_RESUME_SETTLE_S:.0f} s",
                         operator="interlock")

    def _run_step(self, snap: Snapshot, dt_s: float) -> None:
        step = self.plan.steps[self.step_index]
        done = False
        match step:
            case Ramp():
                done = not self.ramp_paused and self._ramp_toward(
                    step.to_c, step.rate_c_per_min, dt_s)
            case Dwell():
                done = self._dwell(step, snap, dt_s)
            case SetGas():
                done = self._gas(step.flow_map, snap)
            case Purge():
                done = self._purge(step, snap, dt_s)
            case Cool():
                self._ramp_toward(self.station.envelope.ambient_c, step.rate_c_per_min, dt_s)
                done = snap.furnace_c <= step.to_c
            case OperatorStep():
                done = self._operator(step, snap)
            case End():
                self._ramp_toward(self.station.envelope.ambient_c,
                                  self.station.envelope.max_cooling_rate_c_per_min, dt_s)
                done = True
        if done:
            self._leave_step(snap)

    # ------------------------------------------------------------------ step kinds
    def _ramp_toward(self, to_c: float, rate_c_per_min: float, dt_s: float) -> bool:
        """Move the setpoint toward ``to_c`` by at most rate * dt. True once there."""
        max_step_c = rate_c_per_min * dt_s / 60.0
        delta_c = to_c - self.setpoint_c
        if abs(delta_c) <= max_step_c:
            self.setpoint_c = to_c
            return True
        self.setpoint_c += max_step_c if delta_c > 0 else -max_step_c
        return False

    def _dwell(self, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
        self.setpoint_c = step.at_c
        if abs(snap.furnace_c - step.at_c) <= step.band_c:
            self._step.counted_s += dt_s
        else:
            self._step.holdback_s += dt_s
            self.progress.holdback_s += dt_s
            if self._step.holdback_s > step.max_holdback_s:
                self._audit("alarm", alarm="holdback_exceeded", measured=snap.furnace_c,
                            limit=step.band_c, holdback_s=self._step.holdback_s,
                            max_holdback_s=step.max_holdback_s)
                self.command("hold", reason="furnace out of the holdback band for longer "
                             f"than {step.max_holdback_s / 60:.0f} min")
                self._step.holdback_s = 0.0
                return False
        if step.endpoint is not None:
            return self._endpoint(step, snap, dt_s)
        return self._step.counted_s >= step.duration_s

    def _endpoint(self, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
        """A cross-linking endpoint: |DTG| below the threshold for long enough, after the
        minimum dwell; the dwell's duration is the maximum."""
        ep = step.endpoint
        if ep is None:
            return False
        counted_s = self._step.counted_s
        dtg = snap.dtg_pct_per_min
        if counted_s >= ep.min_s and dtg is not None and \
                abs(dtg) < ep.dtg_below_pct_per_min:
            self._step.quiet_s += dt_s
        else:
            self._step.quiet_s = 0.0
        if self._step.quiet_s >= ep.for_s:
            self._audit("endpoint_reached", dtg_pct_per_min=dtg,
                        limit=ep.dtg_below_pct_per_min, counted_s=counted_s)
            return True
        if counted_s >= step.duration_s:
            self._audit("alarm", alarm="endpoint_not_reached", dtg_pct_per_min=dtg,
                        limit=ep.dtg_below_pct_per_min, counted_s=counted_s,
                        action="dwell ended at its maximum duration")
            return True
        return False

    def _set_flows(self, flows: dict[str, float]) -> None:
        new = {gas: flows.get(gas, 0.0) for gas in self.flows_sccm}
        if new != self.flows_sccm:
            self._audit("gas_change", old=dict(self.flows_sccm), new=new)
            self.flows_sccm = new
            if any(new[g] > 0 for g in self._oxidising):
                self.purged.clear()  # air in the tube again

    def _flows_reached(self, snap: Snapshot) -> bool:
        for mfc in self.station.mfc:
            tolerance = _FLOW_TOLERANCE_FRACTION * mfc.full_scale_sccm
            if not abs(snap.flow_sccm(mfc.gas) - self.flows_sccm[mfc.gas]) <= tolerance:
                return False
        return True

    def _gas(self, flows: dict[str, float], snap: Snapshot) -> bool:
        self._set_flows(flows)
        if self._flows_reached(snap):
            return True
        if snap.t_s - self._step.started_t_s > _GAS_SETTLE_TIMEOUT_S:
            self._audit("alarm", alarm="flow_not_reached", wanted=dict(self.flows_sccm),
                        measured={g: snap.flow_sccm(g) for g in self.flows_sccm})
            self.command("hold", reason="gas flows did not reach their setpoints")
            self._step.started_t_s = snap.t_s
        return False

    def _purge(self, step: Purge, snap: Snapshot, dt_s: float) -> bool:
        self._set_flows({step.gas: step.flow_sccm})
        if snap.flow_sccm(step.gas) >= _PURGE_FLOW_FRACTION * step.flow_sccm:
            self._step.counted_s += dt_s
        if self._step.counted_s < step.duration_s:
            return False
        if step.o2_max_ppm is not None:
            o2 = snap.o2_ppm
            if o2 is None or o2 > step.o2_max_ppm:
                waited_s = self._step.counted_s - step.duration_s
                if step.timeout_s and waited_s > step.timeout_s:
                    self._audit("alarm", alarm="purge_o2_not_reached", measured=o2,
                                limit=step.o2_max_ppm)
                    self.command("hold", reason="O2 did not fall below the purge limit")
                return False
        self.purged.add(step.gas)
        self._audit("purge_complete", gas=step.gas, volumes=step.volumes,
                    counted_s=self._step.counted_s, o2_ppm=snap.o2_ppm)
        return True

    def _operator(self, step: OperatorStep, snap: Snapshot) -> bool:
        if step.max_c is not None and not snap.furnace_c <= step.max_c:
            self._ramp_toward(self.station.envelope.ambient_c,
                              self.station.envelope.max_cooling_rate_c_per_min, 0.0)
            return False  # wait: the tube may not be opened yet
        if not self._step.confirmed:
            if not self.auto_confirm:
                return False
            self._step.confirmed = True
            self._audit("operator_confirmed", message=step.message, operator="simulator",
                        how="confirmed automatically (simulated station)",
                        furnace_c=snap.furnace_c)
        if step.opens_tube:
            self.purged.clear()
            if self.on_tube_opened is not None:
                self.on_tube_opened()
        return True

    def confirm(self, operator: str) -> None:
        """An operator confirms the current operator step."""
        step = self.current_step
        if not isinstance(step, OperatorStep):
            raise RunStateError("there is no operator step waiting for confirmation")
        self._step.confirmed = True
        self._audit("operator_confirmed", message=step.message, operator=operator,
                    how="confirmed by operator")

    # ---------------------------------------------------------------- stop / abort
    def _make_safe_atmosphere(self) -> None:
        """Oxidising gases off; an inert gas on: the one flowing, else the first, passing
        over any whose flow was lost."""
        inert = [m for m in self.station.mfc if not m.oxidising]
        healthy = [m for m in inert if m.gas not in self.failed_gases] or inert
        flowing = [m for m in healthy if self.flows_sccm[m.gas] > 0]
        mfc = flowing[0] if flowing else healthy[0]
        flow = max(self.flows_sccm[mfc.gas], min(SAFE_INERT_FLOW_SCCM, mfc.full_scale_sccm))
        self._set_flows({mfc.gas: flow})

    def _cool_down(self, snap: Snapshot, dt_s: float) -> None:
        env = self.station.envelope
        self.rate_limit_c_per_min = fallback_rate_c_per_min(self.station)
        self._ramp_toward(env.ambient_c, env.max_cooling_rate_c_per_min, dt_s)
        if snap.furnace_c <= env.open_tube_max_c:
            self.command("cooled", reason=f"furnace below {env.open_tube_max_c:g} °C")

    # ------------------------------------------------------------------ bookkeeping
    def _enter_step(self, t_s: float) -> None:
        step = self.plan.steps[self.step_index]
        self._step = _StepState(started_t_s=t_s)
        # The instrument's own rate limit is what it falls back at if the PC goes silent, so
        # it stays below the cooling limit except while a faster heating ramp needs more.
        cooling = fallback_rate_c_per_min(self.station)
        self.rate_limit_c_per_min = (max(cooling, step.rate_c_per_min)
                                     if isinstance(step, Ramp) else cooling)
        self.progress.stage_started_t_s.setdefault(step.stage, t_s)
        self._audit("step_started", index=self.step_index, stage=step.stage, kind=step.kind,
                    label=step.label, setpoint_c=self.setpoint_c)

    def _leave_step(self, snap: Snapshot) -> None:
        step = self.plan.steps[self.step_index]
        self._audit("step_completed", index=self.step_index, stage=step.stage,
                    kind=step.kind, duration_s=snap.t_s - self._step.started_t_s,
                    counted_s=self._step.counted_s, furnace_c=snap.furnace_c)
        self.progress.stage_ended_t_s[step.stage] = snap.t_s
        self.step_index += 1
        if self.step_index >= len(self.plan.steps) or isinstance(step, End):
            self.command("finish", reason="recipe completed")
            return
        self._enter_step(snap.t_s)

    def _audit(self, event: str, **fields: Any) -> None:
        self.events.append(AuditEvent(event, fields))

    def _on_state_change(self, event: EventData) -> None:
        if event.transition is None:  # only internal transitions lack one; we declare none
            return
        old, new = RunState[event.transition.source], self.state  # source is the name
        reason = event.kwargs.get("reason", "")
        operator = event.kwargs.get("operator", "")
        if new is S.HELD:
            self._held_since_t_s = self._now_t_s
        if new in FINAL or new in (S.STOPPING, S.ABORTING):
            self.end_reason = self.end_reason or reason
        if new in (S.STOPPING, S.ABORTING, S.FAULTED):
            self._make_safe_atmosphere()
        logger.info("state %s -> %s (%s)", old, new, reason,
                    extra={"trigger": event.event.name, "reason": reason})
        fields: dict[str, Any] = {"old": str(old), "new": str(new),
                                  "trigger": event.event.name, "reason": reason}
        if operator:
            fields["operator"] = operator
        self._audit("state_change", **fields)
