"""Lumped thermal model of a tube furnace core and its control thermocouple (§4.4).

Responsible for heat balance and thermocouple lag only. Not responsible for the controller
(PID, setpoints, noise: see ``eurotherm``) or the sample and its reactions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["KELVIN_OFFSET", "FurnaceThermal", "ThermalParams"]

KELVIN_OFFSET: Final = 273.15


@dataclass(frozen=True, slots=True)
class ThermalParams:
    """Parameters of the lumped furnace model, reference/hardware.md §4.4.

    MODEL ASSUMPTION: chosen so that natural cooling from 1300 to 1000 °C takes about
    15 min ([S49]: 10-15 min) and the hold power at 1600 °C is about 60 % of full power.
    Fit them to a real run (log PV, working output) before trusting absolute times.
    """

    heat_capacity_j_per_k: float = 3.8e3
    max_power_w: float = 4.0e3
    conductance_w_per_k: float = 0.76
    radiation_w_per_k4: float = 9.75e-11
    ambient_c: float = 25.0
    tc_tau_s: float = 60.0


class FurnaceThermal:
    """Furnace core temperature and control-thermocouple temperature, in °C.

    ``C·dT/dt = u·P_max − G·(T − Ta) − k_r·(T_K⁴ − Ta_K⁴)`` (radiation in kelvin), stepped
    with explicit Euler (the core time constant is ≥ 15 min, so 0.5 s steps are far inside
    stability), and ``dT_tc/dt = (T − T_tc)/τ_tc`` integrated exactly over each step.
    """

    __slots__ = ("_alpha_dt_s", "_tc_alpha", "furnace_c", "params", "tc_c")

    def __init__(self, params: ThermalParams | None = None,
                 initial_c: float | None = None) -> None:
        """Start in equilibrium at ``initial_c`` (°C; default: ambient)."""
        self.params = params or ThermalParams()
        start_c = self.params.ambient_c if initial_c is None else initial_c
        self.furnace_c: float = start_c
        """True furnace core temperature, °C."""
        self.tc_c: float = start_c
        """Control thermocouple junction temperature, °C (lags the core)."""
        self._alpha_dt_s = -1.0
        self._tc_alpha = 0.0

    def heat_loss_w(self, temperature_c: float) -> float:
        """Heat lost to the room (W) by conduction and radiation at ``temperature_c``."""
        p = self.params
        t_k = temperature_c + KELVIN_OFFSET
        a_k = p.ambient_c + KELVIN_OFFSET
        return (p.conductance_w_per_k * (temperature_c - p.ambient_c)
                + p.radiation_w_per_k4 * (t_k**4 - a_k**4))

    def step(self, dt_s: float, output_frac: float) -> None:
        """Advance ``dt_s`` seconds with heater output ``output_frac`` (0-1, clamped)."""
        p = self.params
        u = 0.0 if output_frac < 0.0 else 1.0 if output_frac > 1.0 else output_frac
        t = self.furnace_c
        t_k = t + KELVIN_OFFSET
        a_k = p.ambient_c + KELVIN_OFFSET
        t_k2 = t_k * t_k
        a_k2 = a_k * a_k
        loss_w = (p.conductance_w_per_k * (t - p.ambient_c)
                  + p.radiation_w_per_k4 * (t_k2 * t_k2 - a_k2 * a_k2))
        self.furnace_c = t + dt_s * (u * p.max_power_w - loss_w) / p.heat_capacity_j_per_k
        if dt_s != self._alpha_dt_s:
            self._alpha_dt_s = dt_s
            self._tc_alpha = -math.expm1(-dt_s / p.tc_tau_s)
        # Exact first-order lag toward the new core temperature.
        self.tc_c += (self.furnace_c - self.tc_c) * self._tc_alpha
