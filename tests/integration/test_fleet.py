"""The lab overview (issue 13): ``furnace web --fleet`` reads every station of a fleet file
over OPC UA and shows state, stage, ETA and alarms, with a link to each station's page; a
station that is down is shown as unreachable. One station served in process by the real
OPC UA server, one endpoint nobody listens on; the overview's web server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import httpx
import pytest

from controller.opcua import BatchOpcUaServer
from controller.opcua.fleet import FleetReader
from controller.recipe.fleet_config import load_fleet
from controller.recipe.station import load_station
from controller.records.columns import trace_columns
from controller.run.clock import VirtualClock
from controller.run.commands import CommandQueue
from controller.run.snapshot import Snapshot
from controller.session import Serving
from controller.web.server import serve_batches
from drivers.errors import ConfigurationError
from tests.integration.helpers import free_port
from tests.web import make_runner

pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("opcua")]


async def test_the_overview_shows_a_running_station_and_an_unreachable_one(
        tmp_path: Path) -> None:
    station, _ = load_station(None)
    runner = make_runner(station)
    serving = Serving(tmp_path / "20261201T000000Z-T", station, runner,
                      CommandQueue(lambda: str(runner.phase)), VirtualClock(),
                      trace_columns(station), 5.0)
    server = BatchOpcUaServer(serving)
    async with server as (_, port):
        server.observe(Snapshot(t_s=12.0, furnace=None, flows=MappingProxyType(
            dict.fromkeys(m.gas for m in station.mfc)), failures=MappingProxyType(
            {"furnace": 3})), runner)
        fleet_toml = tmp_path / "fleet.toml"
        fleet_toml.write_text(f'''schema_version = 1
[[stations]]
name = "tube-1"
opcua = "opc.tcp://127.0.0.1:{port}/furnace/"
dashboard = "http://127.0.0.1:8080/"

[[stations]]
name = "tube-2"
opcua = "opc.tcp://127.0.0.1:{free_port()}/furnace/"
''')
        reader = FleetReader(load_fleet(fleet_toml), timeout_s=5.0)
        assert [v["reachable"] for v in reader.views()] == [False, False]  # not read yet
        while True:  # until the server has published the frame (its loop, real time)
            up, down = await reader.read_all()
            if up.get("state") == "running":
                break
        web, cache = serve_batches(None, "127.0.0.1", 0, fleet=reader.views)
        try:
            base = f"http://127.0.0.1:{web.address[1]}"
            async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
                page = await http.get("/fleet")
                shown = (await http.get("/api/fleet")).json()
                root = await http.get("/", follow_redirects=False)
        finally:
            web.stop()
            cache.cleanup()

    assert up["reachable"] is True
    assert up["station"] == station.name
    assert up["stage"] == "s"
    assert up["step"] == "d"
    assert up["sample"] == "T"
    assert up["eta_utc"]  # the plan counted down: a time
    assert up["alarms"] == ["stale:furnace: 3 failed polls in a row"]
    assert down["reachable"] is False
    assert down["error"]
    assert page.status_code == 200
    assert "Lab overview" in page.text
    assert [s["name"] for s in shown] == ["tube-1", "tube-2"]
    assert shown[0]["dashboard"] == "http://127.0.0.1:8080/"
    assert root.headers["location"] == "/fleet"


def test_a_bad_fleet_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text('schema_version = 1\n[[stations]]\nname = "a"\nopcua = "http://x/"\n')
    with pytest.raises(ConfigurationError, match=r"fleet.toml: stations.0.opcua: "):
        load_fleet(bad)
