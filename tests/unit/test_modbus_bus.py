"""``ModbusBus`` without a server: error translation from pymodbus's own objects, the retry
policy and cancellation, with the pymodbus client replaced by a scripted stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    WriteMultipleRegistersResponse,
)

from drivers.errors import CommunicationError, DeviceRejectedError, DeviceTimeoutError
from drivers.modbus_bus import ModbusBus, describe_serial_error, translate

NO_REPLY = "No response received after 0 retries, continue with next request"


def test_translate_maps_both_pymodbus_channels() -> None:
    rejected = translate(ExceptionResponse(16, 3), what="write", device="furnace")
    assert isinstance(rejected, DeviceRejectedError)
    assert (rejected.exception_code, rejected.device) == (3, "furnace")
    timeout = translate(ModbusIOException(NO_REPLY), what="read", timeout_s=0.3)
    assert isinstance(timeout, DeviceTimeoutError)
    garbled = translate(ModbusIOException(NO_REPLY), what="read", rx_seen=True)
    assert type(garbled) is CommunicationError
    assert type(translate(ConnectionException("x"), what="read")) is CommunicationError
    odd = translate(WriteMultipleRegistersResponse(address=1, count=1), what="read")
    assert type(odd) is CommunicationError


def test_serial_open_errors_are_one_line_reasons() -> None:
    assert describe_serial_error("COM7", OSError("could not open port 'COM7': "
                                                 "FileNotFoundError(2, 'x')")) == \
        "no such serial port COM7"
    assert "in use" in describe_serial_error("COM4", OSError("could not open port 'COM4': "
                                                             "PermissionError(13, 'Access "
                                                             "is denied.')"))
    busy = OSError(11, "Could not exclusively lock port /dev/ttyUSB0")
    assert describe_serial_error("/dev/ttyUSB0", busy) == \
        "serial port /dev/ttyUSB0 is in use by another program"


@dataclass
class ScriptedClient:
    """Stands in for pymodbus's async client: replies or raises from a script, in order."""

    script: list[object]
    sent: list[tuple[str, int, int]] = field(default_factory=list)
    connected: bool = True
    closes: int = 0

    async def connect(self) -> bool:
        self.connected = True
        return True

    def close(self) -> None:
        self.closes += 1
        self.connected = False

    async def _next(self) -> object:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, asyncio.Event):
            await step.wait()
        return step

    async def read_holding_registers(self, address: int, *, count: int,
                                     device_id: int) -> object:
        self.sent.append(("read", device_id, address))
        return await self._next()

    async def write_registers(self, address: int, values: Sequence[int], *,
                              device_id: int) -> object:
        self.sent.append(("write", device_id, address))
        return await self._next()


def _bus(script: list[object], retries: int = 2) -> tuple[ModbusBus, ScriptedClient]:
    bus = ModbusBus(transport="tcp", port=1, retries=retries, unit_names={1: "furnace"})
    client = ScriptedClient(script)
    bus._client = client  # type: ignore[assignment]
    return bus, client


async def test_reads_and_setting_writes_are_retried_commands_are_not() -> None:
    ok = ReadHoldingRegistersResponse(registers=[7])
    bus, client = _bus([ModbusIOException(NO_REPLY), ModbusIOException(NO_REPLY), ok])
    assert await bus.read_registers(1, 5, 1) == [7]
    assert (bus.stats.retries, bus.stats.timeouts, client.closes) == (2, 2, 2)

    acked = WriteMultipleRegistersResponse(address=26, count=1)
    bus, client = _bus([ModbusIOException(NO_REPLY), acked])
    await bus.write_registers(1, 26, [1], idempotent=True)
    assert len(client.sent) == 2

    bus, client = _bus([ModbusIOException(NO_REPLY), acked])
    with pytest.raises(DeviceTimeoutError) as info:
        await bus.write_registers(1, 274, [1], idempotent=False)
    assert info.value.device == "furnace"
    assert len(client.sent) == 1


async def test_an_exception_response_is_neither_retried_nor_a_link_fault() -> None:
    bus, client = _bus([ExceptionResponse(3, 2)])
    with pytest.raises(DeviceRejectedError):
        await bus.read_registers(1, 9999, 1)
    assert (len(client.sent), client.closes, bus.stats.exceptions) == (1, 0, 1)


async def test_a_reply_to_another_request_is_not_taken() -> None:
    bus, _ = _bus([ReadHoldingRegistersResponse(registers=[1, 2])], retries=0)
    with pytest.raises(CommunicationError, match="unexpected reply"):
        await bus.read_registers(1, 5, 1)


async def test_cancellation_disguised_as_io_error_stays_cancellation() -> None:
    class Disguising(ScriptedClient):
        async def _next(self) -> object:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise ModbusIOException("Request cancelled outside pymodbus.") from None
            return None

    bus = ModbusBus(transport="tcp", port=1)
    bus._client = Disguising([])  # type: ignore[assignment]
    task = asyncio.create_task(bus.read_registers(1, 1, 1))
    await asyncio.sleep(0)  # noqa: TID251 - one loop turn to let the read start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bus.stats.retries == 0


async def test_a_closed_bus_refuses_calls() -> None:
    bus, _ = _bus([])
    await bus.close()
    with pytest.raises(CommunicationError, match="closed"):
        await bus.read_registers(1, 1, 1)
