"""Recipe files: the pydantic schema, parameters with ``--set`` overrides, and the frozen copy.

Not here: checks against a station and the compiled steps (``plan``).

A recipe is TOML. Numbers may be written as a parameter reference ``"{acid_wt}"``; text may
embed references (``sample = "POP{acid_wt}-600-{carbonization_c}"``). Error messages name
the field with stages by name and steps counted from 1 in the order written, e.g.
``stages[preheat].steps[2].to_c``.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.recipe.validation import first_error, parse_toml
from controller.text import printable_line, printable_text, unsafe_char
from drivers.errors import ConfigurationError

__all__ = [
    "CoolSpec",
    "DwellSpec",
    "EndSpec",
    "GasSpec",
    "OperatorSpec",
    "Parameter",
    "PurgeSpec",
    "RampSpec",
    "Recipe",
    "ResolvedRecipe",
    "SampleMaterial",
    "StageSpec",
    "StepSpec",
    "format_number",
    "frozen_toml",
    "parse_overrides",
    "path_key",
    "resolve",
    "sample_name",
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

_REF_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_REF_ANY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    acid_wt: Annotated[float, Field(strict=True, ge=0, le=100)] = 0.0  # H3PO4, wt%
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


class OperatorSpec(_Model):
    """Wait for an operator; ``opens_tube`` lets air into the tube."""

    kind: Literal["operator"]
    message: Annotated[Text, Field(min_length=1)]
    opens_tube: Annotated[bool, Field(strict=True)] = False


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
_STEP_MODELS: dict[str, type[_Model]] = {
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


class _Header(BaseModel):
    """The part of a recipe read before references are substituted."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: Literal[1]
    parameters: dict[ParamName, Parameter] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResolvedRecipe:
    """A validated recipe, the parameter values it was resolved with, and its source text.

    ``document`` is the TOML document as written (references intact); ``frozen_toml`` uses
    it. ``recipe`` has every reference replaced by its value.
    """

    recipe: Recipe
    values: Mapping[str, float]
    source: str
    document: Mapping[str, Any] = field(repr=False)
    overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def format_number(value: float) -> str:
    """``70.0`` -> ``"70"``, ``72.5`` -> ``"72.5"``: how numbers appear in names and messages."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def path_key(key: str) -> str:
    """A TOML key as it appears in a field path: bare if simple, else quoted (one line)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Turn ``["acid_wt=50", ...]`` (the ``--set`` arguments) into a dict.

    Raises ``ConfigurationError`` naming ``--set`` for an item without ``=`` or a repeat.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(f"expected KEY=VALUE, got {item!r}", field="--set")
        if key in out:
            raise ConfigurationError("given more than once", field=f"--set {path_key(key)}")
        out[key] = value.strip()
    return out


def resolve(text: str, source: str, overrides: Mapping[str, str] | None = None
            ) -> ResolvedRecipe:
    """Parse, apply ``--set`` overrides, substitute parameter references and validate.

    Args:
        text: the recipe's TOML text.
        source: where it came from (a path), used in every error message.
        overrides: ``--set`` values as text, parameter name -> value.

    Raises:
        ConfigurationError: one line naming ``source``, the field and the rule, for bad TOML,
            an unknown or mistyped field, a value outside its constraint, an unknown
            parameter, or an override that is unknown, not a number or out of bounds.
    """
    overrides = dict(overrides or {})
    document = parse_toml(text, source)
    header = _validate(_Header, document, source, document)
    values = _apply_overrides(header.parameters, overrides, source)
    substituted = {
        key: value if key == "parameters" else _substitute(value, values, (key,), document,
                                                           source)
        for key, value in document.items()
    }
    recipe = _validate(Recipe, substituted, source, document)
    _check_structure(recipe, source)
    return ResolvedRecipe(recipe=recipe, values=MappingProxyType(values), source=source,
                          document=document, overrides=MappingProxyType(overrides))


def sample_name(resolved: ResolvedRecipe) -> str:
    """The sample name with parameters filled in, integers without ``.0`` (POP70-600-1600)."""
    return resolved.recipe.sample


def frozen_toml(resolved: ResolvedRecipe) -> str:
    """The recipe as TOML with each parameter's default set to the value used.

    Loading the result with no overrides gives the same recipe and so the same plan; this
    is the copy frozen into a batch folder and reloaded by ``furnace resume``.
    """
    document = copy.deepcopy(dict(resolved.document))
    for name, value in resolved.values.items():
        document["parameters"][name]["default"] = _toml_number(value)
    sets = " ".join(f"--set {k}={format_number(resolved.values[k])}"
                    for k in resolved.overrides) or "no --set"
    origin = resolved.source.replace("\n", " ").replace("\r", " ")
    header = (f"# Frozen copy of {origin} ({sets}).\n"
              "# Parameter defaults are the values used; load it without --set to get "
              "the same plan.\n\n")
    return header + tomli_w.dumps(document)


# --- internals -------------------------------------------------------------------------


def _toml_number(value: float) -> int | float:
    return int(value) if value == int(value) and abs(value) < 2**53 else value


def _apply_overrides(parameters: Mapping[str, Parameter], overrides: Mapping[str, str],
                     source: str) -> dict[str, float]:
    values = {name: p.default for name, p in parameters.items()}
    for key, text in overrides.items():
        if key not in parameters:
            known = ", ".join(parameters) or "none"
            raise ConfigurationError(f"unknown parameter (this recipe declares: {known})",
                                     source=source, field=f"--set {path_key(key)}")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigurationError(f"{text!r} is not a number", source=source,
                                     field=f"--set {path_key(key)}")
        p = parameters[key]
        if not p.min <= value <= p.max:
            raise ConfigurationError(
                f"{format_number(value)} is outside [{format_number(p.min)}, "
                f"{format_number(p.max)}] (from --set {key}={text})",
                source=source, field=f"parameters.{key}")
        values[key] = value
    return values


def _substitute(value: Any, values: Mapping[str, float], loc: tuple[str | int, ...],
                document: Mapping[str, Any], source: str) -> Any:
    """Replace "{name}" by the number and embedded {name} in text by its formatted value."""
    if isinstance(value, dict):
        return {k: _substitute(v, values, (*loc, k), document, source)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, (*loc, i), document, source)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(name: str) -> float:
        if name not in values:
            known = ", ".join(values) or "none"
            raise ConfigurationError(
                f"unknown parameter {{{name}}} (this recipe declares: {known})",
                source=source, field=_human_path(loc, document, tagged=False))
        return values[name]

    whole = _REF_WHOLE.match(value)
    if whole:
        return lookup(whole.group(1))
    return _REF_ANY.sub(lambda m: format_number(lookup(m.group(1))), value)


def _validate(model: type[BaseModel], data: Mapping[str, Any], source: str,
              document: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, source, document) from None


def _one_line(exc: ValidationError, source: str, document: Mapping[str, Any]
              ) -> ConfigurationError:
    """The first pydantic error, re-worded, with a human field path."""
    errors = exc.errors()
    err = _prefer_misspelling(errors)
    base = first_error(exc, source) if err is errors[0] else _first_of(exc, err, source)
    rule = str(base).removeprefix(f"{source}: " if source else "").removeprefix(
        f"{base.field}: ")
    loc = tuple(err["loc"])
    if err["type"] == "union_tag_not_found":
        rule = f"required field 'kind' is missing (one of: {', '.join(_STEP_MODELS)})"
    elif err["type"] == "union_tag_invalid":
        got = err["input"].get("kind") if isinstance(err["input"], dict) else None
        rule = f"unknown kind {got!r} (one of: {', '.join(_STEP_MODELS)})"
        loc = (*loc, "kind")
    elif err["type"] == "extra_forbidden" and loc:
        hint = _suggest(str(loc[-1]), _model_at(loc))
        if hint:
            rule = f"{rule}; did you mean {hint!r}?"
    path = _human_path(loc, document, tagged=True) or "(top level)"
    return ConfigurationError(rule, source=source, field=path)


def _prefer_misspelling(errors: list[Any]) -> Any:
    """For ``to = 220`` instead of ``to_c``: report the unknown ``to`` (with a hint)."""
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden" and loc:
            hint = _suggest(str(loc[-1]), _model_at(loc))
            if hint is not None and (*loc[:-1], hint) in missing:
                return e
    return errors[0]


def _first_of(exc: ValidationError, err: Any, source: str) -> ConfigurationError:
    """``first_error`` for one chosen error of ``exc``."""
    detail: Any = {"type": err["type"], "loc": err["loc"], "input": err["input"],
                   **({"ctx": err["ctx"]} if "ctx" in err else {})}
    chosen = ValidationError.from_exception_data(exc.title, [detail])
    return first_error(chosen, source)


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the last element of a pydantic error location."""
    if len(loc) == 1:
        return Recipe
    if loc[0] == "sample_material" and len(loc) == 2:
        return SampleMaterial
    if loc[0] == "parameters" and len(loc) == 3:
        return Parameter
    if loc[0] == "stages" and len(loc) == 3:
        return StageSpec
    if loc[0] == "stages" and len(loc) == 6 and loc[2] == "steps":
        return _STEP_MODELS.get(str(loc[4]))
    return None


def _suggest(name: str, model: type[BaseModel] | None) -> str | None:
    if model is None:
        return None
    fields = list(model.model_fields)
    prefixed = [f for f in fields if f.startswith(name + "_")]
    if prefixed:
        return prefixed[0]
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    return close[0] if close else None


def _stage_label(document: Mapping[str, Any], index: int) -> str:
    stages = document.get("stages")
    if isinstance(stages, list) and 0 <= index < len(stages) and isinstance(stages[index], dict):
        name = stages[index].get("name")
        if (isinstance(name, str) and re.fullmatch(r"[^\[\]]{1,60}", name)
                and unsafe_char(name) is None):
            return name
    return str(index + 1)


def _human_path(loc: Sequence[str | int], document: Mapping[str, Any], *, tagged: bool
                ) -> str:
    """``("stages", 1, "steps", 2, "ramp", "to_c")`` -> ``stages[preheat].steps[3].to_c``.

    ``tagged``: the location comes from pydantic and carries the step's ``kind`` after the
    step index (the discriminated union's tag), which is dropped.
    """
    out = ""
    i = 0
    while i < len(loc):
        part = loc[i]
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if part == "stages" and i == 0 and isinstance(nxt, int):
            out += f"stages[{_stage_label(document, nxt)}]"
            i += 2
        elif part == "steps" and isinstance(nxt, int):
            out += f".steps[{nxt + 1}]"
            i += 3 if tagged and i + 2 < len(loc) and loc[i + 2] in _STEP_MODELS else 2
        else:
            text = path_key(part) if isinstance(part, str) else str(part)
            out += f".{text}" if out else text
            i += 1
    return out


def _check_structure(recipe: Recipe, source: str) -> None:
    """The recipe ends with exactly one ``end`` step, and nothing follows it."""
    last_stage = recipe.stages[-1]
    for stage in recipe.stages:
        for j, step in enumerate(stage.steps, start=1):
            is_last = stage is last_stage and j == len(stage.steps)
            if isinstance(step, EndSpec) and not is_last:
                raise ConfigurationError("an end step must be the last step of the recipe",
                                         source=source,
                                         field=f"stages[{stage.name}].steps[{j}]")
    if not isinstance(last_stage.steps[-1], EndSpec):
        raise ConfigurationError(
            "the last step must be kind = 'end'", source=source,
            field=f"stages[{last_stage.name}].steps[{len(last_stage.steps)}]")
