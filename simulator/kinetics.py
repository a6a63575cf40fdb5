"""Sample chemistry: mass and reaction heat of a precursor/H3PO4 mixture (TGA/DSC-like).

Integrates the kinetic tables of ``simulator.kinetic_params`` (reference/hardware.md §5) at
the sample temperature and gas O2 fraction it is given. Not responsible for the sample or
furnace temperature (``sample``, ``thermal``), the gas (``gas``) or the balance; what is in
the boat and how the acid loading splits its mass is ``simulator.sample_spec``.
"""

from __future__ import annotations

import math
from typing import Final

from simulator.kinetic_params import (
    ACID,
    AIR_O2_FRACTION,
    GAS_CONSTANT_J_PER_MOL_K,
    O2_HALF_SATURATION_FRACTION,
    PRECURSORS,
    THORNTON_J_PER_G_O2,
    Atmosphere,
    PrecursorParams,
    Step,
)
from simulator.sample_spec import SampleSpec, sample_heat_capacity_j_per_k

__all__ = ["SampleKinetics", "SampleSpec", "sample_heat_capacity_j_per_k"]

_KELVIN: Final = 273.15
_K_MIN_PER_S: Final = 1e-12  # below this a step moves < 1e-7 in a 30 h run: skip it
_WATER_G_PER_MOL: Final = 18.015
_H3PO4_G_PER_MOL: Final = 97.995
_GATE: Final = {Atmosphere.ANY: 0, Atmosphere.OXIDISING: 1, Atmosphere.INERT: 2}


class _Rate:
    """Precomputed Arrhenius constants of one step (ln A, E/R, skip threshold)."""

    __slots__ = ("e_over_r", "gate", "heat", "ln_a", "t_min_k")

    def __init__(self, step: Step) -> None:
        self.ln_a = math.log(step.prefactor_per_s)
        self.e_over_r = step.activation_j_per_mol / GAS_CONSTANT_J_PER_MOL_K
        self.t_min_k = self.e_over_r / (self.ln_a - math.log(_K_MIN_PER_S))
        self.gate = _GATE[step.atmosphere]
        self.heat = step.enthalpy_j_per_g


class SampleKinetics:
    """The chemistry of one sample; advance it with ``step``.

    State (g): free water, the acid reagent's water, H3PO4 / H4P2O7 / (HPO3)n, one pool
    per pyrolysis step of the precursor, char, the O taken up; plus α_ox (O2 uptake) and ξ
    (P–O–C cross-links). φ_acid = min(1, g H3PO4 per g dry precursor) scales every acid
    effect. Each first-order step is integrated exactly over ``dt`` at constant temperature,
    ``pool ← pool·exp(−k·dt)``, so any ``dt`` is stable and no pool goes negative; steps
    with k < 1e-12 /s or an empty pool are skipped (about 1-4 µs per call).

    Behaviour (tests/unit/test_kinetics.py, 2 g, 5 °C/min, τ_s = 120 s): in air pitch with
    50-80 g of reagent per 100 g (``SampleSpec.acid_wt``) bottoms out at 174 °C, gains
    2.0-2.4 points of mass % by 230 °C and shows its exotherm at 225-227 °C (ΔT above the
    no-reaction lag); in N2 the mass only falls and there is no exotherm. After 220 °C
    (2 h) / 600 °C / wash / 1600 °C the carbon yield is 49 % (PN), 53 % (PNP50), 62 % (PO),
    71-72 % (POP50, POP70, POP80).
    """

    __slots__ = (
        "_acid_water", "_acid_water0", "_alpha_ox", "_bound_h3po4_g", "_char", "_combustion",
        "_cond1", "_cond1_g", "_cond2", "_cond2_g", "_dry_g", "_h0", "_h3po4",
        "_initial_mass_g", "_meta", "_moisture", "_moisture0", "_oxidation_heat_j",
        "_oxygen", "_oxygen_release", "_p_g", "_p_release", "_p_release_g_per_s", "_params",
        "_phi", "_pyro", "_solution_water", "_uptake", "_uptake_acid", "_uptake_cap_g",
        "_uptake_gain_g", "_vol", "_vol_rates", "_vol_released", "_vol_supp", "_water",
        "_xi", "_xl", "_xl_cap_g", "_xl_heat_j", "exotherm_extra_max_w", "exotherm_gain", "spec",
    )

    def __init__(self, spec: SampleSpec) -> None:
        """Load ``spec``: ``spec.reagent_g`` of reagent (85 % H3PO4, 15 % water) and
        ``spec.precursor_g`` of precursor as received (its moisture, then dry matter).
        Nothing has reacted yet."""
        self.spec = spec
        p: PrecursorParams = PRECURSORS[spec.precursor]
        self._params = p
        reagent_g = spec.reagent_g
        precursor_g = spec.precursor_g
        self._h0 = reagent_g * ACID.reagent_h3po4_frac
        self._h3po4 = self._h0
        self._pyro = 0.0  # g H4P2O7
        self._meta = 0.0  # g (HPO3)n
        self._cond1_g = 0.0  # H3PO4 condensed to H4P2O7 so far, g (H3PO4 basis)
        self._cond2_g = 0.0  # ... and on to (HPO3)n, g (H3PO4 basis)
        self._bound_h3po4_g = 0.0  # H3PO4 esterified as P–O–C (kept by ``wash``)
        self._p_g = self._h0 * ACID.p_mass_frac
        self._acid_water0 = self._acid_water = reagent_g - self._h0
        self._moisture0 = self._moisture = precursor_g * p.moisture_frac
        dry_g = precursor_g - self._moisture0
        self._dry_g = dry_g
        phi = 0.0 if self._h0 == 0.0 else (
            1.0 if dry_g <= 0.0 else min(1.0, self._h0 / (ACID.saturation_ratio * dry_g)))
        self._phi = phi
        self._vol = [dry_g * v.fraction * (1.0 - v.acid_suppression * phi)
                     for v in p.volatiles]
        self._vol_released = [0.0 for _ in p.volatiles]
        self._vol_rates = tuple(_Rate(v.step) for v in p.volatiles)
        self._vol_supp = tuple(v.oxidation_suppression for v in p.volatiles)
        self._char = dry_g - sum(self._vol)
        self._oxygen = 0.0
        self._alpha_ox = 0.0
        self._xi = 0.0
        self._uptake_cap_g = dry_g * (p.uptake_max_frac
                                      + (p.uptake_max_acid_frac - p.uptake_max_frac) * phi)
        self._xl_cap_g = dry_g * ACID.crosslink_water_frac * phi
        # Heat (J) of the whole cross-linking (ξ: 0 → 1): its share of Thornton × φ.
        self._xl_heat_j = (ACID.crosslink_heat_frac * THORNTON_J_PER_G_O2 * phi
                           * self._uptake_cap_g)
        self._uptake_gain_g = 0.0
        self._oxidation_heat_j = 0.0
        self._p_release_g_per_s = 0.0
        self._water = _Rate(p.moisture)
        self._solution_water = _Rate(ACID.solution_water)
        self._cond1 = _Rate(ACID.condensation_to_pyro)
        self._cond2 = _Rate(ACID.condensation_to_meta)
        self._xl = _Rate(ACID.crosslink)
        self._p_release = _Rate(ACID.p_release)
        self._uptake = _Rate(p.oxygen_uptake)
        self._uptake_acid = _Rate(p.oxygen_uptake_acid)
        self._oxygen_release = _Rate(p.oxygen_release)
        self._combustion = _Rate(p.combustion)
        self._initial_mass_g = self.mass_g
        self.exotherm_gain = 1.0
        """Fault hook: the net heat of the oxidation (O2 uptake and the cross-linking it
        drives), when exothermic, is multiplied by this: a runaway pre-oxidation exotherm
        (more sample, a hotter spot, a catalysing impurity). Other steps are unchanged."""
        self.exotherm_extra_max_w = math.inf
        """Fault hook: the most extra power (W) ``exotherm_gain`` may add. A cap keeps the
        fault to the pre-oxidation window: uncapped, the hotter sample ignites and burns
        (this model's combustion is not limited by the O2 supply)."""

    # ---- state ---------------------------------------------------------------------------

    @property
    def mass_g(self) -> float:
        """Current sample mass, g (everything left in the boat)."""
        return (self._moisture + self._acid_water + self._h3po4 + self._pyro + self._meta
                + self._char + sum(self._vol) + self._oxygen)

    @property
    def initial_mass_g(self) -> float:
        """Mass as loaded, g."""
        return self._initial_mass_g

    @property
    def alpha_ox(self) -> float:
        """Degree of oxidation 0..1: extent of the O2-uptake step (cumulative; it does not
        fall when the O taken up leaves again during pyrolysis)."""
        return self._alpha_ox

    @property
    def organic_mass_g(self) -> float:
        """Carbonaceous solid, g: precursor residue plus the O it took up (no water, no
        acid or P species)."""
        return self._char + sum(self._vol) + self._oxygen

    @property
    def carbon_yield_pct(self) -> float:
        """Carbonaceous solid as % of the dry, acid-free precursor loaded (100 at the start;
        water, acid and P species excluded; 0.0 if there is no precursor)."""
        if self._dry_g <= 0.0:
            return 0.0
        return 100.0 * self.organic_mass_g / self._dry_g

    @property
    def p_inventory_g(self) -> float:
        """Phosphorus (as element) still in the boat, g."""
        return self._p_g

    @property
    def p_release_g_per_s(self) -> float:
        """P (as element) leaving as vapour during the last ``step``, g/s (§5.2 P species;
        rate UNCONFIRMED)."""
        return self._p_release_g_per_s

    @property
    def uptake_gain_g(self) -> float:
        """Total net O gain from O2 uptake so far, g (for the Thornton check)."""
        return self._uptake_gain_g

    @property
    def oxidation_heat_j(self) -> float:
        """Heat released so far by O2 uptake and by the P–O–C cross-linking of the sites it
        made, J (Thornton: ≤ 13.1 kJ per g of O gained)."""
        return self._oxidation_heat_j

    def conversions(self) -> dict[str, float]:
        """Extent (0..1) of each step, by step name (diagnostics and tests; not cheap)."""
        p = self._params
        out = {
            p.moisture.name: _extent(self._moisture, self._moisture0),
            ACID.solution_water.name: _extent(self._acid_water, self._acid_water0),
            ACID.condensation_to_pyro.name: _ratio(self._cond1_g, self._h0),
            ACID.condensation_to_meta.name: _ratio(self._cond2_g, self._h0),
            ACID.crosslink.name: self._xi,
            p.oxygen_uptake.name: self._alpha_ox,
        }
        for v, left, gone in zip(p.volatiles, self._vol, self._vol_released, strict=True):
            out[v.step.name] = 0.0 if left + gone == 0.0 else gone / (left + gone)
        return out

    def wash(self) -> None:
        """The operator's wash to neutral (DESIGN §1 step 4): the water and the free acid
        go; the H3PO4 bound as P–O–C esters (one per ester, MODEL ASSUMPTION) stays."""
        loss = ACID.condensation_loss_frac
        acid_eq_g = self._h3po4 + self._pyro / (1.0 - loss) + self._meta / (1.0 - 2.0 * loss)
        keep = 0.0 if acid_eq_g <= 0.0 else min(1.0, self._bound_h3po4_g / acid_eq_g)
        self._moisture = self._acid_water = 0.0
        self._h3po4 *= keep
        self._pyro *= keep
        self._meta *= keep
        self._p_g *= keep

    # ---- dynamics ------------------------------------------------------------------------

    def step(self, dt_s: float, sample_c: float, o2_fraction: float) -> float:
        """Advance ``dt_s`` s at sample temperature ``sample_c`` (°C) in gas with O2 mole
        fraction ``o2_fraction`` (0..0.21; clamped to 0..1), both held over the step.

        Returns the mean reaction heat power over the step in W, **positive = exothermic**
        (heats the sample, the ``q_rxn·m_s`` of §4.4). Never blocks; raises nothing.
        """
        tk = sample_c + _KELVIN
        if not (dt_s > 0.0 and tk >= 250.0):  # also rejects NaN; nothing reacts below −23 °C
            return 0.0
        inv_t = 1.0 / tk
        x = o2_fraction if 0.0 < o2_fraction < 1.0 else (1.0 if o2_fraction >= 1.0 else 0.0)
        # Oxygen uptake needs oxygen to arrive: below about a percent of O2 the supply, not
        # the chemistry, limits it (MODEL ASSUMPTION: a saturation term x/(x + x_half) on
        # top of the linear dependence, so that trace O2 in inert gas - a few ppm - does not
        # oxidise the sample at 300-400 °C, where the acid-catalysed rate constant is large;
        # in air the term is 0.95).
        ox_gate = x / AIR_O2_FRACTION * (x / (x + O2_HALF_SATURATION_FRACTION))
        inert_gate = 1.0 - ox_gate if ox_gate < 1.0 else 0.0
        gates = (1.0, ox_gate, inert_gate)
        exp = math.exp
        expm1 = math.expm1
        heat_j = 0.0  # endothermic positive here; the sign flips on return

        r = self._water
        if self._moisture > 0.0 and tk > r.t_min_k:
            lost = self._moisture * -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
            self._moisture -= lost
            heat_j += lost * r.heat
        r = self._solution_water
        if self._acid_water > 0.0 and tk > r.t_min_k:
            lost = self._acid_water * -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
            self._acid_water -= lost
            heat_j += lost * r.heat
        if self._h0 > 0.0:
            heat_j += self._acid_step(dt_s, tk, inv_t)

        ox_heat_j = 0.0
        if ox_gate > 0.0 and self._alpha_ox < 1.0:
            ox_heat_j += self._uptake_step(dt_s, tk, inv_t, ox_gate)
        if self._xl_cap_g > 0.0 and self._alpha_ox > self._xi:
            ox_heat_j += self._crosslink_step(dt_s, tk, inv_t)
        if ox_heat_j < 0.0 and self.exotherm_gain != 1.0:
            # Fault hook: a runaway pre-oxidation exotherm, its extra power capped.
            extra_j = ox_heat_j * (self.exotherm_gain - 1.0)
            cap_j = self.exotherm_extra_max_w * dt_s
            ox_heat_j += extra_j if extra_j > -cap_j else -cap_j
        heat_j += ox_heat_j

        vol = self._vol
        rates = self._vol_rates
        for i in range(len(vol)):
            left = vol[i]
            r = rates[i]
            if left > 0.0 and tk > r.t_min_k:
                k = exp(r.ln_a - r.e_over_r * inv_t) * gates[r.gate]
                if k > 0.0:
                    lost = left * -expm1(-k * dt_s)
                    vol[i] = left - lost
                    self._vol_released[i] += lost
                    heat_j += lost * r.heat

        r = self._oxygen_release
        if self._oxygen > 0.0 and tk > r.t_min_k:
            lost = self._oxygen * -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
            self._oxygen -= lost
            heat_j += lost * r.heat
        r = self._combustion
        if ox_gate > 0.0 and tk > r.t_min_k:
            frac = -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * ox_gate * dt_s)
            burnt = frac * self.organic_mass_g
            keep = 1.0 - frac
            self._char *= keep
            self._oxygen *= keep
            for i in range(len(vol)):
                vol[i] *= keep
            heat_j += burnt * r.heat
        return -heat_j / dt_s

    def _acid_step(self, dt_s: float, tk: float, inv_t: float) -> float:
        """Condensation H3PO4 → H4P2O7 → (HPO3)n and P release; returns heat in J (> 0
        endothermic)."""
        exp = math.exp
        expm1 = math.expm1
        loss = ACID.condensation_loss_frac
        heat_j = 0.0
        r = self._cond1
        if self._h3po4 > 0.0 and tk > r.t_min_k:
            # MODEL ASSUMPTION: condensation is reversible, so it waits for the reagent's
            # water to leave (rate × fraction of that water gone).
            w0 = self._acid_water0
            dry = 1.0 if w0 == 0.0 else 1.0 - self._acid_water / w0
            used = self._h3po4 * -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dry * dt_s)
            self._h3po4 -= used
            self._pyro += used * (1.0 - loss)
            self._cond1_g += used
            heat_j += used * loss * r.heat
        r = self._cond2
        if self._pyro > 0.0 and tk > r.t_min_k:
            used = self._pyro * -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
            self._pyro -= used
            water = used * loss / (1.0 - loss)
            self._meta += used - water
            self._cond2_g += used / (1.0 - loss)
            heat_j += water * r.heat
        r = self._p_release
        self._p_release_g_per_s = 0.0
        if self._p_g > 0.0 and tk > r.t_min_k:
            frac = -expm1(-exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
            gone = (self._h3po4 + self._pyro + self._meta) * frac
            keep = 1.0 - frac
            self._h3po4 *= keep
            self._pyro *= keep
            self._meta *= keep
            self._p_release_g_per_s = self._p_g * frac / dt_s
            self._p_g *= keep
            heat_j += gone * r.heat
        return heat_j

    def _uptake_step(self, dt_s: float, tk: float, inv_t: float, ox_gate: float) -> float:
        """O2 uptake (plain and acid-catalysed channels, sharing 1 − α_ox) and its coupling
        to the volatiles; returns heat in J (> 0 endothermic)."""
        exp = math.exp
        r = self._uptake
        k0 = exp(r.ln_a - r.e_over_r * inv_t) if tk > r.t_min_k else 0.0
        r = self._uptake_acid
        k1 = (self._phi * exp(r.ln_a - r.e_over_r * inv_t)
              if self._phi > 0.0 and tk > r.t_min_k else 0.0)
        k = k0 + k1
        if k == 0.0:
            return 0.0
        old = self._alpha_ox
        new = 1.0 - (1.0 - old) * exp(-k * ox_gate * dt_s)
        self._alpha_ox = new
        gain = self._uptake_cap_g * (new - old)
        self._oxygen += gain
        heat_j = gain * (k0 * self._uptake.heat + k1 * r.heat) / k
        self._uptake_gain_g += gain
        self._oxidation_heat_j -= heat_j
        # §5.2 coupling f = f0·(1 − s·α_ox): the unreleased part of a volatile pool shrinks
        # by the same ratio and becomes char.
        for i, s in enumerate(self._vol_supp):
            if s > 0.0:
                left = self._vol[i]
                kept = left * (1.0 - s * new) / (1.0 - s * old)
                self._vol[i] = kept
                self._char += left - kept
        return heat_j

    def _crosslink_step(self, dt_s: float, tk: float, inv_t: float) -> float:
        """P–O–C cross-links: extent ξ relaxes toward α_ox at the H3PO4 step's rate; the
        oxidised sites it locks in release ``crosslink_heat_frac`` of Thornton per gram of O
        (× φ_acid) and ``crosslink_water_frac`` water; returns heat in J (> 0 endothermic)."""
        r = self._xl
        if tk <= r.t_min_k:
            return 0.0
        xi = self._xi
        target = self._alpha_ox
        xi_new = target - (target - xi) * math.exp(
            -math.exp(r.ln_a - r.e_over_r * inv_t) * dt_s)
        d_xi = xi_new - xi
        water = min(self._xl_cap_g * d_xi, self._oxygen)
        self._xi = xi_new
        self._oxygen -= water
        self._bound_h3po4_g += water / _WATER_G_PER_MOL * _H3PO4_G_PER_MOL
        exo_j = self._xl_heat_j * d_xi
        self._oxidation_heat_j += exo_j
        return water * r.heat - exo_j


def _extent(left: float, start: float) -> float:
    return 0.0 if start <= 0.0 else 1.0 - left / start


def _ratio(part: float, whole: float) -> float:
    return 0.0 if whole <= 0.0 else part / whole
