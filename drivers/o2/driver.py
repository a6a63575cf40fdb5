"""Driver for the generic O2 analyser map (``drivers.o2.registers``).

Not here: purge logic; this only reads ppm.
"""

from __future__ import annotations

from drivers.bus import RegisterBus
from drivers.errors import DeviceFaultError
from drivers.o2.registers import O2_PPM, STATUS
from drivers.registers import RegisterBlock

__all__ = ["O2Analyser"]

_BLOCK = RegisterBlock([O2_PPM, STATUS])  # ppm (float32) and the status word: one read


class O2Analyser:
    """An O2 analyser at ``unit`` on ``bus``."""

    def __init__(self, bus: RegisterBus, unit: int, *, name: str = "o2") -> None:
        self.name = name
        self._bus = bus
        self._unit = unit

    async def verify(self) -> None:
        """Connect check: the O2 reading and status word are readable at this unit id.

        A sensor fault is not an error here (the interlocks judge readings); a wrong unit
        id shows up as the bus's ``DeviceTimeoutError`` or ``DeviceRejectedError``.
        """
        await self._bus.read_registers(self._unit, O2_PPM.address, 3)

    async def read_o2_ppm(self) -> float:
        """O2 in ppm (one transaction). Raises ``DeviceFaultError`` on a sensor fault."""
        o2_ppm, status = _BLOCK.decode(
            await self._bus.read_registers(self._unit, _BLOCK.address, _BLOCK.count))
        if int(status) & 1:
            raise DeviceFaultError("O2 sensor fault", device=self.name, register="STATUS")
        return o2_ppm
