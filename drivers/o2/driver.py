"""Driver for an O2 analyser described by its map (default: the built-in generic map file,
``drivers/maps/o2-analyser.toml``).

Not here: purge logic; this only reads ppm.
"""

from __future__ import annotations

from typing import Final

from drivers.bus import RegisterBus
from drivers.errors import DeviceFaultError
from drivers.maps import InstrumentMap, OxygenAnalyserRoles, load_builtin_map
from drivers.registers import RegisterBlock, read_spans

__all__ = ["BUILTIN_MAP", "O2Analyser"]

BUILTIN_MAP: Final = "o2-analyser"


class O2Analyser:
    """An O2 analyser at ``unit`` on ``bus``; ``imap``: its map (default: the built-in one).
    Raises ``ConfigurationError`` if ``imap`` is not an oxygen analyser's map."""

    def __init__(self, bus: RegisterBus, unit: int, *, name: str = "o2",
                 imap: InstrumentMap | None = None) -> None:
        imap = imap or load_builtin_map(BUILTIN_MAP)
        roles = imap.roles_as(OxygenAnalyserRoles, field=f"{name}.map")
        self.name = name
        self.imap = imap
        self._bus = bus
        self._unit = unit
        regs = {r.name: r for r in imap.registers.registers}
        status = roles.status
        self._status_register = status.register if status is not None else ""
        self._fault = 0
        if status is not None:
            for bit in status.fault:
                self._fault |= status.bits.get(bit, 0)
        slot = {roles.o2: 0}
        if status is not None:
            slot.setdefault(status.register, 1)
        # ppm (float32) and the status word: one read where they are adjacent
        self._blocks = tuple((RegisterBlock(g), tuple(slot[r.name] for r in g))
                             for g in read_spans(imap.registers, [regs[n] for n in slot]))

    async def verify(self) -> None:
        """Connect check: the O2 reading and status word are readable at this unit id.

        A sensor fault is not an error here (the interlocks judge readings); a wrong unit
        id shows up as the bus's ``DeviceTimeoutError`` or ``DeviceRejectedError``.
        """
        for block, _ in self._blocks:
            await self._bus.read_registers(self._unit, block.address, block.count)

    async def read_o2_ppm(self) -> float:
        """O2 in ppm (one transaction on the built-in map). Raises ``DeviceFaultError`` on a
        sensor fault."""
        values = [0.0, 0.0]
        for block, where in self._blocks:
            decoded = block.decode(await self._bus.read_registers(self._unit, block.address,
                                                                  block.count))
            for index, value in zip(where, decoded, strict=True):
                values[index] = value
        if int(values[1]) & self._fault:
            raise DeviceFaultError("O2 sensor fault", device=self.name,
                                   register=self._status_register)
        return values[0]
