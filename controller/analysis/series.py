"""Signal helpers over trace columns (pure numpy): smoothing, heating rate, runs of rows.

Shared by the event extraction (``events``, ``exotherm``) and the drawing (``report``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HEATING_MIN_C_PER_MIN",
    "SMOOTH_S",
    "FloatArray",
    "heating_rate_c_per_min",
    "moving_mean",
    "stage_readings",
    "stage_runs",
    "true_runs",
    "window_rows",
]

FloatArray = NDArray[np.float64]

SMOOTH_S: Final = 60.0  # moving-mean window: 2 °C at 2 °C/min, far narrower than any event
HEATING_MIN_C_PER_MIN: Final = 0.2  # slower than this is a hold, not a ramp


def moving_mean(y: FloatArray, window: int) -> FloatArray:
    """Centred moving mean over ``window`` rows (made odd), ignoring NaN; NaN if none."""
    n = max(1, int(window) | 1)
    if n == 1 or len(y) == 0:
        return y.astype(np.float64, copy=True)
    ok = np.isfinite(y)
    kernel = np.ones(n)
    if n > len(y):  # "same" would give max(n, len(y)) values: take the centred len(y)
        first = (n - 1) // 2
        sums = np.convolve(np.where(ok, y, 0.0), kernel)[first:first + len(y)]
        counts = np.convolve(ok.astype(np.float64), kernel)[first:first + len(y)]
    else:
        sums = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
        counts = np.convolve(ok.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    return out


def window_rows(t_s: FloatArray, span_s: float) -> int:
    """How many rows ``span_s`` seconds cover, from the median scan period."""
    if len(t_s) < 2:
        return 1
    step = float(np.nanmedian(np.diff(t_s)))
    return max(1, round(span_s / step)) if step > 0 else 1


def heating_rate_c_per_min(t_s: FloatArray, temp_c: FloatArray) -> FloatArray:
    """Smoothed heating rate (°C/min) per row; NaN where the temperature is unknown."""
    if len(t_s) < 3:
        return np.full(len(t_s), np.nan)
    smooth = moving_mean(temp_c, window_rows(t_s, SMOOTH_S))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate: FloatArray = np.gradient(smooth, t_s) * 60.0
    return rate


def stage_runs(stage: NDArray[np.str_]) -> list[tuple[str, int, int]]:
    """Contiguous runs of equal stage names as (name, first row, last row + 1)."""
    if len(stage) == 0:
        return []
    cuts = np.flatnonzero(stage[1:] != stage[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(stage)]))
    return [(str(stage[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def true_runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Contiguous runs of True as (first row, last row + 1)."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def stage_readings(stage: NDArray[np.str_], values: FloatArray,
                   skip: Collection[str] = ()) -> list[tuple[str, int | None, int | None]]:
    """Each stage (names not in ``skip``, in order of first appearance) with the rows of its
    opening and closing readings of ``values``, boundary to boundary; None where a boundary
    has no finite reading.

    A row's readings are taken at the start of its scan, before the runner moves on, and
    its stage is where the runner is after it: a stage's first row still carries the last
    reading of the stage before. So a stage opens at its second row (the batch's first
    stage at the first row) and closes where the next stage opens; the last stage closes
    at the last reading. A jump at a boundary (the wash, applied as its operator step
    ends) belongs to the stage that ended.
    """
    firsts: dict[str, int] = {}
    for name, a, _ in stage_runs(stage):
        if name not in skip:
            firsts.setdefault(name, a)
    if not firsts:
        return []
    n = len(values)
    opens = [0 if a == 0 else min(a + 1, n - 1) for a in firsts.values()] + [n]
    finite = np.flatnonzero(np.isfinite(values))

    def first_in(lo: int, hi: int) -> int | None:
        k = int(np.searchsorted(finite, lo, side="left"))
        return int(finite[k]) if k < len(finite) and finite[k] < hi else None

    bounds = [first_in(opens[k], opens[k + 1]) for k in range(len(firsts))]
    last = int(finite[-1]) if len(finite) else None
    bounds.append(last if last is not None and last >= opens[-2] else None)
    return [(name, bounds[k], bounds[k + 1]) for k, name in enumerate(firsts)]
