"""The tube's gas volume from the record of a purge: the O2 analyser's reading falling as the
measured flows wash the air out (issue 16). The tube is the simulator's one well-mixed
volume (``simulator.gas``: ``C ← C_in + (C − C_in)·exp(−Q·dt/V)``), read through the
analyser's first-order lag (``simulator.o2``); the fit finds the volume ``V`` whose replay of
the recorded flows best gives the recorded reading, in decades (log10 ppm), above the
analyser's floor. The analyser's lag is held at the simulator's: over a purge of several
tube time constants it shapes only the first minute.

Not here: finding the purges in a batch (the controller reads the trace) or the heat
balance (``fit``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from simulator.gas import inlet_o2_ppm
from simulator.o2 import SENSOR_TAU_S
from simulator.twin.replay import Floats

__all__ = ["FLOOR_PPM", "Purge", "PurgeFit", "fit_tube_volume", "inlet_ppm", "replay_o2"]

FLOOR_PPM: Final = 10.0
"""Readings below this are not scored: the inert gas's own O2 and the noise dominate."""
_SCCM_TO_L_PER_S: Final = 1.0 / 1000.0 / 60.0


def inlet_ppm(o2_fraction: float) -> float:
    """The O2 (ppm) a supply gas of ``o2_fraction`` brings, as the simulator has it."""
    return inlet_o2_ppm(o2_fraction)


@dataclass(frozen=True)
class Purge:
    """One recorded purge: times (s), total measured inflow (sccm) and its flow-weighted O2
    (ppm) over each row, and the analyser's reading (ppm), from the batch named."""

    batch: str
    t_s: Floats
    inflow_sccm: Floats
    inflow_o2_ppm: Floats
    o2_ppm: Floats


def replay_o2(volume_l: float, p: Purge, sensor_tau_s: float = SENSOR_TAU_S) -> Floats:
    """The analyser's reading (ppm) at each row for a tube of ``volume_l`` litres, tube and
    analyser starting in equilibrium at the first reading."""
    tube = reading = float(p.o2_ppm[0])
    out = [reading]
    t, q, c_in = p.t_s.tolist(), p.inflow_sccm.tolist(), p.inflow_o2_ppm.tolist()
    for k in range(1, len(t)):
        dt_s = t[k] - t[k - 1]
        flow = 0.5 * (q[k - 1] + q[k])
        if flow > 0.0 and dt_s > 0.0:
            inlet = c_in[k]
            tube = inlet + (tube - inlet) * math.exp(-flow * _SCCM_TO_L_PER_S * dt_s / volume_l)
        if dt_s > 0.0:
            reading += (tube - reading) * -math.expm1(-dt_s / sensor_tau_s)
        out.append(reading)
    return np.asarray(out)


@dataclass(frozen=True)
class PurgeFit:
    """The fitted volume (L), its 1 sigma (L), and per batch the replay's RMS error in
    decades of O2 over the scored rows."""

    volume_l: float
    one_sigma_l: float
    rms_decades: dict[str, float]


def _scored(p: Purge) -> NDArray[np.bool_]:
    return np.asarray(p.o2_ppm >= FLOOR_PPM)


def fit_tube_volume(purges: Sequence[Purge], start_l: float,
                    bounds_l: tuple[float, float]) -> PurgeFit | None:
    """The volume within ``bounds_l`` whose replay matches ``purges`` best, from
    ``start_l``; None without a purge that has a scored row after its first."""
    usable = [p for p in purges if int(_scored(p)[1:].sum()) >= 10]
    if not usable:
        return None

    def residuals(x: Floats) -> Floats:
        v = math.exp(float(x[0]))
        return np.concatenate([
            (np.log10(np.maximum(replay_o2(v, p), 1e-3)) - np.log10(p.o2_ppm))[_scored(p)]
            for p in usable])

    lo, hi = math.log(bounds_l[0]), math.log(bounds_l[1])
    x0 = np.asarray([min(max(math.log(start_l), lo + 1e-9), hi - 1e-9)])
    result = least_squares(residuals, x0, bounds=(np.asarray([lo]), np.asarray([hi])),
                           diff_step=np.asarray([1e-4]), max_nfev=50)
    volume_l = math.exp(float(result.x[0]))
    r = np.asarray(result.fun)
    jac = np.asarray(result.jac)
    variance = float(r @ r) / max(1, r.size - 1)
    jtj = float((jac.T @ jac)[0, 0])
    sigma_log = math.sqrt(variance / jtj) if jtj > 0.0 else math.inf
    rms: dict[str, list[float]] = {}
    for p in usable:
        err = (np.log10(np.maximum(replay_o2(volume_l, p), 1e-3)) - np.log10(p.o2_ppm))
        rms.setdefault(p.batch, []).extend((err[_scored(p)] ** 2).tolist())
    return PurgeFit(volume_l, volume_l * math.expm1(sigma_log),
                    {b: math.sqrt(sum(v) / len(v)) for b, v in rms.items()})
