"""Simulated MT-SICS balance under the boat: answers command lines from the sample mass,
gas buoyancy, noise and readability, and serves them on a serial device, a TCP socket
(pyserial's ``socket://`` reaches it) or in process (reference/hardware.md §3.1).

Not responsible for the sample's mass or temperature (the world supplies them through
callables) or for any clock: a reply uses the mass the world holds at that moment.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

import serial  # type: ignore[import-untyped, unused-ignore]  # pyserial has no type hints

from drivers.errors import CommunicationError, DeviceTimeoutError
from simulator.thermal import KELVIN_OFFSET

__all__ = ["ARGON_DENSITY_G_PER_CM3", "SimBalance", "SimSicsLine", "buoyancy_drift_g"]

logger = logging.getLogger(__name__)

# Ar at 25 °C and 101.325 kPa: rho = p·M/(R·T) = 101325·0.039948/(8.314·298.15) = 1.633 kg/m³.
ARGON_DENSITY_G_PER_CM3: Final = 1.633e-3
_SERIAL_POLL_S: Final = 0.1  # serial read timeout of the server loop: how fast stop() is
_EOL: Final = b"\r\n"


def buoyancy_drift_g(gas_c: float, *, volume_cm3: float, density_g_per_cm3: float,
                     ambient_c: float) -> float:
    """Apparent mass gain (g) of a body of ``volume_cm3`` when the gas around it heats from
    ``ambient_c`` (where the balance was tared) to ``gas_c``, at constant pressure.

    The gas's upthrust is ``rho·V·g`` and an ideal gas's density goes as 1/T (kelvin), so
    the reading rises by ``rho_amb·V·(1 − T_amb/T)``. MODEL ASSUMPTION: the whole volume
    sits in gas at ``gas_c`` (the hot zone), one gas (see ``SimBalance``), and no
    convection or thermomolecular forces, which real thermobalances also show.
    """
    t_k = gas_c + KELVIN_OFFSET
    return density_g_per_cm3 * volume_cm3 * (1.0 - (ambient_c + KELVIN_OFFSET) / t_k)


class SimBalance:
    """An MT-SICS balance reading ``mass_source()`` (g) plus buoyancy drift, noise and
    quantisation to ``readability_g``.

    Buoyancy: ``gas_temperature_source()`` (°C, e.g. the furnace core) heats the gas around
    a displaced volume of ``displaced_volume_cm3`` (boat + sample) of a gas of density
    ``gas_density_g_per_cm3`` at ``ambient_c``; see ``buoyancy_drift_g``. With the defaults
    (2 cm³ in argon) the reading rises by +2.50 mg from 25 to 1000 °C and +2.75 mg at
    1600 °C (MODEL ASSUMPTION). Without a temperature source there is no drift.

    Commands (``respond``): ``SI`` → ``S S``/``S D`` (dynamic when the noise-free mass moved
    by more than ``settle_band_g`` since the previous weighing); ``S`` → ``S S`` or ``S I``
    if not stable; ``Z`` zero, ``T`` tare, ``@`` reset (clears both), ``I2``/``I4``
    identity; anything else → ``ES``; a non-ASCII line → ``ET``. Fault hooks:
    ``disconnected`` (no reply at all), ``overload`` (``S +``, also above ``capacity_g``),
    ``underload`` (``S -``), and ``hold_replies``/``release_replies`` (served replies wait
    until released: a slow balance). Deterministic for a given ``rng`` and call sequence.
    """

    def __init__(self, mass_source: Callable[[], float], rng: random.Random, *,
                 readability_g: float = 1e-4, noise_g: float = 5e-5,
                 settle_band_g: float = 2e-4,
                 gas_temperature_source: Callable[[], float] | None = None,
                 displaced_volume_cm3: float = 2.0,
                 gas_density_g_per_cm3: float = ARGON_DENSITY_G_PER_CM3,
                 ambient_c: float = 25.0, capacity_g: float = 220.0,
                 model: str = "SIM-SICS", serial_number: str = "0000000001") -> None:
        if not readability_g > 0.0:
            raise ValueError(f"readability must be positive, not {readability_g}")
        self._mass_source = mass_source
        self._rng = rng
        self.readability_g = readability_g
        self.noise_g = noise_g
        self.settle_band_g = settle_band_g
        self._gas_source = gas_temperature_source
        self.displaced_volume_cm3 = displaced_volume_cm3
        self.gas_density_g_per_cm3 = gas_density_g_per_cm3
        self.ambient_c = ambient_c
        self.capacity_g = capacity_g
        self._decimals = max(0, math.ceil(-math.log10(readability_g) - 1e-9))
        self._identity = f'"{model} {capacity_g:.{self._decimals}f} g"'
        self._serial_number = serial_number
        self._zero_g = 0.0
        self._tare_g = 0.0
        self._previous_g: float | None = None
        self.disconnected = False
        """Fault hook: read commands, answer nothing (unplugged, powered off)."""
        self.overload = False
        """Fault hook: weighing commands answer ``S +``."""
        self.underload = False
        """Fault hook: weighing commands answer ``S -``."""
        self._commands: dict[str, Callable[[], str]] = {
            "SI": self._weigh_immediately, "S": self._weigh_stable, "Z": self._zero,
            "T": self._tare, "@": self._reset, "I2": lambda: f"I2 A {self._identity}",
            "I4": lambda: f'I4 A "{self._serial_number}"',
        }
        self._released = asyncio.Event()
        self._released.set()
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._serial_task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- the instrument --------------------------------------------------------------

    def gross_g(self) -> float:
        """The noise-free load the cell sees, g: sample mass plus buoyancy drift."""
        mass = self._mass_source()
        if self._gas_source is None:
            return mass
        return mass + buoyancy_drift_g(self._gas_source(),
                                       volume_cm3=self.displaced_volume_cm3,
                                       density_g_per_cm3=self.gas_density_g_per_cm3,
                                       ambient_c=self.ambient_c)

    def _value(self, net_g: float) -> str:
        r = self.readability_g
        q = round((net_g + self._rng.gauss(0.0, self.noise_g)) / r) * r
        if abs(q) < r / 2:
            q = 0.0  # no "-0.0000"
        return f"{q:>10.{self._decimals}f} g"

    def _weigh(self) -> tuple[str, bool] | str:
        """(value field, stable) or an error flag ``+``/``-``."""
        gross = self.gross_g()
        previous, self._previous_g = self._previous_g, gross
        stable = previous is None or abs(gross - previous) <= self.settle_band_g
        if self.overload or gross - self._zero_g > self.capacity_g:
            return "+"
        if self.underload:
            return "-"
        return self._value(gross - self._zero_g - self._tare_g), stable

    def _weigh_immediately(self) -> str:
        result = self._weigh()
        if isinstance(result, str):
            return f"S {result}"
        value, stable = result
        return f"S {'S' if stable else 'D'} {value}"

    def _weigh_stable(self) -> str:
        result = self._weigh()
        if isinstance(result, str):
            return f"S {result}"
        value, stable = result
        return f"S S {value}" if stable else "S I"

    def _zero(self) -> str:
        self._zero_g = self.gross_g()
        self._tare_g = 0.0
        return "Z A"

    def _tare(self) -> str:
        self._tare_g = self.gross_g() - self._zero_g
        return f"T S {self._value(self._tare_g)}"

    def _reset(self) -> str:
        self._zero_g = self._tare_g = 0.0
        self._previous_g = None
        return f'I4 A "{self._serial_number}"'

    def respond(self, line: bytes) -> bytes:
        """The reply line (CR LF terminated) to one command line, or ``b""`` for none."""
        if self.disconnected:
            return b""
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            return b"ET" + _EOL  # a parity/framing error garbles a byte: transmission error
        handler = self._commands.get(text.partition(" ")[0])
        reply = handler() if handler is not None else "ES"
        return reply.encode("ascii") + _EOL

    # ---- fault hook: a slow balance ----------------------------------------------------

    def hold_replies(self) -> None:
        """Served requests (TCP, serial) wait, unanswered, until ``release_replies``."""
        self._released.clear()

    def release_replies(self) -> None:
        """Answer held and later requests again."""
        self._released.set()

    # ---- servers -----------------------------------------------------------------------

    async def _answer(self, line: bytes) -> bytes:
        await self._released.wait()
        return self.respond(line)

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve MT-SICS lines on a TCP socket; return the bound port (``port=0``: any).

        pyserial's ``socket://HOST:PORT`` URL reaches it (a virtual serial link). Raises
        ``OSError`` if the address cannot be bound, ``RuntimeError`` if already serving.
        """
        if self._tcp is not None:
            raise RuntimeError("already serving TCP")
        self._stopping = False
        self._tcp = await asyncio.start_server(self._serve_client, host, port)
        bound: int = self._tcp.sockets[0].getsockname()[1]
        logger.info("balance serving MT-SICS on %s:%d", host, bound)
        return bound

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        self._writers.add(writer)
        try:
            while not self._stopping:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break  # end of stream (a partial last line is not a command)
                reply = await self._answer(line)
                if reply and not self._stopping:
                    writer.write(reply)
                    await writer.drain()
        except ConnectionError:
            pass  # the client went away mid-reply
        finally:
            self._writers.discard(writer)
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._clients.discard(task)

    async def serve_serial(self, device: str, baudrate: int = 9600) -> None:
        """Open ``device`` (a path, ``COM3`` or pyserial URL; 8N1) and answer on it in a
        background task until ``stop``. Blocking reads run in a worker thread with a
        0.1 s timeout. Raises ``CommunicationError`` (an ``OSError``) if it cannot open,
        ``RuntimeError`` if already serving a serial device."""
        if self._serial_task is not None:
            raise RuntimeError("already serving a serial device")
        try:
            port = await asyncio.to_thread(serial.serial_for_url, device, baudrate=baudrate,
                                           timeout=_SERIAL_POLL_S)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CommunicationError(f"cannot open {device}: {reason}",
                                     device="simulated balance") from None
        self._stopping = False
        self._serial_task = asyncio.create_task(self._serial_loop(port, device))
        logger.info("balance serving MT-SICS on %s at %d baud", device, baudrate)

    async def _serial_loop(self, port: Any, device: str) -> None:
        pending = b""
        try:
            while not self._stopping:
                chunk: bytes = await asyncio.to_thread(port.read_until, b"\n")
                pending += chunk
                while b"\n" in pending and not self._stopping:
                    line, _, pending = pending.partition(b"\n")
                    reply = await self._answer(line)
                    if reply and not self._stopping:
                        await asyncio.to_thread(port.write, reply)
        except (serial.SerialException, OSError) as exc:
            logger.warning("balance serial line %s failed: %s", device, exc)
        finally:
            await asyncio.to_thread(port.close)

    async def stop(self) -> None:
        """Stop every server, close client connections and the serial device. Idempotent."""
        self._stopping = True
        self._released.set()  # held requests must not keep a handler alive
        server, self._tcp = self._tcp, None
        if server is not None:
            server.close()
            for writer in list(self._writers):
                writer.close()
            if self._clients:
                await asyncio.gather(*self._clients, return_exceptions=True)
            await server.wait_closed()
        task, self._serial_task = self._serial_task, None
        if task is not None:
            await task


class SimSicsLine:
    """A ``drivers.balance.SicsLine`` straight onto a ``SimBalance``: the in-process path
    for dry runs (no thread, no socket, no real time), like ``SimBus`` for registers.

    ``before_request`` runs first on every request (pass ``lambda: world.advance_to(
    clock.now())`` so the reply sees the mass at the controller's time). A silent balance
    raises ``DeviceTimeoutError`` at once; after ``close``, ``CommunicationError``.
    """

    __slots__ = ("_before", "_closed", "balance", "name")

    def __init__(self, balance: SimBalance,
                 before_request: Callable[[], object] | None = None,
                 name: str = "balance") -> None:
        self.balance = balance
        self.name = name
        self._before = before_request
        self._closed = False

    async def open(self) -> None:
        """Nothing to open. Raises ``CommunicationError`` after ``close``."""
        if self._closed:
            raise CommunicationError("simulated balance line is closed", device=self.name)

    async def transact(self, request: bytes) -> bytes:
        """The balance's reply to ``request``."""
        if self._closed:  # ``open``'s check, without awaiting a coroutine every request
            await self.open()
        if self._before is not None:
            self._before()
        reply = self.balance.respond(request)
        if not reply:
            raise DeviceTimeoutError(f"no reply to {request.strip().decode('ascii', 'replace')}",
                                     device=self.name)
        return reply

    async def close(self) -> None:
        """Later requests raise ``CommunicationError``. Idempotent."""
        self._closed = True
