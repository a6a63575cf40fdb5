"""Role protocols the controller depends on, and the typed readings they return.

Not here: any particular instrument (see ``drivers.eurotherm``, ``drivers.alicat``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Balance",
    "ControllerReading",
    "FlowReading",
    "MassReading",
    "MassFlowController",
    "OxygenAnalyser",
    "TemperatureController",
]


@dataclass(frozen=True, slots=True)
class ControllerReading:
    """One poll of a temperature controller, in engineering units."""

    temperature_c: float
    working_setpoint_c: float
    output_pct: float
    is_manual: bool
    is_sensor_break: bool
    is_over_range: bool
    is_remote_failed: bool
    is_ramping: bool
    is_remote_selected: bool = True  # False after a power cycle or a front-panel change
    # The local (target) setpoint the instrument falls back to without the PC; NaN if the
    # instrument does not report it (an indicator).
    target_setpoint_c: float = math.nan


@dataclass(frozen=True, slots=True)
class FlowReading:
    """One poll of a mass-flow controller."""

    flow_sccm: float
    setpoint_sccm: float
    is_faulted: bool  # ADC error or valve held: the reading cannot be trusted


@dataclass(frozen=True, slots=True)
class MassReading:
    """One balance reading; ``is_stable`` is the balance's own stability flag."""

    mass_g: float
    is_stable: bool


@runtime_checkable
class TemperatureController(Protocol):
    """A furnace controller running its own PID; we only write setpoints and limits."""

    name: str

    async def read(self) -> ControllerReading:
        """Poll PV, working setpoint, output and status. Raises ``DeviceError``."""
        ...

    async def verify(self) -> None:
        """Connect check: prove the device at this unit is what the station says.
        Raises ``ConfigurationError`` naming the station field, or ``DeviceError``."""
        ...

    async def write_setpoint_c(self, setpoint_c: float) -> None:
        """Stream the working setpoint to the volatile remote setpoint, with read-back."""
        ...

    async def write_rate_limit_c_per_min(self, rate_c_per_min: float) -> None:
        """Set the instrument's own setpoint rate limit, with read-back."""
        ...

    async def configure_fallback(self, *, local_setpoint_c: float,
                                 rate_limit_c_per_min: float, alarm_high_c: float) -> None:
        """Preflight: the local setpoint and rate the instrument falls back to if the PC
        goes silent, the high alarm, auto mode, then remote setpoint selected."""
        ...

    async def release_to_local(self) -> None:
        """Hand control back to the local setpoint (cools at the rate limit on its own)."""
        ...

    async def force_output_off(self) -> None:
        """Heater off now: manual mode at 0 % output, read back. For halts, when the
        control loop cannot be trusted (frozen or broken sensor, stuck heater)."""
        ...


@runtime_checkable
class MassFlowController(Protocol):
    """A mass-flow controller for one gas."""

    name: str
    gas: str
    full_scale_sccm: float

    async def read(self) -> FlowReading:
        """Poll flow, setpoint and status. Raises ``DeviceError``."""
        ...

    async def verify(self) -> None:
        """Connect check (gas number, setpoint readable). Raises ``ConfigurationError``
        or ``DeviceError``."""
        ...

    async def set_flow_sccm(self, flow_sccm: float) -> None:
        """Write the flow setpoint, with read-back."""
        ...


@runtime_checkable
class OxygenAnalyser(Protocol):
    """An O2 analyser on the tube exhaust."""

    name: str

    async def read_o2_ppm(self) -> float:
        """O2 in ppm. Raises ``DeviceFaultError`` if the sensor reports a fault."""
        ...

    async def verify(self) -> None:
        """Connect check (value and status readable). Raises ``DeviceError``."""
        ...


@runtime_checkable
class Balance(Protocol):
    """A laboratory balance under the boat (TGA-like mass channel)."""

    name: str

    async def read_mass_g(self) -> MassReading:
        """The current mass, stable or not. Raises ``DeviceError`` (no reply, error reply,
        overload). Never blocks the event loop."""
        ...

    async def close(self) -> None:
        """Release the serial port. Idempotent."""
        ...
