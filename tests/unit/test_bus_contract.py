"""Contract suite: ``FakeRegisterBus`` and the simulator's ``SimBus`` behave alike for
everything the drivers rely on, so a driver test on the fake means something on the sim."""

from __future__ import annotations

import pytest

from drivers.alicat import AlicatMFC
from drivers.alicat import registers as alicat
from drivers.bus import RegisterBus
from drivers.errors import DeviceRejectedError, DeviceTimeoutError
from drivers.eurotherm import Eurotherm3216, build_map
from drivers.registers import encode
from simulator import SimBus, SimStationSpec, SimWorld
from tests.fakes import FakeRegisterBus

EURO = {r.name: r for r in build_map(1).registers}


def _fake_from(world: SimWorld) -> FakeRegisterBus:
    """A fake holding every register the simulated instruments have, with their values."""
    fake = FakeRegisterBus()
    for unit in world.units:
        bank = world._bank(unit)
        for reg in bank.register_map.registers:
            fake.preset(unit, reg.address, world.read(unit, reg.address, reg.word_count))
    for mfc in world.spec.mfcs:  # the Alicat's setpoint read-back follows its setpoint
        fake.mirrors[(mfc.unit, alicat.SETPOINT.address)] = alicat.SETPOINT_READBACK.address
    return fake


@pytest.fixture(params=["fake", "sim"])
def bus(request: pytest.FixtureRequest) -> RegisterBus:
    world = SimWorld(SimStationSpec(), seed=3)
    if request.param == "sim":
        return SimBus(world, lambda: 0.0)
    return _fake_from(world)


async def test_write_then_read_gives_the_words_back(bus: RegisterBus) -> None:
    words = encode(EURO["Rm.SP.F"], 321.5)
    await bus.write_registers(1, EURO["Rm.SP.F"].address, words)
    assert await bus.read_registers(1, EURO["Rm.SP.F"].address, 2) == words


async def test_unmapped_address_is_exception_02(bus: RegisterBus) -> None:
    with pytest.raises(DeviceRejectedError) as info:
        await bus.read_registers(1, 9999, 1)
    assert info.value.exception_code == 2


async def test_unknown_unit_times_out(bus: RegisterBus) -> None:
    with pytest.raises(DeviceTimeoutError):
        await bus.read_registers(99, 1, 1)


async def test_drivers_work_on_both(bus: RegisterBus) -> None:
    furnace = Eurotherm3216(bus, 1)
    reading = await furnace.read()
    assert 0.0 < reading.temperature_c < 100.0
    await furnace.write_setpoint_c(150.0)
    mfc = AlicatMFC(bus, 2, gas="Ar", full_scale_sccm=1000.0)
    await mfc.set_flow_sccm(250.0)
    assert (await mfc.read()).setpoint_sccm == pytest.approx(250.0)


async def test_alicat_setpoint_is_big_endian_on_both(bus: RegisterBus) -> None:
    await bus.write_registers(2, alicat.SETPOINT.address, encode(alicat.SETPOINT, 123.5))
    assert await bus.read_registers(2, alicat.SETPOINT.address, 2) == \
        encode(alicat.SETPOINT, 123.5)
