"""Simulated Alicat mass-flow controller serving the driver's 1200-block map (§2.1), or any
mass-flow controller's map file (a Bronkhorst's counts in % of full scale).

Responsible for the flow response, readings, status flags, the command registers and
fault hooks (empty bottle, stuck valve). Not responsible for what the gas does downstream.
"""

from __future__ import annotations

import math
import random
from typing import Final

from drivers.maps import InstrumentMap, MassFlowControllerRoles, load_builtin_map
from simulator.mapped import bank_for, slot_index, slot_of, status_masks

__all__ = ["FLOW_TAU_S", "SimAlicatMFC"]

FLOW_TAU_S: Final = 0.5  # MODEL ASSUMPTION: response time UNCONFIRMED (§2.1, "tens of ms")
NOISE_FRAC_FS: Final = 2e-4  # MODEL ASSUMPTION: 0.02 % of full scale, 1 sigma
ZERO_BAND_FRAC_FS: Final = 1e-3  # MODEL ASSUMPTION: readings within 0.1 % FS of zero show 0
PRESSURE_PSIA: Final = 14.7  # MODEL ASSUMPTION: exhausting to a vented tube at 1 atm
FLOW_TEMPERATURE_C: Final = 25.0  # MODEL ASSUMPTION: gas at room temperature
_STANDARD_K: Final = 298.15  # Alicat standard conditions: 25 °C, 14.696 psia
_STANDARD_PSIA: Final = 14.696
_FLOW_K: Final = FLOW_TEMPERATURE_C + 273.15

# Command ids and result codes of registers 1000/1001 (§2.1 [S21]).
_CMD_CHANGE_GAS: Final = 1
_CMD_VALVE: Final = 6
_RESULT_OK: Final = 0
_RESULT_INVALID_SETTING: Final = 32770
_RESULT_UNSUPPORTED: Final = 32771
BUILTIN_MAP: Final = "alicat"
# The Alicat's command registers and extra readings, by their names in its map file: a
# map without them has no such commands or readings.
_COMMAND, _ARGUMENT = "CMD", "CMD.ARG"
_EXTRAS: Final = ("VOL_FLOW", "PRESSURE", "FLOW_TEMP")


class SimAlicatMFC:
    """An Alicat MC-series mass-flow controller metering ``gas``, range 0..``full_scale_sccm``.

    Mass flow follows the setpoint as an exact first-order lag (``tau_s``); readings carry
    gaussian noise, the true flow is ``flow_sccm``. A setpoint write above full scale is
    answered with exception 3. Fault hooks: ``no_flow`` (empty bottle: flow decays to 0
    while the setpoint stays) and ``stuck`` (flow frozen at its present value). ``imap``:
    the map it serves (default: the built-in Alicat map), its gas register showing
    ``gas_number`` (default: the map's number for ``gas``). Raises ``ValueError`` for a gas
    without a gas number, a non-positive full scale or a map of another kind.
    """

    __slots__ = ("_alpha", "_alpha_dt_s", "_commands", "_gas_numbers", "_masks",
                 "_noise_sccm", "_per_unit_sccm", "_published", "_readback", "_registers",
                 "_rng", "_slots", "_valve_hold", "_zero_band_sccm", "bank", "flow_sccm",
                 "full_scale_sccm", "gas", "no_flow", "setpoint_sccm", "stuck", "tau_s")

    def __init__(self, gas: str, full_scale_sccm: float, rng: random.Random | None = None,
                 tau_s: float = FLOW_TAU_S, *, imap: InstrumentMap | None = None,
                 gas_number: int | None = None) -> None:
        imap = imap or load_builtin_map(BUILTIN_MAP)
        roles = imap.roles_as(MassFlowControllerRoles)
        table = roles.gas
        if gas_number is None and table is not None:
            gas_number = table.numbers.get(gas)
            if gas_number is None:
                raise ValueError(f"no {imap.model} gas number for {gas!r}")
        if not full_scale_sccm > 0.0:
            raise ValueError(f"full scale must be positive, not {full_scale_sccm}")
        self.gas = gas
        self.full_scale_sccm = full_scale_sccm
        self.tau_s = tau_s
        self._rng = rng or random.Random(0)
        self._noise_sccm = NOISE_FRAC_FS * full_scale_sccm
        self._zero_band_sccm = ZERO_BAND_FRAC_FS * full_scale_sccm
        self._alpha_dt_s = -1.0
        self._alpha = 0.0
        self._valve_hold = 0  # command 6 argument: 0 none, 1 closed, 2 hold current
        self.setpoint_sccm = 0.0
        """Commanded flow, sccm."""
        self.flow_sccm = 0.0
        """True mass flow, sccm (readings add noise)."""
        self.no_flow = False
        """Fault hook: the supply is empty; flow decays to 0 whatever the setpoint."""
        self.stuck = False
        """Fault hook: the flow is frozen at its present value."""
        self.bank = b = bank_for(imap)
        # register value -> sccm (None: the register counts in sccm already)
        self._per_unit_sccm = (None if roles.flow_basis == "sccm"
                               else full_scale_sccm / 100.0)
        setpoint = imap.slot(roles.setpoint)
        readback = slot_of(imap, roles.setpoint_readback)
        self._slots = (setpoint, imap.slot(roles.flow),
                       slot_of(imap, roles.status.register if roles.status else None),
                       slot_of(imap, table.register if table else None))
        self._readback = readback if readback != setpoint else None
        self._masks = status_masks(roles.status, "mov_high", "pid_hold")
        self._gas_numbers = (frozenset(table.numbers.values()) if table is not None
                             else frozenset())
        names = {r.name for r in imap.registers}
        self._commands = _COMMAND in names and _ARGUMENT in names
        b.limit(setpoint, 0.0,
                full_scale_sccm if self._per_unit_sccm is None else 100.0)
        gas_s = self._slots[3]
        if gas_s is not None and gas_number is not None:
            b.set(gas_s, float(gas_number))
        b.on_write(self._on_write)
        # ``publish`` runs every scan cycle: it stores by slot index, resolved here once
        # (None: a register this map does not have).
        self._registers = b.values
        status_s = self._slots[2]
        volume, pressure, temperature = (n if n in names else None for n in _EXTRAS)
        self._published: tuple[int, int | None, int | None, int | None, int | None] = (
            b.slot(self._slots[1]), slot_index(b, volume), slot_index(b, pressure),
            slot_index(b, temperature), slot_index(b, status_s))
        self.publish()

    def _on_write(self, name: str, value: float) -> None:
        setpoint = self._slots[0]
        if name == setpoint:
            k = self._per_unit_sccm
            self.setpoint_sccm = value if k is None else value * k
            if self._readback is not None:
                self.bank.set(self._readback, value)
        elif name == _COMMAND and self._commands:
            self._command(int(value), int(self.bank.get(_ARGUMENT)))

    def _command(self, command: int, argument: int) -> None:
        """Run a special command (register 1000) and leave the result in register 1001."""
        if command == _CMD_CHANGE_GAS:
            gas_s = self._slots[3]
            ok = gas_s is not None and argument in self._gas_numbers
            if ok and gas_s is not None:
                self.bank.set(gas_s, float(argument))
        elif command == _CMD_VALVE:
            ok = argument in (0, 1, 2)
            if ok:
                self._valve_hold = argument
        else:
            self.bank.set(_ARGUMENT, float(_RESULT_UNSUPPORTED))
            return
        self.bank.set(_ARGUMENT, float(_RESULT_OK if ok else _RESULT_INVALID_SETTING))

    def step(self, dt_s: float) -> None:
        """Integrate the flow over ``dt_s`` seconds without refreshing the registers."""
        if self.stuck or self._valve_hold == 2:
            return
        if dt_s != self._alpha_dt_s:
            self._alpha_dt_s = dt_s
            self._alpha = -math.expm1(-dt_s / self.tau_s)
        target = 0.0 if self.no_flow or self._valve_hold == 1 else self.setpoint_sccm
        self.flow_sccm += (target - self.flow_sccm) * self._alpha

    def advance(self, dt_s: float) -> None:
        """Integrate ``dt_s`` seconds, then publish the readings."""
        self.step(dt_s)
        self.publish()

    def publish(self) -> None:
        """Refresh mass flow, volumetric flow, P, T and status from the state."""
        flow = self.flow_sccm
        reading = flow + self._rng.gauss(0.0, self._noise_sccm)
        # The instrument's "zero band": readings this close to zero show as exactly zero.
        reading = reading if abs(reading) > self._zero_band_sccm else 0.0
        mov_high, pid_hold = self._masks
        status = mov_high if flow > self.full_scale_sccm else 0
        if self._valve_hold:
            status |= pid_hold
        values = self._registers
        mass_i, volume_i, pressure_i, temperature_i, status_i = self._published
        k = self._per_unit_sccm
        values[mass_i] = reading if k is None else reading / k
        if volume_i is not None:
            # Ideal gas: actual volume at flow conditions from standard (25 °C, 14.696 psia).
            values[volume_i] = reading * _FLOW_K / _STANDARD_K * _STANDARD_PSIA / PRESSURE_PSIA
        if pressure_i is not None:
            values[pressure_i] = PRESSURE_PSIA
        if temperature_i is not None:
            values[temperature_i] = FLOW_TEMPERATURE_C
        if status_i is not None:
            values[status_i] = float(status)
