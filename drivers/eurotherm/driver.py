"""Eurotherm 3216 driver: typed, unit-bearing calls over any ``RegisterBus``.

Not here: recipes, holds or interlocks. Temperatures go through the float region (full
resolution); setpoints are streamed to the volatile remote setpoint, never to the
EEPROM-backed target setpoint, which is written only at preflight and only if it differs.
"""

from __future__ import annotations

import logging
from typing import Final

from drivers.bus import RegisterBus
from drivers.errors import ConfigurationError, ReadbackMismatchError
from drivers.eurotherm.registers import Status, build_map
from drivers.registers import DType, Register, RegisterBlock, decode, encode
from drivers.roles import ControllerReading

__all__ = ["Eurotherm3216"]

logger = logging.getLogger(__name__)

_READBACK_TOLERANCE: Final = 1e-3  # float32 round trip of a setpoint in °C
# PV.IN as the raw signed word, whatever the decimal places (the connect check decodes it).
_RAW_INT16: Final = Register("PV.IN.RAW", 1, DType.INT16)
# The status bits the scan cycle looks at, as plain int masks (an IntFlag per poll costs
# ten times the test).
_MANUAL: Final = int(Status.MANUAL)
_SENSOR_BREAK: Final = int(Status.SENSOR_BREAK)
_PV_OVER_RANGE: Final = int(Status.PV_OVER_RANGE)
_REMOTE_SP_FAIL: Final = int(Status.REMOTE_SP_FAIL)
_RAMP_RUNNING: Final = int(Status.RAMP_RUNNING)
_POLLED: Final = ("PV.IN", "TG.SP", "MAN.OP", "WRK.OP", "WKG.SP")


def _places(decimals: int) -> str:
    return f"{decimals} decimal place" + ("" if decimals == 1 else "s")


class Eurotherm3216:
    """A 3200-series controller at ``unit`` on ``bus``.

    Each call is one or two Modbus transactions; errors are the bus's ``DeviceError``s.
    """

    def __init__(self, bus: RegisterBus, unit: int, *, name: str = "furnace",
                 decimals: int = 1, indicator: bool = False) -> None:
        self.name = name
        self._bus = bus
        self._unit = unit
        regs = {r.name: r for r in build_map(decimals).registers}
        self._regs = regs
        self._decimals = decimals
        # One block read of addresses 1-5 as floats: PV, TG.SP, MAN.OP, WRK.OP, WKG.SP.
        self._block = RegisterBlock([regs[f"{n}.F"] for n in _POLLED])
        self._status_address = regs["StAt"].address
        self._lr_address = regs["L-R"].address
        self._setpoint = regs["Rm.SP.F"]
        self._indicator = indicator  # a second input only: no setpoint source to check

    def _f(self, name: str) -> Register:
        return self._regs[f"{name}.F"]

    async def read(self) -> ControllerReading:
        """Poll PV, the local target setpoint TG.SP, working setpoint, output, the status
        word and (unless an indicator) the setpoint source: three transactions."""
        bus, unit, block = self._bus, self._unit, self._block
        pv_c, target_c, _, output_pct, working_c = block.decode(
            await bus.read_registers(unit, block.address, block.count))
        status = (await bus.read_registers(unit, self._status_address, 1))[0]
        remote = True
        if not self._indicator:
            remote = (await bus.read_registers(unit, self._lr_address, 1))[0] == 1
        return ControllerReading(
            temperature_c=pv_c,
            working_setpoint_c=working_c,
            output_pct=output_pct,
            is_manual=status & _MANUAL != 0,
            is_sensor_break=status & _SENSOR_BREAK != 0,
            is_over_range=status & _PV_OVER_RANGE != 0,
            is_remote_failed=status & _REMOTE_SP_FAIL != 0,
            is_ramping=status & _RAMP_RUNNING != 0,
            is_remote_selected=remote,
            target_setpoint_c=target_c,
        )

    async def _write_checked(self, reg: Register, value: float) -> None:
        words = encode(reg, value)
        await self._bus.write_registers(self._unit, reg.address, words)
        back = await self._bus.read_registers(self._unit, reg.address, reg.word_count)
        got = decode(reg, back)
        tolerance = max(_READBACK_TOLERANCE, abs(reg.scale) / 2)
        if abs(got - value) > tolerance * max(1.0, abs(value) * 1e-6):
            raise ReadbackMismatchError(f"wrote {value:g}, read back {got:g}",
                                        device=self.name, register=reg.name)

    async def _read_value(self, reg: Register) -> float:
        words = await self._bus.read_registers(self._unit, reg.address, reg.word_count)
        return decode(reg, words)

    async def verify(self) -> None:
        """Connect check: prove that the instrument at this unit id is the one the station
        describes, before anything moves.

        Reads PV from the float region, the scaled region, then the float region again: the
        scaled value, decoded with the configured ``decimals``, must agree with the float
        readings to within a count, their spread and 2 % (a wrong ``decimals`` is off by a
        factor of 10 or 100). Then the
        input range must have RNG.LO < RNG.HI. Raises ``ConfigurationError`` (one line: what
        disagreed and the station field to fix); a wrong unit id shows up as the bus's
        ``DeviceTimeoutError`` or ``DeviceRejectedError``, which propagate.
        """
        pv_float = self._f("PV.IN")
        pv_scaled = self._regs["PV.IN"]
        first_c = await self._read_value(pv_float)
        raw = decode(_RAW_INT16, await self._bus.read_registers(self._unit, pv_scaled.address,
                                                                1))
        second_c = await self._read_value(pv_float)
        spread_c = abs(second_c - first_c)

        def agrees(decimals: int) -> bool:
            # The reads are moments apart: the furnace moves and the sensor noise differs
            # between them. A wrong decimals setting is off by ×10 or ×100, so a tolerance
            # of one count plus the spread plus 2 % (and 1 K) still tells them apart.
            count = 10.0**-decimals
            tolerance_c = count + spread_c + max(0.02 * abs(first_c), 1.0)
            return abs(raw * count - first_c) <= tolerance_c

        if not agrees(self._decimals):
            where = f"{self.name} (unit {self._unit})"
            shown = next((d for d in (0, 1, 2) if agrees(d)), None)
            if shown is None:
                shown_pv = f"{first_c:g}"
                detail = "the decimal places the instrument shows cannot be told from them"
            else:
                shown_pv = f"{first_c:.{shown}f}"
                detail = (f"the instrument shows {_places(shown)} but the station says "
                          f"{self._decimals}")
            raise ConfigurationError(
                f"{where}: scaled PV {raw:.0f} and float PV {shown_pv} "
                f"disagree — {detail} ({self.name}.decimals)")
        low_c = await self._read_value(self._f("RNG.LO"))
        high_c = await self._read_value(self._f("RNG.HI"))
        if not low_c < high_c:
            raise ConfigurationError(
                f"{self.name} (unit {self._unit}): input range low {low_c:g} °C is not below "
                f"range high {high_c:g} °C — check the instrument's input type "
                f"against {self.name}.thermocouple")

    async def write_setpoint_c(self, setpoint_c: float) -> None:
        """Write the remote (comms) setpoint Rm.SP and read it back."""
        await self._write_checked(self._setpoint, setpoint_c)

    async def write_rate_limit_c_per_min(self, rate_c_per_min: float) -> None:
        """Write SP.RAT (°C/min, 0 = no limit) and read it back."""
        await self._write_checked(self._f("SP.RAT"), rate_c_per_min)

    async def configure_fallback(self, *, local_setpoint_c: float,
                                 rate_limit_c_per_min: float, alarm_high_c: float) -> None:
        """Preflight, in this order: rate limit, local setpoint (EEPROM: written only if it
        differs), high alarm (likewise), auto mode, remote setpoint = current working
        setpoint (no step), then remote selected. Every write is read back."""
        await self.write_rate_limit_c_per_min(rate_limit_c_per_min)
        for name, value in (("TG.SP", local_setpoint_c), ("A1", alarm_high_c)):
            reg = self._f(name)
            if abs(await self._read_value(reg) - value) > 0.05:
                logger.info("writing EEPROM-backed parameter",
                            extra={"device": self.name, "register": name, "value": value})
                await self._write_checked(reg, value)
        await self._write_checked(self._regs["A-M"], 0)
        reading = await self.read()
        await self.write_setpoint_c(reading.working_setpoint_c)
        await self._write_checked(self._regs["L-R"], 1)

    async def force_output_off(self) -> None:
        """Manual output 0 % first (stored while still in auto), then manual mode; both
        read back. The instrument then holds 0 % whatever its PV says."""
        await self._write_checked(self._f("MAN.OP"), 0.0)
        await self._write_checked(self._regs["A-M"], 1)

    async def release_to_local(self) -> None:
        """Select the local setpoint: the instrument ramps to it at SP.RAT by itself."""
        await self._write_checked(self._regs["L-R"], 0)


