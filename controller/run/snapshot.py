"""One scan cycle's readings (``Snapshot``) and the commands the runner returns (``Commands``).

Not here: how readings are taken (``devices``) or judged (``interlocks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.run.monitors import ForeignChange, Health
from drivers.roles import ControllerReading, FlowReading

__all__ = ["Commands", "Snapshot"]

_EMPTY: MappingProxyType[str, int] = MappingProxyType({})
_NO_CHANGES: MappingProxyType[str, ForeignChange] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every reading of one poll, taken at process time ``t_s``.

    A reading that failed this cycle is ``None`` (stale); ``failures`` counts consecutive
    failed polls per device name, so a watchdog can tell a blip from a lost line.
    """

    t_s: float
    furnace: ControllerReading | None
    flows: MappingProxyType[str, FlowReading | None]
    o2_ppm: float | None = None
    failures: MappingProxyType[str, int] = field(default_factory=lambda: _EMPTY)
    sample_c: float | None = None  # sample thermocouple, where the station has one
    delta_t_rate_c_per_min: float | None = None  # d(sample − furnace)/dt, smoothed
    mass_g: float | None = None  # balance, where the station has one
    mass_pct: float | None = None  # relative to the first reading of the batch
    dtg_pct_per_min: float | None = None  # d(mass_pct)/dt, smoothed live
    health: Health = field(default_factory=Health)  # the monitors' view of this cycle
    real_s: float | None = None  # the clock's real seconds (timeouts a person waits on);
    # None: the same as t_s
    # per device, the last time another program changed a setting we had written (kept
    # until our configuration is re-applied on resume)
    foreign_changes: MappingProxyType[str, ForeignChange] = field(
        default_factory=lambda: _NO_CHANGES)

    @property
    def delta_t_c(self) -> float | None:
        """Sample minus furnace temperature (DSC-like signal), None without both."""
        if self.sample_c is None or self.furnace is None:
            return None
        return self.sample_c - self.furnace.temperature_c

    @property
    def furnace_c(self) -> float:
        """Furnace (control thermocouple) temperature, NaN when stale."""
        return self.furnace.temperature_c if self.furnace is not None else math.nan

    def flow_sccm(self, gas: str) -> float:
        """Measured flow of ``gas``, NaN when stale."""
        reading = self.flows.get(gas)
        return reading.flow_sccm if reading is not None else math.nan


@dataclass(frozen=True, slots=True)
class Commands:
    """What the runner wants the devices to be set to this cycle (the whole desired state).

    The scan cycle writes the setpoint every cycle (it is also the remote-setpoint
    heartbeat) and flows and the rate limit only when they change.
    """

    setpoint_c: float
    flows_sccm: MappingProxyType[str, float]
    rate_limit_c_per_min: float
