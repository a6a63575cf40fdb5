"""The simulated station: builds the instruments from a plain spec, integrates them in fixed
substeps and routes register traffic by unit id. Not responsible for any clock (callers
``advance_to``), for transports, or for reading station files.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from drivers.errors import DeviceTimeoutError
from drivers.maps import InstrumentMap
from simulator.alicat import SimAlicatMFC
from simulator.balance import SimBalance
from simulator.bank import ModbusExceptionReply, RegisterBank
from simulator.eurotherm import SimEurotherm3216
from simulator.gas import AIR_O2_PPM, TubeGas, inlet_o2_ppm
from simulator.kinetics import SampleKinetics, SampleSpec, sample_heat_capacity_j_per_k
from simulator.o2 import SimO2Analyser
from simulator.sample import SampleBoat, SimIndicator
from simulator.twin.params import TwinParams
from simulator.washing import wash_to_neutral

__all__ = ["SimMfcSpec", "SimStationSpec", "SimTruth", "SimWorld", "WireFault", "WorldReadHook",
           "WorldWriteHook"]

_EPS_S = 1e-9  # remainders shorter than this are rounding noise, not a step
_DEVICE_FAILURE = 4  # Modbus exception 04, server device failure


class WireFault(StrEnum):
    """How a unit's replies go wrong on the wire (``SimWorld.wire_faults``). Both transports
    (``SimBus`` in process, ``SimModbusServer`` over the wire) honour it.

    ``SLOW``: the request is served (a write happens) but the reply comes later than any
    client timeout. ``EXCEPTION``: every request is answered with Modbus exception 04
    (server device failure) and not served. ``GARBLED``: the request is served but the
    reply is corrupted (bad CRC / header), so the master discards it.
    """

    SLOW = "slow"
    EXCEPTION = "exception"
    GARBLED = "garbled"


WorldWriteHook = Callable[[int, int, Sequence[int], float], None]
"""Called as ``hook(unit, address, words, t_s)`` after each write the world accepted."""
WorldReadHook = Callable[[int, int, int, float], None]
"""Called as ``hook(unit, address, count, t_s)`` after each read the world served."""


@dataclass(frozen=True, slots=True)
class SimMfcSpec:
    """One simulated MFC: unit id, gas name, range (sccm) and O2 mole fraction (0-1); the
    map it serves (None: the built-in Alicat map) and the number its gas register shows
    (None: the map's number for the gas)."""

    unit: int
    gas: str
    full_scale_sccm: float
    o2_fraction: float = 0.0
    imap: InstrumentMap | None = None
    gas_number: int | None = None


@dataclass(frozen=True, slots=True)
class SimStationSpec:
    """Plain description of a simulated station. Defaults mirror the built-in station."""

    furnace_unit: int = 1
    decimals: int = 1
    thermocouple: str = "S"
    mfcs: tuple[SimMfcSpec, ...] = (
        SimMfcSpec(2, "Ar", 1000.0),
        SimMfcSpec(3, "air", 1000.0, 0.2095),
        SimMfcSpec(4, "N2", 1000.0),
    )
    o2_unit: int | None = 6
    tube_volume_l: float = 1.96
    ambient_c: float = 25.0
    sample_tc_unit: int | None = 5
    """Unit id of the sample thermocouple's indicator (a second 3216), or None for none."""
    sample_mass_g: float = 2.0
    """Initial sample mass on the balance (tared with the empty boat), g."""
    sample_tc_decimals: int = 1
    sample_tc_thermocouple: str = "K"
    """As the built-in station. Type K reads over range above 1450 °C (1372 °C + 5 % span)."""
    furnace_map: InstrumentMap | None = None
    """The map the furnace's controller serves (None: the built-in 3216 map at ``decimals``)."""
    sample_tc_map: InstrumentMap | None = None
    """The map the sample thermocouple's indicator serves (None: the built-in 3216 map)."""
    o2_map: InstrumentMap | None = None
    """The map the O2 analyser serves (None: the built-in generic map)."""
    has_balance: bool = True
    """False: ``SimWorld.balance`` is None (a station without a balance)."""
    sample_precursor: str | None = "pitch"
    """What is in the boat (``simulator.kinetics``); None: an inert boat, no chemistry."""
    sample_acid_wt: float = 70.0
    """The acid loading: g of 85 % H3PO4 reagent per 100 g precursor (decision 0011)."""
    initial_c: float | None = None
    """The furnace and the sample start in equilibrium at this temperature, °C (default:
    ambient): a prediction that goes on from a running batch's measured temperature."""
    twin: TwinParams | None = None
    """The furnace's physical parameters (heat balance, thermocouple lags, PID terms; None:
    the built-in furnace): a station's fitted twin (``simulator.twin``)."""
    initial_o2_ppm: float | None = None
    """The tube and the O2 analyser start at this O2 level, ppm (default: air): a
    prediction that goes on from a running batch's purged tube."""


@dataclass(frozen=True, slots=True)
class SimTruth:
    """The true state at ``t_s``: temperatures (°C), output (%), flows (sccm), O2 (ppm)."""

    t_s: float
    furnace_c: float
    tc_c: float
    output_pct: float
    flows_sccm: Mapping[str, float] = field(default_factory=dict)
    o2_ppm: float = 0.0
    sample_c: float = math.nan
    """True sample/boat temperature, °C."""
    mass_g: float = math.nan
    """True sample mass, g (what the balance reads, before buoyancy and noise)."""
    heater_pct: float = math.nan
    """Heating power actually delivered, % of full power: the output, unless a heater
    fault overrides it or the instrument is off."""
    pv_c: float = math.nan
    """The furnace PV as its instrument shows it (PV.IN), °C."""
    working_sp_c: float = math.nan
    """The furnace instrument's working setpoint, °C."""
    status: int = 0
    """The furnace instrument's status word (``drivers.eurotherm.registers.Status``)."""
    leak_sccm: float = 0.0
    """Room air leaking into the tube, sccm."""


class SimWorld:
    """All instruments of one station, sharing the furnace and tube physics.

    ``advance_to(t_s)`` integrates from the world's time to ``t_s`` in substeps of at most
    ``substep_s`` (the last may be shorter). Within a substep: MFC flows, tube gas, O2
    analyser, the Eurotherm (PID and thermal), then the sample following the furnace core.
    Deterministic for a given ``seed``: each device draws from its own ``random.Random``
    split off the seed (the sample indicator and the balance split off after the others,
    so adding them changed no earlier device's noise). ``sample_tc`` is the sample
    thermocouple's indicator on the Modbus line (None without ``sample_tc_unit``);
    ``balance`` the MT-SICS balance (never on the Modbus line; serve it with
    ``balance.serve_tcp``/``serve_serial`` or reach it in process with
    ``simulator.balance.SimSicsLine``). Raises ``ValueError`` for duplicate unit ids or
    bad device parameters.

    Fault injection and the ground-truth journal plug in through ``hooks`` (per substep),
    ``write_hooks``/``read_hooks`` (per served request, both transports), ``set_responding``
    and the ``wire_faults`` table; ``simulator.faults`` and ``simulator.journal`` use them.
    """

    __slots__ = ("_banks", "_mfc_inlets", "_serving", "_silent", "balance", "furnace", "hooks",
                 "kinetics", "mfcs", "now_s", "o2", "sample", "sample_tc", "spec", "substep_s",
                 "tube", "read_hooks", "wire_faults", "write_hooks")

    def __init__(self, spec: SimStationSpec, seed: int = 0, substep_s: float = 0.5) -> None:
        if not substep_s > 0.0:
            raise ValueError(f"substep must be positive, not {substep_s}")
        units = [spec.furnace_unit, *(m.unit for m in spec.mfcs)]
        if spec.o2_unit is not None:
            units.append(spec.o2_unit)
        if spec.sample_tc_unit is not None:
            units.append(spec.sample_tc_unit)
        if len(set(units)) != len(units):
            raise ValueError(f"duplicate unit ids in {units}")
        self.spec = spec
        self.substep_s = substep_s
        self.now_s = 0.0
        """World time, s: how far the physics has been integrated."""
        master = random.Random(seed)
        self.furnace = SimEurotherm3216(spec.decimals, spec.thermocouple,
                                        random.Random(master.getrandbits(64)), spec.ambient_c,
                                        initial_c=spec.initial_c, imap=spec.furnace_map,
                                        twin=spec.twin)
        self.mfcs: dict[str, SimAlicatMFC] = {
            m.gas: SimAlicatMFC(m.gas, m.full_scale_sccm, random.Random(master.getrandbits(64)),
                                imap=m.imap, gas_number=m.gas_number)
            for m in spec.mfcs
        }
        """MFCs by gas name."""
        # (MFC, O2 ppm of its supply gas) pairs, as ``_substep`` mixes them every substep
        self._mfc_inlets = tuple(zip(self.mfcs.values(),
                                     (inlet_o2_ppm(m.o2_fraction) for m in spec.mfcs),
                                     strict=True))
        self.tube = (TubeGas(spec.tube_volume_l) if spec.initial_o2_ppm is None
                     else TubeGas(spec.tube_volume_l, spec.initial_o2_ppm))
        o2_rng = random.Random(master.getrandbits(64))
        self.o2 = (SimO2Analyser(o2_rng, initial_ppm=self.tube.o2_ppm, imap=spec.o2_map)
                   if spec.o2_unit is not None else None)
        indicator_rng = random.Random(master.getrandbits(64))
        balance_rng = random.Random(master.getrandbits(64))
        self.sample = SampleBoat(spec.ambient_c if spec.initial_c is None else spec.initial_c,
                                 spec.sample_mass_g,
                                 (spec.twin or TwinParams()).sample_tau_s)
        """The sample in its boat: true temperature and mass."""
        self.kinetics: SampleKinetics | None = None
        """The sample's chemistry (mass, reaction heat), or None for an inert boat."""
        if spec.sample_precursor is not None and spec.sample_mass_g > 0:
            sample_spec = SampleSpec(spec.sample_precursor, spec.sample_acid_wt,
                                     spec.sample_mass_g)
            self.kinetics = SampleKinetics(sample_spec)
            self.sample.heat_capacity_j_per_k = sample_heat_capacity_j_per_k(sample_spec)
        self.sample_tc = (SimIndicator(self.sample, spec.sample_tc_decimals,
                                       spec.sample_tc_thermocouple, indicator_rng,
                                       imap=spec.sample_tc_map)
                          if spec.sample_tc_unit is not None else None)
        thermal = self.furnace.thermal
        sample = self.sample
        self.balance = (SimBalance(lambda: sample.mass_g, balance_rng,
                                   gas_temperature_source=lambda: thermal.furnace_c,
                                   ambient_c=spec.ambient_c)
                        if spec.has_balance else None)
        self._banks: dict[int, RegisterBank] = {spec.furnace_unit: self.furnace.bank}
        for m in spec.mfcs:
            self._banks[m.unit] = self.mfcs[m.gas].bank
        if self.o2 is not None and spec.o2_unit is not None:
            self._banks[spec.o2_unit] = self.o2.bank
        if self.sample_tc is not None and spec.sample_tc_unit is not None:
            self._banks[spec.sample_tc_unit] = self.sample_tc.bank
        self._silent: set[int] = set()
        self._serving = dict(self._banks)
        """The banks of the units not muted: ``read`` and ``write`` look here first."""
        self.hooks: list[Callable[[SimWorld, float], None]] = []
        """Called as ``hook(world, t_s)`` before each substep (fault injection, scripted
        events), with ``now_s`` already at ``t_s``. Empty in normal runs, so it costs
        nothing then. A hook may remove itself."""
        self.write_hooks: list[WorldWriteHook] = []
        """Called as ``hook(unit, address, words, t_s)`` after each accepted write, from
        either transport (the ground-truth journal)."""
        self.read_hooks: list[WorldReadHook] = []
        """Called as ``hook(unit, address, count, t_s)`` after each served read (fault
        injection: a one-sample glitch clears once it has been read)."""
        self.wire_faults: dict[int, WireFault] = {}
        """Fault table: unit id -> how its replies go wrong (see ``WireFault``)."""

    # ---- time ------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Integrate every device up to ``t_s`` (s); a time at or before ``now_s`` is a no-op."""
        span_s = t_s - self.now_s
        if span_s <= _EPS_S:
            return
        h = self.substep_s
        n_full = int(span_s / h)
        rest_s = span_s - n_full * h
        if rest_s > h - _EPS_S:  # guard against int() rounding just below a whole step
            n_full += 1
            rest_s = 0.0
        start_s = self.now_s
        substep = self._substep
        for i in range(n_full):
            if self.hooks:
                self._run_hooks(start_s + i * h)
            substep(h)
        if rest_s > _EPS_S:
            if self.hooks:
                self._run_hooks(start_s + n_full * h)
            self._substep(rest_s)
        self.now_s = t_s
        self.furnace.publish()
        for mfc in self.mfcs.values():
            mfc.publish()
        if self.o2 is not None:
            self.o2.publish()
        if self.sample_tc is not None:
            self.sample_tc.publish()

    def open_tube(self) -> None:
        """The operator has opened the cold tube: it fills with room air."""
        self.tube.o2_ppm = AIR_O2_PPM

    def operator_step(self, sample_action: str) -> dict[str, float | int]:
        """The simulated operator's hands at an operator step: carry out ``sample_action``
        ("load", "wash", "unload", "none") on the sample and return what a person would
        write down, by role (``controller.recipe.steps.STEP_DATA_ROLES``): a wash takes
        the water and the free acid out (``SampleKinetics.wash``) and is repeated to a
        neutral filtrate (``washing``); the sample is weighed after the action."""
        k = self.kinetics
        if k is None:
            return {"sample_g": self.sample.mass_g}
        out: dict[str, float | int] = {}
        if sample_action == "load":
            out.update(precursor_g=k.spec.precursor_g, acid_g=k.spec.reagent_g)
        elif sample_action == "wash":
            before_g = k.mass_g
            k.wash()
            self.sample.mass_g = k.mass_g
            done = wash_to_neutral(before_g - k.mass_g, k.mass_g)
            out.update(washes=done.washes, ph=done.final_ph)
        out["sample_g"] = k.mass_g
        return out

    def _run_hooks(self, t_s: float) -> None:
        self.now_s = t_s  # the physics is integrated up to here
        for hook in tuple(self.hooks):
            hook(self, t_s)

    def _substep(self, dt_s: float) -> None:
        total_sccm = 0.0
        o2_flux = 0.0
        for mfc, ppm in self._mfc_inlets:
            mfc.step(dt_s)
            flow = mfc.flow_sccm
            total_sccm += flow
            o2_flux += flow * ppm
        tube = self.tube
        tube.step(dt_s, total_sccm, o2_flux / total_sccm if total_sccm > 0.0 else 0.0)
        if self.o2 is not None:
            self.o2.step(dt_s, tube.o2_ppm)
        furnace = self.furnace
        furnace.step(dt_s)
        sample, kinetics = self.sample, self.kinetics
        if kinetics is None:
            sample.step(dt_s, furnace.thermal.furnace_c)
        else:
            heat_w = kinetics.step(dt_s, sample.sample_c, tube.o2_ppm * 1e-6)
            sample.step(dt_s, furnace.thermal.furnace_c, heat_w)
            sample.mass_g = kinetics.mass_g

    # ---- register traffic ------------------------------------------------------------

    def _bank(self, unit: int) -> RegisterBank:
        bank = self._banks.get(unit)
        if bank is None or unit in self._silent:
            # An RTU line gives no reply at all for a unit nobody answers to.
            raise DeviceTimeoutError(f"no reply from unit {unit}", device=f"unit {unit}")
        if self.wire_faults and self.wire_faults.get(unit) is WireFault.EXCEPTION:
            raise ModbusExceptionReply(_DEVICE_FAILURE, "device failure (injected)")
        return bank

    def read(self, unit: int, address: int, count: int) -> list[int]:
        """FC03 on ``unit``: ``count`` words from ``address``.

        Raises ``DeviceTimeoutError`` (no such unit, or muted) or ``ModbusExceptionReply``
        (04 for a unit with ``WireFault.EXCEPTION``).
        """
        # The common case first: a unit that answers, no wire faults (``_bank`` raises).
        bank = self._serving.get(unit)
        if bank is None or self.wire_faults:
            bank = self._bank(unit)
        words = bank.read(address, count)
        if self.read_hooks:
            for hook in tuple(self.read_hooks):
                hook(unit, address, count, self.now_s)
        return words

    def write(self, unit: int, address: int, words: Sequence[int]) -> None:
        """FC16 on ``unit``. Raises ``DeviceTimeoutError`` or ``ModbusExceptionReply``.

        After the write is accepted, every ``write_hooks`` entry sees it (at ``now_s``).
        """
        bank = self._serving.get(unit)
        if bank is None or self.wire_faults:
            bank = self._bank(unit)
        bank.write(address, words)
        if self.write_hooks:
            for hook in tuple(self.write_hooks):
                hook(unit, address, words, self.now_s)

    def set_responding(self, unit: int, responding: bool) -> None:
        """Fault hook: make ``unit`` stop (or resume) answering, as on a comms loss."""
        if responding:
            self._silent.discard(unit)
            if unit in self._banks:
                self._serving[unit] = self._banks[unit]
        else:
            self._silent.add(unit)
            self._serving.pop(unit, None)

    def is_responding(self, unit: int) -> bool:
        """True if ``unit`` is an instrument of this world and is not muted."""
        return unit in self._banks and unit not in self._silent

    @property
    def units(self) -> tuple[int, ...]:
        """Unit ids that have an instrument, in build order."""
        return tuple(self._banks)

    def truth(self) -> SimTruth:
        """The true state now (not what the instruments report)."""
        f = self.furnace
        flows = MappingProxyType({gas: m.flow_sccm for gas, m in self.mfcs.items()})
        return SimTruth(self.now_s, f.thermal.furnace_c, f.thermal.tc_c, f.output_pct,
                        flows, self.tube.o2_ppm, self.sample.sample_c, self.sample.mass_g,
                        f.heater_frac * 100.0, f.displayed_pv_c, f.working_sp_c,
                        f.status_word(), self.tube.leak_sccm)
