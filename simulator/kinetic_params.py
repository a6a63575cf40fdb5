"""Kinetic parameters of the sample chemistry (reference/hardware.md §5), as data.

Holds the tables only: one for phosphoric acid, one per precursor. The model that integrates
them is ``simulator.kinetics``. Every number says where it comes from: a §5 fact or table
row, or MODEL ASSUMPTION with what it was tuned to. Rates are first order,
``dα/dt = A·exp(−E/RT)·(1 − α)``; heats are per gram of mass exchanged with the gas (lost
or, for oxygen uptake, gained), chemists' sign: positive enthalpy = endothermic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ACID",
    "AIR_O2_FRACTION",
    "O2_HALF_SATURATION_FRACTION",
    "BITUMINOUS_COAL",
    "BOAT_HEAT_CAPACITY_J_PER_K",
    "GAS_CONSTANT_J_PER_MOL_K",
    "HAZELNUT_SHELL",
    "PITCH",
    "PRECURSORS",
    "SAMPLE_SPECIFIC_HEAT_J_PER_G_K",
    "THORNTON_J_PER_G_O2",
    "UPTAKE_HEAT_FRAC",
    "WATER_VAPORISATION_J_PER_G",
    "AcidParams",
    "Atmosphere",
    "PrecursorParams",
    "Step",
    "VolatileStep",
]

GAS_CONSTANT_J_PER_MOL_K: Final = 8.314462618
AIR_O2_FRACTION: Final = 0.2095  # §4.5 (20.95 % O2); oxidising rates scale with x_O2/x_air
# MODEL ASSUMPTION: O2 uptake saturates as x/(x + 1 %): supply-limited below ~1 % O2.
O2_HALF_SATURATION_FRACTION: Final = 0.01
THORNTON_J_PER_G_O2: Final = 13.1e3  # §5.1 [S78], upper bound for O2-uptake heat
WATER_VAPORISATION_J_PER_G: Final = 2257.0  # §5.1 [S60][S61]
# MODEL ASSUMPTION: a ~10 g alumina boat at 0.88 J/(g·K) plus the sample at ~1 J/(g·K)
# (pitch ≈ 1.0-1.5, 85 % H3PO4 ≈ 1.8 J/(g·K) at 25 °C; the boat dominates either way).
BOAT_HEAT_CAPACITY_J_PER_K: Final = 10.0 * 0.88
SAMPLE_SPECIFIC_HEAT_J_PER_G_K: Final = 1.0


class Atmosphere(StrEnum):
    """Which gas a step needs. Gating is smooth in the O2 fraction x (0..1):
    ``any`` ×1, ``oxidising`` ×x/x_air, ``inert`` ×max(0, 1 − x/x_air)."""

    ANY = "any"
    OXIDISING = "oxidising"
    INERT = "inert"


@dataclass(frozen=True, slots=True)
class Step:
    """One Arrhenius step: ``k = prefactor·exp(−activation/(R·T_K))`` (1/s), gated by the
    atmosphere; ``enthalpy_j_per_g`` per gram exchanged with the gas, > 0 endothermic."""

    name: str
    activation_j_per_mol: float
    prefactor_per_s: float
    atmosphere: Atmosphere
    enthalpy_j_per_g: float


@dataclass(frozen=True, slots=True)
class VolatileStep:
    """A pyrolysis step that releases ``fraction`` of the dry precursor mass, reduced by
    stabilisation (``f = f0·(1 − oxidation_suppression·α_ox)``, §5.2 coupling) and by the
    acid (``f = f0·(1 − acid_suppression·φ_acid)``, MODEL ASSUMPTION, see ``AcidParams``);
    what is not released stays as char."""

    step: Step
    fraction: float
    oxidation_suppression: float = 0.0
    acid_suppression: float = 0.0


@dataclass(frozen=True, slots=True)
class AcidParams:
    """Phosphoric acid: its water, its condensation, P–O–C cross-linking, P release."""

    reagent_h3po4_frac: float
    """H3PO4 mass fraction of the acid reagent weighed in (``acid_wt`` counts g of reagent
    per 100 g of precursor, ``simulator.sample_spec``)."""
    solution_water: Step
    condensation_to_pyro: Step
    condensation_to_meta: Step
    condensation_loss_frac: float
    """Water lost per gram of H3PO4 in each condensation (§5.1, DERIVED 9.19 %)."""
    saturation_ratio: float
    """g H3PO4 per g dry precursor at which acid effects saturate: φ = min(1, ratio)."""
    crosslink: Step
    crosslink_water_frac: float
    """P–O–C capacity: g water released per g dry precursor at φ = 1 and α_ox = 1."""
    crosslink_heat_frac: float
    """Heat of cross-linking, as a fraction of Thornton per gram of O taken up (× φ)."""
    p_release: Step
    p_mass_frac: float
    """P mass per gram of H3PO4 (30.974/97.995)."""


@dataclass(frozen=True, slots=True)
class PrecursorParams:
    """One precursor: moisture, pyrolysis steps, oxidation, combustion."""

    name: str
    moisture_frac: float
    """Free water per gram of the precursor as received."""
    moisture: Step
    volatiles: tuple[VolatileStep, ...]
    oxygen_uptake: Step
    oxygen_uptake_acid: Step
    """Acid-catalysed uptake channel; its rate is multiplied by φ_acid."""
    uptake_max_frac: float
    """Δm_max: net O gain per g dry precursor at α_ox = 1 without acid."""
    uptake_max_acid_frac: float
    """Δm_max at φ_acid = 1 (linear in φ between the two)."""
    oxygen_release: Step
    combustion: Step


def _uptake_heat(fraction: float) -> float:
    """Enthalpy (J per g of net O gain) for ``fraction`` of Thornton's 13.1 kJ/g."""
    return -fraction * THORNTON_J_PER_G_O2


# ---- phosphoric acid ---------------------------------------------------------------------

# MODEL ASSUMPTION, for every precursor: O2 uptake releases 0.3 × Thornton per gram of net O
# gain and, where acid is present, the P–O–C cross-linking of the oxidised sites releases a
# further 0.9 × φ_acid (``AcidParams.crosslink_heat_frac``): 0.68-0.92 × 13.1 kJ per g gained
# at the paper's loadings (φ = 0.43-0.68), at most 1.2 × at φ = 1. §5.1 bounds the heat per
# g O2 *consumed*, which exceeds the net gain whenever H leaves as water ([S70]: H2O, CO and
# CO2 evolve; −CH2− + O2 → −C(=O)− + H2O consumes 32 g O2 per 14 g gained): 1.2 × needs a
# sixth of the O2 consumed to leave as water. The split puts most of the heat on the
# cross-linking, as DESIGN §1 does ("an exotherm near 220 °C marks the P–O–C
# cross-linking"); tuned so the air screen's exotherm peaks at 220-222 °C (sample, dry run)
# at every loading of the paper (50-80 g reagent per 100 g pitch), POP50's 220 °C hold
# releases 3 × PO's heat, and a screen of 8 g at 10 °C/min trips the exotherm cut (its ΔT
# reaches 46-51 K even with the heat cut) while 2 g at 5 °C/min peaks 7-8 K above the furnace.
UPTAKE_HEAT_FRAC: Final = 0.3

ACID: Final = AcidParams(
    # MODEL ASSUMPTION: the acid is weighed in as ordinary 85 wt% orthophosphoric acid.
    reagent_h3po4_frac=0.85,
    # MODEL ASSUMPTION: the reagent's water is held by the acid (85 % H3PO4 boils near
    # 158 °C), so it leaves later than free water: E 70 kJ/mol, A 4e6 /s put its DTG peak at
    # ~133 °C at 5 °C/min and it is gone by ~175 °C (§5.1: free water gone by 150-170 °C;
    # DESIGN §1: "mass falls until about 170 °C"). Heat: vaporisation [S60].
    solution_water=Step("acid water", 70e3, 4.0e6, Atmosphere.ANY,
                        WATER_VAPORISATION_J_PER_G),
    # §5.2 "H3PO4 → H4P2O7": E 90 kJ/mol, A 1e7 /s (DTG 206/225/240 °C), as given. (It was
    # once slowed to A 7.15e6 to let a mixture of 70 wt% reagent show any mass rise; the
    # loading is now a ratio to the precursor, docs/decisions/0011-acid-loading.md, and the
    # table's rate leaves a rise of ~2 points of mass_pct at 50-80 g per 100 g pitch.)
    # The rate is also × (fraction of the reagent water gone): condensation is reversible.
    # Heat DERIVED from standard enthalpies of formation (general knowledge, not in
    # hardware.md): 2 H3PO4(l) → H4P2O7(l) + H2O(g), ΔH ≈ −2231.7 − 241.8 + 2·1271.7
    # ≈ +70 kJ per mol H2O = +3.88 kJ per g water released. UNCONFIRMED.
    condensation_to_pyro=Step("H3PO4 -> H4P2O7", 90e3, 1.0e7, Atmosphere.ANY, 3880.0),
    # §5.2 "H4P2O7 → (HPO3)n": E 110, A 1e7 (308/331/349 °C). Heat DERIVED as above with
    # HPO3(s) ≈ −948.5 kJ/mol: ≈ +93 kJ per mol H2O = +5.16 kJ/g water. UNCONFIRMED.
    condensation_to_meta=Step("H4P2O7 -> HPO3", 110e3, 1.0e7, Atmosphere.ANY, 5160.0),
    condensation_loss_frac=18.015 / 195.99,  # §5.1: 9.19 % of the H3PO4 mass, per step
    # MODEL ASSUMPTION: acid effects (catalysed uptake, cross-links, char yield) grow with
    # φ = g H3PO4 per g dry precursor and saturate at φ = 1 (118 g of reagent per 100 g of
    # pitch); the paper's loadings, 50-80 g per 100 g, give φ = 0.43-0.68.
    saturation_ratio=1.0,
    # §5.2 "P–O–C esterification/cross-link": "any, with pitch; reuse the H3PO4 step;
    # ~220 °C; −H2O; small exotherm (UNCONFIRMED)". Kinetics reused as given (E 90, A 1e7,
    # 225 °C alone). MODEL ASSUMPTION on its form: the acid esterifies the O-bearing sites
    # that O2 uptake made (the paper's P/O *double* cross-linking needs both), so its extent
    # ξ relaxes toward α_ox at that rate and its effects scale with φ: none without acid,
    # none in N2 (α_ox = 0). Water: 1 % of the dry precursor at ξ = φ = 1 (≈ 0.55 mmol
    # P–O–C per g; one H3PO4 bound per ester), vaporisation heat. Exotherm: NOT small here —
    # 0.9 × Thornton per g of O cross-linked (× φ), because it has to outweigh the condensation
    # endotherm at the same temperature for the paper's 220 °C exotherm to appear (DESIGN
    # §1 attributes that exotherm to the P–O–C cross-linking). Counted as oxidation heat.
    crosslink=Step("P-O-C cross-link", 90e3, 1.0e7, Atmosphere.ANY,
                   WATER_VAPORISATION_J_PER_G),
    crosslink_water_frac=0.01,
    crosslink_heat_frac=0.9,
    # §5.2 "P species": release P-bearing vapour above ~1000 °C ([S66] elemental P at
    # 1000 °C). Rate UNCONFIRMED. MODEL ASSUMPTION: E 300 kJ/mol with A set for k = 1e-5 /s
    # at 1000 °C (τ ≈ 28 h), which gives τ ≈ 35 min at 1200 °C and ≈ 2 min at 1400 °C.
    # Heat UNCONFIRMED: +2 kJ/g, between P4O10 sublimation (~0.3 kJ/g) and carbothermal
    # reduction P4O10 + 10 C → P4 + 10 CO (~6.8 kJ/g); the carbon that reduction would
    # consume is not modelled (the process washes the free acid out after 600 °C).
    p_release=Step("P release", 300e3, 2.04e7, Atmosphere.ANY, 2000.0),
    p_mass_frac=30.974 / 97.995,
)


# ---- shared steps --------------------------------------------------------------------------

# §5.2 "Free-water evaporation": any, E 45 kJ/mol, A 2e4 /s (DTG 59/76/90 °C), +2257 J/g.
_FREE_WATER: Final = Step("free water", 45e3, 2.0e4, Atmosphere.ANY,
                          WATER_VAPORISATION_J_PER_G)
# §5.1 [S76]: carbon oxidation in dry air, E = 122 kJ/mol. MODEL ASSUMPTION: A 1.15e4 /s
# puts the DTG peak of a 5 °C/min ramp in air at ~650 °C (τ ≈ 29 min at 600 °C, 4 h at
# 500 °C), so an air screen to 400 °C burns ~0.13 % and the 220 °C exotherm stays the
# largest. Heat: Thornton per gram of carbon,
# 13.1 kJ/g O2 × 32/12.011 g O2/g C = −34.9 kJ/g.
_COMBUSTION: Final = Step("combustion", 122e3, 1.15e4, Atmosphere.OXIDISING,
                          -THORNTON_J_PER_G_O2 * 32.0 / 12.011)
# MODEL ASSUMPTION: the O taken up leaves again as CO/CO2/H2O during pyrolysis: E 150
# kJ/mol, A 6.7e7 /s (DTG peak ~480 °C at 5 °C/min; < 0.01 % in 2 h at 220 °C). No heat.
_OXYGEN_RELEASE: Final = Step("oxygen release", 150e3, 6.7e7, Atmosphere.ANY, 0.0)
# §5.2 "O2 uptake (stabilisation)": air only, E 90, A 4.8e5 (DTG 274/298/317 °C).
_PITCH_UPTAKE: Final = Step("O2 uptake", 90e3, 4.8e5, Atmosphere.OXIDISING,
                            _uptake_heat(UPTAKE_HEAT_FRAC))
# MODEL ASSUMPTION (acid catalysis of oxidation, [S65]): a parallel channel × φ_acid sharing
# (1 − α_ox). E = 165.3 kJ/mol is [S75]'s for coal-tar-pitch α-resin oxidation; A 1.12e16
# /s puts its DTG peak at ~203 °C at 5 °C/min (φ = 1, alone), tuned so that with acid the mass
# bottoms out at 165-175 °C and rises by ~2 points of mass_pct after it (DESIGN §1) before
# the acid's condensation takes over. Without it §5.2's uptake peaks near 300 °C and no
# rise appears below 190 °C.
_ACID_UPTAKE: Final = Step("O2 uptake (acid)", 165.3e3, 1.12e16, Atmosphere.OXIDISING,
                           _uptake_heat(UPTAKE_HEAT_FRAC))
# §5.1: "mass loss between 1000 and 1600 °C is small (H2, N, O removal); model 1-3 %".
# MODEL ASSUMPTION kinetics: E 300 kJ/mol, A 2.16e5 /s: τ = 3 h at 1400 °C and 18 min at
# 1600 °C, negligible below 1000 °C; so a 1600 °C carbonisation ends ~0.6 % (of the dry
# precursor) lighter than a 1400 °C one.
_HIGH_T: Final = Step("high-temperature loss", 300e3, 2.16e5, Atmosphere.INERT, 0.0)
# §5.2 "Dehydrogenation (H2, CH4)": inert, E 220, A 1e10 (DTG 614/641/662 °C). No heat given.
_DEHYDROGENATION: Final = Step("dehydrogenation", 220e3, 1.0e10, Atmosphere.INERT, 0.0)


# ---- precursors ----------------------------------------------------------------------------

PITCH: Final = PrecursorParams(
    name="pitch",
    moisture_frac=0.005,  # MODEL ASSUMPTION: pitch is hydrophobic; < 1 % moisture
    moisture=_FREE_WATER,
    volatiles=(
        # §5.2 "Light volatiles": any, E 120, A 1e8 (305/325/342 °C), −f1, endo. MODEL
        # ASSUMPTIONS: f1 = 12 %, +300 J/g (latent heat of light aromatics), acid −20 %.
        VolatileStep(Step("light volatiles", 120e3, 1.0e8, Atmosphere.ANY, 300.0), 0.12,
                     acid_suppression=0.2),
        # §5.2 "Main pyrolysis": inert, E 180, A 1e11 (408/427/442 °C), −f2, endo/weak.
        # f2,0 = 33 % so that untreated pitch yields ~49 % at 1600 °C (§5.1: 40-60 %,
        # UNCONFIRMED); the 0.6 coupling to α_ox is §5.2's (→ +20 points when α_ox = 1).
        # MODEL ASSUMPTIONS: +150 J/g; H3PO4 cross-links and dehydrates [S65], so the acid
        # cuts f1 and f2 by 20 % at φ = 1 (PNP50 ≈ +8 points over PN).
        VolatileStep(Step("main pyrolysis", 180e3, 1.0e11, Atmosphere.INERT, 150.0), 0.33,
                     oxidation_suppression=0.6, acid_suppression=0.2),
        VolatileStep(_DEHYDROGENATION, 0.04),  # §5.2 f3 ≈ 3-5 %
        VolatileStep(_HIGH_T, 0.02),  # §5.1 1-3 %
    ),
    oxygen_uptake=_PITCH_UPTAKE,
    oxygen_uptake_acid=_ACID_UPTAKE,
    # §5.2: +Δm_max, "set 5-8 %" [S71] (fibres: 1-7.5 %). MODEL ASSUMPTION: 5 % alone, 8 %
    # at φ = 1: the acid traps oxidised groups as esters instead of losing them as CO/CO2
    # ([S72]'s gain/loss competition).
    uptake_max_frac=0.05,
    uptake_max_acid_frac=0.08,
    oxygen_release=_OXYGEN_RELEASE,
    combustion=_COMBUSTION,
)

# MODEL ASSUMPTION throughout (general knowledge of lignocellulose pyrolysis, not in
# hardware.md): nut shells hold ~9 % moisture; hemicellulose (~22 % of dry mass) goes at
# 220-315 °C, cellulose (~28 %) at 315-400 °C, lignin slowly over 250-500 °C; char yield
# 25-35 % (here 31 % at 1400 °C without acid). H3PO4 raises lignocellulosic char yields
# strongly (it is the classic activating agent [S65]): −40 % on the carbohydrate volatiles,
# −20 % on lignin's at φ = 1 (HSP30 ≈ 40 %). Little O uptake (1 %); no stabilisation effect.
HAZELNUT_SHELL: Final = PrecursorParams(
    name="hazelnut_shell",
    moisture_frac=0.09,
    moisture=_FREE_WATER,
    volatiles=(
        # E 110 kJ/mol, A 5.55e7 /s: DTG 270/290/306 °C; mildly endothermic.
        VolatileStep(Step("hemicellulose", 110e3, 5.55e7, Atmosphere.ANY, 200.0), 0.22,
                     acid_suppression=0.4),
        # E 200 kJ/mol, A 3e14 /s: DTG 336/350/361 °C; cellulose pyrolysis ~ +400 J/g.
        VolatileStep(Step("cellulose", 200e3, 3.0e14, Atmosphere.ANY, 400.0), 0.28,
                     acid_suppression=0.4),
        # E 60 kJ/mol, A 88.6 /s: broad, DTG 337/380/417 °C; charring heat taken as 0.
        VolatileStep(Step("lignin", 60e3, 88.6, Atmosphere.ANY, 0.0), 0.13,
                     acid_suppression=0.2),
        VolatileStep(_DEHYDROGENATION, 0.04),
        VolatileStep(_HIGH_T, 0.02),
    ),
    oxygen_uptake=_PITCH_UPTAKE,
    oxygen_uptake_acid=_ACID_UPTAKE,
    uptake_max_frac=0.01,
    uptake_max_acid_frac=0.01,
    oxygen_release=_OXYGEN_RELEASE,
    combustion=_COMBUSTION,
)

# MODEL ASSUMPTION throughout (general knowledge of bituminous coal, not in hardware.md):
# ~3 % moisture; volatile matter 32 % of the dry coal (30-35 %): 4 % light gases/CO2 near
# 300-350 °C, 22 % tar in the 350-550 °C devolatilisation (inert; suppressed by oxidation
# like pitch's main pyrolysis: pre-oxidised coals lose fluidity and keep more char), 6 %
# secondary H2/CH4 at 600-900 °C; ash stays in the char. Low-temperature oxidative
# weathering: E 70 kJ/mol (coal oxidation below 200 °C is usually 50-90 kJ/mol), A 1.78e4
# /s (mass-gain DTG peak ~260 °C at 5 °C/min), Δm_max 3 % alone, 5 % with the acid.
BITUMINOUS_COAL: Final = PrecursorParams(
    name="bituminous_coal",
    moisture_frac=0.03,
    moisture=_FREE_WATER,
    volatiles=(
        VolatileStep(Step("light gases", 120e3, 8.16e7, Atmosphere.ANY, 200.0), 0.04,
                     acid_suppression=0.2),
        # E 190 kJ/mol, A 1.93e11 /s: DTG 431/450/465 °C.
        VolatileStep(Step("devolatilisation", 190e3, 1.93e11, Atmosphere.INERT, 200.0), 0.22,
                     oxidation_suppression=0.6, acid_suppression=0.2),
        # E 220 kJ/mol, A 1.5e9 /s: DTG 670/700/724 °C.
        VolatileStep(Step("secondary gas", 220e3, 1.5e9, Atmosphere.INERT, 0.0), 0.06),
        VolatileStep(_HIGH_T, 0.01),
    ),
    oxygen_uptake=Step("O2 uptake", 70e3, 1.78e4, Atmosphere.OXIDISING,
                       _uptake_heat(UPTAKE_HEAT_FRAC)),
    oxygen_uptake_acid=_ACID_UPTAKE,
    uptake_max_frac=0.03,
    uptake_max_acid_frac=0.05,
    oxygen_release=_OXYGEN_RELEASE,
    combustion=_COMBUSTION,
)

PRECURSORS: Final[dict[str, PrecursorParams]] = {
    p.name: p for p in (PITCH, BITUMINOUS_COAL, HAZELNUT_SHELL)
}
"""Kinetic tables by precursor name (the ``SampleSpec.precursor`` values)."""
