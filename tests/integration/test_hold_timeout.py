"""Hold timeouts run on real time, at any clock speed (issue 9 item 5, decision 0009).

A dry run at ``--speed max`` (or 600x) used to abort a held batch within seconds: the
60 min timeout ran on process time. Now the station's ``[hold]`` policy counts the real
seconds of the hold, a dry run's clock runs at real speed while held, and the live view
shows the countdown. Real time here is a fake the tests move; nothing sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.operator.console import hold_countdown
from controller.recipe.plan import load_recipe
from controller.recipe.station import HoldPolicy, Station, load_station, load_station_text
from controller.run.clock import ScaledClock, VirtualClock
from controller.run.commands import Command, CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import run_batch
from drivers.errors import ConfigurationError
from tests.conftest import PROFILES

SMOKE = PROFILES / "smoke-600.toml"


class FakeRealTime:
    """Real time that moves only when told: by ``tick_s`` per reading (a machine that runs
    the loop fast) and by whatever is slept."""

    def __init__(self, tick_s: float = 1e-4) -> None:
        self.t_s = 1000.0
        self.tick_s = tick_s
        self.slept_s = 0.0

    def __call__(self) -> float:
        self.t_s += self.tick_s
        return self.t_s

    async def sleep(self, seconds: float) -> None:
        self.t_s += seconds
        self.slept_s += seconds


# ----------------------------------------------------------------------- the clocks
async def test_a_dry_run_clock_waits_in_real_time_only_while_held() -> None:
    real = FakeRealTime(tick_s=0.0)
    clock = VirtualClock(real_time=real, sleep_real=real.sleep)
    await clock.sleep_until(100.0)
    assert (clock.now(), real.slept_s) == (100.0, 0.0)  # not held: instant
    clock.pace_for_hold(True)
    await clock.sleep_until(130.0)
    assert (clock.now(), real.slept_s) == (130.0, 30.0)  # held: 30 s of real time
    assert clock.real_s() == pytest.approx(30.0)
    clock.pace_for_hold(False)
    await clock.sleep_until(1000.0)
    assert (clock.now(), real.slept_s) == (1000.0, 30.0)


async def test_a_test_clock_without_real_time_stays_virtual() -> None:
    clock = VirtualClock()
    clock.pace_for_hold(True)
    await clock.sleep_until(3600.0)
    assert clock.real_s() == 3600.0  # virtual time stands in for real time


async def test_a_scaled_clock_runs_at_real_speed_while_held_if_asked() -> None:
    real = FakeRealTime(tick_s=0.0)
    clock = ScaledClock(600.0, real_time=real, sleep_real=real.sleep, pace_holds=True)
    real.t_s += 1.0
    assert clock.now() == pytest.approx(600.0)
    clock.pace_for_hold(True)
    real.t_s += 10.0
    assert clock.now() == pytest.approx(610.0)  # 1x while held
    clock.pace_for_hold(False)
    real.t_s += 1.0
    assert clock.now() == pytest.approx(1210.0)
    assert clock.real_s() == pytest.approx(12.0)
    served = ScaledClock(600.0, real_time=real, sleep_real=real.sleep)  # over the wire
    served.pace_for_hold(True)
    real.t_s += 1.0
    assert served.now() == pytest.approx(600.0)  # the served simulator keeps its pace


# ----------------------------------------------------------------------- the runner
def _station(timeout_min: float, on_timeout: str = "abort") -> Station:
    station, _ = load_station(None)
    return station.model_copy(update={"hold": HoldPolicy(timeout_min=timeout_min,
                                                         on_timeout=on_timeout)})


def _audit(batch: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (batch / "audit.jsonl").read_text().splitlines()]


async def _held_dry_run(tmp_path: Path, station: Station, *, resume_after_real_s: float | None,
                        shown: list[str]) -> tuple[Phase, list[dict[str, Any]], FakeRealTime,
                                                   list[tuple[float, float]]]:
    """The smoke recipe at ``--speed max`` with fake real time; one hold from the keys
    600 s in, and a resume after ``resume_after_real_s`` of real time (None: never)."""
    _, plan, frozen = load_recipe(SMOKE, {}, station)
    real = FakeRealTime()
    clock = VirtualClock(real_time=real, sleep_real=real.sleep)
    queue = CommandQueue()
    held_at: list[float] = []
    during: list[tuple[float, float]] = []  # (process s, real s) while held

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if snap.t_s > 600 and not held_at and runner.phase is Phase.RUNNING:
            queue.post(Command(trigger="hold", operator="ann", source="keys"))
            held_at.append(clock.real_s())
        if runner.phase is Phase.HELD:
            during.append((snap.t_s, clock.real_s()))
            shown.append(hold_countdown(snap, runner))
            if (resume_after_real_s is not None
                    and clock.real_s() - held_at[0] > resume_after_real_s):
                queue.post(Command(trigger="resume", operator="bob", source="keys",
                                   reason="checked the furnace"))

    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text="", clock=clock, batches_dir=tmp_path,
                             operator="pytest", observer=observer, commands=queue)
    return result.state, _audit(result.batch_dir), real, during


async def test_a_hold_at_max_speed_waits_the_stations_timeout_in_real_time(
        tmp_path: Path) -> None:
    shown: list[str] = []
    state, audit, real, during = await _held_dry_run(
        tmp_path, _station(timeout_min=10), resume_after_real_s=9 * 60, shown=shown)
    assert state is Phase.COMPLETED  # 9 min of a 10 min timeout: still there to resume
    changes = [(r["new"], r.get("operator")) for r in audit if r["event"] == "state_change"]
    assert ("held", "ann") in changes
    assert ("running", "bob") in changes
    # Held, the dry run ran at real speed: process time moved with real time.
    (t0_s, r0_s), (t1_s, r1_s) = during[0], during[-1]
    assert t1_s - t0_s == pytest.approx(r1_s - r0_s, abs=2.0)
    assert real.slept_s >= 9 * 60
    assert shown[0] == "hold: abort in 0:10:00 unless resumed"
    assert shown[-1].startswith(("hold: abort in 0:00:5", "hold: abort in 0:01:0"))


async def test_a_hold_nobody_lifts_ends_as_the_station_says_after_real_time(
        tmp_path: Path) -> None:
    shown: list[str] = []
    state, audit, real, during = await _held_dry_run(
        tmp_path, _station(timeout_min=5, on_timeout="stop"), resume_after_real_s=None,
        shown=shown)
    assert state is Phase.ABORTED  # the run's phase: a stop, like an abort, ends cooled
    ended = next(r for r in audit if r["event"] == "batch_ended")
    assert ended["outcome"] == "stopped"  # the record tells a stop from an abort (issue 11)
    stop = next(r for r in audit if r["event"] == "state_change" and r["new"] == "stopping")
    assert stop["reason"].startswith("held for more than 5 min of real time")
    held_real_s = during[-1][1] - during[0][1]
    assert held_real_s == pytest.approx(5 * 60, abs=4)  # not seconds, and not much later
    assert shown[-1] in ("hold: stop in 0:00:01 unless resumed",
                         "hold: stop in 0:00:00 unless resumed")


def test_the_hold_policy_is_checked_with_one_line_errors() -> None:
    text = (Path(__file__).parents[2] / "controller" / "builtin" / "sim.toml"
            ).read_text(encoding="utf-8")
    assert "timeout_min = 60.0" in text
    with pytest.raises(ConfigurationError, match=r"hold\.timeout_min"):
        load_station_text(text.replace("timeout_min = 60.0", "timeout_min = 0"), "s.toml")
    with pytest.raises(ConfigurationError, match=r"hold\.on_timeout"):
        load_station_text(text.replace('on_timeout = "abort"', 'on_timeout = "ignore"'),
                          "s.toml")
    station = load_station_text(text.replace("timeout_min = 60.0", "timeout_min = 240"),
                                "s.toml")
    assert station.hold.timeout_min == 240.0


def test_the_runner_counts_the_hold_in_real_seconds_not_process_seconds() -> None:
    """Over the wire at 600x the clock is not paced: process time races, real time does
    not. 59 min of real time at 600x is 590 h of process time, and the hold is still there."""
    from dataclasses import replace

    from tests.unit.test_runstate import STEPS, running, snap

    runner, state = running(_station(timeout_min=60), STEPS[1])
    runner.max_hold_s = 3600.0  # running() sets 600 s
    state, _ = runner.fire(state, "hold", 10.0, reason="test")
    for minute in range(60):
        t_s = 10.0 + minute * 60.0 * 600
        state, _ = runner.step(state, replace(snap(t_s, 25.0), real_s=minute * 60.0), [])
        assert state.phase is Phase.HELD, minute
    state, _ = runner.step(state, replace(snap(t_s + 600, 25.0), real_s=3601.0), [])
    assert state.phase is Phase.ABORTED  # at 25 °C the cool-down is over at once
    assert state.end_reason.startswith("held for more than 60 min of real time")


def test_a_hold_that_lifts_itself_waits_on_the_furnaces_time() -> None:
    """An O2 hold clears when the tube is clean again: it waits for the furnace, not for a
    person, so its timeout runs on process time (which a dry run compresses) and the dry
    run's clock is not slowed to real time for it (``awaits_person`` is False)."""
    from dataclasses import replace

    from controller.run.interlocks import Severity, Verdict
    from controller.run.runstate import awaits_person
    from tests.unit.test_runstate import STEPS, running, snap

    runner, state = running(_station(timeout_min=60), STEPS[1])
    runner.max_hold_s = 3600.0
    o2 = Verdict("o2_high", Severity.HOLD, 500.0, 100.0, "oxygen in the purged tube",
                 auto_resume_after_s=60.0)
    state, _ = runner.step(state, replace(snap(10.0, 25.0), real_s=0.0), [o2])
    assert state.phase is Phase.HELD
    assert not awaits_person(state)
    state, _ = runner.step(state, replace(snap(3000.0, 25.0), real_s=0.5), [o2])
    assert state.phase is Phase.HELD
    state, _ = runner.step(state, replace(snap(3620.0, 25.0), real_s=1.0), [o2])
    assert state.phase is Phase.ABORTED  # an hour of the furnace's time, 1 s of ours
    assert state.end_reason == "held for more than 60 min with o2_high not clearing"
