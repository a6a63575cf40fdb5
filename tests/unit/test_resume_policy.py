"""Rung 1: every branch of the resume policy (continue, ramp back, hold, abort) with the
furnace in the state that selects it, and ramp backs that survive any number of crashes:
the plan's step neither skipped nor repeated, its counted time kept."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from controller.recipe.station import Station
from controller.recipe.steps import Cool, Dwell, End, Plan, Purge, Ramp, Stage
from controller.run.resume import Policy, Recovered, decide
from controller.run.runner import Runner
from controller.run.runstate import Phase, RunState, from_record, to_record
from controller.run.snapshot import Snapshot
from drivers.roles import ControllerReading, FlowReading

DWELL = Dwell(stage="heat", label="dwell 600", at_c=600.0, duration_s=7200.0, band_c=5.0,
              max_holdback_s=1800.0)
PLAN = Plan("t", "T", (Stage("heat", "Ar"),), (
    Purge(stage="heat", label="purge", gas="Ar", flow_sccm=1000.0, volumes=6,
          duration_s=700.0),
    Ramp(stage="heat", label="ramp", to_c=600.0, rate_c_per_min=5.0),
    DWELL,
    End(stage="heat", label="end")))


def snap(furnace_c: float | None, *, ar_sccm: float = 200.0, o2_ppm: float | None = None,
         t_s: float = 10_000.0) -> Snapshot:
    reading = (ControllerReading(furnace_c, furnace_c, 0.0, False, False, False, False, False)
               if furnace_c is not None else None)
    return Snapshot(t_s, reading, MappingProxyType(
        {"Ar": FlowReading(ar_sccm, 200.0, False), "air": FlowReading(0.0, 0.0, False),
         "N2": FlowReading(0.0, 0.0, False)}), o2_ppm)


def in_dwell(station: Station, *, counted_s: float = 3000.0, phase: Phase = Phase.RUNNING
             ) -> RunState:
    """The state a checkpoint holds 50 min into the 600 °C dwell under purged argon."""
    runner = Runner(PLAN, station, auto_confirm=True)
    state = runner.initial()
    return replace(state, phase=phase, step_index=2, setpoint_c=600.0,
                   flows_sccm=MappingProxyType({"Ar": 200.0, "air": 0.0, "N2": 0.0}),
                   purged=frozenset({"Ar"}),
                   progress=replace(state.progress, started_t_s=5000.0, counted_s=counted_s))


def recovered(station: Station, state: RunState | None, *, setpoint_c: float = 600.0
              ) -> Recovered:
    return Recovered(Path("b"), PLAN, station, "", "", state, 9000.0, None, 9500.0,
                     datetime(2026, 1, 1, tzinfo=UTC), setpoint_c, 600.0)


def test_continue_when_the_furnace_is_where_it_was(station: Station) -> None:
    d = decide(recovered(station, in_dwell(station)), snap(592.0), 60.0)
    assert d.policy is Policy.CONTINUE
    assert d.trigger == ""
    assert not d.ramp_back
    assert d.state is not None
    assert d.state.progress.counted_s == 3000.0
    assert d.state.phase is Phase.IDLE
    assert d.state.last_t_s is None


def test_ramp_back_when_it_cooled_keeps_the_dwell_s_counted_time(station: Station) -> None:
    d = decide(recovered(station, in_dwell(station)), snap(520.0), 900.0)
    assert d.policy is Policy.RAMP_BACK
    assert d.ramp_back
    assert d.state is not None
    assert d.setpoint_c == 520.0
    assert [r.to_c for r in d.state.inserted] == [600.0]
    assert d.state.step_index == 2  # the plan is untouched: no index shifts
    assert d.state.suspended is not None
    assert d.state.suspended.counted_s == 3000.0


def test_a_cool_step_goes_on_from_where_the_furnace_is(station: Station) -> None:
    """Cooling, the setpoint runs ahead of the furnace: above the setpoint is expected,
    above where the furnace was is not."""
    plan = Plan("t", "T", (Stage("heat", "Ar"),), (
        Cool(stage="heat", label="cool", to_c=100.0, rate_c_per_min=5.0),
        End(stage="heat", label="end")))
    state = replace(in_dwell(station), step_index=0, setpoint_c=25.0)
    rec = replace(recovered(station, state, setpoint_c=25.0), plan=plan, furnace_c=104.0)
    d = decide(rec, snap(94.0), 600.0)
    assert d.policy is Policy.CONTINUE
    assert d.setpoint_c == 94.0
    hotter = decide(rec, snap(150.0), 600.0)
    assert hotter.policy is Policy.HOLD
    assert "implausible" in hotter.reason


@pytest.mark.parametrize(("state_kw", "furnace_c", "outage_s", "why"), [
    ({}, 700.0, 60.0, "implausible"),
    ({}, 600.0, 5 * 3600.0, "a person decides"),
    ({"phase": Phase.HELD}, 600.0, 60.0, "stays held"),
])
def test_hold_for_the_operator(station: Station, state_kw: dict[str, Phase],
                               furnace_c: float, outage_s: float, why: str) -> None:
    d = decide(recovered(station, in_dwell(station, **state_kw)), snap(furnace_c), outage_s)
    assert d.policy is Policy.HOLD
    assert d.trigger == "hold"
    assert why in d.reason


@pytest.mark.parametrize(("state_kw", "snapshot", "trigger", "why"), [
    ({"phase": Phase.ABORTING}, snap(600.0), "abort", "aborting"),
    ({"phase": Phase.STOPPING}, snap(600.0), "stop", "stopping"),
    ({}, snap(None), "abort", "does not answer"),
    ({}, snap(600.0, ar_sccm=0.0), "abort", "without verified inert flow"),
    ({}, snap(600.0, o2_ppm=5000.0), "abort", "O2"),
])
def test_abort_when_going_on_is_unsafe(station: Station, state_kw: dict[str, Phase],
                                       snapshot: Snapshot, trigger: str, why: str) -> None:
    d = decide(recovered(station, in_dwell(station, **state_kw)), snapshot, 60.0)
    assert d.policy is Policy.ABORT
    assert d.trigger == trigger
    assert why in d.reason


def test_no_checkpoint_starts_from_the_first_step(station: Station) -> None:
    d = decide(recovered(station, None), snap(25.0), 60.0)
    assert d.policy is Policy.CONTINUE
    assert d.state is None


def _run(runner: Runner, state: RunState, t_s: float, until_s: float, furnace: float
         ) -> tuple[RunState, float, list[str]]:
    """Step every 10 s with the furnace following the setpoint (or fixed if >= 0)."""
    events: list[str] = []
    while t_s < until_s and state.phase is Phase.RUNNING:
        t_s += 10.0
        f_c = state.setpoint_c if furnace < 0 else furnace
        state, out = runner.step(state, snap(f_c, t_s=t_s), [])
        events += [f"{e.event}:{e.fields.get('index')}:{e.fields.get('inserted', False)}"
                   for e in out.events if e.event.startswith("step_")]
    return state, t_s, events


def test_three_ramp_backs_neither_skip_nor_repeat_a_step(station: Station) -> None:
    runner = Runner(PLAN, station, auto_confirm=True)
    state, t_s = in_dwell(station), 10_000.0
    completed: list[str] = []
    for crash in range(3):
        # the checkpoint goes through JSON, as it does on disk
        state = from_record(json.loads(json.dumps(to_record(state))), PLAN)
        d = decide(recovered(station, state), snap(450.0 + 20 * crash, t_s=t_s), 600.0)
        assert d.policy is Policy.RAMP_BACK
        assert d.state is not None
        state, _ = runner.begin(d.state, t_s, 450.0)
        state, out = runner.resumed(state, t_s, setpoint_c=d.setpoint_c, trigger=d.trigger,
                                    reason=d.reason, ramp_back=d.ramp_back)
        assert state.step_index == 2
        assert len(state.inserted) == 1
        state, t_s, events = _run(runner, state, t_s, t_s + 600.0, -1.0)  # a crash mid-ramp
        completed += events
    state, t_s, events = _run(runner, state, t_s, t_s + 20_000.0, -1.0)
    completed += events
    assert state.phase is Phase.COMPLETED
    dwell_done = [e for e in completed if e == "step_completed:2:False"]
    assert dwell_done == ["step_completed:2:False"]  # the dwell ended once
    assert "step_started:3:False" in completed  # and the plan went on to its end step


def test_the_dwell_resumes_with_its_counted_time_after_the_ramp_back(station: Station
                                                                     ) -> None:
    runner = Runner(PLAN, station, auto_confirm=True)
    d = decide(recovered(station, in_dwell(station, counted_s=6600.0)), snap(560.0), 600.0)
    assert d.state is not None
    state, _ = runner.begin(d.state, 0.0, 560.0)
    state, _ = runner.resumed(state, 0.0, setpoint_c=d.setpoint_c, trigger=d.trigger,
                              reason=d.reason, ramp_back=d.ramp_back)
    ramp_s = 40.0 / d.state.inserted[0].rate_c_per_min * 60.0
    state, t_s, events = _run(runner, state, 0.0, 20_000.0, -1.0)
    assert "step_resumed:2:False" in events
    # 40 K of ramp back, then only the 10 min the dwell still lacked (and the end step)
    assert t_s == pytest.approx(ramp_s + 600.0, abs=30.0)
    assert math.isclose(state.holdback_total_s, 0.0)
