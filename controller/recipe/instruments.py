"""The instrument map of each device a station names (``map = "builtin:NAME"`` or a path
relative to the station file; default: the built-in map of the device's kind), loaded at
the station's decimal places and checked: its kind, the safety design with the furnace's
``accept_missing`` waiver, an MFC's gas numbering. Every refusal is one line naming the
station file, the field and the rule (the map file's own field and rule inside it).

Not here: the station model (``station``), the map format and its checks (``drivers.maps``),
freezing the maps into a batch (the session) or driving anything (``station_factory``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from drivers.errors import ConfigurationError
from drivers.maps import (
    BUILTIN_PREFIX,
    WHAT_IS_LOST,
    InstrumentKind,
    InstrumentMap,
    MapFileError,
    MassFlowControllerRoles,
    SafetyFeature,
    builtin_map_text,
    check_safety,
    load_builtin_map,
    load_map_text,
    read_map_file,
)

if TYPE_CHECKING:
    from controller.recipe.station import Station

__all__ = ["DEFAULT_MAPS", "DeviceMap", "StationMaps", "load_station_maps"]

#: The built-in map each kind of device uses when the station names none.
DEFAULT_MAPS: Final = {"furnace": "builtin:eurotherm3216", "mfc": "builtin:alicat",
                       "o2": "builtin:o2-analyser", "sample_tc": "builtin:eurotherm3216"}
_KIND: Final = {"furnace": InstrumentKind.TEMPERATURE_CONTROLLER,
                "mfc": InstrumentKind.MASS_FLOW_CONTROLLER,
                "o2": InstrumentKind.OXYGEN_ANALYSER,
                "sample_tc": InstrumentKind.TEMPERATURE_CONTROLLER}


@dataclass(frozen=True, slots=True)
class DeviceMap:
    """One device's map: ``device`` names it in a batch folder (``maps/<device>.toml``) and
    the audit, ``field`` in the station file; ``ref`` is what the station says; ``text``
    the file's text (frozen into a batch) and ``sha256`` its hash."""

    device: str
    field: str
    ref: str
    imap: InstrumentMap
    text: str
    sha256: str


@dataclass(frozen=True, slots=True)
class StationMaps:
    """The maps of a station's devices, and the safety features its furnace runs without."""

    furnace: DeviceMap
    mfcs: Mapping[str, DeviceMap]  # by gas
    o2: DeviceMap | None
    sample_tc: DeviceMap | None
    waived: tuple[SafetyFeature, ...]

    def all(self) -> tuple[DeviceMap, ...]:
        """Every device's map: furnace, MFCs in station order, O2, sample thermocouple."""
        extra = tuple(m for m in (self.o2, self.sample_tc) if m is not None)
        return (self.furnace, *self.mfcs.values(), *extra)

    def what_is_lost(self) -> tuple[tuple[str, str], ...]:
        """Each waived safety feature and what running without it costs."""
        return tuple((str(f), WHAT_IS_LOST[f]) for f in self.waived)

    def audit_fields(self) -> dict[str, Any]:
        """What ``batch_created`` records: each map (as named, its model, its SHA-256) and
        each safety feature waived with what it costs."""
        return {
            "maps": {m.device: {"map": m.ref, "model": m.imap.model, "sha256": m.sha256}
                     for m in self.all()},
            "safety_waived": [{"device": self.furnace.device, "feature": feature,
                               "lost": lost} for feature, lost in self.what_is_lost()],
        }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@cache
def _builtin(name: str) -> tuple[str, InstrumentMap, str]:
    text = builtin_map_text(name)
    return text, load_builtin_map(name), _sha256(text)


def _load(ref: str, field: str, source: str, base_dir: Path, frozen: Path | None
          ) -> tuple[str, InstrumentMap, str]:
    """(text, map, sha256) of ``ref``; from ``frozen`` (a batch's copy) if given."""
    try:
        if frozen is not None:
            text = read_map_file(frozen)
            return text, load_map_text(text, str(frozen)), _sha256(text)
        if ref.startswith(BUILTIN_PREFIX):
            return _builtin(ref.removeprefix(BUILTIN_PREFIX))
        path = Path(ref)
        path = path if path.is_absolute() else base_dir / path
        text = read_map_file(path)
        return text, load_map_text(text, str(path)), _sha256(text)
    except MapFileError as exc:
        raise ConfigurationError(str(exc), source=source, field=field) from None


def _device_map(device: str, kind: str, field: str, ref: str | None, decimals: int | None,
                source: str, base_dir: Path, frozen_dir: Path | None) -> DeviceMap:
    ref = ref or DEFAULT_MAPS[kind]
    frozen = frozen_dir / f"{device}.toml" if frozen_dir is not None else None
    text, imap, sha = _load(ref, f"{field}.map", source, base_dir, frozen)
    if imap.kind is not _KIND[kind]:
        raise ConfigurationError(f"{imap.source} describes a {imap.kind}, not a "
                                 f"{_KIND[kind]}", source=source, field=f"{field}.map")
    if decimals is not None and imap.decimal_places:
        imap = imap.at_decimals(decimals, source=source, field=f"{field}.decimals")
    return DeviceMap(device, field, ref, imap, text, sha)


def load_station_maps(station: Station, source: str, *, base_dir: Path | None = None,
                      frozen_dir: Path | None = None) -> StationMaps:
    """Load and check the map of every device of ``station`` (``source`` names the station
    file in messages). Paths are relative to ``base_dir`` (default: the station file's
    folder); with ``frozen_dir`` (a batch's ``maps/``), each map is read from there instead.

    Raises ``ConfigurationError`` (one line: ``source``, the field such as ``furnace.map``
    or ``mfc[Ar].gas_number``, and the rule): a map that cannot be read or is not valid, of
    the wrong kind, unable to show the station's decimals, lacking a safety feature the
    furnace does not waive (``furnace.accept_missing``), or an MFC whose map keeps its own
    gas numbers with no ``gas_number`` given.
    """
    if base_dir is None:
        base_dir = Path(source).parent if not source.startswith(BUILTIN_PREFIX) else Path()
    f = station.furnace
    furnace = _device_map("furnace", "furnace", "furnace", f.map, f.decimals, source,
                          base_dir, frozen_dir)
    try:
        waived = check_safety(furnace.imap, f.accept_missing, station=source,
                              field="furnace.accept_missing")
    except MapFileError as exc:
        raise ConfigurationError(str(exc), source=source, field="furnace.map") from None
    mfcs: dict[str, DeviceMap] = {}
    for m in station.mfc:
        where = f"mfc[{m.gas}]"
        dm = _device_map(f"mfc_{m.gas}", "mfc", where, m.map, None, source, base_dir,
                         frozen_dir)
        roles = dm.imap.roles
        gas = roles.gas if isinstance(roles, MassFlowControllerRoles) else None
        if m.gas_number is not None and gas is None:
            raise ConfigurationError(f"{dm.imap.source} has no gas register to check a "
                                     "number against: remove gas_number", source=source,
                                     field=f"{where}.gas_number")
        if m.gas_number is None and gas is not None and not gas.numbers:
            raise ConfigurationError(f"{dm.imap.source} numbers its gases itself (no gas "
                                     f"table): give the number the instrument shows for "
                                     f"{m.gas}", source=source, field=f"{where}.gas_number")
        mfcs[m.gas] = dm
    o2 = (_device_map("o2", "o2", "o2", station.o2.map, None, source, base_dir, frozen_dir)
          if station.o2 is not None else None)
    tc = station.sample_tc
    sample_tc = (_device_map("sample_tc", "sample_tc", "sample_tc", tc.map, tc.decimals,
                             source, base_dir, frozen_dir) if tc is not None else None)
    return StationMaps(furnace, mfcs, o2, sample_tc, waived)
