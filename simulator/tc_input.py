"""A temperature input as the simulated instruments see it: each thermocouple type's range
and noise, and the temperature controller's map (the furnace controller's and the sample
indicator's alike).
Not responsible for the instruments themselves (``eurotherm``, ``sample``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.maps import InstrumentMap, TemperatureControllerRoles, load_builtin_map

__all__ = ["THERMOCOUPLES", "ThermocoupleSpec", "controller_map"]

BUILTIN_MAP: Final = "eurotherm3216"


@dataclass(frozen=True, slots=True)
class ThermocoupleSpec:
    """Input range (°C) and PV noise (K, 1 sigma) of one thermocouple type."""

    range_lo_c: float
    range_hi_c: float
    noise_k: float


# Ranges: the 3216's input ranges (NIST ITS-90 limits, §4.3). Noise: MODEL ASSUMPTION,
# larger for the low-Seebeck noble-metal types (Type B: 0.22 mV at 220 °C, §4.3).
THERMOCOUPLES: Final = {
    "B": ThermocoupleSpec(0.0, 1820.0, 0.2),
    "R": ThermocoupleSpec(-50.0, 1768.0, 0.1),
    "S": ThermocoupleSpec(-50.0, 1768.0, 0.1),
    "K": ThermocoupleSpec(-200.0, 1372.0, 0.05),
    "N": ThermocoupleSpec(-200.0, 1300.0, 0.05),
}


def controller_map(imap: InstrumentMap | None, decimals: int) -> tuple[InstrumentMap,
                                                                        TemperatureControllerRoles]:
    """``imap`` (default: the built-in 3216 map at ``decimals``) and its roles. Raises
    ``ValueError`` for decimals the map cannot show or a map of another kind."""
    imap = imap or load_builtin_map(BUILTIN_MAP).at_decimals(decimals)
    return imap, imap.roles_as(TemperatureControllerRoles)
