"""Serves a ``SimWorld`` over the wire with pymodbus's server: Modbus TCP, RTU framing over
TCP (reached through pyserial's ``socket://``), or RTU on a serial device.

Responsible for routing each request to ``world.read``/``world.write`` at the caller's time,
RS-485 line behaviour (one transaction at a time; silence for an absent or muted unit) and
the wire-level fault hooks (slow replies, garbled replies). Not responsible for physics or
for any clock (``now`` is the caller's), nor for the client side (``drivers.modbus_bus``).

How registers are served (pymodbus 3.16, without its deprecated datastore classes): each
unit is a ``SimDevice`` holding one all-valid ``SimData`` block over the whole address space
and an async ``action``; the action does the real work against the world's register banks
(address checks, access, limits and exception codes live there, once, shared with the
in-process bus) and returns ``ExcCodes`` for an exception reply. A connection handler
subclass snapshots each request before awaiting it, so a slow reply keeps its own
transaction id and unit id, and it leaves absent units unanswered.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Final, Literal, cast

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.errors import DeviceTimeoutError
from drivers.modbus_bus import probe_serial_port
from simulator.bank import ModbusExceptionReply
from simulator.world import SimWorld, WireFault

__all__ = ["SimModbusServer", "WriteJournal"]

logger = logging.getLogger(__name__)

WriteJournal = Callable[[int, int, list[int]], None]
"""Called as ``journal(unit, address, words)`` for every write the world accepted."""

SLOW_REPLY_S: Final = 5.0
"""Default reply delay (real s) of a unit with ``WireFault.SLOW``: longer than any client
timeout we configure (ModbusBus defaults to 0.5 s; pymodbus's own default is 3 s)."""
_ADDRESS_SPACE: Final = 0x10000
_REGISTER_FUNCTIONS: Final = frozenset({3, 4, 6, 16, 23})
_MBAP_UNIT_BYTE: Final = 6  # socket framing: tid(2) pid(2) length(2) unit(1)

_Serve = Callable[[ServerRequestHandler, ModbusPDU, "tuple[Any, ...] | None"], None]


class _LineHandler(ServerRequestHandler):
    """One client connection (or the serial port itself), served through the shared line.

    pymodbus keeps only the *latest* request on the handler and reads it again after the
    datastore awaited; with a slow unit a second request would take over the first one's
    reply. So the request is taken here, before anything awaits, and handed on.
    """

    def __init__(self, owner: _LineTcpServer | _LineSerialServer, serve: _Serve) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu,  # type: ignore[no-untyped-call]
                         owner.trace_connect)
        self._serve = serve

    def handle_later(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if pdu is not None:
            self._serve(self, pdu, addr)


class _LineTcpServer(ModbusTcpServer):
    serve: _Serve

    def callback_new_connection(self) -> ServerRequestHandler:
        return _LineHandler(self, self.serve)


class _LineSerialServer(ModbusSerialServer):
    serve: _Serve

    def callback_new_connection(self) -> ServerRequestHandler:
        return _LineHandler(self, self.serve)


class SimModbusServer:
    """Every unit of ``world`` behind one Modbus server: an RS-485 line behind a gateway.

    Before each request it runs ``world.advance_to(now())`` (``now``: the caller's clock, s),
    then reads or writes through ``world``. A ``ModbusExceptionReply(code)`` from the world
    goes out as that Modbus exception (02 unmapped or read-only, 03 out of range). A unit
    the world does not have, or one muted with ``world.set_responding(unit, False)``, gets
    no reply at all, so the master times out (so does unit 0: broadcasts are not served).
    Requests are served one at a time across all connections, as on one RS-485 line.
    ``unit_names`` (unit id -> name) labels the log.

    Fault hooks (wire level; the world has its own instrument faults):

    - ``reply_delay_s[unit]``: seconds (real loop time) to hold each reply of ``unit``
      after the world served it. The write has happened; only the answer is late. The
      line is busy meanwhile.
    - ``garble_next``: units whose next reply is corrupted on the wire (a wrong CRC in RTU
      framing, a wrong protocol id in the TCP header), so the master discards it; the
      unit is removed from the set when that happens.

    The world's wire-fault table (``world.wire_faults``, shared with ``SimBus``) works
    here too: ``WireFault.SLOW`` holds each reply of the unit for ``slow_reply_s`` (or its
    ``reply_delay_s``, if longer), ``WireFault.GARBLED`` garbles every reply of the unit,
    and ``WireFault.EXCEPTION`` answers exception 04 (raised by the world).

    ``on_write(unit, address, words)`` is the journal hook: called for every write the
    world accepted, it is the ground truth of what reached the instruments (the world's
    own ``write_hooks`` see the same writes, with the world time).
    """

    def __init__(self, world: SimWorld, now: Callable[[], float], *,
                 unit_names: dict[int, str] | None = None) -> None:
        if 0 in world.units:
            raise ValueError("unit id 0 is the Modbus broadcast address")
        self.world = world
        self.reply_delay_s: dict[int, float] = {}
        """Fault hook: reply delay per unit, seconds."""
        self.garble_next: set[int] = set()
        """Fault hook: units whose next reply is corrupted."""
        self.slow_reply_s = SLOW_REPLY_S
        """Reply delay (real s) for a unit the world marks ``WireFault.SLOW``."""
        self.on_write: WriteJournal | None = None
        """Journal hook: ``on_write(unit, address, words)`` per accepted write."""
        self._now = now
        self._names: Mapping[int, str] = dict(unit_names or {})
        self._units = frozenset(world.units)
        self._line = asyncio.Lock()
        self._servers: list[_LineTcpServer | _LineSerialServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 5020, *,
                        framer: Literal["socket", "rtu"] = "socket") -> int:
        """Listen on ``host:port`` and return the bound port (``port=0``: an ephemeral one).

        ``framer="socket"`` is Modbus TCP; ``"rtu"`` is RTU framing over the TCP stream,
        which a serial master reaches through pyserial's ``socket://host:port`` URL.
        Raises ``OSError`` with a one-line reason if it cannot listen.
        """
        kind = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU}.get(framer)
        if kind is None:
            raise ValueError(f"framer must be 'socket' or 'rtu', not {framer!r}")
        server = _LineTcpServer(self._devices(), framer=kind, address=(host, port),
                                ignore_missing_devices=True, trace_packet=self._tracer(kind))
        server.serve = self._spawn
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {_bind_error(host, port)}") from exc
        self._servers.append(server)
        listener = cast(asyncio.Server, server.transport)
        bound = int(listener.sockets[0].getsockname()[1])
        logger.info("serving", extra={"where": f"{host}:{bound}", "framer": framer,
                                      "units": sorted(self._units)})
        return bound

    async def start_serial(self, device: str, *, baudrate: int = 19200, parity: str = "N",
                           stopbits: int = 1) -> None:
        """Serve Modbus RTU on a serial ``device`` (``/dev/ttyUSB0``, ``COM4``, a pty...).

        The port is opened exclusively. Raises ``OSError`` with a one-line reason if it
        cannot be opened.
        """
        server = _LineSerialServer(self._devices(), framer=FramerType.RTU, port=device,
                                   baudrate=baudrate, parity=parity, stopbits=stopbits,
                                   ignore_missing_devices=True,
                                   trace_packet=self._tracer(FramerType.RTU))
        server.serve = self._spawn
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            problem = probe_serial_port(device) or f"cannot serve on serial port {device}"
            raise OSError(problem) from exc
        self._servers.append(server)
        logger.info("serving", extra={"where": device, "framer": "rtu",
                                      "units": sorted(self._units)})

    async def stop(self) -> None:
        """Stop listening, drop every connection and abandon replies still pending."""
        servers, self._servers = self._servers, []
        for server in servers:
            await server.shutdown()  # type: ignore[no-untyped-call]
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until every request received so far has been answered (or left silent)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---- serving -----------------------------------------------------------------------

    def _devices(self) -> list[SimDevice]:
        return [SimDevice(unit, simdata=[SimData(0, count=_ADDRESS_SPACE,
                                                 datatype=DataType.REGISTERS)],
                          action=partial(self._action, unit))
                for unit in sorted(self._units)]

    def _spawn(self, handler: ServerRequestHandler, pdu: ModbusPDU,
               addr: tuple[Any, ...] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(handler, pdu, addr))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("request handler failed", exc_info=exc)

    async def _serve(self, handler: ServerRequestHandler, pdu: ModbusPDU,
                     addr: tuple[Any, ...] | None) -> None:
        unit = pdu.dev_id
        if unit not in self._units:
            return  # nobody on the line has this id: silence, the master times out
        async with self._line:
            try:
                reply = await _update(pdu, handler, unit)
            except NoSuchIdException:
                return  # muted unit: silence
            delay_s = self.reply_delay_s.get(unit, 0.0)
            if self.world.wire_faults.get(unit) is WireFault.SLOW:
                delay_s = max(delay_s, self.slow_reply_s)
            if delay_s > 0.0:
                # Wire time, deliberately real: the master's timeout is real loop time too.
                await asyncio.sleep(delay_s)  # noqa: TID251
        reply.transaction_id = pdu.transaction_id
        reply.dev_id = unit
        if handler.transport:  # the master may have hung up while we were slow
            handler.server_send(reply, addr)  # type: ignore[no-untyped-call]

    async def _action(self, unit: int, function_code: int, start_address: int, address: int,
                      count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus ``SimDevice`` action: serve one request of ``unit`` from the world."""
        if function_code not in _REGISTER_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        world = self.world
        world.advance_to(self._now())
        try:
            if set_values is None:  # a read, or the read-back half of FC06/FC23
                offset = address - start_address
                registers[offset:offset + count] = world.read(unit, address, count)
            else:
                words = [int(v) for v in set_values]
                world.write(unit, address, words)
                if self.on_write is not None:
                    self.on_write(unit, address, words)
            if world.wire_faults.get(unit) is WireFault.GARBLED:
                self.garble_next.add(unit)  # served, but the reply is corrupted
        except ModbusExceptionReply as exc:
            logger.debug("exception reply", extra={"unit": self._name(unit), "code": exc.code,
                                                   "detail": str(exc)})
            return ExcCodes(exc.code)
        except DeviceTimeoutError as exc:
            raise NoSuchIdException(f"unit {unit} is not answering") from exc
        return None

    def _name(self, unit: int) -> str:
        return self._names.get(unit, f"unit {unit}")

    def _tracer(self, framer: FramerType) -> Callable[[bool, bytes], bytes]:
        """pymodbus's packet hook for one server: corrupts the replies ``garble_next`` asks."""
        rtu = framer is FramerType.RTU
        unit_at = 0 if rtu else _MBAP_UNIT_BYTE

        def trace(sending: bool, data: bytes) -> bytes:
            garble = self.garble_next
            if not (sending and garble and len(data) > unit_at and data[unit_at] in garble):
                return data
            garble.discard(data[unit_at])
            logger.info("garbling reply", extra={"unit": self._name(data[unit_at])})
            if rtu:
                return data[:-1] + bytes([data[-1] ^ 0xFF])  # CRC no longer matches
            return data[:2] + b"\xde\xad" + data[4:]  # MBAP protocol id must be 0

        return trace


def _update(pdu: ModbusPDU, handler: ServerRequestHandler,
            unit: int) -> Coroutine[Any, Any, ModbusPDU]:
    """Let the request PDU read or write the server's datastore (pymodbus's own dispatch)."""
    return pdu.datastore_update(handler.server.context, unit)


def _bind_error(host: str, port: int) -> str:
    """Why binding ``host:port`` fails (pymodbus only logs it)."""
    try:
        with socket.create_server((host, port)):
            return "the address became free again; try once more"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is already in use"
        return exc.strerror or str(exc)

