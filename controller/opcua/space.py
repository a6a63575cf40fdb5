"""The station's OPC UA address space, shaped after LADS (OPC 30500-1), and what its
variables hold for one published ``LiveFrame``.

```
Objects/Furnace                          the station as a device (StationName, BatchId, ...)
  Components/TemperatureController       FurnaceC, WorkingSetpointC, OutputPct
  Components/MFC_<gas>                   FlowSccm, SetpointSccm (one per gas)
  Components/Balance                     MassPct, DtgPctPerMin (if the station has one)
  FunctionalUnit                         methods Hold, Resume, Stop, Abort, Confirm
    ActiveProgram                        State, Stage, StepName, StepNumber, SetpointC, ...
```

The node ids are strings in ``NAMESPACE_URI`` (``Furnace.FunctionalUnit.ActiveProgram.State``):
they are this interface's wire contract, read by ``furnace web --fleet`` (``fleet``) and by
any SCADA client. Pure: no asyncua import, no I/O; ``server`` turns the names and values
into nodes. A missing reading is NaN (a double), never a stale number.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from controller.web.feed import LiveFrame
from controller.web.state import EtaSource, alarms, runner_at, utc_text

if TYPE_CHECKING:
    from controller.recipe.station import Station
    from controller.run.handle import RecipeRunner

__all__ = ["ACTIVE_PROGRAM", "DEVICE", "FUNCTIONAL_UNIT", "METHODS", "NAMESPACE_URI",
           "Variable", "identity", "objects", "program_id", "values", "variables"]

NAMESPACE_URI: Final = "urn:furnace-controller:station"
DEVICE: Final = "Furnace"
FUNCTIONAL_UNIT: Final = f"{DEVICE}.FunctionalUnit"
ACTIVE_PROGRAM: Final = f"{FUNCTIONAL_UNIT}.ActiveProgram"
# The methods on the functional unit and their input arguments (all strings).
METHODS: Final[dict[str, tuple[str, ...]]] = {
    "Hold": ("Operator", "Reason"), "Resume": ("Operator", "Reason"),
    "Stop": ("Operator", "Reason"), "Abort": ("Operator", "Reason"),
    "Confirm": ("Operator", "Reason", "Data"),
}

Kind = Literal["double", "string", "int", "strings"]


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable: its node id (string, in ``NAMESPACE_URI``), the node id of its parent
    object, its browse name, its type and its engineering unit (for the description)."""

    node_id: str
    parent: str
    name: str
    kind: Kind
    unit: str = ""


def program_id(name: str) -> str:
    """The node id of the active program's variable ``name``."""
    return f"{ACTIVE_PROGRAM}.{name}"


def _program(station: Station) -> Iterator[tuple[str, Kind, str]]:
    yield from (("State", "string", ""), ("Stage", "string", ""), ("StepName", "string", ""),
                ("StepNumber", "int", ""), ("SetpointC", "double", "°C"),
                ("FurnaceC", "double", "°C"), ("OutputPct", "double", "%"))
    if station.sample_tc is not None:
        yield from (("SampleC", "double", "°C"), ("DeltaTC", "double", "K"))
    for mfc in station.mfc:
        yield f"Flow_{mfc.gas}_sccm", "double", "sccm"
    if station.o2 is not None:
        yield "O2ppm", "double", "ppm"
    if station.balance is not None:
        yield from (("MassPct", "double", "%"), ("DtgPctPerMin", "double", "%/min"))
    yield from (("CurrentRuntimeS", "double", "s"), ("EstimatedRuntimeS", "double", "s"),
                ("EtaUtc", "string", ""), ("Alarms", "strings", ""), ("Cycle", "int", ""))


def variables(station: Station) -> list[Variable]:
    """Every variable of ``station``'s address space, parents before children."""
    found = [Variable(f"{DEVICE}.{n}", DEVICE, n, "string")
             for n in ("StationName", "BatchId", "Sample", "Recipe")]
    tc = f"{DEVICE}.Components.TemperatureController"
    found += [Variable(f"{tc}.FurnaceC", tc, "FurnaceC", "double", "°C"),
              Variable(f"{tc}.WorkingSetpointC", tc, "WorkingSetpointC", "double", "°C"),
              Variable(f"{tc}.OutputPct", tc, "OutputPct", "double", "%")]
    for mfc in station.mfc:
        obj = f"{DEVICE}.Components.MFC_{mfc.gas}"
        found += [Variable(f"{obj}.FlowSccm", obj, "FlowSccm", "double", "sccm"),
                  Variable(f"{obj}.SetpointSccm", obj, "SetpointSccm", "double", "sccm")]
    if station.balance is not None:
        obj = f"{DEVICE}.Components.Balance"
        found += [Variable(f"{obj}.MassPct", obj, "MassPct", "double", "%"),
                  Variable(f"{obj}.DtgPctPerMin", obj, "DtgPctPerMin", "double", "%/min")]
    found += [Variable(program_id(n), ACTIVE_PROGRAM, n, kind, unit)
              for n, kind, unit in _program(station)]
    return found


def objects(station: Station) -> list[str]:
    """The objects' node ids, parents before children."""
    found = [DEVICE, f"{DEVICE}.Components", f"{DEVICE}.Components.TemperatureController"]
    found += [f"{DEVICE}.Components.MFC_{m.gas}" for m in station.mfc]
    if station.balance is not None:
        found.append(f"{DEVICE}.Components.Balance")
    return [*found, FUNCTIONAL_UNIT, ACTIVE_PROGRAM]


def identity(runner: RecipeRunner, station: Station, *, batch_id: str) -> dict[str, object]:
    """The device's fixed variables (by node id): station, batch, sample, recipe."""
    return {f"{DEVICE}.StationName": station.name, f"{DEVICE}.BatchId": batch_id,
            f"{DEVICE}.Sample": runner.plan.sample_name,
            f"{DEVICE}.Recipe": runner.plan.recipe_name}


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def values(frame: LiveFrame, runner: RecipeRunner, station: Station, eta: EtaSource,
           *, batch_id: str) -> dict[str, object]:
    """Every variable's value (by node id) at ``frame``: the numbers as the scan cycle
    read and wrote them (the trace row of the same cycle has them), the runtimes in
    process seconds, the ETA from ``eta`` (the batch's live forecast where one runs)."""
    view = runner_at(runner, frame)
    snap, run = frame.snap, frame.run
    reading = snap.furnace
    step = view.current_step
    when = eta(frame)
    remaining_s = max((when - frame.wall).total_seconds(), 0.0) if when is not None else 0.0
    program: dict[str, object] = {
        "State": str(run.phase), "Stage": view.stage_name,
        "StepName": step.label if step is not None else "",
        "StepNumber": view.step_index if step is not None else -1,
        "SetpointC": _num(run.setpoint_c), "FurnaceC": _num(snap.furnace_c),
        "OutputPct": _num(reading.output_pct if reading else None),
        "SampleC": _num(snap.sample_c), "DeltaTC": _num(snap.delta_t_c),
        "O2ppm": _num(snap.o2_ppm), "MassPct": _num(snap.mass_pct),
        "DtgPctPerMin": _num(snap.dtg_pct_per_min),
        "CurrentRuntimeS": snap.t_s, "EstimatedRuntimeS": snap.t_s + remaining_s,
        "EtaUtc": utc_text(when) or "",
        "Alarms": [f"{a['name']}: {a['detail']}" for a in alarms(frame, view)],
        "Cycle": frame.cycle,
    }
    for mfc in station.mfc:
        program[f"Flow_{mfc.gas}_sccm"] = _num(snap.flow_sccm(mfc.gas))
    out = identity(runner, station, batch_id=batch_id)
    tc = f"{DEVICE}.Components.TemperatureController"
    out[f"{tc}.FurnaceC"] = program["FurnaceC"]
    out[f"{tc}.WorkingSetpointC"] = _num(reading.working_setpoint_c if reading else None)
    out[f"{tc}.OutputPct"] = program["OutputPct"]
    for mfc in station.mfc:
        obj = f"{DEVICE}.Components.MFC_{mfc.gas}"
        out[f"{obj}.FlowSccm"] = program[f"Flow_{mfc.gas}_sccm"]
        out[f"{obj}.SetpointSccm"] = _num(run.flows_sccm.get(mfc.gas))
    out[f"{DEVICE}.Components.Balance.MassPct"] = program["MassPct"]
    out[f"{DEVICE}.Components.Balance.DtgPctPerMin"] = program["DtgPctPerMin"]
    out.update((program_id(name), value) for name, value in program.items())
    return out
