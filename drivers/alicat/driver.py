"""Alicat mass-flow controller driver: the map-driven MFC on the built-in Alicat map file
(``drivers/maps/alicat.toml``, the 1200-block firmware).

Not here: the behaviour (``drivers.instrument.ModbusMassFlowController``, the same for every
map) or which gas a recipe wants; this only moves flows in sccm.
"""

from __future__ import annotations

from typing import Final

from drivers.bus import RegisterBus
from drivers.instrument.flow import ModbusMassFlowController
from drivers.maps import InstrumentMap, load_builtin_map

__all__ = ["BUILTIN_MAP", "AlicatMFC"]

BUILTIN_MAP: Final = "alicat"


class AlicatMFC(ModbusMassFlowController):
    """An Alicat MFC at ``unit`` metering ``gas``. Flows are in sccm. ``imap``: another map
    (default: the built-in Alicat map)."""

    def __init__(self, bus: RegisterBus, unit: int, *, gas: str, full_scale_sccm: float,
                 name: str | None = None, imap: InstrumentMap | None = None,
                 gas_number: int | None = None) -> None:
        super().__init__(bus, unit, imap or load_builtin_map(BUILTIN_MAP), gas=gas,
                         full_scale_sccm=full_scale_sccm, name=name, gas_number=gas_number)
