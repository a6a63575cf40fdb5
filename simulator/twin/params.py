"""The physical parameters of one furnace's twin: what ``furnace twin fit`` estimates from a
station's past batches and the simulator plays (issue 16). The defaults are the built-in
tube furnace (reference/hardware.md §4.4), so a twin left at its defaults is the built-in
simulator, bit for bit.

Not here: the bounds a station file may give them (``controller.recipe.station``, the
user's contract), the replay of a trace through them (``replay``) or the fit (``fit``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

from simulator.thermal import ThermalParams

__all__ = ["FITTED", "PARAM_UNITS", "TwinParams"]

_BUILT_IN: Final = ThermalParams()


@dataclass(frozen=True, slots=True)
class TwinParams:
    """One furnace: its heat balance, thermocouple lags and the instrument's PID terms.

    ``C·dT/dt = u·P_max − G·(T − Ta) − k_r·(T_K⁴ − Ta_K⁴)`` (``simulator.thermal``), the
    control thermocouple lagging the core by ``tc_tau_s`` and the boat by ``sample_tau_s``;
    ``u`` is the instrument's PID output (P and I on error, D on PV) clamped to
    ``output_low_pct``..``output_high_pct``. Raises ``ValueError`` for a value that is not
    physical (a non-positive mass, power, lag or band; a negative loss; crossed limits).
    """

    heat_capacity_j_per_k: float = _BUILT_IN.heat_capacity_j_per_k
    max_power_w: float = _BUILT_IN.max_power_w
    conductance_w_per_k: float = _BUILT_IN.conductance_w_per_k
    radiation_w_per_k4: float = _BUILT_IN.radiation_w_per_k4
    tc_tau_s: float = _BUILT_IN.tc_tau_s
    sample_tau_s: float = 120.0  # simulator.sample.SAMPLE_TAU_S (a test holds them equal)
    proportional_band_c: float = 20.0
    integral_time_s: float = 300.0
    derivative_time_s: float = 50.0
    output_low_pct: float = 0.0
    output_high_pct: float = 100.0

    def __post_init__(self) -> None:
        for name in ("heat_capacity_j_per_k", "max_power_w", "tc_tau_s", "sample_tau_s",
                     "proportional_band_c"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"twin {name} must be > 0, not {getattr(self, name)}")
        for name in ("conductance_w_per_k", "radiation_w_per_k4", "integral_time_s",
                     "derivative_time_s"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"twin {name} must be >= 0, not {getattr(self, name)}")
        if not 0.0 <= self.output_low_pct < self.output_high_pct <= 100.0:
            raise ValueError("twin output limits must hold 0 <= output_low_pct < "
                             f"output_high_pct <= 100, not {self.output_low_pct}.."
                             f"{self.output_high_pct}")

    def thermal(self, ambient_c: float) -> ThermalParams:
        """The furnace core's heat balance in a room at ``ambient_c`` (°C)."""
        return ThermalParams(heat_capacity_j_per_k=self.heat_capacity_j_per_k,
                             max_power_w=self.max_power_w,
                             conductance_w_per_k=self.conductance_w_per_k,
                             radiation_w_per_k4=self.radiation_w_per_k4,
                             ambient_c=ambient_c, tc_tau_s=self.tc_tau_s)

    def as_dict(self) -> dict[str, float]:
        """The values by name (the station file's ``[twin]`` keys)."""
        return asdict(self)


#: The unit of each parameter, for tables (the names carry it too).
PARAM_UNITS: Final = {
    "heat_capacity_j_per_k": "J/K", "max_power_w": "W", "conductance_w_per_k": "W/K",
    "radiation_w_per_k4": "W/K⁴", "tc_tau_s": "s", "sample_tau_s": "s",
    "proportional_band_c": "K", "integral_time_s": "s", "derivative_time_s": "s",
    "output_low_pct": "%", "output_high_pct": "%",
}

#: What a fit estimates. ``max_power_w`` is not among them: with the output as the only
#: input, power, heated mass and losses enter as the ratios P/C, G/C and k_r/C, so one of
#: them must be given (the element's rating) for the others to mean anything. The output
#: limits are the instrument's settings, read off it, not fitted.
FITTED: Final = ("heat_capacity_j_per_k", "conductance_w_per_k", "radiation_w_per_k4",
                 "tc_tau_s", "sample_tau_s", "proportional_band_c", "integral_time_s",
                 "derivative_time_s")
