"""Modbus scan cost: the controller's full scan of every device against a bare pymodbus loop
doing the same transactions, and scans per second on an emulated serial line.

(a) controller: ``ScanLoop.read()`` of every device plus the setpoint write with read-back
    (one scan cycle's traffic), over Modbus TCP on loopback against ``furnace sim serve``
    running in its own process;
(b) baseline: pymodbus's own AsyncModbusTcpClient issuing exactly the same requests to the
    same server, with nothing around it.
Printed side by side with their ratio (the aim: a/b <= 1.2).

Serial (POSIX only): two pseudo-terminals bridged by a relay that holds each byte for its
wire time at the baud rate (11 bits a character, as the RTU spec counts), served by the
simulator's RTU server; achieved scans/s beside the wire limit of reference/hardware.md §7
for the same frames.
Run: python benchmarks/modbus_cycle.py [--cycles N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from controller.recipe.station import load_station_text
from controller.recipe.steps import End, Plan, Stage
from controller.run.clock import WallClock
from controller.run.handle import RecipeRunner
from controller.run.scan import ScanLoop
from controller.station_factory import build_devices, sim_spec
from drivers.eurotherm.registers import build_map
from simulator import SimWorld
from simulator.modbus_server import SimModbusServer

ROOT = Path(__file__).resolve().parent.parent
EURO = {r.name: r for r in build_map(1).registers}


class _NullRecorder:
    def audit(self, event: str, t_s: float, fields: dict[str, Any]) -> None:
        pass

    def trace(self, row: object) -> None:
        pass

    def sync_trace(self) -> dict[str, object]:
        return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _station_text(kind: str, port: int, device: str = "", baudrate: int = 19200) -> str:
    text = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")
    text = text.replace("port = 5020", f"port = {port}")
    text = text[:text.index("[balance]")] + text[text.index("[envelope]"):]  # no balance
    if kind == "rtu":
        text = text.replace('kind = "tcp"', f'kind = "rtu"\ndevice = "{device}"\n'
                                             f'baudrate = {baudrate}')
    return text


async def _controller_scans(station_text: str, cycles: int) -> tuple[float, int]:
    station = load_station_text(station_text, "bench")
    clock = WallClock()
    built = build_devices(station, clock)
    await built.connect("bench")
    plan = Plan("bench", "BENCH", (Stage("s", "Ar"),), (End(stage="s", label="end"),))
    runner = RecipeRunner(plan, station, auto_confirm=True)
    loop = ScanLoop(station=station, runner=runner, devices=built.devices, clock=clock,
                    recorder=_NullRecorder())
    furnace = built.devices.furnace
    transactions = 0
    started = time.perf_counter()
    for _ in range(cycles):
        snap = await loop.read()
        await furnace.write_setpoint_c(snap.furnace_c)
    elapsed = time.perf_counter() - started
    for bus in built.buses:
        transactions = getattr(bus, "stats").transactions  # noqa: B009
    await built.close()
    return elapsed / cycles, transactions // cycles


async def _bare_scans(port: int, cycles: int) -> float:
    """The same requests as one controller scan, with pymodbus alone."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    rm_sp = EURO["Rm.SP.F"].address
    started = time.perf_counter()
    for _ in range(cycles):
        await client.read_holding_registers(0x8002, count=10, device_id=1)  # furnace block
        await client.read_holding_registers(75, count=1, device_id=1)  # status
        await client.read_holding_registers(276, count=1, device_id=1)  # setpoint source
        for unit in (2, 3, 4):  # MFC block
            await client.read_holding_registers(1200, count=12, device_id=unit)
        await client.read_holding_registers(0, count=3, device_id=6)  # O2
        await client.read_holding_registers(0x8002, count=10, device_id=5)  # sample TC
        await client.read_holding_registers(75, count=1, device_id=5)
        await client.write_registers(rm_sp, [0x43C8, 0x0000], device_id=1)  # 400.0 °C
        await client.read_holding_registers(rm_sp, count=2, device_id=1)
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed / cycles


def tcp_comparison(cycles: int, rounds: int) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "controller.cli", "sim", "serve",
                               "--port", str(port), "--speed", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        text = _station_text("tcp", port)
        ours, bare, n = [], [], 0
        for _ in range(rounds):  # interleaved, so drift hits both alike
            t, n = asyncio.run(_controller_scans(text, cycles))
            ours.append(t)
            bare.append(asyncio.run(_bare_scans(port, cycles)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    a, b = statistics.median(ours), statistics.median(bare)
    print(f"Modbus TCP loopback, {n} transactions per scan, {cycles} scans x {rounds} rounds")
    print(f"  (a) controller full scan : {a * 1e3:7.2f} ms/scan  {1 / a:7.0f} scans/s")
    print(f"  (b) bare pymodbus loop   : {b * 1e3:7.2f} ms/scan  {1 / b:7.0f} scans/s")
    print(f"  ratio a/b                : {a / b:7.2f}")


# ------------------------------------------------------------------------------ serial
FRAMES = [(8, 25), (8, 7), (8, 7), (8, 29), (8, 29), (8, 29), (8, 11), (8, 25), (8, 7), (13, 8),
          (8, 9)]  # (request, reply) bytes of one scan: as in tcp_comparison, RTU framing


def wire_limit_scans_per_s(baudrate: int) -> float:
    """hardware.md §7.1: T = (bytes)·t_char + 2·t3.5 per transaction, 11-bit characters;
    above 19200 baud t3.5 is fixed at 1.75 ms."""
    t_char = 11.0 / baudrate
    t35 = 3.5 * t_char if baudrate <= 19200 else 1.75e-3
    return 1.0 / sum((q + r) * t_char + 2 * t35 for q, r in FRAMES)


async def _relay(fd_a: int, fd_b: int, baudrate: int, stop: asyncio.Event) -> None:
    """Copy bytes both ways, each held for its wire time (a byte is 11 bits on the line),
    and a frame's end seen only after 3.5 characters of silence, as a receiver must."""
    loop = asyncio.get_running_loop()
    t_char = 11.0 / baudrate
    t35 = 3.5 * t_char if baudrate <= 19200 else 1.75e-3
    busy_until = {fd_a: 0.0, fd_b: 0.0}

    def pump(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        start = max(loop.time(), busy_until[dst])
        busy_until[dst] = start + len(data) * t_char
        loop.call_at(busy_until[dst] + t35, os.write, dst, data)

    loop.add_reader(fd_a, pump, fd_a, fd_b)
    loop.add_reader(fd_b, pump, fd_b, fd_a)
    await stop.wait()
    loop.remove_reader(fd_a)
    loop.remove_reader(fd_b)


async def _serial_run(baudrate: int, cycles: int) -> float:
    import tty

    m1, s1 = os.openpty()
    m2, s2 = os.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    stop = asyncio.Event()
    relay = asyncio.create_task(_relay(m1, m2, baudrate, stop))
    station = load_station_text(_station_text("rtu", 5020, os.ttyname(s2), baudrate), "bench")
    clock = WallClock()
    server = SimModbusServer(SimWorld(sim_spec(station)), clock.now)
    await server.start_serial(os.ttyname(s1), baudrate=baudrate)
    try:
        per_scan, _ = await _controller_scans(_station_text("rtu", 5020, os.ttyname(s2),
                                                            baudrate), cycles)
    finally:
        await server.stop()
        stop.set()
        await relay
        for fd in (m1, s1, m2, s2):
            os.close(fd)
    return 1.0 / per_scan


def serial_comparison(cycles: int) -> None:
    if os.name != "posix":
        print("serial: skipped (pseudo-terminals are POSIX only)")
        return
    print("Modbus RTU over an emulated serial line (pty pair, bytes held for their wire time)")
    for baudrate in (19200, 115200):
        achieved = asyncio.run(_serial_run(baudrate, cycles))
        limit = wire_limit_scans_per_s(baudrate)
        print(f"  {baudrate:6d} baud: achieved {achieved:6.1f} scans/s, wire limit "
              f"{limit:6.1f} scans/s ({achieved / limit:5.1%} of the limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tcp_comparison(args.cycles, args.rounds)
    serial_comparison(max(args.cycles // 10, 20))


if __name__ == "__main__":
    main()
