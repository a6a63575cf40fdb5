"""Rung 4 in RTU framing: the drivers over ``ModbusBus(transport="rtu")`` through pyserial's
``socket://`` (a virtual serial line in pure Python), garbled frames, and serial devices
(a missing port; on POSIX a pseudo-terminal for exclusivity and ``start_serial``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.framer.rtu import FramerRTU

from drivers.alicat import AlicatMFC
from drivers.errors import CommunicationError, DeviceTimeoutError
from drivers.eurotherm import Eurotherm3216
from drivers.modbus_bus import ModbusBus
from simulator import SimBus, SimStationSpec, SimWorld
from simulator.modbus_server import SimModbusServer
from tests.integration.wire import TIMEOUT_S, connected, served

posix_only = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "openpty"),
                                reason="needs a POSIX pseudo-terminal")


async def test_drivers_read_and_write_over_rtu_as_in_process() -> None:
    async with served(framer="rtu") as wire, connected(wire) as bus:
        sim = SimBus(wire.world, wire.now)
        await Eurotherm3216(bus, 1).write_setpoint_c(80.0)
        await AlicatMFC(bus, 2, gas="Ar", full_scale_sccm=1000.0).set_flow_sccm(150.0)
        wire.now.t_s = 4.0
        assert await Eurotherm3216(bus, 1).read() == await Eurotherm3216(sim, 1).read()
        over_rtu = await AlicatMFC(bus, 2, gas="Ar", full_scale_sccm=1000.0).read()
        assert over_rtu == await AlicatMFC(sim, 2, gas="Ar", full_scale_sccm=1000.0).read()
        assert over_rtu.setpoint_sccm == 150.0


async def test_a_garbled_reply_is_a_communication_error_then_retried() -> None:
    async with served(framer="rtu") as wire:
        async with connected(wire, retries=0) as bus:
            wire.server.garble_next.add(1)
            with pytest.raises(CommunicationError, match="garbled") as info:
                await bus.read_registers(1, 1, 1)
            assert not isinstance(info.value, DeviceTimeoutError)
            assert len(await bus.read_registers(1, 1, 1)) == 1  # the line recovers
        async with connected(wire, retries=1) as bus:
            wire.server.garble_next.add(1)
            assert len(await bus.read_registers(1, 1, 1)) == 1
            assert (bus.stats.errors, bus.stats.retries) == (1, 1)


async def test_a_missing_serial_port_is_named(tmp_path: Path) -> None:
    device = str(tmp_path / "ttyUSB9")
    bus = ModbusBus(transport="rtu", device=device, timeout_s=TIMEOUT_S)
    with pytest.raises(CommunicationError, match=f"no such serial port {device}"):
        await bus.connect()
    await bus.close()


@pytest.fixture
def pty_path() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: (master fd, slave path), a serial device that needs no hardware."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


@posix_only
async def test_a_serial_port_is_opened_exclusively(pty_path: tuple[int, str]) -> None:
    _, device = pty_path
    first = ModbusBus(transport="rtu", device=device, timeout_s=TIMEOUT_S)
    second = ModbusBus(transport="rtu", device=device, timeout_s=TIMEOUT_S)
    await first.connect()
    try:
        with pytest.raises(CommunicationError, match="in use by another program"):
            await second.connect()
    finally:
        await first.close()
        await second.close()


@posix_only
async def test_start_serial_answers_an_rtu_frame_on_a_tty(pty_path: tuple[int, str]) -> None:
    master, device = pty_path
    server = SimModbusServer(SimWorld(SimStationSpec(), seed=7), lambda: 0.0)
    await server.start_serial(device)
    loop = asyncio.get_running_loop()
    reply = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        reply.extend(os.read(master, 256))
        if len(reply) >= 7 and not done.done():
            done.set_result(None)

    request = bytes([1, 3, 0, 1, 0, 1])  # unit 1, FC03, PV.IN, one register
    loop.add_reader(master, on_readable)
    try:
        os.write(master, request + FramerRTU.compute_CRC(request).to_bytes(2, "big"))
        await asyncio.wait_for(done, 2.0)
    finally:
        loop.remove_reader(master)
        await server.stop()
    assert reply[:3] == bytes([1, 3, 2])
    assert int.from_bytes(reply[3:5], "big") == 250  # 25.0 °C at 1 decimal place
    assert FramerRTU.check_CRC(bytes(reply[:5]), int.from_bytes(reply[5:7], "big"))
