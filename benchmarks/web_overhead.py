"""What the batch's web server costs the scan loop.

1. Dry-run wall time (``--speed max``, the virtual clock) of a recipe run in this process,
   without a server (``serve=None``) and with the batch's server (``serve_batch()``: what
   every ``furnace run`` starts; ``--web`` only chooses its address), no browser connected.
   Round-robin, median of N. Target (issue 12): < 5 % added.
2. Scan-period jitter at a scaled speed (real pacing: the scan period in real seconds is
   ``scan_period_s / speed``), without a client and with one client doing what the live page
   does: a WebSocket of trace rows and ``GET /api/state`` every second. Jitter is each real
   interval between cycles minus the period, as a fraction of the period. Target: within
   10 % (p95 of |deviation|).

Run: python benchmarks/web_overhead.py [--runs N] [--speed S] [--cycles C]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.run.clock import ScaledClock, VirtualClock
from controller.session import run_batch
from controller.station_factory import build_devices
from controller.web.server import BatchWebServer, serve_batch

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "profiles" / "smoke-600.toml"


async def _dry_run(batches: Path, served: bool) -> tuple[float, float]:
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(RECIPE, {}, station)
    clock = VirtualClock()
    built = build_devices(station, clock, material=plan.material)
    t0, c0 = time.perf_counter(), time.process_time()
    await run_batch(plan=plan, station=station, recipe_text=frozen, station_text=station_text,
                    clock=clock, batches_dir=batches, operator="bench", built=built,
                    serve=serve_batch() if served else None)
    return time.perf_counter() - t0, time.process_time() - c0


def wall_times(runs: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s of the whole process, both threads) per run and case."""
    times: dict[str, list[tuple[float, float]]] = {"no server": [], "served (no browser)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for served, name in ((False, "no server"), (True, "served (no browser)")):
                times[name].append(asyncio.run(_dry_run(Path(tmp) / f"{i}{served}", served)))
    return times


class _Client:
    """One live page's worth of traffic: the WebSocket of trace rows, /api/state each
    second, until stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stop = threading.Event()
        self.messages = 0
        self.states = 0
        self._threads = [threading.Thread(target=self._ws, daemon=True),
                         threading.Thread(target=self._poll, daemon=True)]
        for t in self._threads:
            t.start()

    def _ws(self) -> None:
        with connect(self.base.replace("http", "ws") + "/ws/trace") as ws:
            while not self.stop.is_set():
                try:
                    ws.recv(timeout=0.5)
                    self.messages += 1
                except TimeoutError:
                    continue

    def _poll(self) -> None:
        with httpx.Client(base_url=self.base, trust_env=False) as client:
            while not self.stop.wait(1.0):
                client.get("/api/state").raise_for_status()
                self.states += 1

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(5)


async def _paced(batches: Path, speed: float, cycles: int, client: bool
                 ) -> tuple[list[float], float, dict[str, int]]:
    """Real intervals between scan cycles (s), the real period, the client's counts."""
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(RECIPE, {}, station)
    clock = ScaledClock(speed, period_s=station.scan_period_s, pace_holds=True)
    built = build_devices(station, clock, material=plan.material)
    stamps: list[float] = []
    done = asyncio.get_running_loop().create_future()
    servers: list[BatchWebServer] = []
    make = serve_batch()

    def serve(serving: Any) -> BatchWebServer:
        servers.append(make(serving))
        return servers[-1]

    def observer(snap: Any, runner: Any) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= cycles + 20 and not done.done():
            done.set_result(None)

    task = asyncio.create_task(run_batch(
        plan=plan, station=station, recipe_text=frozen, station_text=station_text,
        clock=clock, batches_dir=batches, operator="bench", built=built, observer=observer,
        serve=serve))
    while not servers or servers[0].feed.frame is None:
        await asyncio.sleep(0.05)
    page = _Client(f"http://127.0.0.1:{servers[0].address[1]}") if client else None
    await done
    if page is not None:
        page.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    counts = {"ws_messages": page.messages, "states": page.states} if page else {}
    stamps = stamps[20:]  # after preflight and the start
    return ([b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            station.scan_period_s / speed, counts)


def jitter(intervals: list[float], period: float) -> dict[str, float]:
    """Scan intervals' deviation from ``period`` as fractions of it: p50, p95, max (and the
    mean interval, ms). Shared with ``opcua_jitter``."""
    dev = sorted(abs(i - period) / period for i in intervals)
    return {"mean_interval_ms": 1000 * statistics.mean(intervals),
            "p50_dev": dev[len(dev) // 2], "p95_dev": dev[int(len(dev) * 0.95)],
            "max_dev": dev[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--speed", type=float, default=50.0)
    p.add_argument("--cycles", type=int, default=250)
    args = p.parse_args()

    times = wall_times(args.runs)
    base = statistics.median(w for w, _ in times["no server"])
    base_cpu = statistics.median(c for _, c in times["no server"])
    print(f"1. dry run of {RECIPE.name} at --speed max, median of {args.runs} "
          "(wall; CPU of the process, every thread):")
    for name, ts in times.items():
        med = statistics.median(w for w, _ in ts)
        cpu = statistics.median(c for _, c in ts)
        print(f"   {name:<22} wall {med:6.2f} s {100 * (med / base - 1):+5.1f} %   "
              f"CPU {cpu:6.2f} s {100 * (cpu / base_cpu - 1):+5.1f} %   "
              f"(wall {', '.join(f'{t:.2f}' for t, _ in ts)})")

    print(f"2. scan period jitter at --speed {args.speed:g} "
          f"({args.cycles} cycles; deviation as a fraction of the real period):")
    with tempfile.TemporaryDirectory() as tmp:
        for client, name in ((False, "no client"), (True, "one page client (WS + state)")):
            intervals, period, counts = asyncio.run(
                _paced(Path(tmp) / name.replace(" ", "_"), args.speed, args.cycles, client))
            j = jitter(intervals, period)
            print(f"   {name:<30} period {1000 * period:5.1f} ms  mean "
                  f"{j['mean_interval_ms']:6.2f} ms  p50 {100 * j['p50_dev']:5.1f} %  "
                  f"p95 {100 * j['p95_dev']:5.1f} %  max {100 * j['max_dev']:5.1f} %"
                  + (f"  ({counts})" if counts else ""))


if __name__ == "__main__":
    main()
