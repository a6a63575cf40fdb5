"""The one clock. The only module that touches real time.

Not here: anything that decides *when* to act (that is the scan cycle's job).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "Clock",
    "ClockSlowdown",
    "ScaledClock",
    "VirtualClock",
    "WallClock",
    "check_speed",
    "utc_now",
    "wait_real",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Clock(Protocol):
    """Monotonic process time in float seconds, and UTC wall time for records."""

    def now(self) -> float:
        """Seconds since an arbitrary epoch; never goes backwards."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t``. Cancellable."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time. Cancellable."""
        ...

    def wall(self) -> datetime:
        """The UTC wall time matching ``now()``, for records only."""
        ...

    def real_s(self) -> float:
        """Real seconds since this clock started, at any speed: the time a person waits.
        Hold timeouts run on it (a virtual clock without a real time source: ``now()``)."""
        ...

    def pace_for_hold(self, held: bool) -> None:
        """The batch entered (``held``) or left a hold. A dry run's clock then runs at real
        speed, so that a person is awaited in real time and the simulation does not race
        through hours of held furnace meanwhile; other clocks ignore it."""
        ...


class WallClock:
    """Real time: the monotonic clock and ``asyncio.sleep``. Process time starts at
    ``start_s`` (a resumed batch carries on from where it stopped, plus the outage)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._started_real = time.monotonic()
        self._t0_mono = self._started_real - start_s
        self._t0_wall = datetime.now(UTC) - timedelta(seconds=start_s)

    def now(self) -> float:
        return time.monotonic() - self._t0_mono

    async def sleep_until(self, t: float) -> None:
        delay = t - self.now()
        await asyncio.sleep(max(delay, 0.0))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def wall(self) -> datetime:
        return self._t0_wall + timedelta(seconds=self.now())

    def real_s(self) -> float:
        return time.monotonic() - self._started_real

    def pace_for_hold(self, held: bool) -> None:
        """Real time already."""


# --speed for a simulator: from real time up to what a scan loop of 0.1 s can still be
# asked for (10 µs per cycle); beyond, or not a number, is a typo.
MIN_SPEED = 1.0
MAX_SPEED = 10_000.0
# A ScaledClock's scan loop is behind when a deadline is more than this fraction of a period
# in the past when it asks to sleep until it; process time then waits for the loop.
LATE_FRACTION = 0.5
LATE_STREAK = 3  # deadlines late in a row before the clock says it has slowed
STALL_PERIODS = 5.0  # process time dropped at once, in periods, that is a stall


def check_speed(speed: float) -> float:
    """``speed`` if it is a number from ``MIN_SPEED`` to ``MAX_SPEED``; else ``ValueError``."""
    if not MIN_SPEED <= speed <= MAX_SPEED:  # also NaN
        raise ValueError(f"speed must be from {MIN_SPEED:g} (real time) to {MAX_SPEED:g}, "
                         f"not {speed!r}")
    return speed


@dataclass(frozen=True, slots=True)
class ClockSlowdown:
    """A ``ScaledClock`` ran slower than asked, so that the physics never lags the loop.

    ``kind`` is ``"slowed"`` (the loop fell behind several periods in a row: process time
    has been waiting for it, at about ``speed``, since ``t_s``) or ``"stalled"`` (the loop
    was away for ``skipped_s`` seconds of process time at once, which were not simulated).
    """

    kind: Literal["slowed", "stalled"]
    t_s: float  # process time when it was noticed, s (the clock's ``now()``)
    requested_speed: float
    speed: float  # effective speed measured while behind (for "stalled": requested)
    skipped_s: float  # process seconds not simulated (this event; "slowed": so far)


class ScaledClock:
    """Real time sped up ``speed`` times, for demos against a simulator.

    Not deterministic with real time: tests inject ``real_time`` and ``sleep_real``.

    **Never ahead of the physics.** The simulator is advanced to ``now()`` (in-process) or
    runs on its own clock at the same speed (``furnace sim serve``), while the scan loop
    writes a ramp's setpoint once per cycle. If a cycle takes longer than its period
    (CPU load, a blocked event loop, a machine too slow for ``speed``), plain scaled time
    would jump ahead and the next setpoint with it, further than the instrument's own rate
    limit can follow: the instrument lags, for good, and a healthy batch aborts. So once
    the loop has asked for a deadline (``sleep_until``), process time runs at most
    ``LATE_FRACTION`` of a period past the *next* one (the period being the spacing of
    the last two deadlines); past that, ``now()`` waits for the loop. The loop is never
    more than that late, runs no catch-up burst, and process time never runs ahead of
    ``elapsed × speed``: the clock slows itself to what the machine can simulate and
    speeds up again when it can. ``period_s`` (the scan period, if known) bounds the first
    cycle too (connecting and preflight then take at most that much process time);
    without it the bound starts at the second deadline.

    It says so: the first time the loop is late ``LATE_STREAK`` deadlines in a row it logs
    one warning with the effective speed, sets ``slowed_to_speed`` and calls
    ``on_slowdown(ClockSlowdown("slowed", ...))``; each time the loop was away for more
    than ``STALL_PERIODS`` periods at once (a frozen or suspended process) it logs and calls
    ``on_slowdown(ClockSlowdown("stalled", ...))``. ``skipped_s`` sums the process
    seconds not simulated. ``on_slowdown`` is called from inside ``sleep_until``: keep it
    short, no I/O beyond an audit append.

    With ``pace_holds`` (a simulator in this process) process time runs at real speed
    while the batch is held (``pace_for_hold``): the hold waits for a person in real time
    and the simulation does not race through hours of held furnace. A simulator served
    over a bus keeps its own speed, so there the clock keeps its speed too.

    Raises ``ValueError`` for a speed outside ``MIN_SPEED`` to ``MAX_SPEED``.
    """

    def __init__(self, speed: float, start_s: float = 0.0, *, period_s: float | None = None,
                 real_time: Callable[[], float] = time.monotonic,
                 sleep_real: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_slowdown: Callable[[ClockSlowdown], None] | None = None,
                 pace_holds: bool = False) -> None:
        self.speed = check_speed(speed)
        self._rate = self.speed  # process seconds per real second now (1 while paced)
        self._pace_holds = pace_holds
        self.slowed_to_speed: float | None = None
        """None while the loop keeps up; else the effective speed measured while behind."""
        self.skipped_s = 0.0
        """Process seconds not simulated because the loop was behind (cumulative)."""
        self.on_slowdown = on_slowdown
        self._real = real_time
        self._sleep_real = sleep_real
        self._base_real = real_time()
        self._started_real = self._base_real
        self._base_s = start_s
        # Before the first deadline only a known period bounds the first cycle.
        self._cap_s = math.inf if period_s is None else start_s + (1 + LATE_FRACTION) * period_s
        self._deadline_s: float | None = None
        self._period_s = period_s
        self._pending_skip_s = 0.0
        self._late = 0
        self._stall: ClockSlowdown | None = None  # a stall, until the next deadline confirms it
        self._mark: tuple[float, float] = (start_s, self._base_real)  # (now, real) at last ask
        self._streak_start: tuple[float, float] = self._mark

    def now(self) -> float:
        real = self._real()
        t = self._base_s + (real - self._base_real) * self._rate
        if t > self._cap_s:  # the loop is behind: process time waits for it
            self._pending_skip_s += t - self._cap_s
            self._base_s, self._base_real = self._cap_s, real
            return self._cap_s
        return t

    def wall(self) -> datetime:
        """Real UTC time (records are labelled with the real time, not the scaled one)."""
        return datetime.now(UTC)

    def real_s(self) -> float:
        return self._real() - self._started_real

    def pace_for_hold(self, held: bool) -> None:
        """With ``pace_holds``: real speed while held, ``speed`` again after."""
        if not self._pace_holds:
            return
        now = self.now()
        self._base_s, self._base_real = now, self._real()
        self._rate = 1.0 if held else self.speed

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t``; ``t`` is the scan loop's next deadline (see the
        class docstring). Cancellable."""
        now = self.now()
        self._note_deadline(t, now)
        await self._sleep_real(max(t - now, 0.0) / self._rate)

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of process time (not a scan deadline). Cancellable."""
        now = self.now()
        self._cap_s = max(self._cap_s, now + seconds)
        await self._sleep_real(max(seconds, 0.0) / self._rate)

    def _note_deadline(self, t: float, now: float) -> None:
        """Account for the loop asking for deadline ``t`` at ``now``: was it behind since
        the last one, for how long, and where process time may run until the next."""
        first = self._deadline_s is None
        if self._deadline_s is not None and t > self._deadline_s:
            self._period_s = t - self._deadline_s
        self._deadline_s = t
        real = self._real()
        skipped_s, self._pending_skip_s = self._pending_skip_s, 0.0
        if first:  # connecting and preflight: slow, but not a sign of a slow loop
            self.skipped_s += skipped_s
        elif skipped_s > 0.0:
            self.skipped_s += skipped_s
            if self._late == 0:
                self._streak_start = self._mark
            self._late += 1
            if self._late == 1 and skipped_s > STALL_PERIODS * (self._period_s or 0.0):
                # away once (a frozen process), or the first of many slow cycles: the
                # next deadline tells which
                self._stall = ClockSlowdown("stalled", now, self.speed, self.speed, skipped_s)
            elif self._stall is not None:  # slow again: a slow machine, measured from here
                self._stall = None
                self._streak_start, self._late = self._mark, 1
            elif self._late >= LATE_STREAK:
                self._report_slowed(now, real)
        else:
            if self._stall is not None:
                stall, self._stall = self._stall, None
                logger.warning("the scan loop was away for %.0f s of process time (%.2f s "
                               "real); that time was not simulated", stall.skipped_s,
                               stall.skipped_s / self._rate)
                self._emit(stall)
            self._late = 0
        self._mark = (now, real)
        if self._period_s is not None:
            # On time: up to LATE_FRACTION of a period past the next deadline. Behind it
            # already (the first deadline, before the period was known): one period per
            # cycle, so the backlog never grows, and shrinks once the loop is fast again.
            period_s = self._period_s
            self._cap_s = max(t + (1.0 + LATE_FRACTION) * period_s, now + period_s)

    def _report_slowed(self, now: float, real: float) -> None:
        start_s, start_real = self._streak_start
        effective = (now - start_s) / (real - start_real) if real > start_real else 0.0
        first = self.slowed_to_speed is None
        self.slowed_to_speed = round(min(effective, self.speed), 1)
        self._late = 0
        self._streak_start = (now, real)
        if first:
            logger.warning("--speed %g is faster than this machine can run the scan loop: "
                           "process time waits for it (about %gx now)", self.speed,
                           self.slowed_to_speed)
            self._emit(ClockSlowdown("slowed", now, self.speed, self.slowed_to_speed,
                                     self.skipped_s))

    def _emit(self, event: ClockSlowdown) -> None:
        if self.on_slowdown is not None:
            self.on_slowdown(event)


def utc_now() -> datetime:
    """The real UTC time, for measuring an outage between two processes."""
    return datetime.now(UTC)


class VirtualClock:
    """Discrete-event time: sleeping moves ``now`` to the deadline at once.

    Deterministic as long as one task does the timed waiting (the scan cycle); other tasks
    only read ``now``. ``sleep_until`` still yields to the loop once, so cancellation and
    other ready tasks are served between cycles.

    Without ``real_time`` (tests) virtual time stands in for real time: ``real_s`` is the
    virtual time elapsed and ``pace_for_hold`` changes nothing. With it (a dry run, see
    ``for_dry_run``) ``real_s`` is real, and while the batch is held ``sleep_until`` waits
    for real (``sleep_real``): a hold waits for a person at real speed.
    """

    def __init__(self, start_s: float = 0.0,
                 wall_start: datetime = datetime(2026, 1, 1, tzinfo=UTC), *,
                 real_time: Callable[[], float] | None = None,
                 sleep_real: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._now = start_s
        self._start_s = start_s
        self._wall_start = wall_start - timedelta(seconds=start_s)
        self._real = real_time
        self._started_real = real_time() if real_time is not None else 0.0
        self._sleep_real = sleep_real
        self._paced = False

    @classmethod
    def starting_now(cls) -> VirtualClock:
        """A virtual clock whose wall time starts at the real UTC time."""
        return cls(wall_start=datetime.now(UTC))

    @classmethod
    def for_dry_run(cls, start_s: float = 0.0) -> VirtualClock:
        """``--speed max``: wall time from the real UTC time, hold timeouts in real time,
        real speed while held."""
        return cls(start_s, wall_start=datetime.now(UTC), real_time=time.monotonic)

    def now(self) -> float:
        return self._now

    def real_s(self) -> float:
        if self._real is None:
            return self._now - self._start_s
        return self._real() - self._started_real

    def pace_for_hold(self, held: bool) -> None:
        self._paced = held and self._real is not None

    async def sleep_until(self, t: float) -> None:
        if self._paced and t > self._now:
            await self._sleep_real(t - self._now)
        if t > self._now:
            self._now = t
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(seconds, 0.0))

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now)


def wait_real(event: threading.Event, seconds: float) -> bool:
    """Block this (non-scan-loop) thread for up to ``seconds`` of real time, or until
    ``event`` is set (True then): a delivery thread's pause between retries."""
    return event.wait(max(seconds, 0.0))
