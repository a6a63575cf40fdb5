"""The ``RegisterBus`` protocol: what every transport (pymodbus, in-process sim, fake) offers.

Not here: framing, retries or error translation (each bus implementation owns those).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["RegisterBus"]


@runtime_checkable
class RegisterBus(Protocol):
    """Read and write holding registers of the unit ids on one line.

    Implementations raise ``CommunicationError`` (or ``DeviceTimeoutError``) when no valid
    reply arrives and ``DeviceRejectedError`` for a Modbus exception response. They never
    return error objects.
    """

    async def read_registers(self, unit: int, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers from ``address`` (0-based PDU) of ``unit``."""
        ...

    async def write_registers(self, unit: int, address: int, words: Sequence[int], *,
                              idempotent: bool = True) -> None:
        """Write ``words`` from ``address`` (FC16). Returns once the device acknowledged.

        Only an ``idempotent`` write (setting a value, not triggering a command) may be
        retried after a lost reply; a command write is sent once.
        """
        ...

    async def close(self) -> None:
        """Release the transport. Idempotent."""
        ...
