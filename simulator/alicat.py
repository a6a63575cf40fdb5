"""Simulated Alicat mass-flow controller serving the driver's 1200-block map (§2.1).

Responsible for the flow response, readings, status flags, the command registers and
fault hooks (empty bottle, stuck valve). Not responsible for what the gas does downstream.
"""

from __future__ import annotations

import math
import random
from typing import Final

from drivers.alicat.registers import GAS_INDEX, MAP, Status
from simulator.bank import RegisterBank

__all__ = ["FLOW_TAU_S", "SimAlicatMFC"]

FLOW_TAU_S: Final = 0.5  # MODEL ASSUMPTION: response time UNCONFIRMED (§2.1, "tens of ms")
NOISE_FRAC_FS: Final = 2e-4  # MODEL ASSUMPTION: 0.02 % of full scale, 1 sigma
ZERO_BAND_FRAC_FS: Final = 1e-3  # MODEL ASSUMPTION: readings within 0.1 % FS of zero show 0
PRESSURE_PSIA: Final = 14.7  # MODEL ASSUMPTION: exhausting to a vented tube at 1 atm
FLOW_TEMPERATURE_C: Final = 25.0  # MODEL ASSUMPTION: gas at room temperature
_STANDARD_K: Final = 298.15  # Alicat standard conditions: 25 °C, 14.696 psia
_STANDARD_PSIA: Final = 14.696
_FLOW_K: Final = FLOW_TEMPERATURE_C + 273.15
_MOV_HIGH: Final = int(Status.MOV_HIGH)  # plain ints: IntFlag arithmetic is slow
_PID_HOLD: Final = int(Status.PID_HOLD)
_PUBLISHED: Final = ("MASS_FLOW", "VOL_FLOW", "PRESSURE", "FLOW_TEMP", "STATUS")

# Command ids and result codes of registers 1000/1001 (§2.1 [S21]).
_CMD_CHANGE_GAS: Final = 1
_CMD_VALVE: Final = 6
_RESULT_OK: Final = 0
_RESULT_INVALID_SETTING: Final = 32770
_RESULT_UNSUPPORTED: Final = 32771


class SimAlicatMFC:
    """An Alicat MC-series mass-flow controller metering ``gas``, range 0..``full_scale_sccm``.

    Mass flow follows the setpoint as an exact first-order lag (``tau_s``); readings carry
    gaussian noise, the true flow is ``flow_sccm``. A setpoint write above full scale is
    answered with exception 3. Fault hooks: ``no_flow`` (empty bottle: flow decays to 0
    while the setpoint stays) and ``stuck`` (flow frozen at its present value). Raises
    ``ValueError`` for a gas without an Alicat gas number or a non-positive full scale.
    """

    __slots__ = ("_alpha", "_alpha_dt_s", "_noise_sccm", "_published", "_registers", "_rng",
                 "_valve_hold", "_zero_band_sccm", "bank", "flow_sccm", "full_scale_sccm", "gas",
                 "no_flow", "setpoint_sccm", "stuck", "tau_s")

    def __init__(self, gas: str, full_scale_sccm: float, rng: random.Random | None = None,
                 tau_s: float = FLOW_TAU_S) -> None:
        if gas not in GAS_INDEX:
            raise ValueError(f"no Alicat gas number for {gas!r}")
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
        self.bank = RegisterBank(MAP)
        self.bank.limit("SETPOINT", 0.0, full_scale_sccm)
        self.bank.set("GAS", float(GAS_INDEX[gas]))
        self.bank.on_write(self._on_write)
        # ``publish`` runs every scan cycle: it stores by slot index, resolved here once.
        self._registers = self.bank.values
        self._published = tuple(self.bank.slot(name) for name in _PUBLISHED)
        self.publish()

    def _on_write(self, name: str, value: float) -> None:
        if name == "SETPOINT":
            self.setpoint_sccm = value
            self.bank.set("SETPOINT_RB", value)
        elif name == "CMD":
            self._command(int(value), int(self.bank.get("CMD.ARG")))

    def _command(self, command: int, argument: int) -> None:
        """Run a special command (register 1000) and leave the result in register 1001."""
        if command == _CMD_CHANGE_GAS:
            ok = argument in GAS_INDEX.values()
            if ok:
                self.bank.set("GAS", float(argument))
        elif command == _CMD_VALVE:
            ok = argument in (0, 1, 2)
            if ok:
                self._valve_hold = argument
        else:
            self.bank.set("CMD.ARG", float(_RESULT_UNSUPPORTED))
            return
        self.bank.set("CMD.ARG", float(_RESULT_OK if ok else _RESULT_INVALID_SETTING))

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
        status = _MOV_HIGH if flow > self.full_scale_sccm else 0
        if self._valve_hold:
            status |= _PID_HOLD
        values = self._registers
        mass_i, volume_i, pressure_i, temperature_i, status_i = self._published
        values[mass_i] = reading
        # Ideal gas: actual volume at flow conditions from standard (25 °C, 14.696 psia).
        values[volume_i] = reading * _FLOW_K / _STANDARD_K * _STANDARD_PSIA / PRESSURE_PSIA
        values[pressure_i] = PRESSURE_PSIA
        values[temperature_i] = FLOW_TEMPERATURE_C
        values[status_i] = float(status)
