"""Compiling a resolved recipe against a station into a ``Plan``, and loading a recipe file.

The compiler walks the recipe as the furnace would (setpoint, gases, whether the tube still
holds air) and rejects, before anything moves, whatever the station's envelope or the
process's safety rules forbid (reference/hardware.md §4.2, §4.5, §6.2, §6.4).

Not here: the models (``schema``), parameters (``parameters``), running a plan
(``run.runner``), a plan's durations, peak and gas use (``summary``, whose ``summarize`` and
``PlanSummary`` are re-exported here for their callers).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import cast

from controller.errors import RecipeError
from controller.recipe.parameters import ResolvedRecipe, frozen_toml, path_key, resolve, sample_name
from controller.recipe.schema import (
    CoolSpec,
    DwellSpec,
    EndSpec,
    GasSpec,
    OperatorSpec,
    PurgeSpec,
    RampSpec,
    StageSpec,
    format_number,
)
from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import (
    Cool,
    Dwell,
    End,
    Endpoint,
    ExothermGuard,
    Material,
    OperatorStep,
    Plan,
    Purge,
    Ramp,
    SetGas,
    Stage,
    Step,
    StepField,
)
from controller.recipe.summary import PlanSummary, StageSummary, summarize
from controller.recipe.validation import read_text
from controller.text import span

__all__ = ["PlanSummary", "StageSummary", "compile_plan", "load_recipe", "summarize"]

# A purge with an O2 limit but no timeout_min gives up after this many times its volume time.
O2_TIMEOUT_FACTOR = 3.0
# The longest a step may last (a week: a 0.1 °C/min ramp over 1000 K still fits) and the
# longest a whole plan may last. Longer means a typo (volumes = 1e308, rate 1e-9), and
# beyond them durations stop being numbers a disk estimate or a clock can use.
MAX_STEP_S = 7 * 24 * 3600.0
MAX_PLAN_S = 30 * 24 * 3600.0
_RATE_TOLERANCE = 1e-9  # relative; a ramp by time may land a hair above the limit


def _n(value: float) -> str:
    if value != 0 and abs(value) < 0.01:  # 1e-300 is not 0
        return f"{value:.3g}"
    return format_number(round(value, 2))


@dataclass(slots=True)
class _Walk:
    """What the furnace would be doing at this point of the recipe."""

    setpoint_c: float
    flows_sccm: dict[str, float] = field(default_factory=dict)  # gases flowing (> 0) only
    holds_air: bool = True  # the tube starts full of air
    air_since: str = "the start of the recipe"


class _Compiler:
    def __init__(self, resolved: ResolvedRecipe, station: Station, source: str) -> None:
        self.station = station
        self.env = station.envelope
        self.source = source
        self.walk = _Walk(setpoint_c=self.env.ambient_c)
        self.recipe = resolved.recipe
        self.fallback_rate = fallback_rate_c_per_min(station)
        self.notes: list[str] = []

    def fail(self, where: str, rule: str) -> RecipeError:
        return RecipeError(f"{rule} (station {self.station.name})", source=self.source,
                           field=where)

    def gas_names(self) -> str:
        return ", ".join(m.gas for m in self.station.mfc)

    def check_duration(self, where: str, duration_s: float, what: str) -> None:
        """A step (or its timeout) must end: at most ``MAX_STEP_S``, and finite."""
        if not duration_s <= MAX_STEP_S:  # also NaN and inf
            raise self.fail(where, f"{what} takes {span(duration_s)}, longer than the "
                                   f"{span(MAX_STEP_S)} one step may last")

    def check_gas(self, where: str, gas: str, flow_sccm: float) -> None:
        mfc = self.station.gas(gas)
        if mfc is None:
            raise self.fail(where, f"gas {gas!r} is not on this station; it has "
                                   f"{self.gas_names()}")
        if flow_sccm > mfc.full_scale_sccm:
            raise self.fail(where, f"{_n(flow_sccm)} sccm of {gas} is above its MFC's full "
                                   f"scale of {_n(mfc.full_scale_sccm)} sccm")

    def oxidising_flowing(self, flows: dict[str, float]) -> list[str]:
        return [g for g in flows if (m := self.station.gas(g)) is not None and m.oxidising]

    def check_oxidising(self, where: str, flows: dict[str, float], temperature_c: float,
                        doing: str) -> None:
        ox = self.oxidising_flowing(flows)
        if ox and temperature_c > self.env.air_max_c:
            raise self.fail(where, f"{doing} with oxidising gas {', '.join(ox)} flowing at "
                                   f"{_n(temperature_c)} °C; oxidising gas is forbidden "
                                   f"above {_n(self.env.air_max_c)} °C")

    def check_atmosphere(self, where: str, stage: StageSpec, doing: str) -> None:
        flowing = sorted(self.walk.flows_sccm)
        if flowing != [stage.atmosphere]:
            now = ", ".join(flowing) if flowing else "no gas"
            raise self.fail(where, f"{doing} with {now} flowing, but stage {stage.name!r} "
                                   f"has atmosphere = {stage.atmosphere!r}; set that gas "
                                   "alone before heating")

    def check_temperature(self, where: str, to_c: float) -> None:
        if to_c > self.env.max_temperature_c:
            raise self.fail(where, f"{_n(to_c)} °C is above the maximum temperature of "
                                   f"{_n(self.env.max_temperature_c)} °C")
        if to_c < self.env.ambient_c:
            raise self.fail(where, f"{_n(to_c)} °C is below ambient "
                                   f"({_n(self.env.ambient_c)} °C), which the furnace "
                                   "cannot reach")

    def cap(self, where: str, what: str, rate: float, heating: bool) -> float:
        """``rate`` (°C/min), or the instrument's fallback rate if that is lower, with a note.

        The instrument has one rate limit, up and down, and it is what the furnace falls
        back at when the PC dies, so it stays at the fallback rate in every step (decision
        0005): a faster ramp would leave the instrument behind the plan.
        """
        fallback = self.fallback_rate
        if not rate > fallback * (1 + _RATE_TOLERANCE):
            return rate
        limit = _n(self.env.max_cooling_rate_c_per_min)
        why = (f"the instrument falls back at its single rate limit, which must keep the "
               f"furnace within the station's {limit} °C/min cooling limit" if heating else
               f"the instrument's single rate limit is its fallback rate, which must keep "
               f"the furnace within the station's {limit} °C/min cooling limit")
        self.notes.append(f"{where}: {what} capped from {_n(rate)} to {_n(fallback)} "
                          f"°C/min: {why}")
        return fallback

    # --- one method per step kind; each returns the compiled step -------------------

    def ramp(self, where: str, stage: StageSpec, spec: RampSpec) -> Ramp:
        walk = self.walk
        from_c, to_c = walk.setpoint_c, spec.to_c
        self.check_temperature(f"{where}.to_c", to_c)
        if spec.duration_min is None:  # by rate (the model guarantees exactly one of two)
            rate, rate_field = cast(float, spec.rate_c_per_min), f"{where}.rate_c_per_min"
            self.check_duration(rate_field, abs(to_c - from_c) / rate * 60.0,
                                f"ramping {_n(from_c)} -> {_n(to_c)} °C at {_n(rate)} °C/min")
        else:
            self.check_duration(f"{where}.duration_min", spec.duration_min * 60.0, "the ramp")
            rate, rate_field = abs(to_c - from_c) / spec.duration_min, f"{where}.duration_min"
            if rate == 0:
                raise self.fail(rate_field, f"a ramp by time to {_n(to_c)} °C, the setpoint "
                                            "already in force, is a dwell; use kind = 'dwell'")
        requested = rate
        if to_c > from_c:
            limit = self.env.max_rate_between(from_c, to_c)
            if rate > limit * (1 + _RATE_TOLERANCE):
                raise self.fail(rate_field, f"heating {_n(from_c)} -> {_n(to_c)} °C at "
                                            f"{_n(rate)} °C/min is faster than the "
                                            f"{_n(limit)} °C/min allowed over that span")
            self.check_oxidising(f"{where}.to_c", walk.flows_sccm, to_c,
                                 f"heating to {_n(to_c)} °C")
            self.check_atmosphere(where, stage, f"heating to {_n(to_c)} °C")
            if walk.holds_air and not self.oxidising_flowing(walk.flows_sccm):
                gas = ", ".join(walk.flows_sccm)
                raise self.fail(where, f"heating to {_n(to_c)} °C under {gas}, but the tube "
                                       f"has held air since {walk.air_since} and no purge "
                                       "has completed; add a purge step before heating")
        elif to_c < from_c:
            self.check_cooling(rate_field, from_c, to_c, rate)
        rate = self.cap(rate_field, f"ramp to {_n(to_c)} °C", rate, heating=to_c > from_c)
        label = f"ramp to {_n(to_c)} °C at {_n(rate)} °C/min"
        if rate != requested:
            label += f" (capped from {_n(requested)})"
            self.check_duration(rate_field, abs(to_c - from_c) / rate * 60.0,
                                f"ramping {_n(from_c)} -> {_n(to_c)} °C at {_n(rate)} °C/min")
        walk.setpoint_c = to_c
        return Ramp(stage=stage.name, label=label, to_c=to_c, rate_c_per_min=rate)

    def check_cooling(self, where: str, from_c: float, to_c: float, rate: float) -> None:
        limit = self.env.max_cooling_rate_c_per_min
        if rate > limit * (1 + _RATE_TOLERANCE):
            raise self.fail(where, f"cooling {_n(from_c)} -> {_n(to_c)} °C at {_n(rate)} "
                                   f"°C/min is faster than the {_n(limit)} °C/min allowed")

    def cool(self, where: str, stage: StageSpec, spec: CoolSpec) -> Cool:
        from_c = self.walk.setpoint_c
        self.check_temperature(f"{where}.to_c", spec.to_c)
        if spec.to_c >= from_c:
            raise self.fail(f"{where}.to_c", f"cool to {_n(spec.to_c)} °C is not below the "
                                             f"setpoint in force ({_n(from_c)} °C); use a ramp")
        rate_field, requested = f"{where}.rate_c_per_min", spec.rate_c_per_min
        self.check_cooling(rate_field, from_c, spec.to_c, requested)
        rate = self.cap(rate_field, f"cool to {_n(spec.to_c)} °C", requested, heating=False)
        self.check_duration(rate_field, (from_c - spec.to_c) / rate * 60.0,
                            f"cooling {_n(from_c)} -> {_n(spec.to_c)} °C at {_n(rate)} °C/min")
        label = f"cool to {_n(spec.to_c)} °C at {_n(rate)} °C/min"
        if rate != requested:
            label += f" (capped from {_n(requested)})"
        self.walk.setpoint_c = spec.to_c
        return Cool(stage=stage.name, to_c=spec.to_c, rate_c_per_min=rate, label=label)

    def dwell(self, where: str, stage: StageSpec, spec: DwellSpec) -> Dwell:
        at_c = self.walk.setpoint_c
        if at_c > self.env.ambient_c:
            self.check_atmosphere(where, stage, f"dwelling at {_n(at_c)} °C")
        holdback_min = (spec.max_holdback_min if spec.max_holdback_min is not None
                        else self.env.max_holdback_default_min)
        self.check_duration(f"{where}.max_holdback_min", holdback_min * 60.0,
                            "waiting for the furnace to come into band")
        endpoint, ep = None, spec.endpoint
        if ep is None:
            duration_min = cast(float, spec.duration_min)
            self.check_duration(f"{where}.duration_min", duration_min * 60.0, "the dwell")
            label = f"dwell {_n(duration_min)} min at {_n(at_c)} °C (±{_n(spec.band_c)} °C)"
        else:
            if self.station.balance is None:
                raise self.fail(f"{where}.endpoint", "a DTG endpoint needs a balance, and "
                                                     "this station has none")
            duration_min = ep.max_duration_min
            self.check_duration(f"{where}.endpoint.max_duration_min", duration_min * 60.0,
                                "the dwell")
            endpoint = Endpoint(dtg_below_pct_per_min=ep.dtg_below_pct_per_min,
                                for_s=ep.for_min * 60.0, min_s=ep.min_duration_min * 60.0)
            label = (f"dwell at {_n(at_c)} °C until |DTG| < {_n(ep.dtg_below_pct_per_min)} "
                     f"%/min for {_n(ep.for_min)} min ({_n(ep.min_duration_min)}-"
                     f"{_n(ep.max_duration_min)} min)")
        return Dwell(stage=stage.name, at_c=at_c, duration_s=duration_min * 60.0,
                     band_c=spec.band_c, max_holdback_s=holdback_min * 60.0,
                     endpoint=endpoint, label=label)

    def gas(self, where: str, stage: StageSpec, spec: GasSpec) -> SetGas:
        for gas, flow in spec.flows_sccm.items():
            self.check_gas(f"{where}.flows_sccm.{path_key(gas)}", gas, flow)
        flows = {g: f for g, f in spec.flows_sccm.items() if f > 0}
        for gas in self.oxidising_flowing(flows):
            self.check_oxidising(f"{where}.flows_sccm.{path_key(gas)}", {gas: flows[gas]},
                                 self.walk.setpoint_c, "switching the gas")
            self.walk.holds_air, self.walk.air_since = True, f"{where} admitted {gas}"
        self.walk.flows_sccm = flows
        text = ", ".join(f"{g} {_n(f)} sccm" for g, f in flows.items()) or "all off"
        return SetGas(stage=stage.name, label=f"gas: {text}",
                      flows_sccm=tuple((g, float(f)) for g, f in spec.flows_sccm.items()))

    def purge(self, where: str, stage: StageSpec, spec: PurgeSpec) -> Purge:
        self.check_gas(f"{where}.gas", spec.gas, spec.flow_sccm)
        self.check_oxidising(f"{where}.gas", {spec.gas: spec.flow_sccm},
                             self.walk.setpoint_c, "purging")
        # Well-mixed dilution (§4.5): one tube volume per V/Q minutes.
        duration_s = spec.volumes * self.env.tube_volume_l / (spec.flow_sccm / 1000.0) * 60.0
        # 12.25 volume changes take air to 1 ppm O2 (hardware.md §4.5): with more than 50
        # the count is the mistake, otherwise the flow is.
        culprit = "volumes" if spec.volumes > 50 else "flow_sccm"
        self.check_duration(f"{where}.{culprit}", duration_s,
                            f"purging {_n(spec.volumes)} tube volumes of "
                            f"{_n(self.env.tube_volume_l)} L at {_n(spec.flow_sccm)} sccm")
        timeout_s = 0.0
        if spec.o2_max_ppm is not None:
            if self.station.o2 is None:
                raise self.fail(f"{where}.o2_max_ppm", "o2_max_ppm needs an O2 analyser and "
                                                       "this station has none")
            if spec.timeout_min is not None:
                timeout_s = spec.timeout_min * 60.0
                self.check_duration(f"{where}.timeout_min", timeout_s, "waiting for O2")
            else:
                timeout_s = min(O2_TIMEOUT_FACTOR * duration_s, max(duration_s, MAX_STEP_S))
            if timeout_s < duration_s:
                raise self.fail(f"{where}.timeout_min",
                                f"timeout of {_n(timeout_s / 60)} min is shorter than the "
                                f"purge itself ({_n(duration_s / 60)} min)")
        self.walk.flows_sccm = {spec.gas: spec.flow_sccm}
        if self.oxidising_flowing(self.walk.flows_sccm):
            self.walk.holds_air, self.walk.air_since = True, f"{where} purged with {spec.gas}"
        else:
            self.walk.holds_air = False
        o2 = f" to ≤{_n(spec.o2_max_ppm)} ppm O2" if spec.o2_max_ppm is not None else ""
        return Purge(stage=stage.name, gas=spec.gas, flow_sccm=spec.flow_sccm,
                     volumes=spec.volumes, duration_s=duration_s, o2_max_ppm=spec.o2_max_ppm,
                     timeout_s=timeout_s,
                     label=f"purge {spec.gas} {_n(spec.flow_sccm)} sccm × {_n(spec.volumes)} "
                           f"tube volumes ({_n(duration_s / 60)} min){o2}")

    def operator(self, where: str, stage: StageSpec, spec: OperatorSpec) -> OperatorStep:
        max_c = None
        if spec.opens_tube:
            max_c = self.env.open_tube_max_c
            if self.walk.setpoint_c > max_c:
                raise self.fail(f"{where}.opens_tube",
                                f"opening the tube at setpoint {_n(self.walk.setpoint_c)} °C; "
                                f"it may be opened only at or below {_n(max_c)} °C, cool first")
            self.walk.holds_air, self.walk.air_since = True, f"{where} opened the tube"
        open_flows = None
        if spec.flows_sccm is not None:
            open_flows = self.open_tube_flows(f"{where}.flows_sccm", spec.flows_sccm)
            self.walk.flows_sccm = {g: f for g, f in open_flows if f > 0}
        self.check_duration(f"{where}.expected_min", spec.expected_min * 60.0,
                            "the operator step's expected time")
        fields = tuple(StepField(name=f.name, kind=f.kind, unit=f.unit, min=f.min, max=f.max,
                                 required=f.required, role=f.role,
                                 description=f.description) for f in spec.fields)
        return OperatorStep(stage=stage.name, message=spec.message, opens_tube=spec.opens_tube,
                            max_c=max_c, label=f"operator: {spec.message.splitlines()[0]}",
                            sample_action=spec.sample_action, fields=fields,
                            open_flows_sccm=open_flows,
                            expected_s=spec.expected_min * 60.0)

    def open_tube_flows(self, where: str, flows: dict[str, float]
                        ) -> tuple[tuple[str, float], ...]:
        """The declared open-tube flows, checked against the station's rule: inert gases
        only, at most ``open_tube_max_flow_sccm`` in total (0: all gas off)."""
        for gas, flow in flows.items():
            self.check_gas(f"{where}.{path_key(gas)}", gas, flow)
            if flow > 0 and self.oxidising_flowing({gas: flow}):
                raise self.fail(f"{where}.{path_key(gas)}",
                                f"{gas} into an open tube: only an inert purge may flow "
                                "while the tube is open")
        limit = self.env.open_tube_max_flow_sccm
        total = sum(flows.values())
        if total > limit:
            rule = ("every gas off while the tube is open" if limit == 0
                    else f"at most {_n(limit)} sccm of inert gas in total")
            raise self.fail(where, f"{_n(total)} sccm into an open tube; the station's "
                                   f"open-tube rule (open_tube_max_flow_sccm) allows {rule}")
        return tuple((g, float(f)) for g, f in flows.items())

    def compile(self) -> tuple[tuple[Stage, ...], tuple[Step, ...]]:
        stages: list[Stage] = []
        steps: list[Step] = []
        for stage in self.recipe.stages:
            mfc = self.station.gas(stage.atmosphere)
            if mfc is None:
                raise self.fail(f"stages[{stage.name}].atmosphere",
                                f"gas {stage.atmosphere!r} is not on this station; it has "
                                f"{self.gas_names()}")
            guard = None
            if (g := stage.exotherm_guard) is not None:
                if self.station.sample_tc is None:
                    raise self.fail(f"stages[{stage.name}].exotherm_guard",
                                    "an exotherm guard needs a sample thermocouple, and "
                                    "this station has none")
                guard = ExothermGuard(stop_delta_c=g.stop_delta_c,
                                      stop_rate_c_per_min=g.stop_rate_c_per_min,
                                      cut_delta_c=g.cut_delta_c)
            stages.append(Stage(name=stage.name, atmosphere=stage.atmosphere, guard=guard))
            for j, spec in enumerate(stage.steps, start=1):
                where = f"stages[{stage.name}].steps[{j}]"
                match spec:
                    case RampSpec():
                        steps.append(self.ramp(where, stage, spec))
                    case CoolSpec():
                        steps.append(self.cool(where, stage, spec))
                    case DwellSpec():
                        steps.append(self.dwell(where, stage, spec))
                    case GasSpec():
                        steps.append(self.gas(where, stage, spec))
                    case PurgeSpec():
                        steps.append(self.purge(where, stage, spec))
                    case OperatorSpec():
                        steps.append(self.operator(where, stage, spec))
                    case EndSpec():
                        steps.append(End(stage=stage.name, label="end"))
        return tuple(stages), tuple(steps)


def compile_plan(resolved: ResolvedRecipe, station: Station, source: str) -> Plan:
    """Compile a resolved recipe for one station (minutes become seconds).

    Walks the recipe tracking the setpoint (from ``envelope.ambient_c``), the gases flowing
    and whether the tube still holds air, and checks every step against the envelope.

    Raises:
        RecipeError: one line naming ``source``, the field, the rule, the numbers and the
            station, for: a temperature above the station maximum or below ambient; a
            heating ramp faster than the envelope allows over its span (also a ramp by
            time); cooling faster than the cooling limit; oxidising gas flowing at or into
            a setpoint above ``air_max_c``; heating under inert gas before a purge has
            completed since the tube last held air; a stage atmosphere that is not the gas
            flowing alone while it heats or dwells hot; an unknown gas or a flow above the
            MFC's full scale; opening the tube above ``open_tube_max_c``; ``o2_max_ppm``
            without an O2 analyser; a step (or its holdback or O2 timeout) longer than
            ``MAX_STEP_S``, or a plan longer than ``MAX_PLAN_S``.
    """
    compiler = _Compiler(resolved, station, source)
    stages, steps = compiler.compile()
    m = resolved.recipe.sample_material
    material = (Material(precursor=m.precursor, acid_wt=m.acid_wt, mass_g=m.mass_g)
                if m is not None else None)
    plan = Plan(recipe_name=resolved.recipe.name, sample_name=sample_name(resolved),
                stages=stages, steps=steps, parameters=MappingProxyType(dict(resolved.values)),
                material=material, notes=tuple(compiler.notes))
    total_s = summarize(plan, station).duration_s
    if not total_s <= MAX_PLAN_S:
        raise RecipeError(f"the plan takes {span(total_s)}, longer than the "
                          f"{span(MAX_PLAN_S)} a batch may last (station {station.name})",
                          source=source, field="stages")
    return plan


def load_recipe(path: str | Path, overrides: dict[str, str] | None, station: Station
                ) -> tuple[ResolvedRecipe, Plan, str]:
    """Read, resolve and compile a recipe file; also return its frozen TOML text.

    Raises ``ConfigurationError`` (file, field, rule) for a missing, unreadable or invalid
    file, and ``RecipeError`` when it violates the station's limits.
    """
    source = str(path)
    resolved = resolve(read_text(Path(path)), source, overrides or {})
    plan = compile_plan(resolved, station, source)
    return resolved, plan, frozen_toml(resolved)
