"""The dashboard's routes (Starlette): the live page of a running batch, its state, its trace
rows over a WebSocket and its command endpoint (``POST /api/commands``, also what ``furnace
ctl`` uses); and the pages of finished batches (list, summary, report, TGA overlay, CSV).

Everything here runs on the web server's own thread and event loop. It reads the published
``LiveFeed`` and posts commands through ``post`` (which hands them to the scan loop's queue);
it never touches a device or the scan loop's objects. Not here: binding, the thread, the
control file (``server``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from controller.operator.control import (
    LOOPBACK_NAMES,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT_S,
    RequestError,
    parse_command,
    token_matches,
)
from controller.recipe.summary import PlanSummary
from controller.records.audit import RecordError
from controller.run.clock import WallClock
from controller.run.commands import Command, CommandResult
from controller.web.batches import BatchShelf
from controller.web.feed import LiveFeed, Row, json_value
from controller.web.state import EtaSource, state_json
from drivers.errors import ConfigurationError

__all__ = ["LiveBatch", "make_app"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
BACKLOG_ROWS = 3000  # rows a new WebSocket client gets at most (thinned)
PUSH_ROWS = 600  # rows per push at most (thinned; a dry run makes thousands a second)
PUSH_INTERVAL_S = 0.5  # real seconds between pushes
AUDIT_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """A running batch as the web app sees it: what is published, the plan's summary, the
    ETA source, its folder, its token and how to post a command (awaitable on the web
    server's loop; resolved by the scan cycle)."""

    feed: LiveFeed
    summary: PlanSummary
    eta: EtaSource
    batch_dir: Path
    token: str
    post: Callable[[Command], Awaitable[CommandResult]]


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc, lower case, no port."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _thin(rows: list[tuple[int, Row]], most: int) -> list[tuple[int, Row]]:
    """At most ``most`` rows, evenly spaced, the last always kept."""
    if len(rows) <= most:
        return rows
    step = -(-len(rows) // most)
    kept = rows[::step]
    if kept[-1] is not rows[-1]:
        kept.append(rows[-1])
    return kept


def _rows_json(rows: list[tuple[int, Row]]) -> list[list[object]]:
    return [[json_value(v) for v in row] for _, row in rows]


def make_app(*, live: LiveBatch | None, shelf: BatchShelf | None,
             allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES,
             fleet: Callable[[], list[dict[str, Any]]] | None = None) -> Starlette:
    """The Starlette app. ``allowed_hosts``: the host names a ``Host`` header (every
    request) and an ``Origin`` (commands, the WebSocket) may carry; None accepts any Host
    (a server bound to every address), though an Origin must still match the Host.
    ``fleet``: the lab overview's latest reading of its stations (``furnace web --fleet``;
    a reference read, never I/O on this thread)."""

    def host_ok(host: str | None) -> bool:
        return allowed_hosts is None or _host_name(host or "") in allowed_hosts

    def origin_ok(origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser (furnace ctl, curl): the token decides
        netloc = urlsplit(origin).netloc
        if not netloc:
            return False  # "null" (a sandboxed or file: page)
        name = _host_name(netloc)
        if allowed_hosts is not None:
            return name in allowed_hosts
        return name == _host_name(host or "")

    def refuse(status_code: int, message: str) -> JSONResponse:
        return JSONResponse(RequestError(status_code, message).reply(), status_code)

    def needs_live() -> LiveBatch:
        if live is None:
            raise _NotFoundError
        return live

    # ------------------------------------------------------------------ pages
    async def index(request: Request) -> Response:
        if live is None:
            return RedirectResponse("/fleet" if fleet is not None else "/batches")
        return FileResponse(STATIC / "live.html")

    async def fleet_page(request: Request) -> Response:
        if fleet is None:
            raise _NotFoundError
        return FileResponse(STATIC / "fleet.html")

    async def api_fleet(request: Request) -> Response:
        if fleet is None:
            raise _NotFoundError
        return JSONResponse(fleet())

    async def batches_page(request: Request) -> Response:
        return FileResponse(STATIC / "batches.html")

    # ------------------------------------------------------------------ live API
    async def api_state(request: Request) -> Response:
        lv = needs_live()
        return JSONResponse(state_json(lv.feed, lv.summary, lv.eta,
                                       batch_id=lv.batch_dir.name))

    def audit_tail(lv: LiveBatch, n: int) -> list[dict[str, Any]]:
        path = lv.batch_dir / "audit.jsonl"
        try:
            with path.open("rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(size - AUDIT_TAIL_BYTES, 0))
                lines = f.read().splitlines()[1 if size > AUDIT_TAIL_BYTES else 0:]
        except OSError:
            return []
        records: list[dict[str, Any]] = []
        for line in lines[-n:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append({k: v for k, v in rec.items()  # the chain's own fields out
                                if "hash" not in k and not k.startswith("trace_")
                                and k not in ("state", "seq", "prev")})
        return records

    async def api_audit(request: Request) -> Response:
        lv = needs_live()
        try:
            n = min(max(int(request.query_params.get("n", "20")), 1), 200)
        except ValueError:
            n = 20
        return JSONResponse(await asyncio.to_thread(audit_tail, lv, n))

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_REQUEST_BYTES):
            raise RequestError(413, f"request larger than {MAX_REQUEST_BYTES} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_REQUEST_BYTES:
                        raise RequestError(413,
                                           f"request larger than {MAX_REQUEST_BYTES} bytes")
        except TimeoutError:
            raise RequestError(408, f"no complete request within {REQUEST_TIMEOUT_S:g} s"
                               ) from None
        return bytes(body)

    async def api_commands(request: Request) -> Response:
        if live is None:
            return refuse(404, "no batch is running here")
        if not (host_ok(request.headers.get("host"))
                and origin_ok(request.headers.get("origin"), request.headers.get("host"))):
            logger.warning("command refused: foreign Host or Origin")
            return refuse(403, "foreign Host or Origin")
        if not token_matches(request.headers.get("authorization"), live.token):
            logger.warning("command with a missing or wrong token refused")
            return refuse(401, "wrong token")
        try:
            cmd = parse_command(await read_body(request))
        except RequestError as exc:
            return JSONResponse(exc.reply(), exc.status_code)
        logger.info("web command %s from %s", cmd.trigger, cmd.operator,
                    extra=cmd.audit_fields())
        result = await live.post(cmd)
        return JSONResponse(result.to_wire())

    async def trace_ws(ws: WebSocket) -> None:
        if live is None or not (host_ok(ws.headers.get("host"))
                                and origin_ok(ws.headers.get("origin"), ws.headers.get("host"))):
            await ws.close(code=1008)
            return
        await ws.accept()
        feed = live.feed
        clock = WallClock()  # real time on this (the web server's) loop
        try:
            backlog = _thin(feed.backlog(), BACKLOG_ROWS)
            last = backlog[-1][0] if backlog else 0
            await ws.send_json({"columns": list(feed.columns), "rows": _rows_json(backlog)})
            while True:
                await clock.sleep(PUSH_INTERVAL_S)
                rows = feed.rows_after(last)
                if rows:
                    last = rows[-1][0]
                    await ws.send_json({"rows": _rows_json(_thin(rows, PUSH_ROWS))})
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    # ------------------------------------------------------------------ batches
    def needs_shelf() -> BatchShelf:
        if shelf is None:
            raise _NotFoundError
        return shelf

    def ids(request: Request) -> list[str]:
        wanted = request.query_params.getlist("id")
        return [i for i in wanted if i][:20]

    async def api_batches(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(needs_shelf().batches))

    async def api_summary(request: Request) -> Response:
        try:
            summary = await asyncio.to_thread(needs_shelf().summary,
                                              request.path_params["batch_id"])
        except (KeyError, ConfigurationError, RecordError):
            return refuse(404, "no such batch")
        return JSONResponse(summary)

    async def api_report(request: Request) -> Response:
        try:
            path = await asyncio.to_thread(needs_shelf().report_png,
                                           request.path_params["batch_id"])
        except KeyError:
            return refuse(404, "no such batch")
        except (ConfigurationError, RecordError) as exc:
            return refuse(422, str(exc))
        return FileResponse(path, media_type="image/png")

    async def api_overlay(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(needs_shelf().overlay, ids(request)))

    async def api_overlay_csv(request: Request) -> Response:
        text = await asyncio.to_thread(needs_shelf().overlay_csv, ids(request))
        return PlainTextResponse(text, media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="tga-overlay.csv"'})

    async def not_found(request: Request, exc: Exception) -> Response:
        return refuse(404, "not here")

    app = Starlette(routes=[
        Route("/", index),
        Route("/batches", batches_page),
        Route("/fleet", fleet_page),
        Route("/api/fleet", api_fleet),
        Route("/api/state", api_state),
        Route("/api/audit", api_audit),
        Route("/api/commands", api_commands, methods=["POST"]),
        WebSocketRoute("/ws/trace", trace_ws),
        Route("/api/batches", api_batches),
        Route("/api/batches/{batch_id}/summary", api_summary),
        Route("/api/batches/{batch_id}/report.png", api_report),
        Route("/api/overlay", api_overlay),
        Route("/api/overlay.csv", api_overlay_csv),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], exception_handlers={_NotFoundError: not_found},
        middleware=[Middleware(_HostCheck, host_ok=host_ok)])
    return app


class _HostCheck:
    """Refuses an HTTP request whose ``Host`` is not one this server answers to (DNS
    rebinding: a web page on another name that resolves to 127.0.0.1)."""

    def __init__(self, app: ASGIApp, host_ok: Callable[[str | None], bool]) -> None:
        self.app = app
        self.host_ok = host_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"),
                        None)
            if not self.host_ok(host):
                response = JSONResponse(RequestError(403, "foreign Host").reply(), 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _NotFoundError(Exception):
    """This server has no live batch, or no batches folder, for the route asked for."""
