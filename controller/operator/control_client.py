"""The client of a running batch's control server: ``send_command``, what ``furnace ctl``
sends. It reads the batch's control.json, checks that its process lives, and exchanges one
JSON line each way with the server on 127.0.0.1 (the protocol: ``control``).

Not here: the server, or what a command does once it arrives (the runner). Nothing here
touches a device; importing it brings neither the session nor the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any, cast

from controller.operator.control import LOOPBACK, MAX_REQUEST_BYTES
from controller.operator.process import process_alive
from controller.records.folder import CONTROL_FILE, BatchFolder
from controller.run.commands import Command, Trigger
from drivers.errors import ConfigurationError

__all__ = ["send_command"]


async def send_command(batch_dir: Path, trigger: str, operator: str, reason: str = "", *,
                       timeout_s: float = 15.0, command_id: str | None = None,
                       data: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Send one command to the controller running ``batch_dir`` and return its reply
    (``ok``, ``status``, ``state``, ``message``, ``id``). Connects to 127.0.0.1 only.

    Raises ``ConfigurationError`` (one line) for a bad command, a batch that is not
    running (no control.json, stale pid, connection refused) or no reply in ``timeout_s``
    of loop time. Repeating it with the same ``command_id`` is safe (idempotent). ``data``
    (confirm only) are the operator step's values as (name, text) pairs.
    """
    cmd = Command(trigger=cast(Trigger, trigger), operator=operator, reason=reason,
                  id=command_id or uuid.uuid4().hex, data=data).validate()
    path = BatchFolder.open(batch_dir, needs=()).control_json
    info = _read_control(path)
    if not process_alive(info["pid"]):
        raise ConfigurationError(f"the batch is not running (stale {CONTROL_FILE}: process "
                                 f"{info['pid']} has ended)", source=str(batch_dir))
    request: dict[str, Any] = {"token": info["token"], "id": cmd.id, "trigger": cmd.trigger,
                               "operator": cmd.operator, "reason": cmd.reason}
    if cmd.data:
        request["data"] = dict(cmd.data)
    where = f"{LOOPBACK}:{info['port']}"
    try:
        return await asyncio.wait_for(_exchange(info["port"], request), timeout_s)
    except TimeoutError:
        raise ConfigurationError(f"no reply from the controller on {where} within "
                                 f"{timeout_s:g} s", source=str(batch_dir)) from None
    except (ConnectionError, OSError) as exc:
        raise ConfigurationError(f"the controller is not answering on {where} ("
                                 f"{exc.strerror or exc}); has the batch ended?",
                                 source=str(batch_dir)) from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigurationError(f"garbled reply from {where} ({detail})",
                                 source=str(batch_dir)) from None


async def _exchange(port: int, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=MAX_REQUEST_BYTES)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise ConnectionResetError("connection closed without a reply")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("reply is not a JSON object")
    return reply


def _read_control(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"the batch is not running (no {CONTROL_FILE})",
                                 source=str(path.parent)) from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"unreadable ({exc})", source=str(path)) from None
    if not (isinstance(data, dict) and isinstance(data.get("port"), int)
            and isinstance(data.get("token"), str) and isinstance(data.get("pid"), int)):
        raise ConfigurationError("not a control file (needs port, token, pid)",
                                 source=str(path))
    return data
