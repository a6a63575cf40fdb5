"""``ModbusBus``: the ``RegisterBus`` over Modbus TCP or RTU, the only user of pymodbus's client.

Responsible for connecting (with a one-line reason when that fails), translating pymodbus's
two error channels into ``drivers.errors`` in one place, retrying reads and idempotent writes,
reconnecting after the line or server comes back, and the comms-health counters. Not
responsible for what the registers mean (the drivers) or for when to poll (the controller).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import serial  # type: ignore[import-untyped, unused-ignore]  # pyserial has no type hints
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.errors import (
    CommunicationError,
    DeviceError,
    DeviceRejectedError,
    DeviceTimeoutError,
)

__all__ = ["BusStats", "ModbusBus", "describe_serial_error", "probe_serial_port", "translate"]

logger = logging.getLogger(__name__)

_READ_HOLDING: Final = 3
_WRITE_MULTIPLE: Final = 16
# pymodbus reports "no reply in time" only through the text of a ModbusIOException
# (pymodbus/transaction/transaction.py, 3.16): "No response received ...".
_NO_RESPONSE: Final = "No response"


@dataclass(slots=True)
class BusStats:
    """Comms-health counters of one bus since it was built (faults.md §3.4)."""

    transactions: int = 0
    """Requests put on the wire, retries included."""
    retries: int = 0
    """Requests sent again after a ``CommunicationError``."""
    timeouts: int = 0
    """Requests that got no reply within ``timeout_s``."""
    exceptions: int = 0
    """Modbus exception responses (``DeviceRejectedError``)."""
    errors: int = 0
    """Other communication failures: garbled or unexpected reply, link down, connect failed."""
    reconnects: int = 0
    """Successful connects after the first one."""


def translate(outcome: ModbusPDU | Exception, *, what: str, device: str = "",
              where: str = "", timeout_s: float = 0.0, rx_seen: bool = False) -> DeviceError:
    """Map one pymodbus outcome that is not a good reply to the project's error tree.

    This is the one place where pymodbus's two error channels meet: a *returned* exception
    response (``isError()``) becomes ``DeviceRejectedError`` with its ``exception_code``; a
    *raised* ``ModbusIOException`` with no bytes received becomes ``DeviceTimeoutError``,
    and one with bytes received that never made a valid reply ("garbled") becomes
    ``CommunicationError``, as do ``ConnectionException``, ``OSError`` and a reply that does
    not answer the request. ``what`` names the request ("read of 2 at 32770"), ``device``
    the instrument, ``where`` the line. The caller raises the result ``from`` the cause.
    """
    if isinstance(outcome, ModbusPDU):
        if outcome.isError():
            return DeviceRejectedError(f"{what} rejected", exception_code=outcome.exception_code,
                                       device=device)
        return CommunicationError(
            f"{what}: unexpected reply (function {outcome.function_code}) on {where}",
            device=device)
    if isinstance(outcome, ModbusIOException):
        if _NO_RESPONSE in str(outcome):
            if rx_seen:
                return CommunicationError(f"{what}: garbled reply on {where}", device=device)
            return DeviceTimeoutError(f"{what}: no reply within {timeout_s:g} s on {where}",
                                      device=device)
        return CommunicationError(f"{what}: bad reply on {where} ({outcome.message})",
                                  device=device)
    if isinstance(outcome, ConnectionException):
        return CommunicationError(f"{what}: not connected to {where}", device=device)
    return CommunicationError(f"{what}: {outcome} on {where}", device=device)


def describe_serial_error(device: str, exc: BaseException) -> str:
    """One line saying why ``device`` (path, ``COM3`` or pyserial URL) could not be opened.

    Classifies pyserial's errors on POSIX (errno) and Windows (the text of ``WinError``).
    """
    number = getattr(exc, "errno", None)
    text = str(exc)
    if number == errno.ENOENT or "FileNotFoundError" in text or "No such file" in text:
        return f"no such serial port {device}"
    if number in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return f"serial port {device} is in use by another program"
    if "PermissionError" in text or "Access is denied" in text:  # Windows: held elsewhere
        return f"serial port {device} is in use by another program or access is denied"
    if number == errno.EACCES:
        return f"permission denied on serial port {device} (is the user in the dialout group?)"
    if "refused" in text:
        return f"connection refused ({device})"
    if isinstance(exc, ValueError):
        return f"not a serial port or pyserial URL: {device!r}"
    return f"cannot open serial port {device}: {' '.join(text.split())}"


def probe_serial_port(device: str) -> str | None:
    """Open ``device`` exclusively and close it again: ``None`` if that works, else the
    one-line reason it does not (see ``describe_serial_error``). Blocks for the open."""
    try:
        port = serial.serial_for_url(device, exclusive=True)
    except (OSError, ValueError) as exc:  # SerialException is an OSError
        return describe_serial_error(device, exc)
    port.close()
    return None


class ModbusBus:
    """A ``drivers.bus.RegisterBus`` over one Modbus line: TCP, or RTU on a serial port.

    ``transport="tcp"`` talks Modbus TCP to ``host:port``. ``transport="rtu"`` talks RTU on
    ``device``: a path (``/dev/ttyUSB0``), a Windows name (``COM3``) or a pyserial URL
    (``socket://127.0.0.1:5021`` is RTU framing over TCP, used by the tests). Serial ports
    are opened exclusively (pymodbus passes ``exclusive=True`` to pyserial: an advisory
    ``flock`` on POSIX; Windows never shares a COM port).

    Each request waits at most ``timeout_s`` (real loop time: it is about the wire, not the
    process). Reads and ``idempotent`` writes are sent again up to ``retries`` times after a
    ``CommunicationError``; a non-idempotent write is sent exactly once. pymodbus's own
    retries are off, because it re-sends writes blindly. After a request fails without a
    valid reply the link is dropped and reopened before the next one, so a late reply can
    never be taken for the answer to a later request; while the server or port is away each
    call fails with ``CommunicationError`` (at once when the connection is refused or the
    port is missing) and the first call after it is back succeeds. Calls are serialised
    (one transaction at a time, as on RS-485). Note: pyserial's ``socket://`` close blocks
    for 0.3 s, so each link reset on that test transport stalls the loop that long.

    Raises ``DeviceRejectedError`` for a Modbus exception response, ``DeviceTimeoutError``
    when no reply came, ``CommunicationError`` for anything else on the wire. Cancellation
    propagates as ``CancelledError``, never as an I/O error. ``unit_names`` (unit id ->
    instrument name) labels errors. ``log_frames`` logs every raw frame at DEBUG.
    """

    def __init__(self, *, transport: Literal["tcp", "rtu"], host: str = "127.0.0.1",
                 port: int = 5020, device: str = "", baudrate: int = 19200,
                 parity: str = "N", stopbits: int = 1, timeout_s: float = 0.5,
                 retries: int = 2, name: str = "bus",
                 unit_names: Mapping[int, str] | None = None,
                 log_frames: bool = False) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        if not timeout_s > 0.0:
            raise ValueError(f"timeout must be positive, not {timeout_s}")
        self.name = name
        self.stats = BusStats()
        """Comms-health counters (read them; the bus only ever increments them)."""
        self._transport = transport
        self._host = host
        self._port = port
        self._device = device
        self._timeout_s = timeout_s
        self._retries = retries
        self._names = dict(unit_names or {})
        self._log_frames = log_frames
        self._rx_seen = False
        self._connected_once = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if transport == "tcp":
            self._where = f"{host}:{port}"
            self._client = AsyncModbusTcpClient(
                host, port=port, framer=FramerType.SOCKET, timeout=timeout_s, retries=0,
                reconnect_delay=0, name=name, trace_packet=self._trace)
        elif transport == "rtu":
            if not device:
                raise ValueError("an RTU bus needs a serial device")
            self._where = device
            self._client = AsyncModbusSerialClient(
                device, framer=FramerType.RTU, baudrate=baudrate, parity=parity,
                stopbits=stopbits, timeout=timeout_s, retries=0, reconnect_delay=0,
                name=name, trace_packet=self._trace)
        else:
            raise ValueError(f"transport must be 'tcp' or 'rtu', not {transport!r}")

    def __repr__(self) -> str:
        return f"ModbusBus({self._transport} {self._where}, name={self.name!r})"

    # ---- connection ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the link now (calls also open it on demand).

        Raises ``CommunicationError`` with a one-line reason: connection refused
        (host:port), no such serial port, port in use, permission denied.
        """
        if self._closed:
            raise CommunicationError("bus is closed", device=self.name)
        if not self._client.connected:
            await self._open()

    async def _open(self) -> None:
        try:
            opened = await self._client.connect()
        except ValueError as exc:  # pyserial: an unknown URL scheme or bad port settings
            self.stats.errors += 1
            raise CommunicationError(describe_serial_error(self._where, exc),
                                     device=self.name) from exc
        if not opened:
            self.stats.errors += 1
            raise CommunicationError(await self._why_not_connected(), device=self.name)
        if self._connected_once:
            self.stats.reconnects += 1
            logger.debug("reconnected to %s", self._where,
                         extra={"bus": self.name, "where": self._where})
        self._connected_once = True

    async def _why_not_connected(self) -> str:
        """Find out why pymodbus's connect failed (it only logs the reason)."""
        if self._transport == "rtu":
            problem = probe_serial_port(self._device)
            return problem or f"cannot open serial port {self._device}"
        where = self._where
        try:
            async with asyncio.timeout(self._timeout_s):
                _, writer = await asyncio.open_connection(self._host, self._port)
        except ConnectionRefusedError:
            return f"connection refused ({where})"
        except TimeoutError:
            return f"no answer from {where} within {self._timeout_s:g} s"
        except socket.gaierror:
            return f"unknown host {self._host!r}"
        except OSError as exc:
            return f"cannot connect to {where}: {exc.strerror or exc}"
        writer.close()
        await writer.wait_closed()
        return f"cannot connect to {where}"

    async def close(self) -> None:
        """Release the socket or serial port; later calls raise ``CommunicationError``.

        Idempotent.
        """
        self._closed = True
        self._client.close()

    # ---- RegisterBus -----------------------------------------------------------------

    async def read_registers(self, unit: int, address: int, count: int) -> list[int]:
        """FC03: ``count`` holding registers from ``address`` (0-based PDU) of ``unit``."""
        return await self._transact(unit, address, count, None, self._retries)

    async def write_registers(self, unit: int, address: int, words: Sequence[int], *,
                              idempotent: bool = True) -> None:
        """FC16: write ``words`` from ``address``; returns once the device acknowledged.

        A non-``idempotent`` write (a command) is never sent twice: if its reply is lost the
        caller gets the error and must find out by reading what happened.
        """
        await self._transact(unit, address, len(words), words,
                             self._retries if idempotent else 0)

    async def _transact(self, unit: int, address: int, count: int,
                        words: Sequence[int] | None, retries: int) -> list[int]:
        async with self._lock:
            attempt = 0
            while True:
                try:
                    return await self._attempt(unit, address, count, words)
                except CommunicationError as exc:
                    if attempt >= retries:
                        raise
                    attempt += 1
                    self.stats.retries += 1
                    logger.debug("retrying", extra={"bus": self.name, "unit": unit,
                                                   "attempt": attempt, "error": str(exc)})

    async def _attempt(self, unit: int, address: int, count: int,
                       words: Sequence[int] | None) -> list[int]:
        """One request on the wire, with every failure translated (the only place)."""
        if self._closed:
            raise CommunicationError("bus is closed", device=self._unit_name(unit))
        client = self._client
        if not client.connected:
            await self._open()
        self.stats.transactions += 1
        self._rx_seen = False
        outcome: ModbusPDU | Exception
        try:
            if words is None:
                reply = await client.read_holding_registers(address, count=count,
                                                            device_id=unit)
            else:
                reply = await client.write_registers(address, words, device_id=unit)
        except (ModbusIOException, ConnectionException) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus can turn our cancellation into an I/O error: undo that.
                raise asyncio.CancelledError from exc
            outcome = exc
        else:
            if words is None:
                if reply.function_code == _READ_HOLDING and len(reply.registers) == count:
                    return list(reply.registers)
            elif (reply.function_code == _WRITE_MULTIPLE and reply.address == address
                  and reply.count == count):
                return []
            outcome = reply
        raise self._failed(outcome, unit, address, count, words) from (
            outcome if isinstance(outcome, Exception) else None)

    def _failed(self, outcome: ModbusPDU | Exception, unit: int, address: int, count: int,
                words: Sequence[int] | None) -> DeviceError:
        what = (f"read of {count} at {address}" if words is None
                else f"write of {count} at {address}")
        error = translate(outcome, what=what, device=self._unit_name(unit), where=self._where,
                          timeout_s=self._timeout_s, rx_seen=self._rx_seen)
        if isinstance(error, DeviceRejectedError):
            self.stats.exceptions += 1
            return error
        if isinstance(error, DeviceTimeoutError):
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
        # Drop the link: a late or partial reply must not answer the next request.
        self._client.close()
        logger.debug("request to unit %s failed: %s", unit, error,
                     extra={"bus": self.name, "unit": unit, "error": str(error)})
        return error

    def _unit_name(self, unit: int) -> str:
        return self._names.get(unit, f"unit {unit}")

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's per-packet hook: note received bytes, optionally log the frame."""
        if not sending:
            self._rx_seen = True
        if self._log_frames:
            logger.debug("frame", extra={"bus": self.name, "direction": "tx" if sending
                                         else "rx", "frame": data.hex(" ")})
        return data
