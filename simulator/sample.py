"""The sample in its boat (temperature and mass) and the sample thermocouple's indicator: a
second Eurotherm 3216 on the Modbus line that only measures (reference/hardware.md §4.4).

Not responsible for the furnace (``thermal``, ``eurotherm``), for reaction kinetics (the
kinetic model will supply ``heat_w`` and change ``mass_g``) or for the balance (``balance``).
"""

from __future__ import annotations

import math
import random
from typing import Final

from drivers.eurotherm.registers import Status, build_map
from simulator.bank import RegisterBank
from simulator.eurotherm import THERMOCOUPLES

__all__ = ["SAMPLE_HEAT_CAPACITY_J_PER_K", "SAMPLE_TAU_S", "SampleBoat", "SimIndicator"]

SAMPLE_TAU_S: Final = 120.0  # τ_s, §4.4 (MODEL ASSUMPTION)
# MODEL ASSUMPTION: C_s of an alumina boat (~15 g x ~0.9 J/(g K)) plus ~2 g of sample.
# With τ_s = 120 s this means h·A = C_s/τ_s ≈ 0.13 W/K between tube and boat, which is the
# order of the radiative exchange of a ~40 cm² boat at 300-400 °C. Only the reaction-heat
# term uses it: a steady 1 W raises the sample by heat_w·τ_s/C_s = 8 K above the furnace.
SAMPLE_HEAT_CAPACITY_J_PER_K: Final = 15.0
_OVER_RANGE_FRAC: Final = 0.05  # as the furnace's 3216: StAt B10 above range + 5 % of span
_BREAK_UPSCALE_FRAC: Final = 0.10
_SENSOR_BREAK: Final = int(Status.SENSOR_BREAK)  # plain ints: IntFlag arithmetic is slow
_PV_OVER_RANGE: Final = int(Status.PV_OVER_RANGE)
_ALARM_1: Final = int(Status.ALARM_1)
_READ: Final = ("Rm.SP", "L-R", "TG.SP", "A1")
_PUBLISHED: Final = ("PV.IN", "WKG.SP", "WRK.OP", "ERR", "StAt", "StAt.INV")


class SampleBoat:
    """Sample/boat temperature ``sample_c`` (°C) and sample mass ``mass_g`` (g).

    ``dT_s/dt = (T − T_s)/τ_s + heat_w/C_s`` (§4.4, with ``heat_w = q_rxn·m_s`` in W and
    ``C_s`` the boat-plus-sample heat capacity in J/K). Over one step the furnace core
    temperature ``T`` and ``heat_w`` are held, so the step is integrated exactly:
    ``T_s ← T_eq + (T_s − T_eq)·exp(−dt/τ_s)`` with ``T_eq = T + heat_w·τ_s/C_s``.
    ``mass_g`` is the true sample mass on a balance tared with the empty boat; it stays
    constant until a kinetic model changes it. Raises ``ValueError`` for a non-positive
    ``tau_s`` or heat capacity, or a negative mass.
    """

    __slots__ = ("_alpha", "_alpha_dt_s", "heat_capacity_j_per_k", "mass_g", "sample_c",
                 "tau_s")

    def __init__(self, initial_c: float = 25.0, mass_g: float = 2.0,
                 tau_s: float = SAMPLE_TAU_S,
                 heat_capacity_j_per_k: float = SAMPLE_HEAT_CAPACITY_J_PER_K) -> None:
        if not tau_s > 0.0 or not heat_capacity_j_per_k > 0.0:
            raise ValueError("tau_s and heat_capacity_j_per_k must be positive")
        if not mass_g >= 0.0:
            raise ValueError(f"sample mass must be >= 0 g, not {mass_g}")
        self.sample_c: float = initial_c
        """True sample/boat temperature, °C."""
        self.mass_g: float = mass_g
        """True sample mass, g (the boat is tared off)."""
        self.tau_s = tau_s
        self.heat_capacity_j_per_k = heat_capacity_j_per_k
        self._alpha_dt_s = -1.0
        self._alpha = 0.0

    def step(self, dt_s: float, furnace_c: float, heat_w: float = 0.0) -> None:
        """Follow the furnace core at ``furnace_c`` (°C) for ``dt_s`` s, with ``heat_w`` (W)
        of reaction heat released in the sample (negative: endothermic)."""
        if dt_s != self._alpha_dt_s:
            self._alpha_dt_s = dt_s
            self._alpha = -math.expm1(-dt_s / self.tau_s)
        target_c = furnace_c
        if heat_w != 0.0:
            target_c += heat_w * self.tau_s / self.heat_capacity_j_per_k
        self.sample_c += (target_c - self.sample_c) * self._alpha


class SimIndicator:
    """A 3216 used as an indicator for the sample thermocouple, on the furnace's map.

    Serves ``build_map(decimals)`` so the ``Eurotherm3216`` driver's ``read()`` works
    unchanged: PV = sample temperature + thermocouple noise (drawn at ``publish``), WKG.SP
    echoes the selected setpoint (nothing ramps), WRK.OP = 0 with OP.HI = OP.LO = 0 (its
    output is not wired, as a lab configures an indicator), and the status word shows only
    sensor break, over-range and alarm 1. Setpoint and PID writes are stored and read back
    but control nothing. Raises ``ValueError`` for an unknown thermocouple type or a
    ``decimals`` other than 0-2.
    """

    __slots__ = ("_over_range_c", "_published", "_read", "_registers", "_rng",
                 "_sensor_break", "_span_c", "bank", "sample", "tc_spec")

    def __init__(self, sample: SampleBoat, decimals: int = 1, thermocouple: str = "K",
                 rng: random.Random | None = None) -> None:
        if thermocouple not in THERMOCOUPLES:
            raise ValueError(f"unknown thermocouple type {thermocouple!r}")
        self.sample = sample
        self.tc_spec = spec = THERMOCOUPLES[thermocouple]
        self._span_c = spec.range_hi_c - spec.range_lo_c
        self._over_range_c = spec.range_hi_c + _OVER_RANGE_FRAC * self._span_c
        self._rng = rng or random.Random(0)
        self._sensor_break = False
        self.bank = b = RegisterBank(build_map(decimals))
        start_c = sample.sample_c
        for name, value in (("TG.SP", start_c), ("Rm.SP", start_c), ("PB", 20.0),
                            ("Ti", 300.0), ("Td", 50.0), ("OP.HI", 0.0), ("OP.LO", 0.0),
                            ("RNG.LO", spec.range_lo_c), ("RNG.HI", spec.range_hi_c),
                            ("A1", spec.range_hi_c)):
            b.set(name, value)
        for name in ("TG.SP", "Rm.SP", "A1"):
            b.limit(name, spec.range_lo_c, spec.range_hi_c)
        # ``publish`` runs every scan cycle: it goes by slot index, resolved here once.
        self._registers = b.values
        self._read = tuple(b.slot(name) for name in _READ)
        self._published = tuple(b.slot(name) for name in _PUBLISHED)
        self.publish()

    def inject_sensor_break(self, broken: bool) -> None:
        """Open (``True``) or mend the sample thermocouple: PV reads upscale, StAt shows
        SENSOR_BREAK and PV_OVER_RANGE."""
        self._sensor_break = broken
        self.publish()

    def publish(self) -> None:
        """Refresh PV (a fresh noise draw), WKG.SP, WRK.OP, ERR and the status word."""
        spec = self.tc_spec
        if self._sensor_break:
            pv = spec.range_hi_c + _BREAK_UPSCALE_FRAC * self._span_c
        else:
            pv = self.sample.sample_c + self._rng.gauss(0.0, spec.noise_k)
        values = self._registers
        remote_i, lr_i, local_i, a1_i = self._read
        wsp = values[remote_i] if values[lr_i] >= 0.5 else values[local_i]
        status = 0
        if self._sensor_break:
            status |= _SENSOR_BREAK
        if pv > self._over_range_c:
            status |= _PV_OVER_RANGE
        if self._sensor_break or pv > values[a1_i]:
            status |= _ALARM_1
        pv_i, wsp_i, op_i, err_i, status_i, inverse_i = self._published
        values[pv_i] = pv
        values[wsp_i] = wsp
        values[op_i] = 0.0
        values[err_i] = pv - wsp
        values[status_i] = float(status)
        values[inverse_i] = float(~status & 0xFFFF)
