"""The HTTP server of a running batch (and of ``furnace web``): uvicorn on its own thread with
its own event loop, so that nothing it does can delay the scan cycle.

How the two loops meet:
- state: the scan loop publishes an immutable ``LiveFrame`` each cycle and appends its trace
  row to the ``LiveFeed`` (``BatchWebServer.observe``, ``trace_row``); the web thread reads;
- commands: a request on the web thread is handed to the scan loop with
  ``asyncio.run_coroutine_threadsafe``; there ``CommandQueue.submit`` queues it and the scan
  cycle resolves it; the verdict comes back as the HTTP reply (``CommandBridge``).

Not here: the routes (``app``), what the state means (``state``), the protocol's rules and
the control file (``controller.operator.control``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from controller.operator.control import (
    LOOPBACK,
    LOOPBACK_NAMES,
    REQUEST_TIMEOUT_S,
    ControlFile,
    new_token,
)
from controller.recipe.plan import summarize
from controller.recipe.summary import PlanSummary
from controller.run.commands import Command, CommandQueue, CommandResult, Status
from controller.web.app import LiveBatch, make_app
from controller.web.batches import BatchShelf
from controller.web.feed import LiveFeed
from controller.web.state import EtaSource, planned_eta
from drivers.errors import ConfigurationError, FurnaceError

if TYPE_CHECKING:
    from controller.run.handle import RecipeRunner
    from controller.run.snapshot import Snapshot
    from controller.session import Serving

__all__ = ["BatchWebServer", "CommandBridge", "WebServer", "is_loopback", "parse_web",
           "serve_batch"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 5.0

EtaFactory = Callable[[PlanSummary, "RecipeRunner"], EtaSource]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.strip("[]").lower() in LOOPBACK_NAMES or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_web(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``8080``, ``0.0.0.0:8080``, ``[::1]:8080``) as (host, port); the
    host defaults to 127.0.0.1. Raises ``ValueError`` with a one-line reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = LOOPBACK, text
    host = host.strip("[]") or LOOPBACK
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"expected [HOST:]PORT with a TCP port from 0 to 65535, got {text!r}")
    return host, port


class _Http(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with one more deadline: a connection that sends nothing
    within ``REQUEST_TIMEOUT_S`` is closed (uvicorn only times out idle keep-alive
    connections after a response), so idle connections cannot pile up."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            REQUEST_TIMEOUT_S, self.timeout_keep_alive_handler)


class WebServer:
    """Serves ``app`` on (host, port) from a thread of its own (its own event loop).

    ``start`` binds at once (so a port in use is an error before anything moves, and port 0
    gives the ephemeral port) and returns the address; ``stop`` asks uvicorn to finish (at
    most ``STOP_TIMEOUT_S``: open WebSockets are closed, requests in flight answered)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] = (host, port)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot serve on {self.host}:{self.port} "
                                     f"({exc.strerror or exc})", field="--web") from None
        return sock

    def start(self) -> tuple[str, int]:
        """Bind and start serving; returns the bound (host, port). Raises
        ``ConfigurationError`` if the address cannot be bound."""
        sock = self._bind()
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        config = uvicorn.Config(self.app, http=_Http, ws="websockets-sansio", lifespan="off",
                                log_config=None, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=int(STOP_TIMEOUT_S) - 2,
                                h11_max_incomplete_event_size=16 * 1024)
        server = uvicorn.Server(config)
        self._server = server

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except Exception:  # the batch goes on without its web server
                logger.exception("the web server stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="furnace-web", daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Ask the server to finish and wait for its thread (blocking: call it from a
        worker thread when an event loop must go on meanwhile)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("the web server did not stop within %g s", STOP_TIMEOUT_S)


class CommandBridge:
    """Hands commands from the web server's loop to the scan loop's ``CommandQueue`` and
    brings the verdict back. Create it on the scan loop."""

    def __init__(self, commands: CommandQueue, *, reply_timeout_s: float) -> None:
        self._commands = commands
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.reply_timeout_s = reply_timeout_s

    async def _decide(self, cmd: Command) -> CommandResult:
        """On the scan loop: queue ``cmd`` and wait for the scan cycle's verdict, at most
        ``reply_timeout_s`` (then ``queued``); ``refused`` if the run ends first."""
        state = self._commands.state
        if self._stopping.is_set():
            return CommandResult(cmd.id, Status.REFUSED, state(), "the run has ended")
        try:
            fut = self._commands.submit(cmd)
        except FurnaceError as exc:
            return CommandResult(cmd.id, Status.REFUSED, state(), str(exc))
        stopping = asyncio.ensure_future(self._stopping.wait())
        waiters: set[asyncio.Future[Any]] = {fut, stopping}
        try:  # never cancels fut: a repeat of this id awaits the same verdict
            await asyncio.wait(waiters, timeout=self.reply_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fut.done():
            if self._stopping.is_set():
                return CommandResult(cmd.id, Status.REFUSED, state(),
                                     "the run ended before the scan cycle acted on it")
            return CommandResult(cmd.id, Status.QUEUED, state(),
                                 "queued; the scan cycle has not acted on it yet")
        return fut.result()

    async def post(self, cmd: Command) -> CommandResult:
        """On the web server's loop: the verdict on ``cmd``."""
        try:
            done = asyncio.run_coroutine_threadsafe(self._decide(cmd), self._loop)
        except RuntimeError:  # the scan loop is closed
            return CommandResult(cmd.id, Status.REFUSED, "", "the run has ended")
        try:
            return await asyncio.wait_for(asyncio.wrap_future(done),
                                          self.reply_timeout_s + STOP_TIMEOUT_S)
        except TimeoutError:
            return CommandResult(cmd.id, Status.QUEUED, "",
                                 "queued; the scan cycle has not acted on it yet")

    def close(self) -> None:
        """The run is ending: commands still waiting are answered ``refused``."""
        self._stopping.set()


class BatchWebServer:
    """One running batch's server (``session.BatchServer``): the control API always, and
    the dashboard on the same port. ``async with`` starts it (bound, control.json
    written) and yields the address; leaving stops it and removes control.json."""

    protocol = "http"

    def __init__(self, serving: Serving, *, host: str = LOOPBACK, port: int = 0,
                 eta: EtaFactory | None = None,
                 on_ready: Callable[[str], None] | None = None) -> None:
        self.serving = serving
        self.host = host
        self.port = port
        self.feed = LiveFeed(serving.columns, serving.runner, serving.clock.wall)
        self.summary = summarize(serving.runner.plan, serving.station)
        self.eta = (eta or planned_eta)(self.summary, serving.runner)
        self.token = new_token()
        self.control = ControlFile(serving.batch_dir)
        self.on_ready = on_ready
        self._web: WebServer | None = None
        self._bridge: CommandBridge | None = None
        self._cache: tempfile.TemporaryDirectory[str] | None = None

    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        """The scan loop's observer: publish this cycle."""
        self.feed.observe(snap, runner)

    def trace_row(self, row: Sequence[object]) -> None:
        """The scan loop's trace row, for the WebSocket."""
        self.feed.row(row)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); before ``__aenter__``, the requested one."""
        return self._web.address if self._web is not None else (self.host, self.port)

    @property
    def url(self) -> str:
        """The dashboard's address with the token in the fragment (never sent over)."""
        host, port = self.address
        shown = LOOPBACK if ipaddress.ip_address(host).is_unspecified else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{port}/#token={self.token}"

    async def __aenter__(self) -> tuple[str, int]:
        s = self.serving
        self._bridge = CommandBridge(s.commands, reply_timeout_s=s.reply_timeout_s)
        self._cache = tempfile.TemporaryDirectory(prefix="furnace-web-")
        loopback = is_loopback(self.host)
        allowed: frozenset[str] | None = LOOPBACK_NAMES
        if not loopback:
            unspecified = ipaddress.ip_address(self.host.strip("[]")).is_unspecified \
                if _is_ip(self.host) else False
            allowed = None if unspecified else LOOPBACK_NAMES | {self.host.lower()}
            logger.warning("serving the batch on %s: reachable from other machines; "
                           "commands need the token", self.host)
        app = make_app(live=LiveBatch(self.feed, self.summary, self.eta, s.batch_dir,
                                      self.token, self._bridge.post),
                       shelf=BatchShelf(s.batch_dir.parent, Path(self._cache.name)),
                       allowed_hosts=allowed)
        self._web = WebServer(app, self.host, self.port)
        host, port = self._web.start()
        try:
            self.control.write(host=host, port=port, token=self.token)
        except BaseException:
            await asyncio.to_thread(self._web.stop)
            self._cache.cleanup()
            raise
        logger.info("batch served on http://%s:%d", host, port)
        if self.on_ready is not None:
            self.on_ready(self.url)
        return host, port

    async def __aexit__(self, *exc: object) -> None:
        if self._bridge is not None:
            self._bridge.close()
        if self._web is not None:
            await asyncio.to_thread(self._web.stop)
        self.control.remove(self.token)
        if self._cache is not None:
            self._cache.cleanup()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def serve_batch(*, host: str = LOOPBACK, port: int = 0, eta: EtaFactory | None = None,
                on_ready: Callable[[str], None] | None = None
                ) -> Callable[[Serving], BatchWebServer]:
    """The ``serve`` factory a session takes: a ``BatchWebServer`` on (host, port) for the
    batch it is given (port 0: an ephemeral port, announced in control.json)."""
    def serve(serving: Serving) -> BatchWebServer:
        return BatchWebServer(serving, host=host, port=port, eta=eta, on_ready=on_ready)
    return serve


def serve_batches(root: Path | None, host: str, port: int,
                  fleet: Callable[[], list[dict[str, Any]]] | None = None,
                  archive: str | None = None) -> tuple[WebServer, Any]:
    """``furnace web``: the finished batches under ``root`` (no live batch, no commands),
    with ``archive`` (a database URL) the archived ones too, and with ``fleet`` the lab
    overview. Returns the started server and the cache directory to clean up."""
    cache = tempfile.TemporaryDirectory(prefix="furnace-web-")
    allowed = LOOPBACK_NAMES if is_loopback(host) else None
    shelf = (BatchShelf(root or Path("batches"), Path(cache.name), archive)
             if root is not None or archive is not None else None)
    app = make_app(live=None, shelf=shelf, allowed_hosts=allowed, fleet=fleet)
    server = WebServer(app, host, port)
    server.start()
    return server, cache
