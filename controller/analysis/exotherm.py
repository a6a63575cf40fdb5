"""The exotherm on ΔT against temperature (a DSC-like reading of the trace): pure numpy.

The method (onset and peak), in words, for the report and the docs:

1. ΔT (``delta_t_c``, sample − furnace) and the temperature (``sample_c`` if the trace has
   it, else ``furnace_c``) are smoothed with a centred 60 s moving mean.
2. *Heating* rows are those where the smoothed temperature rises by at least
   0.2 °C/min. In each contiguous heating run the **peak** is the maximum of the smoothed
   ΔT; a maximum in the run's last or first minute is an edge, not a peak, and is ignored.
3. The **baseline** is fitted where the sample is thermally quiet: the first stretch of
   the run, below the peak's flank (3 half-widths under the peak; the half-width is read
   off the leading edge at half height), where ΔT has settled (it changes by at most
   0.02 °C per °C over 5 min: the start-up transient, while the sample's lag behind the
   furnace builds up, is over) and, with a balance, the mass is steady (its 5 min rate of
   change within 10 % of the run's largest, and at least 0.02 %/min: before the water
   leaves, not inside its endotherm). A straight line ΔT(T) if that stretch spans 40 °C
   or more, else a level line at its mean (a short stretch's slope would be extrapolated
   far); σ is the standard deviation of the smoothed ΔT about it there. Without such a
   stretch (a short run, or the sample never quiet) the line is fitted 6 to 3 half-widths
   below the peak instead, and ``baseline_method`` says so.
4. The **onset** is where the smoothed ΔT last rises above baseline + max(5 σ, 0.05 °C)
   before the peak (linear interpolation between rows). An endotherm on the way (the water
   leaving) pulls ΔT *below* this baseline, so the last upward crossing comes after it:
   the onset cannot fire inside the water loss. The *extrapolated* onset (ISO 11357 /
   ASTM E2070 tangent construction) is also given: the tangent at the steepest point of
   the leading edge, intersected with the baseline.
5. An exotherm counts only if the peak stands max(10 σ, 0.2 °C) above its baseline; the
   run with the largest such excess wins.

Not here: the other events and the report's numbers (``events``), drawing (``report``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from controller.analysis.data import BatchData
from controller.analysis.series import (
    HEATING_MIN_C_PER_MIN,
    SMOOTH_S,
    FloatArray,
    heating_rate_c_per_min,
    moving_mean,
    true_runs,
    window_rows,
)
from controller.records.folder import TRACE_FILE

__all__ = ["Exotherm", "find_exotherm"]

IntArray = NDArray[np.intp]

ONSET_K_NOISE: Final = 5.0  # onset: ΔT above baseline by 5 σ ...
ONSET_MIN_C: Final = 0.05  # ... and at least 0.05 °C (a thermocouple pair's resolution)
PEAK_K_NOISE: Final = 10.0  # an exotherm stands 10 σ ...
PEAK_MIN_C: Final = 0.2  # ... and 0.2 °C above its baseline
FOOT_SPAN_C: Final = 80.0  # the peak's foot (for its half-width) is sought this far below it
SETTLE_S: Final = 300.0  # quiet is judged over 5 min (centred), longer than the smoothing
SETTLED_C_PER_C: Final = 0.02  # settled: ΔT changes by at most this per °C of temperature
QUIET_DTG_FRAC: Final = 0.1  # steady mass: |DTG| within 10 % of the run's largest ...
QUIET_DTG_MIN_PCT_PER_MIN: Final = 0.02  # ... or this, whichever is larger
LINE_MIN_SPAN_C: Final = 40.0  # a shorter quiet stretch gives a level baseline
BASELINE_QUIET: Final = "quiet"
BASELINE_FLANK: Final = "flank"
_MIN_BASELINE_ROWS: Final = 10


@dataclass(frozen=True, slots=True)
class Exotherm:
    """An exotherm on ΔT against temperature; temperatures in °C on ``temperature_channel``.

    ``peak_excess_c`` is the smoothed ΔT above the baseline at the peak; the baseline is
    ``baseline_intercept_c + baseline_slope * T`` (°C, °C per °C), fitted over
    ``baseline_from_c`` to ``baseline_to_c``; ``noise_c`` is its σ.
    """

    peak_c: float
    peak_elapsed_s: float
    peak_delta_t_c: float
    peak_excess_c: float
    onset_c: float
    extrapolated_onset_c: float | None
    noise_c: float
    baseline_slope: float
    baseline_intercept_c: float
    baseline_from_c: float
    baseline_to_c: float
    temperature_channel: str
    stage: str
    baseline_method: str = BASELINE_QUIET
    """``"quiet"``: fitted where the sample is thermally quiet; ``"flank"``: no quiet stretch,
    fitted 6 to 3 half-widths below the peak (step 3 of the module's method)."""


def _span_slope(t_s: FloatArray, y: FloatArray, x: FloatArray, span: int) -> FloatArray:
    """|dy/dx| per row from centred differences ``span`` rows apart, or (with ``x`` = time)
    per minute; NaN near the ends and where either end is unknown."""
    out = np.full(len(y), np.nan)
    h = max(1, span // 2)
    if len(y) > 2 * h:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[h:-h] = np.abs((y[2 * h:] - y[:-2 * h]) / (x[2 * h:] - x[:-2 * h]))
    return out


def _half_width(temp: FloatArray, sdt: FloatArray, a: int, p: int) -> float | None:
    """Half-width (°C) of the peak at row ``p``: its leading edge at half height above the
    foot (the lowest ΔT within FOOT_SPAN_C below it); None if no row lies there."""
    idx = np.arange(a, p)
    ok = np.isfinite(temp[idx]) & np.isfinite(sdt[idx])
    near = idx[ok & (temp[idx] >= temp[p] - FOOT_SPAN_C)]
    if len(near) == 0:
        return None
    under_half = near[sdt[near] <= (np.min(sdt[near]) + sdt[p]) / 2.0]
    return max(float(temp[p] - temp[under_half[-1]]) if len(under_half) else 0.0, 1.0)


def _quiet_rows(quiet: NDArray[np.bool_], a: int, p: int, min_rows: int) -> IntArray | None:
    """Rows of the first stretch of ``quiet`` in ``[a, p)`` at least ``min_rows`` long."""
    for lo, hi in true_runs(quiet[a:p]):
        if hi - lo >= min_rows:
            return np.arange(a + lo, a + hi)
    return None


def _baseline(temp: FloatArray, sdt: FloatArray, quiet: NDArray[np.bool_], a: int, p: int,
              min_rows: int) -> tuple[float, float, float, float, float, float, str] | None:
    """Baseline below the peak at row ``p`` of the run starting at ``a`` (step 3).

    Returns (slope, intercept °C, noise σ °C, from °C, to °C, half-width °C, method), or
    None if too few rows lie below the peak's flank.
    """
    half_width = _half_width(temp, sdt, a, p)
    if half_width is None:
        return None
    hi = float(temp[p] - 3.0 * half_width)
    below = quiet & (temp <= hi)
    base = _quiet_rows(below, a, p, max(_MIN_BASELINE_ROWS, min_rows))
    method = BASELINE_QUIET
    if base is None:  # no quiet stretch: the flank rule, 6 to 3 half-widths down
        method = BASELINE_FLANK
        idx = np.arange(a, p)
        ok = np.isfinite(temp[idx]) & np.isfinite(sdt[idx])
        lo = float(temp[p] - 6.0 * half_width)
        base = idx[ok & (temp[idx] >= lo) & (temp[idx] <= hi)]
        if len(base) < _MIN_BASELINE_ROWS:  # a short run: its earliest rows below the flank
            base = idx[ok & (temp[idx] <= hi)][:max(_MIN_BASELINE_ROWS, (p - a) // 3)]
        if len(base) < _MIN_BASELINE_ROWS:
            return None
    span_c = float(np.max(temp[base]) - np.min(temp[base]))
    if method == BASELINE_FLANK or span_c >= LINE_MIN_SPAN_C:
        slope, intercept = (float(c) for c in np.polyfit(temp[base], sdt[base], 1))
    else:
        slope, intercept = 0.0, float(np.mean(sdt[base]))
    noise = float(np.std(sdt[base] - (intercept + slope * temp[base])))
    return (slope, intercept, noise, float(np.min(temp[base])), float(np.max(temp[base])),
            half_width, method)


def _onsets(temp: FloatArray, excess: FloatArray, threshold: float) -> tuple[float, float]:
    """(threshold onset, tangent onset) in °C on a leading edge that ends at the peak.

    ``excess`` is ΔT above the baseline over ``temp``, run start to peak. The threshold
    onset is the last upward crossing of ``threshold`` (NaN counts as under), interpolated;
    the tangent onset is where the tangent at the steepest point meets the baseline (NaN
    if the edge is too short or never rises).
    """
    under = np.flatnonzero(~(excess > threshold))
    if len(under) == 0:  # above the threshold from the run's start: the start is the bound
        o, onset = 0, float(temp[0])
    else:
        o = int(under[-1]) + 1  # first row of the final stretch above the threshold
        e0, e1 = excess[o - 1], excess[o]
        frac = (threshold - e0) / (e1 - e0) if math.isfinite(e0) and e1 != e0 else 1.0
        onset = float(temp[o - 1] + frac * (temp[o] - temp[o - 1]))
    tangent = math.nan
    if len(excess) - o >= 3:
        with np.errstate(invalid="ignore", divide="ignore"):
            grad = np.gradient(excess[o:], temp[o:])
        if np.isfinite(grad).any():
            m = int(np.nanargmax(grad))
            if grad[m] > 0:
                tangent = float(temp[o + m] - excess[o + m] / grad[m])
    return onset, tangent


def _run_exotherm(data: BatchData, channel: str, temp: FloatArray, sdt: FloatArray,
                  quiet: NDArray[np.bool_], a: int, b: int, edge: int) -> Exotherm | None:
    """The exotherm in the heating run ``[a, b)``, or None if there is none.

    ``temp`` and ``sdt`` are the smoothed temperature and ΔT (°C), ``quiet`` the rows where
    the sample is thermally quiet; ``edge`` is how many rows at either end of the run cannot
    hold a peak (and how long a quiet stretch must be).
    """
    if not np.isfinite(sdt[a:b]).any():
        return None
    p = a + int(np.nanargmax(sdt[a:b]))
    if p - a < edge or b - 1 - p < edge:
        return None  # the maximum sits at an end of the run: a step, not a peak
    fit = _baseline(temp, sdt, quiet, a, p, edge)
    if fit is None:
        return None
    slope, intercept, noise, lo, hi, half_width, method = fit
    excess = sdt[a:p + 1] - (intercept + slope * temp[a:p + 1])
    if not excess[-1] >= max(PEAK_K_NOISE * noise, PEAK_MIN_C):
        return None
    onset, tangent = _onsets(temp[a:p + 1], excess, max(ONSET_K_NOISE * noise, ONSET_MIN_C))
    # The peak temperature from a parabola through the top (± half a half-width), which
    # averages out the noise that decides which single row is the highest.
    peak_c, peak_dt = float(temp[p]), float(sdt[p])
    top = np.arange(a, b)
    top = top[np.isfinite(sdt[top]) & (np.abs(temp[top] - peak_c) <= half_width / 2.0)]
    if len(top) >= 5:
        c2, c1, c0 = (float(c) for c in np.polyfit(temp[top] - peak_c, sdt[top], 2))
        vertex = -c1 / (2.0 * c2) if c2 < 0 else math.inf
        if abs(vertex) <= half_width / 2.0:
            peak_c, peak_dt = peak_c + vertex, c0 + c1 * vertex + c2 * vertex**2
    return Exotherm(
        peak_c=peak_c, peak_elapsed_s=float(data.trace["elapsed_s"][p]),
        peak_delta_t_c=peak_dt, peak_excess_c=peak_dt - (intercept + slope * peak_c),
        onset_c=onset, extrapolated_onset_c=tangent if math.isfinite(tangent) else None,
        noise_c=noise, baseline_slope=slope, baseline_intercept_c=intercept,
        baseline_from_c=lo, baseline_to_c=hi, temperature_channel=channel,
        stage=str(data.text["stage"][p]), baseline_method=method)


def find_exotherm(data: BatchData, end: int, channel: str) -> tuple[Exotherm | None, str]:
    """The largest exotherm in the first ``end`` rows, temperatures on ``channel``, and a
    note: how it was found, or why there is none (no ΔT readings, no peak standing out)."""
    delta = data.channel("delta_t_c")
    sample = data.channel("sample_c")
    if delta is None and sample is not None:
        delta = sample - data.trace["furnace_c"]
    if delta is None:
        return None, f"no sample thermocouple (no sample_c/delta_t_c readings in {TRACE_FILE})"
    t = data.trace["elapsed_s"][:end]
    edge = window_rows(t, SMOOTH_S)
    temp = moving_mean(data.trace[channel][:end], edge)
    sdt = moving_mean(delta[:end], edge)
    rate = heating_rate_c_per_min(t, data.trace[channel][:end])
    heating = np.isfinite(rate) & (rate >= HEATING_MIN_C_PER_MIN)
    quiet = _quiet(data, t, temp, sdt, heating, end)
    found = [_run_exotherm(data, channel, temp, sdt, quiet, a, b, edge)
             for a, b in true_runs(heating) if b - a >= 3 * edge]
    exotherms = [e for e in found if e is not None]
    if not exotherms:
        return None, (f"no exotherm: no inner maximum of ΔT during heating stands "
                      f"{PEAK_K_NOISE:g} σ and {PEAK_MIN_C:g} °C above its baseline")
    best = max(exotherms, key=lambda e: e.peak_excess_c)
    where = ("where the sample is thermally quiet (ΔT settled, mass steady) before the peak"
             if best.baseline_method == BASELINE_QUIET else
             "3-6 half-widths below the peak (no thermally quiet stretch before it)")
    return best, (
        f"peak: max of {SMOOTH_S:.0f} s smoothed ΔT while heating; onset: ΔT "
        f"{ONSET_K_NOISE:g} σ (≥ {ONSET_MIN_C:g} °C) above a baseline fitted {where}")


def _quiet(data: BatchData, t: FloatArray, temp: FloatArray, sdt: FloatArray,
           heating: NDArray[np.bool_], end: int) -> NDArray[np.bool_]:
    """Heating rows where the sample is thermally quiet (step 3): ΔT settled and, with a
    balance, the mass steady relative to the largest mass change of its heating run."""
    span = window_rows(t, SETTLE_S)
    quiet = heating & (_span_slope(t, sdt, temp, span) <= SETTLED_C_PER_C)
    mass = data.channel("mass_pct")
    if mass is None or not np.isfinite(mass[:end]).any():
        return quiet
    smooth = moving_mean(mass[:end], window_rows(t, SMOOTH_S))
    dtg = _span_slope(t, smooth, t / 60.0, span)  # %/min
    steady = np.zeros(len(t), dtype=bool)
    for a, b in true_runs(heating):
        largest = float(np.nanmax(dtg[a:b])) if np.isfinite(dtg[a:b]).any() else 0.0
        limit = max(QUIET_DTG_FRAC * largest, QUIET_DTG_MIN_PCT_PER_MIN)
        steady[a:b] = dtg[a:b] <= limit
    return quiet & steady

