"""SIGTERM, SIGHUP and SIGBREAK as a ``halt`` command (issue 9 item 3): the command only the
process may post, the queue never refusing it, the policy (the first signal halts, later
ones change nothing), the handlers on both platforms' paths (Windows through a stand-in
``signal`` module, since its loop has no ``add_signal_handler``), and a console whose
reader went away."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from controller.operator.console import LiveView, TerminalConsole, hang_up
from controller.operator.control_client import send_command
from controller.operator.keys import (
    SYSTEM_OPERATOR,
    InterruptPolicy,
    TerminationPolicy,
    install_termination_handlers,
)
from controller.recipe.plan import summarize
from controller.recipe.station import Station
from controller.recipe.steps import Dwell, End, Plan, Stage
from controller.records.folder import CONTROL_FILE
from controller.run.commands import (
    STARTING,
    Command,
    CommandQueue,
    Status,
    apply_command,
)
from controller.run.handle import RecipeRunner
from controller.run.snapshot import Snapshot
from drivers.errors import ConfigurationError
from drivers.roles import ControllerReading
from tests.web import served, url_of

pytestmark = pytest.mark.timeout(20)


def runner(station: Station) -> RecipeRunner:
    plan = Plan("t", "T", (Stage("s", "Ar"),), (
        Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5, max_holdback_s=600),
        End(stage="s", label="e")))
    r = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    r.begin(0.0, 25.0)
    r.preflight_done(0.0)
    return r


def halt(name: str = "SIGTERM") -> Command:
    cmd = TerminationPolicy().on_signal(name)
    assert cmd is not None
    return cmd


# ---------------------------------------------------------------- the halt command
def test_the_first_signal_halts_and_later_ones_change_nothing() -> None:
    policy = TerminationPolicy()
    cmd = policy.on_signal("SIGHUP")
    assert cmd is not None
    cmd.validate()
    assert (cmd.trigger, cmd.operator, cmd.source) == ("halt", SYSTEM_OPERATOR, "signal")
    assert cmd.reason.startswith("SIGHUP: the terminal or SSH session")
    assert "instrument's fallback" in cmd.reason
    assert policy.halting == "SIGHUP"
    assert policy.on_signal("SIGTERM") is None
    assert policy.on_signal("SIGHUP") is None
    assert policy.halting == "SIGHUP"
    assert halt("SIGBREAK").reason.startswith("SIGBREAK: Ctrl-Break")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"trigger": "halt", "reason": "r"}, "only by the controller itself"),
    ({"trigger": "halt", "reason": "r", "source": "keys"}, "only by the controller itself"),
    ({"trigger": "stop", "reason": "r", "source": "signal"}, "a signal only halts"),
    ({"trigger": "halt", "reason": " ", "source": "signal"}, "needs a reason"),
])
def test_only_the_process_halts_and_always_says_why(kwargs: dict[str, Any],
                                                    match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        Command(operator="ann", **kwargs).validate()
    assert "\n" not in str(info.value)


def test_a_halt_applies_on_the_real_runner_and_is_audited(station: Station) -> None:
    r = runner(station)
    result = apply_command(r, halt())
    assert (result.status, result.state, result.message) == (
        Status.APPLIED, "faulted", "running -> faulted")
    assert not r.run.heater_off
    assert r.run.end_reason.startswith("SIGTERM: ")
    change = [e.fields for e in r.outbox if e.event == "state_change"][-1]
    assert (change["new"], change["operator"]) == ("faulted", "system")
    assert any(e.event == "halt" for e in r.outbox)
    again = apply_command(r, halt("SIGHUP"))
    assert (again.status, again.message) == (Status.APPLIED, "already faulted")


def test_the_queue_never_refuses_a_halt_and_it_supersedes_a_deferred_hold(
        station: Station) -> None:
    q = CommandQueue(lambda: "running", max_pending=2)
    deferred = InterruptPolicy("ann").on_interrupt(0.0)
    q.post(deferred)
    q.post(Command(trigger="confirm", operator="ann"))
    assert q.post(Command(trigger="hold", operator="ann")).status is Status.REFUSED  # full
    cmd = halt()
    assert q.post(cmd).status is Status.QUEUED
    done = q.apply_due(runner(station), at_checkpoint=False)
    assert [(c.trigger, r.status) for c, r in done] == [
        ("hold", Status.SUPERSEDED), ("confirm", Status.REFUSED), ("halt", Status.APPLIED)]
    assert CommandQueue().state() == STARTING


async def test_furnace_ctl_cannot_halt(station: Station, tmp_path: Path) -> None:
    """An operator ends a batch with stop or abort, which keep the PC supervising the
    cool-down; a halt abandons supervision and is only for a process that is going away."""
    queue = CommandQueue(lambda: "running")
    async with served(tmp_path, station, queue=queue):
        token = json.loads((tmp_path / CONTROL_FILE).read_text())["token"]
        req = {"id": "h1", "trigger": "halt", "operator": "ann", "reason": "going home"}
        async with httpx.AsyncClient(base_url=url_of(tmp_path), trust_env=False) as client:
            response = await client.post("/api/commands", json=req,
                                         headers={"Authorization": f"Bearer {token}"})
        reply = response.json()
        with pytest.raises(ConfigurationError, match="only by the controller itself"):
            await send_command(tmp_path, "halt", "ann", "going home")
    assert (reply["ok"], reply["status"]) == (False, "refused")
    assert "only by the controller itself" in reply["message"]
    assert len(queue) == 0


# ---------------------------------------------------------------------- handlers
class WindowsSignal:
    """Stands in for the ``signal`` module on Windows: SIGTERM and SIGBREAK, no SIGHUP."""

    SIG_DFL = signal.SIG_DFL
    SIG_IGN = signal.SIG_IGN
    SIGTERM = 15
    SIGBREAK = 21

    def __init__(self) -> None:
        self.handlers: dict[int, Any] = {self.SIGTERM: self.SIG_DFL,
                                         self.SIGBREAK: self.SIG_DFL}

    def getsignal(self, signum: int) -> Any:
        return self.handlers[signum]

    def signal(self, signum: int, handler: Any) -> Any:
        previous, self.handlers[signum] = self.handlers[signum], handler
        return previous


class ProactorLike:
    """A Windows event loop as far as signals go: no ``add_signal_handler``."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.closed = False

    def add_signal_handler(self, *args: object) -> None:
        raise NotImplementedError

    def call_soon_threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.scheduled.append((callback, args))


def test_windows_branch_hands_sigbreak_and_sigterm_to_the_loop_and_restores() -> None:
    module, loop = WindowsSignal(), ProactorLike()
    previous_term = module.handlers[module.SIGTERM] = lambda signum, frame: None
    got: list[str] = []
    uninstall = install_termination_handlers(loop, got.append, module=module)  # type: ignore[arg-type]
    for signum in (module.SIGBREAK, module.SIGTERM):
        handler = module.handlers[signum]
        assert callable(handler)
        handler(signum, None)  # what the C runtime calls, between two bytecodes
    assert got == []  # nothing runs in the handler itself: only scheduled on the loop
    for callback, args in loop.scheduled:
        callback(*args)
    assert got == ["SIGBREAK", "SIGTERM"]
    loop.closed = True
    module.handlers[module.SIGBREAK](module.SIGBREAK, None)  # run over: no error
    uninstall()
    assert module.handlers == {module.SIGTERM: previous_term, module.SIGBREAK: module.SIG_DFL}


def test_a_signal_the_process_inherited_as_ignored_stays_ignored() -> None:
    """``nohup`` ignores SIGHUP on purpose: a hangup must then not halt the run."""
    module, loop = WindowsSignal(), ProactorLike()
    module.handlers[module.SIGTERM] = module.SIG_IGN
    module.handlers[module.SIGBREAK] = None  # a handler set outside Python
    uninstall = install_termination_handlers(loop, lambda name: None, module=module)  # type: ignore[arg-type]
    assert module.handlers[module.SIGTERM] is module.SIG_IGN
    assert callable(module.handlers[module.SIGBREAK])
    uninstall()
    assert module.handlers[module.SIGBREAK] is module.SIG_DFL  # not None: that would raise


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals to this very process")
async def test_posix_branch_routes_sigterm_and_sighup_through_the_loop() -> None:
    got: list[str] = []
    arrived = asyncio.Event()

    def on_signal(name: str) -> None:
        got.append(name)
        arrived.set()

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    uninstall = install_termination_handlers(asyncio.get_running_loop(), on_signal)
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            arrived.clear()
            os.kill(os.getpid(), signum)
            await asyncio.wait_for(arrived.wait(), 5)
    finally:
        uninstall()
    assert got == ["SIGTERM", "SIGHUP"]
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGHUP on Windows")
async def test_posix_sighup_ignored_by_nohup_is_left_alone() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        uninstall = install_termination_handlers(asyncio.get_running_loop(),
                                                 lambda name: None)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        uninstall()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


# ---------------------------------------------------------------------- console
class BrokenPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_console_whose_reader_went_away_goes_quiet_instead_of_exiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as below
    console = TerminalConsole(file=BrokenPipe())
    console.print("the batch goes on")  # rich's own Console raises SystemExit here
    assert console.quiet
    console.print("and nothing more is written")
    other = TerminalConsole(file=io.StringIO())
    hang_up(other)
    other.print("nobody reads this")
    assert other.quiet
    assert other.file.getvalue() == ""  # type: ignore[attr-defined]


class HungUp(io.StringIO):
    """A terminal after its SSH session closed: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")

    def isatty(self) -> bool:
        return True


def test_the_live_view_never_ends_the_scan_loop_for_want_of_a_terminal(
        station: Station, monkeypatch: pytest.MonkeyPatch) -> None:
    # hang_up also silences logging's consoles: none of this test process's, please
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    r = runner(station)
    reading = ControllerReading(25.0, 25.0, 0.0, False, False, False, False, False)
    snap = Snapshot(2.0, reading, MappingProxyType({}), None)
    console = TerminalConsole(file=HungUp(), force_terminal=True)
    with LiveView(console, summarize(r.plan, station), compact=True) as view:
        view(snap, r)  # rich raises OSError from its first write
        assert console.quiet
        view(snap, r)
