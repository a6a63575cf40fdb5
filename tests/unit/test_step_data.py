"""Operator-step data (issue 11 item 1): the fields a step declares, checked when a person
confirms (refused with one line, the step still waiting), filled in by a simulated
operator, the station's open-tube gas rule, the simulated wash, and the end kinds."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from controller.analysis.facts import end_of, operators_of
from controller.errors import StepDataError
from controller.operator.keys import ESCAPE, KeyCommands
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station
from controller.recipe.steps import End, Material, OperatorStep, Plan, Stage, StepField
from controller.run.commands import Command, Status, apply_command
from controller.run.handle import RecipeRunner
from controller.run.snapshot import Snapshot
from controller.run.step_data import simulated_data
from drivers.errors import ConfigurationError
from drivers.roles import ControllerReading, FlowReading
from simulator.washing import NEUTRAL_PH, filtrate_ph, wash_to_neutral

MASS = StepField("mass_after_wash_g", unit="g", min=0.01, max=50.0, role="sample_g")
WASHES = StepField("washes", kind="integer", min=1, max=50, role="washes")
PH = StepField("final_ph", unit="pH", min=0.0, max=14.0, role="ph")
NOTE = StepField("note", kind="text", required=False, role="note")
WASH = OperatorStep(stage="wash", label="o", message="wash", opens_tube=True, max_c=100.0,
                    sample_action="wash", fields=(MASS, WASHES, PH, NOTE),
                    open_flows_sccm=())


def snap(t_s: float, furnace_c: float, mass_g: float | None = None) -> Snapshot:
    reading = ControllerReading(furnace_c, furnace_c, 0.0, False, False, False, False, False)
    return Snapshot(t_s, reading, MappingProxyType(
        {g: FlowReading(0.0, 0.0, False) for g in ("Ar", "air", "N2")}), None, mass_g=mass_g)


def waiting(station: Station) -> RecipeRunner:
    plan = Plan("t", "T", (Stage("wash", "Ar"),), (WASH, End(stage="wash", label="e")))
    runner = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    runner.begin(0.0, 25.0)
    runner.preflight_done(0.0)
    runner.step(snap(1.0, 25.0), [])
    return runner


# ------------------------------------------------------------------- the field rules
@pytest.mark.parametrize(("data", "message"), [
    ({}, "mass_after_wash_g: missing (this step needs mass_after_wash_g (g, 0.01-50)"),
    ({"mass_after_wash_g": "70", "washes": "4", "final_ph": "7"},
     "mass_after_wash_g: 70 g is above the maximum 50 g"),
    ({"mass_after_wash_g": "0.7", "washes": "4.5", "final_ph": "7"},
     "washes: 4.5 is not a whole number"),
    ({"mass_after_wash_g": "0.7", "washes": "4", "final_ph": "seven"},
     "final_ph: 'seven' is not a number"),
    ({"mass_after_wash_g": "nan", "washes": "4", "final_ph": "7"},
     "mass_after_wash_g: must be a finite number"),
    ({"mass_after_wash_g": "0.7", "washes": "4", "final_ph": "7", "pitch_g": "1"},
     "pitch_g: this step does not ask for it"),
])
def test_a_confirm_with_bad_data_is_refused_and_the_step_keeps_waiting(
        station: Station, data: dict[str, str], message: str) -> None:
    runner = waiting(station)
    before = runner.run
    result = apply_command(runner, Command(trigger="confirm", operator="ann",
                                           data=tuple(data.items())).validate())
    assert (result.status, result.invalid) == (Status.REFUSED, True)
    assert message in result.message
    assert "\n" not in result.message
    assert result.to_wire()["invalid"] is True
    assert runner.run == before  # nothing recorded, nothing confirmed
    assert not [e for e in runner.outbox if e.event == "operator_confirmed"]
    for t in (2.0, 3.0):
        runner.step(snap(t, 25.0), [])
    assert runner.step_index == 0  # still waiting for a person


def test_a_confirm_with_good_data_records_it_typed(station: Station) -> None:
    runner = waiting(station)
    runner.confirm("ann", {"mass_after_wash_g": "0.71", "washes": "4", "final_ph": "6.8",
                           "note": "fine black powder"})
    with pytest.raises(StepDataError.__mro__[1], match="already confirmed"):
        runner.confirm("bob", {"mass_after_wash_g": "9", "washes": "1", "final_ph": "7"})
    runner.step(snap(2.0, 25.0), [])
    assert runner.step_index == 1
    [rec] = [e.fields for e in runner.outbox if e.event == "operator_confirmed"]
    assert rec["data"] == {"mass_after_wash_g": 0.71, "washes": 4, "final_ph": 6.8,
                           "note": "fine black powder"}
    assert type(rec["data"]["washes"]) is int
    assert (rec["operator"], rec["simulated"], rec["data_source"]) == ("ann", False,
                                                                       "operator")
    assert rec["roles"]["mass_after_wash_g"] == "sample_g"
    assert rec["sample_action"] == "wash"


def test_step_data_travels_only_with_confirm_and_is_checked_for_shape() -> None:
    with pytest.raises(ConfigurationError, match="goes only with confirm"):
        Command(trigger="hold", operator="a", data=(("x", "1"),)).validate()
    with pytest.raises(ConfigurationError, match="is given twice"):
        Command(trigger="confirm", operator="a", data=(("x", "1"), ("x", "2"))).validate()
    with pytest.raises(ConfigurationError, match="not a field name"):
        Command(trigger="confirm", operator="a", data=(("x y", "1"),)).validate()
    with pytest.raises(ConfigurationError, match="printable"):
        Command(trigger="confirm", operator="a", data=(("x", "a\nb"),)).validate()


# ------------------------------------------------------------- the simulated operator
def test_the_simulated_operator_fills_fields_by_role() -> None:
    calls: list[str] = []

    def readings(action: str) -> dict[str, float | int]:
        calls.append(action)
        return {"sample_g": 0.47934, "washes": 4, "ph": 6.44}

    data, source = simulated_data(WASH, readings, None, None)
    assert calls == ["wash"]  # the simulated hands carry the wash out
    assert source == "simulated sample"
    assert data == {"mass_after_wash_g": 0.4793, "washes": 4, "final_ph": 6.4,
                    "note": "simulated batch: no person recorded this step"}


def test_without_the_simulated_sample_the_recipe_s_nominal_load_is_recorded() -> None:
    load = OperatorStep(stage="load", label="l", message="load", opens_tube=True,
                        sample_action="load", open_flows_sccm=(), fields=(
                            StepField("pitch_g", unit="g", min=0.05, max=20,
                                      role="precursor_g"),
                            StepField("acid_g", unit="g", min=0.01, max=40, role="acid_g")))
    data, source = simulated_data(load, None, Material("pitch", 70.0, 2.0), 2.0)
    assert source == "nominal (recipe)"
    # 70 g of reagent per 100 g of pitch (decision 0011): 2 g is 1.1765 g pitch + 0.8235 g
    assert data == {"pitch_g": pytest.approx(1.1765), "acid_g": pytest.approx(0.8235)}


def test_the_simulated_wash_goes_on_to_a_neutral_filtrate() -> None:
    assert wash_to_neutral(0.0, 0.7).washes == 1
    few, many = wash_to_neutral(0.05, 0.7), wash_to_neutral(1.5, 0.7)
    assert 1 <= few.washes <= many.washes <= 10
    assert many.final_ph >= NEUTRAL_PH
    assert few.final_ph >= NEUTRAL_PH
    assert filtrate_ph(0.1) == pytest.approx(1.6, abs=0.1)  # 0.1 M H3PO4
    assert filtrate_ph(0.0) == pytest.approx(7.0)


# ----------------------------------------------------------------- the recipe rules
RECIPE = '''schema_version = 1
name = "T"
sample = "T"
[[stages]]
name = "load"
atmosphere = "Ar"
[[stages.steps]]
kind = "operator"
message = "load"
{step}
[[stages.steps]]
kind = "end"
'''


@pytest.mark.parametrize(("step", "message"), [
    ('opens_tube = true', "stages[load].steps[1]: a step that opens the tube declares its "
                          "gas: flows_sccm"),
    ('opens_tube = true\nflows_sccm = { air = 20 }',
     "stages[load].steps[1].flows_sccm.air: air into an open tube"),
    ('opens_tube = true\nflows_sccm = { Ar = 200 }',
     "stages[load].steps[1].flows_sccm: 200 sccm into an open tube; the station's open-tube "
     "rule (open_tube_max_flow_sccm) allows at most 50 sccm"),
    ('sample_action = "wash"', "sample_action 'wash' takes the sample in or out: set "
                               "opens_tube = true"),
    ('flows_sccm = { Ar = 20 }', "flows_sccm applies only while the tube is open"),
    ('[[stages.steps.fields]]\nname = "pitch_g"\nunit = "g"',
     "a number field needs min and max"),
    ('[[stages.steps.fields]]\nname = "pitch"\nrole = "precursor_g"\nunit = "g"\nmin = 0\n'
     'max = 9', "role precursor_g is a mass"),
    ('[[stages.steps.fields]]\nname = "ph"\nunit = "pH"\nmin = 0\nmax = 14\n'
     '[[stages.steps.fields]]\nname = "ph"\nkind = "text"', "two fields are named 'ph'"),
])
def test_operator_step_declarations_are_checked_in_one_line(
        tmp_path: Path, station: Station, step: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(RECIPE.format(step=step), encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_recipe(path, {}, station)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_low_inert_purge_into_the_open_tube_is_allowed(tmp_path: Path,
                                                        station: Station) -> None:
    path = tmp_path / "t.toml"
    path.write_text(RECIPE.format(step='opens_tube = true\nflows_sccm = { Ar = 50 }'),
                    encoding="utf-8")
    _, plan, _ = load_recipe(path, {}, station)
    assert isinstance(plan.steps[0], OperatorStep)
    assert plan.steps[0].open_flows_sccm == (("Ar", 50.0),)


def test_the_open_tube_flows_are_set_once_the_tube_may_be_opened(station: Station) -> None:
    step = OperatorStep(stage="s", label="o", message="wash", opens_tube=True, max_c=100.0,
                        open_flows_sccm=(("Ar", 50.0),))
    plan = Plan("t", "T", (Stage("s", "Ar"),), (step, End(stage="s", label="e")))
    runner = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    runner.begin(0.0, 150.0)
    runner.preflight_done(0.0)
    runner.step(snap(1.0, 150.0), [])
    assert runner.run.flows_sccm["Ar"] == 0.0  # nothing changes while it is too hot
    runner.step(snap(2.0, 90.0), [])
    assert dict(runner.run.flows_sccm) == {"Ar": 50.0, "air": 0.0, "N2": 0.0}


# ---------------------------------------------------------------- how a batch ended
def change(new: str, trigger: str, operator: str = "") -> dict[str, str]:
    return {"event": "state_change", "new": new, "trigger": trigger, "operator": operator}


def test_stop_abort_and_fault_are_told_apart() -> None:
    assert end_of([change("stopping", "stop", "ann")], "aborted", "r") == {
        "kind": "stopped", "reason": "r", "by": "ann"}
    assert end_of([change("stopping", "stop", "ann"), change("aborting", "abort", "bob")],
                  "aborted", "r")["kind"] == "aborted"
    assert end_of([change("aborting", "abort")], "aborted", "r") == {
        "kind": "aborted", "reason": "r", "by": "interlock"}
    assert end_of([change("faulted", "fault")], "faulted", "r")["kind"] == "faulted"
    assert end_of([], "completed", "recipe completed")["by"] is None


def test_operators_are_the_people_in_the_record() -> None:
    audit = [{"event": "batch_created", "operator": "ann"},
             {"event": "operator_confirmed", "operator": "simulator"},
             {"event": "operator_command", "operator": "bob"},
             {"event": "operator_confirmed", "operator": "ann"}]
    assert operators_of(audit) == ["ann", "bob"]


# ------------------------------------------------------------------- the live view's keys
def test_keys_take_the_step_data_typed_in_then_y(station: Station) -> None:
    runner = waiting(station)
    keys = KeyCommands("ann", asks=lambda: WASH.fields)
    typed: list[Command | None] = [keys.feed(k) for k in "c"]
    assert keys.prompt.startswith("mass_after_wash_g (g, 0.01-50): _")
    typed += [keys.feed(k) for k in "0.71\r" + "5\x7f4\r" + "6.8\r"]
    assert keys.prompt.startswith("note (text, optional)")
    typed += [keys.feed(k) for k in "\r"]  # an empty Enter skips an optional field
    assert keys.prompt == ("press y to confirm with mass_after_wash_g=0.71, washes=4, "
                           "final_ph=6.8, any other key cancels")
    command = keys.feed("y")
    assert typed == [None] * len(typed)
    assert command is not None
    assert command.data == (("mass_after_wash_g", "0.71"), ("washes", "4"),
                            ("final_ph", "6.8"))
    assert apply_command(runner, command.validate()).status is Status.APPLIED
    [rec] = [e.fields for e in runner.outbox if e.event == "operator_confirmed"]
    assert rec["data"] == {"mass_after_wash_g": 0.71, "washes": 4, "final_ph": 6.8}


def test_escape_cancels_the_entry_and_nothing_is_sent() -> None:
    keys = KeyCommands("ann", asks=lambda: WASH.fields)
    for k in "c0.7\r" + ESCAPE:
        assert keys.feed(k) is None
    assert keys.prompt == ""
    assert keys.feed("y") is None  # y alone is no command
