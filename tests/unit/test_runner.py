"""Rung 1: the runner on synthetic snapshots: transition table, setpoint generator, dwell
holdback, purge counting, operator steps, stop/abort and interlock verdicts."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from controller.errors import RunStateError
from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp, SetGas, Stage
from controller.run.handle import RecipeRunner
from controller.run.interlocks import Severity, Verdict
from controller.run.runstate import TRANSITIONS, Phase
from controller.run.snapshot import Snapshot
from drivers.roles import ControllerReading, FlowReading


def snap(t_s: float, furnace_c: float, flows: dict[str, float] | None = None,
         o2_ppm: float | None = None) -> Snapshot:
    reading = ControllerReading(furnace_c, furnace_c, 10.0, False, False, False, False, False)
    flows = flows or {}
    return Snapshot(t_s, reading, MappingProxyType(
        {g: FlowReading(flows.get(g, 0.0), flows.get(g, 0.0), False)
         for g in ("Ar", "air", "N2")}), o2_ppm)


def make(station: Station, *steps: object, auto_confirm: bool = True) -> RecipeRunner:
    plan = Plan("t", "T", (Stage("s", "Ar"),), tuple(steps))  # type: ignore[arg-type]
    runner = RecipeRunner(plan, station, auto_confirm=auto_confirm, max_hold_s=600)
    runner.begin(0.0, 25.0)
    runner.preflight_done(0.0)
    return runner


def test_transition_table_is_literal_and_complete() -> None:
    triggers = {t["trigger"] for t in TRANSITIONS}
    assert triggers == {"start", "preflight_ok", "hold", "resume", "stop", "abort", "finish",
                        "cooled", "fault"}
    dests = {t["dest"] for t in TRANSITIONS}
    assert set(Phase) - {Phase.IDLE} <= dests


def test_illegal_command_is_a_run_state_error(station: Station) -> None:
    runner = make(station, Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5,
                                 max_holdback_s=600), End(stage="s", label="e"))
    with pytest.raises(RunStateError, match="cannot resume while running"):
        runner.command("resume", reason="test")
    runner.command("hold", reason="operator", operator="ann")
    assert runner.phase is Phase.HELD
    runner.command("resume", reason="operator", operator="ann")
    assert runner.phase is Phase.RUNNING
    changes = [e for e in runner.outbox if e.event == "state_change"]
    assert changes[-2].fields == {"old": "running", "new": "held", "trigger": "hold",
                                  "reason": "operator", "operator": "ann"}


def test_ramp_moves_at_rate_and_lands_exactly(station: Station) -> None:
    runner = make(station, Ramp(stage="s", label="r", to_c=30.0, rate_c_per_min=6.0),
                  End(stage="s", label="e"))
    runner.step(snap(0.0, 25.0), [])
    runner.step(snap(10.0, 25.0), [])
    assert runner.setpoint_c == pytest.approx(26.0)  # 6 °C/min × 10 s
    for t in range(20, 60, 10):
        runner.step(snap(float(t), 25.0), [])
    assert runner.setpoint_c == 30.0  # landed exactly, no overshoot of the target
    assert runner.step_index == 1


def test_dwell_counts_only_in_band_then_holds_on_holdback(station: Station) -> None:
    runner = make(station, Dwell(stage="s", label="d", at_c=100.0, duration_s=100.0,
                                 band_c=5.0, max_holdback_s=50.0), End(stage="s", label="e"))
    runner.step(snap(0.0, 100.0), [])
    runner.step(snap(40.0, 102.0), [])   # in band: 40 s counted
    runner.step(snap(80.0, 110.0), [])   # out of band: 40 s holdback
    assert runner.phase is Phase.RUNNING
    assert runner.run.holdback_total_s == 40.0
    runner.step(snap(120.0, 110.0), [])  # 80 s out of band > 50 s: hold with alarm
    assert runner.phase is Phase.HELD
    assert any(e.fields.get("alarm") == "holdback_exceeded" for e in runner.outbox)


def test_dwell_completes_after_counted_time(station: Station) -> None:
    runner = make(station, Dwell(stage="s", label="d", at_c=100.0, duration_s=60.0,
                                 band_c=5.0, max_holdback_s=600.0), End(stage="s", label="e"))
    for t in range(0, 80, 20):
        runner.step(snap(float(t), 100.0 if t != 40 else 120.0), [])
    assert runner.step_index == 0  # 40 s counted: 20 s of the 60 was out of band
    runner.step(snap(80.0, 100.0), [])
    assert runner.step_index == 1


def test_purge_counts_only_while_flow_is_reached(station: Station) -> None:
    runner = make(station, Purge(stage="s", label="p", gas="Ar", flow_sccm=500.0, volumes=8,
                                 duration_s=60.0), End(stage="s", label="e"))
    runner.step(snap(0.0, 25.0), [])
    assert runner.flows_sccm == {"Ar": 500.0, "air": 0.0, "N2": 0.0}
    runner.step(snap(30.0, 25.0, {"Ar": 100.0}), [])   # only 20 % of the flow: no count
    runner.step(snap(60.0, 25.0, {"Ar": 495.0}), [])
    assert "Ar" not in runner.run.purged
    runner.step(snap(90.0, 25.0, {"Ar": 495.0}), [])
    assert "Ar" in runner.run.purged
    assert runner.context.inert_unpurged is False


def test_purge_waits_for_o2_limit(station: Station) -> None:
    runner = make(station, Purge(stage="s", label="p", gas="Ar", flow_sccm=500.0, volumes=8,
                                 duration_s=10.0, o2_max_ppm=100.0, timeout_s=1000.0),
                  End(stage="s", label="e"))
    runner.step(snap(0.0, 25.0, {"Ar": 500.0}, 5000.0), [])
    runner.step(snap(20.0, 25.0, {"Ar": 500.0}, 5000.0), [])
    assert runner.step_index == 0
    runner.step(snap(40.0, 25.0, {"Ar": 500.0}, 80.0), [])
    assert runner.step_index == 1


def test_air_clears_purged_state(station: Station) -> None:
    runner = make(station, SetGas(stage="s", label="g", flows_sccm=(("air", 200.0),)),
                  End(stage="s", label="e"))
    runner.run = replace(runner.run, purged=frozenset({"Ar"}))
    runner.step(snap(0.0, 25.0), [])
    assert runner.run.purged == set()


def test_operator_step_waits_for_cold_tube_then_auto_confirms(station: Station) -> None:
    runner = make(station, OperatorStep(stage="s", label="o", message="wash",
                                        opens_tube=True, max_c=100.0),
                  End(stage="s", label="e"))
    runner.run = replace(runner.run, purged=frozenset({"Ar"}))
    runner.step(snap(0.0, 150.0), [])
    assert runner.step_index == 0  # too hot to open
    runner.step(snap(10.0, 90.0), [])
    assert runner.step_index == 1
    confirmed = [e for e in runner.outbox if e.event == "operator_confirmed"]
    assert confirmed[0].fields["how"].startswith("confirmed automatically")
    assert runner.run.purged == set()  # the tube held air


def test_operator_step_waits_for_a_person_on_a_real_station(station: Station) -> None:
    runner = make(station, OperatorStep(stage="s", label="o", message="check"),
                  End(stage="s", label="e"), auto_confirm=False)
    for t in range(0, 100, 10):
        runner.step(snap(float(t), 25.0), [])
    assert runner.step_index == 0
    runner.confirm("bob")
    runner.step(snap(100.0, 25.0), [])
    assert runner.step_index == 1


def test_cool_step_ends_when_furnace_is_below_target(station: Station) -> None:
    runner = make(station, Cool(stage="s", label="c", to_c=100.0, rate_c_per_min=5.0),
                  End(stage="s", label="e"))
    runner.run = replace(runner.run, setpoint_c=200.0)
    runner.step(snap(0.0, 200.0), [])
    runner.step(snap(60.0, 195.0), [])
    assert runner.setpoint_c == pytest.approx(195.0)
    runner.step(snap(120.0, 99.0), [])
    assert runner.step_index == 1


def test_stop_cools_under_inert_gas_and_ends_aborted(station: Station) -> None:
    runner = make(station, SetGas(stage="s", label="g", flows_sccm=(("air", 200.0),)),
                  Dwell(stage="s", label="d", at_c=200.0, duration_s=1e6, band_c=5,
                        max_holdback_s=1e6), End(stage="s", label="e"))
    runner.step(snap(0.0, 200.0, {"air": 200.0}), [])
    runner.command("stop", reason="sample looks wrong", operator="ann")
    assert runner.phase is Phase.STOPPING
    assert runner.flows_sccm["air"] == 0.0
    assert runner.flows_sccm["Ar"] > 0.0
    runner.step(snap(60.0, 195.0), [])
    assert runner.setpoint_c < 200.0
    runner.step(snap(120.0, 90.0), [])
    assert runner.phase is Phase.ABORTED
    assert runner.run.end_reason == "sample looks wrong"


@pytest.mark.parametrize(("severity", "expected"), [
    (Severity.HOLD, Phase.HELD), (Severity.ABORT, Phase.ABORTING),
    (Severity.HALT, Phase.FAULTED)])
def test_verdicts_map_to_states(station: Station, severity: Severity,
                                expected: Phase) -> None:
    runner = make(station, Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5,
                                 max_holdback_s=600), End(stage="s", label="e"))
    verdict = Verdict("test", severity, 1.0, 0.5, "because")
    runner.step(snap(0.0, 300.0), [verdict])  # hot: an abort has cooling to do
    assert runner.phase is expected
    trip = next(e for e in runner.outbox if e.event == "interlock_trip")
    assert trip.fields["measured"] == 1.0
    assert trip.fields["limit"] == 0.5


def test_unattended_hold_aborts_after_the_limit(station: Station) -> None:
    runner = make(station, Dwell(stage="s", label="d", at_c=25, duration_s=6000, band_c=5,
                                 max_holdback_s=6000), End(stage="s", label="e"))
    runner.step(snap(0.0, 300.0), [])
    runner.command("hold", reason="operator")
    runner.step(snap(500.0, 300.0), [])  # the first held cycle starts the count
    runner.step(snap(1100.0, 300.0), [])
    assert runner.phase is Phase.HELD  # 600 s: not more than the limit yet
    runner.step(snap(1101.0, 300.0), [])
    assert runner.phase is Phase.ABORTING


def test_instrument_rate_limit_is_the_fallback_rate_in_every_step(station: Station) -> None:
    """The instrument falls back at its rate limit when the PC dies, and the 3216 has one
    limit for both directions: even a ramp faster than the fallback rate (which the plan
    compiler would have capped) leaves it there (decision 0005, issue 9 item 2)."""
    runner = make(station, Ramp(stage="s", label="r", to_c=30.0, rate_c_per_min=10.0),
                  Dwell(stage="s", label="d", at_c=30, duration_s=60, band_c=5,
                        max_holdback_s=600),
                  Cool(stage="s", label="c", to_c=25.0, rate_c_per_min=5.0),
                  End(stage="s", label="e"))
    fallback = fallback_rate_c_per_min(station)
    assert fallback < station.envelope.max_cooling_rate_c_per_min
    seen = set()
    for t in range(0, 600, 10):
        runner.step(snap(float(t), 30.0 if t < 300 else 25.0), [])
        seen.add(runner.step_index)
        assert runner.commands().rate_limit_c_per_min == fallback
    assert seen >= {0, 1, 2}
