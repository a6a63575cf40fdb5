"""Software interlocks: small pure evaluations of one snapshot. The second line of defence.

Not here: actions (the runner carries out the verdict) or hardware limits: the controller's
own alarms and the independent over-temperature cut-out are the first line and must exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from controller.snapshot import Snapshot
from controller.station import Station
from controller.steps import ExothermGuard

__all__ = ["Context", "Severity", "Verdict", "evaluate", "worst"]


class Severity(IntEnum):
    """What a tripped interlock asks for, in increasing order of force."""

    OK = 0
    PAUSE = 1  # stop the ramp for now; it continues by itself once the reading clears
    HOLD = 2  # freeze the program, keep the furnace where it is; an operator resumes
    ABORT = 3  # controlled cool-down under inert gas, batch fails
    HALT = 4  # outputs to safe at once, batch faulted


@dataclass(frozen=True, slots=True)
class Context:
    """What the interlocks need to know of the runner, from the previous cycle."""

    setpoint_c: float
    inert_unpurged: bool  # only inert gas flows, and it has not yet purged the tube
    guard: ExothermGuard | None = None  # the stage's exotherm guard while air flows
    ramp_paused: bool = False  # the guard paused the ramp last cycle (for hysteresis)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One tripped interlock: name, severity, the reading, the limit and why."""

    interlock: str
    severity: Severity
    measured: float
    limit: float
    justification: str
    cut_heat: bool = False  # a hold that must also take the heat away


Check = Callable[[Snapshot, Context, Station], Verdict | None]

# Consecutive failed polls of the furnace controller before the line counts as lost.
COMMS_LOSS_CYCLES = 3
# Oxidising flow above this fraction of full scale counts as "air is flowing".
_AIR_FLOW_FRACTION = 0.01
# Heating: commanded setpoint this far above the furnace.
_HEATING_MARGIN_C = 5.0


def over_temperature(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """Furnace above the station maximum: abort, never resumed automatically."""
    limit = station.envelope.max_temperature_c
    if snap.furnace_c > limit:
        return Verdict("over_temperature", Severity.ABORT, snap.furnace_c, limit,
                       "furnace above the station maximum")
    return None


def air_above_limit(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """Oxidising gas flowing while the furnace is above the air limit: abort."""
    limit = station.envelope.air_max_c
    if not snap.furnace_c > limit:
        return None
    for mfc in station.mfc:
        flow = snap.flow_sccm(mfc.gas)
        if mfc.oxidising and flow > _AIR_FLOW_FRACTION * mfc.full_scale_sccm:
            return Verdict("air_above_limit", Severity.ABORT, snap.furnace_c, limit,
                           f"{mfc.gas} flowing at {flow:.0f} sccm above the air limit")
    return None


def heating_unpurged(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """Heating under inert gas before the purge is complete: hold."""
    if ctx.inert_unpurged and ctx.setpoint_c > snap.furnace_c + _HEATING_MARGIN_C:
        return Verdict("heating_unpurged", Severity.HOLD, ctx.setpoint_c, snap.furnace_c,
                       "heating under inert gas before the purge is complete")
    return None


def comms_loss(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """The furnace controller has not answered for several cycles: fault."""
    failures = snap.failures.get("furnace", 0)
    if failures >= COMMS_LOSS_CYCLES:
        return Verdict("comms_loss", Severity.HALT, failures, COMMS_LOSS_CYCLES,
                       "no valid reply from the furnace controller")
    return None


def sensor_fault(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """The controller reports sensor break or PV over-range: the PV cannot be trusted."""
    reading = snap.furnace
    if reading is not None and (reading.is_sensor_break or reading.is_over_range):
        what = "sensor break" if reading.is_sensor_break else "PV over-range"
        return Verdict("sensor_fault", Severity.HALT, reading.temperature_c, math.nan,
                       f"controller reports {what}")
    return None


# The guard's ramp pause clears only this far below its trip values (hysteresis).
_GUARD_HYSTERESIS_FRACTION = 0.8


def exotherm_guard(snap: Snapshot, ctx: Context, station: Station) -> Verdict | None:
    """A runaway exotherm while air flows: ΔT past the cut limit holds the run and cuts
    the heat; ΔT (or its rise) past the stop limits pauses the ramp."""
    guard, delta_c = ctx.guard, snap.delta_t_c
    if guard is None or delta_c is None:
        return None
    if delta_c > guard.cut_delta_c:
        return Verdict("exotherm_cut", Severity.HOLD, delta_c, guard.cut_delta_c,
                       "sample far hotter than the furnace: runaway exotherm, heat cut",
                       cut_heat=True)
    scale = _GUARD_HYSTERESIS_FRACTION if ctx.ramp_paused else 1.0
    if delta_c > guard.stop_delta_c * scale:
        return Verdict("exotherm_guard", Severity.PAUSE, delta_c, guard.stop_delta_c * scale,
                       "sample hotter than the furnace: ramp stopped")
    rate = snap.delta_t_rate_c_per_min
    if rate is not None and rate > guard.stop_rate_c_per_min * scale:
        return Verdict("exotherm_rate", Severity.PAUSE, rate,
                       guard.stop_rate_c_per_min * scale,
                       "exotherm rising fast: ramp stopped")
    return None


CHECKS: tuple[Check, ...] = (over_temperature, air_above_limit, heating_unpurged,
                             comms_loss, sensor_fault, exotherm_guard)


def evaluate(snap: Snapshot, ctx: Context, station: Station) -> list[Verdict]:
    """Every tripped interlock for this snapshot, most severe first."""
    verdicts = [v for check in CHECKS if (v := check(snap, ctx, station)) is not None]
    verdicts.sort(key=lambda v: v.severity, reverse=True)
    return verdicts


def worst(verdicts: list[Verdict]) -> Severity:
    """The highest severity among ``verdicts`` (OK if none)."""
    return verdicts[0].severity if verdicts else Severity.OK
