"""Rung 1: each interlock as a pure function of a snapshot (and the monitors' health)."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from controller.recipe.station import Station
from controller.run.interlocks import (
    COMMS_LOSS_CYCLES,
    COMMS_LOSS_HALT_S,
    FLOW_LOST_S,
    HEATER_OPEN_S,
    HEATER_STUCK_S,
    O2_LIMIT_PPM,
    PV_FROZEN_S,
    TC_DISAGREE_C,
    Context,
    Severity,
    evaluate,
)
from controller.run.monitors import Health
from controller.run.snapshot import Snapshot
from drivers.roles import ControllerReading, FlowReading

CALM = Context(setpoint_c=25.0, inert_unpurged=False)
PURGED = Context(setpoint_c=600.0, inert_unpurged=False, inert_purged=True,
                 flows_sccm=(("Ar", 200.0), ("air", 0.0), ("N2", 0.0)))


def snap(furnace_c: float | None, air: float = 0.0, failures: int = 0,
         sensor_break: bool = False, health: Health | None = None, wsp_c: float | None = None,
         output_pct: float = 0.0, manual: bool = False, remote: bool = True,
         o2_ppm: float | None = None, sample_c: float | None = None,
         others: dict[str, int] | None = None) -> Snapshot:
    reading = None if furnace_c is None else ControllerReading(
        furnace_c, furnace_c if wsp_c is None else wsp_c, output_pct, manual, sensor_break,
        False, False, False, remote)
    fails = {"furnace": failures, **(others or {})}
    return Snapshot(0.0, reading, MappingProxyType({
        "Ar": FlowReading(200.0, 200.0, False), "air": FlowReading(air, air, False),
        "N2": FlowReading(0.0, 0.0, False)}), o2_ppm, MappingProxyType(fails),
        sample_c=sample_c, health=health or Health())


def names(station: Station, s: Snapshot, ctx: Context = CALM) -> list[str]:
    return [v.interlock for v in evaluate(s, ctx, station)]


def test_quiet_snapshot_trips_nothing(station: Station) -> None:
    assert evaluate(snap(600.0), CALM, station) == []
    assert evaluate(snap(600.0, o2_ppm=3.0, sample_c=598.0), PURGED, station) == []


def test_over_temperature_needs_two_readings(station: Station) -> None:
    limit = station.envelope.max_temperature_c
    assert names(station, snap(limit + 5, health=Health(over_limit_cycles=1))) == []
    verdicts = evaluate(snap(limit + 5, health=Health(over_limit_cycles=2)), CALM, station)
    assert verdicts[0].interlock == "over_temperature"
    assert verdicts[0].severity is Severity.ABORT


def test_air_above_limit_only_when_hot_and_flowing(station: Station) -> None:
    limit = station.envelope.air_max_c
    assert names(station, snap(limit - 1, air=200)) == []
    assert names(station, snap(limit + 1, air=5)) == []  # below 1 % FS: a zero reading
    assert names(station, snap(limit + 1, air=200)) == ["air_above_limit"]


def test_heating_unpurged(station: Station) -> None:
    ctx = Context(setpoint_c=100.0, inert_unpurged=True)
    assert names(station, snap(25.0), ctx) == ["heating_unpurged"]
    assert names(station, snap(98.0), ctx) == []  # not heating
    assert names(station, snap(25.0), Context(100.0, False)) == []


def test_comms_loss_holds_when_stale_then_halts_after_t_comm(station: Station) -> None:
    assert names(station, snap(None, failures=COMMS_LOSS_CYCLES - 1)) == []
    stale = evaluate(snap(None, failures=COMMS_LOSS_CYCLES), CALM, station)
    assert [(v.interlock, v.severity) for v in stale] == [("comms_stale", Severity.HOLD)]
    halt_cycles = math.ceil(COMMS_LOSS_HALT_S / station.scan_period_s)
    lost = evaluate(snap(None, failures=halt_cycles), CALM, station)
    assert [(v.interlock, v.severity) for v in lost] == [("comms_loss", Severity.HALT)]


def test_lost_balance_is_recorded_not_fatal(station: Station) -> None:
    verdicts = evaluate(snap(600.0, others={"balance": COMMS_LOSS_CYCLES}), CALM, station)
    assert [(v.interlock, v.severity) for v in verdicts] == [("comms_loss:balance",
                                                              Severity.NOTE)]


def test_stale_reading_never_passes_for_cold(station: Station) -> None:
    assert math.isnan(snap(None).furnace_c)


def test_sensor_break_halts(station: Station) -> None:
    verdicts = evaluate(snap(1700.0, sensor_break=True), CALM, station)
    assert verdicts[0].severity is Severity.HALT
    assert "sensor_fault" in [v.interlock for v in verdicts]


def test_frozen_pv_halts_and_a_spike_is_only_noted(station: Station) -> None:
    frozen = evaluate(snap(600.0, health=Health(pv_unchanged_s=PV_FROZEN_S)), CALM, station)
    assert frozen[0].interlock == "pv_frozen"
    assert frozen[0].severity is Severity.HALT
    assert names(station, snap(600.0, health=Health(pv_unchanged_s=PV_FROZEN_S - 2))) == []
    spike = evaluate(snap(600.0, health=Health(pv_spike=True)), CALM, station)
    assert [(v.interlock, v.severity) for v in spike] == [("pv_spike", Severity.NOTE)]


def test_heater_open_and_stuck(station: Station) -> None:
    open_ = Health(full_output_s=HEATER_OPEN_S, full_output_rise_c=1.0)
    assert names(station, snap(300.0, health=open_, output_pct=100.0)) == ["heater_open"]
    rising = Health(full_output_s=HEATER_OPEN_S, full_output_rise_c=40.0)
    assert names(station, snap(300.0, health=rising, output_pct=100.0)) == []
    stuck = Health(zero_output_s=HEATER_STUCK_S, zero_output_rise_c=20.0,
                   furnace_rate_c_per_min=10.0)
    verdicts = evaluate(snap(640.0, wsp_c=600.0, health=stuck), CALM, station)
    assert verdicts[0].interlock == "heater_stuck"
    assert verdicts[0].severity is Severity.HALT
    # cooling toward a lower setpoint with zero output is normal
    cooling = Health(zero_output_s=HEATER_STUCK_S, furnace_rate_c_per_min=-8.0)
    assert names(station, snap(640.0, wsp_c=600.0, health=cooling)) == []


@pytest.mark.parametrize(("furnace_c", "severity"), [(600.0, Severity.ABORT),
                                                      (100.0, Severity.HOLD)])
def test_lost_inert_flow(station: Station, furnace_c: float, severity: Severity) -> None:
    h = Health(flow_short_s=MappingProxyType({"Ar": FLOW_LOST_S}))
    verdicts = evaluate(snap(furnace_c, health=h), PURGED, station)
    assert [(v.interlock, v.severity, v.gas) for v in verdicts] == [
        ("flow_lost:Ar", severity, "Ar")]


def test_oxygen_in_purged_tube(station: Station) -> None:
    assert names(station, snap(600.0, o2_ppm=O2_LIMIT_PPM * 0.5), PURGED) == []
    verdicts = evaluate(snap(600.0, o2_ppm=O2_LIMIT_PPM * 5), PURGED, station)
    assert [(v.interlock, v.severity) for v in verdicts] == [("o2_high", Severity.ABORT)]
    assert names(station, snap(600.0, o2_ppm=O2_LIMIT_PPM * 5), CALM) == []  # not purged


def test_thermocouples_disagree_in_inert_gas(station: Station) -> None:
    steady = Health(furnace_rate_c_per_min=0.1)
    drift = snap(1500.0, sample_c=1500.0 + TC_DISAGREE_C + 5, health=steady)
    assert names(station, drift, PURGED) == ["tc_disagree"]
    ramping = snap(1500.0, sample_c=1500.0 - TC_DISAGREE_C - 5,
                   health=Health(furnace_rate_c_per_min=5.0))
    assert names(station, ramping, PURGED) == []  # the sample lags a moving furnace
    assert names(station, drift, CALM) == []  # in air it is the exotherm guard's business


def test_instrument_changed_under_us_holds(station: Station) -> None:
    assert names(station, snap(600.0, manual=True)) == ["front_panel_manual"]
    assert names(station, snap(600.0, remote=False)) == ["remote_setpoint_lost"]
    idle = Context(setpoint_c=25.0, inert_unpurged=False, active=False)
    assert names(station, snap(600.0, remote=False), idle) == []
