"""The sample in its boat (temperature and mass) and the sample thermocouple's indicator: a
second Eurotherm 3216 on the Modbus line that only measures (reference/hardware.md §4.4).

Not responsible for the furnace (``thermal``, ``eurotherm``), for reaction kinetics (the
kinetic model will supply ``heat_w`` and change ``mass_g``) or for the balance (``balance``).
"""

from __future__ import annotations

import math
import random
from typing import Final

from drivers.maps import InstrumentMap
from simulator.mapped import (
    Published,
    bank_for,
    publish_readings,
    slot_index,
    slot_of,
    status_masks,
)
from simulator.tc_input import THERMOCOUPLES, controller_map

__all__ = ["SAMPLE_HEAT_CAPACITY_J_PER_K", "SAMPLE_TAU_S", "SampleBoat", "SimIndicator"]

SAMPLE_TAU_S: Final = 120.0  # τ_s, §4.4 (MODEL ASSUMPTION)
# MODEL ASSUMPTION: C_s of an alumina boat (~15 g x ~0.9 J/(g K)) plus ~2 g of sample.
# With τ_s = 120 s this means h·A = C_s/τ_s ≈ 0.13 W/K between tube and boat, which is the
# order of the radiative exchange of a ~40 cm² boat at 300-400 °C. Only the reaction-heat
# term uses it: a steady 1 W raises the sample by heat_w·τ_s/C_s = 8 K above the furnace.
SAMPLE_HEAT_CAPACITY_J_PER_K: Final = 15.0
_OVER_RANGE_FRAC: Final = 0.05  # as the furnace's 3216: StAt B10 above range + 5 % of span
_BREAK_UPSCALE_FRAC: Final = 0.10


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
    but control nothing. ``imap``: the map it serves (default: the built-in 3216 map at
    ``decimals``; the names above are the 3216's, the roles say which registers play them).
    Raises ``ValueError`` for an unknown thermocouple type, decimal places the map cannot
    show or a map that is not a temperature controller's.
    """

    __slots__ = ("_alarm_i", "_masks", "_over_range_c", "_published", "_registers",
                 "_remote_value", "_rng", "_selected", "_sensor_break", "_setpoint_i", "_span_c",
                 "bank", "sample", "tc_spec")

    def __init__(self, sample: SampleBoat, decimals: int = 1, thermocouple: str = "K",
                 rng: random.Random | None = None, *,
                 imap: InstrumentMap | None = None) -> None:
        if thermocouple not in THERMOCOUPLES:
            raise ValueError(f"unknown thermocouple type {thermocouple!r}")
        imap, roles = controller_map(imap, decimals)
        self.sample = sample
        self.tc_spec = spec = THERMOCOUPLES[thermocouple]
        self._span_c = spec.range_hi_c - spec.range_lo_c
        self._over_range_c = spec.range_hi_c + _OVER_RANGE_FRAC * self._span_c
        self._rng = rng or random.Random(0)
        self._sensor_break = False
        self.bank = b = bank_for(imap)
        start_c = sample.sample_c
        sel = roles.remote_select
        status = roles.status
        slot = {name: slot_of(imap, register) for name, register in (
            ("pv", roles.process_value), ("wsp", roles.working_setpoint),
            ("output", roles.output), ("error", roles.error),
            ("status", status.register if status else None),
            ("inverted", status.inverted if status else None),
            ("local", roles.local_setpoint), ("remote", roles.remote_setpoint),
            ("select", sel.register if sel else None), ("pb", roles.proportional_band),
            ("ti", roles.integral_time), ("td", roles.derivative_time),
            ("op_hi", roles.output_high), ("op_lo", roles.output_low),
            ("range_lo", roles.range_low), ("range_hi", roles.range_high),
            ("a1", roles.alarm_high), ("decimals", roles.display_decimals))}
        self._remote_value = sel.remote if sel else 0
        self._masks = status_masks(status, "sensor_break", "over_range", "alarm_1")
        for name, value in (("local", start_c), ("remote", start_c), ("pb", 20.0),
                            ("ti", 300.0), ("td", 50.0), ("op_hi", 0.0), ("op_lo", 0.0),
                            ("range_lo", spec.range_lo_c), ("range_hi", spec.range_hi_c),
                            ("a1", spec.range_hi_c), ("decimals", float(imap.decimals or 0)),
                            ("select", float(sel.local) if sel else 0.0)):
            name_ = slot[name]
            if name_ is not None:
                b.set(name_, value)
        for name in ("local", "remote", "a1"):
            name_ = slot[name]
            if name_ is not None:
                b.limit(name_, spec.range_lo_c, spec.range_hi_c)
        # ``publish`` runs every scan cycle: it goes by slot index, resolved here once.
        self._registers = b.values
        def index(role: str) -> int | None:
            return slot_index(b, slot[role])

        remote_i, select_i, local_i = index("remote"), index("select"), index("local")
        # The setpoint the working setpoint echoes: remote or local as selected (select,
        # remote, local), else the one the map has (-1: none, the PV).
        self._selected = ((select_i, remote_i, local_i) if select_i is not None
                          and remote_i is not None and local_i is not None else None)
        fixed = remote_i if remote_i is not None else local_i
        self._setpoint_i = -1 if fixed is None else fixed
        self._alarm_i = index("a1")
        self._published: Published = (b.slot(imap.slot(roles.process_value)),
                           b.slot(imap.slot(roles.working_setpoint)),
                           b.slot(imap.slot(roles.output)), index("error"), index("status"),
                           index("inverted"))
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
        selected = self._selected
        if selected is not None:
            select_i, remote_i, local_i = selected
            wsp = values[remote_i] if round(values[select_i]) == self._remote_value \
                else values[local_i]
        else:
            wsp = values[self._setpoint_i] if self._setpoint_i >= 0 else pv
        sensor_break, over_range, alarm_1 = self._masks
        alarm_i = self._alarm_i
        status = 0
        if self._sensor_break:
            status |= sensor_break
        if pv > self._over_range_c:
            status |= over_range
        if self._sensor_break or (alarm_i is not None and pv > values[alarm_i]):
            status |= alarm_1
        publish_readings(values, self._published, pv, wsp, 0.0, status)
