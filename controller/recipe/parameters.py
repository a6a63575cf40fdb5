"""Recipe parameters: from a recipe file's text, with ``--set`` overrides and parameter
references replaced by their values, to a validated ``Recipe``; and back, the frozen copy.

Not here: the models (``schema``), wording a pydantic error (``validation``; this module
only says how a recipe names its fields), checks against a station (``plan``).

A recipe is TOML. Numbers may be written as a parameter reference ``"{acid_wt}"``; text may
embed references (``sample = "POP{acid_wt}-600-{carbonization_c}"``). Error messages name
the field with stages by name and steps counted from 1 in the order written, e.g.
``stages[preheat].steps[2].to_c``.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.recipe.schema import (
    STEP_MODELS,
    EndSpec,
    Parameter,
    ParamName,
    Recipe,
    SampleMaterial,
    StageSpec,
    format_number,
)
from controller.recipe.validation import FieldNames, one_line_error, parse_toml
from controller.text import unsafe_char
from drivers.errors import ConfigurationError

__all__ = [
    "ResolvedRecipe",
    "frozen_toml",
    "parse_overrides",
    "path_key",
    "resolve",
    "sample_name",
]

_REF_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_REF_ANY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        raise one_line_error(exc, source, _RecipeNames(document)) from None


class _RecipeNames(FieldNames):
    """Recipe fields as the user reads them (``stages[preheat].steps[3].to_c``), with a
    "did you mean" for a misspelt field and the step kinds for a missing or unknown kind."""

    kinds = tuple(STEP_MODELS)

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def path(self, loc: Sequence[str | int]) -> str:
        return _human_path(loc, self.document, tagged=True)

    def model_at(self, loc: Sequence[str | int]) -> type[BaseModel] | None:
        return _model_at(loc)


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
        return STEP_MODELS.get(str(loc[4]))
    return None


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
            i += 3 if tagged and i + 2 < len(loc) and loc[i + 2] in STEP_MODELS else 2
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
