"""The loopback-only control server of a running batch (``furnace ctl``) and its wire
protocol. The commands themselves and their queue are ``controller/run/commands.py``.

Not here: the client (``control_client.send_command``), deciding what a command does (the
runner) or reading keys and Ctrl-C (``keys``). Nothing in this module touches a device or
blocks the scan loop.

Wire protocol (one request per TCP connection to 127.0.0.1, UTF-8, one JSON line each way)::

    → {"token": "<hex>", "id": "<uuid4 hex>", "trigger": "stop", "operator": "ann",
       "reason": "sample cracked"}
    → {..., "trigger": "confirm", "data": {"mass_after_wash_g": "0.71", "washes": "4"}}
    ← {"ok": true, "status": "applied", "state": "stopping", "message": "...", "id": "..."}

``status`` is ``queued`` (accepted; the scan cycle has not decided yet), ``applied``,
``superseded`` or ``refused``; ``ok`` is false only for ``refused``. ``reason`` may be
omitted for hold and confirm; ``data`` (confirm only, one flat object) carries the operator
step's values, checked by the runner against the step's fields (a bad value: refused with
``"invalid": true``). ``halt`` is refused on the wire: only the controller itself
posts it, on SIGTERM, SIGHUP or SIGBREAK (an operator ends a batch with stop or abort, which
keep the PC supervising the cool-down). A request line is at most ``MAX_REQUEST_BYTES``, one
JSON object nested at most once (a 2000-deep array is refused before parsing), and must arrive
within ``request_timeout_s`` (2 s) of connecting; the server answers one request per
connection and then closes it. Idle or slow connections are dropped at that deadline, and
the oldest of them first when too many wait at once, so they can never crowd out a
command from ``furnace ctl`` (which sends its line as soon as it connects).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, cast

from controller.operator.process import process_alive
from controller.records.folder import CONTROL_FILE, BatchFolder
from controller.run.commands import (
    Command,
    CommandResult,
    Status,
    Trigger,
)
from drivers.errors import ConfigurationError, FurnaceError

__all__ = [
    "LOOPBACK",
    "MAX_REQUEST_BYTES",
    "MAX_WAITING",
    "REQUEST_TIMEOUT_S",
    "ControlServer",
]

logger = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
MAX_REQUEST_BYTES: Final = 4096
REQUEST_TIMEOUT_S: Final = 2.0  # loop time from connecting to a complete request line
MAX_WAITING: Final = 256  # connections waiting for their request; beyond: drop the oldest
_REQUIRED = frozenset({"token", "id", "trigger", "operator"})
_ALLOWED = _REQUIRED | {"reason", "data"}




PostResult = CommandResult | Awaitable[CommandResult]


class ControlServer:
    """Serves ``furnace ctl`` for one batch on 127.0.0.1 (never another address), on an
    ephemeral port announced in ``<batch_dir>/control.json`` with a secret token.

    ``post`` hands each new, valid command to the scan loop and must not block: return a
    ``CommandResult`` (e.g. ``CommandQueue.post``: the reply says ``queued``) or an
    awaitable of one (``CommandQueue.submit``: the reply waits for the scan cycle's
    verdict, up to ``reply_timeout_s`` of loop time, then says ``queued``). ``state`` gives
    the runner state for those ``queued`` replies. Duplicate ids reach ``post`` once.
    Use as ``async with ControlServer(...) as server:`` or ``start()``/``stop()``.

    Hostile or idle clients: a connection must deliver one complete request line of at
    most ``MAX_REQUEST_BYTES`` within ``request_timeout_s`` of loop time (these timeouts are
    about the wire, not process time) or it is answered ``refused`` and closed. There is
    no cap on connections that could refuse a valid command; only when more than
    ``max_waiting`` connections are still waiting for their request line is the one that
    has waited longest dropped (bounding the file descriptors a local flood can take).
    """

    def __init__(self, batch_dir: Path, post: Callable[[Command], PostResult], *,
                 state: Callable[[], str] = lambda: "",
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 max_waiting: int = MAX_WAITING, reply_timeout_s: float = 5.0,
                 remember: int = 1024) -> None:
        self.batch_dir = batch_dir
        self.path = BatchFolder(batch_dir).control_json
        self._post = post
        self._state = state
        self.request_timeout_s = request_timeout_s
        self.max_waiting = max_waiting
        self.reply_timeout_s = reply_timeout_s
        self.remember = remember
        self.dropped = 0  # connections dropped because too many were waiting
        self._token = secrets.token_hex(32)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        # connections still waiting for their request line, oldest first
        self._waiting: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self._stopping = asyncio.Event()
        self._seen: OrderedDict[str, tuple[Command, asyncio.Future[CommandResult]]] = \
            OrderedDict()
        self.port = 0

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._server is None:
            raise RuntimeError("control server not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Bind 127.0.0.1:0 and write control.json (exclusive create, fsync'd, mode 0600
        on POSIX). Raises ``ConfigurationError`` if another live process serves this
        batch; a control.json left by a dead process is replaced."""
        self._server = await asyncio.start_server(self._on_connect, host=LOOPBACK, port=0,
                                                  limit=MAX_REQUEST_BYTES)
        self.port = self.address[1]
        try:
            self._write_control_file()
        except BaseException:
            await self.stop()
            raise
        logger.info("control server on %s:%d", LOOPBACK, self.port,
                    extra={"batch_dir": str(self.batch_dir)})

    def _write_control_file(self) -> None:
        body = json.dumps({"port": self.port, "token": self._token, "pid": os.getpid(),
                           "host": LOOPBACK}).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for attempt in (1, 2):
            try:
                # 0o600 at creation on POSIX (umask can only narrow it). On Windows the
                # mode only sets read-only; the file inherits the batch folder's ACL, so
                # keep batch folders in a directory only the operator account can read.
                fd = os.open(self.path, flags, 0o600)
                break
            except FileExistsError:
                other = self._stale_pid()
                if other is not None or attempt == 2:
                    raise ConfigurationError(
                        f"{CONTROL_FILE} exists and process {other} may be serving this "
                        "batch; remove the file if no furnace process is running",
                        source=str(self.batch_dir)) from None
                self.path.unlink(missing_ok=True)
        try:
            try:
                if sys.platform != "win32":
                    os.fchmod(fd, 0o600)
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:  # a full disk: an empty control.json would outlive the run
            self.path.unlink(missing_ok=True)
            raise

    def _stale_pid(self) -> int | None:
        """The pid in an existing control.json if that process lives, else None."""
        try:
            pid = json.loads(self.path.read_text(encoding="utf-8")).get("pid")
        except (OSError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) and process_alive(pid) else None

    async def stop(self) -> None:
        """Stop listening, end open connections, remove control.json (if still ours).

        Connections still waiting for a request are closed, a command still waiting for
        its verdict is answered ``refused`` (the run ended first), and every handler ends by
        itself: cancelling them would make asyncio log an error per connection on Python
        3.11. Waits at most ``request_timeout_s`` of loop time."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._stopping.set()
        for writer in list(self._waiting):
            writer.transport.abort()
        handlers = list(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=self.request_timeout_s)
            for task in stuck:  # last resort
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self._token:
                self.path.unlink()

    # ------------------------------------------------------------------ requests
    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._waiting[writer] = None
        self._drop_oldest_waiting()
        try:
            reply = await self._request(reader, writer)
            if not writer.is_closing():  # not dropped meanwhile
                writer.write(json.dumps(reply).encode() + b"\n")
                await asyncio.wait_for(writer.drain(), self.request_timeout_s)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._waiting.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.request_timeout_s)
            if task is not None:
                self._handlers.discard(task)

    def _drop_oldest_waiting(self) -> None:
        """Close the connections that have waited longest for a request line while more
        than ``max_waiting`` wait (no reply; their handlers then end by themselves)."""
        while len(self._waiting) > self.max_waiting:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.transport.abort()
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("more than %d control connections waiting for a request; "
                               "dropping the oldest", self.max_waiting)

    async def _read_line(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bytes:
        """One request line, within the deadline; then this connection no longer waits."""
        try:
            async with asyncio.timeout(self.request_timeout_s):
                return await reader.readline()
        finally:
            self._waiting.pop(writer, None)

    async def _request(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> dict[str, Any]:
        try:
            line = await self._read_line(reader, writer)
        except ValueError:  # the line overran the reader's limit
            return self._refuse("", f"request larger than {MAX_REQUEST_BYTES} bytes")
        except TimeoutError:
            return self._refuse("", f"no request within {self.request_timeout_s:g} s")
        if not line.endswith(b"\n"):
            return self._refuse("", "incomplete request (one JSON object per line)")
        if _nesting(line) > 2:  # before json.loads, which recurses once per level
            return self._refuse("", "request must be one JSON object, nested at most once "
                                    "(data)")
        try:
            req = json.loads(line)
        except (ValueError, RecursionError):
            return self._refuse("", "request is not JSON")
        if not isinstance(req, dict):
            return self._refuse("", "request must be a JSON object")
        raw_id = req.get("id")
        cid = raw_id if isinstance(raw_id, str) else ""
        token = req.get("token")
        if not (isinstance(token, str) and secrets.compare_digest(
                token.encode(), self._token.encode())):
            logger.warning("control request with a wrong token refused")
            return self._refuse(cid, "wrong token")
        unknown = sorted(set(req) - _ALLOWED)
        missing = sorted(_REQUIRED - set(req))
        if unknown or missing:
            return self._refuse(cid, f"unknown fields {unknown}" if unknown
                                else f"missing fields {missing}")
        data = req.pop("data", {})
        if not all(isinstance(v, str) for v in req.values()):
            return self._refuse(cid, "every field must be a string")
        if not (isinstance(data, dict)
                and all(isinstance(v, str | int | float) and not isinstance(v, bool)
                        for v in data.values())):
            return self._refuse(cid, "data must be one object of field names to values")
        cmd = Command(trigger=cast(Trigger, req["trigger"]), operator=req["operator"],
                      reason=req.get("reason", ""), source="ctl", id=req["id"],
                      data=tuple((str(k), str(v)) for k, v in data.items()))
        try:
            cmd.validate()
        except ConfigurationError as exc:
            return self._refuse(cid, str(exc))
        return (await self._dispatch(cmd)).to_wire()

    async def _dispatch(self, cmd: Command) -> CommandResult:
        seen = self._seen.get(cmd.id)
        if seen is not None and seen[0] != cmd:
            return CommandResult(cmd.id, Status.REFUSED, self._state(),
                                 "this command id was already used for another command")
        if seen is None:  # no await between the check and the insert: posted exactly once
            fut = self._posted(cmd)
            self._seen[cmd.id] = (cmd, fut)
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)
            logger.info("control command %s from %s", cmd.trigger, cmd.operator,
                        extra=cmd.audit_fields())
        else:
            fut = seen[1]
        stopping = asyncio.ensure_future(self._stopping.wait())
        waiters: set[asyncio.Future[Any]] = {fut, stopping}
        try:  # never cancels fut: a repeat of this id awaits the same verdict
            await asyncio.wait(waiters, timeout=self.reply_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fut.done() and self._stopping.is_set():
            return CommandResult(cmd.id, Status.REFUSED, self._state(),
                                 "the run ended before the scan cycle acted on it")
        if not fut.done():
            return CommandResult(cmd.id, Status.QUEUED, self._state(),
                                 "queued; the scan cycle has not acted on it yet")
        try:
            return fut.result()
        except FurnaceError as exc:
            return CommandResult(cmd.id, Status.REFUSED, self._state(), str(exc))

    def _posted(self, cmd: Command) -> asyncio.Future[CommandResult]:
        try:
            outcome = self._post(cmd)
        except FurnaceError as exc:
            outcome = CommandResult(cmd.id, Status.REFUSED, self._state(), str(exc))
        if inspect.isawaitable(outcome):
            return asyncio.ensure_future(outcome)
        done: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        done.set_result(outcome)
        return done

    def _refuse(self, cid: str, message: str) -> dict[str, Any]:
        return CommandResult(cid, Status.REFUSED, "", message).to_wire()


def _nesting(line: bytes) -> int:
    """How deep JSON arrays and objects nest in ``line`` (0 for a scalar), counted without
    recursion and without parsing; brackets inside strings do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
