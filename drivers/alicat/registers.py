"""Alicat mass-flow controller Modbus map (current 1200-block firmware), as data.

Source: reference/hardware.md §2.1 (DOC-MANUAL-MPL, Feb 2023, [S21]). The manual numbers
registers from 1; the addresses here are 0-based PDU addresses (register - 1). Floats are
big-endian IEEE-754 over two registers. All writes use FC16.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Final

from drivers.registers import Access, DType, Register, RegisterMap

__all__ = ["MAP", "MODEL", "Status"]

MODEL: Final = "alicat"


class Status(IntFlag):
    """Status flags (registers 1201-1202) [S21]."""

    TOV_HIGH = 1 << 0
    TOV_LOW = 1 << 1
    VOV_HIGH = 1 << 2
    VOV_LOW = 1 << 3
    MOV_HIGH = 1 << 4
    MOV_LOW = 1 << 5
    POV = 1 << 6
    TOTALIZER_OVERFLOW = 1 << 7
    PID_HOLD = 1 << 8
    ADC_ERROR = 1 << 9
    EXHAUST = 1 << 10
    OVER_PRESSURE = 1 << 11
    FLOW_OVERFLOW = 1 << 12
    MEASUREMENT_ABORTED = 1 << 13


def _float(name: str, register: int, unit: str, doc: str, access: Access = Access.RO,
           maximum: float | None = None) -> Register:
    return Register(name, register - 1, DType.FLOAT32, unit=unit, access=access,
                    minimum=0.0 if access is not Access.RO else None, maximum=maximum,
                    doc=f"{doc}, register {register}, §2.1 [S21]")


SETPOINT: Final = _float("SETPOINT", 1010, "sccm", "setpoint", Access.RW, maximum=1e6)
GAS_NUMBER: Final = Register("GAS", 1199, DType.UINT16, access=Access.RW, minimum=0,
                             maximum=255, doc="gas number, register 1200, §2.1 [S21]")
STATUS: Final = Register("STATUS", 1200, DType.UINT32, access=Access.RO,
                         doc="status flags, registers 1201-1202, §2.1 [S21]")
PRESSURE: Final = _float("PRESSURE", 1203, "psia", "pressure")
FLOW_TEMPERATURE: Final = _float("FLOW_TEMP", 1205, "degC", "flow temperature")
VOLUMETRIC_FLOW: Final = _float("VOL_FLOW", 1207, "ccm", "volumetric flow")
MASS_FLOW: Final = _float("MASS_FLOW", 1209, "sccm", "mass flow")
SETPOINT_READBACK: Final = _float("SETPOINT_RB", 1211, "sccm",
                                  "setpoint readback (UNCONFIRMED, [S22])")
COMMAND_ID: Final = Register("CMD", 999, DType.UINT16, access=Access.RW, minimum=0,
                             maximum=32767, doc="command id, register 1000, §2.1 [S21]")
COMMAND_ARG: Final = Register("CMD.ARG", 1000, DType.UINT16, access=Access.RW, minimum=0,
                              maximum=65535,
                              doc="command argument / result, register 1001, §2.1 [S21]")

MAP: Final = RegisterMap(MODEL, (COMMAND_ID, COMMAND_ARG, SETPOINT, GAS_NUMBER, STATUS,
                                 PRESSURE, FLOW_TEMPERATURE, VOLUMETRIC_FLOW, MASS_FLOW,
                                 SETPOINT_READBACK))

# Gas index order used by Alicat firmware ([S25], numat/alicat).
GAS_INDEX: Final = {"Air": 0, "air": 0, "Ar": 1, "CH4": 2, "CO": 3, "CO2": 4, "H2": 6,
                    "He": 7, "N2": 8, "O2": 11}
