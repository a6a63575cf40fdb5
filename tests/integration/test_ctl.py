"""``furnace ctl`` end to end in one process: the client against the batch's real HTTP server
(uvicorn on its own thread, ``POST /api/commands``) whose commands go through a CommandQueue
that a stand-in scan loop drains each cycle into a real RecipeRunner; duplicate storms
(faults.md O7); console keys from a pty; Ctrl-C as SIGINT."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.operator.control_client import send_command
from controller.operator.keys import (
    InterruptPolicy,
    KeyCommands,
    KeyReader,
    install_interrupt_handler,
)
from controller.recipe.station import Station
from controller.recipe.steps import Dwell, End, Plan, Stage
from controller.run.clock import VirtualClock, WallClock
from controller.run.commands import Command, CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from tests.web import served

pytestmark = pytest.mark.timeout(30)


def make_runner(station: Station) -> RecipeRunner:
    plan = Plan("t", "T", (Stage("s", "Ar"),), (
        Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5, max_holdback_s=600),
        End(stage="s", label="e")))
    runner = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    runner.begin(0.0, 25.0)
    runner.preflight_done(0.0)
    return runner


@dataclass
class FakeScan:
    """The scan cycle's side of the queue: drain at the start of every cycle."""

    runner: RecipeRunner
    queue: CommandQueue
    applied: list[tuple[Command, Any]] = field(default_factory=list)
    cycles: int = 0
    checkpoint: bool = False

    async def run(self, clock: VirtualClock) -> None:
        next_t = clock.now()
        while True:
            self.applied += self.queue.apply_due(self.runner, at_checkpoint=self.checkpoint)
            self.cycles += 1
            next_t += 2.0
            await clock.sleep_until(next_t)

    def transitions(self, trigger: str) -> list[dict[str, Any]]:
        return [e.fields for e in self.runner.outbox
                if e.event == "state_change" and e.fields["trigger"] == trigger]


@asynccontextmanager
async def running(station: Station, tmp_path: Path, **server_kw: Any
                  ) -> AsyncIterator[FakeScan]:
    runner = make_runner(station)
    queue = CommandQueue(lambda: str(runner.phase))
    scan = FakeScan(runner, queue)
    task = asyncio.create_task(scan.run(VirtualClock()))
    try:
        async with served(tmp_path, station, queue=queue, runner=runner, **server_kw):
            yield scan
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_ctl_round_trip_applies_on_the_next_cycle(station: Station,
                                                        tmp_path: Path) -> None:
    async with running(station, tmp_path) as scan:
        held = await send_command(tmp_path, "hold", "ann")
        resumed = await send_command(tmp_path, "resume", "ann", "atmosphere re-checked")
        stopped = await send_command(tmp_path, "stop", "bob", "sample cracked")
        confirm = await send_command(tmp_path, "confirm", "bob")
    assert (held["status"], held["state"]) == ("applied", "held")
    assert resumed["state"] == "running"
    assert (stopped["state"], stopped["message"]) == ("stopping", "running -> stopping")
    assert confirm["ok"] is False
    assert "no operator step" in confirm["message"]
    assert scan.transitions("stop") == [{"old": "running", "new": "stopping",
                                         "trigger": "stop", "reason": "sample cracked",
                                         "operator": "bob"}]
    assert [c.source for c, _ in scan.applied] == ["ctl"] * 4


async def test_100_concurrent_duplicates_apply_exactly_once(station: Station,
                                                            tmp_path: Path) -> None:
    async with running(station, tmp_path) as scan:
        replies = await asyncio.gather(*(
            send_command(tmp_path, "abort", "ann", "double click", command_id="dup0")
            for _ in range(100)))
    assert all(r == replies[0] for r in replies)
    assert (replies[0]["status"], replies[0]["state"]) == ("applied", "aborting")
    assert len(scan.transitions("abort")) == 1
    assert len(scan.applied) == 1


async def test_duplicate_storm_with_idle_connections_open(station: Station,
                                                         tmp_path: Path) -> None:
    """No connection limit refuses a valid command (issue 9 item 11): 100 duplicates while
    64 idle connections are open are all answered alike, and applied once."""
    async with running(station, tmp_path) as scan:
        port = int(json.loads((tmp_path / "control.json").read_text())["port"])
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(64)]
        try:
            replies = await asyncio.gather(*(
                send_command(tmp_path, "hold", "ann", command_id="dup1")
                for _ in range(100)))
            after = await send_command(tmp_path, "hold", "ann", command_id="dup1")
        finally:
            for _, writer in idle:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for _, w in idle),
                                 return_exceptions=True)
    assert all(r == after for r in replies)
    assert (after["ok"], after["status"], after["state"]) == (True, "applied", "held")
    assert len(scan.transitions("hold")) == 1
    assert len(scan.applied) == 1


async def test_100_concurrent_holds_with_distinct_ids_change_state_once(
        station: Station, tmp_path: Path) -> None:
    async with running(station, tmp_path) as scan:
        replies = await asyncio.gather(*(send_command(tmp_path, "hold", f"op{i}")
                                         for i in range(100)))
    ok = [r for r in replies if r["ok"]]
    full = [r for r in replies if not r["ok"]]
    assert len(scan.transitions("hold")) == 1
    assert all(r["state"] == "held" for r in ok)
    assert sum(r["message"] == "already held" for r in ok) == len(ok) - 1
    # the queue holds at most 32 commands per cycle; the rest are refused, not lost
    assert len(ok) >= 32
    assert all("already waiting" in r["message"] for r in full)


# ----------------------------------------------------------------------- console keys
async def test_key_reader_on_a_non_tty_does_nothing(tmp_path: Path) -> None:
    keys: list[str] = []
    reader = KeyReader(keys.append, stream=io.StringIO("hsy"))
    assert reader.start() is False
    assert not reader.active
    reader.stop()
    reader.stop()
    r, w = os.pipe()
    with os.fdopen(r) as piped, KeyReader(keys.append, stream=piped) as reader2:
        assert not reader2.active
    os.close(w)
    assert keys == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals (pty, termios)")
async def test_key_reader_cbreak_on_a_pty_drives_the_runner(station: Station) -> None:
    import termios

    master, slave = os.openpty()
    tty_in = os.fdopen(slave, "r")
    before = termios.tcgetattr(slave)
    runner = make_runner(station)
    queue = CommandQueue(lambda: str(runner.phase))
    keys = KeyCommands("ann")
    seen: list[str] = []
    got = asyncio.Event()

    def on_key(key: str) -> None:
        seen.append(key)
        cmd = keys.feed(key)
        if cmd is not None:
            queue.post(cmd)
        got.set()

    async def wait_keys(n: int) -> None:
        while len(seen) < n:
            got.clear()
            await asyncio.wait_for(got.wait(), 5)

    reader = KeyReader(on_key, stream=tty_in)
    try:
        assert reader.start()
        assert reader.active
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & (termios.ICANON | termios.ECHO)
        assert lflag & termios.ISIG  # Ctrl-C still signals
        os.write(master, b"h")
        await wait_keys(1)
        queue.apply_due(runner, at_checkpoint=False)
        assert runner.phase is Phase.HELD
        os.write(master, b"s\x1b[A")  # stop, then an arrow key: cancelled
        await wait_keys(3)
        assert seen[1:] == ["s", "\x1b"]
        assert len(queue) == 0
        os.write(master, b"a")
        await wait_keys(4)
        assert "press y to abort" in keys.prompt
        os.write(master, b"y")
        await wait_keys(5)
        queue.apply_due(runner, at_checkpoint=False)
        assert str(runner.phase) == "aborting"
    finally:
        reader.stop()
        after = termios.tcgetattr(slave)
        tty_in.close()
        os.close(master)
    assert after == before
    assert not reader.active


# --------------------------------------------------------------------------- Ctrl-C
def _force_signal_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", unsupported)


@pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGINT) ends the process")
@pytest.mark.parametrize("path", ["add_signal_handler", "signal.signal (Windows)"])
async def test_ctrl_c_never_raises_and_follows_the_policy(
        station: Station, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path.startswith("signal.signal"):
        _force_signal_module(monkeypatch)
    runner = make_runner(station)
    queue = CommandQueue(lambda: str(runner.phase))
    policy = InterruptPolicy("ann")
    human = WallClock()
    hit = asyncio.Event()

    def on_interrupt() -> None:
        queue.post(policy.on_interrupt(human.now()))
        hit.set()

    async def press() -> None:
        hit.clear()
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(hit.wait(), 5)

    previous = signal.getsignal(signal.SIGINT)
    uninstall: Callable[[], None] = install_interrupt_handler(asyncio.get_running_loop(),
                                                              on_interrupt)
    try:
        await press()
        [(_, waiting)] = queue.apply_due(runner, at_checkpoint=False)
        assert waiting.message == "waiting for the next checkpoint"
        assert runner.phase is Phase.RUNNING
        await press()
        [(_, superseded), (cmd, result)] = queue.apply_due(runner, at_checkpoint=False)
        assert superseded.status == "superseded"
        assert (cmd.reason, result.state) == ("Ctrl-C twice: hold now", "held")
        await press()
        queue.apply_due(runner, at_checkpoint=False)
        assert str(runner.phase) == "aborting"
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGINT) is previous
