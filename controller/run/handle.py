"""``RecipeRunner``: the one place that holds a batch's current ``RunState`` between cycles.

The scan cycle steps it, operator commands fire on it, the console and the control server
read it. Every change goes through the pure ``Runner`` and replaces the state whole; audit
events wait in an outbox until the scan cycle records them. Not here: any rule of the run
(``runner``) or any I/O (``scan``, ``devices``, ``safety``).
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.recipe.station import Station
from controller.recipe.steps import Plan, Step
from controller.run.interlocks import Context, Verdict
from controller.run.runner import AuditEvent, CycleOutput, Runner
from controller.run.runstate import FINAL, Phase, RunState, hold_waited_s
from controller.run.snapshot import Commands, Snapshot

__all__ = ["RecipeRunner"]


class RecipeRunner:
    """A ``Runner`` and the state it is at. Not thread-safe: the scan loop's task and the
    callbacks it runs (commands, console) share one event loop."""

    def __init__(self, plan: Plan, station: Station, *, auto_confirm: bool,
                 max_hold_s: float | None = None, state: RunState | None = None) -> None:
        self.rules = Runner(plan, station, auto_confirm=auto_confirm, max_hold_s=max_hold_s)
        self.run = state if state is not None else self.rules.initial()
        self.outbox: list[AuditEvent] = []  # events of commands fired between cycles
        self.now_t_s = 0.0  # process time of the latest snapshot (commands fire then)

    # ------------------------------------------------------------------ read access
    @property
    def plan(self) -> Plan:
        """The compiled plan being run."""
        return self.rules.plan

    @property
    def station(self) -> Station:
        """The station it runs on."""
        return self.rules.station

    @property
    def phase(self) -> Phase:
        """The run's phase (idle, running, held...)."""
        return self.run.phase

    @property
    def is_final(self) -> bool:
        """True once the batch has ended (completed, aborted or faulted)."""
        return self.run.phase in FINAL

    @property
    def current_step(self) -> Step | None:
        """The step being executed, or None before start and after the end."""
        return self.rules.current_step(self.run)

    @property
    def stage_name(self) -> str:
        """The current stage, or the phase's name outside the recipe's steps."""
        step = self.current_step
        return step.stage if step is not None else str(self.run.phase)

    @property
    def step_index(self) -> int:
        """Index of the current step in the plan (an inserted ramp shares its step's)."""
        return self.run.step_index

    @property
    def setpoint_c(self) -> float:
        """The setpoint the runner wants, °C."""
        return self.run.setpoint_c

    @property
    def flows_sccm(self) -> Mapping[str, float]:
        """The commanded flows, sccm, per gas."""
        return self.run.flows_sccm

    @property
    def context(self) -> Context:
        """What the interlocks need from the runner."""
        return self.rules.context(self.run)

    def hold_left_s(self, snap: Snapshot) -> float | None:
        """Seconds left before a hold nobody lifts ends the batch (the station's ``[hold]``
        policy; real seconds while a person is awaited); None unless held."""
        if self.run.phase is not Phase.HELD:
            return None
        real_s = snap.t_s if snap.real_s is None else snap.real_s
        return max(self.rules.max_hold_s - hold_waited_s(self.run, snap.t_s, real_s), 0.0)

    def commands(self) -> Commands:
        """The desired state of the outputs, as data."""
        return self.rules.commands(self.run)

    # -------------------------------------------------------------------- changing
    def _take(self, result: tuple[RunState, CycleOutput]) -> CycleOutput:
        self.run, out = result
        self.outbox.extend(out.events)
        return out

    def take_events(self) -> list[AuditEvent]:
        """The audit events not yet recorded, oldest first; the outbox is emptied."""
        events, self.outbox = self.outbox, []
        return events

    def step(self, snap: Snapshot, verdicts: list[Verdict]) -> CycleOutput:
        """One scan cycle on ``snap`` (its events also go to the outbox)."""
        self.now_t_s = snap.t_s
        return self._take(self.rules.step(self.run, snap, verdicts))

    def begin(self, t_s: float, furnace_c: float) -> CycleOutput:
        """Enter preflight at ``t_s``, the setpoint starting at the furnace temperature."""
        self.now_t_s = t_s
        return self._take(self.rules.begin(self.run, t_s, furnace_c))

    def preflight_done(self, t_s: float) -> CycleOutput:
        """Preflight succeeded: start the first step."""
        self.now_t_s = t_s
        return self._take(self.rules.preflight_done(self.run, t_s))

    def resumed(self, t_s: float, *, setpoint_c: float, trigger: str, reason: str,
                ramp_back: bool = False) -> CycleOutput:
        """Preflight done after an outage (``self.run`` is the recovered state)."""
        self.now_t_s = t_s
        return self._take(self.rules.resumed(self.run, t_s, setpoint_c=setpoint_c,
                                             trigger=trigger, reason=reason,
                                             ramp_back=ramp_back))

    def command(self, trigger: str, *, reason: str, operator: str = "") -> None:
        """Fire ``trigger`` now. Raises ``RunStateError`` if not allowed in this phase."""
        self._take(self.rules.fire(self.run, trigger, self.now_t_s, reason=reason,
                                   operator=operator))

    def halt(self, *, reason: str, operator: str = "") -> None:
        """End the batch now as faulted, the heat left to the instrument's own fallback
        (``Runner.halt``). Raises ``RunStateError`` once the batch has ended."""
        self._take(self.rules.halt(self.run, self.now_t_s, reason=reason, operator=operator))

    def confirm(self, operator: str, data: Mapping[str, object] | None = None) -> None:
        """Confirm the waiting operator step with its ``data``. Raises ``RunStateError`` if
        there is none, ``StepDataError`` if ``data`` does not fit its fields."""
        self._take(self.rules.confirm(self.run, self.now_t_s, operator, data))

    def outage(self) -> None:
        """The scan loop stalled: the time since the last cycle counts for nothing."""
        self.run = self.rules.outage(self.run)

    def reconfigured(self) -> None:
        """The instrument has our configuration again."""
        self.run = self.rules.reconfigured(self.run)
