"""The sample/boat temperature (§4.4) and its thermocouple, served as a 3216 indicator."""

from __future__ import annotations

import math
import random

import pytest

from drivers.eurotherm import Eurotherm3216, Status, build_map
from drivers.registers import encode
from simulator.inprocess import SimBus
from simulator.sample import SAMPLE_TAU_S, SampleBoat, SimIndicator
from simulator.world import SimStationSpec, SimTruth, SimWorld

EURO = {r.name: r for r in build_map(1).registers}
SAMPLE_UNIT = 5


def heated_world(seed: int, **spec: object) -> SimWorld:
    world = SimWorld(SimStationSpec(**spec), seed=seed)  # type: ignore[arg-type]
    for name, value in (("SP.RAT", 10.0), ("TG.SP", 300.0)):
        reg = EURO[f"{name}.F"]
        world.write(1, reg.address, encode(reg, value))
    return world


# ---- the sample's thermal lag ----------------------------------------------------------


def test_sample_lags_a_furnace_step_with_tau_120_s() -> None:
    boat = SampleBoat(initial_c=25.0)
    assert boat.tau_s == SAMPLE_TAU_S == 120.0
    for _ in range(240):  # 120 s in 0.5 s steps, the furnace held at 125 °C
        boat.step(0.5, 125.0)
    assert boat.sample_c == pytest.approx(25.0 + 100.0 * -math.expm1(-1.0), rel=1e-12)
    assert (boat.sample_c - 25.0) / 100.0 == pytest.approx(0.632, abs=5e-4)


def test_step_size_does_not_change_the_answer() -> None:
    fine, coarse = SampleBoat(), SampleBoat()
    for _ in range(600):
        fine.step(0.1, 500.0)
    for _ in range(12):
        coarse.step(5.0, 500.0)
    assert fine.sample_c == pytest.approx(coarse.sample_c, rel=1e-12)


def test_reaction_heat_offsets_the_sample_by_heat_times_tau_over_c() -> None:
    boat = SampleBoat(initial_c=500.0)
    for _ in range(100):  # 25 τ: steady state
        boat.step(30.0, 500.0, heat_w=1.0)
    assert boat.sample_c == pytest.approx(500.0 + 1.0 * 120.0 / boat.heat_capacity_j_per_k)
    boat.step(1e6, 500.0, heat_w=-0.5)  # endothermic
    assert boat.sample_c == pytest.approx(500.0 - 0.5 * 120.0 / boat.heat_capacity_j_per_k)


def test_bad_sample_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        SampleBoat(tau_s=0.0)
    with pytest.raises(ValueError, match="mass"):
        SampleBoat(mass_g=-1.0)
    with pytest.raises(ValueError, match="thermocouple"):
        SimIndicator(SampleBoat(), thermocouple="Q")


def test_world_sample_follows_the_furnace_core() -> None:
    world = heated_world(1, sample_precursor=None)  # an inert boat: no chemistry
    world.advance_to(900.0)  # ramping at 10 °C/min toward 300 °C
    ramping = world.truth()
    assert 25.0 < ramping.sample_c < ramping.furnace_c - 5.0  # lags by ~ rate·τ_s = 20 K
    world.advance_to(5400.0)
    held = world.truth()
    assert held.sample_c == pytest.approx(held.furnace_c, abs=0.2)
    assert held.mass_g == 2.0


# ---- the indicator on the Modbus line --------------------------------------------------


async def test_indicator_serves_pv_through_the_eurotherm_driver() -> None:
    world = heated_world(2)
    now = [0.0]
    bus = SimBus(world, lambda: now[0], {1: "furnace", SAMPLE_UNIT: "sample_tc"})
    sample_tc = Eurotherm3216(bus, SAMPLE_UNIT, name="sample_tc")
    assert SAMPLE_UNIT in world.units
    now[0] = 1200.0
    reading = await sample_tc.read()
    truth = world.truth()
    assert reading.temperature_c == pytest.approx(truth.sample_c, abs=5 * 0.05)  # Type K
    assert reading.temperature_c != pytest.approx(truth.furnace_c, abs=1.0)
    assert reading.output_pct == 0.0
    assert not reading.is_manual
    assert not reading.is_sensor_break
    assert not reading.is_over_range
    assert not reading.is_remote_failed
    assert not reading.is_ramping
    furnace = await Eurotherm3216(bus, 1).read()
    assert furnace.temperature_c == pytest.approx(truth.tc_c, abs=0.5)


async def test_indicator_setpoint_writes_control_nothing() -> None:
    a, b = heated_world(3), heated_world(3)
    bus = SimBus(a, lambda: 0.0)
    sample_tc = Eurotherm3216(bus, SAMPLE_UNIT, name="sample_tc")
    await sample_tc.configure_fallback(local_setpoint_c=1000.0, rate_limit_c_per_min=0.0,
                                       alarm_high_c=1300.0)
    await sample_tc.write_setpoint_c(1000.0)
    for world in (a, b):
        world.advance_to(600.0)
    assert a.truth() == b.truth()
    reading = await sample_tc.read()
    assert reading.working_setpoint_c == 1000.0  # echoed, not acted on
    assert reading.output_pct == 0.0


def test_indicator_sensor_break_and_over_range() -> None:
    boat = SampleBoat(initial_c=25.0)
    indicator = SimIndicator(boat, thermocouple="K", rng=random.Random(0))
    status_reg = EURO["StAt"]
    indicator.inject_sensor_break(True)
    status = Status(indicator.bank.read(status_reg.address, 1)[0])
    assert Status.SENSOR_BREAK in status
    assert Status.PV_OVER_RANGE in status
    indicator.inject_sensor_break(False)
    boat.sample_c = 1500.0  # above Type K's 1372 °C + 5 % of span: the 3216 shows over-range
    indicator.publish()
    status = Status(indicator.bank.read(status_reg.address, 1)[0])
    assert Status.PV_OVER_RANGE in status
    assert Status.SENSOR_BREAK not in status
    assert indicator.bank.get("PV.IN") == pytest.approx(1500.0, abs=0.5)


# ---- the furnace is unaffected; determinism ---------------------------------------------


def test_furnace_truth_is_the_same_with_and_without_the_sample_unit() -> None:
    with_tc, without_tc = heated_world(7), heated_world(7, sample_tc_unit=None)
    assert without_tc.sample_tc is None
    assert SAMPLE_UNIT not in without_tc.units
    for t_s in range(0, 3601, 2):
        for world in (with_tc, without_tc):
            world.advance_to(float(t_s))
    assert with_tc.truth() == without_tc.truth()
    assert with_tc.read(1, 0x8002, 10) == without_tc.read(1, 0x8002, 10)


def test_sample_channels_are_deterministic_per_seed() -> None:
    a, b, c = heated_world(11), heated_world(11), heated_world(12)
    pv = EURO["PV.IN.F"]
    reads: dict[int, list[list[int]]] = {0: [], 1: [], 2: []}
    replies: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for t_s in range(0, 1801, 30):
        for i, world in enumerate((a, b, c)):
            world.advance_to(float(t_s))
            reads[i].append(world.read(SAMPLE_UNIT, pv.address, 2))
            assert world.balance is not None
            replies[i].append(world.balance.respond(b"SI\r\n"))
    assert reads[0] == reads[1]
    assert replies[0] == replies[1]
    assert reads[0] != reads[2]
    assert replies[0] != replies[2]
    assert a.truth() == b.truth()


def test_spec_defaults_and_unit_clash() -> None:
    spec = SimStationSpec()
    assert (spec.sample_tc_unit, spec.sample_mass_g) == (5, 2.0)
    assert spec.o2_unit == 6
    assert spec.furnace_unit == 1
    with pytest.raises(ValueError, match="duplicate unit"):
        SimWorld(SimStationSpec(sample_tc_unit=2))
    world = SimWorld(SimStationSpec(sample_mass_g=0.5, has_balance=False))
    assert world.balance is None
    assert world.truth().mass_g == 0.5
    old_style = SimTruth(0.0, 25.0, 25.0, 0.0)  # positional construction still works
    assert math.isnan(old_style.sample_c)
    assert math.isnan(old_style.mass_g)
