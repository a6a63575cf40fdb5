"""Alicat mass-flow controller driver over any ``RegisterBus`` (1200-block firmware map).

Not here: which gas a recipe wants; this only moves flows in sccm.
"""

from __future__ import annotations

from typing import Final

from drivers.alicat.registers import (
    MASS_FLOW,
    SETPOINT,
    SETPOINT_READBACK,
    STATUS,
    Status,
)
from drivers.bus import RegisterBus
from drivers.errors import ReadbackMismatchError
from drivers.registers import decode, encode
from drivers.roles import FlowReading

__all__ = ["AlicatMFC"]

_FAULT: Final = Status.ADC_ERROR | Status.PID_HOLD | Status.MEASUREMENT_ABORTED
# One block from STATUS through SETPOINT_READBACK: status, P, T, Qv, Qm, setpoint.
_BLOCK_START: Final = STATUS.address
_BLOCK_COUNT: Final = SETPOINT_READBACK.address + 2 - STATUS.address


class AlicatMFC:
    """An Alicat MFC at ``unit`` metering ``gas``. Flows are in sccm."""

    def __init__(self, bus: RegisterBus, unit: int, *, gas: str, full_scale_sccm: float,
                 name: str | None = None) -> None:
        self.name = name or f"mfc_{gas}"
        self.gas = gas
        self.full_scale_sccm = full_scale_sccm
        self._bus = bus
        self._unit = unit

    async def read(self) -> FlowReading:
        """Poll status, mass flow and setpoint in one transaction."""
        words = await self._bus.read_registers(self._unit, _BLOCK_START, _BLOCK_COUNT)
        status = Status(int(decode(STATUS, words[0:2])))
        off_flow = MASS_FLOW.address - _BLOCK_START
        off_sp = SETPOINT_READBACK.address - _BLOCK_START
        return FlowReading(
            flow_sccm=decode(MASS_FLOW, words[off_flow:off_flow + 2]),
            setpoint_sccm=decode(SETPOINT_READBACK, words[off_sp:off_sp + 2]),
            is_faulted=bool(status & _FAULT),
        )

    async def set_flow_sccm(self, flow_sccm: float) -> None:
        """Write the setpoint (FC16, float) and read it back. Raises ``DeviceError``."""
        await self._bus.write_registers(self._unit, SETPOINT.address,
                                        encode(SETPOINT, flow_sccm))
        back = decode(SETPOINT, await self._bus.read_registers(self._unit, SETPOINT.address,
                                                               2))
        if abs(back - flow_sccm) > 1e-3 * max(1.0, flow_sccm):
            raise ReadbackMismatchError(f"wrote {flow_sccm:g} sccm, read back {back:g}",
                                        device=self.name, register=SETPOINT.name)
