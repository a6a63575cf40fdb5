"""Operator commands: validation, the queue the scan cycle drains, console keys, the Ctrl-C
policy, and the control API over HTTP (``POST /api/commands``) and its client, ``furnace
ctl`` (on 127.0.0.1, ephemeral ports)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.operator.control import MAX_REQUEST_BYTES, ControlFile, parse_command
from controller.operator.control_client import base_url, send_command
from controller.operator.keys import HELP_LINE, InterruptPolicy, KeyCommands
from controller.recipe.station import Station
from controller.recipe.steps import Dwell, End, OperatorStep, Plan, Stage
from controller.records.folder import CONTROL_FILE
from controller.run.commands import Command, CommandQueue, CommandResult, Status, apply_command
from controller.run.handle import RecipeRunner
from controller.web.server import BatchWebServer
from drivers.errors import ConfigurationError
from tests.web import served, token_of, url_of

pytestmark = pytest.mark.timeout(20)


def runner(station: Station, *steps: object) -> RecipeRunner:
    steps = steps or (Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5,
                            max_holdback_s=600), End(stage="s", label="e"))
    plan = Plan("t", "T", (Stage("s", "Ar"),), tuple(steps))  # type: ignore[arg-type]
    r = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    r.begin(0.0, 25.0)
    r.preflight_done(0.0)
    return r


# --------------------------------------------------------------------------- Command
@pytest.mark.parametrize("trigger", ["stop", "abort", "resume"])
def test_course_changing_command_without_reason_is_one_line_error(trigger: str) -> None:
    with pytest.raises(ConfigurationError, match="needs a reason") as info:
        Command(trigger=trigger, operator="ann", reason="  ").validate()  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert info.value.field == "reason"


def test_hold_and_confirm_need_no_reason_but_an_operator() -> None:
    Command(trigger="hold", operator="ann").validate()
    Command(trigger="confirm", operator="ann").validate()
    with pytest.raises(ConfigurationError, match="operator"):
        Command(trigger="hold", operator=" ").validate()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"trigger": "reset"}, "unknown command 'reset'"),
    ({"reason": "two\nlines", "trigger": "stop"}, "printable"),
    ({"reason": "x" * 501, "trigger": "stop"}, "at most 500"),
    ({"operator": "a" * 65}, "at most 64"),
    ({"id": "../etc"}, "letters, digits"),
    ({"id": ""}, "letters, digits"),
    ({"trigger": "stop", "reason": "r", "deferred": True}, "only a hold"),
])
def test_bad_commands_are_refused(kwargs: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {"trigger": "hold", "operator": "ann", **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        Command(**fields).validate()


def test_ids_are_unique_uuid_hex() -> None:
    a, b = Command(trigger="hold", operator="x"), Command(trigger="hold", operator="x")
    assert a.id != b.id
    assert len(a.id) == 32
    assert a.audit_fields()["command_id"] == a.id


# --------------------------------------------------------------------- apply_command
def test_apply_command_on_the_real_runner(station: Station) -> None:
    r = runner(station)
    hold = apply_command(r, Command(trigger="hold", operator="ann"))
    assert (hold.status, hold.state) == (Status.APPLIED, "held")
    again = apply_command(r, Command(trigger="hold", operator="bob"))
    assert (again.status, again.message) == (Status.APPLIED, "already held")
    no_step = apply_command(r, Command(trigger="confirm", operator="ann"))
    assert no_step.status is Status.REFUSED
    assert "no operator step" in no_step.message
    resumed = apply_command(r, Command(trigger="resume", operator="ann", reason="checked"))
    assert resumed.state == "running"
    changes = [e.fields for e in r.outbox if e.event == "state_change"]
    assert changes[-2]["reason"] == "hold requested (ctl)"
    assert changes[-1] == {"old": "held", "new": "running", "trigger": "resume",
                           "reason": "checked", "operator": "ann"}


def test_confirm_reaches_the_operator_step(station: Station) -> None:
    r = runner(station, OperatorStep(stage="s", label="wash", message="wash it"),
               End(stage="s", label="e"))
    result = apply_command(r, Command(trigger="confirm", operator="ann"))
    assert result.status is Status.APPLIED
    assert any(e.event == "operator_confirmed" and e.fields["operator"] == "ann"
               for e in r.outbox)


def test_stop_after_the_end_is_refused(station: Station) -> None:
    r = runner(station)
    r.command("abort", reason="t")
    r.command("cooled", reason="t")
    result = apply_command(r, Command(trigger="stop", operator="ann", reason="late"))
    assert result.status is Status.REFUSED
    assert not result.ok
    assert result.to_wire()["ok"] is False


# ---------------------------------------------------------------------- CommandQueue
def test_queue_is_idempotent_and_bounded() -> None:
    q = CommandQueue(lambda: "running", max_pending=2)
    cmd = Command(trigger="hold", operator="ann")
    assert q.post(cmd).status is Status.QUEUED
    assert q.post(cmd).status is Status.QUEUED
    assert len(q) == 1
    clash = Command(trigger="abort", operator="ann", reason="x", id=cmd.id)
    assert "already used" in q.post(clash).message
    q.post(Command(trigger="confirm", operator="ann"))
    full = q.post(Command(trigger="confirm", operator="ann"))
    assert full.status is Status.REFUSED
    assert "waiting" in full.message
    bad = q.post(Command(trigger="stop", operator="ann"))
    assert bad.status is Status.REFUSED
    assert "reason" in bad.message


def test_deferred_hold_waits_for_a_checkpoint_and_is_superseded(station: Station) -> None:
    r = runner(station)
    q = CommandQueue(lambda: str(r.phase))
    deferred = InterruptPolicy("ann").on_interrupt(0.0)
    q.post(deferred)
    q.post(Command(trigger="confirm", operator="ann"))
    taken = q.take(at_checkpoint=False)
    assert [c.trigger for c in taken] == ["confirm"]
    assert len(q) == 1
    [(waiting, queued)] = q.apply_due(r, at_checkpoint=False)  # the request, on record
    assert waiting is deferred
    assert (queued.status, queued.message) == (Status.QUEUED, "waiting for the next checkpoint")
    assert q.apply_due(r, at_checkpoint=False) == []  # announced once
    [(cmd, result)] = q.apply_due(r, at_checkpoint=True)
    assert cmd is deferred
    assert result.state == "held"
    assert q.post(deferred).status is Status.APPLIED  # a repeat gets the verdict

    q2 = CommandQueue(lambda: "running")
    first = InterruptPolicy("ann")
    d = first.on_interrupt(0.0)
    q2.post(d)
    q2.post(first.on_interrupt(1.0))  # hold now
    [(dropped, why), (now, verdict)] = q2.apply_due(runner(station), at_checkpoint=False)
    assert dropped is d
    assert why.status is Status.SUPERSEDED
    assert not now.deferred
    assert verdict.state == "held"
    assert q2.post(d).status is Status.SUPERSEDED


async def test_submit_future_resolves_when_the_scan_cycle_applies(station: Station) -> None:
    r = runner(station)
    q = CommandQueue(lambda: str(r.phase))
    cmd = Command(trigger="hold", operator="ann")
    fut = q.submit(cmd)
    assert q.submit(cmd) is fut
    assert not fut.done()
    q.apply_due(r, at_checkpoint=False)
    assert (await fut).state == "held"
    refused = q.submit(Command(trigger="abort", operator="ann"))
    assert refused.done()
    assert refused.result().status is Status.REFUSED


# ------------------------------------------------------------------ keys and Ctrl-C
def test_key_scheme_needs_y_for_anything_but_hold() -> None:
    keys = KeyCommands("ann")
    hold = keys.feed("h")
    assert hold is not None
    assert hold.trigger == "hold"
    assert hold.source == "keys"
    assert keys.feed("s") is None
    assert "press y to stop" in keys.prompt
    stop = keys.feed("y")
    assert stop is not None
    assert stop.trigger == "stop"
    assert stop.reason == "from the console"
    stop.validate()
    assert keys.feed("A") is None
    assert keys.feed("\x1b") is None
    assert keys.prompt == ""
    assert keys.feed("y") is None  # nothing pending: y alone does nothing
    for key, trigger in (("r", "resume"), ("c", "confirm"), ("a", "abort")):
        keys.feed(key)
        cmd = keys.feed("Y")
        assert cmd is not None
        assert cmd.trigger == trigger
    assert keys.feed("x") is None
    assert "h hold" in HELP_LINE
    assert "3×" in HELP_LINE


def test_interrupt_policy_sequence_and_window() -> None:
    policy = InterruptPolicy("ann", window_s=10.0)
    first, second, third, fourth = (policy.on_interrupt(t) for t in (0.0, 1.0, 2.0, 3.0))
    assert (first.trigger, first.deferred, first.source) == ("hold", True, "ctrl-c")
    assert (second.trigger, second.deferred) == ("hold", False)
    assert third.trigger == fourth.trigger == "abort"
    for cmd in (first, second, third):
        cmd.validate()
    assert len({first.id, second.id, third.id}) == 3
    assert not policy.halt_requested
    policy.on_interrupt(4.0)
    assert policy.halt_requested  # 5 presses in 10 s: the caller cancels the scan task
    late = policy.on_interrupt(60.0)  # long after: starts again, cannot abort
    assert late.trigger == "hold"
    assert late.deferred
    assert not policy.halt_requested
    assert policy.on_interrupt(71.0).deferred  # 11 s after the first of this burst


# --------------------------------------------------------------------- the server
async def post_raw(batch: Path, body: bytes, headers: dict[str, str] | None = None,
                   *, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the batch's /api/commands; (HTTP status, JSON reply)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=url_of(batch), trust_env=False) as client:
        r = await client.post("/api/commands", content=body, headers=sent)
    return r.status_code, r.json()


def cmd_body(**fields: Any) -> bytes:
    return json.dumps({"id": "a1", "trigger": "hold", "operator": "ann", **fields}).encode()


async def test_round_trip_with_the_right_token(station: Station, tmp_path: Path) -> None:
    r = runner(station)
    queue = CommandQueue(lambda: str(r.phase))
    async with served(tmp_path, station, queue=queue, runner=r, reply_timeout_s=0.01):
        reply = await send_command(tmp_path, "stop", "ann", "sample cracked")
    assert (reply["ok"], reply["status"], reply["state"]) == (True, "queued", "running")
    [cmd] = queue.take(at_checkpoint=False)
    assert (cmd.trigger, cmd.operator, cmd.reason, cmd.source) == (
        "stop", "ann", "sample cracked", "ctl")
    assert reply["id"] == cmd.id


async def test_without_the_right_token_401(station: Station, tmp_path: Path) -> None:
    queue = CommandQueue()
    async with served(tmp_path, station, queue=queue):
        wrong = await post_raw(tmp_path, cmd_body(), token="0" * 64)
        missing = await post_raw(tmp_path, cmd_body())
        basic = await post_raw(tmp_path, cmd_body(), {"Authorization": "Basic eDp5"})
    for status, reply in (wrong, missing, basic):
        assert status == 401
        assert reply == {"ok": False, "status": "refused", "state": "",
                         "message": "wrong token", "id": ""}
    assert len(queue) == 0


async def test_foreign_host_or_origin_is_refused(station: Station, tmp_path: Path) -> None:
    """DNS rebinding and cross-site requests: a page on another name cannot command the
    batch even with the token; the batch's own page (same origin) can."""
    queue = CommandQueue()
    async with served(tmp_path, station, queue=queue, reply_timeout_s=0.01) as server:
        token = token_of(tmp_path)
        host = await post_raw(tmp_path, cmd_body(), {"Host": "evil.example"}, token=token)
        origin = await post_raw(tmp_path, cmd_body(id="a2"),
                                {"Origin": "http://evil.example"}, token=token)
        null = await post_raw(tmp_path, cmd_body(id="a3"), {"Origin": "null"}, token=token)
        port = server.address[1]
        own = await post_raw(tmp_path, cmd_body(id="a4"),
                             {"Origin": f"http://localhost:{port}"}, token=token)
        async with httpx.AsyncClient(trust_env=False) as client:
            state = await client.get(f"{url_of(tmp_path)}/api/state",
                                     headers={"Host": "evil.example"})
    assert [s for s, _ in (host, origin, null)] == [403, 403, 403]
    assert host[1]["message"] == "foreign Host"
    assert origin[1]["message"] == "foreign Host or Origin"
    assert own[0] == 200
    assert state.status_code == 403
    assert [c.id for c in queue.take(at_checkpoint=False)] == ["a4"]


async def test_duplicate_id_is_queued_once_and_answered_alike(station: Station,
                                                              tmp_path: Path) -> None:
    queue = CommandQueue(lambda: "running")
    async with served(tmp_path, station, queue=queue, reply_timeout_s=0.01):
        first = await send_command(tmp_path, "hold", "ann", command_id="c0ffee")
        second = await send_command(tmp_path, "hold", "ann", command_id="c0ffee")
        clash = await send_command(tmp_path, "abort", "ann", "x", command_id="c0ffee")
        status, unknown = await post_raw(tmp_path, cmd_body(extra="1"),
                                         token=token_of(tmp_path))
    assert first == second
    assert len(queue) == 1
    assert clash["ok"] is False
    assert "already used" in clash["message"]
    assert status == 400
    assert "unknown fields ['extra']" in unknown["message"]


async def test_oversize_and_garbage_requests_are_refused(station: Station,
                                                         tmp_path: Path) -> None:
    queue = CommandQueue()
    async with served(tmp_path, station, queue=queue):
        token = token_of(tmp_path)
        big = await post_raw(tmp_path, b"{" + b" " * MAX_REQUEST_BYTES + b"}", token=token)
        garbage = await post_raw(tmp_path, b"\xff\xfe not json", token=token)
        listed = await post_raw(tmp_path, b"[1, 2]", token=token)
        halt = await post_raw(tmp_path, cmd_body(trigger="halt", reason="going home"),
                              token=token)
    assert big[0] == 413
    assert f"larger than {MAX_REQUEST_BYTES}" in big[1]["message"]
    assert garbage == (400, {**garbage[1], "message": "request is not JSON"})
    assert listed[1]["message"] == "request must be a JSON object"
    assert halt[0] == 400
    assert "only by the controller itself" in halt[1]["message"]
    assert len(queue) == 0


def test_deeply_nested_requests_are_refused_before_parsing() -> None:
    """Issue 9 item 10: 2000-deep JSON used to raise RecursionError in the server."""
    from controller.operator.control import RequestError

    head = json.dumps({"id": "n1", "trigger": "hold", "operator": "a"})
    for body in (b"[" * 2000 + b"]" * 2000,
                 (head[:-1] + ', "reason": ' + "[" * 1900 + "]" * 1900 + "}").encode()):
        with pytest.raises(RequestError, match="nested at most once"):
            parse_command(body)
    text = parse_command(json.dumps({"id": "n2", "trigger": "stop", "operator": "a",
                                     "reason": "[[[[ {{ }} ]]]] \\\" ["}).encode())
    assert text.reason == '[[[[ {{ }} ]]]] \\" ['  # brackets inside strings are only text


async def test_control_file_exclusive_private_and_removed(station: Station,
                                                          tmp_path: Path) -> None:
    path = tmp_path / CONTROL_FILE
    async with served(tmp_path, station) as server:
        info = json.loads(path.read_text())
        assert info["port"] == server.address[1]
        assert info["pid"] == os.getpid()
        assert (info["host"], info["protocol"]) == ("127.0.0.1", "http")
        assert len(info["token"]) == 64
        assert int(info["token"], 16) >= 0
        if sys.platform != "win32":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(ConfigurationError, match="may be serving this batch"):
            ControlFile(tmp_path).write(host="127.0.0.1", port=1, token="t")
        assert json.loads(path.read_text()) == info  # the loser did not touch it
    assert not path.exists()


async def test_stale_control_file_of_a_dead_process_is_replaced(station: Station,
                                                                tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": 1, "token": "t",
                                                     "pid": dead.pid}))
    with pytest.raises(ConfigurationError, match="stale") as info:
        await send_command(tmp_path, "hold", "ann")
    assert "\n" not in str(info.value)
    async with served(tmp_path, station) as server:
        assert json.loads((tmp_path / CONTROL_FILE).read_text())["port"] == server.address[1]


async def test_binds_only_loopback_by_default(station: Station, tmp_path: Path) -> None:
    async with served(tmp_path, station) as server:
        assert server.address[0] == "127.0.0.1"
        with socket.socket() as s:  # nothing answers on another address of this host
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.2", server.address[1])) != 0 or sys.platform == \
                "darwin"


def test_client_url_of_a_control_file() -> None:
    assert base_url({"host": "0.0.0.0", "port": 8080}) == "http://127.0.0.1:8080"
    assert base_url({"host": "::1", "port": 1}) == "http://127.0.0.1:1"
    assert base_url({"host": "192.168.1.5", "port": 1}) == "http://192.168.1.5:1"
    assert base_url({"host": "fe80::1", "port": 1}) == "http://[fe80::1]:1"
    assert base_url({"port": 2}) == "http://127.0.0.1:2"


async def test_client_errors_are_one_line(station: Station, tmp_path: Path) -> None:
    async with served(tmp_path, station):
        pass
    with pytest.raises(ConfigurationError, match="not running") as stopped:
        await send_command(tmp_path, "hold", "ann")
    with pytest.raises(ConfigurationError, match="not a batch folder"):
        await send_command(tmp_path / "nope", "hold", "ann")
    with pytest.raises(ConfigurationError, match="needs a reason"):
        await send_command(tmp_path, "abort", "ann")
    with pytest.raises(ConfigurationError, match="unknown command 'pause'"):
        await send_command(tmp_path, "pause", "ann")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": port, "token": "t",
                                                     "pid": os.getpid()}))
    with pytest.raises(ConfigurationError, match="not answering") as refused:
        await send_command(tmp_path, "hold", "ann")
    (tmp_path / CONTROL_FILE).write_text("{")
    with pytest.raises(ConfigurationError, match="unreadable"):
        await send_command(tmp_path, "hold", "ann")
    for err in (stopped, refused):
        assert "\n" not in str(err.value)
        assert str(tmp_path) in str(err.value)


class VerdictQueue:
    """Stands in for the queue: hold is decided at once, anything else when the test
    says so."""

    def __init__(self) -> None:
        self.verdicts: dict[str, asyncio.Future[CommandResult]] = {}

    def state(self) -> str:
        return "running"

    def submit(self, cmd: Command) -> asyncio.Future[CommandResult]:
        if cmd.id not in self.verdicts:
            self.verdicts[cmd.id] = asyncio.get_running_loop().create_future()
            if cmd.trigger == "hold":
                self.verdicts[cmd.id].set_result(
                    CommandResult(cmd.id, Status.APPLIED, "held", "ok"))
        return self.verdicts[cmd.id]


async def test_reply_waits_for_the_verdict_or_says_queued(station: Station,
                                                          tmp_path: Path) -> None:
    queue = VerdictQueue()
    async with served(tmp_path, station, queue=queue, reply_timeout_s=0.01):
        held = await send_command(tmp_path, "hold", "ann")
        slow = await send_command(tmp_path, "confirm", "ann", command_id="slow1")
        [pending] = [f for f in queue.verdicts.values() if not f.done()]
        pending.set_result(CommandResult("slow1", Status.REFUSED, "running", "no step"))
        again = await send_command(tmp_path, "confirm", "ann", command_id="slow1")
    assert (held["status"], held["state"]) == ("applied", "held")
    assert (slow["status"], slow["state"]) == ("queued", "running")
    assert (again["ok"], again["message"]) == (False, "no step")


async def test_idle_connections_never_starve_a_valid_command(station: Station,
                                                             tmp_path: Path) -> None:
    """Issue 9 item 11: idle connections used to make ``furnace ctl`` answer busy."""
    queue = CommandQueue(lambda: "running")
    async with served(tmp_path, station, queue=queue, reply_timeout_s=0.01) as server:
        port = server.address[1]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(64)]
        try:
            reply = await send_command(tmp_path, "hold", "ann")
        finally:
            for _, writer in idle:
                writer.close()
    assert (reply["ok"], reply["status"]) == (True, "queued")
    assert [c.trigger for c in queue.take(at_checkpoint=False)] == ["hold"]


async def test_an_idle_connection_is_closed_by_the_server(station: Station,
                                                          tmp_path: Path) -> None:
    """A connection that never sends a request is closed at the request deadline (not kept
    for ever, as uvicorn alone would)."""
    async with served(tmp_path, station) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
        try:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()


async def test_stop_answers_a_command_still_waiting(station: Station, tmp_path: Path) -> None:
    """A command awaiting its verdict when the run ends is told it was not acted on."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    queue = VerdictQueue()
    server: BatchWebServer
    async with served(tmp_path, station, queue=queue, reply_timeout_s=60) as server:
        pending = asyncio.ensure_future(send_command(tmp_path, "confirm", "ann"))
        await _until(lambda: bool(queue.verdicts))
    reply = await pending
    assert (reply["ok"], reply["message"]) == (
        False, "the run ended before the scan cycle acted on it")
    assert loop_errors == []
    del server


async def test_client_survives_a_deeply_nested_reply(tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"[" * 2000 + b"]" * 2000
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": port, "token": "t",
                                                     "pid": os.getpid()}))
    try:
        with pytest.raises(ConfigurationError, match="garbled reply") as info:
            await send_command(tmp_path, "hold", "ann")
    finally:
        server.close()
        await server.wait_closed()
    assert "\n" not in str(info.value)


async def _until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (no real sleep)."""
    event = asyncio.Event()
    while not predicate():
        loop = asyncio.get_running_loop()
        loop.call_soon(event.set)
        await event.wait()
        event.clear()
