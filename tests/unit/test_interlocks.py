"""Rung 1: each interlock as a pure function of a snapshot."""

from __future__ import annotations

import math
from types import MappingProxyType

from controller.interlocks import COMMS_LOSS_CYCLES, Context, Severity, evaluate
from controller.snapshot import Snapshot
from controller.station import Station
from drivers.roles import ControllerReading, FlowReading

CALM = Context(setpoint_c=25.0, inert_unpurged=False)


def snap(furnace_c: float | None, air: float = 0.0, failures: int = 0,
         sensor_break: bool = False) -> Snapshot:
    reading = None if furnace_c is None else ControllerReading(
        furnace_c, furnace_c, 0.0, False, sensor_break, False, False, False)
    return Snapshot(0.0, reading, MappingProxyType({
        "Ar": FlowReading(200.0, 200.0, False), "air": FlowReading(air, air, False),
        "N2": FlowReading(0.0, 0.0, False)}), None, MappingProxyType({"furnace": failures}))


def names(station: Station, s: Snapshot, ctx: Context = CALM) -> list[str]:
    return [v.interlock for v in evaluate(s, ctx, station)]


def test_quiet_snapshot_trips_nothing(station: Station) -> None:
    assert evaluate(snap(600.0), CALM, station) == []


def test_over_temperature(station: Station) -> None:
    limit = station.envelope.max_temperature_c
    assert names(station, snap(limit)) == []
    verdicts = evaluate(snap(limit + 0.1), CALM, station)
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


def test_comms_loss_after_consecutive_failures(station: Station) -> None:
    assert names(station, snap(None, failures=COMMS_LOSS_CYCLES - 1)) == []
    verdicts = evaluate(snap(None, failures=COMMS_LOSS_CYCLES), CALM, station)
    assert [v.interlock for v in verdicts] == ["comms_loss"]
    assert verdicts[0].severity is Severity.HALT


def test_stale_reading_never_passes_for_cold(station: Station) -> None:
    # a stale (None) furnace reading gives NaN, which never compares as "in limits" silently:
    # the comms watchdog, not the temperature checks, must catch it
    assert math.isnan(snap(None).furnace_c)


def test_sensor_break_halts(station: Station) -> None:
    verdicts = evaluate(snap(1700.0, sensor_break=True), CALM, station)
    assert verdicts[0].severity is Severity.HALT
    assert "sensor_fault" in [v.interlock for v in verdicts]
