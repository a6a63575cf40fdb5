"""The one clock. The only module that touches real time.

Not here: anything that decides *when* to act (that is the scan cycle's job).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ScaledClock", "VirtualClock", "WallClock", "utc_now"]


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


class WallClock:
    """Real time: the monotonic clock and ``asyncio.sleep``. Process time starts at
    ``start_s`` (a resumed batch carries on from where it stopped, plus the outage)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._t0_mono = time.monotonic() - start_s
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


class ScaledClock(WallClock):
    """Real time sped up ``speed`` times, for demos against an out-of-process simulator.

    Not deterministic: never use it in tests.
    """

    def __init__(self, speed: float, start_s: float = 0.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        super().__init__()
        self.speed = speed
        self._start_s = start_s

    def now(self) -> float:
        return self._start_s + super().now() * self.speed

    def wall(self) -> datetime:
        """Real UTC time (records are labelled with the real time, not the scaled one)."""
        return datetime.now(UTC)

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(t - self.now(), 0.0) / self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.speed)


def utc_now() -> datetime:
    """The real UTC time, for measuring an outage between two processes."""
    return datetime.now(UTC)


class VirtualClock:
    """Discrete-event time: sleeping moves ``now`` to the deadline at once.

    Deterministic as long as one task does the timed waiting (the scan cycle); other tasks
    only read ``now``. ``sleep_until`` still yields to the loop once, so cancellation and
    other ready tasks are served between cycles.
    """

    def __init__(self, start_s: float = 0.0,
                 wall_start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start_s
        self._wall_start = wall_start - timedelta(seconds=start_s)

    @classmethod
    def starting_now(cls) -> VirtualClock:
        """A virtual clock whose wall time starts at the real UTC time (for dry runs)."""
        return cls(wall_start=datetime.now(UTC))

    def now(self) -> float:
        return self._now

    async def sleep_until(self, t: float) -> None:
        if t > self._now:
            self._now = t
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(seconds, 0.0))

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now)
