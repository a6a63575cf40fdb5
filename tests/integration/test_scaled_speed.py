"""``--speed N`` faster than the machine can simulate (issue 9 item 7): the in-process batch
on a ``ScaledClock`` whose real time is a pretend machine, so nothing depends on this one.

Simulating costs CPU time in proportion to the process time simulated; at 5000x this machine
needs 1.25 s to simulate one real second's worth. Plain scaled time then ran away: each
scan covered more process time than the last, the ramp's setpoint ran hundreds of kelvin
ahead of what the instrument (rate-limited to the ramp rate) could follow, and the healthy
smoke batch held in holdback and aborted. The clock now waits for the loop.
"""

from __future__ import annotations

import pytest

from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.recipe.steps import Ramp
from controller.run.clock import ClockSlowdown, ScaledClock, VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import run_batch
from controller.station_factory import build_devices
from tests.conftest import PROFILES

SPEED = 5000
CPU_S_PER_SIMULATED_S = 0.25e-3  # 1.25 s of CPU per real second at 5000x: cannot keep up
CPU_S_PER_CYCLE = 1e-3  # reading, deciding, writing, recording


class LoadedMachine:
    """Real time of a busy machine: it passes when the clock sleeps on it and while the
    simulator integrates (``charge``); sleeping yields to the event loop once."""

    def __init__(self) -> None:
        self._time = VirtualClock(start_s=1000.0)

    def __call__(self) -> float:
        return self._time.now()

    async def sleep(self, seconds: float) -> None:
        await self._time.sleep(seconds)

    def charge(self, cpu_s: float) -> None:
        self._time._now += cpu_s


@pytest.mark.slow  # the whole smoke batch
async def test_a_batch_faster_than_the_machine_slows_down_and_completes(tmp_path) -> None:
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(PROFILES / "smoke-600.toml", {}, station)
    machine = LoadedMachine()
    events: list[ClockSlowdown] = []
    clock = ScaledClock(SPEED, period_s=station.scan_period_s, real_time=machine,
                        sleep_real=machine.sleep, on_slowdown=events.append)
    built = build_devices(station, clock, material=plan.material)
    world = built.world
    assert world is not None
    bus = built.buses[0]

    def now_then_simulate() -> float:  # the bus advances the world to now(): CPU time
        t_s = clock.now()
        machine.charge(max(t_s - world.now_s, 0.0) * CPU_S_PER_SIMULATED_S)
        return t_s

    bus._now = now_then_simulate  # type: ignore[attr-defined]
    lag_c: list[float] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        machine.charge(CPU_S_PER_CYCLE)
        if isinstance(runner.current_step, Ramp):  # heating 10 °C/min to 600 °C
            lag_c.append(runner.setpoint_c - world.truth().working_sp_c)

    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=clock, batches_dir=tmp_path,
                             operator="pytest", observer=observer, built=built)
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    # the instrument follows the ramp within a few scans' worth of setpoint
    assert lag_c
    assert max(lag_c) < 2.0, max(lag_c)
    # and it was said, once, with the speed this machine manages
    assert [e.kind for e in events] == ["slowed"]
    assert clock.slowed_to_speed is not None
    assert 100 < clock.slowed_to_speed < SPEED
    assert events[0].speed == pytest.approx(clock.slowed_to_speed, rel=0.5)
