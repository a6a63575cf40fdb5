"""Recipe schema, parameters, ``--set`` overrides and the frozen copy (controller.recipe.schema,
controller.recipe.parameters)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from controller.errors import RecipeError
from controller.recipe.parameters import frozen_toml, parse_overrides, resolve, sample_name
from controller.recipe.plan import compile_plan
from controller.recipe.schema import RampSpec, format_number
from controller.recipe.station import load_station
from drivers.errors import ConfigurationError

SOURCE = "profiles/test.toml"
HEADLINE = Path(__file__).parents[2] / "profiles" / "pop70-600-1600.toml"


def make(*stages: dict[str, Any], **top: Any) -> str:
    """A recipe as TOML text: an Ar purge, the given stages (default: heat to 600), an end."""
    doc: dict[str, Any] = {"schema_version": 1, "name": "T", "sample": "T1", **top}
    body = list(stages) or [{"name": "heat", "atmosphere": "Ar", "steps": [
        {"kind": "ramp", "to_c": 600, "rate_c_per_min": 5},
        {"kind": "dwell", "duration_min": 60, "band_c": 5}]}]
    doc["stages"] = [
        {"name": "purge", "atmosphere": "Ar", "steps": [
            {"kind": "purge", "gas": "Ar", "flow_sccm": 500, "volumes": 8},
            {"kind": "gas", "flows_sccm": {"Ar": 200}}]},
        *body,
        {"name": "cool", "atmosphere": "Ar", "steps": [
            {"kind": "cool", "to_c": 100, "rate_c_per_min": 5}, {"kind": "end"}]},
    ]
    return tomli_w.dumps(doc)


def heat(**step: Any) -> dict[str, Any]:
    """A 'heat' stage under Ar with one step."""
    return {"name": "heat", "atmosphere": "Ar", "steps": [step]}


def rejects(text: str, *parts: str, overrides: dict[str, str] | None = None
            ) -> ConfigurationError:
    """Assert ``resolve`` raises a one-line ConfigurationError naming the file and ``parts``."""
    with pytest.raises(ConfigurationError) as info:
        resolve(text, SOURCE, overrides or {})
    msg = str(info.value)
    assert "\n" not in msg
    assert "Traceback" not in msg
    assert msg.startswith(f"{SOURCE}: ")
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return info.value


# --- accepted -----------------------------------------------------------------------


def test_minimal_recipe_resolves() -> None:
    resolved = resolve(make(), SOURCE, {})
    assert resolved.recipe.stages[1].name == "heat"
    assert isinstance(resolved.recipe.stages[1].steps[0], RampSpec)
    assert sample_name(resolved) == "T1"


def test_headline_sample_name_and_values() -> None:
    resolved = resolve(HEADLINE.read_text(), str(HEADLINE), {})
    assert sample_name(resolved) == "POP70-600-1600"
    assert dict(resolved.values) == {"acid_wt": 70.0, "carbonization_c": 1600.0, "mass_g": 2.0}
    assert resolved.recipe.sample_material is not None
    assert resolved.recipe.sample_material.acid_wt == 70.0
    assert resolved.recipe.sample_material.precursor == "pitch"


def test_set_overrides_name_and_numbers() -> None:
    resolved = resolve(HEADLINE.read_text(), str(HEADLINE),
                       {"acid_wt": "50", "carbonization_c": "1400"})
    assert sample_name(resolved) == "POP50-600-1400"
    carbonisation = next(s for s in resolved.recipe.stages if s.name == "carbonisation")
    ramp = carbonisation.steps[0]
    assert isinstance(ramp, RampSpec)
    assert ramp.to_c == 1400.0


def test_set_non_integer_keeps_decimals_in_name() -> None:
    resolved = resolve(HEADLINE.read_text(), str(HEADLINE), {"acid_wt": "72.5"})
    assert sample_name(resolved) == "POP72.5-600-1600"


@pytest.mark.parametrize(("acid", "carb"), list(itertools.product(
    ["50", "60", "70", "80"], ["1400", "1500", "1600"])))
def test_pop_family_every_combination_compiles(acid: str, carb: str) -> None:
    station, _ = load_station(None)
    resolved = resolve(HEADLINE.read_text(), str(HEADLINE),
                       {"acid_wt": acid, "carbonization_c": carb})
    plan = compile_plan(resolved, station, str(HEADLINE))
    assert plan.sample_name == f"POP{acid}-600-{carb}"
    assert max(getattr(s, "to_c", 0.0) for s in plan.steps) == float(carb)


def test_frozen_toml_bakes_in_the_chosen_values() -> None:
    resolved = resolve(HEADLINE.read_text(), str(HEADLINE),
                       {"acid_wt": "50", "carbonization_c": "1450"})
    text = frozen_toml(resolved)
    again = resolve(text, "batch/recipe.toml", {})
    assert sample_name(again) == "POP50-600-1450"
    assert again.recipe.stages == resolved.recipe.stages
    assert dict(again.values) == dict(resolved.values)
    assert text.startswith("# Frozen copy of")
    assert "--set acid_wt=50" in text.splitlines()[0]


def test_format_number() -> None:
    assert format_number(70.0) == "70"
    assert format_number(72.5) == "72.5"
    assert format_number(-3.0) == "-3"


def test_parse_overrides() -> None:
    assert parse_overrides(["acid_wt=50", " carbonization_c = 1400 "]) == {
        "acid_wt": "50", "carbonization_c": "1400"}
    with pytest.raises(ConfigurationError, match="--set: expected KEY=VALUE"):
        parse_overrides(["acid_wt"])
    with pytest.raises(ConfigurationError, match="--set acid_wt: given more than once"):
        parse_overrides(["acid_wt=50", "acid_wt=60"])


# --- rejected: schema -----------------------------------------------------------------


def test_bad_toml_syntax() -> None:
    err = rejects('schema_version = 1\nname = "T\n', "not valid TOML", "line 2")
    assert not isinstance(err, RecipeError)


@pytest.mark.parametrize("duration", [0, -5])
def test_dwell_duration_must_be_positive(duration: float) -> None:
    text = make(heat(kind="dwell", duration_min=duration, band_c=5))
    rejects(text, "stages[heat].steps[1].duration_min", "greater than 0",
            f"got {duration}")


def test_ramp_by_time_must_be_positive() -> None:
    rejects(make(heat(kind="ramp", to_c=600, duration_min=0)),
            "stages[heat].steps[1].duration_min", "greater than 0")


def test_negative_flow_is_rejected() -> None:
    rejects(make(heat(kind="gas", flows_sccm={"Ar": -1})),
            "stages[heat].steps[1].flows_sccm.Ar", "greater than or equal to 0")


def test_zero_purge_volumes_is_rejected() -> None:
    rejects(make(heat(kind="purge", gas="Ar", flow_sccm=500, volumes=0)),
            "stages[heat].steps[1].volumes", "greater than 0")


def test_unknown_field_in_a_step() -> None:
    rejects(make(heat(kind="dwell", duration_min=60, band_c=5, colour="red")),
            "stages[heat].steps[1].colour", "unknown field")


def test_unknown_top_level_field() -> None:
    rejects(make(author="me"), "author", "unknown field")


def test_field_without_its_unit_is_unknown_and_hints_the_name() -> None:
    rejects(make(heat(kind="ramp", to=220, to_c=220, rate_c_per_min=5)),
            "stages[heat].steps[1].to:", "unknown field", "did you mean 'to_c'")


def test_missing_unit_bearing_field() -> None:
    rejects(make(heat(kind="ramp", rate_c_per_min=5)),
            "stages[heat].steps[1].to_c", "required field is missing")


def test_unitless_name_instead_of_unit_field_is_reported_as_the_misspelling() -> None:
    # `to = 220` instead of `to_c = 220`: name the field the user wrote, and the right one.
    rejects(make(heat(kind="ramp", to=220, rate_c_per_min=5)),
            "stages[heat].steps[1].to:", "unknown field", "did you mean 'to_c'")


@pytest.mark.parametrize("value", ["hot", True])
def test_wrong_type(value: Any) -> None:
    rejects(make(heat(kind="ramp", to_c=value, rate_c_per_min=5)),
            "stages[heat].steps[1].to_c", "valid number", f"got {value!r}")


def test_wrong_type_for_bool() -> None:
    rejects(make(heat(kind="operator", message="open", opens_tube="yes")),
            "stages[heat].steps[1].opens_tube", "valid boolean")


def test_ramp_needs_exactly_one_of_rate_or_time() -> None:
    rejects(make(heat(kind="ramp", to_c=600, rate_c_per_min=5, duration_min=60)),
            "stages[heat].steps[1]", "exactly one of rate_c_per_min")
    rejects(make(heat(kind="ramp", to_c=600)),
            "stages[heat].steps[1]", "exactly one of rate_c_per_min")


def test_missing_and_unknown_kind() -> None:
    rejects(make(heat(to_c=600)), "stages[heat].steps[1]", "'kind' is missing")
    rejects(make(heat(kind="soak", to_c=600)), "stages[heat].steps[1].kind",
            "unknown kind 'soak'")


def test_schema_version_must_be_1() -> None:
    rejects(make().replace("schema_version = 1", "schema_version = 2"),
            "schema_version", "1")


def test_stage_names_must_be_unique() -> None:
    rejects(make({"name": "purge", "atmosphere": "Ar",
                  "steps": [{"kind": "dwell", "duration_min": 1, "band_c": 5}]}),
            "two stages are named 'purge'")


def test_unnamed_stage_is_numbered_from_one() -> None:
    rejects(make({"atmosphere": "Ar", "steps": [{"kind": "dwell", "duration_min": 1,
                                                 "band_c": 5}]}),
            "stages[2].name", "required field is missing")


def test_recipe_must_end_with_end() -> None:
    text = make().replace('    { kind = "end" },\n', "")
    assert 'kind = "end"' not in text
    rejects(text, "stages[cool].steps[1]", "the last step must be kind = 'end'")


def test_end_must_be_last() -> None:
    rejects(make(heat(kind="end")), "stages[heat].steps[1]",
            "an end step must be the last step")


def test_sample_name_must_be_a_safe_folder_name() -> None:
    rejects(make(sample="../x"), "sample:", "'../x'", "letters, digits")


def test_timeout_needs_o2_limit() -> None:
    rejects(make(heat(kind="purge", gas="Ar", flow_sccm=500, volumes=8, timeout_min=60)),
            "stages[heat].steps[1]", "timeout_min only applies together with o2_max_ppm")


# --- rejected: parameters ---------------------------------------------------------------

PARAMS = {"acid_wt": {"default": 70, "min": 50, "max": 80}}


def test_parameter_default_outside_bounds() -> None:
    params = {"acid_wt": {"default": 90, "min": 50, "max": 80}}
    rejects(make(parameters=params), "parameters.acid_wt", "default 90 is outside [50, 80]")


def test_parameter_needs_bounds() -> None:
    rejects(make(parameters={"acid_wt": {"default": 70, "min": 50}}),
            "parameters.acid_wt.max", "required field is missing")


def test_set_outside_bounds() -> None:
    rejects(make(parameters=PARAMS), "parameters.acid_wt", "90 is outside [50, 80]",
            "--set acid_wt=90", overrides={"acid_wt": "90"})


def test_set_unknown_parameter() -> None:
    rejects(make(parameters=PARAMS), "--set acid", "unknown parameter",
            "acid_wt", overrides={"acid": "60"})


def test_set_on_recipe_without_parameters() -> None:
    rejects(make(), "--set acid_wt", "unknown parameter", "declares: none",
            overrides={"acid_wt": "60"})


@pytest.mark.parametrize("value", ["seventy", "", "nan", "inf"])
def test_set_not_a_number(value: str) -> None:
    rejects(make(parameters=PARAMS), "--set acid_wt", "is not a number",
            overrides={"acid_wt": value})


def test_reference_to_unknown_parameter() -> None:
    rejects(make(heat(kind="ramp", to_c="{temp_c}", rate_c_per_min=5), parameters=PARAMS),
            "stages[heat].steps[1].to_c", "unknown parameter {temp_c}", "acid_wt")


def test_unknown_parameter_in_sample_template() -> None:
    rejects(make(sample="T{acid}", parameters=PARAMS), "sample", "unknown parameter {acid}")


def test_parameter_value_is_still_checked_by_the_field() -> None:
    params = {"hold_min": {"default": 0, "min": 0, "max": 10}}
    rejects(make(heat(kind="dwell", duration_min="{hold_min}", band_c=5), parameters=params),
            "stages[heat].steps[1].duration_min", "greater than 0")


def test_odd_keys_stay_on_one_line() -> None:
    rejects(make(heat(kind="gas", flows_sccm={"A\nr": -1})), "flows_sccm.'A\\nr'")
