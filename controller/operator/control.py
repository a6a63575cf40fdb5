"""The control protocol of a running batch, shared by ``furnace ctl`` and the web page: what a
command request may look like (``parse_command``), the bearer token, and the control file
that announces where the batch is served (``ControlFile``). The HTTP server itself is
``controller/web/server.py``; the commands and their queue are ``controller/run/commands.py``.

Wire protocol: ``POST /api/commands`` on the batch's HTTP server (127.0.0.1 unless the run
was started with ``--web HOST:PORT``), with ``Authorization: Bearer <token>`` and one JSON
object as the body::

    → {"id": "<uuid4 hex>", "trigger": "stop", "operator": "ann", "reason": "sample cracked"}
    → {..., "trigger": "confirm", "data": {"mass_after_wash_g": "0.71", "washes": "4"}}
    ← 200 {"ok": true, "status": "applied", "state": "stopping", "message": "...", "id": "..."}

``status`` is ``queued`` (accepted; the scan cycle has not decided yet), ``applied``,
``superseded`` or ``refused``; ``ok`` is false only for ``refused``. A refusal for bad step
data carries ``"invalid": true`` (``furnace ctl`` exits 2). ``halt`` is refused on the wire:
only the controller itself posts it. Hostile input: a body is at most ``MAX_REQUEST_BYTES``
and must arrive within ``REQUEST_TIMEOUT_S``; one JSON object nested at most once (a
2000-deep array is refused before parsing); unknown or missing fields are refused; every
refusal is one line (HTTP 400, 401 without the right token, 403 for a foreign Host or
Origin, 413 for a body too large). The same ``id`` is applied once (the queue remembers it).

Not here: deciding what a command does (the runner), reading keys (``keys``), or any I/O
beyond the control file. Nothing here touches a device.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Final, cast

from controller.operator.process import process_alive
from controller.records.folder import CONTROL_FILE, BatchFolder
from controller.run.commands import Command, CommandResult, Status, Trigger
from drivers.errors import ConfigurationError

__all__ = [
    "LOOPBACK",
    "LOOPBACK_NAMES",
    "MAX_REQUEST_BYTES",
    "REQUEST_TIMEOUT_S",
    "ControlFile",
    "RequestError",
    "new_token",
    "parse_command",
    "token_matches",
]

logger = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MAX_REQUEST_BYTES: Final = 4096
REQUEST_TIMEOUT_S: Final = 2.0  # from connecting to a complete request (the wire's time)
_REQUIRED = frozenset({"id", "trigger", "operator"})
_ALLOWED = _REQUIRED | {"reason", "data"}


def new_token() -> str:
    """A fresh secret for one run: 64 hex digits."""
    return secrets.token_hex(32)


def token_matches(authorization: str | None, token: str) -> bool:
    """True if the ``Authorization`` header is ``Bearer <token>`` (compared in constant
    time)."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    given = authorization.removeprefix("Bearer ").strip()
    return secrets.compare_digest(given.encode(), token.encode())


class RequestError(Exception):
    """A request refused before it reached the queue: the HTTP status and a one-line
    reason. ``reply`` is the wire object (a ``refused`` CommandResult)."""

    def __init__(self, status_code: int, message: str, command_id: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.command_id = command_id

    def reply(self) -> dict[str, Any]:
        """The JSON body of the refusal."""
        return CommandResult(self.command_id, Status.REFUSED, "", self.message).to_wire()


def parse_command(body: bytes) -> Command:
    """The ``Command`` a request body asks for (source ``ctl``), validated. Raises
    ``RequestError`` (400 or 413) with a one-line reason for anything else."""
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestError(413, f"request larger than {MAX_REQUEST_BYTES} bytes")
    if _nesting(body) > 2:  # before json.loads, which recurses once per level
        raise RequestError(400, "request must be one JSON object, nested at most once (data)")
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, "request is not JSON") from None
    if not isinstance(req, dict):
        raise RequestError(400, "request must be a JSON object")
    raw_id = req.get("id")
    cid = raw_id if isinstance(raw_id, str) else ""
    unknown = sorted(set(req) - _ALLOWED)
    missing = sorted(_REQUIRED - set(req))
    if unknown or missing:
        raise RequestError(400, f"unknown fields {unknown}" if unknown
                           else f"missing fields {missing}", cid)
    data = req.pop("data", {})
    if not all(isinstance(v, str) for v in req.values()):
        raise RequestError(400, "every field must be a string", cid)
    if not (isinstance(data, dict)
            and all(isinstance(v, str | int | float) and not isinstance(v, bool)
                    for v in data.values())):
        raise RequestError(400, "data must be one object of field names to values", cid)
    cmd = Command(trigger=cast(Trigger, req["trigger"]), operator=req["operator"],
                  reason=req.get("reason", ""), source="ctl", id=req["id"],
                  data=tuple((str(k), str(v)) for k, v in data.items()))
    try:
        return cmd.validate()
    except ConfigurationError as exc:
        raise RequestError(400, str(exc), cid) from None


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


class ControlFile:
    """``<batch_dir>/control.json``: where the running batch is served (host, port), its
    token and the serving process. Created exclusively (a live process serving the batch
    keeps it), fsync'd, mode 0600 on POSIX; removed at the end if still ours."""

    def __init__(self, batch_dir: Path) -> None:
        self.batch_dir = batch_dir
        self.path = BatchFolder(batch_dir).control_json

    def write(self, *, host: str, port: int, token: str) -> None:
        """Write it. Raises ``ConfigurationError`` if another live process serves this
        batch (a file left by a dead process is replaced), ``OSError`` if the disk fails
        (no empty file is left behind)."""
        body = json.dumps({"port": port, "token": token, "pid": os.getpid(),
                           "host": host, "protocol": "http"}).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for attempt in (1, 2):
            try:
                # 0o600 at creation on POSIX (umask can only narrow it). On Windows the
                # mode only sets read-only; the file inherits the batch folder's ACL, so
                # keep batch folders in a directory only the operator account can read.
                fd = os.open(self.path, flags, 0o600)
                break
            except FileExistsError:
                other = self._live_pid()
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

    def remove(self, token: str) -> None:
        """Remove the file if it still carries ``token``."""
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == token:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def _live_pid(self) -> int | None:
        """The pid in an existing control.json if that process lives, else None."""
        try:
            pid = json.loads(self.path.read_text(encoding="utf-8")).get("pid")
        except (OSError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) and process_alive(pid) else None

    def read(self) -> dict[str, Any]:
        """The file's content (port, token, pid, host). Raises ``ConfigurationError`` (one
        line) if there is none (the batch is not running) or it is not a control file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"the batch is not running (no {CONTROL_FILE})",
                                     source=str(self.batch_dir)) from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"unreadable ({exc})", source=str(self.path)) from None
        if not (isinstance(data, dict) and isinstance(data.get("port"), int)
                and isinstance(data.get("token"), str) and isinstance(data.get("pid"), int)):
            raise ConfigurationError("not a control file (needs port, token, pid)",
                                     source=str(self.path))
        return data
