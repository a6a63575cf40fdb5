"""Fit a twin to recorded stretches of a station's batches (issue 16), in three stages:

1. The furnace from its recorded heater output (``replay_plant``): heated mass, conductive
   and radiative losses, thermocouple lag. The output is what the furnace was really given,
   so this stage needs no PID and is well conditioned.
2. Mass, losses and the PID terms together from the recorded working setpoint alone
   (``replay_loop``): the error of furnace temperature and output of a replay of the
   batches' setpoints, started from stage 1, the thermocouple's lag held at stage 1's (the
   closed loop hides it). This is the fit the issue asks for: the twin that replays the
   past batches best is the one dry runs will use.
3. The boat's lag behind the core, from the boat thermocouple where the station has one,
   against the core of stage 2's replay (robust to the sample's own reaction heat, which
   the twin does not model).

The optimiser is ``scipy.optimize.least_squares`` (trust-region reflective): bounded,
well kept, and it returns the Jacobian the uncertainties come from. Parameters are fitted
as logarithms (they span six decades and are all positive). The heater's power is held at
the station's value: with the output as the only input, power, mass and losses enter only
as ratios, so one of them must be given (the element's rating).

The uncertainties are 1 sigma from the Jacobian, with the residual variance inflated for
its lag-1 autocorrelation (rows 2 s apart are not independent measurements). They say how
well the data pin a value, not how wrong the model's form may be: the per-batch replay
error says that. Not here: reading batch folders, choosing the stretches, refusing a batch
for what it records (``controller.twin``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
from scipy.optimize import OptimizeResult, least_squares

from simulator.twin.params import FITTED, TwinParams
from simulator.twin.replay import (
    DEFAULT_SUBSTEP_S,
    Floats,
    LoopReplay,
    Stretch,
    replay_loop,
    replay_plant,
)

__all__ = ["FitResult", "TwinFitError", "fit_twin", "loop_errors"]

_PLANT: Final = ("heat_capacity_j_per_k", "conductance_w_per_k", "radiation_w_per_k4",
                 "tc_tau_s")
# Stage 2 holds the thermocouple's lag at stage 1's: the loop hides it (the instrument keeps
# the PV on its setpoint whatever the lag), so the closed-loop replay barely feels it and a
# fit there drifts it (85 s for a 60 s lag on a short batch) to soak up other errors.
_LOOP: Final = ("heat_capacity_j_per_k", "conductance_w_per_k", "radiation_w_per_k4",
                "proportional_band_c", "integral_time_s", "derivative_time_s")
WARMUP_S: Final = 300.0
"""Each stretch's first rows are not scored: the core's start is an estimate."""
OUTPUT_WEIGHT_K_PER_PCT: Final = 0.2
"""In the closed-loop stage, 1 % of output error counts as much as 0.2 K of temperature."""
OUTPUT_SMOOTHING_S: Final = 30.0
"""The recorded output that drives stage 1 is averaged over this long (see ``_smoothed``)."""
_DIFF_STEP: Final = 1e-4
_MAX_NFEV: Final = 60
_BOUND_REL: Final = 1e-3


class TwinFitError(ValueError):
    """The data cannot give a twin (the message says why, in one line)."""


@dataclass(frozen=True)
class FitResult:
    """The fitted twin; 1-sigma uncertainty of each fitted value (same unit); per batch the
    closed-loop replay's RMS error of furnace temperature (K) and output (%); the replays
    (for the plot); the fitted values that ended at a bound; replays run."""

    params: TwinParams
    one_sigma: dict[str, float]
    rms_k: dict[str, float]
    output_rms_pct: dict[str, float]
    replays: tuple[tuple[Stretch, LoopReplay], ...]
    at_bound: tuple[str, ...]
    evaluations: int


def _scored(s: Stretch) -> Floats:
    """The rows of ``s`` that count: all but the first ``WARMUP_S``."""
    return np.asarray(s.t_s >= s.t_s[0] + WARMUP_S)


def _transform(names: Sequence[str], start: TwinParams,
               bounds: Mapping[str, tuple[float, float]]
               ) -> tuple[Floats, Floats, Floats]:
    """Start and bounds of ``names`` as logarithms (a zero lower bound becomes a millionth of
    the start, which the fit cannot tell from zero anyway)."""
    x0, lo, hi = [], [], []
    for name in names:
        value = getattr(start, name)
        b_lo, b_hi = bounds[name]
        floor = max(b_lo, 1e-6 * value if value > 0.0 else 1e-12)
        lo.append(math.log(floor))
        hi.append(math.log(b_hi))
        x0.append(math.log(min(max(value, floor), b_hi)))
    x = np.clip(np.asarray(x0), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)
    return x, np.asarray(lo), np.asarray(hi)


def _params(start: TwinParams, names: Sequence[str], x: Floats) -> TwinParams:
    return replace(start, **{n: float(math.exp(v)) for n, v in zip(names, x, strict=True)})


class _Counter:
    def __init__(self) -> None:
        self.n = 0


def _solve(residuals: Callable[[TwinParams], Floats], names: Sequence[str],
           start: TwinParams, bounds: Mapping[str, tuple[float, float]], counter: _Counter,
           loss: Literal["linear", "soft_l1"] = "linear") -> tuple[TwinParams, OptimizeResult]:
    x0, lo, hi = _transform(names, start, bounds)

    def fun(x: Floats) -> Floats:
        counter.n += 1
        return residuals(_params(start, names, x))

    if not np.isfinite(fun(x0)).all():  # later points that diverge, the optimiser steps back
        raise TwinFitError("the replay is not finite from a heated mass of "
                           f"{start.heat_capacity_j_per_k:g} J/K (too small for its losses and "
                           "power to step through)")
    with np.errstate(over="ignore", invalid="ignore"):  # an iterate that diverges: no warning
        result = least_squares(fun, x0, bounds=(lo, hi),
                               diff_step=np.full(x0.size, _DIFF_STEP), loss=loss,
                               max_nfev=_MAX_NFEV, x_scale=1.0)
    return _params(start, names, result.x), result


def _smoothed(s: Stretch) -> Stretch:
    """``s`` with its output averaged over ``OUTPUT_SMOOTHING_S`` around each row. The
    instrument's output jitters with the PV noise its derivative term sees; one sample of
    it per row, held, would drive a replay with noise the furnace never felt (its heated
    mass averages it away), which the fit would hide behind a longer thermocouple lag."""
    steps_s = np.diff(s.t_s)
    steps_s = steps_s[steps_s > 0.0]  # a row written twice is no step
    dt_s = float(np.median(steps_s)) if steps_s.size else 1.0
    n = max(1, round(OUTPUT_SMOOTHING_S / dt_s)) | 1
    if n == 1 or s.output_pct.size <= n:
        return s
    pad = n // 2
    padded = np.pad(s.output_pct, pad, mode="edge")
    smooth = np.convolve(padded, np.full(n, 1.0 / n), mode="valid")
    return replace(s, output_pct=smooth)


def _plant_residuals(stretches: Sequence[Stretch], substep_s: float
                     ) -> Callable[[TwinParams], Floats]:
    stretches = [_smoothed(s) for s in stretches]
    scored = [_scored(s) for s in stretches]

    def residuals(p: TwinParams) -> Floats:
        return np.concatenate([(replay_plant(p, s, substep_s)[0] - s.pv_c)[m]
                               for s, m in zip(stretches, scored, strict=True)])
    return residuals


def _loop_residuals(stretches: Sequence[Stretch], substep_s: float
                    ) -> Callable[[TwinParams], Floats]:
    scored = [_scored(s) for s in stretches]

    def residuals(p: TwinParams) -> Floats:
        parts = []
        for s, m in zip(stretches, scored, strict=True):
            r = replay_loop(p, s, substep_s)
            parts.append((r.tc_c - s.pv_c)[m])
            parts.append(OUTPUT_WEIGHT_K_PER_PCT * (r.output_pct - s.output_pct)[m])
        return np.concatenate(parts)
    return residuals


def _follow(core_c: Floats, t_s: Floats, start_c: float, tau_s: float) -> Floats:
    """A first-order lag of ``tau_s`` behind ``core_c`` (held at each row's value over the
    interval before it, as the boat steps toward the core after each substep)."""
    alpha = -np.expm1(-np.diff(t_s) / tau_s)
    out = np.empty_like(core_c)
    value = start_c
    out[0] = value
    for k, (a, c) in enumerate(zip(alpha.tolist(), core_c[1:].tolist(), strict=True), 1):
        value += (c - value) * a
        out[k] = value
    return out


def _boat_residuals(replays: Sequence[tuple[Stretch, LoopReplay]]
                    ) -> Callable[[TwinParams], Floats] | None:
    """The boat thermocouple against the boat following the replayed core (the replay that
    matches the furnace's thermocouple, so its core is the best estimate of the real one),
    on the rows the boat was read, in stretches that start with a reading of it."""
    with_boat = [(s, r.furnace_c, _scored(s) & np.isfinite(s.sample_c)) for s, r in replays
                 if math.isfinite(s.sample_c[0])]  # the boat's start, and the rows it was read
    with_boat = [(s, core, m) for s, core, m in with_boat if m.any()]
    if not with_boat:
        return None

    def residuals(p: TwinParams) -> Floats:
        return np.concatenate([
            (_follow(core, s.t_s, float(s.sample_c[0]), p.sample_tau_s) - s.sample_c)[m]
            for s, core, m in with_boat])
    return residuals


def _one_sigma(result: OptimizeResult, names: Sequence[str], p: TwinParams
               ) -> dict[str, float]:
    """1 sigma of each fitted value from the Jacobian at the optimum, the residual variance
    inflated by (1 + ρ)/(1 − ρ) for its lag-1 autocorrelation ρ; ``math.inf`` for a value
    the data cannot pin at all."""
    jac = np.asarray(result.jac)
    r = np.asarray(result.fun)
    dof = max(1, r.size - len(names))
    variance = float(r @ r) / dof
    if r.size > 2 and float(np.std(r)) > 0.0:
        rho = float(np.clip(np.corrcoef(r[:-1], r[1:])[0, 1], 0.0, 0.999))
        variance *= (1.0 + rho) / (1.0 - rho)
    cov = np.linalg.pinv(jac.T @ jac) * variance
    sigma_log = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(over="ignore"):  # inf: the data do not pin the value at all
        sigma = np.expm1(sigma_log)
    return {n: float(getattr(p, n) * s) for n, s in zip(names, sigma.tolist(), strict=True)}


def loop_errors(p: TwinParams, stretches: Sequence[Stretch],
                substep_s: float = DEFAULT_SUBSTEP_S
                ) -> tuple[dict[str, float], dict[str, float],
                           tuple[tuple[Stretch, LoopReplay], ...]]:
    """Per batch, the closed-loop replay's RMS error of furnace temperature (K) and of the
    output (%), over the scored rows; and the replays."""
    sq_k: dict[str, list[float]] = {}
    sq_pct: dict[str, list[float]] = {}
    replays = []
    for s in stretches:
        r = replay_loop(p, s, substep_s)
        m = _scored(s)
        sq_k.setdefault(s.batch, []).extend(((r.tc_c - s.pv_c)[m] ** 2).tolist())
        sq_pct.setdefault(s.batch, []).extend(((r.output_pct - s.output_pct)[m] ** 2).tolist())
        replays.append((s, r))
    rms_k = {b: math.sqrt(sum(v) / len(v)) if v else math.nan for b, v in sq_k.items()}
    rms_pct = {b: math.sqrt(sum(v) / len(v)) if v else math.nan for b, v in sq_pct.items()}
    return rms_k, rms_pct, tuple(replays)


def fit_twin(stretches: Sequence[Stretch], start: TwinParams,
             bounds: Mapping[str, tuple[float, float]], *,
             substep_s: float = DEFAULT_SUBSTEP_S) -> FitResult:
    """Fit ``FITTED`` from ``start`` (held: power and output limits) within ``bounds``
    (name -> (low, high)) to ``stretches``. Raises ``TwinFitError`` when no stretch has a
    scored row."""
    if not any(bool(_scored(s).any()) for s in stretches):
        raise TwinFitError(f"no stretch is longer than the {WARMUP_S:g} s warm-up")
    counter = _Counter()
    plant, plant_result = _solve(_plant_residuals(stretches, substep_s), _PLANT, start,
                                 bounds, counter)
    loop, loop_result = _solve(_loop_residuals(stretches, substep_s), _LOOP, plant, bounds,
                               counter)
    sigma = {"tc_tau_s": _one_sigma(plant_result, _PLANT, plant)["tc_tau_s"]}
    sigma.update(_one_sigma(loop_result, _LOOP, loop))
    fitted = loop
    rms_k, rms_pct, replays = loop_errors(loop, stretches, substep_s)
    boat = _boat_residuals(replays)
    if boat is not None:
        fitted, boat_result = _solve(boat, ("sample_tau_s",), loop, bounds, counter,
                                     loss="soft_l1")
        sigma.update(_one_sigma(boat_result, ("sample_tau_s",), fitted))
        replays = tuple((s, replace(r, sample_c=_follow(r.furnace_c, s.t_s,
                                                        float(s.sample_c[0]),
                                                        fitted.sample_tau_s)))
                        for s, r in replays)
    at_bound = tuple(n for n in FITTED if n in sigma and _at_bound(getattr(fitted, n),
                                                                    bounds[n]))
    return FitResult(fitted, sigma, rms_k, rms_pct, replays, at_bound, counter.n)


def _at_bound(value: float, bound: tuple[float, float]) -> bool:
    lo, hi = bound
    return (lo > 0.0 and value <= lo * (1.0 + _BOUND_REL)) or value >= hi * (1.0 - _BOUND_REL)
