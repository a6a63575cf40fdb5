"""The lab overview's reader (``furnace web --fleet``): every station of the fleet file read
over OPC UA (asyncua's client) on a thread and loop of its own, every ``period_s`` real
seconds; the web server's thread only takes the latest ``views()`` (one reference read).

A station that does not answer within ``timeout_s`` is shown as unreachable with the
reason; one slow station never delays the others (they are read concurrently). Not here:
the page (``controller.web``) or the fleet file (``controller.recipe.fleet_config``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Final

from asyncua import Client, ua

from controller.opcua.space import DEVICE, NAMESPACE_URI, program_id
from controller.recipe.fleet_config import Fleet, FleetStation

__all__ = ["FleetReader", "read_station"]

logger = logging.getLogger(__name__)

POLL_S: Final = 5.0
TIMEOUT_S: Final = 4.0
# What the overview shows, by node id (``space``'s wire contract).
_READ: Final = {"state": program_id("State"), "stage": program_id("Stage"),
                "step": program_id("StepName"), "eta_utc": program_id("EtaUtc"),
                "alarms": program_id("Alarms"), "runtime_s": program_id("CurrentRuntimeS"),
                "batch_id": f"{DEVICE}.BatchId", "sample": f"{DEVICE}.Sample",
                "station": f"{DEVICE}.StationName"}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN: nothing read
        return None
    return value


async def read_station(station: FleetStation, timeout_s: float = TIMEOUT_S
                       ) -> dict[str, Any]:
    """One station's overview: name, links, ``reachable`` and the values read (or the
    reason it could not be read). Never raises for a station that is down or foreign."""
    view: dict[str, Any] = {"name": station.name, "opcua": station.opcua,
                            "dashboard": station.dashboard}
    try:
        async with asyncio.timeout(timeout_s):
            client = Client(station.opcua, timeout=timeout_s)
            client.session_timeout = 60_000  # ms; a round's session is short-lived
            async with client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                nodes = [client.get_node(ua.NodeId(n, idx)) for n in _READ.values()]
                read = await client.read_values(nodes)
    except (TimeoutError, OSError, ValueError, ua.UaError) as exc:
        return {**view, "reachable": False,
                "error": str(exc) or type(exc).__name__}
    return {**view, "reachable": True,
            **{key: _plain(v) for key, v in zip(_READ, read, strict=True)}}


class FleetReader:
    """Reads the fleet's stations every ``period_s`` on its own thread (``start``,
    ``stop``); ``views()`` is the latest round (each station ``unreachable`` until read)."""

    def __init__(self, fleet: Fleet, *, period_s: float = POLL_S,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.fleet = fleet
        self.period_s = period_s
        self.timeout_s = timeout_s
        self._views: list[dict[str, Any]] = [
            {"name": s.name, "opcua": s.opcua, "dashboard": s.dashboard, "reachable": False,
             "error": "not read yet"} for s in fleet.stations]
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def views(self) -> list[dict[str, Any]]:
        """The latest round, one dict per station (in the fleet file's order)."""
        return self._views

    async def read_all(self) -> list[dict[str, Any]]:
        """One round: every station read concurrently; also kept for ``views``."""
        self._views = list(await asyncio.gather(
            *(read_station(s, self.timeout_s) for s in self.fleet.stations)))
        return self._views

    def start(self) -> None:
        """Read now and every ``period_s`` on a thread of its own."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()),
                                        name="furnace-fleet", daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        while not self._halt.is_set():
            try:
                await self.read_all()
            except Exception:  # the overview keeps the last round
                logger.exception("reading the fleet failed")
            await asyncio.to_thread(self._halt.wait, self.period_s)  # real time

    def stop(self) -> None:
        """Stop reading and wait for the thread (blocking)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 2)
