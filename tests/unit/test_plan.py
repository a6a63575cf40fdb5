"""Compiling recipes against a station, and plan summaries (controller.recipe.plan)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from controller.errors import RecipeError
from controller.recipe.parameters import frozen_toml, resolve
from controller.recipe.plan import compile_plan, load_recipe, summarize
from controller.recipe.station import Station, fallback_rate_c_per_min, load_station
from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp, SetGas
from drivers.errors import ConfigurationError

SOURCE = "profiles/test.toml"
HEADLINE = Path(__file__).parents[2] / "profiles" / "pop70-600-1600.toml"
PURGE = [{"kind": "purge", "gas": "Ar", "flow_sccm": 500, "volumes": 8},
         {"kind": "gas", "flows_sccm": {"Ar": 200}}]
END = {"name": "end", "atmosphere": "Ar", "steps": [{"kind": "end"}]}


@pytest.fixture(scope="module")
def station() -> Station:
    return load_station(None)[0]


def stage(name: str, atmosphere: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "atmosphere": atmosphere, "steps": list(steps)}


def ramp(to_c: Any, rate: float | None = 5, **extra: Any) -> dict[str, Any]:
    step = {"kind": "ramp", "to_c": to_c, **extra}
    if rate is not None:
        step["rate_c_per_min"] = rate
    return step


def dwell(minutes: float = 60, **extra: Any) -> dict[str, Any]:
    return {"kind": "dwell", "duration_min": minutes, "band_c": 5, **extra}


def gas(**flows: float) -> dict[str, Any]:
    return {"kind": "gas", "flows_sccm": flows}


def compile_stages(station: Station, *stages: dict[str, Any]) -> Plan:
    """Compile a recipe made of ``stages`` plus a final end stage."""
    doc = {"schema_version": 1, "name": "T", "sample": "T1", "stages": [*stages, END]}
    return compile_plan(resolve(tomli_w.dumps(doc), SOURCE, {}), station, SOURCE)


def rejects(station: Station, *stages: dict[str, Any], parts: tuple[str, ...]) -> RecipeError:
    """Assert compiling raises a one-line RecipeError naming the file, station and ``parts``."""
    with pytest.raises(RecipeError) as info:
        compile_stages(station, *stages)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{SOURCE}: ")
    assert station.name in msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return info.value


def inert_heat(*steps: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return stage("purge", "Ar", *PURGE), stage("heat", "Ar", *steps)


# --- accepted -----------------------------------------------------------------------


def test_headline_compiles(station: Station) -> None:
    resolved, plan, frozen = load_recipe(HEADLINE, {}, station)
    assert plan.sample_name == "POP70-600-1600"
    assert plan.recipe_name == "POP"
    assert dict(plan.parameters) == {"acid_wt": 70.0, "carbonization_c": 1600.0, "mass_g": 2.0}
    assert isinstance(plan.steps[-1], End)
    assert [s.name for s in plan.stages][:4] == ["load", "pre-oxidation", "argon switch",
                                                 "preheat"]
    assert frozen.startswith("# Frozen copy")
    purge = next(s for s in plan.steps if isinstance(s, Purge))
    # 8 volumes x 1.96 L / 0.5 L/min = 31.36 min
    assert purge.duration_s == pytest.approx(31.36 * 60)
    preheat = [s for s in plan.steps if s.stage == "preheat"]
    assert isinstance(preheat[1], Dwell)
    assert preheat[1].at_c == 600.0
    assert preheat[1].duration_s == 7200.0
    assert preheat[1].max_holdback_s == station.envelope.max_holdback_default_min * 60
    load, wash, unload = (s for s in plan.steps if isinstance(s, OperatorStep))
    assert (load.sample_action, wash.sample_action, unload.sample_action) == (
        "load", "wash", "unload")
    assert wash.opens_tube
    assert wash.max_c == station.envelope.open_tube_max_c
    assert wash.open_flows_sccm == ()  # every gas off while the tube is open
    assert [f.role for f in wash.fields] == ["sample_g", "washes", "ph", "note"]


def test_headline_with_set(station: Station) -> None:
    _, plan, frozen = load_recipe(HEADLINE, {"acid_wt": "50", "carbonization_c": "1400"},
                                  station)
    assert plan.sample_name == "POP50-600-1400"
    assert max(s.to_c for s in plan.steps if isinstance(s, Ramp)) == 1400.0
    assert "--set acid_wt=50 --set carbonization_c=1400" in frozen


def test_summary_of_headline(station: Station) -> None:
    _, plan, _ = load_recipe(HEADLINE, {}, station)
    summary = summarize(plan, station)
    assert summary.peak_c == 1600.0
    assert summary.steps == len(plan.steps) == len(summary.step_durations_s)
    preheat = next(s for s in summary.stages if s.name == "preheat")
    # ramp 220 -> 600 °C asked at 5 °C/min, capped to the instrument's fallback rate,
    # + 120 min dwell at 600 °C
    fallback = fallback_rate_c_per_min(station)
    assert fallback < 5.0
    assert preheat.duration_s == pytest.approx(((600 - 220) / fallback + 120) * 60)
    # every 5 °C/min ramp and cool of the recipe is capped, and said so
    assert summary.notes == plan.notes
    assert len(plan.notes) == 4
    assert [n.split(":")[0] for n in plan.notes] == [
        "stages[preheat].steps[1].rate_c_per_min",
        "stages[cool for wash].steps[1].rate_c_per_min",
        "stages[carbonisation].steps[1].rate_c_per_min",
        "stages[cool-down].steps[1].rate_c_per_min"]
    dwell_600 = [d for d, s in zip(summary.step_durations_s, plan.steps, strict=True)
                 if isinstance(s, Dwell) and s.at_c == 600.0]
    assert dwell_600 == [pytest.approx(120 * 60)]
    assert summary.gas_l["air"] > 0
    assert summary.gas_l["Ar"] > 0
    assert summary.gas_l["N2"] == 0
    # air: 200 sccm during the 97.5 min ramp and the 120 min dwell = 43.5 L
    assert summary.gas_l["air"] == pytest.approx(0.2 * (97.5 + 120))
    assert summary.duration_s == pytest.approx(sum(s.duration_s for s in summary.stages))
    wash = next(s for s in summary.stages if s.name == "wash")
    assert wash.duration_s == 240 * 60.0  # the wash's expected_min (an assumption)


def test_frozen_round_trip_gives_the_identical_plan(station: Station) -> None:
    resolved, plan, frozen = load_recipe(HEADLINE, {"acid_wt": "60", "carbonization_c": "1500"},
                                         station)
    again = compile_plan(resolve(frozen, "batches/x/recipe.toml", {}), station,
                         "batches/x/recipe.toml")
    assert again == plan
    assert frozen_toml(resolve(frozen, "x", {})).split("\n", 2)[2] == frozen.split("\n", 2)[2]


def test_dwell_before_any_ramp_is_at_ambient(station: Station) -> None:
    plan = compile_stages(station, stage("wait", "Ar", dwell(10)))
    first = plan.steps[0]
    assert isinstance(first, Dwell)
    assert first.at_c == station.envelope.ambient_c


def test_ramp_by_time_compiles_to_a_rate(station: Station) -> None:
    plan = compile_stages(station, *inert_heat(ramp(625, rate=None, duration_min=200)))
    step = plan.steps[2]
    assert isinstance(step, Ramp)
    assert step.rate_c_per_min == pytest.approx(3.0)  # 600 °C in 200 min
    assert plan.notes == ()


def test_ramp_by_time_faster_than_the_fallback_is_capped_and_takes_longer(
        station: Station) -> None:
    plan = compile_stages(station, *inert_heat(ramp(625, rate=None, duration_min=120)))
    step = plan.steps[2]
    fallback = fallback_rate_c_per_min(station)
    assert isinstance(step, Ramp)
    assert step.rate_c_per_min == fallback  # not the 5 °C/min that 600 K in 120 min is
    assert summarize(plan, station).step_durations_s[2] == pytest.approx(600 / fallback * 60)
    (note,) = plan.notes
    assert note.startswith("stages[heat].steps[1].duration_min: ramp to 625 °C capped "
                           f"from 5 to {fallback:g} °C/min: ")


def test_explicit_holdback_and_o2_purge(station: Station) -> None:
    plan = compile_stages(
        station,
        stage("purge", "Ar", {"kind": "purge", "gas": "Ar", "flow_sccm": 500, "volumes": 8,
                              "o2_max_ppm": 20}),
        stage("heat", "Ar", ramp(600), dwell(60, max_holdback_min=10)))
    purge, _, hold = plan.steps[0], plan.steps[1], plan.steps[2]
    assert isinstance(purge, Purge)
    assert purge.o2_max_ppm == 20
    assert purge.timeout_s == pytest.approx(3 * purge.duration_s)
    assert isinstance(hold, Dwell)
    assert hold.max_holdback_s == 600.0


def test_air_below_the_limit_and_switch_to_argon_while_warm(station: Station) -> None:
    plan = compile_stages(
        station,
        stage("oxidise", "air", gas(air=200), ramp(220, rate=2), dwell(120)),
        stage("switch", "Ar", *PURGE),
        stage("preheat", "Ar", ramp(600), dwell(120),
              {"kind": "cool", "to_c": 100, "rate_c_per_min": 5}))
    assert isinstance(plan.steps[0], SetGas)
    assert isinstance(plan.steps[-2], Cool)


def test_inert_purge_then_other_inert_gas_needs_no_new_purge(station: Station) -> None:
    # The tube no longer holds air after the Ar purge, so N2 may follow without one.
    compile_stages(station, stage("purge", "Ar", *PURGE),
                   stage("heat", "N2", gas(N2=200), ramp(600)))


# --- rejected -------------------------------------------------------------------------


def test_temperature_above_station_maximum(station: Station) -> None:
    rejects(station, *inert_heat(ramp(1700)),
            parts=("stages[heat].steps[1].to_c", "1700 °C is above the maximum",
                   "1650 °C"))


def test_temperature_above_maximum_via_parameter(station: Station) -> None:
    doc = {"schema_version": 1, "name": "T", "sample": "T{c}",
           "parameters": {"c": {"default": 1600, "min": 1400, "max": 1800}},
           "stages": [*inert_heat(ramp("{c}")), END]}
    resolved = resolve(tomli_w.dumps(doc), SOURCE, {"c": "1700"})
    with pytest.raises(RecipeError, match=r"steps\[1\]\.to_c: 1700 °C is above the maximum"):
        compile_plan(resolved, station, SOURCE)


def test_heating_ramp_above_station_limit(station: Station) -> None:
    rejects(station, *inert_heat(ramp(1500, rate=8)),
            parts=("stages[heat].steps[1].rate_c_per_min", "25 -> 1500 °C at 8 °C/min",
                   "faster than the 5 °C/min allowed"))


def test_heating_ramp_above_limit_low_band(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600, rate=12)),
            parts=("stages[heat].steps[1].rate_c_per_min", "25 -> 600 °C at 12 °C/min",
                   "faster than the"))


def test_ramp_within_the_low_band_passes_the_envelope_then_is_capped(
        station: Station) -> None:
    """10 °C/min is within the envelope below 1000 °C, so it is not refused; but the
    instrument's single rate limit is its fallback rate, so the ramp is capped to that,
    with one note naming the field, the numbers and the station's cooling limit."""
    plan = compile_stages(station, *inert_heat(ramp(1000, rate=10)))
    step = plan.steps[2]
    fallback = fallback_rate_c_per_min(station)
    assert isinstance(step, Ramp)
    assert step.rate_c_per_min == fallback
    assert step.label == f"ramp to 1000 °C at {fallback:g} °C/min (capped from 10)"
    assert plan.notes == (
        f"stages[heat].steps[1].rate_c_per_min: ramp to 1000 °C capped from 10 to "
        f"{fallback:g} °C/min: the instrument falls back at its single rate limit, which "
        "must keep the furnace within the station's 5 °C/min cooling limit",)


def test_cooling_steps_faster_than_the_fallback_are_capped(station: Station) -> None:
    plan = compile_stages(station, *inert_heat(
        ramp(600, rate=2), ramp(500, rate=5),
        {"kind": "cool", "to_c": 100, "rate_c_per_min": 5}))
    fallback = fallback_rate_c_per_min(station)
    heat, down, cool = plan.steps[2:5]
    assert isinstance(heat, Ramp)
    assert isinstance(down, Ramp)
    assert isinstance(cool, Cool)
    assert heat.rate_c_per_min == 2  # slower than the fallback rate: as asked, no note
    assert down.rate_c_per_min == cool.rate_c_per_min == fallback
    assert cool.label == f"cool to 100 °C at {fallback:g} °C/min (capped from 5)"
    assert [n.split(": ")[:2] for n in plan.notes] == [
        ["stages[heat].steps[2].rate_c_per_min", f"ramp to 500 °C capped from 5 to "
                                                 f"{fallback:g} °C/min"],
        ["stages[heat].steps[3].rate_c_per_min", f"cool to 100 °C capped from 5 to "
                                                 f"{fallback:g} °C/min"]]
    assert all("\n" not in n for n in plan.notes)


def test_a_ramp_at_the_fallback_rate_is_not_capped(station: Station) -> None:
    fallback = fallback_rate_c_per_min(station)
    plan = compile_stages(station, *inert_heat(ramp(600, rate=fallback)))
    assert plan.steps[2].rate_c_per_min == fallback  # type: ignore[union-attr]
    assert plan.notes == ()
    assert summarize(plan, station).notes == ()


def test_ramp_by_time_above_station_limit(station: Station) -> None:
    rejects(station, *inert_heat(ramp(925, rate=None, duration_min=60)),
            parts=("stages[heat].steps[1].duration_min", "25 -> 925 °C at 15 °C/min",
                   "faster than the"))


def test_cooling_ramp_above_cooling_limit(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), ramp(300, rate=10)),
            parts=("stages[heat].steps[2].rate_c_per_min", "cooling 600 -> 300 °C",
                   "5 °C/min allowed"))


def test_cool_step_above_cooling_limit(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), {"kind": "cool", "to_c": 100,
                                             "rate_c_per_min": 8}),
            parts=("stages[heat].steps[2].rate_c_per_min", "8 °C/min", "5 °C/min"))


def test_cool_must_go_down(station: Station) -> None:
    rejects(station, *inert_heat(ramp(300), {"kind": "cool", "to_c": 400,
                                             "rate_c_per_min": 5}),
            parts=("stages[heat].steps[2].to_c", "not below the setpoint in force (300 °C)"))


def test_air_heated_above_the_air_limit(station: Station) -> None:
    rejects(station, stage("oxidise", "air", gas(air=200), ramp(300, rate=2)),
            parts=("stages[oxidise].steps[2].to_c", "oxidising gas air", "300 °C",
                   "forbidden above 250 °C"))


def test_switching_to_air_when_hot(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), gas(air=200)),
            parts=("stages[heat].steps[2].flows_sccm.air", "air", "600 °C",
                   "forbidden above 250 °C"))


def test_purging_with_air_when_hot(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), {"kind": "purge", "gas": "air",
                                             "flow_sccm": 500, "volumes": 1}),
            parts=("stages[heat].steps[2].gas", "600 °C", "forbidden above 250 °C"))


def test_heating_under_argon_without_a_purge(station: Station) -> None:
    rejects(station, stage("heat", "Ar", gas(Ar=200), ramp(600)),
            parts=("stages[heat].steps[2]", "heating to 600 °C under Ar",
                   "held air since the start of the recipe", "add a purge step"))


def test_heating_under_argon_after_opening_the_tube(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE),
            stage("load", "Ar", {"kind": "operator", "message": "load", "opens_tube": True,
                                   "flows_sccm": {"Ar": 50}}),  # a low purge, as allowed
            stage("heat", "Ar", ramp(600)),
            parts=("stages[heat].steps[1]", "stages[load].steps[1] opened the tube"))


def test_heating_under_argon_after_air_was_added(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE),
            stage("mix", "Ar", gas(air=50), gas(Ar=200)),
            stage("heat", "Ar", ramp(600)),
            parts=("stages[heat].steps[1]", "stages[mix].steps[1] admitted air"))


def test_purge_that_is_not_complete_before_heating_counts_only_when_inert(
        station: Station) -> None:
    rejects(station, stage("p", "Ar", {"kind": "purge", "gas": "air", "flow_sccm": 500,
                                       "volumes": 8}, gas(Ar=200)),
            stage("heat", "Ar", ramp(600)),
            parts=("stages[heat].steps[1]", "stages[p].steps[1] purged with air"))


def test_gas_not_on_the_station(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE), stage("heat", "Ar", gas(He=200)),
            parts=("stages[heat].steps[1].flows_sccm.He", "gas 'He' is not on this station",
                   "Ar, air, N2"))


def test_purge_gas_not_on_the_station(station: Station) -> None:
    rejects(station, stage("purge", "Ar", {"kind": "purge", "gas": "He", "flow_sccm": 500,
                                           "volumes": 8}),
            parts=("stages[purge].steps[1].gas", "'He'", "Ar, air, N2"))


def test_atmosphere_not_on_the_station(station: Station) -> None:
    rejects(station, stage("heat", "He", dwell(1)),
            parts=("stages[heat].atmosphere", "'He'", "Ar, air, N2"))


def test_flow_above_full_scale(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE), stage("heat", "Ar", gas(Ar=1500)),
            parts=("stages[heat].steps[1].flows_sccm.Ar", "1500 sccm", "full scale",
                   "1000 sccm"))


def test_opening_the_tube_when_hot(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), {"kind": "cool", "to_c": 200,
                                             "rate_c_per_min": 5},
                                 {"kind": "operator", "message": "wash", "opens_tube": True,
                                  "flows_sccm": {}}),
            parts=("stages[heat].steps[3].opens_tube", "setpoint 200 °C",
                   "at or below 100 °C"))


def test_atmosphere_does_not_match_the_gas_while_heating(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE), stage("heat", "N2", ramp(600)),
            parts=("stages[heat].steps[1]", "with Ar flowing", "atmosphere = 'N2'"))


def test_heating_with_no_gas_flowing(station: Station) -> None:
    rejects(station, stage("purge", "Ar", *PURGE), stage("heat", "Ar", gas(), ramp(600)),
            parts=("stages[heat].steps[2]", "with no gas flowing"))


def test_o2_limit_without_analyser(station: Station) -> None:
    no_o2 = station.model_copy(update={"o2": None, "name": "no-o2"})
    with pytest.raises(RecipeError) as info:
        compile_stages(no_o2, stage("purge", "Ar", {"kind": "purge", "gas": "Ar",
                                                    "flow_sccm": 500, "volumes": 8,
                                                    "o2_max_ppm": 20}))
    msg = str(info.value)
    assert msg.startswith(f"{SOURCE}: stages[purge].steps[1].o2_max_ppm: ")
    assert "no-o2" in msg
    assert "O2 analyser" in msg


def test_o2_timeout_shorter_than_purge(station: Station) -> None:
    rejects(station, stage("purge", "Ar", {"kind": "purge", "gas": "Ar", "flow_sccm": 500,
                                           "volumes": 8, "o2_max_ppm": 20,
                                           "timeout_min": 10}),
            parts=("stages[purge].steps[1].timeout_min", "10 min", "31.36 min"))


def test_target_below_ambient(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), {"kind": "cool", "to_c": 0,
                                             "rate_c_per_min": 5}),
            parts=("stages[heat].steps[2].to_c", "below ambient"))


def test_ramp_by_time_to_the_same_setpoint_is_a_dwell(station: Station) -> None:
    rejects(station, *inert_heat(ramp(600), ramp(600, rate=None, duration_min=10)),
            parts=("stages[heat].steps[2].duration_min", "use kind = 'dwell'"))


def test_recipe_error_is_a_configuration_error(station: Station) -> None:
    with pytest.raises(ConfigurationError):
        compile_stages(station, *inert_heat(ramp(1700)))


def test_load_recipe_missing_file(station: Station, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="missing.toml: file not found"):
        load_recipe(tmp_path / "missing.toml", {}, station)
