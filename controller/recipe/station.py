"""Station files: which instrument sits on which line and unit id, and the furnace envelope.

Not here: building drivers from a station (``station_factory``) or recipe checks (``plan``).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from controller.recipe.instruments import StationMaps, load_station_maps
from controller.recipe.notify_config import NotifyConfig
from controller.recipe.opcua_config import OpcUaConfig
from controller.recipe.twin_config import (
    TUBE_VOLUME_BOUNDS_L,
    TwinFitRecord,
    TwinSection,
    describe_twin,
    simulated_tube_volume_l,
    twin_bounds,
)
from controller.recipe.validation import FieldRuleError, load_model, read_text
from controller.text import printable_line

__all__ = [
    "BUILTIN_STATION",
    "BalanceDevice",
    "BusConfig",
    "FALLBACK_RATE_FRACTION",
    "Envelope",
    "FurnaceDevice",
    "HoldPolicy",
    "MfcDevice",
    "O2Device",
    "RampBand",
    "SampleTcDevice",
    "Station",
    "TUBE_VOLUME_BOUNDS_L",
    "TwinFitRecord",
    "TwinSection",
    "describe_twin",
    "fallback_rate_c_per_min",
    "load_station",
    "load_station_text",
    "simulated_tube_volume_l",
    "twin_bounds",
]

BUILTIN_STATION = "builtin:sim"

Positive = Annotated[float, Field(gt=0)]

# Physical bounds of a lab tube furnace station; a number outside them is a typo or a unit
# mistake, and some (1e300 sccm, a 1e-9 L tube) would make purges take no time at all.
MAX_RATE_C_PER_MIN = 50.0  # alumina tubes: <= 10 °C/min (hardware.md §4.2); 50 is far past it
MIN_AMBIENT_C, MAX_AMBIENT_C = 0.0, 50.0  # a lab, not a freezer or a furnace room
MAX_TEMPERATURE_C = 1820.0  # the top of the Type B thermocouple's range (hardware.md §4.3)
# 0.02 L is a 10 mm bore x 250 mm tube; 200 L is a 300 mm bore x 2.8 m tube, past the
# largest tube furnaces: a purge below or above these volumes means a mistyped unit (mL, m³).
MIN_TUBE_VOLUME_L, MAX_TUBE_VOLUME_L = TUBE_VOLUME_BOUNDS_L
# Thermal MFCs are made from about 1 sccm to a few hundred slpm full scale; a tube that takes
# <= 0.2 bar (hardware.md §4.1) never needs more than 100 slpm.
MIN_FULL_SCALE_SCCM, MAX_FULL_SCALE_SCCM = 1.0, 100_000.0
# An inert gas carries a few ppm O2 (commercial Ar/N2 <= 20 ppm, hardware.md §4.5); a supply
# with 100 ppm or more (the purge target) must be treated as oxidising.
MAX_INERT_O2_FRACTION = 100e-6
# Names that always mean a gas with oxygen in it, whatever its o2_fraction says.
_OXIDISING_NAMES = frozenset({"air", "o2", "oxygen", "synair", "syntheticair", "zeroair",
                              "cda", "n2o"})
MAX_TIMEOUT_S = 10.0  # a Modbus or SICS reply takes milliseconds; 10 s means no reply
MAX_HOLDBACK_MIN = 7 * 24 * 60.0  # a week: as long as one recipe step may last
MAX_HOLD_MIN = 3 * 24 * 60.0  # a long weekend: past it nobody is coming


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


OneLine = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(printable_line)]
# An instrument map: "builtin:eurotherm2400" or a path relative to the station file.
MapRef = Annotated[str, Field(min_length=1, max_length=260), AfterValidator(printable_line)]
# A safety feature the furnace's map may lack (drivers.maps.SafetyFeature); checked with it.
Feature = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(printable_line)]
Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]


class BusConfig(_Model):
    """One RS-485 line (RTU), a Modbus TCP gateway, or the in-process simulator."""

    kind: Literal["sim", "tcp", "rtu"]
    host: Annotated[str, AfterValidator(printable_line)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5020
    # serial device: "/dev/ttyUSB0" or "COM3"
    device: Annotated[str, AfterValidator(printable_line)] = ""
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: Timeout = 0.5
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
    map: MapRef | None = None  # default: builtin:eurotherm3216
    # What the map lacks of the safety design and the lab accepts running without
    # (volatile_setpoint, rate_limit, sensor_break, output_off): recorded in every batch.
    accept_missing: Annotated[tuple[Feature, ...], Field(max_length=4)] = ()


class MfcDevice(_Model):
    """One mass-flow controller and the gas it meters."""

    gas: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")]
    driver: Literal["alicat"] = "alicat"
    unit: Annotated[int, Field(ge=1, le=247)]
    full_scale_sccm: Annotated[float, Field(ge=MIN_FULL_SCALE_SCCM, le=MAX_FULL_SCALE_SCCM)]
    oxidising: bool = False
    o2_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    map: MapRef | None = None  # default: builtin:alicat
    # The number the instrument's gas register shows for this gas, where the map has no gas
    # table (a Bronkhorst's own fluid numbers); default: the map's number for the gas.
    gas_number: Annotated[int, Field(ge=0, le=65535)] | None = None

    @model_validator(mode="after")
    def _oxygen_is_oxidising(self) -> MfcDevice:
        if self.oxidising:
            return self
        if self.o2_fraction >= MAX_INERT_O2_FRACTION:
            raise FieldRuleError("oxidising", f"gas {self.gas} has o2_fraction "
                                              f"{self.o2_fraction:g}: set oxidising = true "
                                              "(an inert gas carries less than "
                                              f"{MAX_INERT_O2_FRACTION * 1e6:g} ppm O2)")
        if self.gas.lower() in _OXIDISING_NAMES:
            raise FieldRuleError("oxidising", f"gas {self.gas} contains oxygen: set "
                                              "oxidising = true")
        return self


class SampleTcDevice(_Model):
    """A second temperature input at the sample (a 3216 used as an indicator)."""

    driver: Literal["eurotherm3216"] = "eurotherm3216"
    unit: Annotated[int, Field(ge=1, le=247)]
    decimals: Literal[0, 1, 2] = 1
    thermocouple: Literal["B", "R", "S", "K", "N"] = "K"
    map: MapRef | None = None  # default: builtin:eurotherm3216


class BalanceDevice(_Model):
    """A balance on a serial line of its own (never on the Modbus line)."""

    driver: Literal["mt-sics"] = "mt-sics"
    # /dev/ttyUSB1, COM4 or socket://host:port
    port: Annotated[str, Field(min_length=1), AfterValidator(printable_line)]
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: Timeout = 1.0


class O2Device(_Model):
    """An oxygen analyser on the tube exhaust."""

    driver: Literal["o2-analyser"] = "o2-analyser"
    unit: Annotated[int, Field(ge=1, le=247)]
    map: MapRef | None = None  # default: builtin:o2-analyser


class RampBand(_Model):
    """Largest allowed ramp rate while the furnace is at or below ``up_to_c``."""

    up_to_c: float
    max_rate_c_per_min: Annotated[float, Field(gt=0, le=MAX_RATE_C_PER_MIN)]


class Envelope(_Model):
    """What the furnace, its tube and the lab's rules allow."""

    max_temperature_c: Annotated[float, Field(gt=0, le=MAX_TEMPERATURE_C)]
    ramp_limits: Annotated[tuple[RampBand, ...], Field(min_length=1)]
    max_cooling_rate_c_per_min: Annotated[float, Field(gt=0, le=MAX_RATE_C_PER_MIN)]
    tube_volume_l: Annotated[float, Field(ge=MIN_TUBE_VOLUME_L, le=MAX_TUBE_VOLUME_L)]
    air_max_c: Positive  # oxidising gas is forbidden above this furnace temperature
    open_tube_max_c: Positive  # the tube may be opened (operator step) below this
    # The lab's rule for gas into an open tube: an inert purge of at most this much in
    # total (it keeps room air off the warm residue, and does not blow powder out of the
    # boat), or 0: every gas off while the tube is open. Recipes declare their open-tube
    # flows; validation checks them against this.
    open_tube_max_flow_sccm: Annotated[float, Field(ge=0, le=MAX_FULL_SCALE_SCCM)] = 0.0
    ambient_c: Annotated[float, Field(ge=MIN_AMBIENT_C, le=MAX_AMBIENT_C)] = 25.0
    max_holdback_default_min: Annotated[float, Field(gt=0, le=MAX_HOLDBACK_MIN)] = 30.0

    @model_validator(mode="after")
    def _limits_consistent(self) -> Envelope:
        # ambient < open tube <= air <= maximum: opening the tube lets air in, so it may
        # happen only where air is allowed, and the furnace must be able to cool to it.
        air, top = self.air_max_c, self.max_temperature_c
        if air > top:
            raise FieldRuleError("air_max_c", f"{air:g} °C is above max_temperature_c "
                                              f"({top:g} °C)")
        open_c = self.open_tube_max_c
        if open_c > air:
            raise FieldRuleError("open_tube_max_c", f"{open_c:g} °C is above air_max_c "
                                                    f"({air:g} °C): opening the tube lets "
                                                    "air in")
        if open_c <= self.ambient_c:
            raise FieldRuleError("open_tube_max_c", f"{open_c:g} °C is not above ambient_c "
                                                    f"({self.ambient_c:g} °C): the tube "
                                                    "could never be opened")
        return self

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


class HoldPolicy(_Model):
    """What a hold nobody lifts comes to. The timeout runs on real (wall) time whatever the
    clock's speed: it is the time a person has to come to the furnace."""

    timeout_min: Annotated[float, Field(gt=0, le=MAX_HOLD_MIN)] = 60.0
    on_timeout: Literal["abort", "stop"] = "abort"  # abort: cool at once; stop: the same,
    # recorded as stopped (the lab's choice of outcome)


class ArchiveConfig(_Model):
    """``[archive]``: where each ended batch is archived (``furnace archive``), best effort."""

    db: OneLine  # sqlite:///FILE or postgresql://USER@HOST/DB


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
    hold: HoldPolicy = HoldPolicy()
    notify: NotifyConfig | None = None  # who is told what, and how (notify_config)
    archive: ArchiveConfig | None = None  # the lab's batch archive (controller.archive)
    opcua: OpcUaConfig | None = None  # the station's OPC UA server (opcua_config)
    twin: TwinSection | None = None  # the furnace as simulated (twin_config); None: built-in
    _maps: StationMaps | None = PrivateAttr(default=None)  # load_station_text loads them

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

    @model_validator(mode="after")
    def _purge_takes_time(self) -> Station:
        # The controller follows a purge once per scan: a tube volume exchanged faster than
        # that (a tiny tube behind a huge MFC) is a purge that takes no time to it.
        fastest_sccm = max(m.full_scale_sccm for m in self.mfc)
        volume_l = self.envelope.tube_volume_l
        volume_s = volume_l / (fastest_sccm / 1000.0) * 60.0
        if volume_s < self.scan_period_s:
            raise FieldRuleError("envelope.tube_volume_l",
                                 f"{volume_l:g} L is exchanged in {volume_s:.2g} s at "
                                 f"{fastest_sccm:g} sccm, faster than one scan "
                                 f"({self.scan_period_s:g} s); is the unit litres?")
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
    def maps(self) -> StationMaps:
        """Every device's instrument map, loaded and checked (``load_station_text`` does it
        as it loads the station; a station built otherwise loads them here, paths relative
        to the working folder). Raises ``ConfigurationError`` as ``load_station_maps``."""
        maps = self._maps
        if maps is None:
            maps = self._maps = load_station_maps(self, "station", base_dir=Path())
        return maps

    @property
    def inert_gases(self) -> tuple[str, ...]:
        """Names of the non-oxidising gases, the first being the default purge gas."""
        return tuple(m.gas for m in self.mfc if not m.oxidising)


# The instrument's fallback rate as a fraction of the station's maximum cooling rate. At the
# handover the furnace core, which led the thermocouple by its lag while heating, must end
# up behind it, so over the first 2 minutes it cools faster than the instrument's ramp:
# ~19 % faster from a dwell and ~38 % from a heating ramp at the same rate (simulator,
# 60 s thermocouple lag). 0.7 keeps the worst 2-minute window at ~98 % of the limit
# (decision 0005; benchmarks/faults.py --fallback-kills).
FALLBACK_RATE_FRACTION = 0.7


def fallback_rate_c_per_min(station: Station) -> float:
    """The instrument's own rate limit: what it cools at if the PC goes silent."""
    return FALLBACK_RATE_FRACTION * station.envelope.max_cooling_rate_c_per_min


def load_station_text(text: str, source: str, *, base_dir: Path | None = None,
                      frozen_maps: Path | None = None) -> Station:
    """Parse a station from TOML text and load its instrument maps (``Station.maps``):
    paths relative to ``base_dir`` (default: ``source``'s folder), or each device's map
    from ``frozen_maps`` (a batch folder's ``maps/``). Raises ``ConfigurationError`` naming
    source and field."""
    station = load_model(Station, text, source)
    station._maps = load_station_maps(station, source, base_dir=base_dir,  # noqa: SLF001
                                      frozen_dir=frozen_maps)
    return station


def load_station(path: str | Path | None, *, frozen_maps: Path | None = None
                 ) -> tuple[Station, str]:
    """Load a station file, or the built-in simulated station when ``path`` is None.

    Returns the station and its TOML text (frozen into the batch folder); its maps as
    ``load_station_text`` loads them (``frozen_maps``: a batch's frozen copies).
    Raises ``ConfigurationError`` on a missing, unreadable or invalid file or map.
    """
    if path is None or str(path) == BUILTIN_STATION:
        text = resources.files("controller").joinpath("builtin/sim.toml").read_text("utf-8")
        return load_station_text(text, BUILTIN_STATION), text
    text = read_text(Path(path))
    return load_station_text(text, str(path), frozen_maps=frozen_maps), text

