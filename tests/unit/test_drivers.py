"""Rung 2: drivers on ``FakeRegisterBus``: exact writes, read-back, errors, no stray traffic."""

from __future__ import annotations

import pytest

from drivers.alicat import AlicatMFC
from drivers.alicat import registers as alicat
from drivers.errors import CommunicationError, DeviceRejectedError, ReadbackMismatchError
from drivers.eurotherm import Eurotherm3216, Status, build_map
from drivers.registers import encode
from tests.fakes import FakeRegisterBus

EURO = {r.name: r for r in build_map(1).registers}
UNIT = 1


def _preset_euro(bus: FakeRegisterBus, values: dict[str, float]) -> None:
    for name, value in values.items():
        reg = EURO[name]
        bus.preset(UNIT, reg.address, encode(reg, value))


@pytest.fixture
def bus() -> FakeRegisterBus:
    bus = FakeRegisterBus()
    _preset_euro(bus, {"PV.IN.F": 221.5, "TG.SP.F": 25.0, "MAN.OP.F": 0.0, "WRK.OP.F": 4.2,
                       "WKG.SP.F": 220.0, "StAt": int(Status.RAMP_RUNNING | Status.ALARM_1),
                       "Rm.SP.F": 0.0, "SP.RAT.F": 0.0, "A1.F": 1650.0, "A-M": 0, "L-R": 0})
    return bus


async def test_read_decodes_block_and_status(bus: FakeRegisterBus) -> None:
    reading = await Eurotherm3216(bus, UNIT).read()
    assert reading.temperature_c == pytest.approx(221.5)
    assert reading.working_setpoint_c == pytest.approx(220.0)
    assert reading.target_setpoint_c == pytest.approx(25.0)  # TG.SP, from the same block
    assert reading.output_pct == pytest.approx(4.2)
    assert reading.is_ramping
    assert not reading.is_sensor_break
    assert not reading.is_manual
    # one block read of PV..WKG.SP floats, one of the status word: nothing else
    assert bus.calls == [("read", UNIT, 0x8002, (10,)), ("read", UNIT, 75, (1,)),
                         ("read", UNIT, 276, (1,))]


async def test_sensor_break_bit_is_reported(bus: FakeRegisterBus) -> None:
    _preset_euro(bus, {"StAt": int(Status.SENSOR_BREAK | Status.PV_OVER_RANGE)})
    reading = await Eurotherm3216(bus, UNIT).read()
    assert reading.is_sensor_break
    assert reading.is_over_range


async def test_setpoint_goes_to_remote_setpoint_only(bus: FakeRegisterBus) -> None:
    await Eurotherm3216(bus, UNIT).write_setpoint_c(612.25)
    assert bus.writes() == [(UNIT, 0x8034, tuple(encode(EURO["Rm.SP.F"], 612.25)))]
    eeprom = {EURO[n].address for n in ("TG.SP", "TG.SP.F")}
    assert not [w for w in bus.writes() if w[1] in eeprom]
    assert bus.calls[-1] == ("read", UNIT, 0x8034, (2,))  # read back


async def test_readback_mismatch_raises(bus: FakeRegisterBus) -> None:
    class Stuck(FakeRegisterBus):
        async def write_registers(self, unit: int, address: int, words: object) -> None:
            self.calls.append(("write", unit, address, ()))  # acknowledged, not applied

    stuck = Stuck(registers=bus.registers)
    with pytest.raises(ReadbackMismatchError, match="read back"):
        await Eurotherm3216(stuck, UNIT).write_setpoint_c(500.0)


async def test_preflight_skips_eeprom_write_when_unchanged(bus: FakeRegisterBus) -> None:
    await Eurotherm3216(bus, UNIT).configure_fallback(
        local_setpoint_c=25.0, rate_limit_c_per_min=5.0, alarm_high_c=1650.0)
    written = [a for _, a, _ in bus.writes()]
    assert EURO["TG.SP.F"].address not in written
    assert EURO["A1.F"].address not in written
    # rate limit first, remote selected last, remote SP primed with the working SP
    assert written[0] == EURO["SP.RAT.F"].address
    assert written[-1] == EURO["L-R"].address
    assert (UNIT, EURO["Rm.SP.F"].address, tuple(encode(EURO["Rm.SP.F"], 220.0))) in bus.writes()


async def test_preflight_writes_local_setpoint_when_different(bus: FakeRegisterBus) -> None:
    await Eurotherm3216(bus, UNIT).configure_fallback(
        local_setpoint_c=30.0, rate_limit_c_per_min=5.0, alarm_high_c=1650.0)
    assert (UNIT, EURO["TG.SP.F"].address, tuple(encode(EURO["TG.SP.F"], 30.0))) in bus.writes()


async def test_release_to_local_selects_local(bus: FakeRegisterBus) -> None:
    await Eurotherm3216(bus, UNIT).release_to_local()
    assert bus.writes() == [(UNIT, 276, (0,))]


async def test_communication_error_propagates(bus: FakeRegisterBus) -> None:
    bus.fail_on_call[0] = CommunicationError("no reply", device="furnace")
    with pytest.raises(CommunicationError):
        await Eurotherm3216(bus, UNIT).read()


@pytest.fixture
def mfc_bus() -> FakeRegisterBus:
    bus = FakeRegisterBus()
    block = [0] * (alicat.SETPOINT_READBACK.address + 2 - alicat.STATUS.address)
    bus.preset(2, alicat.STATUS.address, block)
    bus.preset(2, alicat.MASS_FLOW.address, encode(alicat.MASS_FLOW, 199.5))
    bus.preset(2, alicat.SETPOINT_READBACK.address, encode(alicat.SETPOINT_READBACK, 200.0))
    bus.preset(2, alicat.SETPOINT.address, encode(alicat.SETPOINT, 0.0))
    return bus


async def test_mfc_read_one_transaction(mfc_bus: FakeRegisterBus) -> None:
    reading = await AlicatMFC(mfc_bus, 2, gas="Ar", full_scale_sccm=1000).read()
    assert reading.flow_sccm == pytest.approx(199.5)
    assert reading.setpoint_sccm == pytest.approx(200.0)
    assert not reading.is_faulted
    assert len(mfc_bus.calls) == 1


async def test_mfc_fault_flags(mfc_bus: FakeRegisterBus) -> None:
    mfc_bus.preset(2, alicat.STATUS.address, encode(alicat.STATUS, int(alicat.Status.ADC_ERROR)))
    assert (await AlicatMFC(mfc_bus, 2, gas="Ar", full_scale_sccm=1000).read()).is_faulted


async def test_mfc_set_flow_writes_float_and_reads_back(mfc_bus: FakeRegisterBus) -> None:
    await AlicatMFC(mfc_bus, 2, gas="Ar", full_scale_sccm=1000).set_flow_sccm(350.0)
    assert mfc_bus.writes() == [(2, 1009, tuple(encode(alicat.SETPOINT, 350.0)))]
    assert mfc_bus.calls[-1] == ("read", 2, 1009, (2,))


async def test_mfc_rejected_write_raises(mfc_bus: FakeRegisterBus) -> None:
    mfc_bus.rejected[(2, 1009)] = 3
    with pytest.raises(DeviceRejectedError) as info:
        await AlicatMFC(mfc_bus, 2, gas="Ar", full_scale_sccm=1000).set_flow_sccm(5000.0)
    assert info.value.exception_code == 3
