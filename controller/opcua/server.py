"""The station's OPC UA server (asyncua) for a running batch: on its own thread with its own
event loop, like the web server, so that nothing a client does can delay the scan cycle.

How it meets the scan loop (the same seams as ``controller.web.server``):
- state: the scan loop publishes a frozen ``LiveFrame`` each cycle into this server's own
  ``LiveFeed`` (one reference swap); the server's loop checks for a new frame every
  ``PUBLISH_S`` real seconds and writes every variable from it in one pass, so a client
  sees at most one update per scan cycle and never a half-written one;
- methods: Hold, Resume, Stop, Abort and Confirm build a ``Command`` (source ``opcua``)
  that ``CommandBridge`` hands to the scan loop's ``CommandQueue``: the same validation,
  the same audit, the scan cycle's verdict as the method's result.

Who may call methods (``may_call``): anyone on a server bound to loopback (only this
machine's users can reach it, as with ``furnace ctl``); beyond loopback, only a user who
logged in with a name and password from the station's ``[opcua]`` users. Anonymous
sessions always read, browse and subscribe. With users, the server has a certificate of its
own (``pki``): a password is sent encrypted with it, on every endpoint, and clients may also
choose signed or signed-and-encrypted channels (Basic256Sha256). Not here: the address
space's names and values (``space``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from asyncua import Server, ua
from asyncua.crypto.permission_rules import (
    USER_TYPES,
    PermissionRuleset,
    User,
    UserRole,
)
from asyncua.server.user_managers import UserManager

from controller.opcua.pki import server_identity
from controller.opcua.space import (
    FUNCTIONAL_UNIT,
    METHODS,
    NAMESPACE_URI,
    Variable,
    identity,
    objects,
    values,
    variables,
)
from controller.recipe.plan import summarize
from controller.run.commands import Command, CommandResult, Status, Trigger
from controller.web.feed import LiveFeed
from controller.web.server import CommandBridge, EtaFactory, is_loopback
from controller.web.state import planned_eta
from drivers.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from controller.run.handle import RecipeRunner
    from controller.run.snapshot import Snapshot
    from controller.session import Serving

__all__ = ["BatchOpcUaServer", "may_call", "parse_data", "serve_opcua"]

logger = logging.getLogger(__name__)

PUBLISH_S: Final = 0.1  # real seconds between looks at the published frame
START_TIMEOUT_S: Final = 60.0  # asyncua loads the standard address space (~2 s of CPU)
STOP_TIMEOUT_S: Final = 5.0
_CALL: Final = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)
_WRITE: Final = ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)
_READ_ONLY: Final = frozenset(ua.NodeId(i) for i in USER_TYPES) - {_CALL, _WRITE}
_TYPES: Final = {"double": ua.VariantType.Double, "string": ua.VariantType.String,
                 "int": ua.VariantType.Int32, "strings": ua.VariantType.String}


def may_call(role: UserRole, *, loopback: bool) -> bool:
    """Whether a session of ``role`` may call methods: a logged-in user always; an
    anonymous one only on a server bound to loopback."""
    return role in (UserRole.User, UserRole.Admin) or loopback


class _Rules(PermissionRuleset):  # type: ignore[misc]
    """asyncua's per-request check: reading, browsing and subscribing for every session;
    method calls as ``may_call`` says; no writes (every variable is read-only anyway)."""

    def __init__(self, *, loopback: bool) -> None:
        self.loopback = loopback

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if action_type_id == _CALL:
            allowed = may_call(user.role, loopback=self.loopback)
            if not allowed:
                logger.warning("OPC UA method call refused: anonymous session beyond loopback")
            return allowed
        return action_type_id in _READ_ONLY


class _Users(UserManager):  # type: ignore[misc]
    """Anonymous sessions are read-only users; a name and password must match."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._passwords = dict(passwords)

    def get_user(self, iserver: Any, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:
        if username is None:  # anonymous (only anonymous and user-name tokens are offered)
            return User(role=UserRole.Anonymous)
        expected = self._passwords.get(username or "")
        if expected is not None and password is not None and hmac.compare_digest(
                password.encode(), expected.encode()):
            return User(role=UserRole.User, name=username)
        logger.warning("OPC UA login refused for %r", username)
        return None  # asyncua answers BadUserAccessDenied


def parse_data(text: str) -> tuple[tuple[str, str], ...]:
    """Confirm's step data, ``k=v;k=v`` (empty: none), as (name, text) pairs. Raises
    ``ConfigurationError`` for an item without ``=``; the names and values are checked by
    ``Command.validate`` and the runner, as for every other source."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigurationError(f"{item[:40]!r} is not NAME=VALUE", field="Data")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def _argument(name: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(ua.ObjectIds.String)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(name)
    return arg


def _host_name(host: str) -> str:
    """The name clients reach a server bound to ``host`` by, for its certificate: the
    machine's name for a wildcard address."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        return socket.gethostname()
    return host


class BatchOpcUaServer:
    """One running batch's OPC UA server (``session.BatchServer``). ``async with`` starts
    it (its thread bound and serving) and yields the bound address; leaving stops it."""

    protocol = "opc.tcp"

    def __init__(self, serving: Serving, *, host: str = "127.0.0.1", port: int = 0,
                 passwords: Mapping[str, str] | None = None, eta: EtaFactory | None = None,
                 on_ready: Callable[[str], None] | None = None) -> None:
        self.serving = serving
        self.host = host
        self.port = port
        self.loopback = is_loopback(host)
        self.passwords = dict(passwords or {})
        self.feed = LiveFeed(serving.columns, serving.runner, serving.clock.wall)
        self.eta = (eta or planned_eta)(summarize(serving.runner.plan, serving.station),
                                        serving.runner)
        self.on_ready = on_ready
        self.address: tuple[str, int] = (host, port)
        self._bridge: CommandBridge | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.published_cycle = 0  # the scan cycle whose values the address space holds
        self._error: BaseException | None = None

    # ------------------------------------------------------------ scan loop side
    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        """The scan loop's observer: publish this cycle (one reference swap)."""
        self.feed.observe(snap, runner)

    def trace_row(self, row: Sequence[object]) -> None:
        """Trace rows are not served over OPC UA (history stays in the batch folder)."""

    @property
    def url(self) -> str:
        """``opc.tcp://HOST:PORT/furnace/`` of the bound server."""
        host, port = self.address
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"opc.tcp://{f'[{shown}]' if ':' in shown else shown}:{port}/furnace/"

    async def __aenter__(self) -> tuple[str, int]:
        s = self.serving
        self._bridge = CommandBridge(s.commands, reply_timeout_s=s.reply_timeout_s)
        if not self.loopback:
            logger.warning("OPC UA on %s: reachable from other machines; methods need one of "
                           "the station's [opcua] users (%d configured)", self.host,
                           len(self.passwords))
        self._thread = threading.Thread(target=self._run, name="furnace-opcua", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, START_TIMEOUT_S)
        if self._error is not None or not self._ready.is_set():
            await self.__aexit__()
            reason = self._error if self._error is not None else "it did not start in time"
            raise ConfigurationError(f"cannot serve OPC UA on {self.host}:{self.port} "
                                     f"({reason})", field="--opcua")
        logger.info("OPC UA served on %s", self.url)
        if self.on_ready is not None:
            self.on_ready(self.url)
        return self.address

    async def __aexit__(self, *exc: object) -> None:
        if self._bridge is not None:
            self._bridge.close()
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("the OPC UA server did not stop within %g s", STOP_TIMEOUT_S)

    # ------------------------------------------------------------ the server's thread
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # the batch goes on without its OPC UA server
            self._error = exc
            if self._ready.is_set():
                logger.exception("the OPC UA server stopped")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = Server(user_manager=_Users(self.passwords))
        await server.init()
        server.set_server_name(f"furnace {self.serving.station.name}")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        server.set_endpoint(f"opc.tcp://{shown}:{self.port}/furnace/")
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self.passwords:  # a password never crosses the network in clear
            identity_files = await asyncio.to_thread(
                server_identity, self.serving.station.name, _host_name(self.host))
            await server.set_application_uri(identity_files.application_uri)
            await server.load_certificate(str(identity_files.certificate))
            await server.load_private_key(str(identity_files.private_key))
            logger.info("OPC UA certificate %s (passwords are sent encrypted with it)",
                        identity_files.certificate)
            policies += [ua.SecurityPolicyType.Basic256Sha256_Sign,
                         ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        server.set_security_policy(policies, permission_ruleset=_Rules(loopback=self.loopback))
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken]
                                   if self.passwords else [ua.AnonymousIdentityToken])
        idx = await server.register_namespace(NAMESPACE_URI)
        nodes = await self._build(server, idx)
        await server.start()
        try:
            self.address = (str(server.bserver.hostname), int(server.bserver.port))
            self._ready.set()
            await self._publish_until_stopped(server, nodes)
        finally:
            await server.stop()

    async def _build(self, server: Server, idx: int) -> dict[str, tuple[ua.NodeId, Variable]]:
        station = self.serving.station
        made: dict[str, Any] = {"": server.nodes.objects}
        for node_id in objects(station):
            parent, _, name = node_id.rpartition(".")
            made[node_id] = await made[parent].add_object(ua.NodeId(node_id, idx),
                                                           ua.QualifiedName(name, idx))
        nodes: dict[str, tuple[ua.NodeId, Variable]] = {}
        fixed = identity(self.serving.runner, station, batch_id=self.serving.batch_dir.name)
        for var in variables(station):
            initial = ua.Variant(fixed.get(var.node_id, [] if var.kind == "strings" else
                                 {"double": float("nan"), "string": "", "int": 0}[var.kind]),
                                 _TYPES[var.kind])
            node = await made[var.parent].add_variable(ua.NodeId(var.node_id, idx),
                                                       ua.QualifiedName(var.name, idx), initial)
            if var.unit:
                await node.write_attribute(ua.AttributeIds.Description, ua.DataValue(
                    ua.Variant(ua.LocalizedText(var.unit), ua.VariantType.LocalizedText)))
            nodes[var.node_id] = (node.nodeid, var)
        unit = made[FUNCTIONAL_UNIT]
        for name, args in METHODS.items():
            await unit.add_method(ua.NodeId(f"{FUNCTIONAL_UNIT}.{name}", idx),
                                  ua.QualifiedName(name, idx), self._method(name),
                                  [_argument(a) for a in args],
                                  [_argument(a) for a in ("Status", "Message", "State")])
        return nodes

    async def _publish_until_stopped(self, server: Server,
                                     nodes: dict[str, tuple[ua.NodeId, Variable]]) -> None:
        stop = self._stop or asyncio.Event()
        batch_id = self.serving.batch_dir.name
        last = 0
        while not stop.is_set():
            frame = self.feed.frame
            if frame is not None and frame.cycle != last:
                last = frame.cycle
                current = values(frame, self.serving.runner, self.serving.station, self.eta,
                                 batch_id=batch_id)
                # One pass: asyncua's writes only queue subscription notices and never
                # suspend, so a client's Read sees every variable from the same cycle.
                for node_id, (ua_id, var) in nodes.items():
                    await server.write_attribute_value(ua_id, ua.DataValue(
                        ua.Variant(current[node_id], _TYPES[var.kind])))
                self.published_cycle = last
            try:  # real time on this (the server's) loop
                await asyncio.wait_for(stop.wait(), PUBLISH_S)
            except TimeoutError:
                continue

    def _method(self, name: str) -> Callable[..., Any]:
        trigger: Trigger = name.lower()  # type: ignore[assignment]

        async def call(parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
            del parent
            text = [str(a.Value) if a.Value is not None else "" for a in args]
            operator, reason, data = (text + ["", "", ""])[:3]
            try:
                cmd = Command(trigger=trigger, operator=operator, reason=reason,
                              source="opcua", data=parse_data(data)).validate()
            except ConfigurationError as exc:  # bad input: the queue would refuse it too
                return _result(ua.StatusCodes.BadInvalidArgument, "refused", str(exc), "")
            if self._bridge is None:
                return _result(ua.StatusCodes.BadInvalidState, "refused", "not serving", "")
            logger.info("OPC UA %s from %s", trigger, operator, extra=cmd.audit_fields())
            result = await self._bridge.post(cmd)
            return _result(_status_code(result), str(result.status), result.message,
                           result.state)
        return call


def _status_code(result: CommandResult) -> int:
    if result.status is not Status.REFUSED:
        return ua.StatusCodes.Good  # type: ignore[no-any-return]
    if result.invalid:  # the step data did not fit the operator step
        return ua.StatusCodes.BadInvalidArgument  # type: ignore[no-any-return]
    return ua.StatusCodes.BadInvalidState  # type: ignore[no-any-return]


def _result(code: int, status: str, message: str, state: str) -> ua.CallMethodResult:
    res = ua.CallMethodResult()
    res.StatusCode = ua.StatusCode(code)
    res.OutputArguments = [ua.Variant(v, ua.VariantType.String) for v in (status, message,
                                                                          state)]
    return res


def serve_opcua(*, host: str = "127.0.0.1", port: int = 0,
                passwords: Mapping[str, str] | None = None, eta: EtaFactory | None = None,
                on_ready: Callable[[str], None] | None = None
                ) -> Callable[[Serving], BatchOpcUaServer]:
    """The ``serve`` factory a session takes: an OPC UA server on (host, port) for the batch
    it is given (port 0: an ephemeral port)."""
    def serve(serving: Serving) -> BatchOpcUaServer:
        return BatchOpcUaServer(serving, host=host, port=port, passwords=passwords, eta=eta,
                                on_ready=on_ready)
    return serve
