"""What a compiled plan will take, without hardware: planned durations per step and stage,
the peak setpoint and the gas use (``summarize``, ``PlanSummary``).

Not here: compiling a recipe into a plan and checking it against the station (``plan``),
what a run actually took (``analysis``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from controller.recipe.station import Station
from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Plan, Purge, Ramp, SetGas

__all__ = ["PlanSummary", "StageSummary", "summarize"]


@dataclass(frozen=True, slots=True)
class StageSummary:
    """One stage's share of a plan: planned seconds and number of steps."""

    name: str
    atmosphere: str
    duration_s: float
    steps: int


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What a plan will take: durations (s), peak setpoint (°C) and gas use (litres)."""

    recipe_name: str
    sample_name: str
    stages: tuple[StageSummary, ...]
    step_durations_s: tuple[float, ...]  # aligned with plan.steps
    duration_s: float
    peak_c: float
    gas_l: MappingProxyType[str, float]  # every station gas, standard litres
    steps: int
    notes: tuple[str, ...] = ()  # what the compiler changed (``Plan.notes``), one line each


def summarize(plan: Plan, station: Station) -> PlanSummary:
    """Planned durations, peak setpoint and gas use of a plan, without hardware.

    Ramps and cools take |Δ| / rate; dwells and purges their duration (holdback and O2 waits
    can only lengthen them); operator steps their expected time; gas changes and ``end``
    count zero time. Gas use is flow × time for every step in which the gas flows.

    This is the recipe's nominal programme (summary.json's ``planned_s``, the live view's
    progress bar before a prediction arrives). What a batch will really take comes from
    running it on the simulator: ``controller.predict`` (``furnace plan``).

    Cooling below about 400 °C is limited by natural cooling, not by the programmed rate
    (reference/hardware.md §4.4: natural cooling is slower than 5 °C/min below ~414 °C), so
    planned cool times, and the total, are lower bounds.
    """
    setpoint_c = peak_c = station.envelope.ambient_c
    flows: dict[str, float] = {}
    gas_l = {m.gas: 0.0 for m in station.mfc}
    durations: list[float] = []
    for step in plan.steps:
        duration_s = 0.0
        match step:
            case Ramp() | Cool():
                duration_s = abs(step.to_c - setpoint_c) / step.rate_c_per_min * 60.0
                setpoint_c = step.to_c
            case Dwell():
                duration_s = step.duration_s
            case SetGas():
                flows = {g: f for g, f in step.flows_sccm if f > 0}
            case Purge():
                flows = {step.gas: step.flow_sccm}
                duration_s = step.duration_s
            case OperatorStep():
                if step.open_flows_sccm is not None:  # the tube's open-tube flows
                    flows = {g: f for g, f in step.open_flows_sccm if f > 0}
                duration_s = step.expected_s
            case End():
                pass
        peak_c = max(peak_c, setpoint_c)
        for gas, flow_sccm in flows.items():
            gas_l[gas] = gas_l.get(gas, 0.0) + flow_sccm / 1000.0 * duration_s / 60.0
        durations.append(duration_s)
    stages = tuple(
        StageSummary(name=s.name, atmosphere=s.atmosphere,
                     duration_s=sum(d for d, st in zip(durations, plan.steps, strict=True)
                                    if st.stage == s.name),
                     steps=sum(1 for st in plan.steps if st.stage == s.name))
        for s in plan.stages)
    return PlanSummary(recipe_name=plan.recipe_name, sample_name=plan.sample_name,
                       stages=stages, step_durations_s=tuple(durations),
                       duration_s=sum(durations), peak_c=peak_c,
                       gas_l=MappingProxyType(gas_l), steps=len(plan.steps),
                       notes=plan.notes)
