"""Shared helpers for the over-the-wire tests: a simulated world behind ``SimModbusServer``
on a loopback ephemeral port, a time source the test moves by hand, and buses onto it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from drivers.modbus_bus import ModbusBus
from simulator import SimStationSpec, SimWorld
from simulator.modbus_server import SimModbusServer

HOST = "127.0.0.1"
TIMEOUT_S = 0.2  # short real timeout: loopback answers in well under a millisecond


@dataclass
class FakeNow:
    """The caller's clock as the server sees it: seconds, moved only by the test."""

    t_s: float = 0.0

    def __call__(self) -> float:
        return self.t_s


@dataclass
class Wire:
    """A served world: the world, its time, the server, the bound port and the journal."""

    world: SimWorld
    now: FakeNow
    server: SimModbusServer
    port: int
    framer: Literal["socket", "rtu"]
    writes: list[tuple[int, int, list[int]]] = field(default_factory=list)

    def bus(self, **kwargs: Any) -> ModbusBus:
        """A ``ModbusBus`` onto this server (TCP, or RTU through ``socket://``)."""
        kwargs.setdefault("timeout_s", TIMEOUT_S)
        if self.framer == "rtu":
            return ModbusBus(transport="rtu", device=f"socket://{HOST}:{self.port}", **kwargs)
        return ModbusBus(transport="tcp", host=HOST, port=self.port, **kwargs)


@asynccontextmanager
async def served(spec: SimStationSpec | None = None, *, framer: Literal["socket", "rtu"] =
                 "socket", seed: int = 7) -> AsyncIterator[Wire]:
    """Serve a fresh world on an ephemeral loopback port; stop the server afterwards."""
    world = SimWorld(spec or SimStationSpec(), seed=seed)
    now = FakeNow()
    server = SimModbusServer(world, now, unit_names={1: "furnace", 2: "mfc_Ar"})
    port = await server.start_tcp(HOST, 0, framer=framer)
    wire = Wire(world, now, server, port, framer)
    server.on_write = lambda unit, address, words: wire.writes.append((unit, address, words))
    try:
        yield wire
    finally:
        await server.stop()


@asynccontextmanager
async def connected(wire: Wire, **kwargs: Any) -> AsyncIterator[ModbusBus]:
    """A connected ``ModbusBus`` onto ``wire``, closed afterwards."""
    bus = wire.bus(**kwargs)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()
