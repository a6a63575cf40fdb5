"""The recipe runner: ``Runner.step(state, snapshot, verdicts) -> (state, CycleOutput)``.

A pure function of its inputs: the same state and snapshot give the same output. It does
no I/O and never waits; the commands, the audit events and the requests to the scan cycle
(heater off, reconfigure, tube opened) come back as data. ``transitions`` checks each phase
change against the literal table in ``runstate``. Not here: the work of one call (``cycle``
and ``step_kinds``), reading or writing devices, records, or holding the state between
cycles (``handle.RecipeRunner`` does that).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from transitions import EventData, Machine

from controller.errors import RunStateError
from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import OperatorStep, Plan, Ramp, Step
from controller.run.cycle import SAFE_INERT_FLOW_SCCM, AuditEvent, Cycle, CycleOutput
from controller.run.interlocks import Context, Verdict
from controller.run.runstate import (
    FINAL,
    TRANSITIONS,
    Phase,
    RunState,
    current_step,
    initial_state,
)
from controller.run.snapshot import Commands, Snapshot
from controller.run.step_data import Readings, checked_data, confirmation

__all__ = ["SAFE_INERT_FLOW_SCCM", "AuditEvent", "CycleOutput", "Runner"]

logging.getLogger("transitions").setLevel(logging.ERROR)  # model_override skip notices

P = Phase


class _Transit:
    """The ``transitions`` model: carries one phase change of one ``Cycle`` at a time.
    The triggers are declared so that ``model_override`` binds them (and type checkers
    see them)."""

    state: Phase
    cycle: Cycle

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
        # The simulated operator's hands (``step_data.Readings``), where the simulator runs
        # in this process; None: fill step data from the recipe's nominal material.
        self.readings: Readings | None = None
        self.max_hold_s = (station.hold.timeout_min * 60.0 if max_hold_s is None
                           else max_hold_s)
        self.oxidising = frozenset(m.gas for m in station.mfc if m.oxidising)
        self._context: Context | None = None
        self._context_key: tuple[object, ...] = ()
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
        """What the interlocks need from the runner (the last one again while what it is
        made of has not changed: most cycles of a dwell)."""
        key = (state.phase, state.step_index, state.inserted, state.setpoint_c,
               state.flows_sccm, state.purged, state.ramp_paused)
        if key != self._context_key or self._context is None:
            self._context = self._make_context(state)
            self._context_key = key
        return self._context

    def _make_context(self, state: RunState) -> Context:
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
        c = Cycle(self, state, snap.t_s)
        c.step(snap, verdicts)
        return c.finish()

    def fire(self, state: RunState, trigger: str, t_s: float, *, reason: str,
             operator: str = "") -> tuple[RunState, CycleOutput]:
        """Fire ``trigger`` at ``t_s``. Raises ``RunStateError`` if it is not allowed now."""
        c = Cycle(self, state, t_s)
        c.fire(trigger, reason=reason, operator=operator)
        return c.finish()

    def begin(self, state: RunState, t_s: float, furnace_c: float
              ) -> tuple[RunState, CycleOutput]:
        """Enter preflight at ``t_s`` with the setpoint at the furnace's temperature."""
        c = Cycle(self, replace(state, setpoint_c=furnace_c), t_s)
        c.fire("start", reason="batch started")
        return c.finish()

    def preflight_done(self, state: RunState, t_s: float) -> tuple[RunState, CycleOutput]:
        """Preflight succeeded: run the first step."""
        c = Cycle(self, state, t_s)
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
        c = Cycle(self, replace(state, setpoint_c=setpoint_c, hold_started_real_s=None), t_s)
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

    def confirm(self, state: RunState, t_s: float, operator: str,
                data: Mapping[str, object] | None = None) -> tuple[RunState, CycleOutput]:
        """An operator confirms the current operator step with the values its fields ask
        for (``data``, name -> value). Raises ``RunStateError`` if none is waiting or it
        is already confirmed, and ``StepDataError`` (nothing recorded, the step keeps
        waiting) if ``data`` is missing a required value, has one the step does not ask for
        or one out of bounds."""
        step = self.current_step(state)
        if not isinstance(step, OperatorStep):
            raise RunStateError("there is no operator step waiting for confirmation")
        if state.progress.confirmed:
            raise RunStateError("this operator step is already confirmed")
        values = checked_data(step, data or {})
        c = Cycle(self, state, t_s)
        c.progress = replace(c.progress, confirmed=True)
        c.audit("operator_confirmed", **confirmation(
            step, state.step_index, values, operator=operator, how="confirmed by operator",
            simulated=False, source="operator"))
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
        c = Cycle(self, state, t_s)
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
