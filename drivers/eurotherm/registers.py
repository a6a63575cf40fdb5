"""Eurotherm 3216 (3200 series) Modbus map, as data: no I/O, no pymodbus.

Sources: reference/hardware.md §1.1 and §1.4 (manual HA028651 §15.5 pp. 81-82, [S03]-[S06]).
Every temperature-like register exists twice: in the 16-bit region scaled by the configured
decimal places, and as an IEEE float at ``0x8000 + 2 * address`` (high word first). Both are
views of one value. The driver reads and writes the float region (full resolution); the
scaled region is what a panel-configured master sees and what the connect check compares.
"""

from __future__ import annotations

from enum import IntFlag
from functools import cache
from typing import Final

from drivers.registers import Access, DType, Register, RegisterMap

__all__ = ["FLOAT_BASE", "MODEL", "Status", "build_map", "float_alias"]

MODEL: Final = "eurotherm3216"
FLOAT_BASE: Final = 0x8000
_TEMP_MIN_C: Final = -200.0
_TEMP_MAX_C: Final = 1820.0  # Type B upper end, the widest input the 3216 takes


class Status(IntFlag):
    """StAt (address 75) bits of the 3200 series [S03]; 1 = active."""

    ALARM_1 = 1 << 0
    ALARM_2 = 1 << 1
    ALARM_3 = 1 << 2
    ALARM_4 = 1 << 3
    MANUAL = 1 << 4
    SENSOR_BREAK = 1 << 5
    LOOP_BREAK = 1 << 6
    CT_LOW_LOAD = 1 << 7
    CT_HIGH_LEAKAGE = 1 << 8
    PROGRAM_END = 1 << 9
    PV_OVER_RANGE = 1 << 10
    CT_OVER_CURRENT = 1 << 11
    NEW_ALARM = 1 << 12
    RAMP_RUNNING = 1 << 13
    REMOTE_SP_FAIL = 1 << 14
    AUTOTUNE = 1 << 15


def _temperature(name: str, address: int, scale: float, access: Access, doc: str) -> Register:
    return Register(name, address, DType.INT16, scale=scale, unit="degC", access=access,
                    minimum=_TEMP_MIN_C, maximum=_TEMP_MAX_C, doc=doc)


def _percent(name: str, address: int, scale: float, access: Access, doc: str) -> Register:
    return Register(name, address, DType.INT16, scale=scale, unit="%", access=access,
                    minimum=-100.0, maximum=100.0, doc=doc)


def float_alias(reg: Register) -> Register:
    """The IEEE-754 view of a scaled register at ``0x8000 + 2 * address`` (§1.4)."""
    return Register(f"{reg.name}.F", FLOAT_BASE + 2 * reg.address, DType.FLOAT32,
                    unit=reg.unit, access=reg.access, minimum=reg.minimum,
                    maximum=reg.maximum, doc=f"float alias of {reg.name}, §1.4 [S05][S06]")


@cache
def build_map(decimals: int = 1) -> RegisterMap:
    """The 3216 map for an instrument showing ``decimals`` decimal places (0-2).

    Raises ``ValueError`` for other decimal settings.
    """
    if decimals not in (0, 1, 2):
        raise ValueError(f"decimals must be 0, 1 or 2, not {decimals}")
    s = 10.0**-decimals
    scaled = (
        _temperature("PV.IN", 1, s, Access.RO, "process value, §1.1 [S03]"),
        _temperature("TG.SP", 2, s, Access.RW,
                     "target setpoint, EEPROM 100k writes: preflight only, §1.1 [S03]"),
        _percent("MAN.OP", 3, 0.1, Access.RW, "manual output value, §1.1 [S03]"),
        _percent("WRK.OP", 4, 0.1, Access.RO, "working output, §1.1 [S03]"),
        _temperature("WKG.SP", 5, s, Access.RO, "working (ramped) setpoint, §1.1 [S06]"),
        Register("PB", 6, DType.INT16, scale=s, unit="degC", access=Access.RW, minimum=0.1,
                 maximum=999.9, doc="proportional band, §1.1 [S03]"),
        Register("Ti", 8, DType.INT16, unit="s", access=Access.RW, minimum=0, maximum=9999,
                 doc="integral time, 0 = off, §1.1 [S03]"),
        Register("Td", 9, DType.INT16, unit="s", access=Access.RW, minimum=0, maximum=9999,
                 doc="derivative time, 0 = off, §1.1 [S03]"),
        _temperature("RNG.LO", 11, s, Access.RO, "input range low, §1.1 [S03]"),
        _temperature("RNG.HI", 12, s, Access.RO, "input range high, §1.1 [S03]"),
        _temperature("A1", 13, s, Access.RW, "alarm 1 threshold (high), §1.1 [S03]"),
        _temperature("Rm.SP", 26, s, Access.RW,
                     "remote (comms) setpoint, volatile: stream here, §1.1 [S03][S05]"),
        _percent("OP.HI", 30, 0.1, Access.RW, "output high limit, §1.1 [S04]"),
        _percent("OP.LO", 31, 0.1, Access.RW, "output low limit, §1.1 [S04]"),
        Register("SP.RAT", 35, DType.INT16, scale=s, unit="degC/min", access=Access.RW,
                 minimum=0.0, maximum=999.9, doc="setpoint rate limit, 0 = off, §1.1 [S04]"),
        Register("ERR", 39, DType.INT16, scale=s, unit="degC", access=Access.RO,
                 doc="error = PV - SP, §1.1 [S05]"),
    )
    words = (
        Register("StAt", 75, DType.UINT16, access=Access.RO,
                 doc="instrument status bitmap (Status), §1.1 [S03]"),
        Register("StAt.INV", 76, DType.UINT16, access=Access.RO,
                 doc="bitwise NOT of StAt, §1.1 [S03]"),
        Register("A-M", 273, DType.UINT16, access=Access.RW, minimum=0, maximum=1,
                 doc="auto/manual select, 1 = manual, §1.1 (UNCONFIRMED for 3200) [S01]"),
        Register("Ac.ALL", 274, DType.UINT16, access=Access.WO, minimum=0, maximum=1,
                 doc="acknowledge all alarms (write 1), §1.1 [S06]"),
        Register("L-R", 276, DType.UINT16, access=Access.RW, minimum=0, maximum=1,
                 doc="local/remote setpoint select, 1 = remote, §1.1 [S05][S06]"),
    )
    floats = tuple(float_alias(r) for r in scaled)
    return RegisterMap(MODEL, scaled + words + floats)
