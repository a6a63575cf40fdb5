"""Signal helpers over trace columns (pure numpy): smoothing, heating rate, runs of rows.

Shared by the event extraction (``events``, ``exotherm``) and the drawing (``report``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HEATING_MIN_C_PER_MIN",
    "SMOOTH_S",
    "FloatArray",
    "heating_rate_c_per_min",
    "moving_mean",
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
