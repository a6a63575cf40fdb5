"""The clocks: ``ScaledClock`` never lets process time run ahead of what the scan loop (and
so the simulator advanced to it) has caught up with; ``VirtualClock`` is discrete-event.

Real time is a fake here (``FakeMachine``): it moves only when the clock sleeps on it or when
a test charges it the cost of a cycle's work, so nothing depends on this machine's speed.
"""

from __future__ import annotations

import logging
import math

import pytest

from controller.run.clock import (
    LATE_FRACTION,
    MAX_SPEED,
    MIN_SPEED,
    ClockSlowdown,
    ScaledClock,
    VirtualClock,
    check_speed,
)

PERIOD_S = 2.0


class FakeMachine:
    """Real seconds of a pretend machine: advanced by sleeping or by ``work``."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept_s: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.t += seconds

    def work(self, seconds: float) -> None:
        self.t += seconds


def _clock(machine: FakeMachine, speed: float, events: list[ClockSlowdown],
           start_s: float = 0.0, period_s: float | None = PERIOD_S) -> ScaledClock:
    return ScaledClock(speed, start_s, period_s=period_s, real_time=machine,
                       sleep_real=machine.sleep, on_slowdown=events.append)


class ScanLoop:
    """The scan loop's timing as ``controller.run.scan`` does it: absolute deadlines, read the
    clock during the cycle (the snapshot time), ``sleep_until(next_t)``."""

    def __init__(self, clock: ScaledClock, machine: FakeMachine) -> None:
        self.clock, self.machine = clock, machine
        self.next_t = clock.now()
        self.snapshots: list[float] = []  # process time of each cycle's snapshot
        self.lateness_s: list[float] = []  # how far past its deadline each ask came

    async def cycle(self, work_s: float) -> None:
        self.machine.work(work_s / 2)  # reading the devices
        self.snapshots.append(self.clock.now())
        self.machine.work(work_s / 2)  # deciding, writing, recording
        self.next_t += PERIOD_S
        self.lateness_s.append(self.clock.now() - self.next_t)
        await self.clock.sleep_until(self.next_t)


async def test_a_loop_that_keeps_up_sees_exactly_scaled_real_time() -> None:
    machine, events = FakeMachine(), []
    clock = _clock(machine, 600, events, start_s=50.0)
    real0 = machine.t
    loop = ScanLoop(clock, machine)
    for _ in range(200):
        await loop.cycle(work_s=0.001)  # 0.6 s of process time: well inside 2 s
    assert clock.now() == pytest.approx(50.0 + (machine.t - real0) * 600)
    assert clock.now() == pytest.approx(loop.next_t)
    assert [b - a for a, b in zip(loop.snapshots, loop.snapshots[1:], strict=False)] == \
        pytest.approx([PERIOD_S] * 199)
    assert events == []
    assert clock.slowed_to_speed is None
    assert clock.skipped_s == 0.0


async def test_an_overloaded_loop_slows_process_time_instead_of_jumping_ahead(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each cycle takes 10 ms at 1200x (12 s of process time for a 2 s period). Plain scaled
    time would write each ramp setpoint 12 s apart and run behind its deadlines for good;
    here process time waits for the loop, and the clock says so once."""
    machine, events = FakeMachine(), []
    clock = _clock(machine, 1200, events)
    real0 = machine.t
    loop = ScanLoop(clock, machine)
    seen: list[float] = []
    with caplog.at_level(logging.WARNING, logger="controller.run.clock"):
        for _ in range(300):
            await loop.cycle(work_s=0.010)
            seen.append(clock.now())
    # never more than LATE_FRACTION of a period late, so no catch-up burst
    assert max(loop.lateness_s) <= LATE_FRACTION * PERIOD_S + 1e-9
    # one cycle per period of process time, as on the virtual clock
    gaps = [b - a for a, b in zip(loop.snapshots, loop.snapshots[1:], strict=False)]
    assert min(gaps) > 0
    assert max(gaps) <= (2 + LATE_FRACTION) * PERIOD_S + 1e-9
    assert sum(gaps) / len(gaps) == pytest.approx(PERIOD_S, rel=0.01)
    assert seen == sorted(seen)  # never backwards
    assert clock.now() <= (machine.t - real0) * 1200  # never ahead of elapsed x speed
    # said once, with the speed the machine manages: 2 s per 10 ms = 200x
    warnings = [r for r in caplog.records if "faster than this machine" in r.getMessage()]
    assert len(warnings) == 1
    assert [e.kind for e in events] == ["slowed"]
    assert events[0].requested_speed == 1200
    assert events[0].speed == pytest.approx(200, rel=0.1)
    assert clock.slowed_to_speed == pytest.approx(200, rel=0.1)
    assert clock.skipped_s > 0


async def test_the_clock_speeds_up_again_when_the_load_goes() -> None:
    machine, events = FakeMachine(), []
    clock = _clock(machine, 1200, events)
    loop = ScanLoop(clock, machine)
    for _ in range(20):
        await loop.cycle(work_s=0.010)
    assert clock.slowed_to_speed is not None
    for _ in range(5):
        await loop.cycle(work_s=0.0005)
    t0, real0 = clock.now(), machine.t
    for _ in range(100):
        await loop.cycle(work_s=0.0005)
    assert clock.now() - t0 == pytest.approx((machine.t - real0) * 1200)
    assert [e.kind for e in events] == ["slowed"]  # not said again


async def test_a_stall_is_not_simulated_and_is_reported() -> None:
    """The loop is away for 5 s of real time (a frozen process) at 600x: 3000 s of process
    time that nobody simulated. The next cycle carries on from its deadline, not 50 min
    later, so the next setpoint moves one period's worth."""
    machine, events = FakeMachine(), []
    clock = _clock(machine, 600, events)
    loop = ScanLoop(clock, machine)
    for _ in range(10):
        await loop.cycle(work_s=0.001)
    before = loop.snapshots[-1]
    machine.work(5.0)
    await loop.cycle(work_s=0.001)
    assert loop.snapshots[-1] - before <= (2 + LATE_FRACTION) * PERIOD_S
    assert events == []  # away once, or slow from now on? The next deadline tells
    await loop.cycle(work_s=0.001)
    assert [e.kind for e in events] == ["stalled"]
    assert events[0].skipped_s == pytest.approx(3000, rel=0.01)
    assert clock.skipped_s == events[0].skipped_s
    assert clock.slowed_to_speed is None  # once away is not a slow machine
    for _ in range(10):
        await loop.cycle(work_s=0.001)
    assert loop.snapshots[-1] - loop.snapshots[-2] == pytest.approx(PERIOD_S)


async def test_without_a_period_the_first_cycle_leaves_a_backlog_that_never_grows() -> None:
    machine, events = FakeMachine(), []
    clock = _clock(machine, 1200, events, period_s=None)
    loop = ScanLoop(clock, machine)
    for _ in range(100):
        await loop.cycle(work_s=0.010)
    assert max(loop.lateness_s[1:]) <= loop.lateness_s[1] + 1e-9
    gaps = [b - a for a, b in zip(loop.snapshots[2:], loop.snapshots[3:], strict=False)]
    assert max(gaps) <= (2 + LATE_FRACTION) * PERIOD_S + 1e-9
    for _ in range(100):  # fast again: it catches up and sleeps
        await loop.cycle(work_s=0.0001)
    assert loop.lateness_s[-1] < 0


async def test_the_physics_never_lags_the_controller() -> None:
    """In-process, each cycle advances the simulator to ``now()``: its cost grows with the
    process time covered (here 0.3 ms of CPU per simulated second at 5000x, so simulating
    takes longer than the time simulated: 1.5 real s per real s). Plain scaled time runs
    away (each cycle covers more than the last); this clock keeps each cycle's span and so
    the ramp's setpoint step bounded."""
    machine, events = FakeMachine(), []
    clock = _clock(machine, 5000, events)
    loop = ScanLoop(clock, machine)
    simulated_s = clock.now()
    steps_c: list[float] = []
    rate_c_per_min = 10.0
    for _ in range(500):
        span_s = clock.now() - simulated_s
        machine.work(0.0005 + 0.0003 * span_s)  # world.advance_to(now()) and the cycle
        simulated_s = clock.now()
        steps_c.append(rate_c_per_min * span_s / 60.0)
        next_t = loop.next_t + PERIOD_S
        loop.next_t = next_t
        await clock.sleep_until(next_t)
    assert max(steps_c[3:]) <= rate_c_per_min * (2 + LATE_FRACTION) * PERIOD_S / 60.0
    assert clock.slowed_to_speed is not None
    assert clock.slowed_to_speed < 5000
    assert not math.isinf(clock.now())


async def test_sleep_still_moves_process_time_by_its_duration() -> None:
    machine, events = FakeMachine(), []
    clock = _clock(machine, 600, events)
    loop = ScanLoop(clock, machine)
    for _ in range(5):
        await loop.cycle(work_s=0.001)
    t0 = clock.now()
    await clock.sleep(120.0)
    assert clock.now() >= t0 + 120.0 - 1e-9
    assert machine.slept_s[-1] == pytest.approx(120.0 / 600)


@pytest.mark.parametrize("speed", [math.inf, -math.inf, math.nan, 1e-320, 0.0, -1.0, 0.5,
                                   1e308, MAX_SPEED * 1.01])
def test_scaled_clock_refuses_absurd_speeds(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be from"):
        ScaledClock(speed)


def test_speed_bounds_are_inclusive() -> None:
    assert check_speed(MIN_SPEED) == MIN_SPEED
    assert check_speed(MAX_SPEED) == MAX_SPEED


async def test_virtual_clock_jumps_to_each_deadline() -> None:
    clock = VirtualClock(start_s=10.0)
    await clock.sleep_until(12.5)
    assert clock.now() == 12.5
    await clock.sleep_until(11.0)  # a deadline in the past does not move time back
    assert clock.now() == 12.5
    await clock.sleep(-3.0)
    assert clock.now() == 12.5
    await clock.sleep(2.0)
    assert clock.now() == 14.5
