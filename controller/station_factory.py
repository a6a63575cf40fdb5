"""The composition root: turns a ``Station`` into buses, drivers and (for a simulated
station) the simulator. The only controller module that may import ``simulator``.

Not here: running anything. Connecting and proving each device is what the station says
happens in ``Built.connect`` before a batch folder exists, so a wrong port, unit id or
decimal setting is a one-line error (exit 2) and nothing moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from controller.recipe.station import Station, simulated_tube_volume_l
from controller.recipe.steps import Material
from controller.run.clock import Clock
from controller.run.scan import Devices
from drivers.balance import SicsBalance
from drivers.bus import RegisterBus
from drivers.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    DeviceRejectedError,
    DeviceTimeoutError,
)
from drivers.instrument import ModbusMassFlowController, ModbusTemperatureController
from drivers.instrument.probe import ProbedRegister, probe_instrument
from drivers.maps import WHAT_IS_LOST
from drivers.modbus_bus import ModbusBus
from drivers.o2 import O2Analyser
from drivers.roles import MassFlowController, OxygenAnalyser, TemperatureController
from simulator import SimBus, SimMfcSpec, SimStationSpec, SimWorld
from simulator.balance import SimSicsLine
from simulator.faults import FaultInjector
from simulator.modbus_server import SimModbusServer
from simulator.twin import TwinParams

__all__ = [
    "Built",
    "DeviceProbe",
    "FaultInjector",
    "ServedSimulator",
    "build_devices",
    "inject_faults",
    "serve_simulator",
    "sim_spec",
    "unit_names",
]

logger = logging.getLogger(__name__)


def sim_spec(station: Station, material: Material | None = None) -> SimStationSpec:
    """The simulator's description of ``station`` (plain values, no controller types; each
    device's instrument map, so the simulator serves the station's own maps), with
    ``material`` in the boat (default: 2 g of pitch with 70 wt% H3PO4) and the furnace its
    ``[twin]`` says (none: the built-in furnace)."""
    material = material or Material("pitch", 70.0, 2.0)
    maps = station.maps
    return SimStationSpec(
        furnace_unit=station.furnace.unit,
        decimals=station.furnace.decimals,
        thermocouple=station.furnace.thermocouple,
        furnace_map=maps.furnace.imap,
        mfcs=tuple(SimMfcSpec(unit=m.unit, gas=m.gas, full_scale_sccm=m.full_scale_sccm,
                              o2_fraction=m.o2_fraction, imap=maps.mfcs[m.gas].imap,
                              gas_number=m.gas_number) for m in station.mfc),
        o2_map=maps.o2.imap if maps.o2 is not None else None,
        sample_tc_map=maps.sample_tc.imap if maps.sample_tc is not None else None,
        o2_unit=station.o2.unit if station.o2 is not None else None,
        sample_tc_unit=station.sample_tc.unit if station.sample_tc is not None else None,
        sample_tc_decimals=station.sample_tc.decimals if station.sample_tc else 1,
        sample_tc_thermocouple=station.sample_tc.thermocouple if station.sample_tc else "S",
        sample_mass_g=material.mass_g,
        sample_precursor=material.precursor,
        sample_acid_wt=material.acid_wt,
        has_balance=station.balance is not None,
        tube_volume_l=simulated_tube_volume_l(station),
        ambient_c=station.envelope.ambient_c,
        twin=TwinParams(**station.twin.params()) if station.twin is not None else None,
    )


def unit_names(station: Station) -> dict[int, str]:
    """Device name by unit id, for error messages on both sides of the wire."""
    names = {station.furnace.unit: "furnace"}
    names.update({m.unit: f"mfc_{m.gas}" for m in station.mfc})
    if station.o2 is not None:
        names[station.o2.unit] = "o2"
    if station.sample_tc is not None:
        names[station.sample_tc.unit] = "sample_tc"
    return names


@dataclass(frozen=True, slots=True)
class DeviceProbe:
    """One device as ``furnace probe`` found it: its registers as read and its connect
    check (``failed``: "" if it passed, else the station field and the reason)."""

    name: str
    field: str
    unit: int
    map_ref: str
    model: str
    registers: tuple[ProbedRegister, ...]
    failed: str
    notes: tuple[str, ...] = ()


async def _connect_check(device: TemperatureController | MassFlowController | OxygenAnalyser,
                         where: str, unit: int, source: str) -> ConfigurationError | None:
    """Run ``device``'s connect check; the one-line error naming ``source`` and the field
    to fix, or None if it passed."""
    name = device.name
    try:
        await device.verify()
    except DeviceTimeoutError:
        return ConfigurationError(f"{name} (unit {unit}) does not answer: wrong unit id, "
                                  "wiring, baud rate or power?", source=source,
                                  field=f"{where}.unit")
    except DeviceRejectedError as exc:
        return ConfigurationError(f"{name} (unit {unit}) answered exception "
                                  f"{exc.exception_code:02d} to its identity check: another "
                                  "kind of device at this unit id?", source=source,
                                  field=f"{where}.driver")
    except ConfigurationError as exc:
        return ConfigurationError(str(exc), source=source, field=where)
    except DeviceError as exc:
        return ConfigurationError(str(exc), source=source, field=where)
    return None


@dataclass
class Built:
    """Devices, what must be opened and closed, and the world when simulated in-process."""

    station: Station
    devices: Devices
    buses: list[RegisterBus] = field(default_factory=list)
    world: SimWorld | None = None
    balance: SicsBalance | None = None

    def _checked(self) -> list[tuple[TemperatureController | MassFlowController
                                      | OxygenAnalyser, str, int]]:
        """(device, station field, unit id) of every device with a connect check."""
        st = self.station
        checks: list[tuple[TemperatureController | MassFlowController | OxygenAnalyser,
                           str, int]] = [(self.devices.furnace, "furnace", st.furnace.unit)]
        checks += [(d, f"mfc[{m.gas}]", m.unit)
                   for d, m in zip(self.devices.mfcs, st.mfc, strict=True)]
        if self.devices.o2 is not None and st.o2 is not None:
            checks.append((self.devices.o2, "o2", st.o2.unit))
        if self.devices.sample_tc is not None and st.sample_tc is not None:
            checks.append((self.devices.sample_tc, "sample_tc", st.sample_tc.unit))
        return checks

    async def open_buses(self, source: str) -> None:
        """Open the Modbus lines. Raises ``ConfigurationError`` naming ``source`` (the
        station file) and ``bus``."""
        for bus in self.buses:
            if isinstance(bus, ModbusBus):
                try:
                    await bus.connect()
                except CommunicationError as exc:
                    raise ConfigurationError(str(exc), source=source, field="bus") from None

    async def connect(self, source: str) -> None:
        """Open the lines and check every device. Raises ``ConfigurationError`` naming
        ``source`` (the station file) and the field to fix."""
        await self.open_buses(source)
        for device, where, unit in self._checked():
            failed = await _connect_check(device, where, unit, source)
            if failed is not None:
                raise failed
        if self.balance is not None:
            try:
                await self.balance.open()
            except CommunicationError as exc:
                raise ConfigurationError(str(exc), source=source,
                                         field="balance.port") from None

    async def probe(self, source: str) -> list[DeviceProbe]:
        """``furnace probe``: every mapped register of every device read once, then each
        device's connect check (open the lines first: ``open_buses``). A device that does
        not answer is reported, not raised."""
        maps = self.station.maps
        by_field = {m.field: m for m in maps.all()}
        bus = self.buses[0]
        out: list[DeviceProbe] = []
        for device, where, unit in self._checked():
            dm = by_field[where]
            registers = await probe_instrument(bus, unit, dm.imap)
            failed = await _connect_check(device, where, unit, source)
            notes: list[str] = []
            if isinstance(device, ModbusTemperatureController):
                notes.append(f"decimals: {device.decimals_check}")
                if where == "furnace":
                    notes += [f"switched off ({f}): {WHAT_IS_LOST[f]}" for f in maps.waived]
            out.append(DeviceProbe(device.name, where, unit, dm.ref, dm.imap.model,
                                   registers, "" if failed is None else
                                   f"{failed.field}: {failed.reason}", tuple(notes)))
        return out

    async def close(self) -> None:
        """Close every bus and the balance. Idempotent."""
        for bus in self.buses:
            await bus.close()
        if self.balance is not None:
            await self.balance.close()


def build_devices(station: Station, clock: Clock, *, seed: int = 0,
                  material: Material | None = None, world: SimWorld | None = None,
                  start_c: float | None = None, start_o2_ppm: float | None = None) -> Built:
    """Drivers for every instrument of ``station`` on its bus (not yet connected); for
    the in-process simulator, ``material`` is what its boat holds, and ``world`` an
    existing simulated world to go on with (a dry run resumed in the same process).
    ``start_c``: a new simulated world starts with its furnace in equilibrium at this
    temperature (°C) at the clock's present time (a prediction from a running batch), its
    tube at ``start_o2_ppm`` (default: air)."""
    bus: RegisterBus
    if station.bus.kind == "sim":
        if world is None:
            spec = sim_spec(station, material)
            if start_c is not None:
                spec = replace(spec, initial_c=start_c, initial_o2_ppm=start_o2_ppm)
            world = SimWorld(spec, seed=seed)
            if start_c is not None:
                world.now_s = clock.now()
        bus = SimBus(world, clock.now, unit_names(station))
    else:
        b = station.bus
        transport: Literal["tcp", "rtu"] = "tcp" if b.kind == "tcp" else "rtu"
        bus = ModbusBus(transport=transport, host=b.host, port=b.port, device=b.device,
                        baudrate=b.baudrate, parity=b.parity, stopbits=b.stopbits,
                        timeout_s=b.timeout_s, retries=b.retries, name=station.name,
                        unit_names=unit_names(station))
    maps = station.maps
    furnace = ModbusTemperatureController(bus, station.furnace.unit, maps.furnace.imap,
                                          decimals=station.furnace.decimals)
    mfcs = tuple(ModbusMassFlowController(bus, m.unit, maps.mfcs[m.gas].imap, gas=m.gas,
                                          full_scale_sccm=m.full_scale_sccm,
                                          gas_number=m.gas_number)
                 for m in station.mfc)
    o2 = (O2Analyser(bus, station.o2.unit, imap=maps.o2.imap)
          if station.o2 is not None and maps.o2 is not None else None)
    sample_tc = (ModbusTemperatureController(bus, station.sample_tc.unit,
                                             maps.sample_tc.imap, name="sample_tc",
                                             decimals=station.sample_tc.decimals,
                                             indicator=True)
                 if station.sample_tc is not None and maps.sample_tc is not None else None)
    balance = None
    if station.balance is not None:
        bal = station.balance
        if world is not None and world.balance is not None:
            sim = world
            line = SimSicsLine(world.balance, lambda: sim.advance_to(clock.now()))
            balance = SicsBalance(line, timeout_s=bal.timeout_s)
        else:
            balance = SicsBalance(bal.port, baudrate=bal.baudrate, parity=bal.parity,
                                  stopbits=bal.stopbits, timeout_s=bal.timeout_s)
    return Built(station, Devices(furnace, mfcs, o2, sample_tc, balance), [bus], world,
                 balance)


@dataclass
class ServedSimulator:
    """The simulated station behind real servers (``furnace sim serve``)."""

    world: SimWorld
    servers: list[SimModbusServer]
    endpoints: list[str]

    async def stop(self) -> None:
        """Stop every server. Idempotent."""
        for server in self.servers:
            await server.stop()
        if self.world.balance is not None:
            await self.world.balance.stop()


async def serve_simulator(station: Station, clock: Clock, *, host: str, port: int | None,
                          rtu: str | None = None, rtu_port: int | None = None,
                          balance: str | None = None, seed: int = 0,
                          faults: Sequence[str] = ()) -> ServedSimulator:
    """Serve ``station``'s instruments from one simulated world, advanced to ``clock``.

    Modbus TCP on ``host:port`` (an RS-485 line behind a gateway), Modbus RTU on the serial
    device ``rtu`` and/or RTU framing over TCP on ``rtu_port`` (pyserial's ``socket://``
    reaches it: a virtual serial line with nothing but Python), and the balance's MT-SICS
    on the serial device ``balance`` (or ``tcp:PORT``). Raises ``ConfigurationError`` if a
    port cannot be opened.
    """
    world = SimWorld(sim_spec(station), seed=seed)
    if faults:
        try:
            FaultInjector(world, list(faults))
        except ValueError as exc:
            raise ConfigurationError(str(exc), field="--fault") from None
    names = unit_names(station)
    servers: list[SimModbusServer] = []
    endpoints: list[str] = []
    try:
        if port is not None:
            server = SimModbusServer(world, clock.now, unit_names=names)
            bound = await server.start_tcp(host, port)
            servers.append(server)
            endpoints.append(f"Modbus TCP {host}:{bound}")
        if rtu_port is not None:
            server = SimModbusServer(world, clock.now, unit_names=names)
            bound = await server.start_tcp(host, rtu_port, framer="rtu")
            servers.append(server)
            endpoints.append(f"Modbus RTU over TCP socket://{host}:{bound}")
        if rtu is not None:
            server = SimModbusServer(world, clock.now, unit_names=names)
            await server.start_serial(rtu, baudrate=station.bus.baudrate,
                                      parity=station.bus.parity,
                                      stopbits=station.bus.stopbits)
            servers.append(server)
            endpoints.append(f"Modbus RTU on {rtu} ({station.bus.baudrate} baud)")
        if balance is not None:
            if world.balance is None:
                raise ConfigurationError("this station has no balance to serve",
                                         field="--balance")
            if balance.startswith("tcp:"):
                bound = await world.balance.serve_tcp(host, int(balance.removeprefix("tcp:")))
                endpoints.append(f"balance MT-SICS socket://{host}:{bound}")
            else:
                await world.balance.serve_serial(balance)
                endpoints.append(f"balance MT-SICS on {balance}")
    except OSError as exc:
        for server in servers:
            await server.stop()
        raise ConfigurationError(f"cannot serve: {exc.strerror or exc}",
                                 field="--port/--rtu/--balance") from None
    for endpoint in endpoints:
        logger.info("serving %s", endpoint)
    return ServedSimulator(world, servers, endpoints)


def inject_faults(built: Built, faults: Sequence[str]) -> FaultInjector | None:
    """The ``--fault`` specs of a run, for the in-process simulator of ``built``; None if
    there are none. Raises ``ConfigurationError`` (one line) for a bad spec or a station whose
    simulator runs elsewhere."""
    if not faults:
        return None
    if built.world is None:
        raise ConfigurationError("faults are injected where the simulator runs: give them "
                                 "to 'furnace sim serve --fault'", field="--fault")
    try:
        return FaultInjector(built.world, list(faults))
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="--fault") from None
