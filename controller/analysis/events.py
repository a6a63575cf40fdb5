"""Thermal-analysis events of one batch (mass minimum, exotherm, per-stage numbers): pure numpy.

Not here: reading the batch folder (``controller/analysis/report.py`` builds the ``BatchData``),
drawing, or printing. Nothing in this module does I/O.

The exotherm method (onset and peak), in words, for the report and the docs:

1. ΔT (``delta_t_c``, sample − furnace) and the temperature (``sample_c`` if the trace has
   it, else ``furnace_c``) are smoothed with a centred 60 s moving mean.
2. *Heating* rows are those where the smoothed temperature rises by at least
   0.2 °C/min. In each contiguous heating run the **peak** is the maximum of the smoothed
   ΔT; a maximum in the run's last or first minute is an edge, not a peak, and is ignored.
3. The **baseline** is a straight line ΔT(T) fitted to the run's rows from 6 to 3
   half-widths below the peak (the half-width is read off the leading edge at half
   height), so the peak's own flank does not pull the baseline up; the baseline noise σ is
   the standard deviation of the smoothed ΔT about that line there.
4. The **onset** is where the smoothed ΔT last rises above baseline + max(5 σ, 0.05 °C)
   before the peak (linear interpolation between rows). The *extrapolated* onset (ISO
   11357 / ASTM E2070 tangent construction) is also given: the tangent at the steepest
   point of the leading edge, intersected with the baseline.
5. An exotherm counts only if the peak stands max(10 σ, 0.2 °C) above its baseline; the
   run with the largest such excess wins.

Events use only the rows before the first operator step: that is where the sample leaves
the furnace (unload, wash, reload), so later rows describe another material.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BatchData",
    "Exotherm",
    "GasUse",
    "Incident",
    "MassMinimum",
    "RUN_STATES",
    "Report",
    "StagePlan",
    "StageResult",
    "analyse",
    "heating_rate_c_per_min",
    "moving_mean",
    "sample_window",
    "stage_runs",
    "true_runs",
]

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

SMOOTH_S: Final = 60.0  # moving-mean window: 2 °C at 2 °C/min, far narrower than any event
HEATING_MIN_C_PER_MIN: Final = 0.2  # slower than this is a hold, not a ramp
ONSET_K_NOISE: Final = 5.0  # onset: ΔT above baseline by 5 σ ...
ONSET_MIN_C: Final = 0.05  # ... and at least 0.05 °C (a thermocouple pair's resolution)
PEAK_K_NOISE: Final = 10.0  # an exotherm stands 10 σ ...
PEAK_MIN_C: Final = 0.2  # ... and 0.2 °C above its baseline
PREOX_ROUND_C: Final = 5.0  # the suggestion is the peak rounded to 5 °C
FOOT_SPAN_C: Final = 80.0  # the peak's foot (for its half-width) is sought this far below it
_MIN_BASELINE_ROWS: Final = 10
# What the trace's stage column holds outside the recipe's steps (Phase values).
RUN_STATES: Final = frozenset({"idle", "preflight", "running", "held", "stopping", "aborting",
                               "completed", "aborted", "faulted"})
_OXIDISING: Final = frozenset({"air", "o2", "oxygen", "synthetic air"})
_INCIDENT_EVENTS: Final = frozenset({"interlock_trip", "interlock_cleared", "alarm",
                                     "operator_confirmed", "endpoint_reached"})
_NOTABLE_STATES: Final = frozenset({"held", "stopping", "aborting", "aborted", "faulted"})


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage of the recipe as planned: its name, atmosphere and step kinds in order."""

    name: str
    atmosphere: str
    step_kinds: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class BatchData:
    """One batch, loaded: trace columns as arrays, audit records, summary, planned stages.

    ``trace`` holds every numeric column as float64 (°C, s, sccm, % as the names say),
    NaN where a cell was empty; ``text`` holds ``wall_utc``, ``stage`` and ``state`` (and
    any other non-numeric column) as str arrays. ``summary`` is None for a batch that has
    not ended (no summary.json).
    """

    batch_dir: Path
    batch_id: str
    sample: str
    recipe: str
    columns: tuple[str, ...]
    trace: Mapping[str, FloatArray]
    text: Mapping[str, NDArray[np.str_]]
    audit: tuple[Mapping[str, Any], ...]
    summary: Mapping[str, Any] | None
    stages: tuple[StagePlan, ...]

    @property
    def rows(self) -> int:
        """Number of trace rows."""
        return len(self.trace["elapsed_s"])

    def channel(self, name: str) -> FloatArray | None:
        """A numeric column with at least one reading, else None (absent or all empty)."""
        values = self.trace.get(name)
        if values is None or not np.isfinite(values).any():
            return None
        return values

    def gases(self) -> tuple[str, ...]:
        """Gas names with a measured-flow column (``flow_<gas>_sccm``), in header order."""
        return tuple(c[len("flow_"):-len("_sccm")] for c in self.columns
                     if c.startswith("flow_") and c.endswith("_sccm")
                     and not c.endswith("_setpoint_sccm"))


@dataclass(frozen=True, slots=True)
class MassMinimum:
    """Lowest (smoothed) mass % and where it happened (°C, s of process time)."""

    mass_pct: float
    elapsed_s: float
    furnace_c: float
    sample_c: float | None
    stage: str


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


@dataclass(frozen=True, slots=True)
class StageResult:
    """Planned against actual duration (s) and mass change (% points) of one stage."""

    name: str
    planned_s: float | None
    actual_s: float | None
    mass_start_pct: float | None
    mass_end_pct: float | None
    mass_change_pct: float | None


@dataclass(frozen=True, slots=True)
class GasUse:
    """Gas used and planned, litres at standard conditions."""

    gas: str
    used_l: float | None
    planned_l: float | None


@dataclass(frozen=True, slots=True)
class Incident:
    """A notable audit event (trip, alarm, operator action, hold/abort), one line."""

    elapsed_s: float
    event: str
    text: str


@dataclass(frozen=True, slots=True)
class Report:
    """What a batch did and what its traces show. Every field is JSON-ready (see to_dict).

    ``mass_note`` and ``exotherm_note`` say how the events were found or why they are None.
    ``suggested_preoxidation_c`` is set only for a screening batch in air with an exotherm;
    ``suggestion`` gives the reasoning (or why there is none) in one line.
    """

    batch_id: str
    sample: str
    recipe: str
    outcome: str
    end_reason: str
    planned_s: float | None
    actual_s: float | None
    holdback_s: float | None
    temperature_channel: str
    analysed_until_s: float | None
    mass_minimum: MassMinimum | None
    mass_note: str
    exotherm: Exotherm | None
    exotherm_note: str
    stages: tuple[StageResult, ...]
    gases: tuple[GasUse, ...]
    incidents: tuple[Incident, ...]
    screening: bool
    suggested_preoxidation_c: float | None
    suggestion: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, str, float, bool and None: ``json.dumps`` takes it as it is."""
        plain: dict[str, Any] = _lists(dataclasses.asdict(self))
        return plain


# ---------------------------------------------------------------------------- helpers
def _lists(value: Any) -> Any:
    """Tuples become lists, recursively, so the dict equals its own JSON round trip."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


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


def _window_rows(t_s: FloatArray, span_s: float) -> int:
    """How many rows ``span_s`` seconds cover, from the median scan period."""
    if len(t_s) < 2:
        return 1
    step = float(np.nanmedian(np.diff(t_s)))
    return max(1, round(span_s / step)) if step > 0 else 1


def heating_rate_c_per_min(t_s: FloatArray, temp_c: FloatArray) -> FloatArray:
    """Smoothed heating rate (°C/min) per row; NaN where the temperature is unknown."""
    if len(t_s) < 3:
        return np.full(len(t_s), np.nan)
    smooth = moving_mean(temp_c, _window_rows(t_s, SMOOTH_S))
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


def sample_window(data: BatchData) -> int:
    """Rows before the first operator step (the sample leaves the furnace there)."""
    t = data.trace["elapsed_s"]
    starts = [float(r.get("t_s", math.nan)) for r in data.audit
              if r.get("event") == "step_started" and r.get("kind") == "operator"]
    if not starts or not math.isfinite(starts[0]):
        return len(t)
    return int(np.searchsorted(t, starts[0], side="left"))


def _num(value: Any) -> float | None:
    """A finite float from JSON, else None (the summary writes NaN as a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(parent: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``parent[key]`` if it is a JSON object, else an empty one."""
    value = (parent or {}).get(key)
    return value if isinstance(value, Mapping) else {}


def _opt(values: FloatArray | None, i: int) -> float | None:
    if values is None:
        return None
    v = float(values[i])
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------- events
def _mass_minimum(data: BatchData, end: int) -> tuple[MassMinimum | None, str]:
    mass = data.channel("mass_pct")
    if mass is None:
        return None, "no balance (no mass_pct readings in trace.csv)"
    t = data.trace["elapsed_s"][:end]
    smooth = moving_mean(mass[:end], _window_rows(t, SMOOTH_S))
    if not np.isfinite(smooth).any():
        return None, "no mass_pct readings before the sample left the furnace"
    # TGA reads the mass against temperature while heating: the minimum worth naming is
    # where the mass stops falling and starts to rise (a turning point on the heating
    # curve); without one, the lowest point while heating; without heating, the lowest.
    rate = heating_rate_c_per_min(t, data.trace["furnace_c"][:end])
    heating = np.isfinite(rate) & (rate >= HEATING_MIN_C_PER_MIN) & np.isfinite(smooth)
    how = f"lowest {SMOOTH_S:.0f} s moving mean of mass_pct before the first operator step"
    i = int(np.nanargmin(smooth))
    for a, b in true_runs(heating):
        turn = _turning_point(smooth[a:b])
        if turn is not None:
            i, how = a + turn, (f"first turning point of the {SMOOTH_S:.0f} s moving mean "
                                f"of mass_pct while heating (a rise of at least "
                                f"{MASS_RISE_PCT:g} % follows)")
            break
    else:
        if heating.any():
            rows = np.flatnonzero(heating)
            i = int(rows[np.nanargmin(smooth[rows])])
            how = f"lowest {SMOOTH_S:.0f} s moving mean of mass_pct while heating"
    furnace_c = float(data.trace["furnace_c"][i])
    found = MassMinimum(float(smooth[i]), float(t[i]), furnace_c,
                        _opt(data.channel("sample_c"), i), str(data.text["stage"][i]))
    return found, how


MASS_RISE_PCT = 0.2  # a rise this large after a minimum makes it a turning point


def _turning_point(mass: FloatArray) -> int | None:
    """Index of the first running minimum that a rise of ``MASS_RISE_PCT`` follows."""
    low_i, low = -1, np.inf
    for k, m in enumerate(mass):
        if not np.isfinite(m):
            continue
        if m < low:
            low_i, low = k, float(m)
        elif m - low >= MASS_RISE_PCT:
            return low_i
    return None


def _baseline(temp: FloatArray, sdt: FloatArray, a: int, p: int
              ) -> tuple[float, float, float, float, float, float] | None:
    """Linear baseline below the peak at row ``p`` of the run starting at ``a``.

    Returns (slope, intercept °C, noise σ °C, from °C, to °C, half-width °C), or None if
    too few rows lie below the peak's flank.
    """
    idx = np.arange(a, p)
    ok = np.isfinite(temp[idx]) & np.isfinite(sdt[idx])
    # Half-width: the leading edge at half height above the foot (the lowest ΔT within
    # FOOT_SPAN_C below the peak); the fit window then sits 3-6 half-widths down, clear of
    # the flank. It assumes no other thermal event there: the report draws the line.
    near = idx[ok & (temp[idx] >= temp[p] - FOOT_SPAN_C)]
    if len(near) == 0:
        return None
    under_half = near[sdt[near] <= (np.min(sdt[near]) + sdt[p]) / 2.0]
    half_width = max(float(temp[p] - temp[under_half[-1]]) if len(under_half) else 0.0, 1.0)
    lo, hi = float(temp[p] - 6.0 * half_width), float(temp[p] - 3.0 * half_width)
    base = idx[ok & (temp[idx] >= lo) & (temp[idx] <= hi)]
    if len(base) < _MIN_BASELINE_ROWS:  # a short run: its earliest rows below the flank
        base = idx[ok & (temp[idx] <= hi)][:max(_MIN_BASELINE_ROWS, (p - a) // 3)]
    if len(base) < _MIN_BASELINE_ROWS:
        return None
    slope, intercept = (float(c) for c in np.polyfit(temp[base], sdt[base], 1))
    noise = float(np.std(sdt[base] - (intercept + slope * temp[base])))
    return (slope, intercept, noise, max(lo, float(temp[base[0]])),
            min(hi, float(temp[base[-1]])), half_width)


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
                  a: int, b: int, edge: int) -> Exotherm | None:
    """The exotherm in the heating run ``[a, b)``, or None if there is none.

    ``temp`` and ``sdt`` are the smoothed temperature and ΔT (°C); ``edge`` is how many
    rows at either end of the run cannot hold a peak.
    """
    if not np.isfinite(sdt[a:b]).any():
        return None
    p = a + int(np.nanargmax(sdt[a:b]))
    if p - a < edge or b - 1 - p < edge:
        return None  # the maximum sits at an end of the run: a step, not a peak
    fit = _baseline(temp, sdt, a, p)
    if fit is None:
        return None
    slope, intercept, noise, lo, hi, half_width = fit
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
        stage=str(data.text["stage"][p]))


def _exotherm(data: BatchData, end: int, channel: str) -> tuple[Exotherm | None, str]:
    delta = data.channel("delta_t_c")
    sample = data.channel("sample_c")
    if delta is None and sample is not None:
        delta = sample - data.trace["furnace_c"]
    if delta is None:
        return None, "no sample thermocouple (no sample_c/delta_t_c readings in trace.csv)"
    t = data.trace["elapsed_s"][:end]
    edge = _window_rows(t, SMOOTH_S)
    temp = moving_mean(data.trace[channel][:end], edge)
    sdt = moving_mean(delta[:end], edge)
    rate = heating_rate_c_per_min(t, data.trace[channel][:end])
    heating = np.isfinite(rate) & (rate >= HEATING_MIN_C_PER_MIN)
    found = [_run_exotherm(data, channel, temp, sdt, a, b, edge)
             for a, b in true_runs(heating) if b - a >= 3 * edge]
    exotherms = [e for e in found if e is not None]
    if not exotherms:
        return None, (f"no exotherm: no inner maximum of ΔT during heating stands "
                      f"{PEAK_K_NOISE:g} σ and {PEAK_MIN_C:g} °C above its baseline")
    return max(exotherms, key=lambda e: e.peak_excess_c), (
        f"peak: max of {SMOOTH_S:.0f} s smoothed ΔT while heating; onset: ΔT "
        f"{ONSET_K_NOISE:g} σ (≥ {ONSET_MIN_C:g} °C) above a linear baseline "
        "fitted 3-6 half-widths below the peak")


def _stages(data: BatchData) -> tuple[StageResult, ...]:
    summary_stages = _mapping(data.summary, "stages")
    stage = data.text["stage"]
    seen = [n for n, _, _ in stage_runs(stage) if n not in RUN_STATES]
    names = list(dict.fromkeys([*(s.name for s in data.stages), *summary_stages, *seen]))
    t = data.trace["elapsed_s"]
    mass = data.channel("mass_pct")
    out: list[StageResult] = []
    for name in names:
        timing = summary_stages.get(name)
        timing = timing if isinstance(timing, Mapping) else {}
        rows = np.flatnonzero(stage == name)
        actual = _num(timing.get("actual_s"))
        if actual is None and len(rows):
            actual = float(t[rows[-1]] - t[rows[0]])
        start = end = None
        if mass is not None:
            readings = rows[np.isfinite(mass[rows])]
            if len(readings):
                start, end = float(mass[readings[0]]), float(mass[readings[-1]])
        out.append(StageResult(name, _num(timing.get("planned_s")), actual, start, end,
                               None if start is None or end is None else end - start))
    return tuple(out)


def _gases(data: BatchData) -> tuple[GasUse, ...]:
    used = _mapping(data.summary, "gas_used_l")
    planned = _mapping(data.summary, "gas_planned_l")
    names = list(dict.fromkeys([*data.gases(), *used, *planned]))
    return tuple(GasUse(g, _num(used.get(g)), _num(planned.get(g))) for g in names)


def _incident_text(r: Mapping[str, Any]) -> str | None:
    event = r.get("event")
    if event == "state_change":
        if r.get("new") not in _NOTABLE_STATES:
            return None
        return f"{r.get('old')} -> {r.get('new')}: {r.get('reason', '')}".rstrip(": ")
    if event not in _INCIDENT_EVENTS:
        return None
    if event in ("interlock_trip", "interlock_cleared"):
        what = f"{r.get('interlock', '?')}: {r.get('action', '')}"
        measured, limit = _num(r.get("measured")), _num(r.get("limit"))
        return what + (f" ({measured:g} against {limit:g})"
                       if measured is not None and limit is not None else "")
    if event == "alarm":
        measured = _num(r.get("measured"))
        return str(r.get("alarm", "?")) + (f" (measured {measured:g})" if measured is not None
                                           else "")
    if event == "operator_confirmed":
        return f"{r.get('operator', '?')}: {r.get('how', 'confirmed')}"
    return ", ".join(f"{k}={v}" for k, v in r.items()
                     if k not in ("seq", "t_s", "wall_utc", "event", "prev", "hash"))


def _incidents(audit: Sequence[Mapping[str, Any]]) -> tuple[Incident, ...]:
    out = []
    for r in audit:
        text = _incident_text(r)
        if text is not None:
            out.append(Incident(_num(r.get("t_s")) or 0.0, str(r.get("event")), text))
    return tuple(sorted(out, key=lambda i: i.elapsed_s))  # stable: audit order within a time


def _screening(data: BatchData) -> tuple[bool, str]:
    """A screening batch is one constant-rate heating ramp: say so, and in which gas."""
    kinds = [k for s in data.stages for k in s.step_kinds]
    ramps = [s for s in data.stages for k in s.step_kinds if k == "ramp"]
    named = data.recipe.lower().startswith("screen") or data.sample.lower().startswith("screen")
    one_ramp = len(ramps) == 1 and "dwell" not in kinds
    atmosphere = ramps[0].atmosphere if len(ramps) == 1 else ""
    return named or one_ramp, atmosphere


def _suggest(data: BatchData, exo: Exotherm | None) -> tuple[bool, float | None, str]:
    screening, atmosphere = _screening(data)
    if not screening:
        return False, None, ("not a screening batch (not one heating ramp): no pre-oxidation "
                             "temperature suggested")
    if atmosphere and atmosphere.lower() not in _OXIDISING:
        return True, None, (f"screening in {atmosphere}: no cross-linking exotherm is expected "
                            "without air, so no pre-oxidation temperature is suggested")
    if exo is None:
        return True, None, "screening batch, but no exotherm in ΔT: no temperature suggested"
    suggested = math.floor(exo.peak_c / PREOX_ROUND_C + 0.5) * PREOX_ROUND_C
    where = "sample" if exo.temperature_channel == "sample_c" else "furnace"
    return True, suggested, (
        f"pre-oxidise at {suggested:.0f} °C: the cross-linking exotherm in {atmosphere or 'air'} "
        f"peaks at {exo.peak_c:.1f} °C ({where}, onset {exo.onset_c:.1f} °C), rounded to "
        f"{PREOX_ROUND_C:g} °C, as DESIGN.md §1's 220 °C was read from TGA/DSC traces")


def analyse(data: BatchData) -> Report:
    """Extract the report's events from a loaded batch. Pure: no I/O, no clock.

    Temperatures are °C on ``sample_c`` where the trace has readings, else ``furnace_c``.
    Events that need a missing channel are None, and the matching note says why.
    """
    channel = "sample_c" if data.channel("sample_c") is not None else "furnace_c"
    end = sample_window(data)
    mass_min, mass_note = _mass_minimum(data, end)
    exo, exo_note = _exotherm(data, end, channel)
    screening, suggested, suggestion = _suggest(data, exo)
    summary = data.summary or {}
    ended: Mapping[str, Any] = next(
        (r for r in reversed(data.audit) if r.get("event") == "batch_ended"), {})
    t = data.trace["elapsed_s"]
    return Report(
        batch_id=data.batch_id, sample=data.sample, recipe=data.recipe,
        outcome=str(summary.get("outcome") or ended.get("outcome")
                    or "unknown (no summary.json: interrupted or still running)"),
        end_reason=str(summary.get("end_reason") or ended.get("end_reason") or ""),
        planned_s=_num(summary.get("planned_s")),
        actual_s=_num(summary.get("actual_s")) or (float(t[-1]) if len(t) else None),
        holdback_s=_num(summary.get("holdback_s")), temperature_channel=channel,
        analysed_until_s=float(t[end - 1]) if 0 < end <= len(t) else None,
        mass_minimum=mass_min, mass_note=mass_note, exotherm=exo, exotherm_note=exo_note,
        stages=_stages(data), gases=_gases(data), incidents=_incidents(data.audit),
        screening=screening, suggested_preoxidation_c=suggested, suggestion=suggestion)
