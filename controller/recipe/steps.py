"""The compiled plan: frozen steps the runner executes, in the order they run.

Not here: how a recipe becomes a plan (``plan``) or how steps are executed (``runner``).
Every temperature is °C, every duration seconds, every flow sccm. A plan is data, so it can
be summarised and checked against a station before anything moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

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
    "Stage",
    "Step",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorStep(_StepBase):
    """Wait for an operator to confirm ``message``.

    With ``opens_tube``, the furnace must be at or below ``max_c`` first, and the tube counts
    as full of air afterwards (so the next inert heating needs a fresh purge).
    """

    kind: Literal["operator"] = "operator"
    message: str
    opens_tube: bool = False
    max_c: float | None = None


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
    """What is in the boat: precursor, H3PO4 loading (wt%) and mass (g)."""

    precursor: str
    acid_wt: float
    mass_g: float


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
