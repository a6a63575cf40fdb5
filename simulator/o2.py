"""Simulated O2 analyser on the tube exhaust, serving the driver's generic map.

Responsible for the sensor's lag, noise and fault bit. Not responsible for the tube gas
itself (``gas``) or for any vendor protocol (the map is a MODEL ASSUMPTION, see drivers/o2).
"""

from __future__ import annotations

import math
import random
from typing import Final

from drivers.maps import InstrumentMap, OxygenAnalyserRoles, load_builtin_map
from simulator.gas import AIR_O2_PPM
from simulator.mapped import bank_for, slot_index, slot_of

__all__ = ["SENSOR_TAU_S", "SimO2Analyser"]

SENSOR_TAU_S: Final = 10.0  # MODEL ASSUMPTION: sample line + cell response
NOISE_REL: Final = 0.01  # MODEL ASSUMPTION: 1 % of reading, 1 sigma
BUILTIN_MAP: Final = "o2-analyser"


class SimO2Analyser:
    """An O2 analyser whose reading (ppm) lags the tube O2 by a first-order ``tau_s``.

    The lag is linear in concentration (a well-mixed sample cell diluting into itself),
    integrated exactly per step; the reading adds 1 % relative gaussian noise and is never
    negative. ``faulted`` is a hook that sets the sensor-fault status bit (the map's
    ``sensor_fault`` bit, else its first fault bit). ``imap``: the map it serves (default:
    the built-in generic map). Raises ``ValueError`` for a map of another kind.
    """

    __slots__ = ("_alpha", "_alpha_dt_s", "_fault_mask", "_o2_i", "_registers", "_rng",
                 "_status_i", "bank", "faulted", "o2_ppm", "tau_s")

    def __init__(self, rng: random.Random | None = None, tau_s: float = SENSOR_TAU_S,
                 initial_ppm: float = AIR_O2_PPM, *,
                 imap: InstrumentMap | None = None) -> None:
        imap = imap or load_builtin_map(BUILTIN_MAP)
        roles = imap.roles_as(OxygenAnalyserRoles)
        status = roles.status
        o2_slot = imap.slot(roles.o2)
        status_slot = slot_of(imap, status.register if status else None)
        bits = status.bits if status is not None else {}
        first_fault = next(iter(sorted(status.fault)), "") if status is not None else ""
        self._fault_mask = bits.get("sensor_fault", bits.get(first_fault, 0))
        self._rng = rng or random.Random(0)
        self.tau_s = tau_s
        self._alpha_dt_s = -1.0
        self._alpha = 0.0
        self.o2_ppm = initial_ppm
        """Noise-free sensor value, ppm (lags the tube)."""
        self.faulted = False
        """Fault hook: the analyser reports a sensor fault (STATUS bit 0)."""
        self.bank = bank_for(imap)
        # ``publish`` runs every scan cycle: it stores by slot index, resolved here once.
        self._registers = self.bank.values
        self._o2_i = self.bank.slot(o2_slot)
        self._status_i = slot_index(self.bank, status_slot)
        self.publish()

    def step(self, dt_s: float, tube_o2_ppm: float) -> None:
        """Follow ``tube_o2_ppm`` for ``dt_s`` seconds without refreshing the registers."""
        if dt_s != self._alpha_dt_s:
            self._alpha_dt_s = dt_s
            self._alpha = -math.expm1(-dt_s / self.tau_s)
        self.o2_ppm += (tube_o2_ppm - self.o2_ppm) * self._alpha

    def advance(self, dt_s: float, tube_o2_ppm: float) -> None:
        """Step, then publish."""
        self.step(dt_s, tube_o2_ppm)
        self.publish()

    def publish(self) -> None:
        """Refresh the O2 reading (noisy) and the status word."""
        reading = self.o2_ppm * (1.0 + self._rng.gauss(0.0, NOISE_REL))
        values = self._registers
        values[self._o2_i] = reading if reading > 0.0 else 0.0
        if self._status_i is not None:
            values[self._status_i] = float(self._fault_mask if self.faulted else 0)
