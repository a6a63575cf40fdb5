"""The composition root: turns a ``Station`` into buses, drivers and (for a simulated
station) the simulator. The only controller module that may import ``simulator``.

Not here: running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.clock import Clock
from controller.scan import Devices
from controller.station import Station
from drivers.alicat import AlicatMFC
from drivers.bus import RegisterBus
from drivers.errors import ConfigurationError
from drivers.eurotherm import Eurotherm3216
from drivers.o2 import O2Analyser
from simulator import SimBus, SimMfcSpec, SimStationSpec, SimWorld

__all__ = ["Built", "build_devices", "sim_spec"]


@dataclass
class Built:
    """Devices plus what must be closed afterwards, and the world when simulated."""

    devices: Devices
    buses: list[RegisterBus] = field(default_factory=list)
    world: SimWorld | None = None

    async def close(self) -> None:
        """Close every bus. Idempotent."""
        for bus in self.buses:
            await bus.close()


def sim_spec(station: Station) -> SimStationSpec:
    """The simulator's description of ``station`` (plain values, no controller types)."""
    return SimStationSpec(
        furnace_unit=station.furnace.unit,
        decimals=station.furnace.decimals,
        thermocouple=station.furnace.thermocouple,
        mfcs=tuple(SimMfcSpec(unit=m.unit, gas=m.gas, full_scale_sccm=m.full_scale_sccm,
                              o2_fraction=m.o2_fraction) for m in station.mfc),
        o2_unit=station.o2.unit if station.o2 is not None else None,
        tube_volume_l=station.envelope.tube_volume_l,
        ambient_c=station.envelope.ambient_c,
    )


def _names(station: Station) -> dict[int, str]:
    names = {station.furnace.unit: "furnace"}
    names.update({m.unit: f"mfc_{m.gas}" for m in station.mfc})
    if station.o2 is not None:
        names[station.o2.unit] = "o2"
    return names


def build_devices(station: Station, clock: Clock, *, seed: int = 0) -> Built:
    """Drivers for every instrument of ``station`` on its bus.

    Raises ``ConfigurationError`` if the station's bus kind cannot be built here.
    """
    world: SimWorld | None = None
    if station.bus.kind == "sim":
        world = SimWorld(sim_spec(station), seed=seed)
        bus: RegisterBus = SimBus(world, clock.now, _names(station))
    else:
        raise ConfigurationError(
            f"bus kind '{station.bus.kind}' is not available in this version; "
            "use the built-in simulated station", source=station.name, field="bus.kind")
    furnace = Eurotherm3216(bus, station.furnace.unit, decimals=station.furnace.decimals)
    mfcs = tuple(AlicatMFC(bus, m.unit, gas=m.gas, full_scale_sccm=m.full_scale_sccm)
                 for m in station.mfc)
    o2 = O2Analyser(bus, station.o2.unit) if station.o2 is not None else None
    return Built(Devices(furnace, mfcs, o2), [bus], world)
