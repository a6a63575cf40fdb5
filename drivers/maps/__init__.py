"""Instrument map files: a Modbus instrument described in TOML (registers, types, roles,
EEPROM-backed parameters), loaded into the same ``RegisterMap`` the drivers and the
simulator use, with the role bindings a driver needs. Decision 0015; ``TEMPLATE.toml``
explains every field.

Not here: the drivers, the simulator or the station file (they take an ``InstrumentMap``).
"""

from drivers.maps.instrument import (
    AutoManual,
    GasTable,
    InstrumentKind,
    InstrumentMap,
    ManualReference,
    MassFlowControllerRoles,
    OxygenAnalyserRoles,
    RateLimit,
    RemoteSelect,
    Roles,
    StatusWord,
    TemperatureControllerRoles,
)
from drivers.maps.loader import (
    BUILTIN_MAPS,
    BUILTIN_PREFIX,
    MapFileError,
    builtin_map_text,
    load_builtin_map,
    load_map_file,
    load_map_text,
    read_map_file,
)
from drivers.maps.safety import (
    WHAT_IS_LOST,
    SafetyFeature,
    check_safety,
    missing_safety_features,
)

__all__ = [
    "BUILTIN_MAPS",
    "BUILTIN_PREFIX",
    "WHAT_IS_LOST",
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
    "SafetyFeature",
    "StatusWord",
    "TemperatureControllerRoles",
    "builtin_map_text",
    "check_safety",
    "load_builtin_map",
    "load_map_file",
    "load_map_text",
    "missing_safety_features",
    "read_map_file",
]
