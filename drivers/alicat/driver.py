"""Alicat mass-flow controller driver over any ``RegisterBus`` (1200-block firmware map).

Not here: which gas a recipe wants; this only moves flows in sccm.
"""

from __future__ import annotations

from typing import Final

from drivers.alicat.registers import (
    GAS_INDEX,
    GAS_NUMBER,
    MASS_FLOW,
    SETPOINT,
    SETPOINT_READBACK,
    STATUS,
    Status,
)
from drivers.bus import RegisterBus
from drivers.errors import ConfigurationError, ReadbackMismatchError
from drivers.registers import RegisterBlock, decode, encode
from drivers.roles import FlowReading

__all__ = ["AlicatMFC"]

_FAULT: Final = int(Status.ADC_ERROR | Status.PID_HOLD | Status.MEASUREMENT_ABORTED)
# One block from STATUS through SETPOINT_READBACK: status, P, T, Qv, Qm, setpoint (the
# words between are read and skipped).
_BLOCK: Final = RegisterBlock([STATUS, MASS_FLOW, SETPOINT_READBACK])
_GAS_NAME: Final = {number: gas for gas, number in reversed(GAS_INDEX.items())}


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
        status, flow_sccm, setpoint_sccm = _BLOCK.decode(
            await self._bus.read_registers(self._unit, _BLOCK.address, _BLOCK.count))
        return FlowReading(flow_sccm=flow_sccm, setpoint_sccm=setpoint_sccm,
                           is_faulted=int(status) & _FAULT != 0)

    async def verify(self) -> None:
        """Connect check: the instrument at this unit id meters the station's gas.

        The gas number register must hold ``GAS_INDEX[gas]``, and the setpoint register
        must be readable (it is a controller, not a meter). Raises ``ConfigurationError``
        (one line, naming ``mfc.gas``); a wrong unit id shows up as the bus's
        ``DeviceTimeoutError`` or ``DeviceRejectedError``, which propagate.
        """
        where = f"{self.name} (unit {self._unit})"
        expected = GAS_INDEX.get(self.gas)
        if expected is None:
            raise ConfigurationError(f"{where}: Alicat has no gas number for {self.gas!r} "
                                     "(mfc.gas)")
        words = await self._bus.read_registers(self._unit, GAS_NUMBER.address, 1)
        number = int(decode(GAS_NUMBER, words))
        if number != expected:
            shown = _GAS_NAME.get(number, "unknown")
            raise ConfigurationError(
                f"{where}: the instrument meters gas number {number} ({shown}) but the "
                f"station says {self.gas} (gas number {expected}) — select {self.gas} on "
                "the instrument or fix mfc.gas")
        await self._bus.read_registers(self._unit, SETPOINT.address, SETPOINT.word_count)

    async def set_flow_sccm(self, flow_sccm: float) -> None:
        """Write the setpoint (FC16, float) and read it back. Raises ``DeviceError``."""
        await self._bus.write_registers(self._unit, SETPOINT.address,
                                        encode(SETPOINT, flow_sccm))
        back = decode(SETPOINT, await self._bus.read_registers(self._unit, SETPOINT.address,
                                                               2))
        if abs(back - flow_sccm) > 1e-3 * max(1.0, flow_sccm):
            raise ReadbackMismatchError(f"wrote {flow_sccm:g} sccm, read back {back:g}",
                                        device=self.name, register=SETPOINT.name)
