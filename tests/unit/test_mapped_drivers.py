"""Rung 2 for the map-driven drivers (drivers.instrument) on ``FakeRegisterBus``: the shipped
2400, 3500 and Bronkhorst maps, block reads grouped from the roles, the waived safety
features switched off as ``WHAT_IS_LOST`` says, the spans and the probe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.errors import ConfigurationError, DeviceRejectedError, DeviceTimeoutError
from drivers.instrument import (
    EEPROM_SETPOINT_STEP_C,
    ModbusMassFlowController,
    ModbusTemperatureController,
)
from drivers.instrument.probe import probe_instrument, role_names
from drivers.maps import SafetyFeature, load_builtin_map
from drivers.registers import Access, DType, Register, RegisterMap, encode, read_spans
from tests.fakes import FakeRegisterBus

UNIT = 1


def _preset(bus: FakeRegisterBus, name: str, values: dict[str, float],
            decimals: int = 1) -> None:
    imap = load_builtin_map(name).at_decimals(decimals)
    for reg in imap.registers:
        bus.preset(UNIT, reg.address, encode(reg, values.get(reg.name, 0.0)))


# --- spans -------------------------------------------------------------------------------

def _reg(name: str, address: int, dtype: DType = DType.UINT16,
         access: Access = Access.RO) -> Register:
    return Register(name, address, dtype, access=access)


def test_spans_join_registers_only_across_mapped_words() -> None:
    a, b, c, d = _reg("A", 0), _reg("B", 1, DType.FLOAT32), _reg("C", 3), _reg("D", 5)
    regmap = RegisterMap("m", (a, b, c, d))
    # B lies between A and C: read and skipped; nothing is mapped at 4: D starts a new read
    assert read_spans(regmap, [c, a, d]) == ((a, c), (d,))
    assert read_spans(regmap, [a, c], max_words=3) == ((a,), (c,))


def test_spans_never_read_across_a_write_only_register() -> None:
    a, w, c = _reg("A", 0), _reg("W", 1, access=Access.WO), _reg("C", 2)
    assert read_spans(RegisterMap("m", (a, w, c)), [a, c]) == ((a,), (c,))


# --- temperature controllers ------------------------------------------------------------

async def test_the_2400_reads_its_own_status_layout_in_three_transactions() -> None:
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm2400", {"PV.F": 221.5, "TG.SP.F": 25.0, "WRK.OP.F": 4.2,
                                   "WKG.SP.F": 200.0, "STATUS": 0x0020 | 0x0010, "L-R": 1})
    tc = ModbusTemperatureController(bus, UNIT, load_builtin_map("eurotherm2400"))
    reading = await tc.read()
    assert reading.temperature_c == pytest.approx(221.5)
    assert reading.target_setpoint_c == pytest.approx(25.0)
    assert reading.is_sensor_break
    assert reading.is_manual
    assert not reading.is_remote_failed  # the 2400 has no remote-fail bit
    assert reading.is_remote_selected
    assert bus.calls == [("read", UNIT, 0x8002, (10,)), ("read", UNIT, 75, (1,)),
                         ("read", UNIT, 276, (1,))]
    assert not reading.is_ramping  # nothing asked for yet
    # no ramp bit on the 2400: ramping while the working setpoint (200) has not reached
    # the setpoint last written (300)
    await tc.write_setpoint_c(300.0)
    assert (await tc.read()).is_ramping


async def test_the_2400s_rate_units_and_display_decimals_are_checked() -> None:
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm2400", {"PV": 25.0, "PV.F": 25.0, "RNG.HI.F": 1768.0,
                                   "RATE.UNITS": 0, "DEC.P": 1})
    tc = ModbusTemperatureController(bus, UNIT, load_builtin_map("eurotherm2400"))
    assert "PV.F" in tc.decimals_check
    with pytest.raises(ConfigurationError, match=r"RATE\.UNITS reads 0, not 1 \(per minute"):
        await tc.verify()


async def test_the_3500_without_volatile_setpoint_steps_its_eeprom_setpoint() -> None:
    imap = load_builtin_map("eurotherm3500")
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm3500", {"PV": 30.0, "TG.SP": 30.0, "WKG.SP": 30.0})
    tc = ModbusTemperatureController(bus, UNIT, imap)
    assert set(tc.switched_off) == {SafetyFeature.VOLATILE_SETPOINT,
                                    SafetyFeature.SENSOR_BREAK, SafetyFeature.OUTPUT_OFF}
    reading = await tc.read()
    # PV | WRK.OP, WKG.SP: nothing is mapped at 3, so two reads; TG.SP is where the
    # setpoints go (not a fallback to watch), and there is no status word
    assert bus.calls == [("read", UNIT, 1, (1,)), ("read", UNIT, 4, (2,))]
    assert reading.target_setpoint_c != reading.target_setpoint_c  # NaN: TG.SP is ours
    assert reading.is_remote_selected
    assert not reading.is_sensor_break
    await tc.configure_fallback(local_setpoint_c=25.0, rate_limit_c_per_min=3.5,
                                alarm_high_c=1650.0)
    tg = imap.register("TG.SP")
    assert not [w for w in bus.writes() if w[1] == tg.address]  # 30.0 already there
    bus.calls.clear()
    for setpoint_c in (31.0, 32.0, 30.0 + EEPROM_SETPOINT_STEP_C, 36.0, 36.0, 36.0):
        await tc.write_setpoint_c(setpoint_c)
    written = [w for w in bus.writes() if w[1] == tg.address]
    assert written == [(UNIT, tg.address, tuple(encode(tg, v))) for v in (35.0, 36.0)]
    bus.calls.clear()
    await tc.force_output_off()  # cannot: releases to local = the fallback setpoint
    assert bus.writes() == [(UNIT, tg.address, tuple(encode(tg, 25.0)))]


async def test_the_3500s_decimals_cannot_be_checked_and_say_so() -> None:
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm3500", {"PV": 25.0})
    tc = ModbusTemperatureController(bus, UNIT, load_builtin_map("eurotherm3500").at_decimals(2),
                                     decimals=2)
    assert tc.decimals_check.startswith("not checkable")
    await tc.verify()  # nothing tells 1 from 2 decimal places on this map
    with pytest.raises(DeviceTimeoutError):
        await ModbusTemperatureController(bus, 9, load_builtin_map("eurotherm3500")).verify()


async def test_a_map_without_a_rate_limit_writes_none() -> None:
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm3216", {"PV.IN.F": 25.0, "WKG.SP.F": 25.0})
    imap = load_builtin_map("eurotherm3216")
    roles = replace(imap.roles, rate_limit=None)
    tc = ModbusTemperatureController(bus, UNIT, replace(imap, roles=roles))
    await tc.write_rate_limit_c_per_min(3.5)
    assert bus.writes() == []
    assert SafetyFeature.RATE_LIMIT in tc.switched_off


def test_a_mass_flow_map_is_not_a_temperature_controller() -> None:
    with pytest.raises(ConfigurationError, match="not a temperature controller"):
        ModbusTemperatureController(FakeRegisterBus(), UNIT, load_builtin_map("alicat"))


# --- mass-flow controllers ---------------------------------------------------------------

@pytest.fixture
def bronkhorst() -> tuple[FakeRegisterBus, ModbusMassFlowController]:
    bus = FakeRegisterBus()
    imap = load_builtin_map("bronkhorst")
    for reg in imap.registers:
        bus.preset(2, reg.address, [0] * reg.word_count)
    bus.preset(2, 0x20, [16000])  # measure: 50 %
    bus.preset(2, 0x30, [7])  # fluid number 7
    return bus, ModbusMassFlowController(bus, 2, imap, gas="Ar", full_scale_sccm=500.0,
                                         gas_number=7)


async def test_bronkhorst_percent_of_full_scale_is_sccm_at_the_driver(
        bronkhorst: tuple[FakeRegisterBus, ModbusMassFlowController]) -> None:
    bus, mfc = bronkhorst
    reading = await mfc.read()
    assert reading.flow_sccm == pytest.approx(250.0)
    assert bus.calls == [("read", 2, 0x20, (2,))]  # measure and setpoint: one read
    await mfc.set_flow_sccm(100.0)
    assert bus.writes() == [(2, 0x21, (6400,))]  # 20 % of 32000
    assert (await mfc.read()).setpoint_sccm == pytest.approx(100.0)
    with pytest.raises(DeviceRejectedError) as info:
        await mfc.set_flow_sccm(5000.0)  # 1000 %: does not fit the register
    assert info.value.exception_code == 3
    await mfc.verify()


async def test_bronkhorst_fluid_number_is_the_stations(
        bronkhorst: tuple[FakeRegisterBus, ModbusMassFlowController]) -> None:
    bus, _ = bronkhorst
    wrong = ModbusMassFlowController(bus, 2, load_builtin_map("bronkhorst"), gas="Ar",
                                     full_scale_sccm=500.0, gas_number=3)
    with pytest.raises(ConfigurationError, match=r"gas number 7 \(unknown\) .* mfc\.gas_number"):
        await wrong.verify()
    none = ModbusMassFlowController(bus, 2, load_builtin_map("bronkhorst"), gas="Ar",
                                    full_scale_sccm=500.0)
    with pytest.raises(ConfigurationError, match=r"numbers its gases itself"):
        await none.verify()


# --- probe -------------------------------------------------------------------------------

async def test_probe_reads_spans_names_bits_and_shows_errors_per_register() -> None:
    bus = FakeRegisterBus()
    _preset(bus, "eurotherm3216", {"PV.IN.F": 25.0, "StAt": 0x0020 | 0x0400})
    bus.rejected[(UNIT, 76)] = 2  # StAt.INV refused: its span is read register by register
    probed = {p.name: p for p in await probe_instrument(bus, UNIT,
                                                        load_builtin_map("eurotherm3216"))}
    assert probed["StAt"].bits == ("sensor_break", "over_range")
    assert probed["StAt"].roles == ("status",)
    assert "exception 02" in probed["StAt.INV"].error
    assert probed["PV.IN.F"].text == "25"
    assert "Ac.ALL" not in probed  # write-only: never read
    assert probed["L-R"].roles == ("remote_select",)
    assert role_names(load_builtin_map("eurotherm2400"))["RATE.UNITS"] == ("rate_limit.units",)


async def test_probe_of_a_silent_unit_costs_one_read() -> None:
    bus = FakeRegisterBus()
    probed = await probe_instrument(bus, 9, load_builtin_map("eurotherm3216"))
    assert len(bus.calls) == 1
    assert all(p.error and p.value is None for p in probed)
