"""What the station's OPC UA server costs the scan loop: scan-period jitter with the server
running and 0 clients, then with 10 asyncua clients each subscribed (1 s publishing
interval) to every variable of the active program. Target (issue 13): 10 clients change the
jitter by < 10 % (of the period, p95).

The batch runs at a scaled speed (real pacing: the scan period in real seconds is
``scan_period_s / speed``) in this process, with the web server too (what ``furnace run
--opcua`` starts). Jitter is each real interval between cycles minus the period, as a
fraction of the period. The clients run on a thread and loop of their own (as another
program would; they share the GIL, which makes this a harsher test than another machine).

Run: python benchmarks/opcua_jitter.py [--speed S] [--cycles C] [--clients N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from web_overhead import jitter  # run as a script: benchmarks/ is on sys.path

from controller.opcua import BatchOpcUaServer, serve_opcua
from controller.opcua.space import ACTIVE_PROGRAM, NAMESPACE_URI
from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.run.clock import ScaledClock
from controller.session import run_batch
from controller.station_factory import build_devices
from controller.web.server import serve_batch

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "profiles" / "smoke-600.toml"


class _Clients:
    """``n`` asyncua clients, each subscribed at 1 s to every active-program variable,
    counting the notifications, on a thread of their own until closed."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.n = n
        self.notices = 0
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        self.ready.wait(60)

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.notices += 1

    async def _one(self, started: list[int]) -> None:
        client = Client(self.url)
        client.session_timeout = 600_000  # ms: what the server grants anyway
        async with client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            program = client.get_node(ua.NodeId(ACTIVE_PROGRAM, idx))
            sub = await client.create_subscription(1000, self)
            await sub.subscribe_data_change(await program.get_children())
            started.append(1)
            if len(started) == self.n:
                self.ready.set()
            assert self._stop is not None
            await self._stop.wait()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        started: list[int] = []
        await asyncio.gather(*(self._one(started) for _ in range(self.n)))

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def _paced(batches: Path, speed: float, cycles: int, clients: int
                 ) -> tuple[list[float], float, int]:
    """Real intervals between scan cycles (s), the real period, notifications received."""
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(RECIPE, {}, station)
    clock = ScaledClock(speed, period_s=station.scan_period_s, pace_holds=True)
    built = build_devices(station, clock, material=plan.material)
    stamps: list[float] = []
    measuring = False
    done = asyncio.get_running_loop().create_future()
    servers: list[BatchOpcUaServer] = []
    make = serve_opcua()

    def opcua(serving: Any) -> BatchOpcUaServer:
        servers.append(make(serving))
        return servers[-1]

    def observer(snap: Any, runner: Any) -> None:
        if not measuring:
            return
        stamps.append(time.perf_counter())
        if len(stamps) >= cycles and not done.done():
            done.set_result(None)

    task = asyncio.create_task(run_batch(
        plan=plan, station=station, recipe_text=frozen, station_text=station_text,
        clock=clock, batches_dir=batches, operator="bench", built=built, observer=observer,
        serve=[serve_batch(), opcua]))
    while not servers or servers[0].feed.frame is None:
        await asyncio.sleep(0.05)
    group = await asyncio.to_thread(_Clients, servers[0].url, clients) if clients else None
    await asyncio.sleep(1.0)  # the subscriptions' first notices are out of the way
    measuring = True
    await done
    notices = group.notices if group is not None else 0
    if group is not None:
        await asyncio.to_thread(group.close)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return ([b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            station.scan_period_s / speed, notices)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=300)
    p.add_argument("--clients", type=int, default=10)
    args = p.parse_args()

    print(f"scan period jitter at --speed {args.speed:g} ({args.cycles} cycles; deviation "
          "as a fraction of the real period), OPC UA and web servers running:")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, args.clients):
            intervals, period, notices = asyncio.run(
                _paced(Path(tmp) / f"c{n}", args.speed, args.cycles, n))
            j = results[n] = jitter(intervals, period)
            print(f"   {n:>2} clients subscribed at 1 s  period {1000 * period:6.1f} ms  "
                  f"mean {j['mean_interval_ms']:7.2f} ms  p50 {100 * j['p50_dev']:5.2f} %  "
                  f"p95 {100 * j['p95_dev']:5.2f} %  max {100 * j['max_dev']:5.2f} %"
                  + (f"  ({notices} notifications)" if n else ""))
    change = 100 * (results[args.clients]["p95_dev"] - results[0]["p95_dev"])
    print(f"   p95 jitter changed by {change:+.2f} % of the period (target: < 10 %)")


if __name__ == "__main__":
    main()
