"""Operator commands: validation, the queue the scan cycle drains, console keys, the Ctrl-C
policy, and the loopback control server and its client (on 127.0.0.1, ephemeral ports)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.operator.control import MAX_REQUEST_BYTES, ControlServer
from controller.operator.control_client import send_command
from controller.operator.keys import HELP_LINE, InterruptPolicy, KeyCommands
from controller.recipe.station import Station
from controller.recipe.steps import Dwell, End, OperatorStep, Plan, Stage
from controller.records.folder import CONTROL_FILE
from controller.run.commands import Command, CommandQueue, CommandResult, Status, apply_command
from controller.run.handle import RecipeRunner
from drivers.errors import ConfigurationError

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
Post = Callable[[Command], CommandResult | Awaitable[CommandResult]]


def recording_post(got: list[Command]) -> Post:
    def post(cmd: Command) -> CommandResult:
        got.append(cmd)
        return CommandResult(cmd.id, Status.QUEUED, "running", "queued")
    return post


async def raw(port: int, payload: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    reply: dict[str, Any] = json.loads(line)
    return reply


def token_of(batch: Path) -> str:
    token: str = json.loads((batch / CONTROL_FILE).read_text())["token"]
    return token


async def test_round_trip_with_the_right_token(tmp_path: Path) -> None:
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)):
        reply = await send_command(tmp_path, "stop", "ann", "sample cracked")
    assert reply["ok"] is True
    assert reply["status"] == "queued"
    assert reply["state"] == "running"
    [cmd] = got
    assert (cmd.trigger, cmd.operator, cmd.reason, cmd.source) == (
        "stop", "ann", "sample cracked", "ctl")
    assert reply["id"] == cmd.id


async def test_wrong_token_is_refused(tmp_path: Path) -> None:
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)) as server:
        req = {"token": "0" * 64, "id": "a1", "trigger": "abort", "operator": "x",
               "reason": "y"}
        reply = await raw(server.port, json.dumps(req).encode() + b"\n")
        missing = await raw(server.port, b'{"id": "a2", "trigger": "hold"}\n')
    assert reply == {"ok": False, "status": "refused", "state": "", "message": "wrong token",
                     "id": "a1"}
    assert missing["message"] == "wrong token"
    assert got == []


async def test_duplicate_id_is_posted_once_and_answered_alike(tmp_path: Path) -> None:
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)) as server:
        first = await send_command(tmp_path, "hold", "ann", command_id="c0ffee")
        second = await send_command(tmp_path, "hold", "ann", command_id="c0ffee")
        clash = await send_command(tmp_path, "abort", "ann", "x", command_id="c0ffee")
        req = {"token": token_of(tmp_path), "id": "d1", "trigger": "hold", "operator": "a",
               "extra": "1"}
        unknown = await raw(server.port, json.dumps(req).encode() + b"\n")
    assert first == second
    assert len(got) == 1
    assert clash["ok"] is False
    assert "already used" in clash["message"]
    assert "unknown fields ['extra']" in unknown["message"]


async def test_oversize_and_garbage_requests_are_refused(tmp_path: Path) -> None:
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)) as server:
        big = await raw(server.port, b"{" + b" " * MAX_REQUEST_BYTES + b"}\n")
        garbage = await raw(server.port, b"\xff\xfe not json\n")
        listed = await raw(server.port, b"[1, 2]\n")
    assert big["ok"] is False
    assert f"larger than {MAX_REQUEST_BYTES}" in big["message"]
    assert garbage["message"] == "request is not JSON"
    assert listed["message"] == "request must be a JSON object"
    assert got == []


async def test_control_file_exclusive_private_and_removed(tmp_path: Path) -> None:
    path = tmp_path / CONTROL_FILE
    server = ControlServer(tmp_path, recording_post([]))
    await server.start()
    try:
        info = json.loads(path.read_text())
        assert info["port"] == server.port
        assert info["pid"] == os.getpid()
        assert len(info["token"]) == 64
        assert int(info["token"], 16) >= 0
        if sys.platform != "win32":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(ConfigurationError, match="may be serving this batch"):
            await ControlServer(tmp_path, recording_post([])).start()
        assert json.loads(path.read_text()) == info  # the loser did not touch it
    finally:
        await server.stop()
    assert not path.exists()


async def test_stale_control_file_of_a_dead_process_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": 1, "token": "t",
                                                     "pid": dead.pid}))
    with pytest.raises(ConfigurationError, match="stale") as info:
        await send_command(tmp_path, "hold", "ann")
    assert "\n" not in str(info.value)
    async with ControlServer(tmp_path, recording_post([])) as server:
        assert json.loads((tmp_path / CONTROL_FILE).read_text())["port"] == server.port


async def test_binds_only_loopback(tmp_path: Path) -> None:
    async with ControlServer(tmp_path, recording_post([])) as server:
        assert server.address == ("127.0.0.1", server.port)
        sockets = server._server.sockets  # type: ignore[union-attr]
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
        assert all(s.family == socket.AF_INET for s in sockets)


async def test_client_errors_are_one_line(tmp_path: Path) -> None:
    async with ControlServer(tmp_path, recording_post([])):
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


async def test_reply_waits_for_the_verdict_or_says_queued(tmp_path: Path) -> None:
    verdicts: dict[str, asyncio.Future[CommandResult]] = {}

    def post(cmd: Command) -> asyncio.Future[CommandResult]:
        verdicts[cmd.id] = asyncio.get_running_loop().create_future()
        if cmd.trigger == "hold":
            verdicts[cmd.id].set_result(CommandResult(cmd.id, Status.APPLIED, "held", "ok"))
        return verdicts[cmd.id]

    async with ControlServer(tmp_path, post, state=lambda: "running",
                             reply_timeout_s=0.01):
        held = await send_command(tmp_path, "hold", "ann")
        slow = await send_command(tmp_path, "confirm", "ann", command_id="slow1")
        [pending] = [f for f in verdicts.values() if not f.done()]
        pending.set_result(CommandResult("slow1", Status.REFUSED, "running", "no step"))
        again = await send_command(tmp_path, "confirm", "ann", command_id="slow1")
    assert (held["status"], held["state"]) == ("applied", "held")
    assert (slow["status"], slow["state"]) == ("queued", "running")
    assert (again["ok"], again["message"]) == (False, "no step")


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_idle(port: int, count: int) -> list[Connection]:
    """``count`` connections that never send anything (any local process can open them)."""
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def _close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in connections), return_exceptions=True)


async def test_idle_connections_never_starve_a_valid_command(tmp_path: Path) -> None:
    """Issue 9 item 11: 16 idle connections used to make ``furnace ctl`` answer busy."""
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)) as server:
        idle = await _open_idle(server.port, 64)
        try:
            await asyncio.wait_for(_until(lambda: len(server._handlers) == 64), 5)
            reply = await send_command(tmp_path, "hold", "ann")
        finally:
            await _close_all(idle)
    assert (reply["ok"], reply["status"]) == (True, "queued")
    assert [c.trigger for c in got] == ["hold"]
    assert server.dropped == 0


async def test_a_flood_of_idle_connections_drops_the_oldest(tmp_path: Path) -> None:
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got), max_waiting=8) as server:
        idle = await _open_idle(server.port, 64)
        try:
            await asyncio.wait_for(_until(lambda: server.dropped == 56), 5)
            assert len(server._waiting) == 8
            reply = await send_command(tmp_path, "stop", "ann", "sample cracked")
            oldest, newest = idle[0][0], idle[-1][0]
            assert await asyncio.wait_for(oldest.read(), 5) == b""  # closed, no reply
            assert not newest.at_eof()
        finally:
            await _close_all(idle)
    assert reply["ok"] is True
    assert [c.trigger for c in got] == ["stop"]


async def test_idle_connections_are_dropped_at_the_deadline(tmp_path: Path) -> None:
    async with ControlServer(tmp_path, recording_post([]), request_timeout_s=0.01) as server:
        idle = await _open_idle(server.port, 16)
        try:
            for reader, _ in idle:  # each gets a one-line refusal, then end of stream
                line = await asyncio.wait_for(reader.readline(), 5)
                assert json.loads(line)["message"] == "no request within 0.01 s"
                assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            await _close_all(idle)
        assert not server._waiting


async def test_stop_ends_open_connections_without_loop_errors(tmp_path: Path) -> None:
    """An idle connection and a command awaiting its verdict when the run ends: both end
    cleanly (the command is told it was not acted on); nothing reaches the loop's error
    handler, which on Python 3.11 used to log one error per cancelled handler."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    never: asyncio.Future[CommandResult] = loop.create_future()
    server = ControlServer(tmp_path, lambda cmd: never, reply_timeout_s=60)
    await server.start()
    [(idle_reader, idle)] = await _open_idle(server.port, 1)
    pending = asyncio.ensure_future(send_command(tmp_path, "hold", "ann"))
    await asyncio.wait_for(_until(lambda: len(server._handlers) == 2
                                  and len(server._waiting) == 1), 5)
    await server.stop()
    reply = await pending
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    idle.close()
    await _until(lambda: not server._handlers)
    assert (reply["ok"], reply["message"]) == (
        False, "the run ended before the scan cycle acted on it")
    assert loop_errors == []


async def test_silent_client_times_out(tmp_path: Path) -> None:
    async with ControlServer(tmp_path, recording_post([]), request_timeout_s=0.01) as server:
        reply = await raw(server.port, b'{"token": ')  # never finishes the line
    assert reply["message"] == "no request within 0.01 s"


async def test_deeply_nested_requests_are_refused_in_one_line(tmp_path: Path) -> None:
    """Issue 9 item 10: 2000-deep JSON used to raise RecursionError in the server."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    got: list[Command] = []
    async with ControlServer(tmp_path, recording_post(got)) as server:
        deep = await raw(server.port, b"[" * 2000 + b"]" * 2000 + b"\n")
        token = token_of(tmp_path)
        head = json.dumps({"token": token, "id": "n1", "trigger": "hold", "operator": "a"})
        inside = await raw(server.port, (head[:-1] + ', "reason": ' + "[" * 1900 + "]" * 1900
                                         + "}\n").encode())
        brackets_in_text = await raw(server.port, json.dumps(
            {"token": token, "id": "n2", "trigger": "stop", "operator": "a",
             "reason": "[[[[ {{ }} ]]]] \\\" ["}).encode() + b"\n")
        after = await send_command(tmp_path, "hold", "ann")
    for reply in (deep, inside):
        assert (reply["ok"], reply["status"]) == (False, "refused")
        assert reply["message"] == ("request must be one JSON object, nested at most once "
                                    "(data)")
    assert brackets_in_text["ok"] is True  # brackets inside strings are only text
    assert after["ok"] is True
    assert [(c.id, c.trigger) for c in got][0] == ("n2", "stop")
    assert got[0].reason == '[[[[ {{ }} ]]]] \\" ['
    assert [c.trigger for c in got] == ["stop", "hold"]
    assert loop_errors == []


async def test_client_survives_a_deeply_nested_reply(tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"[" * 2000 + b"]" * 2000 + b"\n")
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
    event = asyncio.Event()
    while not predicate():
        loop = asyncio.get_running_loop()
        loop.call_soon(event.set)
        await event.wait()
        event.clear()
