"""A temperature controller driven by its instrument map: every register looked up by role.

Not here: recipes, holds or interlocks, or any one vendor's addresses (the map file has
them). Setpoints are streamed to the volatile remote setpoint, never to an EEPROM-backed
one; what a map lacks of the safety design (``drivers.maps.safety``) is switched off here,
as ``WHAT_IS_LOST`` says: no remote select (the setpoint goes to the remote setpoint
unselected, or, with none, to the local setpoint in steps), no rate-limit writes, no
sensor-break status, and a halt that cannot force the output off releases to local.
"""

from __future__ import annotations

import logging
import math
from typing import Final

from drivers.bus import RegisterBus
from drivers.errors import ConfigurationError, ReadbackMismatchError
from drivers.maps import (
    InstrumentMap,
    SafetyFeature,
    TemperatureControllerRoles,
    missing_safety_features,
)
from drivers.registers import DType, Register, RegisterBlock, decode, encode, read_spans
from drivers.roles import ControllerReading

__all__ = ["EEPROM_SETPOINT_STEP_C", "ModbusTemperatureController"]

logger = logging.getLogger(__name__)

_READBACK_TOLERANCE: Final = 1e-3  # float32 round trip of a setpoint in °C
_EEPROM_TOLERANCE_C: Final = 0.05  # an EEPROM-backed value this close is not rewritten
EEPROM_SETPOINT_STEP_C: Final = 5.0
"""With no volatile setpoint (the station waived it), setpoints go to the EEPROM-backed
local setpoint in steps of this much, and exactly once the setpoint stops moving (a dwell):
the instrument's own rate limit ramps between (``check_safety`` demands one). A 1000 °C
ramp is then ~200 writes of the 100 000 the parameter lasts."""
# Per-cycle values: where each polled role's value goes in the decoded list.
_PV, _TARGET, _OUTPUT, _WORKING, _STATUS, _SELECT = range(6)


def _places(decimals: int) -> str:
    return f"{decimals} decimal place" + ("" if decimals == 1 else "s")


class ModbusTemperatureController:
    """A temperature controller at ``unit`` on ``bus``, described by ``imap`` (a
    temperature controller's map, at the station's decimal places).

    ``decimals`` is what the station says the instrument shows (the connect check compares);
    ``indicator``: a second input only, never written. Each call is one or a few Modbus
    transactions; errors are the bus's ``DeviceError``s. Raises ``ConfigurationError`` if
    ``imap`` is not a temperature controller's map or binds no setpoint to write.
    """

    def __init__(self, bus: RegisterBus, unit: int, imap: InstrumentMap, *,
                 name: str = "furnace", decimals: int = 1, indicator: bool = False) -> None:
        roles = imap.roles_as(TemperatureControllerRoles, field=f"{name}.map")
        self.name = name
        self.imap = imap
        self._bus = bus
        self._unit = unit
        self._roles = roles
        self._decimals = decimals
        self._indicator = indicator
        self._regs = {r.name: r for r in imap.registers.registers}
        self.switched_off: tuple[SafetyFeature, ...] = missing_safety_features(imap)
        """The safety features this map lacks, whose behaviour this driver leaves out."""
        # Where setpoints go: the volatile remote setpoint, or (waived) the local one.
        target = roles.remote_setpoint or roles.local_setpoint
        if target is None and not indicator:
            raise ConfigurationError(f"{imap.model} ({imap.source}) binds neither "
                                     "roles.remote_setpoint nor roles.local_setpoint: there "
                                     "is no setpoint to write", field=f"{name}.map")
        self._setpoint = self._regs[target] if target is not None else None
        self._setpoint_in_eeprom = target is not None and imap.is_eeprom(target)
        self._last_written_c: float | None = None  # the setpoint last written and read back
        self._last_asked_c: float | None = None  # the setpoint last asked for
        self._fallback_c: float | None = None  # the local fallback (configure_fallback)
        status = roles.status
        bits = status.bits if status is not None else {}
        # The status bits the scan cycle tests, as plain int masks (0: not in the map).
        self._manual = bits.get("manual", 0)
        self._sensor_break = bits.get("sensor_break", 0)
        self._over_range = bits.get("over_range", 0)
        self._remote_fail = bits.get("remote_fail", 0)
        self._ramp_running = bits.get("ramp_running", 0)
        self._has_ramp_bit = "ramp_running" in bits
        select = roles.remote_select
        self._remote_value = select.remote if select is not None else 0
        # The poll: each block read and where its values go, the process value's first.
        polled: list[tuple[int, str]] = [(_PV, roles.process_value)]
        if roles.local_setpoint is not None and roles.local_setpoint != target:
            # the fallback, to see another program change it; not when it is the one
            # streamed to (no volatile setpoint): it is ours then
            polled.append((_TARGET, roles.local_setpoint))
        polled += [(_OUTPUT, roles.output), (_WORKING, roles.working_setpoint)]
        if status is not None:
            polled.append((_STATUS, status.register))
        if select is not None and not indicator:
            polled.append((_SELECT, select.register))
        slot = {name: index for index, name in polled}
        groups = read_spans(imap.registers, [self._regs[n] for _, n in polled])
        # (block, where its values go, whether it is one unscaled 16-bit word: the status
        # word or the select, taken as read, with no decode)
        blocks = [(RegisterBlock(g), tuple(slot[r.name] for r in g),
                   len(g) == 1 and g[0].dtype is DType.UINT16 and g[0].scale == 1.0)
                  for g in groups]
        blocks.sort(key=lambda b: min(b[1]))
        self._poll = tuple(blocks)
        self._blank = [math.nan] * 6

    @property
    def decimals_check(self) -> str:
        """How ``verify`` checks the station's decimal places against the instrument (for
        ``furnace probe``); the map decides."""
        roles = self._roles
        if (roles.process_value_scaled is not None
                and self._regs[roles.process_value].dtype is DType.FLOAT32):
            return (f"scaled PV {roles.process_value_scaled} compared with float PV "
                    f"{roles.process_value}")
        if roles.display_decimals is not None:
            return f"display-decimals register {roles.display_decimals} read"
        return ("not checkable: the map has neither a float and a scaled PV nor a "
                "display-decimals register")

    def _role(self, name: str | None) -> Register | None:
        return self._regs[name] if name is not None else None

    async def read(self) -> ControllerReading:
        """Poll PV, the local (fallback) setpoint, working setpoint, output, the status word
        and (unless an indicator) the setpoint source, in as few block reads as the map's
        layout allows (three on the 3216)."""
        bus, unit = self._bus, self._unit
        values = self._blank.copy()
        for block, where, word in self._poll:
            words = await bus.read_registers(unit, block.address, block.count)
            if word:
                values[where[0]] = words[0]
            else:  # the lengths match: ``where`` was built from the block's registers
                for index, value in zip(where, block.decode(words)):  # noqa: B905
                    values[index] = value
        pv_c, target_c, output_pct, working_c, status_f, select = values
        status = 0 if status_f != status_f else int(status_f)  # NaN: no status word
        if self._has_ramp_bit:
            ramping = status & self._ramp_running != 0
        else:  # no ramp bit: the working setpoint has not reached what we asked for
            asked = self._last_written_c
            ramping = asked is not None and abs(working_c - asked) > 0.05
        return ControllerReading(
            temperature_c=pv_c,
            working_setpoint_c=working_c,
            output_pct=output_pct,
            is_manual=status & self._manual != 0,
            is_sensor_break=status & self._sensor_break != 0,
            is_over_range=status & self._over_range != 0,
            is_remote_failed=status & self._remote_fail != 0,
            is_ramping=ramping,
            is_remote_selected=select != select or round(select) == self._remote_value,
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

    async def _write_if_different(self, reg: Register, value: float) -> None:
        """An EEPROM-backed parameter: written (and read back) only if it differs."""
        if abs(await self._read_value(reg) - value) > _EEPROM_TOLERANCE_C:
            logger.info("writing EEPROM-backed parameter",
                        extra={"device": self.name, "register": reg.name, "value": value})
            await self._write_checked(reg, value)

    # ------------------------------------------------------------------ connect check
    async def verify(self) -> None:
        """Connect check: prove that the instrument at this unit id is the one the station
        describes, before anything moves.

        Decimal places: where the map has the PV twice (a float and the view scaled by the
        configured decimals, ``roles.process_value_scaled``), reads the float PV, the scaled
        PV, then the float again: the scaled value, decoded with the configured
        ``decimals``, must agree with the float readings to within a count, their spread and
        2 % (a wrong ``decimals`` is off by a factor of 10 or 100). Else, with
        ``roles.display_decimals``, that register must read ``decimals``. With neither the
        decimal places cannot be checked (the map's notes say so). Then the input range, if
        mapped, must have low < high, and the rate limit's units register, if mapped, its
        value. Raises ``ConfigurationError`` (one line: what disagreed and the station field
        to fix); a wrong unit id shows up as the bus's ``DeviceTimeoutError`` or
        ``DeviceRejectedError``, which propagate.
        """
        roles = self._roles
        where = f"{self.name} (unit {self._unit})"
        pv = self._regs[roles.process_value]
        scaled = self._role(roles.process_value_scaled)
        if scaled is not None and pv.dtype is DType.FLOAT32:
            await self._check_scaled_pv(pv, scaled, where)
        else:
            await self._read_value(pv)  # the unit answers where its PV should be
            shown_reg = self._role(roles.display_decimals)
            if shown_reg is not None:
                shown = round(await self._read_value(shown_reg))
                if shown != self._decimals:
                    raise ConfigurationError(
                        f"{where}: {shown_reg.name} says the instrument shows "
                        f"{_places(shown)} but the station says {self._decimals} "
                        f"({self.name}.decimals)")
        low, high = self._role(roles.range_low), self._role(roles.range_high)
        if low is not None and high is not None:
            low_c, high_c = await self._read_value(low), await self._read_value(high)
            if not low_c < high_c:
                raise ConfigurationError(
                    f"{where}: input range low {low_c:g} °C is not below range high "
                    f"{high_c:g} °C — check the instrument's input type against "
                    f"{self.name}.thermocouple")
        rate = roles.rate_limit
        if rate is not None and rate.units_register is not None and rate.units_value is not None:
            units = round(await self._read_value(self._regs[rate.units_register]))
            if units != rate.units_value:
                raise ConfigurationError(
                    f"{where}: {rate.units_register} reads {units}, not {rate.units_value} "
                    f"(per {rate.per}, as {self.imap.source} counts the rate limit) — set "
                    f"the instrument's rate-limit units ({self.name}.map)")

    async def _check_scaled_pv(self, pv: Register, scaled: Register, where: str) -> None:
        first_c = await self._read_value(pv)
        raw = decode(Register(f"{scaled.name}.RAW", scaled.address, scaled.dtype),
                     await self._bus.read_registers(self._unit, scaled.address,
                                                    scaled.word_count))
        second_c = await self._read_value(pv)
        spread_c = abs(second_c - first_c)

        def agrees(decimals: int) -> bool:
            # The reads are moments apart: the furnace moves and the sensor noise differs
            # between them. A wrong decimals setting is off by ×10 or ×100, so a tolerance
            # of one count plus the spread plus 2 % (and 1 K) still tells them apart.
            count = 10.0**-decimals
            tolerance_c = count + spread_c + max(0.02 * abs(first_c), 1.0)
            return abs(raw * count - first_c) <= tolerance_c

        if agrees(self._decimals):
            return
        places = self.imap.decimal_places or (0, 1, 2)
        shown = next((d for d in places if agrees(d)), None)
        if shown is None:
            shown_pv = f"{first_c:g}"
            detail = "the decimal places the instrument shows cannot be told from them"
        else:
            shown_pv = f"{first_c:.{shown}f}"
            detail = (f"the instrument shows {_places(shown)} but the station says "
                      f"{self._decimals}")
        raise ConfigurationError(f"{where}: scaled PV {raw:.0f} and float PV {shown_pv} "
                                 f"disagree — {detail} ({self.name}.decimals)")

    # ------------------------------------------------------------------ writing
    async def write_setpoint_c(self, setpoint_c: float) -> None:
        """Write the setpoint and read it back: the volatile remote setpoint every call; an
        EEPROM-backed local setpoint (no volatile one in the map, waived by the station)
        only in steps of ``EEPROM_SETPOINT_STEP_C`` and once the setpoint stops moving."""
        reg = self._setpoint
        if reg is None:
            raise ConfigurationError(f"{self.name} is an indicator: nothing to write")
        asked, self._last_asked_c = self._last_asked_c, setpoint_c
        last = self._last_written_c
        if self._setpoint_in_eeprom and last is not None:
            moved = abs(setpoint_c - last)
            settled = asked == setpoint_c and moved > _EEPROM_TOLERANCE_C
            if moved < EEPROM_SETPOINT_STEP_C and not settled:
                return
        await self._write_checked(reg, setpoint_c)
        self._last_written_c = setpoint_c

    async def write_rate_limit_c_per_min(self, rate_c_per_min: float) -> None:
        """Write the instrument's setpoint rate limit (°C/min, 0 = no limit, converted to
        the map's time base) and read it back; nothing if the map has none (waived)."""
        rate = self._roles.rate_limit
        if rate is None:
            return
        await self._write_checked(self._regs[rate.register], rate.to_register(rate_c_per_min))

    async def configure_fallback(self, *, local_setpoint_c: float,
                                 rate_limit_c_per_min: float, alarm_high_c: float) -> None:
        """Preflight, in this order: rate limit, local setpoint (EEPROM: written only if it
        differs), high alarm (likewise), auto mode, setpoint = current working setpoint (no
        step), then remote selected; every write read back. What the map lacks is left out;
        with no volatile setpoint the local setpoint is the streamed one, not a fallback."""
        roles = self._roles
        self._fallback_c = local_setpoint_c
        await self.write_rate_limit_c_per_min(rate_limit_c_per_min)
        local = self._role(roles.local_setpoint)
        if local is not None and local is not self._setpoint:
            await self._write_if_different(local, local_setpoint_c)
        alarm = self._role(roles.alarm_high)
        if alarm is not None:
            await self._write_if_different(alarm, alarm_high_c)
        am = roles.auto_manual
        if am is not None:
            await self._write_checked(self._regs[am.register], am.auto)
        reading = await self.read()
        setpoint = self._setpoint
        if setpoint is not None and self._setpoint_in_eeprom:
            await self._write_if_different(setpoint, reading.working_setpoint_c)
            self._last_written_c = self._last_asked_c = reading.working_setpoint_c
        else:
            self._last_written_c = None  # prime the setpoint whatever was written before
            await self.write_setpoint_c(reading.working_setpoint_c)
        select = roles.remote_select
        if select is not None:
            await self._write_checked(self._regs[select.register], select.remote)

    async def force_output_off(self) -> None:
        """Manual output 0 % first (stored while still in auto), then manual mode; both
        read back. The instrument then holds 0 % whatever its PV says. A map without
        them (waived) releases to local instead (``release_to_local``)."""
        roles = self._roles
        am, manual = roles.auto_manual, self._role(roles.manual_output)
        if am is None or manual is None:
            logger.warning("cannot force the output off: releasing to local",
                           extra={"device": self.name})
            await self.release_to_local()
            return
        await self._write_checked(manual, 0.0)
        await self._write_checked(self._regs[am.register], am.manual)

    async def release_to_local(self) -> None:
        """Select the local setpoint: the instrument ramps to it at its rate limit by
        itself. A map without a remote select (waived) has nothing to select: the
        setpoint it streams to is given the local fallback (``configure_fallback``'s)."""
        select = self._roles.remote_select
        if select is not None:
            await self._write_checked(self._regs[select.register], select.local)
            return
        reg = self._setpoint
        if reg is not None and self._fallback_c is not None:
            await self._write_checked(reg, self._fallback_c)
            self._last_written_c = self._fallback_c

