"""What the safety design needs of a temperature controller's map, and the station's waiver.

The design (DESIGN.md §2, decision 0003): setpoints are streamed to a volatile remote
setpoint that the instrument drops when the PC goes silent, falling back to its local
setpoint at its own rate limit; a sensor break is seen in its status word; a halt puts the
output in manual at 0 %. A map without one of these is refused, unless the station accepts
running without it; the features it waives are returned for the audit.

Not here: reading the station (the controller's station model names the waiver) or
switching the behaviour off (the driver and the runner, in the wiring step).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from drivers.errors import ConfigurationError
from drivers.maps.instrument import InstrumentMap, MapFileError, TemperatureControllerRoles

__all__ = ["WHAT_IS_LOST", "SafetyFeature", "check_safety", "missing_safety_features"]


class SafetyFeature(StrEnum):
    """A part of the safety design a temperature controller's map may lack; the value is
    what a station writes to accept running without it."""

    VOLATILE_SETPOINT = "volatile_setpoint"
    RATE_LIMIT = "rate_limit"
    SENSOR_BREAK = "sensor_break"
    OUTPUT_OFF = "output_off"


# What the map must bind, and what running without it gives up (recorded in the audit).
_NEEDS: Final = {
    SafetyFeature.VOLATILE_SETPOINT: "a volatile remote setpoint and a way to select it "
    "(roles.remote_setpoint, roles.remote_select)",
    SafetyFeature.RATE_LIMIT: "a setpoint rate limit (roles.rate_limit)",
    SafetyFeature.SENSOR_BREAK: "a sensor-break status bit (roles.status.bits.sensor_break)",
    SafetyFeature.OUTPUT_OFF: "auto/manual selection and a manual output "
    "(roles.auto_manual, roles.manual_output)",
}
_WHY: Final = {
    SafetyFeature.VOLATILE_SETPOINT: "so that the instrument returns to its local setpoint "
    "when the PC goes silent",
    SafetyFeature.RATE_LIMIT: "so that the instrument ramps (and cools after a fallback) at "
    "a safe rate without the PC",
    SafetyFeature.SENSOR_BREAK: "so that a broken thermocouple is seen at once",
    SafetyFeature.OUTPUT_OFF: "so that a halt can turn the heater off",
}
WHAT_IS_LOST: Final[Mapping[SafetyFeature, str]] = MappingProxyType({
    SafetyFeature.VOLATILE_SETPOINT: "no fallback: if the PC goes silent the instrument "
    "keeps its last setpoint instead of returning to its local setpoint",
    SafetyFeature.RATE_LIMIT: "no instrument rate limit: after a fallback the instrument "
    "steps to its local setpoint at its natural rate, and ramps are the PC's alone",
    SafetyFeature.SENSOR_BREAK: "no sensor-break status: a broken thermocouple is seen only "
    "by the software interlocks on the reading (frozen or implausible PV)",
    SafetyFeature.OUTPUT_OFF: "no forced output off: a halt releases the instrument to its "
    "local setpoint instead of putting the output at 0 %",
})


def _missing(roles: TemperatureControllerRoles) -> dict[SafetyFeature, str]:
    """Missing features and the field to point at."""
    missing: dict[SafetyFeature, str] = {}
    if roles.remote_setpoint is None:
        missing[SafetyFeature.VOLATILE_SETPOINT] = "roles.remote_setpoint"
    elif roles.remote_select is None:
        missing[SafetyFeature.VOLATILE_SETPOINT] = "roles.remote_select"
    if roles.rate_limit is None:
        missing[SafetyFeature.RATE_LIMIT] = "roles.rate_limit"
    if roles.status is None:
        missing[SafetyFeature.SENSOR_BREAK] = "roles.status"
    elif "sensor_break" not in roles.status.bits:
        missing[SafetyFeature.SENSOR_BREAK] = "roles.status.bits.sensor_break"
    if roles.auto_manual is None:
        missing[SafetyFeature.OUTPUT_OFF] = "roles.auto_manual"
    elif roles.manual_output is None:
        missing[SafetyFeature.OUTPUT_OFF] = "roles.manual_output"
    return missing


def missing_safety_features(imap: InstrumentMap) -> tuple[SafetyFeature, ...]:
    """The safety features ``imap`` lacks, in ``SafetyFeature`` order (none for a map that
    is not a temperature controller's)."""
    roles = imap.roles
    if not isinstance(roles, TemperatureControllerRoles):
        return ()
    found = _missing(roles)
    return tuple(f for f in SafetyFeature if f in found)


def check_safety(imap: InstrumentMap, waived: Collection[str] = (), *, station: str = "",
                 field: str = "accept_missing") -> tuple[SafetyFeature, ...]:
    """Refuse a temperature controller's map that lacks what the safety design needs,
    unless the station waives it; return the waived features (for the audit).

    ``waived`` is what the station accepts running without (``SafetyFeature`` values);
    ``station`` and ``field`` name where it says so, for messages. Raises
    ``MapFileError`` (naming the map file and the missing role) for a missing feature that
    is not waived, or for a map with neither a volatile setpoint nor a rate limit (every
    ramp would be streamed to EEPROM: not waivable) or no setpoint at all;
    ``ConfigurationError`` (naming the
    station field) for an unknown feature or a waiver of something the map has.
    """
    known = {f.value: f for f in SafetyFeature}
    for name in waived:
        if name not in known:
            raise ConfigurationError(f"unknown safety feature {name!r} (one of: "
                                     f"{', '.join(known)})", source=station, field=field)
    roles = imap.roles
    if not isinstance(roles, TemperatureControllerRoles):
        if waived:
            raise ConfigurationError(f"{imap.model} ({imap.source}) is a {imap.kind}, not a "
                                     "temperature controller: nothing to waive",
                                     source=station, field=field)
        return ()
    if roles.remote_setpoint is None and roles.rate_limit is None:
        raise MapFileError("neither a volatile setpoint to stream nor a rate limit to ramp "
                           "with: every ramp would be written to an EEPROM-backed setpoint "
                           "(this cannot be waived)", source=imap.source,
                           field="roles.remote_setpoint")
    if roles.remote_setpoint is None and roles.local_setpoint is None:
        raise MapFileError("no setpoint to write: bind roles.remote_setpoint (volatile), or "
                           "at least roles.local_setpoint", source=imap.source,
                           field="roles.local_setpoint")
    missing = _missing(roles)
    for name in waived:
        if known[name] not in missing:
            raise ConfigurationError(f"accepts running without {name}, but {imap.source} "
                                     f"has {_NEEDS[known[name]]}: remove it from the list",
                                     source=station, field=field)
    for feature in SafetyFeature:
        where = missing.get(feature)
        if where is not None and feature.value not in waived:
            raise MapFileError(f"a temperature controller needs {_NEEDS[feature]}, "
                               f"{_WHY[feature]}; bind it, or accept running without it in "
                               f"the station ({field} = [\"{feature}\"])",
                               source=imap.source, field=where)
    return tuple(f for f in SafetyFeature if f in missing)
