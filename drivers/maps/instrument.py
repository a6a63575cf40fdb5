"""A loaded instrument map: the ``RegisterMap`` and the role bindings, as frozen data.

Not here: reading or checking files (``loader``), the safety completeness check
(``safety``). Drivers and the simulator take these objects; they never see pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Literal, Self, TypeVar

from drivers.errors import ConfigurationError
from drivers.registers import Register, RegisterMap

__all__ = [
    "AutoManual",
    "GasTable",
    "InstrumentKind",
    "InstrumentMap",
    "ManualReference",
    "MapFileError",
    "MassFlowControllerRoles",
    "OxygenAnalyserRoles",
    "RateLimit",
    "RemoteSelect",
    "Roles",
    "StatusWord",
    "TemperatureControllerRoles",
]

class MapFileError(ConfigurationError):
    """An instrument map file that cannot be used: ``str()`` is one line naming the file
    (``source``), the field and the rule. The CLI turns it into exit 2."""


_PER_MINUTE: Final = {"second": 1.0 / 60.0, "minute": 1.0, "hour": 60.0}


class InstrumentKind(StrEnum):
    """What a map file describes; its value is ``instrument.kind`` in the file."""

    TEMPERATURE_CONTROLLER = "temperature_controller"
    MASS_FLOW_CONTROLLER = "mass_flow_controller"
    OXYGEN_ANALYSER = "oxygen_analyser"


@dataclass(frozen=True, slots=True)
class ManualReference:
    """The manual the addresses come from: document (name and number) and section."""

    document: str
    section: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class RemoteSelect:
    """Writing ``remote`` to ``register`` selects the remote (comms) setpoint, ``local`` the
    instrument's own local setpoint."""

    register: str
    remote: int
    local: int


@dataclass(frozen=True, slots=True)
class AutoManual:
    """Writing ``manual`` to ``register`` puts the output in manual, ``auto`` back in auto."""

    register: str
    auto: int
    manual: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The instrument's setpoint rate limit, counted per ``per`` (0 = no limit).

    ``units_register``/``units_value``: where the instrument keeps its time base and the
    value that means ``per`` (the connect check compares), or None if fixed.
    """

    register: str
    per: Literal["second", "minute", "hour"]
    units_register: str | None = None
    units_value: int | None = None

    def to_register(self, rate_c_per_min: float) -> float:
        """°C/min -> the value to write (°C per ``per``)."""
        return rate_c_per_min * _PER_MINUTE[self.per]

    def from_register(self, value: float) -> float:
        """The register's value (°C per ``per``) -> °C/min."""
        return value / _PER_MINUTE[self.per]


@dataclass(frozen=True, slots=True)
class StatusWord:
    """A status register whose named bits are single-bit masks.

    ``fault``: the bits that mean the reading cannot be trusted. ``inverted``: a register
    holding the bitwise NOT of this one (the 3216's StAt.INV), or None.
    """

    register: str
    bits: Mapping[str, int]
    fault: frozenset[str] = frozenset()
    inverted: str | None = None

    def is_set(self, word: int, bit: str) -> bool:
        """True if the named bit is set in ``word``; False for a bit the map does not name."""
        mask = self.bits.get(bit)
        return mask is not None and bool(word & mask)

    def names(self, word: int) -> tuple[str, ...]:
        """The named bits set in ``word``, in the map's order (for ``furnace probe``)."""
        return tuple(name for name, mask in self.bits.items() if word & mask)

    def is_faulted(self, word: int) -> bool:
        """True if any ``fault`` bit is set."""
        return any(self.is_set(word, name) for name in self.fault)

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        """Itself: frozen data with read-only mappings, shared by a copied simulated world
        (a mapping proxy cannot be deep-copied)."""
        return self


@dataclass(frozen=True, slots=True)
class GasTable:
    """The gas-selection register and the number each gas has on it (empty: the numbers
    are the instrument's own, e.g. a Bronkhorst's calibrated fluids; the station gives it)."""

    register: str
    numbers: Mapping[str, int]

    def name_of(self, number: int) -> str | None:
        """The first gas with ``number``, or None."""
        return next((gas for gas, n in self.numbers.items() if n == number), None)

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        """Itself: frozen data with read-only mappings, shared by a copied simulated world
        (a mapping proxy cannot be deep-copied)."""
        return self


@dataclass(frozen=True, slots=True)
class TemperatureControllerRoles:
    """Which register plays which part for a temperature controller (register names).

    Read: process_value, working_setpoint, output, process_value_scaled, range_low/high,
    display_decimals, error, status. Written and read back: remote_setpoint (streamed every
    scan: never EEPROM), local_setpoint and alarm_high (preflight only), rate_limit,
    manual_output, remote_select, auto_manual. Written only: acknowledge_alarms. The PID
    terms and output limits are for the simulator and ``furnace probe``.
    """

    process_value: str
    working_setpoint: str
    output: str
    process_value_scaled: str | None = None
    remote_setpoint: str | None = None
    remote_select: RemoteSelect | None = None
    local_setpoint: str | None = None
    rate_limit: RateLimit | None = None
    manual_output: str | None = None
    auto_manual: AutoManual | None = None
    alarm_high: str | None = None
    acknowledge_alarms: str | None = None
    range_low: str | None = None
    range_high: str | None = None
    display_decimals: str | None = None
    proportional_band: str | None = None
    integral_time: str | None = None
    derivative_time: str | None = None
    output_high: str | None = None
    output_low: str | None = None
    error: str | None = None
    status: StatusWord | None = None


@dataclass(frozen=True, slots=True)
class MassFlowControllerRoles:
    """Which register plays which part for a mass-flow controller.

    ``flow_basis``: "sccm" if setpoint and flow are in sccm, "percent_of_full_scale" if in
    % of the instrument's range (the station's full scale converts). ``full_scale``: a
    register reporting the range (a connect check), or None.
    """

    setpoint: str
    flow: str
    flow_basis: Literal["sccm", "percent_of_full_scale"] = "sccm"
    setpoint_readback: str | None = None
    full_scale: str | None = None
    gas: GasTable | None = None
    status: StatusWord | None = None


@dataclass(frozen=True, slots=True)
class OxygenAnalyserRoles:
    """Which register plays which part for an oxygen analyser."""

    o2: str
    status: StatusWord | None = None


Roles = TemperatureControllerRoles | MassFlowControllerRoles | OxygenAnalyserRoles
_R = TypeVar("_R", TemperatureControllerRoles, MassFlowControllerRoles, OxygenAnalyserRoles)
_ROLE_KINDS: Final = {TemperatureControllerRoles: "a temperature controller",
                      MassFlowControllerRoles: "a mass-flow controller",
                      OxygenAnalyserRoles: "an oxygen analyser"}


@dataclass(frozen=True, slots=True)
class InstrumentMap:
    """One instrument map file, loaded and checked.

    ``registers`` is the map at ``decimals`` (the configured decimal places its scaled
    registers follow; None if it has none). ``eeprom``: names of the registers backed by
    non-volatile memory (never streamed to). ``aliases``: float alias name -> the register it
    is a second view of (one value in the simulator). ``source`` is the file, for messages.
    """

    source: str
    model: str
    kind: InstrumentKind
    manual: ManualReference
    notes: str
    registers: RegisterMap
    roles: Roles
    eeprom: frozenset[str]
    aliases: Mapping[str, str]
    decimals: int | None = None
    decimal_places: tuple[int, ...] = ()
    high_addresses: bool = False
    variants: Mapping[int, RegisterMap] = field(default_factory=dict, repr=False,
                                                compare=False)

    def at_decimals(self, decimals: int, *, source: str = "", field: str = "decimals"
                    ) -> InstrumentMap:
        """This map with its scaled registers at ``decimals`` decimal places.

        Raises ``ConfigurationError`` (naming ``source`` and ``field``, e.g. the station's
        ``furnace.decimals``) if the instrument cannot show that many.
        """
        if decimals == self.decimals:
            return self
        variant = self.variants.get(decimals)
        if variant is None:
            shown = ", ".join(map(str, self.decimal_places)) or "none"
            raise ConfigurationError(f"{self.model} ({self.source}) shows {shown} decimal "
                                     f"places, not {decimals}", source=source, field=field)
        return replace(self, registers=variant, decimals=decimals)

    def roles_as(self, kind: type[_R], *, field: str = "") -> _R:
        """The roles, as the ``kind`` of instrument the caller drives or plays. Raises
        ``ConfigurationError`` (a ``ValueError``; naming ``field``, e.g. ``furnace.map``) if
        the map describes another kind of instrument."""
        roles = self.roles
        if not isinstance(roles, kind):
            raise ConfigurationError(f"{self.model} ({self.source}) is a {self.kind}, not "
                                     f"{_ROLE_KINDS[kind]}", field=field)
        return roles

    def register(self, name: str) -> Register:
        """The register called ``name``. Raises ``KeyError``."""
        for reg in self.registers.registers:
            if reg.name == name:
                return reg
        raise KeyError(name)

    def slot(self, name: str) -> str:
        """The value ``name`` is a view of: the base register for a float alias, else
        ``name`` (the simulator keeps one value per slot)."""
        return self.aliases.get(name, name)

    def is_eeprom(self, name: str) -> bool:
        """True if ``name`` is backed by non-volatile memory (write-life limited)."""
        return name in self.eeprom

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        """Itself: frozen data with read-only mappings, shared by a copied simulated world
        (a mapping proxy cannot be deep-copied)."""
        return self

