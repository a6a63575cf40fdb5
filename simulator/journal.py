"""The ground-truth journal: what really happened in a ``SimWorld`` (reference/faults.md §4,
"oracles"): every write the instruments accepted, the true state every few seconds of world
time, and each fault's start and end. Tests compare the controller's trace and audit with it.

Not responsible for causing anything (``simulator.faults``) or for persistence: it is an
in-memory list, queried in the same process.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simulator.faults import FaultEvent, FaultInjector
from simulator.world import SimTruth, SimWorld

__all__ = ["JournalWrite", "SimJournal"]

_EPS_S = 1e-9


@dataclass(frozen=True, slots=True)
class JournalWrite:
    """One write the world accepted: world time (s), unit, start address (0-based PDU)
    and the register words."""

    t_s: float
    unit: int
    address: int
    words: tuple[int, ...]

    def covers(self, address: int) -> bool:
        """True if this write's span includes register ``address``."""
        return self.address <= address < self.address + len(self.words)


class SimJournal:
    """Attach to ``world`` and record (until ``detach``):

    - every accepted register write, from ``SimBus`` and ``SimModbusServer`` alike (through
      ``world.write_hooks``), with the world time it was applied at;
    - ``world.truth()`` at the first substep at or after each multiple of ``period_s`` (s of
      world time; default 2 s), taken *before* that substep;
    - fault events of the injectors given to ``watch``.

    Append-only by default (2 s samples of a 30 h run: 54 000 entries, a few tens of MB);
    ``max_samples`` keeps only about the latest that many truth samples. Queries never
    block and never advance the world. Raises ``ValueError`` for a non-positive period.
    """

    def __init__(self, world: SimWorld, *, period_s: float = 2.0,
                 max_samples: int | None = None) -> None:
        if not period_s > 0.0:
            raise ValueError(f"journal period must be positive, not {period_s}")
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, not {max_samples}")
        self.world = world
        self.period_s = period_s
        self.max_samples = max_samples
        self._times: list[float] = []
        self._samples: list[SimTruth] = []
        self._writes: list[JournalWrite] = []
        self._events: list[FaultEvent] = []
        self._next_s = -math.inf
        self._watched: list[FaultInjector] = []
        world.hooks.append(self._on_substep)
        world.write_hooks.append(self._on_write)

    def detach(self) -> None:
        """Stop recording (what is recorded stays queryable). Idempotent."""
        if self._on_substep in self.world.hooks:
            self.world.hooks.remove(self._on_substep)
        if self._on_write in self.world.write_hooks:
            self.world.write_hooks.remove(self._on_write)
        for injector in self._watched:
            if self._on_event in injector.listeners:
                injector.listeners.remove(self._on_event)
        self._watched.clear()

    def watch(self, injector: FaultInjector) -> None:
        """Record ``injector``'s fault events (those already past included)."""
        self._events.extend(injector.events)
        injector.listeners.append(self._on_event)
        self._watched.append(injector)

    def _on_event(self, event: FaultEvent) -> None:
        self._events.append(event)

    # ---- recording ---------------------------------------------------------------------

    def _on_substep(self, world: SimWorld, t_s: float) -> None:
        if t_s + _EPS_S < self._next_s:
            return
        self.sample()
        period = self.period_s
        self._next_s = (math.floor(t_s / period + _EPS_S) + 1) * period

    def sample(self) -> SimTruth:
        """Record ``world.truth()`` now (also done on the ``period_s`` grid) and return it."""
        truth = self.world.truth()
        self._times.append(truth.t_s)
        self._samples.append(truth)
        cap = self.max_samples
        if cap is not None and len(self._samples) > cap + max(1, cap // 4):
            del self._samples[:-cap]  # amortised: trim in chunks, not on every append
            del self._times[:-cap]
        return truth

    def _on_write(self, unit: int, address: int, words: Sequence[int], t_s: float) -> None:
        self._writes.append(JournalWrite(t_s, unit, address, tuple(words)))

    # ---- queries -----------------------------------------------------------------------

    @property
    def samples(self) -> Sequence[SimTruth]:
        """Truth samples kept, oldest first."""
        return tuple(self._samples)

    @property
    def events(self) -> Sequence[FaultEvent]:
        """Fault starts and ends of the watched injectors, in order."""
        return tuple(self._events)

    def truth_at(self, t_s: float) -> SimTruth:
        """The latest truth sample taken at or before ``t_s`` (s). Raises ``LookupError`` if
        there is none (before the first sample, or trimmed by ``max_samples``)."""
        i = bisect_right(self._times, t_s + _EPS_S)
        if i == 0:
            raise LookupError(f"no truth sample at or before t = {t_s:g} s")
        return self._samples[i - 1]

    def writes(self, unit: int | None = None, address: int | None = None) -> list[JournalWrite]:
        """Accepted writes, oldest first: all, those to ``unit``, or those to ``unit`` whose
        span covers register ``address`` (a float register is covered by a write to its
        first word). The count is ``len(...)``."""
        return [w for w in self._writes
                if (unit is None or w.unit == unit)
                and (address is None or w.covers(address))]

    def first_time(self, predicate: Callable[[SimTruth], bool], *,
                   after_s: float = -math.inf) -> float | None:
        """World time (s) of the first truth sample at or after ``after_s`` for which
        ``predicate`` is true, or None if none is."""
        start = bisect_right(self._times, after_s - _EPS_S)
        for i in range(start, len(self._samples)):
            if predicate(self._samples[i]):
                return self._times[i]
        return None

    def fault_time(self, kind: str, phase: str = "start") -> float | None:
        """World time (s) of the first ``phase`` ("start"/"end") event of ``kind``, or None."""
        for event in self._events:
            if event.kind == kind and event.phase == phase:
                return event.t_s
        return None
