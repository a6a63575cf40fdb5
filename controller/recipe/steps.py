"""The compiled plan: frozen steps the runner executes, in the order they run.

Not here: how a recipe becomes a plan (``plan``) or how steps are executed (``runner``).
Every temperature is °C, every duration seconds, every flow sccm. A plan is data, so it can
be summarised and checked against a station before anything moves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "Cool",
    "Dwell",
    "End",
    "Material",
    "Endpoint",
    "ExothermGuard",
    "OperatorStep",
    "Plan",
    "Purge",
    "Ramp",
    "SetGas",
    "SAMPLE_ACTIONS",
    "STEP_DATA_ROLES",
    "Stage",
    "Step",
    "StepField",
    "StepValue",
    "check_step_data",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class _StepBase:
    stage: str  # name of the stage this step belongs to
    label: str  # one line for people: "ramp to 220 °C at 5 °C/min"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ramp(_StepBase):
    """Move the setpoint linearly to ``to_c`` at ``rate_c_per_min`` (a magnitude)."""

    kind: Literal["ramp"] = "ramp"
    to_c: float
    rate_c_per_min: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A dwell's process endpoint: |DTG| below ``dtg_below_pct_per_min`` for ``for_s``,
    counted only after ``min_s`` of dwell; the dwell's ``duration_s`` is the maximum."""

    dtg_below_pct_per_min: float
    for_s: float
    min_s: float


@dataclass(frozen=True, slots=True)
class ExothermGuard:
    """Stop the ramp above ``stop_delta_c`` (or ΔT rising faster than
    ``stop_rate_c_per_min``); cut the heat above ``cut_delta_c``. ΔT = sample − furnace."""

    stop_delta_c: float
    stop_rate_c_per_min: float
    cut_delta_c: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Dwell(_StepBase):
    """Hold ``at_c`` for ``duration_s`` of counted time.

    Time counts only while the furnace is within ``band_c`` of the setpoint (holdback).
    Out of band for longer than ``max_holdback_s`` in total holds the run with an alarm.
    """

    kind: Literal["dwell"] = "dwell"
    at_c: float
    duration_s: float
    band_c: float
    max_holdback_s: float
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetGas(_StepBase):
    """Set the complete gas state: listed gases to their flows, every other MFC to zero."""

    kind: Literal["gas"] = "gas"
    flows_sccm: tuple[tuple[str, float], ...]

    @property
    def flow_map(self) -> dict[str, float]:
        """The flows as a dict, gas name -> sccm."""
        return dict(self.flows_sccm)


@dataclass(frozen=True, slots=True, kw_only=True)
class Purge(_StepBase):
    """Flow ``gas`` alone at ``flow_sccm`` for ``volumes`` tube volumes.

    ``duration_s`` = volumes * tube volume / flow, computed by the compiler from the station.
    Time counts only while the measured flow is at least 90 % of the setpoint. With
    ``o2_max_ppm`` set, the purge also waits until the O2 reading is at or below it, giving up
    (hold with an alarm) after ``timeout_s``.
    """

    kind: Literal["purge"] = "purge"
    gas: str
    flow_sccm: float
    volumes: float
    duration_s: float
    o2_max_ppm: float | None = None
    timeout_s: float = 0.0


#: What an operator step does with the sample: put it in, take it out to wash it and put
#: it back, take it out for good, or nothing (a check, a note).
SAMPLE_ACTIONS: Final = ("load", "wash", "unload", "none")
#: What a step-data field means, whatever its name: the yields and the simulator read the
#: role. ``sample_g`` is the sample weighed at this step, after the step's own action.
STEP_DATA_ROLES: Final = ("precursor_g", "acid_g", "sample_g", "washes", "ph", "note")

StepValue = float | int | str


@dataclass(frozen=True, slots=True)
class StepField:
    """One value an operator step asks for: a number (with ``unit`` and inclusive bounds),
    an integer (bounds) or a line of text (``max_chars``)."""

    name: str
    kind: Literal["number", "integer", "text"] = "number"
    unit: str = ""
    min: float | None = None
    max: float | None = None
    required: bool = True
    role: str | None = None
    description: str = ""
    max_chars: int = 200

    def parse(self, raw: object) -> StepValue:
        """``raw`` (the text typed after ``--set NAME=``, or a JSON number or string) as
        this field's value; raises ``ValueError`` with the rule it breaks."""
        if self.kind == "text":
            text = str(raw).strip()
            if not text:
                raise ValueError("is empty")
            if len(text) > self.max_chars or not text.isprintable():
                raise ValueError(f"must be at most {self.max_chars} printable characters "
                                 "on one line")
            return text
        value = _number(raw, integer=self.kind == "integer")
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and value < self.min:
            raise ValueError(f"{_fmt(value)}{unit} is below the minimum {_fmt(self.min)}{unit}")
        if self.max is not None and value > self.max:
            raise ValueError(f"{_fmt(value)}{unit} is above the maximum {_fmt(self.max)}{unit}")
        return value

    def describe(self) -> str:
        """``mass_after_wash_g (g, 0.01-50)``: the field as a prompt names it."""
        if self.kind == "text":
            what = "text"
        else:
            lo = "" if self.min is None else _fmt(self.min)
            hi = "" if self.max is None else _fmt(self.max)
            bounds = f"{lo}-{hi}" if lo or hi else ""
            what = ", ".join(x for x in (self.unit or self.kind, bounds) if x)
        return f"{self.name} ({what}{'' if self.required else ', optional'})"


def _fmt(value: float) -> str:
    return f"{value:g}"


def _number(raw: object, *, integer: bool) -> float | int:
    if isinstance(raw, bool):
        raise ValueError("is not a number")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ValueError(f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if integer:
        if value != int(value):
            raise ValueError(f"{_fmt(value)} is not a whole number")
        return int(value)
    return value


def check_step_data(fields: tuple[StepField, ...], data: Mapping[str, object]
                    ) -> dict[str, StepValue]:
    """``data`` checked against ``fields``: every required field given, none unknown, each
    value parsed and within bounds. Raises ``ValueError`` naming the field and the rule."""
    by_name = {f.name: f for f in fields}
    unknown = sorted(set(data) - set(by_name))
    if unknown:
        asks = ", ".join(by_name) or "nothing"
        raise ValueError(f"{unknown[0]}: this step does not ask for it (it asks for: {asks})")
    out: dict[str, StepValue] = {}
    for f in fields:
        if f.name not in data:
            if f.required:
                raise ValueError(f"{f.name}: missing (this step needs {f.describe()}; "
                                 f"give it as --set {f.name}=VALUE)")
            continue
        try:
            out[f.name] = f.parse(data[f.name])
        except ValueError as exc:
            raise ValueError(f"{f.name}: {exc}") from None
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorStep(_StepBase):
    """Wait for an operator to confirm ``message``, with the values ``fields`` ask for.

    With ``opens_tube``, the furnace must be at or below ``max_c`` first; from then on the
    flows are ``open_flows_sccm`` (the station's open-tube rule: a low inert purge or off),
    and the tube counts as full of air afterwards (the next inert heating needs a fresh
    purge). ``sample_action`` says what happens to the sample (``SAMPLE_ACTIONS``).
    ``expected_s`` is how long a person is expected to take once the step may begin (the
    tube cool enough to open): a simulated operator confirms after that much process time.
    """

    kind: Literal["operator"] = "operator"
    message: str
    opens_tube: bool = False
    max_c: float | None = None
    sample_action: str = "none"
    fields: tuple[StepField, ...] = ()
    open_flows_sccm: tuple[tuple[str, float], ...] | None = None
    expected_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cool(_StepBase):
    """Ramp the setpoint down to ``to_c`` at ``rate_c_per_min``, then wait for the furnace
    to follow (natural cooling is slower than the ramp at low temperature)."""

    kind: Literal["cool"] = "cool"
    to_c: float
    rate_c_per_min: float


@dataclass(frozen=True, slots=True, kw_only=True)
class End(_StepBase):
    """End of the recipe: setpoint to ambient at the cooling limit, inert gas stays on."""

    kind: Literal["end"] = "end"


Step = Ramp | Dwell | SetGas | Purge | OperatorStep | Cool | End


@dataclass(frozen=True, slots=True)
class Stage:
    """A named group of steps under one atmosphere (a gas name from the station)."""

    name: str
    atmosphere: str
    guard: ExothermGuard | None = None


@dataclass(frozen=True, slots=True)
class Material:
    """What is in the boat: precursor, acid loading and mass (g). ``acid_wt`` is g of
    phosphoric-acid reagent (85 % H3PO4) per 100 g of precursor (decision 0011)."""

    precursor: str
    acid_wt: float
    mass_g: float

    @property
    def precursor_g(self) -> float:
        """Precursor (as received) in the loaded mass, g: ``mass_g / (1 + acid_wt/100)``."""
        return self.mass_g / (1.0 + self.acid_wt / 100.0)

    @property
    def acid_g(self) -> float:
        """Phosphoric-acid reagent in the loaded mass, g."""
        return self.mass_g - self.precursor_g


@dataclass(frozen=True, slots=True)
class Plan:
    """A recipe compiled against one station: everything the runner needs, nothing more."""

    recipe_name: str
    sample_name: str
    stages: tuple[Stage, ...]
    steps: tuple[Step, ...]
    parameters: MappingProxyType[str, float] = field(
        default_factory=lambda: MappingProxyType({}))
    material: Material | None = None
    notes: tuple[str, ...] = ()
    """What the compiler changed from the recipe, one line each (a ramp capped to the
    instrument's fallback rate), for ``furnace plan``/``validate`` and the batch record."""

    def stage(self, name: str) -> Stage:
        """The stage called ``name``. Raises ``KeyError`` if there is none."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)
