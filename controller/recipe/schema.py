"""Recipe files: the pydantic schema, what a recipe file may say.

Not here: parameters, ``--set`` overrides, validating a file and the frozen copy
(``parameters``); checks against a station and the compiled steps (``plan``).

Numbers may be written as a parameter reference ``"{acid_wt}"`` and text may embed
references; the models here see the recipe with every reference replaced by its value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.text import printable_line, printable_text

__all__ = [
    "STEP_MODELS",
    "CoolSpec",
    "DwellSpec",
    "EndSpec",
    "FieldSpec",
    "GasSpec",
    "OperatorSpec",
    "Parameter",
    "PurgeSpec",
    "RampSpec",
    "Recipe",
    "SampleMaterial",
    "StageSpec",
    "StepSpec",
    "format_number",
]

# Numbers: real TOML numbers only (no booleans, no numeric strings), finite.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# Names and messages end up in the trace (CSV), the audit, the console and the report: one
# line of printable text (messages and descriptions may span lines).
Line = Annotated[str, Field(min_length=1), AfterValidator(printable_line)]
Text = Annotated[str, AfterValidator(printable_text)]
# Stage names appear in error paths as stages[NAME]: printable, no brackets.
StageName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[^\[\]]+$"),
                      AfterValidator(printable_line)]
# A boat in a lab tube furnace holds grams, tens at most; a kilogram is no tube sample.
MAX_SAMPLE_MASS_G = 1000.0
# The sample name becomes part of the batch folder name.
_SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")


def _check_sample_name(value: str) -> str:
    if not _SAMPLE_NAME.fullmatch(value):
        raise ValueError("a sample name must be 1-80 letters, digits and . _ + - "
                         "(it names the batch folder)")
    return value


SampleName = Annotated[str, AfterValidator(_check_sample_name)]

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Model):
    """A recipe parameter: a number with a default and inclusive bounds."""

    default: Number
    min: Number
    max: Number
    unit: Annotated[str, AfterValidator(printable_line)] = ""
    description: Text = ""

    @model_validator(mode="after")
    def _default_in_bounds(self) -> Parameter:
        if self.min > self.max:
            raise ValueError(f"min {format_number(self.min)} is above max "
                             f"{format_number(self.max)}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {format_number(self.default)} is outside "
                             f"[{format_number(self.min)}, {format_number(self.max)}]")
        return self


class SampleMaterial(_Model):
    """What is in the boat; the simulator's sample model uses it."""

    precursor: Literal["pitch", "bituminous_coal", "hazelnut_shell"]
    # g of 85 % H3PO4 reagent per 100 g precursor (the paper's "wt%", decision 0011)
    acid_wt: Annotated[float, Field(strict=True, ge=0, le=100)] = 0.0
    mass_g: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0,
                                   le=MAX_SAMPLE_MASS_G)]


class RampSpec(_Model):
    """Move the setpoint to ``to_c`` by rate or by time (exactly one of the two)."""

    kind: Literal["ramp"]
    to_c: Number
    rate_c_per_min: Positive | None = None
    duration_min: Positive | None = None

    @model_validator(mode="after")
    def _rate_or_time(self) -> RampSpec:
        if (self.rate_c_per_min is None) == (self.duration_min is None):
            raise ValueError("give exactly one of rate_c_per_min (ramp by rate) or "
                             "duration_min (ramp by time)")
        return self


class EndpointSpec(_Model):
    """End a dwell on a process endpoint: DTG within ±``dtg_below_pct_per_min`` for
    ``for_min``, not before ``min_duration_min`` and not after ``max_duration_min``."""

    dtg_below_pct_per_min: Positive
    for_min: Positive
    min_duration_min: Positive
    max_duration_min: Positive

    @model_validator(mode="after")
    def _ordered(self) -> EndpointSpec:
        if self.max_duration_min <= self.min_duration_min:
            raise ValueError("max_duration_min must be longer than min_duration_min")
        return self


class DwellSpec(_Model):
    """Hold the setpoint in force for ``duration_min`` of in-band (holdback) time, or,
    with ``endpoint``, until the cross-linking endpoint (then give no duration_min)."""

    kind: Literal["dwell"]
    duration_min: Positive | None = None
    band_c: Positive
    max_holdback_min: Positive | None = None  # None: the station's default
    endpoint: EndpointSpec | None = None

    @model_validator(mode="after")
    def _duration_or_endpoint(self) -> DwellSpec:
        if (self.duration_min is None) == (self.endpoint is None):
            raise ValueError("give exactly one of duration_min or an endpoint table")
        return self


class ExothermGuardSpec(_Model):
    """Guard against a runaway exotherm (sample hotter than the furnace): the ramp stops
    while ΔT exceeds ``stop_delta_c`` or rises faster than ``stop_rate_c_per_min``, and
    the heat is cut (the run holds) past ``cut_delta_c``."""

    stop_delta_c: Positive
    stop_rate_c_per_min: Positive
    cut_delta_c: Positive

    @model_validator(mode="after")
    def _cut_above_stop(self) -> ExothermGuardSpec:
        if self.cut_delta_c <= self.stop_delta_c:
            raise ValueError("cut_delta_c must be above stop_delta_c")
        return self


class GasSpec(_Model):
    """The complete gas state: listed gases at their flows, every other gas off."""

    kind: Literal["gas"]
    flows_sccm: dict[str, NonNegative]


class PurgeSpec(_Model):
    """Flow ``gas`` alone for ``volumes`` tube volumes, optionally down to an O2 limit."""

    kind: Literal["purge"]
    gas: Line
    flow_sccm: Positive
    volumes: Positive
    o2_max_ppm: Positive | None = None
    timeout_min: Positive | None = None  # with o2_max_ppm; counted from the purge's start

    @model_validator(mode="after")
    def _timeout_needs_o2(self) -> PurgeSpec:
        if self.timeout_min is not None and self.o2_max_ppm is None:
            raise ValueError("timeout_min only applies together with o2_max_ppm")
        return self


class FieldSpec(_Model):
    """One value an operator step asks for (``controller.recipe.steps.StepField``)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    kind: Literal["number", "integer", "text"] = "number"
    unit: Annotated[str, Field(max_length=20), AfterValidator(printable_line)] = ""
    min: Number | None = None
    max: Number | None = None
    required: Annotated[bool, Field(strict=True)] = True
    role: Literal["precursor_g", "acid_g", "sample_g", "washes", "ph", "note"] | None = None
    description: Text = ""

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.kind == "text":
            if self.min is not None or self.max is not None or self.unit:
                raise ValueError("a text field has no unit, min or max")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a number field needs min and max (the bounds a value is "
                             "checked against)")
        if self.min > self.max:
            raise ValueError(f"min {format_number(self.min)} is above max "
                             f"{format_number(self.max)}")
        if self.kind == "number" and not self.unit:
            raise ValueError("a number field needs its unit (g, pH, ...)")
        grams = self.role in ("precursor_g", "acid_g", "sample_g")
        if grams and (self.unit != "g" or not self.name.endswith("_g")):
            raise ValueError(f"role {self.role} is a mass: unit \"g\" and a name ending _g")
        if self.role == "washes" and self.kind != "integer":
            raise ValueError("role washes counts washes: kind \"integer\"")
        return self


class OperatorSpec(_Model):
    """Wait for an operator; ``opens_tube`` lets air into the tube, and then the flows are
    ``flows_sccm`` (declared, as the station's open-tube rule allows). ``sample_action``
    says what happens to the sample; ``fields`` are the values the operator records.
    ``expected_min`` is how long the person is expected to take once the step may begin
    (the tube cool enough to open): the simulated operator takes that long before it
    confirms, so a dry run and ``furnace plan`` count it (default 0; a real station still
    waits for the real confirmation)."""

    kind: Literal["operator"]
    message: Annotated[Text, Field(min_length=1)]
    expected_min: NonNegative = 0.0
    opens_tube: Annotated[bool, Field(strict=True)] = False
    sample_action: Literal["load", "wash", "unload", "none"] = "none"
    flows_sccm: dict[str, NonNegative] | None = None
    fields: Annotated[tuple[FieldSpec, ...], Field(max_length=20)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> OperatorSpec:
        names = [f.name for f in self.fields]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"two fields are named {dup!r}")
        if self.sample_action != "none" and not self.opens_tube:
            raise ValueError(f"sample_action {self.sample_action!r} takes the sample in or "
                             "out: set opens_tube = true")
        if self.opens_tube and self.flows_sccm is None:
            raise ValueError("a step that opens the tube declares its gas: flows_sccm "
                             "(the station's open-tube rule: a low inert purge, or "
                             "{} for all gas off)")
        if not self.opens_tube and self.flows_sccm is not None:
            raise ValueError("flows_sccm applies only while the tube is open "
                             "(opens_tube = true); use a gas step otherwise")
        return self


class CoolSpec(_Model):
    """Ramp the setpoint down to ``to_c`` at ``rate_c_per_min``."""

    kind: Literal["cool"]
    to_c: Number
    rate_c_per_min: Positive


class EndSpec(_Model):
    """End of the recipe (the runner cools to ambient under inert gas)."""

    kind: Literal["end"]


StepSpec = Annotated[
    RampSpec | DwellSpec | GasSpec | PurgeSpec | OperatorSpec | CoolSpec | EndSpec,
    Field(discriminator="kind"),
]
# Each step's model by its ``kind``, in the order error messages list the kinds.
STEP_MODELS: Mapping[str, type[BaseModel]] = {
    "ramp": RampSpec, "dwell": DwellSpec, "gas": GasSpec, "purge": PurgeSpec,
    "operator": OperatorSpec, "cool": CoolSpec, "end": EndSpec,
}


class StageSpec(_Model):
    """A named group of steps; ``atmosphere`` is the gas meant to flow while it heats."""

    name: StageName
    atmosphere: Line
    exotherm_guard: ExothermGuardSpec | None = None
    steps: Annotated[tuple[StepSpec, ...], Field(min_length=1)]


class Recipe(_Model):
    """A recipe with every parameter reference already replaced by its value."""

    schema_version: Literal[1]
    name: Annotated[Line, Field(max_length=120)]
    sample: SampleName
    description: Text = ""
    sample_material: SampleMaterial | None = None
    parameters: dict[ParamName, Parameter] = Field(default_factory=dict)
    stages: Annotated[tuple[StageSpec, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_stage_names(self) -> Recipe:
        seen: set[str] = set()
        dup = None
        for stage in self.stages:
            if stage.name in seen:
                dup = stage.name
                break
            seen.add(stage.name)
        if dup is not None:
            raise ValueError(f"two stages are named {dup!r}; stage names must be unique")
        return self


def format_number(value: float) -> str:
    """``70.0`` -> ``"70"``, ``72.5`` -> ``"72.5"``: how numbers appear in names and messages."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"
