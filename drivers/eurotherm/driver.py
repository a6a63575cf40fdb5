"""Eurotherm 3216 driver: the map-driven temperature controller on the built-in 3216 map file
(``drivers/maps/eurotherm3216.toml``), or on another Eurotherm map given as ``imap``.

Not here: the behaviour, which is ``drivers.instrument.ModbusTemperatureController``'s for
every map: temperatures through the float region (full resolution), setpoints streamed to
the volatile remote setpoint, the EEPROM-backed target setpoint written only at preflight
and only if it differs.
"""

from __future__ import annotations

from typing import Final

from drivers.bus import RegisterBus
from drivers.instrument.temperature import ModbusTemperatureController
from drivers.maps import InstrumentMap, load_builtin_map

__all__ = ["BUILTIN_MAP", "Eurotherm3216"]

BUILTIN_MAP: Final = "eurotherm3216"


class Eurotherm3216(ModbusTemperatureController):
    """A 3200-series controller at ``unit`` on ``bus``, showing ``decimals`` decimal places.

    ``imap``: another map to drive (default: the built-in 3216 map at ``decimals``). Raises
    ``ConfigurationError`` for decimal places the map cannot show.
    """

    def __init__(self, bus: RegisterBus, unit: int, *, name: str = "furnace",
                 decimals: int = 1, indicator: bool = False,
                 imap: InstrumentMap | None = None) -> None:
        if imap is None:
            imap = load_builtin_map(BUILTIN_MAP).at_decimals(decimals, field=f"{name}.decimals")
        super().__init__(bus, unit, imap, name=name, decimals=decimals, indicator=indicator)
