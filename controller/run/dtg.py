"""Live derivative of a noisy signal on the scan cycle (DTG: mass % per minute).

A least-squares slope over a sliding time window, updated in O(1) per sample from running
sums, in constant memory: it works live, without keeping the trace. Not here: smoothing
for the report (the report has the whole trace and may do better).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingSlope"]


class SlidingSlope:
    """Least-squares slope of y against t over the last ``window_s`` seconds.

    ``update(t_s, y)`` returns the slope in units of y per minute, or NaN until the window
    holds at least ``min_points`` samples. Times are re-based to the newest sample's epoch
    so the running sums keep their precision over a 30-hour batch.
    """

    __slots__ = ("_n", "_points", "_st", "_stt", "_sty", "_sy", "_t0", "min_points",
                 "window_s")

    def __init__(self, window_s: float, *, min_points: int = 5) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, not {window_s}")
        self.window_s = window_s
        self.min_points = max(min_points, 2)
        self._points: deque[tuple[float, float]] = deque()
        self._t0 = 0.0
        self._n = 0
        self._st = self._sy = self._stt = self._sty = 0.0

    def _add(self, t: float, y: float, sign: float) -> None:
        x = t - self._t0
        self._n += int(sign)
        self._st += sign * x
        self._sy += sign * y
        self._stt += sign * x * x
        self._sty += sign * x * y

    def _rebase(self, t0: float) -> None:
        self._t0 = t0
        self._n = 0
        self._st = self._sy = self._stt = self._sty = 0.0
        for t, y in self._points:
            self._add(t, y, 1.0)

    def reset(self) -> None:
        """Forget every sample (e.g. after a balance outage)."""
        self._points.clear()
        self._rebase(0.0)

    def update(self, t_s: float, y: float) -> float:
        """Add a sample (NaN samples are skipped) and return the slope per minute."""
        if not math.isnan(y):
            if not self._points:
                self._rebase(t_s)
            self._points.append((t_s, y))
            self._add(t_s, y, 1.0)
        horizon = t_s - self.window_s
        while self._points and self._points[0][0] < horizon:
            t_old, y_old = self._points.popleft()
            self._add(t_old, y_old, -1.0)
        if self._points and t_s - self._t0 > 10 * self.window_s:
            self._rebase(self._points[0][0])  # keep the sums small
        n = self._n
        if n < self.min_points:
            return math.nan
        denominator = n * self._stt - self._st * self._st
        if denominator <= 0.0:
            return math.nan
        return (n * self._sty - self._st * self._sy) / denominator * 60.0
