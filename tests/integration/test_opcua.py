"""The station's OPC UA server (issue 13 acceptance), with asyncua's Client as a plain client
on its own thread and loop: it browses the station, reads live values that match the trace
row of the same cycle, subscribes to the state, and calls Hold, Resume and Confirm with
operator and reason: applied and audited (source ``opcua``). Bound beyond loopback, an
anonymous client reads but cannot call a method; a logged-in user can.

Every server is on 127.0.0.1 or 0.0.0.0 with an ephemeral port, reached through 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import UserRole
from asyncua.ua.uaerrors import BadUserAccessDenied, UaStatusCodeError
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller.opcua import BatchOpcUaServer, may_call, serve_opcua
from controller.opcua.space import FUNCTIONAL_UNIT, NAMESPACE_URI, program_id
from controller.recipe.station import load_station
from controller.records.columns import trace_columns
from controller.records.folder import BatchFolder
from controller.run.clock import VirtualClock
from controller.run.commands import CommandQueue
from controller.run.snapshot import Snapshot
from controller.session import Serving, run_batch
from controller.web.server import serve_batch
from tests.integration.helpers import in_process
from tests.web import make_runner

pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("opcua")]
T = TypeVar("T")

RECIPE = '''schema_version = 1
name = "T"
sample = "UATEST"

[[stages]]
name = "load"
atmosphere = "Ar"

[[stages.steps]]
kind = "operator"
message = "Load the boat."
opens_tube = true
flows_sccm = {Ar = 40}

[[stages.steps.fields]]
name = "boat"
role = "note"
kind = "text"

[[stages.steps]]
kind = "end"
'''


def client_side(work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """Run ``work`` (an asyncua client session) on a thread of its own: the client shares
    nothing with the scan loop, as a SCADA client on another machine would."""
    return asyncio.to_thread(asyncio.run, work())  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the running batch until ``condition`` holds (no real sleep)."""
    for _ in range(2_000_000):
        if condition():
            return
        await asyncio.sleep(0)  # noqa: TID251 - one loop turn for the batch to run
    raise AssertionError(f"never: {what}")


class States:
    """A subscription handler: every State value seen."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.changed = asyncio.Event()

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.seen.append(val)
        self.changed.set()


async def wait_for_state(states: States, wanted: str) -> None:
    while wanted not in states.seen:
        states.changed.clear()
        await asyncio.wait_for(states.changed.wait(), 30)


async def test_a_plain_client_browses_reads_subscribes_and_holds_and_resumes(
        tmp_path: Path) -> None:
    ip = in_process(tmp_path, RECIPE)
    batches = tmp_path / "batches"
    servers: list[BatchOpcUaServer] = []

    def opcua(serving: Serving) -> BatchOpcUaServer:
        servers.append(serve_opcua()(serving))
        return servers[-1]

    run = asyncio.create_task(run_batch(
        plan=ip.plan, station=ip.station, recipe_text=ip.recipe_text,
        station_text=ip.station_text, clock=ip.clock, batches_dir=batches, operator="ann",
        built=ip.built, auto_confirm=False, serve=[serve_batch(), opcua]))
    # running, and its values in the address space (a client connecting earlier would
    # see the nodes' initial empty values first)
    await until(lambda: bool(servers) and servers[0].feed.frame is not None
                and str(servers[0].feed.frame.run.phase) == "running"
                and servers[0].published_cycle > 0, "waiting to load")
    url = servers[0].url

    async def session() -> dict[str, Any]:
        async with Client(url) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            furnace = await client.nodes.objects.get_child(f"{idx}:Furnace")
            components = await furnace.get_child(f"{idx}:Components")
            names = {(await n.read_browse_name()).Name for n in await components.get_children()}
            program = await furnace.get_child([f"{idx}:FunctionalUnit",
                                               f"{idx}:ActiveProgram"])
            variables = {(await n.read_browse_name()).Name
                         for n in await program.get_children()}
            wanted = ["CurrentRuntimeS", "Cycle", "State", "StepNumber", "SetpointC",
                      "FurnaceC", "OutputPct", "Flow_Ar_sccm", "Alarms", "EstimatedRuntimeS"]
            read = dict(zip(wanted, await client.read_values(  # one Read: one cycle
                [client.get_node(ua.NodeId(program_id(w), idx)) for w in wanted]),
                strict=True))

            states = States()
            sub = await client.create_subscription(50, states)
            await sub.subscribe_data_change(client.get_node(
                ua.NodeId(program_id("State"), idx)))
            unit = client.get_node(ua.NodeId(FUNCTIONAL_UNIT, idx))
            held = await unit.call_method(f"{idx}:Hold", "ann", "checking the boat")
            await wait_for_state(states, "held")
            with pytest.raises(UaStatusCodeError) as refused:  # a resume needs a reason
                await unit.call_method(f"{idx}:Resume", "ann", "")
            resumed = await unit.call_method(f"{idx}:Resume", "ann", "boat is fine")
            await wait_for_state(states, "running")
            confirmed = await unit.call_method(f"{idx}:Confirm", "bob", "", "boat=B7")
            await sub.delete()
            return {"components": names, "variables": variables, "read": read,
                    "held": held, "refused": refused.value, "resumed": resumed,
                    "confirmed": confirmed, "states": states.seen}

    seen = await client_side(session)
    result = await run

    assert {"TemperatureController", "MFC_Ar", "MFC_N2", "MFC_air"} <= seen["components"]
    assert {"State", "Stage", "StepName", "StepNumber", "SetpointC", "FurnaceC",
            "CurrentRuntimeS", "EstimatedRuntimeS", "Alarms"} <= seen["variables"]
    assert seen["held"][::2] == ["applied", "held"]
    assert "BadInvalidArgument" in type(seen["refused"]).__name__
    assert seen["resumed"][::2] == ["applied", "running"]
    assert seen["confirmed"][0] == "applied"
    assert seen["states"][0] == "running"
    assert "held" in seen["states"]

    # the values read are the trace row of the same cycle
    folder = BatchFolder.open(result.batch_dir)
    read = seen["read"]
    [row] = [r for r in folder.read_trace().records()
             if float(r["elapsed_s"]) == round(read["CurrentRuntimeS"], 3)]
    assert row["state"] == read["State"]
    assert int(row["step"]) == read["StepNumber"]
    for column, name in (("setpoint_c", "SetpointC"), ("furnace_c", "FurnaceC"),
                         ("output_pct", "OutputPct"), ("flow_Ar_sccm", "Flow_Ar_sccm")):
        assert float(row[column]) == pytest.approx(read[name], abs=0.0011), column
    assert read["EstimatedRuntimeS"] >= read["CurrentRuntimeS"]

    commands = [a for a in folder.read_audit() if a["event"] == "operator_command"]
    applied = [(c["trigger"], c["operator"], c["reason"], c["source"]) for c in commands
               if c["status"] == "applied"]
    assert applied == [("hold", "ann", "checking the boat", "opcua"),
                       ("resume", "ann", "boat is fine", "opcua"),
                       ("confirm", "bob", "", "opcua")]
    confirmed = [a for a in folder.read_audit() if a["event"] == "operator_confirmed"]
    assert [c["data"] for c in confirmed] == [{"boat": "B7"}]
    servers_audited = [a for a in folder.read_audit() if a["event"] == "control_server"]
    assert [a["protocol"] for a in servers_audited] == ["http", "opc.tcp"]


def test_only_a_logged_in_user_calls_methods_beyond_loopback() -> None:
    assert may_call(UserRole.Anonymous, loopback=True)
    assert not may_call(UserRole.Anonymous, loopback=False)
    assert may_call(UserRole.User, loopback=False)


def _draining(folder: Path) -> Serving:
    """A running batch's serving whose commands are applied as they arrive (the scan
    cycle's part, at once), with no scan loop."""
    station, _ = load_station(None)
    runner = make_runner(station)

    class Draining(CommandQueue):
        def submit(self, cmd: Any) -> Any:
            fut = super().submit(cmd)
            asyncio.get_running_loop().call_soon(
                lambda: self.apply_due(runner, at_checkpoint=True))
            return fut

    queue = Draining(lambda: str(runner.phase))
    return Serving(folder, station, runner, queue, VirtualClock(), trace_columns(station), 5.0)


async def test_anonymous_clients_only_read_on_a_server_bound_beyond_loopback(
        tmp_path: Path) -> None:
    serving = _draining(tmp_path)
    station, runner = serving.station, serving.runner
    server = BatchOpcUaServer(serving, host="0.0.0.0", port=0, passwords={"ann": "s3cret"})
    async with server as (_, port):
        url = f"opc.tcp://127.0.0.1:{port}/furnace/"

        async def anonymous() -> tuple[str, type[BaseException] | None]:
            async with Client(url) as client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                name = await client.get_node(ua.NodeId("Furnace.StationName", idx)).read_value()
                unit = client.get_node(ua.NodeId(FUNCTIONAL_UNIT, idx))
                try:
                    await unit.call_method(f"{idx}:Hold", "mallory", "")
                except UaStatusCodeError as exc:
                    return name, type(exc)
                return name, None

        async def logged_in(password: str) -> list[str]:
            return (await hold_as(url, "ann", password))[0]

        server.observe(runner_snapshot(station), runner)
        name, refused = await client_side(anonymous)
        assert name == station.name
        assert refused is BadUserAccessDenied
        assert str(runner.phase) == "running"
        with pytest.raises(UaStatusCodeError):
            await client_side(lambda: logged_in("wrong"))
        assert str(runner.phase) == "running"
        assert (await client_side(lambda: logged_in("s3cret")))[0] == "applied"
        assert str(runner.phase) == "held"


async def hold_as(url: str, user: str, password: str) -> tuple[list[str], bytes | None]:
    """Log in as ``user`` and call Hold; the method's result and the certificate the server
    presents (None: it has none)."""
    client = Client(url)
    client.set_user(user)
    client.set_password(password)
    async with client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        unit = client.get_node(ua.NodeId(FUNCTIONAL_UNIT, idx))
        out: list[str] = await unit.call_method(f"{idx}:Hold", user, "a look")
        endpoints = await client.get_endpoints()
    return out, endpoints[0].ServerCertificate


class Relay:
    """A TCP relay on 127.0.0.1 in front of the server that keeps every byte either way:
    what someone on the network between a client and the server would see."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen = bytearray()

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    self.seen += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


async def test_a_users_password_never_crosses_the_network_in_clear(tmp_path: Path) -> None:
    """With users, the server has a certificate of its own: on the endpoint without
    security the client encrypts the password with it, so the bytes on the wire never hold
    it, and the login still works; a client may also choose a signed-and-encrypted channel.
    The certificate is kept: a restarted server presents the same one."""
    password = "correct-horse-battery-staple"
    serving = _draining(tmp_path)
    server = BatchOpcUaServer(serving, host="0.0.0.0", port=0, passwords={"ann": password})
    async with server as (_, port):
        relay = Relay(port)
        async with relay as relay_port:

            result, certificate = await client_side(
                lambda: hold_as(f"opc.tcp://127.0.0.1:{relay_port}/furnace/", "ann", password))
        assert result[0] == "applied"
        assert str(serving.runner.phase) == "held"
        assert relay.seen  # the session went through the relay
        for encoding in ("utf-8", "utf-16-le"):
            assert password.encode(encoding) not in relay.seen
        assert certificate is not None

        async def modes() -> set[str]:
            async with Client(f"opc.tcp://127.0.0.1:{port}/furnace/") as client:
                return {str(e.SecurityMode.name) for e in await client.get_endpoints()}

        assert {"None_", "Sign", "SignAndEncrypt"} <= await client_side(modes)

        async def encrypted_channel() -> str:
            key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
            await setup_self_signed_certificate(
                key, cert, "urn:furnace:test-client", "localhost",
                [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"})
            client = Client(f"opc.tcp://127.0.0.1:{port}/furnace/")
            client.application_uri = "urn:furnace:test-client"
            await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
            client.set_user("ann")
            client.set_password(password)
            async with client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                value: str = await client.get_node(
                    ua.NodeId("Furnace.StationName", idx)).read_value()
                return value

        assert await client_side(encrypted_channel) == serving.station.name

    again = BatchOpcUaServer(_draining(tmp_path), host="0.0.0.0", port=0,
                             passwords={"ann": password})
    async with again as (_, port):

        async def certificate_now() -> bytes | None:
            async with Client(f"opc.tcp://127.0.0.1:{port}/furnace/") as client:
                found: bytes | None = (await client.get_endpoints())[0].ServerCertificate
                return found

        assert await client_side(certificate_now) == certificate


def runner_snapshot(station: Any) -> Snapshot:
    """A snapshot of nothing read (every device stale), for a frame to publish."""
    return Snapshot(t_s=0.0, furnace=None,
                    flows=MappingProxyType(dict.fromkeys(m.gas for m in station.mfc)))
