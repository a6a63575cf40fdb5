"""What the scan loop publishes for the web server's thread: the latest ``LiveFrame`` (an
immutable value replaced whole each cycle) and the trace rows (a bounded, thinned history
and a recent tail, numbered).

The scan loop's side (``observe``, ``row``) only swaps a reference or appends under a lock
held for one append; it never waits for the reader and never does I/O. The reader's side
(``frame``, ``rows_after``) copies what it needs under the same short lock. Not here: what
the frame means (``state``) or how rows are sent (``app``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from controller.run.runstate import RunState

if TYPE_CHECKING:
    from controller.run.handle import RecipeRunner
    from controller.run.snapshot import Snapshot

__all__ = ["LiveFeed", "LiveFrame", "Row", "json_value"]

Row = tuple[object, ...]

HISTORY_ROWS = 4000  # the thinned history a new client gets (the whole batch)
TAIL_ROWS = 4000  # the most recent rows, every one


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """One scan cycle as published: the snapshot, the run state after it, the wall time
    and the cycle count. All immutable; the web thread may keep it as long as it likes."""

    snap: Snapshot
    run: RunState
    wall: datetime
    cycle: int


class LiveFeed:
    """The published state of one running batch, shared by the scan loop (writer) and the
    web server's thread (reader)."""

    def __init__(self, columns: Sequence[str], runner: RecipeRunner,
                 wall: Callable[[], datetime]) -> None:
        self.columns = tuple(columns)
        self.runner = runner  # the plan and rules (immutable); its state is read from frames
        self._wall = wall
        self._frame: LiveFrame | None = None
        self._cycle = 0
        self._lock = threading.Lock()
        self._seq = 0  # number of the last row appended
        self._tail: deque[tuple[int, Row]] = deque(maxlen=TAIL_ROWS)
        self._history: list[tuple[int, Row]] = []
        self._stride = 1

    # ------------------------------------------------------------ scan loop side
    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        """Publish this cycle (the scan loop's observer): one reference swap."""
        self._cycle += 1
        self._frame = LiveFrame(snap, runner.run, self._wall(), self._cycle)

    def row(self, values: Sequence[object]) -> None:
        """Keep a trace row (the same values as trace.csv's row), numbered."""
        item = tuple(values)
        with self._lock:
            self._seq += 1
            entry = (self._seq, item)
            self._tail.append(entry)
            if self._seq % self._stride == 0:
                self._history.append(entry)
                if len(self._history) > HISTORY_ROWS:  # thin: every other row, twice the
                    self._history = self._history[1::2]  # stride from now on
                    self._stride *= 2

    # ------------------------------------------------------------ reader side
    @property
    def frame(self) -> LiveFrame | None:
        """The latest published cycle (None before the first)."""
        return self._frame

    @property
    def last_seq(self) -> int:
        """Number of the last row kept."""
        return self._seq

    def backlog(self) -> list[tuple[int, Row]]:
        """The whole batch so far, thinned: the history, then the tail after it."""
        with self._lock:
            history = list(self._history)
            last = history[-1][0] if history else 0
            tail = [e for e in self._tail if e[0] > last]
        return history + tail

    def rows_after(self, seq: int) -> list[tuple[int, Row]]:
        """The rows numbered after ``seq`` still in the tail (oldest first)."""
        with self._lock:
            if not self._tail or self._tail[-1][0] <= seq:
                return []
            first = self._tail[0][0]
            start = max(seq + 1 - first, 0)
            return [self._tail[i] for i in range(start, len(self._tail))]


def json_value(value: object) -> object:
    """A trace cell as JSON allows it (NaN and infinities as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
