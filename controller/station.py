"""Station files: which instrument sits on which line and unit id, and the furnace envelope.

Not here: building drivers from a station (``station_factory``) or recipe checks (``plan``).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.validation import load_model, read_text

__all__ = [
    "BUILTIN_STATION",
    "BalanceDevice",
    "BusConfig",
    "Envelope",
    "FurnaceDevice",
    "MfcDevice",
    "O2Device",
    "RampBand",
    "SampleTcDevice",
    "Station",
    "load_station",
    "load_station_text",
]

BUILTIN_STATION = "builtin:sim"

Positive = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


OneLine = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")]


class BusConfig(_Model):
    """One RS-485 line (RTU), a Modbus TCP gateway, or the in-process simulator."""

    kind: Literal["sim", "tcp", "rtu"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5020
    device: str = ""  # serial device: "/dev/ttyUSB0" or "COM3"
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: Positive = 0.5
    retries: Annotated[int, Field(ge=0, le=5)] = 2

    @model_validator(mode="after")
    def _serial_needs_device(self) -> BusConfig:
        if self.kind == "rtu" and not self.device:
            raise ValueError("an rtu bus needs 'device' (e.g. /dev/ttyUSB0 or COM3)")
        return self


class FurnaceDevice(_Model):
    """The furnace's temperature controller."""

    driver: Literal["eurotherm3216"] = "eurotherm3216"
    unit: Annotated[int, Field(ge=1, le=247)]
    decimals: Literal[0, 1, 2] = 1
    thermocouple: Literal["B", "R", "S", "K", "N"] = "S"


class MfcDevice(_Model):
    """One mass-flow controller and the gas it meters."""

    gas: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")]
    driver: Literal["alicat"] = "alicat"
    unit: Annotated[int, Field(ge=1, le=247)]
    full_scale_sccm: Positive
    oxidising: bool = False
    o2_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0


class SampleTcDevice(_Model):
    """A second temperature input at the sample (a 3216 used as an indicator)."""

    driver: Literal["eurotherm3216"] = "eurotherm3216"
    unit: Annotated[int, Field(ge=1, le=247)]
    decimals: Literal[0, 1, 2] = 1
    thermocouple: Literal["B", "R", "S", "K", "N"] = "K"


class BalanceDevice(_Model):
    """A balance on a serial line of its own (never on the Modbus line)."""

    driver: Literal["mt-sics"] = "mt-sics"
    port: Annotated[str, Field(min_length=1)]  # /dev/ttyUSB1, COM4 or socket://host:port
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: Positive = 1.0


class O2Device(_Model):
    """An oxygen analyser on the tube exhaust."""

    driver: Literal["o2-analyser"] = "o2-analyser"
    unit: Annotated[int, Field(ge=1, le=247)]


class RampBand(_Model):
    """Largest allowed ramp rate while the furnace is at or below ``up_to_c``."""

    up_to_c: float
    max_rate_c_per_min: Positive


class Envelope(_Model):
    """What the furnace, its tube and the lab's rules allow."""

    max_temperature_c: Positive
    ramp_limits: Annotated[tuple[RampBand, ...], Field(min_length=1)]
    max_cooling_rate_c_per_min: Positive
    tube_volume_l: Positive
    air_max_c: Positive  # oxidising gas is forbidden above this furnace temperature
    open_tube_max_c: Positive  # the tube may be opened (operator step) below this
    ambient_c: float = 25.0
    max_holdback_default_min: Positive = 30.0

    @model_validator(mode="after")
    def _bands_ascending(self) -> Envelope:
        tops = [b.up_to_c for b in self.ramp_limits]
        if tops != sorted(tops) or len(set(tops)) != len(tops):
            raise ValueError("ramp_limits must be in ascending order of up_to_c")
        if tops[-1] < self.max_temperature_c:
            raise ValueError("ramp_limits must cover up to max_temperature_c")
        return self

    def max_rate_at(self, temperature_c: float) -> float:
        """Largest ramp rate (°C/min) allowed at ``temperature_c``."""
        for band in self.ramp_limits:
            if temperature_c <= band.up_to_c:
                return band.max_rate_c_per_min
        return self.ramp_limits[-1].max_rate_c_per_min

    def max_rate_between(self, from_c: float, to_c: float) -> float:
        """Largest ramp rate allowed over the whole span between two temperatures."""
        lo, hi = sorted((from_c, to_c))
        rates, bottom_c = [], -math.inf
        for band in self.ramp_limits:  # band covers (bottom_c, up_to_c]
            if band.up_to_c >= lo and bottom_c < hi:
                rates.append(band.max_rate_c_per_min)
            bottom_c = band.up_to_c
        return min(rates, default=self.ramp_limits[-1].max_rate_c_per_min)


class Station(_Model):
    """A furnace station: its line, instruments and envelope."""

    schema_version: Literal[1]
    name: OneLine
    # True for the simulator served over a real bus (``furnace sim serve``): it may run
    # faster than real time and its operator steps are confirmed automatically.
    simulated: bool = False
    scan_period_s: Annotated[float, Field(ge=0.1, le=10)] = 1.0
    bus: BusConfig
    furnace: FurnaceDevice
    mfc: Annotated[tuple[MfcDevice, ...], Field(min_length=1)]
    o2: O2Device | None = None
    sample_tc: SampleTcDevice | None = None
    balance: BalanceDevice | None = None
    envelope: Envelope

    @model_validator(mode="after")
    def _unique_units_and_gases(self) -> Station:
        units = [self.furnace.unit, *(m.unit for m in self.mfc)]
        units += [d.unit for d in (self.o2, self.sample_tc) if d is not None]
        if len(set(units)) != len(units):
            raise ValueError("two devices share a unit id")
        gases = [m.gas for m in self.mfc]
        if len(set(gases)) != len(gases):
            raise ValueError("two MFCs meter the same gas")
        if not any(not m.oxidising for m in self.mfc):
            raise ValueError("a station needs at least one inert gas")
        return self

    @property
    def is_simulated(self) -> bool:
        """True for a simulator (in-process or served over a bus): it may run faster than
        real time, and operator steps are confirmed automatically and recorded so."""
        return self.bus.kind == "sim" or self.simulated

    def gas(self, name: str) -> MfcDevice | None:
        """The MFC metering ``name``, or None if the station has no such gas."""
        return next((m for m in self.mfc if m.gas == name), None)

    @property
    def inert_gases(self) -> tuple[str, ...]:
        """Names of the non-oxidising gases, the first being the default purge gas."""
        return tuple(m.gas for m in self.mfc if not m.oxidising)


def load_station_text(text: str, source: str) -> Station:
    """Parse a station from TOML text. Raises ``ConfigurationError`` naming source and field."""
    return load_model(Station, text, source)


def load_station(path: str | Path | None) -> tuple[Station, str]:
    """Load a station file, or the built-in simulated station when ``path`` is None.

    Returns the station and its TOML text (frozen into the batch folder).
    Raises ``ConfigurationError`` on a missing, unreadable or invalid file.
    """
    if path is None or str(path) == BUILTIN_STATION:
        text = resources.files("controller").joinpath("builtin/sim.toml").read_text("utf-8")
        return load_station_text(text, BUILTIN_STATION), text
    text = read_text(Path(path))
    return load_station_text(text, str(path)), text

