"""A mass-flow controller driven by its instrument map: setpoint, flow, status and gas by role.

Not here: which gas a recipe wants, or any one vendor's addresses (the map files). Flows
cross this driver's boundary in sccm whatever the instrument counts in: a map whose
``flow_basis`` is percent of full scale is converted with the station's full scale.
"""

from __future__ import annotations

import math
from typing import Final

from drivers.bus import RegisterBus
from drivers.errors import ConfigurationError, DeviceRejectedError, ReadbackMismatchError
from drivers.maps import InstrumentMap, MassFlowControllerRoles
from drivers.registers import DType, RegisterBlock, decode, encode, read_spans
from drivers.roles import FlowReading

__all__ = ["ModbusMassFlowController"]

_ILLEGAL_DATA_VALUE: Final = 3
_FULL_SCALE_TOLERANCE: Final = 0.01  # the instrument's range and the station's within 1 %
_FLOW, _SETPOINT, _STATUS = range(3)


class ModbusMassFlowController:
    """An MFC at ``unit`` on ``bus`` metering ``gas``, described by ``imap`` (a mass-flow
    controller's map). Flows are in sccm; ``full_scale_sccm`` is the station's range (it
    converts a map counting in % of full scale). ``gas_number``: what the instrument's gas
    register must show, where the map has no gas table (a Bronkhorst's own fluid numbers);
    default: the map's number for ``gas``. Raises ``ConfigurationError`` if ``imap`` is not
    a mass-flow controller's map.
    """

    def __init__(self, bus: RegisterBus, unit: int, imap: InstrumentMap, *, gas: str,
                 full_scale_sccm: float, name: str | None = None,
                 gas_number: int | None = None) -> None:
        self.name = name or f"mfc_{gas}"
        roles = imap.roles_as(MassFlowControllerRoles, field=f"{self.name}.map")
        self.gas = gas
        self.full_scale_sccm = full_scale_sccm
        self.imap = imap
        self._bus = bus
        self._unit = unit
        self._roles = roles
        self._gas_number = gas_number
        regs = {r.name: r for r in imap.registers.registers}
        self._regs = regs
        self._setpoint = regs[roles.setpoint]
        # register value -> sccm (None: the register is in sccm already)
        self._per_unit_sccm = (None if roles.flow_basis == "sccm" else full_scale_sccm / 100.0)
        status = roles.status
        self._fault = 0
        if status is not None:
            for bit in status.fault:
                self._fault |= status.bits.get(bit, 0)
        polled = [(_FLOW, roles.flow), (_SETPOINT, roles.setpoint_readback or roles.setpoint)]
        if status is not None:
            polled.append((_STATUS, status.register))
        groups = read_spans(imap.registers, [regs[n] for _, n in polled])
        # Each block and what to take from its decoded values: (value index, position).
        # A register that plays two parts is read once and taken twice.
        poll = []
        for group in groups:
            names = [r.name for r in group]
            poll.append((RegisterBlock(group), tuple((index, names.index(n))
                                                     for index, n in polled if n in names)))
        self._poll = tuple(poll)

    async def read(self) -> FlowReading:
        """Poll flow, setpoint and status (one transaction on the Alicat and Bronkhorst)."""
        bus, unit = self._bus, self._unit
        values = [math.nan, math.nan, 0.0]
        for block, picks in self._poll:
            decoded = block.decode(await bus.read_registers(unit, block.address, block.count))
            for index, position in picks:
                values[index] = decoded[position]
        flow, setpoint, status = values
        k = self._per_unit_sccm
        if k is not None:
            flow, setpoint = flow * k, setpoint * k
        return FlowReading(flow_sccm=flow, setpoint_sccm=setpoint,
                           is_faulted=int(status) & self._fault != 0)

    async def verify(self) -> None:
        """Connect check: the instrument at this unit id meters the station's gas.

        The gas register, if the map has one, must hold the station's ``gas_number`` or
        the map's number for the gas; the full-scale register, if any, the station's
        full scale within 1 %; and the setpoint register must be readable (it is a
        controller, not a meter). Raises ``ConfigurationError`` (one line, naming
        ``mfc.gas``, ``mfc.gas_number`` or ``mfc.full_scale_sccm``); a wrong unit id shows
        up as the bus's ``DeviceTimeoutError`` or ``DeviceRejectedError``, which propagate.
        """
        where = f"{self.name} (unit {self._unit})"
        roles = self._roles
        gas = roles.gas
        if gas is not None:
            expected = self._gas_number
            field = "mfc.gas_number" if expected is not None else "mfc.gas"
            if expected is None:
                expected = gas.numbers.get(self.gas)
            if expected is None:
                if not gas.numbers:
                    raise ConfigurationError(
                        f"{where}: {self.imap.model} numbers its gases itself: give the "
                        f"number it shows for {self.gas} (mfc.gas_number)")
                raise ConfigurationError(f"{where}: {self.imap.model} has no gas number for "
                                         f"{self.gas!r} (mfc.gas)")
            reg = self._regs[gas.register]
            number = round(decode(reg, await self._bus.read_registers(
                self._unit, reg.address, reg.word_count)))
            if number != expected:
                shown = gas.name_of(number) or "unknown"
                raise ConfigurationError(
                    f"{where}: the instrument meters gas number {number} ({shown}) but the "
                    f"station says {self.gas} (gas number {expected}) — select {self.gas} on "
                    f"the instrument or fix {field}")
        if roles.full_scale is not None:
            reg = self._regs[roles.full_scale]
            full_sccm = decode(reg, await self._bus.read_registers(self._unit, reg.address,
                                                                   reg.word_count))
            if abs(full_sccm - self.full_scale_sccm) > _FULL_SCALE_TOLERANCE * full_sccm:
                raise ConfigurationError(
                    f"{where}: the instrument's full scale is {full_sccm:g} sccm but the "
                    f"station says {self.full_scale_sccm:g} (mfc.full_scale_sccm)")
        sp = self._setpoint
        await self._bus.read_registers(self._unit, sp.address, sp.word_count)

    async def set_flow_sccm(self, flow_sccm: float) -> None:
        """Write the setpoint (FC16) and read it back. Raises ``DeviceError``: a flow the
        setpoint register cannot hold is refused as the instrument would (exception 03)."""
        reg = self._setpoint
        k = self._per_unit_sccm
        value = flow_sccm if k is None else flow_sccm / k
        try:
            words = encode(reg, value)
        except ValueError:
            raise DeviceRejectedError(f"{flow_sccm:g} sccm does not fit {reg.name}",
                                      exception_code=_ILLEGAL_DATA_VALUE, device=self.name,
                                      register=reg.name) from None
        await self._bus.write_registers(self._unit, reg.address, words)
        back = decode(reg, await self._bus.read_registers(self._unit, reg.address,
                                                          reg.word_count))
        back_sccm = back if k is None else back * k
        tolerance = 1e-3 * max(1.0, flow_sccm)
        if reg.dtype is not DType.FLOAT32 and k is not None:
            tolerance = max(tolerance, abs(reg.scale) * k)  # one count of the register
        if abs(back_sccm - flow_sccm) > tolerance:
            raise ReadbackMismatchError(f"wrote {flow_sccm:g} sccm, read back {back_sccm:g}",
                                        device=self.name, register=reg.name)
