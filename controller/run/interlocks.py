"""Software interlocks: small pure evaluations of one snapshot. The second line of defence.

Not here: actions (the runner carries out the verdict) or hardware limits: the controller's
own alarms and the independent over-temperature cut-out are the first line and must exist.
Stale readings count as failing: a device that stops answering is judged by what its
silence means for safety, never by its last value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from controller.recipe.station import Station
from controller.recipe.steps import ExothermGuard
from controller.run.snapshot import Snapshot

__all__ = ["CHECKS", "COMMS_LOSS_CYCLES", "FOREIGN_CHANGES_HOLD", "Context", "Severity",
           "Verdict", "evaluate", "worst"]


class Severity(IntEnum):
    """What a tripped interlock asks for, in increasing order of force."""

    OK = 0
    NOTE = 1  # record it (onset and clear); nothing else changes
    PAUSE = 2  # stop the ramp for now; it continues by itself once the reading clears
    HOLD = 3  # freeze the program, keep the furnace where it is
    ABORT = 4  # controlled cool-down under inert gas, batch fails
    HALT = 5  # heater off at once, inert gas on, batch faulted


@dataclass(frozen=True, slots=True)
class Context:
    """What the interlocks need to know of the runner, from the previous cycle."""

    setpoint_c: float
    inert_unpurged: bool  # only inert gas flows, and it has not yet purged the tube
    guard: ExothermGuard | None = None  # the stage's exotherm guard while air flows
    ramp_paused: bool = False  # the guard paused the ramp last cycle (for hysteresis)
    active: bool = True  # a recipe is running (preflight to the end of a cool-down)
    inert_purged: bool = False  # only inert gas flows and the tube is purged
    flows_sccm: tuple[tuple[str, float], ...] = ()  # commanded flows
    heating: bool = True  # the runner is ramping the setpoint up


@dataclass(frozen=True, slots=True)
class Verdict:
    """One tripped interlock: name, severity, the reading, the limit and why, and the
    policy that goes with it, so the runner never matches interlock names."""

    interlock: str
    severity: Severity
    measured: float
    limit: float
    justification: str
    cut_heat: bool = False  # a hold that must also take the heat away
    gas: str = ""  # the gas a flow verdict is about
    auto_resume_after_s: float | None = None  # a hold that lifts itself once clear this long
    instrument_fallback: bool = False  # a halt that leaves the heat to the instrument's own
    # fallback (it cannot be reached to switch the heater off)
    reconfigure_on_resume: bool = False  # the instrument was changed: re-apply on resume
    resumable: bool = False  # a halt that leaves the batch to ``furnace resume``, unended


Check = Callable[[Snapshot, Context, Station], Iterator[Verdict]]

# Consecutive failed polls of a device before it counts as lost (faults.md C1).
COMMS_LOSS_CYCLES = 3
COMMS_LOSS_HALT_S = 30.0  # T_comm: stale this long, give the line up (faults.md C1)
OVER_TEMPERATURE_CYCLES = 2  # two readings in a row: one spike must not abort a batch
PV_FROZEN_S = 20.0  # a live thermocouple is never bit-identical this long (S3)
HEATER_OPEN_S = 600.0  # full output this long with too little rise: loop break (A2)
HEATER_OPEN_RISE_C = 5.0
# A1: zero output for 3 thermocouple lags (τ_tc 60 s, hardware.md §4.4: the reading
# catches up with the core for that long after the heat stops) and still rising.
HEATER_STUCK_S = 180.0
HEATER_STUCK_RATE_C_PER_MIN = 2.0
HEATER_STUCK_MARGIN_C = 10.0
# The sample lags the control thermocouple by rate × τ_s when the furnace moves; judge
# their disagreement only while the furnace is steady.
TC_STEADY_RATE_C_PER_MIN = 1.0
FLOW_LOST_S = 30.0  # a commanded flow short for this long is lost (G1, G5)
TC_DISAGREE_C = 30.0  # sample and control thermocouples apart by this much in inert gas
O2_LIMIT_PPM = 1000.0  # in a purged inert tube (G7); the purge floor is a few ppm
_AIR_FLOW_FRACTION = 0.01  # oxidising flow above this fraction of full scale is "flowing"
_HEATING_MARGIN_C = 5.0
# An instrument setting we wrote, changed by someone else this many times: hold. Once is
# rewritten with an alarm (a power cycle, a hand at the front panel); twice is another
# program that will go on writing, and two masters fighting over one setpoint would only
# make the trace meaningless.
FOREIGN_CHANGES_HOLD = 2
# Holds for a lost flow, oxygen in the tube or stale readings lift themselves after the
# condition has been clear this long; every other hold waits for a person.
AUTO_RESUME_SETTLE_S = 60.0


def over_temperature(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Furnace above the station maximum on two readings in a row: abort, latched."""
    limit = station.envelope.max_temperature_c
    if snap.health.over_limit_cycles >= OVER_TEMPERATURE_CYCLES:
        yield Verdict("over_temperature", Severity.ABORT, snap.furnace_c, limit,
                      "furnace above the station maximum")


def air_above_limit(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Oxidising gas flowing while the furnace is above the air limit: abort."""
    limit = station.envelope.air_max_c
    if not snap.furnace_c > limit:
        return
    for mfc in station.mfc:
        flow = snap.flow_sccm(mfc.gas)
        if mfc.oxidising and flow > _AIR_FLOW_FRACTION * mfc.full_scale_sccm:
            yield Verdict("air_above_limit", Severity.ABORT, snap.furnace_c, limit,
                          f"{mfc.gas} flowing at {flow:.0f} sccm above the air limit")
            return


def heating_unpurged(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Heating under inert gas before the purge is complete: hold."""
    if ctx.inert_unpurged and ctx.heating and \
            ctx.setpoint_c > snap.furnace_c + _HEATING_MARGIN_C:
        yield Verdict("heating_unpurged", Severity.HOLD, ctx.setpoint_c, snap.furnace_c,
                      "heating under inert gas before the purge is complete")


def comms_loss(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Devices that stopped answering. The furnace controller: halt (its own remote-
    setpoint timeout takes it to the local setpoint). An MFC: its flow is unverified, as a
    lost flow (see ``flow_lost``). Balance, O2, sample thermocouple: recorded; the batch
    goes on without the channel."""
    failures = snap.failures.get("furnace", 0)
    halt_cycles = max(COMMS_LOSS_CYCLES, math.ceil(COMMS_LOSS_HALT_S / station.scan_period_s))
    if failures >= halt_cycles:
        yield Verdict("comms_loss", Severity.HALT, failures, halt_cycles,
                      f"no valid reply from the furnace controller for "
                      f"{failures * station.scan_period_s:.0f} s", instrument_fallback=True,
                      resumable=True)
    elif failures >= COMMS_LOSS_CYCLES:
        yield Verdict("comms_stale", Severity.HOLD, failures, COMMS_LOSS_CYCLES,
                      "furnace controller not answering: readings stale, holding",
                      auto_resume_after_s=AUTO_RESUME_SETTLE_S)
    for name in ("balance", "o2", "sample_tc"):
        count = snap.failures.get(name, 0)
        if count >= COMMS_LOSS_CYCLES:
            yield Verdict(f"comms_loss:{name}", Severity.NOTE, count, COMMS_LOSS_CYCLES,
                          f"{name} not answering: its channel is missing from the trace")


def sensor_fault(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """The controller reports sensor break or PV over-range: the PV cannot be trusted."""
    reading = snap.furnace
    if reading is not None and (reading.is_sensor_break or reading.is_over_range):
        what = "sensor break" if reading.is_sensor_break else "PV over-range"
        yield Verdict("sensor_fault", Severity.HALT, reading.temperature_c, math.nan,
                      f"controller reports {what}")


def pv_plausibility(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """A frozen PV (dead ADC, stale register) halts; a single spike is rejected and noted."""
    h = snap.health
    if snap.furnace is not None and h.pv_unchanged_s >= PV_FROZEN_S:
        yield Verdict("pv_frozen", Severity.HALT, h.pv_unchanged_s, PV_FROZEN_S,
                      "furnace PV bit-identical: the thermocouple reading is not live")
    if h.pv_spike:
        yield Verdict("pv_spike", Severity.NOTE, snap.furnace_c, math.nan,
                      "implausible PV jump rejected; the last good value is used")


def heater_faults(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Loop-break monitors: full output without a rise (heater open), or a rise with zero
    output (heater stuck on, which only the hardware cut-out can stop)."""
    h, reading = snap.health, snap.furnace
    if reading is None:
        return
    if h.full_output_s >= HEATER_OPEN_S and h.full_output_rise_c < HEATER_OPEN_RISE_C:
        yield Verdict("heater_open", Severity.ABORT, h.full_output_rise_c, HEATER_OPEN_RISE_C,
                      f"output at 100 % for {h.full_output_s / 60:.0f} min and the furnace "
                      "did not rise: heater, contactor or limit open")
    rate = h.furnace_rate_c_per_min
    if (h.zero_output_s >= HEATER_STUCK_S and rate is not None
            and rate > HEATER_STUCK_RATE_C_PER_MIN
            and reading.temperature_c > reading.working_setpoint_c + HEATER_STUCK_MARGIN_C):
        yield Verdict("heater_stuck", Severity.HALT, rate, HEATER_STUCK_RATE_C_PER_MIN,
                      "furnace rising with zero output: heater stuck on; the hardware "
                      "over-temperature cut-out must act")


def flow_lost(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """A commanded flow short (empty bottle, stuck MFC, MFC silent). An inert gas while
    the furnace is above the air limit: abort to a cool-down under another inert gas;
    otherwise hold (no heating without verified gas)."""
    hot = snap.furnace_c > station.envelope.air_max_c or math.isnan(snap.furnace_c)
    for gas, short_s in snap.health.flow_short_s.items():
        if short_s < FLOW_LOST_S:
            continue
        mfc = station.gas(gas)
        inert = mfc is not None and not mfc.oxidising
        severity = Severity.ABORT if inert and hot else Severity.HOLD
        yield Verdict(f"flow_lost:{gas}", severity, snap.flow_sccm(gas),
                      dict(ctx.flows_sccm).get(gas, math.nan),
                      f"{gas} flow short of its setpoint for {short_s:.0f} s", gas=gas,
                      auto_resume_after_s=AUTO_RESUME_SETTLE_S)


def atmosphere(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """O2 in a purged inert tube (a leak, back-diffusion): abort when hot, hold when not."""
    if not ctx.inert_purged or snap.o2_ppm is None or not snap.o2_ppm > O2_LIMIT_PPM:
        return
    hot = snap.furnace_c > station.envelope.air_max_c
    yield Verdict("o2_high", Severity.ABORT if hot else Severity.HOLD, snap.o2_ppm,
                  O2_LIMIT_PPM, "oxygen in the purged inert tube: leak or back-diffusion",
                  auto_resume_after_s=AUTO_RESUME_SETTLE_S)


def thermocouples_disagree(snap: Snapshot, ctx: Context, station: Station
                           ) -> Iterator[Verdict]:
    """Sample and control thermocouples far apart in inert gas (no exotherm to explain
    it): the control thermocouple drifts, and the furnace may be hotter than it reads."""
    delta, rate = snap.delta_t_c, snap.health.furnace_rate_c_per_min
    if delta is None or not ctx.inert_purged or abs(delta) <= TC_DISAGREE_C:
        return
    if rate is None or abs(rate) > TC_STEADY_RATE_C_PER_MIN:
        return
    yield Verdict("tc_disagree", Severity.ABORT, delta, TC_DISAGREE_C,
                  "sample and control thermocouples disagree: drift or a failing sensor")


def instrument_state(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Someone (front panel) or something (a power cycle) changed the instrument: hold,
    do not fight the operator; resuming re-applies our configuration."""
    reading = snap.furnace
    if reading is None or not ctx.active:
        return
    if reading.is_manual:
        yield Verdict("front_panel_manual", Severity.HOLD, reading.output_pct, math.nan,
                      "controller in manual mode: changed at the instrument",
                      reconfigure_on_resume=True)
    elif not reading.is_remote_selected:
        yield Verdict("remote_setpoint_lost", Severity.HOLD, reading.working_setpoint_c,
                      ctx.setpoint_c, "controller left the remote setpoint: front panel "
                      "or instrument power cycle", reconfigure_on_resume=True)


def foreign_writer(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """Another program keeps changing a setting we wrote: hold and leave the instrument as
    it was found until a person has found the other writer; resuming re-applies ours."""
    if not ctx.active:
        return
    for change in snap.foreign_changes.values():
        if change.count < FOREIGN_CHANGES_HOLD:
            continue
        times = "twice" if change.count == 2 else f"{change.count} times"
        yield Verdict("foreign_writer", Severity.HOLD, change.found, change.ours,
                      f"{change.device} {change.what} changed by another program {times} "
                      f"({change.ours:g} -> {change.found:g} {change.unit}): another "
                      "controller or program writes to this instrument; find it before "
                      "resuming", reconfigure_on_resume=True)
        return


def exotherm_guard(snap: Snapshot, ctx: Context, station: Station) -> Iterator[Verdict]:
    """A runaway exotherm while air flows: ΔT past the cut limit holds the run and cuts
    the heat; ΔT (or its rise) past the stop limits pauses the ramp."""
    guard, delta_c = ctx.guard, snap.delta_t_c
    if guard is None or delta_c is None:
        return
    if delta_c > guard.cut_delta_c:
        yield Verdict("exotherm_cut", Severity.HOLD, delta_c, guard.cut_delta_c,
                      "sample far hotter than the furnace: runaway exotherm, heat cut",
                      cut_heat=True)
        return
    scale = _GUARD_HYSTERESIS_FRACTION if ctx.ramp_paused else 1.0
    if delta_c > guard.stop_delta_c * scale:
        yield Verdict("exotherm_guard", Severity.PAUSE, delta_c, guard.stop_delta_c * scale,
                      "sample hotter than the furnace: ramp stopped")
        return
    rate = snap.delta_t_rate_c_per_min
    if rate is not None and rate > guard.stop_rate_c_per_min * scale:
        yield Verdict("exotherm_rate", Severity.PAUSE, rate,
                      guard.stop_rate_c_per_min * scale, "exotherm rising fast: ramp stopped")


# The guard's ramp pause clears only this far below its trip values (hysteresis).
_GUARD_HYSTERESIS_FRACTION = 0.8

CHECKS: tuple[Check, ...] = (over_temperature, air_above_limit, heating_unpurged,
                             comms_loss, sensor_fault, pv_plausibility, heater_faults,
                             flow_lost, atmosphere, thermocouples_disagree, instrument_state,
                             foreign_writer, exotherm_guard)


def evaluate(snap: Snapshot, ctx: Context, station: Station) -> list[Verdict]:
    """Every tripped interlock for this snapshot, most severe first."""
    verdicts = [v for check in CHECKS for v in check(snap, ctx, station)]
    verdicts.sort(key=lambda v: v.severity, reverse=True)
    return verdicts


def worst(verdicts: list[Verdict]) -> Severity:
    """The highest severity among ``verdicts`` (OK if none)."""
    return verdicts[0].severity if verdicts else Severity.OK
