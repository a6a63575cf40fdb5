"""The simulated operator's wash to neutral (DESIGN.md §1 step 4): how many washes the free
acid takes and the pH of the last filtrate (MODEL ASSUMPTION, stated below).

Each wash slurries the solid in ``WASH_WATER_ML`` of DI water and filters it; the filter cake
keeps ``HOLDUP_ML_PER_G`` of liquid per gram of solid, and with it that share of the acid
still dissolved. The filtrate of a wash holds the acid the solid brought in, diluted in the
water; its pH is that of H3PO4 at that concentration (first dissociation, pKa1 2.15, and
water's own 1e-7 M). The operator washes until the filtrate reads ``NEUTRAL_PH`` or more.
Not here: what the wash removes from the sample (``kinetics.SampleKinetics.wash``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["NEUTRAL_PH", "WashOutcome", "wash_to_neutral"]

WASH_WATER_ML: Final = 100.0  # assumption: 100 mL of DI water per wash, a beaker's worth
HOLDUP_ML_PER_G: Final = 3.0  # assumption: a porous char cake holds ~3 mL of liquid per g
NEUTRAL_PH: Final = 6.0  # "washed to neutral": DI water in air reads 5.6-7
MAX_WASHES: Final = 50
_KA1: Final = 10 ** -2.15  # H3PO4 first dissociation constant (25 °C)
_H3PO4_G_PER_MOL: Final = 97.995
_WATER_H_MOL_PER_L: Final = 1e-7


@dataclass(frozen=True, slots=True)
class WashOutcome:
    """What the operator writes down: washes done and the last filtrate's pH."""

    washes: int
    final_ph: float


def filtrate_ph(acid_mol_per_l: float) -> float:
    """pH of H3PO4 at ``acid_mol_per_l`` in water (first dissociation only)."""
    c = max(acid_mol_per_l, 0.0)
    h = (-_KA1 + math.sqrt(_KA1 * _KA1 + 4.0 * _KA1 * c)) / 2.0
    return -math.log10(h + _WATER_H_MOL_PER_L)


def wash_to_neutral(acid_removed_g: float, solid_g: float) -> WashOutcome:
    """Wash ``solid_g`` of solid carrying ``acid_removed_g`` of soluble acid (as H3PO4) until
    the filtrate is neutral. No soluble acid: one wash shows it is already neutral."""
    holdup_l = HOLDUP_ML_PER_G * max(solid_g, 0.0) / 1000.0
    water_l = WASH_WATER_ML / 1000.0
    acid_mol = max(acid_removed_g, 0.0) / _H3PO4_G_PER_MOL
    washes, ph = 0, 7.0
    while washes < MAX_WASHES:
        washes += 1
        c = acid_mol / (water_l + holdup_l)
        ph = filtrate_ph(c)
        acid_mol = c * holdup_l  # what the cake keeps for the next wash
        if ph >= NEUTRAL_PH:
            break
    return WashOutcome(washes, round(ph, 1))
