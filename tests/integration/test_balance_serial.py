"""``SicsBalance`` against ``SimBalance`` over a virtual serial link made of Python only:
the simulator's TCP server reached through pyserial's ``socket://`` URL (STYLE C12 rung 4),
plus one pseudo-terminal test of the serial server (POSIX)."""

from __future__ import annotations

import asyncio
import os
import random
import select
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from drivers.balance import BalanceBusyError, SicsBalance, SicsLine, SicsRejectedError
from drivers.errors import CommunicationError, DeviceFaultError, DeviceTimeoutError
from drivers.roles import Balance
from simulator.balance import SimBalance, SimSicsLine, buoyancy_drift_g
from simulator.world import SimStationSpec, SimWorld

SHORT_S = 0.2  # serial timeout for the bounded timeout tests
NOISE_BOUND_G = 5 * 5e-5 + 0.5e-4  # 5 sigma of noise plus half a digit of readability

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


@dataclass
class Rig:
    sim: SimBalance
    mass_g: list[float]  # what the simulated sample weighs; change it between reads
    url: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    mass_g = [2.0]
    sim = SimBalance(lambda: mass_g[0], random.Random(1))
    port = await sim.serve_tcp()
    yield Rig(sim, mass_g, f"socket://127.0.0.1:{port}")
    await sim.stop()


@pytest.fixture
async def balance(rig: Rig) -> AsyncIterator[SicsBalance]:
    driver = SicsBalance(rig.url, timeout_s=1.0)
    await driver.open()
    yield driver
    await driver.close()


def _spy_on_replies(sim: SimBalance) -> asyncio.Event:
    """An event set each time the simulated balance answers a line."""
    answered = asyncio.Event()
    respond = sim.respond

    def spy(line: bytes) -> bytes:
        answered.set()
        return respond(line)

    sim.respond = spy  # type: ignore[method-assign]
    return answered


# ---- readings ------------------------------------------------------------------------


async def test_stable_read(balance: SicsBalance) -> None:
    assert isinstance(balance, Balance)
    reading = await balance.read_mass_g()
    assert reading.is_stable
    assert reading.mass_g == pytest.approx(2.0, abs=NOISE_BOUND_G)
    assert round(reading.mass_g, 4) == reading.mass_g  # quantised to 0.1 mg
    assert await balance.read_identity() == "SIM-SICS 220.0000 g"


async def test_dynamic_read_while_the_mass_changes(rig: Rig, balance: SicsBalance) -> None:
    first = await balance.read_mass_g()
    rig.mass_g[0] -= 0.005  # 5 mg lost between two polls: fast mass loss
    moving = await balance.read_mass_g()
    settled = await balance.read_mass_g()
    assert first.is_stable
    assert not moving.is_stable
    assert settled.is_stable
    assert moving.mass_g == pytest.approx(1.995, abs=NOISE_BOUND_G)


async def test_stable_only_command_answers_busy_while_moving(rig: Rig) -> None:
    driver = SicsBalance(rig.url, command="S")
    try:
        assert (await driver.read_mass_g()).is_stable
        rig.mass_g[0] += 0.01
        with pytest.raises(BalanceBusyError, match="b'S I'"):
            await driver.read_mass_g()
    finally:
        await driver.close()


async def test_buoyancy_rises_with_the_furnace_temperature() -> None:
    gas_c = [25.0]
    sim = SimBalance(lambda: 2.0, random.Random(2), noise_g=0.0,
                     gas_temperature_source=lambda: gas_c[0])
    line = SimSicsLine(sim)
    driver = SicsBalance(line)
    cold = (await driver.read_mass_g()).mass_g
    gas_c[0] = 1000.0
    hot = (await driver.read_mass_g()).mass_g
    assert cold == 2.0
    expected_g = buoyancy_drift_g(1000.0, volume_cm3=2.0, density_g_per_cm3=1.633e-3,
                                  ambient_c=25.0)
    assert expected_g == pytest.approx(2.50e-3, abs=0.01e-3)  # the documented size
    assert hot - cold == pytest.approx(expected_g, abs=0.5e-4)
    await driver.close()


# ---- error replies -------------------------------------------------------------------


async def test_overload_and_underload(rig: Rig, balance: SicsBalance) -> None:
    rig.sim.overload = True
    with pytest.raises(DeviceFaultError, match="overload"):
        await balance.read_mass_g()
    rig.sim.overload = False
    rig.sim.underload = True
    with pytest.raises(DeviceFaultError, match="underload"):
        await balance.read_mass_g()
    rig.sim.underload = False
    rig.mass_g[0] = 500.0  # above the 220 g capacity
    with pytest.raises(DeviceFaultError, match="overload"):
        await balance.read_mass_g()


async def test_unknown_command_is_rejected(rig: Rig) -> None:
    driver = SicsBalance(rig.url, command="XQ")
    try:
        with pytest.raises(SicsRejectedError, match="syntax") as info:
            await driver.read_mass_g()
        assert info.value.device == "balance"
    finally:
        await driver.close()


async def test_disconnected_balance_times_out_within_the_timeout(rig: Rig) -> None:
    driver = SicsBalance(rig.url, timeout_s=SHORT_S)
    loop = asyncio.get_running_loop()
    try:
        await driver.open()
        rig.sim.disconnected = True
        started = loop.time()
        with pytest.raises(DeviceTimeoutError, match=r"no reply to SI within 0\.2 s") as info:
            await driver.read_mass_g()
        elapsed = loop.time() - started
        assert SHORT_S * 0.9 <= elapsed < SHORT_S + 0.5
        assert "\n" not in str(info.value)
        rig.sim.disconnected = False  # plugged back in: the next poll works
        assert (await driver.read_mass_g()).mass_g == pytest.approx(2.0, abs=NOISE_BOUND_G)
    finally:
        await driver.close()


async def test_a_late_reply_is_flushed_before_the_next_command(rig: Rig) -> None:
    driver = SicsBalance(rig.url, timeout_s=SHORT_S)
    try:
        rig.mass_g[0] = 1.0
        rig.sim.hold_replies()
        with pytest.raises(DeviceTimeoutError):
            await driver.read_mass_g()
        answered = _spy_on_replies(rig.sim)
        rig.sim.release_replies()  # the late reply (1.0 g) now arrives unasked
        await answered.wait()
        rig.mass_g[0] = 5.0
        reading = await driver.read_mass_g()
        assert reading.mass_g == pytest.approx(5.0, abs=NOISE_BOUND_G)
    finally:
        await driver.close()


# ---- ports ---------------------------------------------------------------------------


async def test_missing_port_is_a_one_line_communication_error() -> None:
    driver = SicsBalance("/dev/ttyNO_SUCH_BALANCE" if sys.platform != "win32" else "COM250")
    with pytest.raises(CommunicationError, match="cannot open .*no such port") as info:
        await driver.open()
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, DeviceTimeoutError)
    await driver.close()


async def test_nothing_listening_and_bad_url_are_one_line_errors() -> None:
    with socket.socket() as probe:  # a free port with nobody behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url, reason in ((f"socket://127.0.0.1:{port}", "refused"),
                        ("nosuch://x", "protocol 'nosuch' not known")):
        driver = SicsBalance(url)
        with pytest.raises(CommunicationError, match=reason) as info:
            await driver.read_mass_g()  # reads open on demand
        assert "\n" not in str(info.value)
        await driver.close()


@posix_only
async def test_port_in_use_is_refused() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    first, second = SicsBalance(path), SicsBalance(path)
    try:
        await first.open()
        with pytest.raises(CommunicationError, match="in use"):
            await second.open()
    finally:
        await first.close()
        await second.close()
        os.close(master)
        os.close(slave)


async def test_close_is_idempotent_and_final(balance: SicsBalance) -> None:
    await balance.read_mass_g()
    await balance.close()
    await balance.close()
    with pytest.raises(CommunicationError, match="closed"):
        await balance.read_mass_g()


# ---- concurrency ---------------------------------------------------------------------


async def test_reads_do_not_block_the_event_loop(rig: Rig, balance: SicsBalance) -> None:
    loop = asyncio.get_running_loop()
    rig.sim.hold_replies()  # a slow balance: the reply waits until released
    read = asyncio.create_task(balance.read_mass_g())
    ticked = asyncio.Event()
    loop.call_later(0.05, ticked.set)  # another piece of work on the same loop
    await ticked.wait()
    assert not read.done()  # the loop ran the timer while the read was in flight
    rig.sim.release_replies()
    reading = await read
    assert reading.mass_g == pytest.approx(2.0, abs=NOISE_BOUND_G)


async def test_one_request_in_flight(rig: Rig, balance: SicsBalance) -> None:
    readings = await asyncio.gather(*(balance.read_mass_g() for _ in range(5)))
    assert all(r.mass_g == pytest.approx(2.0, abs=NOISE_BOUND_G) for r in readings)


async def test_cancelled_read_leaves_the_port_usable(rig: Rig, balance: SicsBalance) -> None:
    rig.sim.hold_replies()
    read = asyncio.create_task(balance.read_mass_g())
    ticked = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, ticked.set)
    await ticked.wait()
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read  # at once, though the worker thread still waits for its reply
    rig.sim.release_replies()
    rig.mass_g[0] = 3.0
    assert (await balance.read_mass_g()).mass_g == pytest.approx(3.0, abs=NOISE_BOUND_G)


# ---- the world's balance, over the wire and in process ------------------------------


async def test_world_balance_over_socket_and_in_process() -> None:
    world = SimWorld(SimStationSpec(sample_mass_g=1.25), seed=4)
    assert world.balance is not None
    port = await world.balance.serve_tcp()
    wire = SicsBalance(f"socket://127.0.0.1:{port}", timeout_s=1.0)
    t_s = [0.0]
    line = SimSicsLine(world.balance, lambda: world.advance_to(t_s[0]))
    assert isinstance(line, SicsLine)
    local = SicsBalance(line, name="balance")
    try:
        for driver in (wire, local):
            reading = await driver.read_mass_g()
            assert reading.mass_g == pytest.approx(1.25, abs=NOISE_BOUND_G)
        t_s[0] = 60.0
        await local.read_mass_g()
        assert world.now_s == 60.0  # the in-process line advanced the world first
        world.balance.disconnected = True
        with pytest.raises(DeviceTimeoutError):  # at once: no real time in process
            await local.read_mass_g()
    finally:
        await wire.close()
        await local.close()
        await world.balance.stop()
        await world.balance.stop()
    with pytest.raises(CommunicationError):
        await local.read_mass_g()


# ---- the serial server on a pseudo-terminal ------------------------------------------


def _read_line(fd: int, timeout_s: float) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            break
        data += os.read(fd, 64)
    return data


@posix_only
async def test_serve_serial_answers_on_a_pty_and_stops() -> None:
    master, slave = os.openpty()
    sim = SimBalance(lambda: 2.0, random.Random(3))
    try:
        await sim.serve_serial(os.ttyname(slave))
        os.write(master, b"SI\r\n")
        reply = await asyncio.to_thread(_read_line, master, 2.0)
        assert reply.startswith(b"S S ")
        assert reply.endswith(b" g\r\n")
        os.write(master, b"BOGUS\r\n")
        assert await asyncio.to_thread(_read_line, master, 2.0) == b"ES\r\n"
    finally:
        await sim.stop()
        await sim.stop()
        os.close(master)
        os.close(slave)


async def test_serve_serial_on_a_missing_device_is_one_line() -> None:
    sim = SimBalance(lambda: 2.0, random.Random(3))
    with pytest.raises(CommunicationError, match="cannot open") as info:
        await sim.serve_serial("/dev/ttyNO_SUCH_BALANCE" if sys.platform != "win32"
                               else "COM250")
    assert isinstance(info.value, OSError)  # what the composition root catches
    assert "\n" not in str(info.value)
    await sim.stop()
