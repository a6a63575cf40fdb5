"""The client of a running batch's control API: ``send_command``, what ``furnace ctl`` sends.
It reads the batch's control.json, checks that its process lives, and posts one command to
``POST /api/commands`` with the bearer token (the protocol: ``control``), the same endpoint
the web page uses.

Not here: the server, or what a command does once it arrives (the runner). Nothing here
touches a device; importing it brings neither the session nor the simulator.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from pathlib import Path
from typing import Any, cast

import httpx

from controller.operator.control import LOOPBACK, MAX_REQUEST_BYTES, ControlFile
from controller.operator.process import process_alive
from controller.records.folder import CONTROL_FILE, BatchFolder
from controller.run.commands import Command, Trigger
from drivers.errors import ConfigurationError

__all__ = ["base_url", "send_command"]


def base_url(info: dict[str, Any]) -> str:
    """``http://HOST:PORT`` of the server a control file announces: loopback for a server
    bound to loopback or to every address, else its own address."""
    host = str(info.get("host") or LOOPBACK)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        if ip.is_unspecified or ip.is_loopback:
            host = LOOPBACK
        elif ip.version == 6:
            host = f"[{ip.compressed}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{info['port']}"


async def send_command(batch_dir: Path, trigger: str, operator: str, reason: str = "", *,
                       timeout_s: float = 15.0, command_id: str | None = None,
                       data: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Send one command to the controller running ``batch_dir`` and return its reply
    (``ok``, ``status``, ``state``, ``message``, ``id``; ``invalid`` for bad step data).

    Raises ``ConfigurationError`` (one line) for a bad command, a batch that is not
    running (no control.json, stale pid, connection refused) or no reply in ``timeout_s``.
    Repeating it with the same ``command_id`` is safe (idempotent). ``data`` (confirm
    only) are the operator step's values as (name, text) pairs.
    """
    cmd = Command(trigger=cast(Trigger, trigger), operator=operator, reason=reason,
                  id=command_id or uuid.uuid4().hex, data=data).validate()
    BatchFolder.open(batch_dir, needs=())
    info = ControlFile(batch_dir).read()
    if not process_alive(info["pid"]):
        raise ConfigurationError(f"the batch is not running (stale {CONTROL_FILE}: process "
                                 f"{info['pid']} has ended)", source=str(batch_dir))
    request: dict[str, Any] = {"id": cmd.id, "trigger": cmd.trigger,
                               "operator": cmd.operator, "reason": cmd.reason}
    if cmd.data:
        request["data"] = dict(cmd.data)
    where = base_url(info)
    try:
        async with httpx.AsyncClient(base_url=where, timeout=timeout_s,
                                     trust_env=False) as client:
            response = await client.post(
                "/api/commands", content=json.dumps(request).encode(),
                headers={"Authorization": f"Bearer {info['token']}",
                         "Content-Type": "application/json"})
    except httpx.TimeoutException:
        raise ConfigurationError(f"no reply from the controller on {where} within "
                                 f"{timeout_s:g} s", source=str(batch_dir)) from None
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"the controller is not answering on {where} ("
                                 f"{_one_line(exc)}); has the batch ended?",
                                 source=str(batch_dir)) from None
    return _reply(response, where, str(batch_dir))


def _reply(response: httpx.Response, where: str, source: str) -> dict[str, Any]:
    if len(response.content) > 16 * MAX_REQUEST_BYTES:
        raise ConfigurationError(f"garbled reply from {where} (too large)", source=source)
    try:
        reply = response.json()
    except (ValueError, RecursionError) as exc:
        detail = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigurationError(f"garbled reply from {where} (HTTP {response.status_code}, "
                                 f"{_one_line(detail)})", source=source) from None
    if not isinstance(reply, dict):
        raise ConfigurationError(f"garbled reply from {where} (not a JSON object)",
                                 source=source)
    return reply


def _one_line(what: object) -> str:
    return " ".join(str(what).split())[:200] or type(what).__name__
