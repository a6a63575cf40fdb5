"""Instrument behaviour: 3216 setpoint logic and faults, MFC, O2 analyser, world, SimBus."""

from __future__ import annotations

import math
import random

import pytest

from drivers.alicat.registers import GAS_NUMBER, MASS_FLOW, SETPOINT, SETPOINT_READBACK, STATUS
from drivers.alicat.registers import Status as MfcStatus
from drivers.bus import RegisterBus
from drivers.errors import CommunicationError, DeviceRejectedError, DeviceTimeoutError
from drivers.eurotherm.registers import Status, build_map
from drivers.registers import Register, decode, encode
from simulator.alicat import SimAlicatMFC
from simulator.bank import ModbusExceptionReply
from simulator.eurotherm import SimEurotherm3216
from simulator.inprocess import SimBus
from simulator.o2 import SimO2Analyser
from simulator.world import SimStationSpec, SimWorld, WireFault

EURO = {r.name: r for r in build_map(1).registers}
DT_S = 0.5


def write(furnace: SimEurotherm3216, name: str, value: float) -> None:
    reg = EURO[f"{name}.F"] if f"{name}.F" in EURO else EURO[name]
    furnace.bank.write(reg.address, encode(reg, value))


def status(furnace: SimEurotherm3216) -> Status:
    return Status(furnace.bank.read(EURO["StAt"].address, 1)[0])


def run(furnace: SimEurotherm3216, duration_s: float) -> None:
    for _ in range(round(duration_s / DT_S)):
        furnace.advance(DT_S)


# ---- Eurotherm 3216 ------------------------------------------------------------------

def test_power_up_working_setpoint_is_pv_and_status_is_consistent() -> None:
    furnace = SimEurotherm3216(initial_c=300.0)
    assert furnace.bank.get("WKG.SP") == 300.0
    assert furnace.bank.get("RNG.HI") == 1768.0  # Type S
    stat, inverted = furnace.bank.read(EURO["StAt"].address, 2)
    assert inverted == ~stat & 0xFFFF
    run(furnace, 10.0)
    assert furnace.bank.get("ERR") == pytest.approx(
        furnace.bank.get("PV.IN") - furnace.bank.get("WKG.SP"))


def test_remote_setpoint_falls_back_to_local_at_the_rate_limit() -> None:
    furnace = SimEurotherm3216(rng=random.Random(1), initial_c=1000.0)
    write(furnace, "SP.RAT", 5.0)
    write(furnace, "TG.SP", 25.0)  # the safe local setpoint
    write(furnace, "Rm.SP", 1000.0)
    write(furnace, "L-R", 1)
    for _ in range(300):  # the PC streams Rm.SP every 2 s for 10 min
        run(furnace, 2.0)
        write(furnace, "Rm.SP", 1000.0)
    assert furnace.bank.get("WKG.SP") == 1000.0
    assert Status.REMOTE_SP_FAIL not in status(furnace)
    run(furnace, 9.5)  # the PC dies: inside the 10 s timeout nothing happens yet
    assert Status.REMOTE_SP_FAIL not in status(furnace)
    run(furnace, 1.0)
    assert Status.REMOTE_SP_FAIL in status(furnace)
    assert furnace.active_setpoint_c == 25.0
    drops_k = []
    for _ in range(10):  # natural cooling at 1000 °C would be 15.7 °C/min (§4.4)
        tc_before_c = furnace.thermal.tc_c
        run(furnace, 60.0)
        drops_k.append(tc_before_c - furnace.thermal.tc_c)
    assert furnace.bank.get("WKG.SP") == pytest.approx(1000.0 - 5.0 * 10.0, abs=0.5)
    assert Status.RAMP_RUNNING in status(furnace)
    # SP.RAT, give or take the PID catching the ramp; nowhere near natural cooling.
    assert max(drops_k) < 6.0
    assert 40.0 < sum(drops_k) <= 5.0 * 10.0
    write(furnace, "Rm.SP", 950.0)  # the PC is back
    assert Status.REMOTE_SP_FAIL not in status(furnace)
    assert furnace.active_setpoint_c == 950.0


def test_local_mode_never_reports_remote_failure() -> None:
    furnace = SimEurotherm3216()
    run(furnace, 60.0)
    assert Status.REMOTE_SP_FAIL not in status(furnace)


def test_step_change_without_rate_limit() -> None:
    furnace = SimEurotherm3216()
    write(furnace, "TG.SP", 400.0)
    furnace.advance(DT_S)
    assert furnace.bank.get("WKG.SP") == 400.0
    assert Status.RAMP_RUNNING not in status(furnace)
    assert furnace.output_pct == 100.0


def test_manual_mode_applies_man_op_within_output_limits() -> None:
    furnace = SimEurotherm3216()
    write(furnace, "MAN.OP", 30.0)
    write(furnace, "A-M", 1)
    furnace.advance(DT_S)
    assert furnace.output_pct == pytest.approx(30.0)
    assert furnace.bank.read(EURO["WRK.OP"].address, 1) == [300]
    assert Status.MANUAL in status(furnace)
    write(furnace, "OP.HI", 20.0)
    furnace.advance(DT_S)
    assert furnace.output_pct == pytest.approx(20.0)
    run(furnace, 60.0)
    assert furnace.thermal.furnace_c > 30.0  # 800 W for a minute
    write(furnace, "A-M", 0)
    furnace.advance(DT_S)
    assert Status.MANUAL not in status(furnace)


def test_sensor_break_sets_status_and_forces_output_to_zero() -> None:
    furnace = SimEurotherm3216()
    write(furnace, "TG.SP", 800.0)
    run(furnace, 10.0)
    assert furnace.output_pct == 100.0
    furnace.inject_sensor_break(True)
    furnace.advance(DT_S)
    stat = status(furnace)
    assert Status.SENSOR_BREAK in stat
    assert Status.PV_OVER_RANGE in stat
    assert Status.NEW_ALARM in stat
    assert furnace.output_pct == 0.0
    assert decode(EURO["WRK.OP.F"], furnace.bank.read(EURO["WRK.OP.F"].address, 2)) == 0.0
    assert furnace.bank.get("PV.IN") > furnace.bank.get("RNG.HI")
    write(furnace, "Ac.ALL", 1)
    assert Status.NEW_ALARM not in status(furnace)
    furnace.inject_sensor_break(False)
    furnace.advance(DT_S)
    stat = status(furnace)
    assert Status.SENSOR_BREAK not in stat
    assert Status.PV_OVER_RANGE not in stat
    assert Status.NEW_ALARM not in stat
    assert furnace.output_pct > 0.0


def test_pv_noise_is_seeded_and_small() -> None:
    a, b = SimEurotherm3216(rng=random.Random(9)), SimEurotherm3216(rng=random.Random(9))
    readings = []
    for _ in range(400):
        a.advance(DT_S)
        b.advance(DT_S)
        assert a.bank.get("PV.IN") == b.bank.get("PV.IN")
        readings.append(a.bank.get("PV.IN") - a.thermal.tc_c)
    sigma_k = math.sqrt(sum(x * x for x in readings) / len(readings))
    assert 0.07 < sigma_k < 0.13  # Type S: 0.1 K


# ---- Alicat MFC and O2 analyser ------------------------------------------------------

def mfc_read(mfc: SimAlicatMFC, reg: Register) -> float:
    return decode(reg, mfc.bank.read(reg.address, reg.word_count))


def test_mfc_follows_a_first_order_response() -> None:
    mfc = SimAlicatMFC("Ar", 1000.0, random.Random(2))
    assert mfc_read(mfc, GAS_NUMBER) == 1
    mfc.bank.write(SETPOINT.address, encode(SETPOINT, 500.0))
    assert mfc_read(mfc, SETPOINT_READBACK) == 500.0
    mfc.advance(0.5)
    assert mfc.flow_sccm == pytest.approx(500.0 * (1.0 - math.exp(-1.0)), rel=1e-9)
    assert mfc_read(mfc, MASS_FLOW) == pytest.approx(mfc.flow_sccm, abs=1.0)  # 0.2 sccm noise
    for _ in range(20):
        mfc.advance(0.5)
    assert mfc.flow_sccm == pytest.approx(500.0, rel=1e-6)


def test_mfc_rejects_setpoints_outside_0_to_full_scale() -> None:
    mfc = SimAlicatMFC("N2", 200.0)
    for value in (200.1, -1.0):
        with pytest.raises(ModbusExceptionReply) as excinfo:
            mfc.bank.write(SETPOINT.address, encode(SETPOINT, value))
        assert excinfo.value.code == 3
    assert mfc.setpoint_sccm == 0.0


def test_mfc_fault_hooks() -> None:
    mfc = SimAlicatMFC("Ar", 1000.0)
    mfc.bank.write(SETPOINT.address, encode(SETPOINT, 400.0))
    for _ in range(20):
        mfc.advance(0.5)
    mfc.stuck = True
    mfc.bank.write(SETPOINT.address, encode(SETPOINT, 100.0))
    mfc.advance(5.0)
    assert mfc.flow_sccm == pytest.approx(400.0, rel=1e-6)
    mfc.stuck = False
    mfc.no_flow = True  # empty bottle
    for _ in range(40):
        mfc.advance(0.5)
    assert mfc.flow_sccm < 1e-6
    assert mfc_read(mfc, SETPOINT_READBACK) == 100.0
    assert mfc_read(mfc, MASS_FLOW) >= 0.0
    mfc.flow_sccm = 1200.0  # e.g. a failed-open valve
    mfc.publish()
    assert MfcStatus(int(mfc_read(mfc, STATUS))) & MfcStatus.MOV_HIGH


def test_o2_analyser_lags_the_tube_by_10_s() -> None:
    analyser = SimO2Analyser(random.Random(1), initial_ppm=0.0)
    analyser.advance(10.0, 1000.0)
    assert analyser.o2_ppm == pytest.approx(1000.0 * (1.0 - math.exp(-1.0)))
    reading = decode(analyser.bank.register_map.registers[0], analyser.bank.read(0, 2))
    assert reading == pytest.approx(analyser.o2_ppm, rel=0.05)  # 1 % noise


# ---- world and SimBus ----------------------------------------------------------------

def heated_world(seed: int) -> SimWorld:
    world = SimWorld(SimStationSpec(), seed=seed)
    for name, value in (("SP.RAT", 10.0), ("TG.SP", 200.0)):
        reg = EURO[f"{name}.F"]
        world.write(1, reg.address, encode(reg, value))
    world.write(2, SETPOINT.address, encode(SETPOINT, 300.0))
    return world


def test_world_is_deterministic_per_seed() -> None:
    a, b, c = heated_world(7), heated_world(7), heated_world(8)
    for t_s in range(0, 3601, 2):
        for world in (a, b, c):
            world.advance_to(float(t_s))
    assert a.truth() == b.truth()
    assert a.read(1, 0x8002, 10) == b.read(1, 0x8002, 10)
    assert a.truth().tc_c != c.truth().tc_c
    assert a.truth().furnace_c == pytest.approx(200.0, abs=2.0)


def test_world_substeps_and_ignores_the_past() -> None:
    world = heated_world(0)
    world.advance_to(1.2)  # two 0.5 s substeps and one of 0.2 s
    assert world.now_s == 1.2
    assert world.mfcs["Ar"].flow_sccm == pytest.approx(300.0 * -math.expm1(-1.2 / 0.5))
    before = world.truth()
    world.advance_to(1.0)
    assert world.truth() == before
    truth = world.truth()
    assert truth.flows_sccm["air"] == 0.0
    assert truth.o2_ppm < 209_460.0  # Ar has started to dilute the air


def test_unknown_or_silent_unit_gives_no_reply() -> None:
    world = SimWorld(SimStationSpec())
    with pytest.raises(DeviceTimeoutError):
        world.read(99, 0, 1)
    world.set_responding(1, False)
    with pytest.raises(DeviceTimeoutError):
        world.write(1, 2, [100])
    world.set_responding(1, True)
    world.write(1, 2, [100])


def test_muting_and_wire_faults_reach_reads_and_writes() -> None:
    # ``read``/``write`` look the unit up in a table of answering units first.
    world = SimWorld(SimStationSpec())
    world.set_responding(99, True)  # not an instrument: still no reply
    with pytest.raises(DeviceTimeoutError):
        world.read(99, 0, 1)
    world.set_responding(2, False)
    world.set_responding(2, False)
    with pytest.raises(DeviceTimeoutError):
        world.read(2, 1199, 1)
    world.set_responding(2, True)
    assert world.read(2, 1199, 1) == [1]  # Ar
    world.wire_faults[2] = WireFault.EXCEPTION
    for request in (lambda: world.read(2, 1199, 1), lambda: world.write(2, 1199, [8])):
        with pytest.raises(ModbusExceptionReply) as excinfo:
            request()
        assert excinfo.value.code == 4
    world.wire_faults[2] = WireFault.SLOW  # served; the transport loses the reply
    world.write(2, 1199, [8])
    assert world.read(2, 1199, 1) == [8]


async def test_simbus_advances_the_world_to_now_and_serves() -> None:
    world = SimWorld(SimStationSpec())
    clock = [0.0]
    bus = SimBus(world, lambda: clock[0], {1: "furnace", 2: "mfc_Ar"})
    assert isinstance(bus, RegisterBus)
    await bus.write_registers(2, SETPOINT.address, encode(SETPOINT, 250.0))
    clock[0] = 30.0
    words = await bus.read_registers(2, MASS_FLOW.address, 2)
    assert world.now_s == 30.0
    assert decode(MASS_FLOW, words) == pytest.approx(250.0, abs=1.0)


async def test_simbus_maps_replies_to_driver_errors() -> None:
    bus = SimBus(SimWorld(SimStationSpec()), lambda: 0.0, {1: "furnace"})
    with pytest.raises(DeviceRejectedError) as rejected:
        await bus.read_registers(1, 10, 1)
    assert rejected.value.exception_code == 2
    assert rejected.value.device == "furnace"
    with pytest.raises(DeviceRejectedError) as rejected:
        await bus.write_registers(1, EURO["WKG.SP"].address, [100])
    assert rejected.value.exception_code == 2
    with pytest.raises(DeviceRejectedError) as rejected:
        await bus.write_registers(2, SETPOINT.address, encode(SETPOINT, 5000.0))
    assert rejected.value.exception_code == 3
    with pytest.raises(DeviceTimeoutError) as timeout:
        await bus.read_registers(42, 0, 1)
    assert timeout.value.device == "unit 42"
    await bus.close()
    await bus.close()
    with pytest.raises(CommunicationError):
        await bus.read_registers(1, 1, 1)
