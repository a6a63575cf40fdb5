"""SIGTERM and SIGHUP end a running batch the safe way (issue 9 item 3): ``furnace run`` as a
process, signalled once its batch is running, ends faulted with exit code 1, the halt
command and the safe state in the audit, a summary naming the signal, control.json removed
and a chain that verifies; a second signal, or Ctrl-C, while halting changes nothing, and
neither does a terminal that has gone away. In-process: SIGTERM in the middle of a heating
ramp leaves the simulated instrument on its own local fallback, heater not forced off, inert
gas flowing. (Windows' SIGBREAK path is covered in tests/unit/test_signals.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from controller import cli_station
from controller.recipe.steps import Ramp
from controller.records.folder import CONTROL_FILE, BatchFolder
from controller.run.clock import VirtualClock
from controller.run.commands import CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import BatchResult
from tests.integration.helpers import furnace, in_process
from tests.integration.recipes import SIGNAL, write

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(sys.platform == "win32",
                                 reason="POSIX signals; SIGBREAK is unit-tested")]

# Slow enough that a 2-core machine under load is still in the batch when the signal
# comes (the purge alone is 12 s of wall time), fast enough to end at once after it.
SPEED = "60"


def _recipe(tmp: Path) -> Path:
    """Heated at the built-in instrument's fallback rate: not capped, one rate limit."""
    return write(tmp, SIGNAL, "signal.toml")


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """A test that fails while its furnace process still runs kills it: no batch goes on
    heating (and competing for the cores) behind the rest of the suite."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(tmp: Path, **streams: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(furnace("run", str(_recipe(tmp)), "--speed", SPEED, "--batches",
                                    str(tmp / "b"), "--operator", "ann"),
                            stdin=subprocess.DEVNULL, **streams)
    _STARTED.append(proc)
    return proc


def _wait_running(proc: subprocess.Popen[bytes], batches: Path,
                  drain: int | None = None) -> Path:
    """The batch folder, once its control.json exists (the scan loop is set up and the
    signal handlers installed). Bounded: short waits on the process, no sleeping."""
    for _ in range(1200):  # 60 s
        found = list(batches.glob(f"*/{CONTROL_FILE}"))
        if found:
            return found[0].parent
        if drain is not None:  # keep the terminal's buffer from filling up
            with contextlib.suppress(OSError):  # BlockingIOError: nothing to read
                os.read(drain, 65536)
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"furnace run ended early with exit code {proc.returncode}")
    proc.kill()
    raise AssertionError("the batch did not start within 60 s")


def _signal_self(signum: int) -> None:
    """Send ``signum`` to this test process, but only once a handler has taken it over: on
    a regression the test fails instead of the default action ending the whole run."""
    if signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN, None):
        raise AssertionError(f"no handler for {signal.Signals(signum).name}")
    os.kill(os.getpid(), signum)


def _audit(batch: Path) -> list[dict[str, Any]]:
    return list(BatchFolder(batch).read_audit())


def _assert_halted_safely(batch: Path, name: str) -> dict[str, Any]:
    """Everything a halt on ``name`` must leave behind; returns the audit's safe state."""
    summary = json.loads((batch / "summary.json").read_text("utf-8"))
    assert summary["outcome"] == "faulted"
    assert summary["end_reason"].startswith(f"{name}: ")
    assert not (batch / CONTROL_FILE).exists()
    records = _audit(batch)
    [command] = [r for r in records if r["event"] == "operator_command"]
    assert (command["trigger"], command["source"], command["operator"], command["status"]) \
        == ("halt", "signal", "system", "applied")
    assert command["reason"].startswith(f"{name}: ")
    [fault] = [r for r in records if r["event"] == "state_change" and r["new"] == "faulted"]
    assert (fault["trigger"], fault["operator"]) == ("fault", "system")
    [safe] = [r for r in records if r["event"] == "safe_state"]
    assert safe["outputs"]["furnace"].startswith("local setpoint")  # not "output 0 %"
    assert safe["outputs"]["Ar"].endswith("sccm")
    assert records[-1]["event"] == "batch_ended"
    assert records[-1]["outcome"] == "faulted"
    verify = subprocess.run(furnace("verify", str(batch)), capture_output=True,
                            timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return safe


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_signal_halts_the_batch_with_a_summary(tmp_path: Path, name: str) -> None:
    out, err = (tmp_path / "out.txt").open("wb"), (tmp_path / "err.txt").open("wb")
    with out, err:
        proc = _start(tmp_path, stdout=out, stderr=err)
        batch = _wait_running(proc, tmp_path / "b")
        os.kill(proc.pid, getattr(signal, name))
        code = proc.wait(timeout=60)
    log = (tmp_path / "err.txt").read_text("utf-8", "replace")
    assert code == 1, log
    _assert_halted_safely(batch, name)
    assert "Traceback" not in log


def test_two_signals_at_once_halt_once(tmp_path: Path) -> None:
    """systemd may follow SIGTERM with SIGHUP; an OS shutdown signals everyone. Whichever
    the process takes first halts; the other is logged and ignored, the safe shutdown runs
    to the end."""
    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        proc = _start(tmp_path, stdout=out, stderr=err)
        batch = _wait_running(proc, tmp_path / "b")
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGHUP)
        code = proc.wait(timeout=60)
    assert code == 1
    first = json.loads((batch / "summary.json").read_text("utf-8"))["end_reason"].split(":")[0]
    assert first in ("SIGTERM", "SIGHUP")
    _assert_halted_safely(batch, first)  # one halt command, one safe state, one summary


def test_sighup_with_the_terminal_gone_still_halts_cleanly(tmp_path: Path) -> None:
    """A closed SSH session: the terminal hangs up (writes fail with EIO), then SIGHUP. The
    batch still ends the safe way and the exit code is 1, not 120 (a failed flush at exit)
    nor death by signal."""
    import pty  # POSIX only (the module is skipped on Windows, but still imported)

    master, slave = pty.openpty()
    try:
        proc = _start(tmp_path, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    try:
        batch = _wait_running(proc, tmp_path / "b", drain=master)
    finally:
        os.close(master)  # the terminal is gone
    os.kill(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=60) == 1
    _assert_halted_safely(batch, "SIGHUP")


def test_a_signal_before_the_batch_exists_just_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still connecting: nothing written, nothing to halt; the run is cancelled (the CLI
    says "interrupted", exit 1) and the handlers are put back."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # no console keys

    class View:
        started = False
        console = Console(file=io.StringIO())

    async def never_starts(commands: CommandQueue) -> BatchResult:
        _signal_self(signal.SIGTERM)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(cli_station._with_console(View(), "ann", never_starts))  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_while_halting_another_signal_or_ctrl_c_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """After the first SIGTERM: a second one, and five Ctrl-C (which would otherwise cancel
    the run and lose its summary), are logged and ignored; only the halt is queued."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # no console keys
    queued: list[CommandQueue] = []

    class View:
        started = True  # the batch is under way: Ctrl-C would post or cancel
        console = Console(file=io.StringIO())

    async def halting(commands: CommandQueue) -> BatchResult:
        commands.state = lambda: "running"  # as the scan loop does when it attaches
        queued.append(commands)
        _signal_self(signal.SIGTERM)
        for signum in (signal.SIGTERM, *[signal.SIGINT] * 5):
            _signal_self(signum)
        clock = VirtualClock()
        for _ in range(1000):  # let the loop take the signals (no real time passes)
            if sum("ignored" in r.getMessage() for r in caplog.records) == 6:
                break
            await clock.sleep(0.0)
        return BatchResult(Path("."), Phase.FAULTED, {})

    caplog.set_level("WARNING")
    # What was there before (a job started in the background by a non-interactive shell
    # inherits SIGINT ignored; Python then installs no default_int_handler): it must be
    # back afterwards, whatever it was.
    sigint_before = signal.getsignal(signal.SIGINT)
    result = asyncio.run(cli_station._with_console(View(), "ann", halting))  # type: ignore[arg-type]
    assert result.state is Phase.FAULTED  # not cancelled
    [commands] = queued
    [halt] = commands.take(at_checkpoint=True)
    assert (halt.trigger, halt.source) == ("halt", "signal")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Ctrl-C ignored: halting on SIGTERM") == 5
    assert messages.count("SIGTERM ignored: already halting on SIGTERM") == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is sigint_before


async def test_sigterm_during_a_heating_ramp_leaves_the_instrument_on_its_local_fallback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, so the simulator's truth can be read: the instrument is in auto on its
    local setpoint (remote deselected), ramping down at its own rate limit with the heater
    under its own PID (not manual 0 %), and argon flows."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # no console keys
    sim = in_process(tmp_path, SIGNAL, "signal.toml")
    station, clock, world = sim.station, sim.clock, sim.world
    sent: list[float] = []

    class View:
        started = True
        console = Console(file=io.StringIO())

        def __call__(self, snap: Snapshot, runner: RecipeRunner) -> None:
            if not sent and isinstance(runner.current_step, Ramp) and snap.furnace_c > 300:
                sent.append(snap.t_s)
                _signal_self(signal.SIGTERM)  # as systemctl stop would

    view = View()
    result = await cli_station._with_console(view, "ann", lambda commands: sim.run(  # type: ignore[arg-type]
        tmp_path / "b", operator="ann", observer=view, commands=commands))
    assert result.state is Phase.FAULTED
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    records = _audit(result.batch_dir)
    [fault] = [r for r in records if r["event"] == "state_change" and r["new"] == "faulted"]
    assert fault["old"] == "running"
    assert fault["t_s"] - sent[0] <= 3 * station.scan_period_s  # the next cycle or so
    last_step = [r for r in records if r["event"] == "step_started"
                 and r["t_s"] <= fault["t_s"]][-1]
    assert last_step["kind"] == "ramp"  # halted in the middle of the heating ramp
    furnace = world.furnace
    assert not furnace.remote_selected
    assert not furnace.manual
    assert furnace.active_setpoint_c == pytest.approx(station.envelope.ambient_c)
    rate_c_per_min = furnace.bank.get("SP.RAT")
    assert 0 < rate_c_per_min <= station.envelope.max_cooling_rate_c_per_min
    before_c, hot_c = furnace.working_sp_c, furnace.truth.furnace_c
    world.advance_to(clock.now() + 600.0)  # ten minutes with nobody at the PC
    assert before_c - furnace.working_sp_c == pytest.approx(10 * rate_c_per_min, abs=0.5)
    assert hot_c - furnace.truth.furnace_c <= 10 * station.envelope.max_cooling_rate_c_per_min
    flows = world.truth().flows_sccm
    assert flows["Ar"] > 100.0
    assert flows["air"] == 0.0
