"""What is in the boat: precursor, acid loading and mass, and how the loading splits the mass.

The acid loading ``acid_wt`` is an *impregnation ratio*: grams of phosphoric-acid reagent
(85 wt% H3PO4) per 100 g of precursor as received, so a 2 g boat at ``acid_wt`` = 70 holds
2/1.7 = 1.18 g of pitch and 0.82 g of reagent. docs/decisions/0011-acid-loading.md says why
it is not the reagent's share of the mixture (at 70-80 % of the mixture the acid's own
water and condensation swamp the pitch's oxygen uptake, and DESIGN §1's air screen cannot
rise after its minimum). Not here: the chemistry (``simulator.kinetics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.kinetic_params import (
    BOAT_HEAT_CAPACITY_J_PER_K,
    PRECURSORS,
    SAMPLE_SPECIFIC_HEAT_J_PER_G_K,
)

__all__ = ["SampleSpec", "sample_heat_capacity_j_per_k"]


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What is in the boat: ``precursor`` (a key of ``PRECURSORS``), ``acid_wt`` (g of
    phosphoric-acid reagent, 85 % H3PO4, per 100 g of precursor as received: finite,
    ≥ 0) and ``mass_g`` (the mixture as loaded, > 0). Raises ``ValueError`` otherwise."""

    precursor: str
    acid_wt: float
    mass_g: float

    def __post_init__(self) -> None:
        if self.precursor not in PRECURSORS:
            known = ", ".join(sorted(PRECURSORS))
            raise ValueError(f"unknown precursor {self.precursor!r} (known: {known})")
        if not (self.acid_wt >= 0.0 and math.isfinite(self.acid_wt)):
            raise ValueError(f"acid_wt must be a finite number of g reagent per 100 g "
                             f"precursor, >= 0, not {self.acid_wt}")
        if not self.mass_g > 0.0 or not math.isfinite(self.mass_g):
            raise ValueError(f"mass_g must be a positive number of grams, not {self.mass_g}")

    @property
    def reagent_g(self) -> float:
        """Phosphoric-acid reagent (85 % H3PO4) in the boat, g:
        ``mass_g·r/(1 + r)`` with ``r = acid_wt/100``."""
        ratio = self.acid_wt / 100.0
        return self.mass_g * ratio / (1.0 + ratio)

    @property
    def precursor_g(self) -> float:
        """Precursor as received (with its moisture) in the boat, g: ``mass_g/(1 + r)``."""
        return self.mass_g / (1.0 + self.acid_wt / 100.0)

    @property
    def reagent_pct(self) -> float:
        """The reagent's share of the mixture, % (70 g per 100 g pitch: 41.2 %)."""
        return 100.0 * self.reagent_g / self.mass_g


def sample_heat_capacity_j_per_k(spec: SampleSpec) -> float:
    """C_s of §4.4 in J/K: the alumina boat plus the sample as loaded (MODEL ASSUMPTION,
    ``BOAT_HEAT_CAPACITY_J_PER_K`` + ``SAMPLE_SPECIFIC_HEAT_J_PER_G_K``·mass)."""
    return BOAT_HEAT_CAPACITY_J_PER_K + SAMPLE_SPECIFIC_HEAT_J_PER_G_K * spec.mass_g
