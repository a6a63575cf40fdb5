"""In-process ``RegisterBus`` onto a ``SimWorld``: the fast dry-run transport (STYLE C12, rung 3).

Responsible for advancing the world to the caller's clock before each request and for
translating simulator replies into the driver error tree. Not responsible for any clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from drivers.errors import CommunicationError, DeviceRejectedError, DeviceTimeoutError
from simulator.bank import ModbusExceptionReply
from simulator.world import SimWorld, WireFault

__all__ = ["SimBus"]


class SimBus:
    """A ``drivers.bus.RegisterBus`` served straight from ``world``'s register banks.

    Every call first runs ``world.advance_to(now())`` (``now`` is the controller's clock,
    seconds), then serves the request. It never awaits anything, so it never yields to
    the event loop and takes no real time. ``device_names`` (unit id -> name) labels the
    errors. Raises ``DeviceRejectedError`` with ``exception_code`` for a Modbus exception
    reply, ``DeviceTimeoutError`` for a unit that does not answer, and
    ``CommunicationError`` after ``close()``.

    Wire faults (``world.wire_faults``) look as a client would see them: ``SLOW`` raises
    ``DeviceTimeoutError`` and ``GARBLED`` raises ``CommunicationError("garbled reply
    ...")``, both *after* the unit served the request (a write has happened); ``EXCEPTION``
    comes from the world as exception 04 (``DeviceRejectedError``), nothing served.
    """

    __slots__ = ("_closed", "_names", "_now", "world")

    def __init__(self, world: SimWorld, now: Callable[[], float],
                 device_names: Mapping[int, str] | None = None) -> None:
        self.world = world
        self._now = now
        self._names = dict(device_names or {})
        self._closed = False

    def _name(self, unit: int) -> str:
        return self._names.get(unit, f"unit {unit}")

    def _closed_error(self, unit: int) -> CommunicationError:
        return CommunicationError("simulator bus is closed", device=self._name(unit))

    async def read_registers(self, unit: int, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers from ``address`` (0-based PDU) of ``unit``."""
        if self._closed:
            raise self._closed_error(unit)
        world = self.world
        world.advance_to(self._now())
        try:
            words = world.read(unit, address, count)
        except ModbusExceptionReply as exc:
            raise DeviceRejectedError(f"read of {count} at {address} rejected",
                                      exception_code=exc.code, device=self._name(unit),
                                      ) from exc
        except DeviceTimeoutError as exc:
            raise DeviceTimeoutError(f"no reply to read at {address}",
                                     device=self._name(unit)) from exc
        if world.wire_faults:
            self._check_reply(unit, f"read at {address}")
        return words

    async def write_registers(self, unit: int, address: int, words: Sequence[int], *,
                              idempotent: bool = True) -> None:
        """Write ``words`` from ``address`` (FC16); returns once the simulator accepted it."""
        if self._closed:
            raise self._closed_error(unit)
        world = self.world
        world.advance_to(self._now())
        try:
            world.write(unit, address, words)
        except ModbusExceptionReply as exc:
            raise DeviceRejectedError(f"write of {len(words)} at {address} rejected",
                                      exception_code=exc.code, device=self._name(unit),
                                      ) from exc
        except DeviceTimeoutError as exc:
            raise DeviceTimeoutError(f"no reply to write at {address}",
                                     device=self._name(unit)) from exc
        if world.wire_faults:
            self._check_reply(unit, f"write at {address}")

    def _check_reply(self, unit: int, what: str) -> None:
        """Raise what the client sees when the served request's reply is lost on the wire."""
        fault = self.world.wire_faults.get(unit)
        if fault is WireFault.SLOW:
            raise DeviceTimeoutError(f"no reply to {what} in time (slow unit)",
                                     device=self._name(unit))
        if fault is WireFault.GARBLED:
            raise CommunicationError(f"garbled reply to {what}", device=self._name(unit))

    async def close(self) -> None:
        """Stop serving; later calls raise ``CommunicationError``. Idempotent."""
        self._closed = True
