"""Rung 1: ``Runner.step`` as a pure function of (state, snapshot, verdicts), every step
kind and every verdict severity; the checkpoint format round-trips and refuses other
schema versions."""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType

import pytest

from controller.errors import RunStateError
from controller.recipe.station import Station
from controller.recipe.steps import (
    Cool,
    Dwell,
    End,
    OperatorStep,
    Plan,
    Purge,
    Ramp,
    SetGas,
    Stage,
    Step,
)
from controller.run.interlocks import Severity, Verdict
from controller.run.runner import Runner
from controller.run.runstate import (
    SCHEMA_VERSION,
    CheckpointError,
    Phase,
    RunState,
    StepProgress,
    from_record,
    to_record,
)
from controller.run.snapshot import Snapshot
from drivers.roles import ControllerReading, FlowReading


def snap(t_s: float, furnace_c: float, flows: dict[str, float] | None = None,
         o2_ppm: float | None = None) -> Snapshot:
    reading = ControllerReading(furnace_c, furnace_c, 10.0, False, False, False, False, False)
    flows = flows or {}
    return Snapshot(t_s, reading, MappingProxyType(
        {g: FlowReading(flows.get(g, 0.0), flows.get(g, 0.0), False)
         for g in ("Ar", "air", "N2")}), o2_ppm)


def running(station: Station, *steps: Step, auto_confirm: bool = True
            ) -> tuple[Runner, RunState]:
    plan = Plan("t", "T", (Stage("s", "Ar"),), (*steps, End(stage="s", label="e")))
    runner = Runner(plan, station, auto_confirm=auto_confirm, max_hold_s=600)
    state, _ = runner.begin(runner.initial(), 0.0, 25.0)
    state, _ = runner.preflight_done(state, 0.0)
    return runner, state


STEPS: list[Step] = [
    Ramp(stage="s", label="r", to_c=100.0, rate_c_per_min=10.0),
    Dwell(stage="s", label="d", at_c=25.0, duration_s=120.0, band_c=5.0, max_holdback_s=60),
    SetGas(stage="s", label="g", flows_sccm=(("Ar", 200.0),)),
    Purge(stage="s", label="p", gas="Ar", flow_sccm=500.0, volumes=3, duration_s=90.0),
    OperatorStep(stage="s", label="o", message="load", opens_tube=True, max_c=50.0),
    Cool(stage="s", label="c", to_c=30.0, rate_c_per_min=5.0),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.kind)
def test_step_is_a_pure_function_of_its_inputs(station: Station, step: Step) -> None:
    runner, state = running(station, step)
    flows = {"Ar": 500.0 if step.kind == "purge" else 200.0} if step.kind in ("purge", "gas") \
        else {}
    for t_s in (0.0, 30.0, 60.0, 90.0, 120.0, 150.0):
        s = snap(t_s, 25.0 + t_s / 10, flows)
        before = state
        first = runner.step(state, s, [])
        second = runner.step(state, s, [])
        assert first == second  # same state and snapshot: the same state and output
        assert state == before  # the input is a value: untouched
        other = Runner(runner.plan, station, auto_confirm=True, max_hold_s=600)
        assert other.step(state, s, []) == first  # no hidden state in the runner either
        state = first[0]
    assert state.step_index >= 1 or state.progress.counted_s > 0 or step.kind == "ramp"


def test_every_step_kind_completes_and_checkpoints_at_its_boundary(station: Station) -> None:
    runner, state = running(station, *STEPS)
    boundaries = 0
    t_s = 0.0
    while state.phase is Phase.RUNNING and t_s < 20_000:
        t_s += 10.0
        furnace_c = min(max(state.setpoint_c, 25.0), 100.0)
        state, out = runner.step(state, snap(t_s, furnace_c, dict(state.flows_sccm)), [])
        boundaries += out.boundary
    assert state.phase is Phase.COMPLETED
    assert boundaries == len(STEPS) + 1  # every step left, the end reached
    assert state.stage_ended_t_s["s"] > 0


def _verdict(severity: Severity, **policy: object) -> Verdict:
    return Verdict("test_lock", severity, 1.0, 0.0, "test", **policy)  # type: ignore[arg-type]


def test_note_is_recorded_once_and_changes_nothing(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    state, out = runner.step(state, snap(0.0, 25.0), [_verdict(Severity.NOTE)])
    state, again = runner.step(state, snap(2.0, 25.0), [_verdict(Severity.NOTE)])
    assert [e.event for e in out.events] == ["alarm"]
    assert again.events == ()
    assert state.phase is Phase.RUNNING
    state, cleared = runner.step(state, snap(4.0, 25.0), [])
    assert [e.event for e in cleared.events] == ["alarm_cleared"]


def test_pause_stops_the_ramp_and_lets_it_go_on(station: Station) -> None:
    runner, state = running(station, STEPS[0])
    state, _ = runner.step(state, snap(0.0, 25.0), [])
    state, _ = runner.step(state, snap(60.0, 25.0), [_verdict(Severity.PAUSE)])
    held_at = state.setpoint_c
    state, _ = runner.step(state, snap(120.0, 25.0), [_verdict(Severity.PAUSE)])
    assert state.ramp_paused
    assert state.setpoint_c == held_at
    state, _ = runner.step(state, snap(180.0, 25.0), [])
    assert not state.ramp_paused


def test_hold_with_auto_resume_lifts_itself_after_the_settle_time(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    state, _ = runner.step(state, snap(0.0, 25.0), [_verdict(Severity.HOLD,
                                                             auto_resume_after_s=60.0)])
    assert state.phase is Phase.HELD
    assert state.hold_auto_resume_s == 60.0
    state, _ = runner.step(state, snap(10.0, 25.0), [])
    state, _ = runner.step(state, snap(60.0, 25.0), [])
    assert state.phase is Phase.HELD  # 50 s clear: not yet
    state, _ = runner.step(state, snap(71.0, 25.0), [])
    assert state.phase is Phase.RUNNING


def test_hold_without_auto_resume_waits_for_a_person(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    state, _ = runner.step(state, snap(0.0, 25.0), [_verdict(Severity.HOLD,
                                                             reconfigure_on_resume=True)])
    for t_s in (100.0, 200.0, 300.0):
        state, _ = runner.step(state, snap(t_s, 25.0), [])
    assert state.phase is Phase.HELD
    assert state.needs_reconfigure
    state, _ = runner.fire(state, "resume", 310.0, reason="test", operator="ann")
    assert state.phase is Phase.RUNNING
    assert not runner.reconfigured(state).needs_reconfigure


def test_abort_cools_under_inert_gas(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    state, out = runner.step(state, snap(0.0, 200.0), [_verdict(Severity.ABORT)])
    assert state.phase is Phase.ABORTING
    assert not out.heater_off
    assert state.flows_sccm["air"] == 0
    assert state.flows_sccm["Ar"] > 0


@pytest.mark.parametrize("fallback", [False, True])
def test_halt_turns_the_heater_off_unless_the_verdict_leaves_it_to_the_instrument(
        station: Station, fallback: bool) -> None:
    runner, state = running(station, STEPS[1])
    state, out = runner.step(state, snap(0.0, 25.0), [_verdict(Severity.HALT,
                                                             instrument_fallback=fallback)])
    assert state.phase is Phase.FAULTED
    assert out.heater_off is (not fallback)
    assert state.heater_off is (not fallback)


def test_a_halt_leaves_the_heat_to_the_instrument_and_names_its_reason(
        station: Station) -> None:
    """SIGTERM/SIGHUP/SIGBREAK: faulted, the heater not forced off (the PC is going away and
    a forced 0 % would need it back), inert gas on, the reason as the end reason."""
    runner, state = running(station, STEPS[0])
    state, _ = runner.step(state, snap(0.0, 25.0), [])
    state, out = runner.halt(state, 2.0, reason="SIGTERM: told to end", operator="system")
    assert state.phase is Phase.FAULTED
    assert not out.heater_off
    assert not state.heater_off
    assert state.end_reason == "SIGTERM: told to end"
    assert state.flows_sccm["air"] == 0
    assert state.flows_sccm["Ar"] > 0
    assert [e.event for e in out.events] == ["halt", "gas_change", "state_change"]
    assert out.events[0].fields["action"] == "halt: instrument fallback, inert gas on"
    assert out.events[-1].fields == {"old": "running", "new": "faulted", "trigger": "fault",
                                    "reason": "SIGTERM: told to end", "operator": "system"}
    with pytest.raises(RunStateError, match="cannot halt while faulted"):
        runner.halt(state, 4.0, reason="SIGHUP", operator="system")


def test_a_halt_during_an_abort_keeps_the_abort_reason_first(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    state, _ = runner.step(state, snap(0.0, 500.0), [_verdict(Severity.ABORT)])
    assert state.phase is Phase.ABORTING
    state, _ = runner.halt(state, 2.0, reason="SIGHUP: session closed", operator="system")
    assert state.phase is Phase.FAULTED
    assert state.end_reason == "test_lock: test; then SIGHUP: session closed"


def test_checkpoint_round_trips_through_json(station: Station) -> None:
    runner, state = running(station, *STEPS)
    for t_s in range(0, 400, 10):
        state, _ = runner.step(state, snap(float(t_s), 60.0, {"Ar": 500.0}),
                               [_verdict(Severity.NOTE)])
    state = replace(state, inserted=(Ramp(stage="s", label="back", to_c=80.0,
                                          rate_c_per_min=5.0),),
                    suspended=StepProgress(5.0, counted_s=42.0), hold_clear_since_t_s=None)
    record = json.loads(json.dumps(to_record(state)))
    assert record["schema_version"] == SCHEMA_VERSION
    assert from_record(record, runner.plan) == state


def test_checkpoint_of_another_schema_version_is_refused(station: Station) -> None:
    runner, state = running(station, STEPS[1])
    record = to_record(state)
    record["schema_version"] = SCHEMA_VERSION - 1
    with pytest.raises(CheckpointError, match="schema_version"):
        from_record(record, runner.plan)
    record = to_record(state)
    record["step_index"] = 99
    with pytest.raises(CheckpointError, match="step_index"):
        from_record(record, runner.plan)
    del record["setpoint_c"]
    with pytest.raises(CheckpointError, match="setpoint_c"):
        from_record(record, runner.plan)


def test_a_gas_step_s_settle_timeout_counts_only_running_time(station: Station) -> None:
    """Time held (for O2, say) is not the flows' fault: resuming does not trip
    ``flow_not_reached`` in the same cycle (issue 9 item 12)."""
    runner, state = running(station, STEPS[2])
    for t_s in (0.0, 50.0, 100.0):  # 100 s of running without the flow
        state, _ = runner.step(state, snap(t_s, 25.0), [])
    state, _ = runner.fire(state, "hold", 100.0, reason="o2_high", operator="interlock")
    for t_s in (200.0, 300.0, 400.0):
        state, _ = runner.step(state, snap(t_s, 25.0), [])
    state, _ = runner.fire(state, "resume", 400.0, reason="clear", operator="interlock")
    state, out = runner.step(state, snap(410.0, 25.0), [])
    assert state.phase is Phase.RUNNING  # 100 + 10 s waited: not yet
    assert not [e for e in out.events if e.fields.get("alarm") == "flow_not_reached"]
    state, out = runner.step(state, snap(430.0, 25.0), [])
    assert state.phase is Phase.HELD  # 100 + 30 s waited: now the flows are late
    assert [e for e in out.events if e.fields.get("alarm") == "flow_not_reached"]
