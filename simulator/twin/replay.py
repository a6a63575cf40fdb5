"""Replay a recorded stretch of a batch through a twin: the simulator's furnace physics and
its instrument's PID (``simulator.thermal``, ``simulator.eurotherm``, ``simulator.sample``),
the same equations in the same order, in one tight loop without registers, noise or faults.

Two replays, the first the more constrained by the record:
- ``replay_plant``: the recorded heater output drives the heat balance; what the control
  thermocouple and the boat would read. Fits the furnace (mass, losses, lags).
- ``replay_loop``: the recorded working setpoint alone drives PID and furnace together, as a
  dry run would; what the furnace would have done. Fits the PID terms with mass and losses
  and is the test of a twin: it is how a dry run on it will go. (The PID alone on the
  recorded PV is no replay to fit to: its derivative term amplifies the PV's noise, which
  the instrument saw filtered every 0.5 s and the record holds once a scan.)

A substep of the recorded interval (``substep_s``: at most this long) replaces the
simulator's fixed 0.5 s: the fit replays a batch hundreds of times, and the core's time
constant is tens of minutes. The working setpoint is interpolated linearly between rows,
the recorded output held at the mean of its ends; between two rows of the same time (a row
written twice) no time passes. Not here: choosing the stretches (the controller reads batch
folders) or the fit (``fit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from simulator.eurotherm import DERIVATIVE_FILTER_N, INPUT_FILTER_S
from simulator.thermal import KELVIN_OFFSET
from simulator.twin.params import TwinParams

__all__ = ["DEFAULT_SUBSTEP_S", "LoopReplay", "Stretch", "replay_loop", "replay_plant"]

DEFAULT_SUBSTEP_S: Final = 2.0
_SLOPE_WINDOW_S: Final = 60.0

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Stretch:
    """A stretch of one batch's trace with nothing missing or invalid in it: times (s) and
    the furnace's working setpoint, PV (°C) and output (%) at each row, the boat's
    thermocouple (°C; NaN where the station has none), the room (°C) and where it came from
    (batch name, and its start in the batch's elapsed time, s)."""

    batch: str
    t_s: Floats
    wsp_c: Floats
    pv_c: Floats
    output_pct: Floats
    sample_c: Floats
    ambient_c: float

    @property
    def duration_s(self) -> float:
        """From the first row to the last, s."""
        return float(self.t_s[-1] - self.t_s[0])

    def core_start_c(self, tc_tau_s: float) -> float:
        """The furnace core at the first row, °C: the thermocouple lags it by ``tc_tau_s``,
        so the core is ahead by τ times the thermocouple's slope (fitted over the first
        minute)."""
        t, pv = self.t_s, self.pv_c
        n = int(np.searchsorted(t, t[0] + _SLOPE_WINDOW_S)) + 1
        if n < 3:
            return float(pv[0])
        slope = float(np.polyfit(t[:n] - t[0], pv[:n], 1)[0])
        return float(pv[0]) + tc_tau_s * slope


def _steps(dt_s: float, substep_s: float) -> tuple[int, float]:
    n = max(1, math.ceil(dt_s / substep_s - 1e-9))
    return n, dt_s / n


def replay_plant(p: TwinParams, s: Stretch,
                 substep_s: float = DEFAULT_SUBSTEP_S) -> tuple[Floats, Floats]:
    """The control thermocouple and the boat (°C, at each row) with the recorded output
    driving the furnace, from the first row's readings."""
    t_list = s.t_s.tolist()
    u_list = s.output_pct.tolist()
    c, g, kr, pmax = (p.heat_capacity_j_per_k, p.conductance_w_per_k, p.radiation_w_per_k4,
                      p.max_power_w)
    ta = s.ambient_c
    a_k = ta + KELVIN_OFFSET
    a4 = a_k * a_k * a_k * a_k
    furnace = s.core_start_c(p.tc_tau_s)
    tc = float(s.pv_c[0])
    boat = float(s.sample_c[0]) if math.isfinite(s.sample_c[0]) else furnace
    tc_out = [tc]
    boat_out = [boat]
    last_h = -1.0
    tc_a = boat_a = 0.0
    for k in range(1, len(t_list)):
        n, h = _steps(t_list[k] - t_list[k - 1], substep_s)
        if h != last_h:
            last_h = h
            tc_a = -math.expm1(-h / p.tc_tau_s)
            boat_a = -math.expm1(-h / p.sample_tau_s)
        u = 0.005 * (u_list[k - 1] + u_list[k])
        heat_w = (0.0 if u < 0.0 else 1.0 if u > 1.0 else u) * pmax
        for _ in range(n):
            t_k = furnace + KELVIN_OFFSET
            t_k2 = t_k * t_k
            furnace += h * (heat_w - g * (furnace - ta) - kr * (t_k2 * t_k2 - a4)) / c
            tc += (furnace - tc) * tc_a
            boat += (furnace - boat) * boat_a
        tc_out.append(tc)
        boat_out.append(boat)
    return np.asarray(tc_out), np.asarray(boat_out)


@dataclass(frozen=True)
class LoopReplay:
    """What a closed-loop replay gives at each row: the control thermocouple, the furnace
    core and the boat (°C), and the output (%)."""

    tc_c: Floats
    furnace_c: Floats
    sample_c: Floats
    output_pct: Floats


def replay_loop(p: TwinParams, s: Stretch, substep_s: float = DEFAULT_SUBSTEP_S) -> LoopReplay:
    """PID and furnace together, driven by the recorded working setpoint alone, from the
    first row's readings (the integral term picks up the recorded output)."""
    t_list, w_list = s.t_s.tolist(), s.wsp_c.tolist()
    c, g, kr, pmax = (p.heat_capacity_j_per_k, p.conductance_w_per_k, p.radiation_w_per_k4,
                      p.max_power_w)
    kp = 100.0 / p.proportional_band_c
    ti, td = p.integral_time_s, p.derivative_time_s
    lo, hi = p.output_low_pct, p.output_high_pct
    ta = s.ambient_c
    a_k = ta + KELVIN_OFFSET
    a4 = a_k * a_k * a_k * a_k
    furnace = s.core_start_c(p.tc_tau_s)
    tc = pvf = float(s.pv_c[0])
    boat = float(s.sample_c[0]) if math.isfinite(s.sample_c[0]) else furnace
    u = float(s.output_pct[0])
    i = u - kp * (w_list[0] - pvf)
    i = lo if i < lo else hi if i > hi else i
    d_rate = 0.0
    tc_out, core_out, boat_out, u_out = [tc], [furnace], [boat], [u]
    last_h = -1.0
    f_a = d_a = tc_a = boat_a = 0.0
    for k in range(1, len(t_list)):
        n, h = _steps(t_list[k] - t_list[k - 1], substep_s)
        if h != last_h:
            last_h = h
            f_a = -math.expm1(-h / INPUT_FILTER_S)
            d_a = -math.expm1(-h * DERIVATIVE_FILTER_N / td) if td > 0.0 else 0.0
            tc_a = -math.expm1(-h / p.tc_tau_s)
            boat_a = -math.expm1(-h / p.sample_tau_s)
        w0, dw = w_list[k - 1], (w_list[k] - w_list[k - 1]) / n
        for j in range(1, n + 1):
            # The instrument: PV through its input filter, then the PID (as _pid).
            previous = pvf
            pvf += (tc - pvf) * f_a
            error = w0 + dw * j - pvf
            if h > 0.0:  # a row written twice: no time passes (as the instrument's _pid)
                d_rate += ((pvf - previous) / h - d_rate) * d_a
            u_p = kp * error
            d = -kp * td * d_rate
            if ti > 0.0:
                i_new = i + u_p * h / ti
                u = u_p + i_new + d
                if not ((u > hi and error > 0.0) or (u < lo and error < 0.0)):
                    i = lo if i_new < lo else hi if i_new > hi else i_new
            else:
                i = 0.0
            u = u_p + i + d
            u = lo if u < lo else hi if u > hi else u
            # The furnace (as FurnaceThermal.step), then the boat following its core.
            t_k = furnace + KELVIN_OFFSET
            t_k2 = t_k * t_k
            furnace += h * (u * 0.01 * pmax - g * (furnace - ta) - kr * (t_k2 * t_k2 - a4)) / c
            tc += (furnace - tc) * tc_a
            boat += (furnace - boat) * boat_a
        tc_out.append(tc)
        core_out.append(furnace)
        boat_out.append(boat)
        u_out.append(u)
    return LoopReplay(np.asarray(tc_out), np.asarray(core_out), np.asarray(boat_out),
                      np.asarray(u_out))
