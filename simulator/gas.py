"""Well-mixed tube atmosphere: O2 concentration under purge flows and leaks (§4.5).

Responsible for the dilution balance and the count of tube volumes exchanged. Not
responsible for the MFCs that set the flows, the analyser that reads O2, or any chemistry.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["AIR_O2_PPM", "INERT_PURITY_O2_PPM", "TubeGas", "inlet_o2_ppm"]

AIR_O2_PPM: Final = 209_460.0  # 20.946 % O2 in dry air (§4.5, UNCONFIRMED constant)
INERT_PURITY_O2_PPM: Final = 2.0  # MODEL ASSUMPTION: high-purity Ar/N2 floor (§4.5 [S56][S57])
_SCCM_TO_L_PER_S: Final = 1.0 / 1000.0 / 60.0


def inlet_o2_ppm(o2_fraction: float) -> float:
    """O2 (ppm) carried by a supply gas whose O2 mole fraction is ``o2_fraction`` (0-1).

    An inert gas (fraction 0) still carries the purity floor of ``INERT_PURITY_O2_PPM``.
    """
    return max(o2_fraction * 1e6, INERT_PURITY_O2_PPM)


class TubeGas:
    """The tube's gas as one well-mixed volume of ``volume_l`` litres (standard conditions).

    Over a step with total inflow ``Q`` and inlet concentration ``C_in`` the exact solution
    of ``V·dC/dt = Q·(C_in − C)`` is ``C = C_in + (C − C_in)·exp(−Q·dt/V)`` [S55]. Volumes
    are counted at standard conditions: hot-zone expansion (§4.5) is not modelled.
    """

    __slots__ = ("leak_sccm", "o2_ppm", "tube_volumes_exchanged", "volume_l")

    def __init__(self, volume_l: float, o2_ppm: float = AIR_O2_PPM) -> None:
        """Start with ``o2_ppm`` (default: a tube full of air). Raises ``ValueError``."""
        if not volume_l > 0.0:
            raise ValueError(f"tube volume must be positive, not {volume_l}")
        self.volume_l = volume_l
        self.o2_ppm = o2_ppm
        """O2 concentration of the tube gas, ppm by volume."""
        self.tube_volumes_exchanged = 0.0
        """Inflow so far (purge gas plus leak) in tube volumes, at standard conditions."""
        self.leak_sccm = 0.0
        """Fault hook: air leaking into the tube, sccm (back-diffusion, a loose flange)."""

    def time_constant_s(self, flow_sccm: float) -> float:
        """Tube time constant V/Q in seconds at ``flow_sccm`` (inf for no flow)."""
        if flow_sccm <= 0.0:
            return math.inf
        return self.volume_l / (flow_sccm * _SCCM_TO_L_PER_S)

    def step(self, dt_s: float, inflow_sccm: float, inflow_o2_ppm: float) -> None:
        """Mix ``dt_s`` seconds of ``inflow_sccm`` carrying ``inflow_o2_ppm`` (flow-weighted).

        The air leak (``leak_sccm``) is added to the inflow here. No flow: no change.
        """
        leak = self.leak_sccm
        if leak > 0.0:
            total = inflow_sccm + leak
            inflow_o2_ppm = (inflow_sccm * inflow_o2_ppm + leak * AIR_O2_PPM) / total
            inflow_sccm = total
        if inflow_sccm <= 0.0:
            return
        exchanged = inflow_sccm * _SCCM_TO_L_PER_S * dt_s / self.volume_l
        self.tube_volumes_exchanged += exchanged
        self.o2_ppm = inflow_o2_ppm + (self.o2_ppm - inflow_o2_ppm) * math.exp(-exchanged)
