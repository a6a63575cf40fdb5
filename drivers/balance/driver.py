"""MT-SICS balance driver: one command line out, one reply line back, on a serial line of
its own (the balance is never on the Modbus line; reference/hardware.md §3.1, §7.2).

Not here: the protocol text (``sics``), recipes, or retries (the scan cycle polls again).
pyserial is blocking, so every port call runs in ``asyncio.to_thread`` with a short serial
timeout (STYLE C8); requests are serialised with an ``asyncio.Lock``, never a thread lock.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from typing import Any, Final, Protocol, runtime_checkable

import serial  # type: ignore[import-untyped, unused-ignore]  # pyserial has no type hints

from drivers.balance import sics
from drivers.errors import CommunicationError, ConfigurationError, DeviceTimeoutError
from drivers.roles import MassReading

__all__ = ["SerialLine", "SicsBalance", "SicsLine"]

logger = logging.getLogger(__name__)

_PARITIES: Final = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD,
                    "M": serial.PARITY_MARK, "S": serial.PARITY_SPACE}
_STOPBITS: Final = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE,
                    2: serial.STOPBITS_TWO}
_NO_SUCH_PORT: Final = {errno.ENOENT, errno.ENODEV, errno.ENXIO}
_IN_USE: Final = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EPERM}


@runtime_checkable
class SicsLine(Protocol):
    """A request/reply line to one MT-SICS balance (a serial port, or the simulator)."""

    async def open(self) -> None:
        """Make the line usable. Raises ``CommunicationError`` with a one-line reason."""
        ...

    async def transact(self, request: bytes) -> bytes:
        """Send one command line; return one reply line, CR LF included.

        Raises ``DeviceTimeoutError`` if no whole line comes back in time and
        ``CommunicationError`` if the line is broken or closed.
        """
        ...

    async def close(self) -> None:
        """Release the line. Idempotent."""
        ...


def _open_reason(exc: BaseException) -> str:
    """Why a port did not open, in a few words (pyserial's own text is long and varies)."""
    code = getattr(exc, "errno", None)
    text = " ".join(str(exc).split())
    if code in _NO_SUCH_PORT or "FileNotFoundError" in text:
        return "no such port"
    if code in _IN_USE or "PermissionError" in text or "Access is denied" in text:
        return "port in use by another program, or access denied"
    if code == errno.ECONNREFUSED or "refused" in text.lower():
        return "connection refused (nothing listening)"
    return text or type(exc).__name__


class SerialLine:
    """A ``SicsLine`` on a pyserial port: a device path, ``COM3``, or a pyserial URL such
    as ``socket://127.0.0.1:PORT`` (a virtual serial link made of Python only).

    Opened exclusively where the platform supports the flag (POSIX ``flock``; Windows
    opens COM ports exclusively by nature, so the flag is left out there). Before each
    command the input buffer is flushed, so a late reply to an earlier, timed-out command
    cannot be taken for this one. A thread left running by a cancelled caller finishes
    within ``timeout_s`` and the next call waits for it, so the port never serves two
    requests at once. After a transport error the handle is dropped and the next call
    reopens the port.
    """

    def __init__(self, port: str, *, baudrate: int = 9600, parity: str = "N",
                 stopbits: float = 1, timeout_s: float = 1.0, device: str = "balance") -> None:
        if parity not in _PARITIES:
            raise ConfigurationError(f"parity must be one of N, E, O, M, S, not {parity!r}")
        if stopbits not in _STOPBITS:
            raise ConfigurationError(f"stopbits must be 1, 1.5 or 2, not {stopbits!r}")
        if not timeout_s > 0.0:
            raise ConfigurationError(f"timeout_s must be positive, not {timeout_s!r}")
        self.port = port
        self.timeout_s = timeout_s
        self._device = device
        self._settings: dict[str, Any] = {
            "baudrate": baudrate, "bytesize": serial.EIGHTBITS, "parity": _PARITIES[parity],
            "stopbits": _STOPBITS[stopbits], "timeout": timeout_s,
            "write_timeout": timeout_s,
        }
        if sys.platform != "win32":
            self._settings["exclusive"] = True
        self._serial: Any = None  # serial.Serial once open
        self._closed = False
        self._inflight: asyncio.Future[Any] | None = None

    # ---- blocking parts: only ever run in a worker thread ----------------------------

    def _open_blocking(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial = serial.serial_for_url(self.port, **self._settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise CommunicationError(f"cannot open {self.port}: {_open_reason(exc)}",
                                     device=self._device) from None

    def _transact_blocking(self, request: bytes) -> bytes:
        port = self._serial
        if port is None:  # closed while this request waited its turn
            raise CommunicationError(f"{self.port} is closed", device=self._device)
        try:
            port.reset_input_buffer()
            port.write(request)
            reply: bytes = port.read_until(sics.TERMINATOR)
        except serial.SerialTimeoutException:
            raise DeviceTimeoutError(f"write of {request.strip()!r} timed out after "
                                     f"{self.timeout_s:g} s", device=self._device) from None
        except (serial.SerialException, OSError) as exc:
            self._drop_blocking()
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CommunicationError(f"serial line failed: {reason}",
                                     device=self._device) from None
        if not reply.endswith(sics.TERMINATOR):
            what = f"incomplete reply {reply!r}" if reply else "no reply"
            raise DeviceTimeoutError(f"{what} to {request.strip().decode('ascii', 'replace')}"
                                     f" within {self.timeout_s:g} s", device=self._device)
        return reply

    def _drop_blocking(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                logger.debug("error closing %s", self.port, exc_info=True)

    # ---- async API ---------------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in a worker thread, one at a time. On cancellation the caller leaves
        at once; the thread (bounded by the serial timeout) finishes on its own and the
        next call waits for it first."""
        previous = self._inflight
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        future.add_done_callback(_retrieve)
        self._inflight = future
        return await asyncio.shield(future)

    async def open(self) -> None:
        """Open the port (no-op if open). Raises ``CommunicationError`` (one line) for a
        missing port, a port in use, a refused socket or a bad URL, or after ``close``."""
        if self._closed:
            raise CommunicationError(f"{self.port} is closed", device=self._device)
        await self._in_thread(self._open_blocking)

    async def transact(self, request: bytes) -> bytes:
        """Flush stale input, send ``request``, read one CR LF line within ``timeout_s``.

        Opens the port first if needed. Raises ``DeviceTimeoutError`` (no or incomplete
        reply, write timeout) or ``CommunicationError`` (port missing, broken or closed).
        """
        await self.open()
        reply: bytes = await self._in_thread(self._transact_blocking, request)
        return reply

    async def close(self) -> None:
        """Close the port, after any request still in flight. Idempotent."""
        self._closed = True
        await self._in_thread(self._drop_blocking)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an orphaned thread's outcome as seen (its caller was cancelled)."""
    if not future.cancelled():
        future.exception()


class SicsBalance:
    """A Mettler Toledo (MT-SICS) balance: implements ``drivers.roles.Balance``.

    ``port`` is a device path (``/dev/ttyUSB1``), ``COM3`` or a pyserial URL
    (``socket://127.0.0.1:PORT``), opened with ``baudrate``/``parity``/``stopbits`` (8 data
    bits, no handshake, §3.1) and a read timeout of ``timeout_s``; or any ``SicsLine``
    (e.g. the simulator's in-process line), in which case the serial settings are unused.
    ``command`` is the weighing command: ``SI`` (immediate, stable or not; the default) or
    ``S`` (stable only; the balance may answer ``S I`` if it does not settle). One request
    is in flight at a time. Raises ``ConfigurationError`` for a bad command or setting.
    """

    def __init__(self, port: str | SicsLine, *, baudrate: int = 9600, parity: str = "N",
                 stopbits: float = 1, timeout_s: float = 1.0, name: str = "balance",
                 command: str = "SI") -> None:
        self.name = name
        self._request = sics.command(command)
        self._identity_request = sics.command("I2")
        self._line: SicsLine = (
            SerialLine(port, baudrate=baudrate, parity=parity, stopbits=stopbits,
                       timeout_s=timeout_s, device=name) if isinstance(port, str) else port)
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the line now (reads open it on demand). Raises ``CommunicationError`` with
        a one-line reason: no such port, port in use, connection refused, bad URL."""
        async with self._lock:
            await self._line.open()

    async def read_mass_g(self) -> MassReading:
        """Send the weighing command and parse the reply into grams.

        Never blocks the event loop; cancellable at once. Raises ``DeviceTimeoutError``
        (no reply within the timeout), ``CommunicationError`` (garbled reply, ``ET``, broken
        or closed port), ``BalanceBusyError`` (``S I``), ``DeviceFaultError`` (overload,
        underload, unsupported unit) or ``SicsRejectedError`` (``ES``/``EL``).
        """
        async with self._lock:
            reply = await self._line.transact(self._request)
        return sics.parse_weight(reply, device=self.name)

    async def read_identity(self) -> str:
        """The balance's type, capacity and unit as its ``I2`` reply gives them (for the
        connect-time identity check). Raises like ``read_mass_g``."""
        async with self._lock:
            reply = await self._line.transact(self._identity_request)
        return sics.parse_identity(reply, device=self.name)

    async def close(self) -> None:
        """Release the port, after a request in flight. Idempotent; later reads raise
        ``CommunicationError``."""
        async with self._lock:
            await self._line.close()
