"""Rung 4 over Modbus TCP on loopback: addressing, word order, exception codes, timeouts,
retries and reconnects, against ``SimModbusServer`` with the world moved by a fake clock."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.alicat import AlicatMFC
from drivers.errors import CommunicationError, DeviceRejectedError, DeviceTimeoutError
from drivers.eurotherm import Eurotherm3216
from drivers.modbus_bus import ModbusBus
from drivers.o2 import O2Analyser
from simulator import SimBus
from tests.integration.wire import HOST, TIMEOUT_S, connected, served

NAMES = {1: "furnace", 2: "mfc_Ar"}


def _f32(words: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def _words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


async def test_a_plain_pymodbus_client_sees_the_manuals_addresses() -> None:
    async with served() as wire:
        client = AsyncModbusTcpClient(HOST, port=wire.port, timeout=1, retries=0)
        assert await client.connect()
        try:
            scaled = await client.read_holding_registers(1, count=1, device_id=1)
            as_float = await client.read_holding_registers(0x8002, count=2, device_id=1)
            assert scaled.registers[0] * 0.1 == pytest.approx(_f32(as_float.registers),
                                                               abs=0.05)
            # Remote setpoint selected, 60 °C/min rate limit, Rm.SP = 300 °C as a float.
            for address, words in ((276, [1]), (0x8046, _words(60.0)),
                                   (0x8034, _words(300.0))):
                assert not (await client.write_registers(address, words,
                                                         device_id=1)).isError()
            assert (await client.read_holding_registers(26, count=1,
                                                        device_id=1)).registers == [3000]
            wire.now.t_s = 6.0
            wsp = await client.read_holding_registers(5, count=1, device_id=1)
            assert wsp.registers == [310]  # 25.0 °C + 6 s at 1 °C/s, 1 decimal place
            # Alicat register 1010 is PDU address 1009, big-endian float.
            assert not (await client.write_registers(1009, _words(250.0),
                                                     device_id=2)).isError()
            wire.now.t_s = 12.0
            flow = await client.read_holding_registers(1208, count=2, device_id=2)
            assert _f32(flow.registers) == pytest.approx(250.0, abs=1.5)
        finally:
            client.close()
    assert (2, 1009, _words(250.0)) in wire.writes


async def test_exception_responses_become_device_rejected_with_their_code() -> None:
    async with served() as wire, connected(wire, unit_names=NAMES) as bus:
        mfc = AlicatMFC(bus, 2, gas="Ar", full_scale_sccm=1000.0)
        cases: list[tuple[Callable[[], Awaitable[object]], int]] = [
            (lambda: bus.read_registers(1, 9999, 1), 2),  # unmapped
            (lambda: bus.write_registers(1, 1, [250]), 2),  # PV is read-only
            (lambda: bus.write_registers(1, 0x8034, _words(5000.0)), 3),  # Rm.SP > range
            (lambda: mfc.set_flow_sccm(2000.0), 3),  # above the MFC's full scale
        ]
        for call, code in cases:
            with pytest.raises(DeviceRejectedError) as info:
                await call()
            assert info.value.exception_code == code
        assert info.value.device == "mfc_Ar"
        assert (bus.stats.exceptions, bus.stats.reconnects) == (4, 0)
        assert wire.writes == []


async def test_slow_replies_time_out_and_reads_are_retried() -> None:
    async with served() as wire, connected(wire, retries=2) as bus:
        wire.server.reply_delay_s[1] = TIMEOUT_S * 1.5
        with pytest.raises(DeviceTimeoutError, match="no reply within 0.2 s"):
            await bus.read_registers(1, 1, 1)
        assert (bus.stats.transactions, bus.stats.retries, bus.stats.timeouts) == (3, 2, 3)
        wire.server.reply_delay_s.clear()
        await wire.server.wait_idle()
        assert len(await bus.read_registers(1, 0x8002, 10)) == 10


async def test_a_garbled_tcp_reply_is_discarded_and_the_read_retried() -> None:
    async with served() as wire, connected(wire, retries=1) as bus:
        wire.server.garble_next.add(1)
        assert len(await bus.read_registers(1, 1, 1)) == 1
        assert (bus.stats.errors, bus.stats.timeouts, bus.stats.retries) == (1, 0, 1)
        assert not wire.server.garble_next


async def test_a_command_write_is_sent_once_a_setting_write_is_retried() -> None:
    async with served() as wire, connected(wire, retries=2) as bus:
        wire.server.reply_delay_s[1] = TIMEOUT_S * 1.5
        with pytest.raises(DeviceTimeoutError):
            await bus.write_registers(1, 276, [1], idempotent=False)
        await wire.server.wait_idle()
        assert len(wire.writes) == 1  # the server journal: what really reached the unit
        with pytest.raises(DeviceTimeoutError):
            await bus.write_registers(1, 276, [1], idempotent=True)
        await wire.server.wait_idle()
        assert len(wire.writes) == 1 + 3


async def test_reconnects_after_the_server_restarts_on_the_same_port() -> None:
    loop = asyncio.get_running_loop()
    async with served() as wire, connected(wire, retries=1) as bus:
        assert len(await bus.read_registers(1, 1, 1)) == 1
        await wire.server.stop()
        with pytest.raises(CommunicationError):
            await bus.read_registers(1, 1, 1)
        started = loop.time()
        with pytest.raises(CommunicationError, match="connection refused"):
            await bus.read_registers(1, 1, 1)
        assert loop.time() - started < TIMEOUT_S  # refused at once, no waiting for replies
        assert await wire.server.start_tcp(HOST, wire.port) == wire.port
        assert len(await bus.read_registers(1, 1, 1)) == 1
        assert bus.stats.reconnects >= 1


async def test_connect_names_a_refused_port() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    bus = ModbusBus(transport="tcp", host=HOST, port=port, timeout_s=TIMEOUT_S)
    with pytest.raises(CommunicationError, match=f"connection refused \\({HOST}:{port}\\)"):
        await bus.connect()
    await bus.close()
    await bus.close()  # idempotent


async def test_driver_reads_over_tcp_equal_reads_in_process() -> None:
    async with served() as wire, connected(wire) as bus:
        sim = SimBus(wire.world, wire.now)
        await Eurotherm3216(bus, 1).write_rate_limit_c_per_min(30.0)
        await AlicatMFC(bus, 2, gas="Ar", full_scale_sccm=1000.0).set_flow_sccm(400.0)
        wire.now.t_s = 8.0
        for unit, gas in ((2, "Ar"), (3, "air"), (4, "N2")):
            over_tcp = await AlicatMFC(bus, unit, gas=gas, full_scale_sccm=1000.0).read()
            assert over_tcp == await AlicatMFC(sim, unit, gas=gas, full_scale_sccm=1000.0).read()
        for unit in (1, 5):
            assert await Eurotherm3216(bus, unit).read() == await Eurotherm3216(sim, unit).read()
        assert await O2Analyser(bus, 6).read_o2_ppm() == await O2Analyser(sim, 6).read_o2_ppm()
