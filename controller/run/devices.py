"""The scan cycle's two ends: ``DeviceIO`` polls every instrument into one immutable
``Snapshot`` (failure counts, health, the DTG and ΔT slopes, settings another program
changed) and writes the runner's ``Commands`` with read-back, remembering what it wrote;
the ``Recorder`` takes the records. Also ``Devices``, the station's instruments by role.

Not here: when to read or write, or what to decide (``scan``); the instrument's set-up and
safe state around a start, a resume or a halt (``safety``). It never sees a register.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.run.clock import Clock
from controller.run.dtg import SlidingSlope
from controller.run.handle import RecipeRunner
from controller.run.interlocks import COMMS_LOSS_CYCLES
from controller.run.monitors import ForeignChange, ForeignWrites, HealthMonitor
from controller.run.snapshot import Commands, Snapshot
from drivers.errors import DeviceError, ReadbackMismatchError
from drivers.roles import (
    Balance,
    ControllerReading,
    FlowReading,
    MassFlowController,
    OxygenAnalyser,
    TemperatureController,
)

__all__ = ["DeviceIO", "Devices", "Recorder"]

logger = logging.getLogger(__name__)

DTG_WINDOW_S = 300.0  # DTG slope window: smooths balance noise, lags by half of it
DELTA_T_RATE_WINDOW_S = 120.0  # the exotherm guard's rate of rise of ΔT
_SETPOINT_TOLERANCE_SCCM = 0.05
_LOCAL_SETPOINT_TOLERANCE_C = 0.05  # as the driver's "differs" test before an EEPROM write


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class Devices:
    """The instruments of one station, by role."""

    furnace: TemperatureController
    mfcs: tuple[MassFlowController, ...]
    o2: OxygenAnalyser | None = None
    sample_tc: TemperatureController | None = None  # read only: an indicator
    balance: Balance | None = None


class Recorder(Protocol):
    """Where the scan cycle puts its records (``controller.session.BatchRecorder``)."""

    def audit(self, event: str, t_s: float, fields: dict[str, Any]) -> None:
        """Append one audit record; durable (fsync'd) when this returns."""
        ...

    def trace(self, row: Sequence[object]) -> None:
        """Append one trace row (columns as ``records.columns.trace_columns``)."""
        ...

    def sync_trace(self) -> dict[str, object]:
        """Make the trace rows so far durable (called before a checkpoint); return the
        trace's digest fields for the checkpoint record ({} if the trace stopped)."""
        ...


class DeviceIO:
    """Reads and writes ``devices`` for the scan cycle. It reads the runner's state (what it
    wants, whether it holds for a foreign change), never changes it. A failed read counts
    toward the comms watchdog and a failed write is retried next cycle; neither raises."""

    def __init__(self, *, station: Station, devices: Devices, clock: Clock,
                 recorder: Recorder, runner: RecipeRunner, t0_s: float,
                 mass0_g: float | None = None) -> None:
        self.station = station
        self.devices = devices
        self.clock = clock
        self.recorder = recorder
        self.runner = runner
        self._t0_s = t0_s
        self._failures: dict[str, int] = {"furnace": 0}
        self._failures.update({m.name: 0 for m in devices.mfcs})
        self._failures_seen: MappingProxyType[str, int] = MappingProxyType({})
        # What we wrote and read back, by setting: rewritten on change only, and compared
        # with what the instruments report to find another program's writes.
        self.written: dict[str, float] = {}
        self.mass0_g = mass0_g  # the first balance reading of the batch: 100 %
        self._monitor = HealthMonitor(station.envelope.max_temperature_c)
        self.foreign = ForeignWrites()
        self._dtg = SlidingSlope(DTG_WINDOW_S)
        self._delta_t_rate = SlidingSlope(DELTA_T_RATE_WINDOW_S)

    # ------------------------------------------------------------------ reading
    async def _read_furnace(self) -> ControllerReading | None:
        try:
            reading = await self.devices.furnace.read()
        except DeviceError as exc:
            self.failed("furnace", exc)
            return None
        self._failures["furnace"] = 0
        return reading

    async def _read_flow(self, mfc: MassFlowController) -> FlowReading | None:
        try:
            reading = await mfc.read()
        except DeviceError as exc:
            self.failed(mfc.name, exc)
            return None
        self._failures[mfc.name] = 0
        return reading

    def failed(self, device: str, exc: DeviceError) -> None:
        """Count a failed exchange with ``device`` (the comms watchdog's input)."""
        self._failures[device] = self._failures.get(device, 0) + 1
        if self._failures[device] == 1:
            logger.warning("read failed: %s", exc, extra={"device": device})

    async def read(self) -> Snapshot:
        """Poll every device once into one immutable snapshot."""
        furnace = await self._read_furnace()
        flows = {m.gas: await self._read_flow(m) for m in self.devices.mfcs}
        o2 = sample_c = None
        if self.devices.o2 is not None:
            try:
                o2 = await self.devices.o2.read_o2_ppm()
                self._failures[self.devices.o2.name] = 0
            except DeviceError as exc:
                self.failed(self.devices.o2.name, exc)
        if self.devices.sample_tc is not None:
            try:
                sample_c = (await self.devices.sample_tc.read()).temperature_c
                self._failures[self.devices.sample_tc.name] = 0
            except DeviceError as exc:
                self.failed(self.devices.sample_tc.name, exc)
        mass_g = None
        if self.devices.balance is not None:
            try:
                mass_g = (await self.devices.balance.read_mass_g()).mass_g
                self._failures[self.devices.balance.name] = 0
            except DeviceError as exc:
                self.failed(self.devices.balance.name, exc)
        t_s = self.clock.now() - self._t0_s
        if not self.runner.is_final:  # (the safe state's writes are not ours to check)
            self._find_foreign(t_s, furnace, flows)
        furnace, health = self._monitor.update(t_s, furnace, flows, self.runner.flows_sccm)
        mass_pct = dtg = delta_rate = None
        if mass_g is not None:
            if self.mass0_g is None and mass_g > 0:
                self.mass0_g = mass_g
            if self.mass0_g:
                mass_pct = 100.0 * mass_g / self.mass0_g
                dtg = _finite(self._dtg.update(t_s, mass_pct))
        if sample_c is not None and furnace is not None:
            delta_rate = _finite(self._delta_t_rate.update(t_s,
                                                           sample_c - furnace.temperature_c))
        if self._failures != self._failures_seen:  # (a new frozen copy only on a change)
            self._failures_seen = MappingProxyType(dict(self._failures))
        return Snapshot(t_s, furnace, MappingProxyType(flows), o2,
                        self._failures_seen, sample_c, delta_rate,
                        mass_g, mass_pct, dtg, health, self.clock.real_s(),
                        self.foreign.latest)

    def _find_foreign(self, t_s: float, furnace: ControllerReading | None,
                      flows: dict[str, FlowReading | None]) -> None:
        """Compare the settings we wrote and read back with what the instruments report:
        the furnace's local (fallback) setpoint and each MFC's setpoint. Free: both come
        in the block reads already made."""
        if furnace is not None:
            self.foreign.observe(t_s, self.devices.furnace.name, "local_setpoint",
                                 "local setpoint (TG.SP)",
                                 ours=self.written.get("local_setpoint"),
                                 found=furnace.target_setpoint_c,
                                 tolerance=_LOCAL_SETPOINT_TOLERANCE_C, unit="°C")
        for mfc in self.devices.mfcs:
            reading = flows.get(mfc.gas)
            ours = self.written.get(f"flow_{mfc.gas}")
            if reading is None or ours is None:
                continue
            self.foreign.observe(t_s, mfc.name, f"flow_{mfc.gas}", "setpoint", ours=ours,
                                 found=reading.setpoint_sccm,
                                 tolerance=max(_SETPOINT_TOLERANCE_SCCM, 1e-3 * ours),
                                 unit="sccm")

    # ------------------------------------------------------------------ writing
    async def write(self, cmds: Commands, snap: Snapshot) -> None:
        """Setpoint every cycle (the remote-setpoint heartbeat); the rest on change, and
        a setting another program changed (``_foreign_found``)."""
        t_s = snap.t_s
        furnace = self.devices.furnace
        # Stale readings (faults.md C1): no new setpoints. Even if writes still get through
        # (slow or garbled replies), the instrument's remote setpoint then times out and it
        # goes to its own local fallback, which needs no PC.
        if snap.failures.get("furnace", 0) < COMMS_LOSS_CYCLES:
            rewrite = self._foreign_found(snap, furnace.name)
            retry = "local_setpoint" not in self.written  # the last rewrite failed
            if rewrite or (retry and not self.runner.run.needs_reconfigure):
                env = self.station.envelope
                await self._guarded(furnace.name, "local_setpoint", env.ambient_c, t_s,
                                    self.configure_fallback())
            await self._guarded("furnace", "setpoint_c", cmds.setpoint_c, t_s,
                                furnace.write_setpoint_c(cmds.setpoint_c), audit_change=False)
            if self.written.get("rate_limit") != cmds.rate_limit_c_per_min:
                await self._guarded("furnace", "rate_limit", cmds.rate_limit_c_per_min, t_s,
                                    furnace.write_rate_limit_c_per_min(
                                        cmds.rate_limit_c_per_min))
        for mfc in self.devices.mfcs:
            flow = cmds.flows_sccm[mfc.gas]
            key = f"flow_{mfc.gas}"
            rewrite = self._foreign_found(snap, mfc.name)
            if self.written.get(key) != flow or rewrite:
                await self._guarded(mfc.name, key, flow, t_s, mfc.set_flow_sccm(flow))

    def _foreign_found(self, snap: Snapshot, device: str) -> bool:
        """Whether to rewrite a setting of ``device`` that another program changed (found
        in this cycle's read): the first change of a device is rewritten with an alarm.
        After a second the ``foreign_writer`` interlock has held the run, and a hold for an
        instrument changed outside the controller leaves it as found until a person
        resumes (the resume re-applies our configuration): two masters fighting over one
        setpoint would hide which one is in charge. Outside such a hold (a cool-down)
        ours is rewritten, silently after the first alarm."""
        change: ForeignChange | None = snap.foreign_changes.get(device)
        if change is None or change.t_s != snap.t_s:
            return False
        rewrite = not self.runner.run.needs_reconfigure
        if change.count == 1:
            self.recorder.audit("alarm", snap.t_s, {
                "alarm": "setpoint_changed_externally", "device": device,
                "what": change.setting, "measured": change.found, "limit": change.ours,
                "action": "rewritten" if rewrite else "left as found: held"})
        return rewrite

    async def _guarded(self, device: str, key: str, value: float, t_s: float, write: Any,
                       *, audit_change: bool = True) -> None:
        try:
            await write
        except ReadbackMismatchError as exc:
            self.written.pop(key, None)
            self.recorder.audit("alarm", t_s, {"alarm": "readback_mismatch", "device": device,
                                               "what": key, "detail": str(exc)})
            return
        except DeviceError as exc:
            # Not a failed poll (the comms watchdog counts reads); retried next cycle.
            self.written.pop(key, None)
            logger.warning("write failed: %s", exc, extra={"device": device, "what": key})
            return
        if audit_change:
            self.recorder.audit("setpoint_written", t_s, {"device": device, "what": key,
                                                          "old": self.written.get(key),
                                                          "new": value})
        self.written[key] = value
        self.foreign.rewritten(key)

    async def configure_fallback(self) -> None:
        """Give the furnace our fallback configuration (local setpoint, rate limit, high
        alarm, auto, remote selected), each read back by the driver. Raises
        ``DeviceError`` as the driver does."""
        env = self.station.envelope
        rate = fallback_rate_c_per_min(self.station)
        await self.devices.furnace.configure_fallback(
            local_setpoint_c=env.ambient_c, rate_limit_c_per_min=rate,
            alarm_high_c=env.max_temperature_c)
        self.written["rate_limit"] = rate
