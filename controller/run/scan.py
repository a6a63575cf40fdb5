"""The scan cycle: read → snapshot → interlocks → runner → write with read-back → record →
sleep until the next absolute deadline. One task per station; the supervisor's ``finally``
always leaves the outputs defined.

Not here: building devices (``station_factory``), file formats (``audit``, ``trace``) or the
console. This module never sees a register.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.recipe.steps import Dwell
from controller.run.clock import Clock
from controller.run.commands import CommandQueue
from controller.run.dtg import SlidingSlope
from controller.run.handle import RecipeRunner
from controller.run.interlocks import COMMS_LOSS_CYCLES, FLOW_LOST_S, PV_FROZEN_S, evaluate
from controller.run.monitors import ForeignChange, ForeignWrites, HealthMonitor
from controller.run.runner import SAFE_INERT_FLOW_SCCM, CycleOutput
from controller.run.runstate import SCHEMA_VERSION, Phase, to_record
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

__all__ = ["Devices", "Recorder", "ScanLoop", "safe_flows"]

logger = logging.getLogger(__name__)

_SAFE_STATE_TIMEOUT_S = 5.0
# A checkpoint (the whole run state, in the audit chain) at every step boundary and at
# least this often; resume repeats at most this much counted dwell time, never skips it.
CHECKPOINT_INTERVAL_S = 300.0
# Resume aligns the instrument's working setpoint with the furnace when it has fallen more
# than this below it (see ``_align_working_setpoint``).
ALIGN_MARGIN_C = 2.0
# The loop this many periods late is an outage (recorded), not a run of missed cycles.
OVERRUN_PERIODS = 5
ALIGN_MAX_PERIODS = 10  # then the rate limit goes back regardless (and the audit says so)
# The cooling model for supervision when no temperature can be read: Newton cooling with
# this time constant. Deliberately slow (a large, well-insulated furnace; the built-in
# twin's is about 1 h at 1300 °C), so the predicted furnace is never cooler than the real
# one and supervision ends late rather than early.
SUPERVISE_COOLING_TAU_S = 4 * 3600.0
SUPERVISE_MAX_S = 24 * 3600.0  # a furnace that will not cool: the record ends here
DTG_WINDOW_S = 300.0  # DTG slope window: smooths balance noise, lags by half of it
DELTA_T_RATE_WINDOW_S = 120.0  # the exotherm guard's rate of rise of ΔT


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
_SETPOINT_TOLERANCE_SCCM = 0.05
_LOCAL_SETPOINT_TOLERANCE_C = 0.05  # as the driver's "differs" test before an EEPROM write


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


def safe_flows(station: Station, cmds: Commands) -> dict[str, float]:
    """Flows for the safe state: oxidising gases off, inert gases as commanded, and if no
    inert gas was flowing, the first one at the safe flow."""
    flows = {m.gas: 0.0 if m.oxidising else cmds.flows_sccm.get(m.gas, 0.0)
             for m in station.mfc}
    if not any(flows.values()):
        first = next(m for m in station.mfc if not m.oxidising)
        flows[first.gas] = min(SAFE_INERT_FLOW_SCCM, first.full_scale_sccm)
    return flows


class ScanLoop:
    """Runs ``runner`` on ``devices`` every ``station.scan_period_s`` of ``clock`` time."""

    def __init__(self, *, station: Station, runner: RecipeRunner, devices: Devices,
                 clock: Clock, recorder: Recorder,
                 observer: Callable[[Snapshot, RecipeRunner], None] | None = None,
                 t0_s: float | None = None,
                 on_start: Callable[[Snapshot], None] | None = None,
                 commands: CommandQueue | None = None,
                 on_tube_opened: Callable[[], None] | None = None,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
                 mass0_g: float | None = None, align_to_pv: bool = False) -> None:
        self.station = station
        self.runner = runner
        self.devices = devices
        self.clock = clock
        self.recorder = recorder
        self.observer = observer
        # Operator commands (ctl, keys, Ctrl-C) arrive here and are applied at the start
        # of a cycle; a deferred hold waits for a checkpoint (a step boundary, or in band
        # during a dwell).
        self.commands = (commands if commands is not None
                         else CommandQueue(lambda: str(self.runner.phase)))
        self._drained_step = -1
        self._in_band = False
        self._failures: dict[str, int] = {"furnace": 0}
        self._failures.update({m.name: 0 for m in devices.mfcs})
        self._written: dict[str, float] = {}
        self._paced = False  # the clock was told the batch is held
        # Process time = clock time − t0 (0 for a new batch; a resumed batch's clock
        # already carries on from where it stopped).
        self._t0_s = clock.now() if t0_s is None else t0_s
        self.on_start = on_start  # replaces the fresh start after preflight (resume)
        self.on_tube_opened = on_tube_opened  # the simulated operator opens the tube
        self.align_to_pv = align_to_pv  # resume: bring the working setpoint to the PV
        self.checkpoint_interval_s = checkpoint_interval_s
        self._checkpoint_t_s: float | None = None
        self._checkpoint_key: tuple[Phase, int, int] | None = None
        self.cycles = 0
        self._mass0_g = mass0_g  # the first balance reading of the batch: 100 %
        self._monitor = HealthMonitor(station.envelope.max_temperature_c)
        self._foreign = ForeignWrites()
        self._dtg = SlidingSlope(DTG_WINDOW_S)
        self._delta_t_rate = SlidingSlope(DELTA_T_RATE_WINDOW_S)

    # ------------------------------------------------------------------ reading
    async def _read_furnace(self) -> ControllerReading | None:
        try:
            reading = await self.devices.furnace.read()
        except DeviceError as exc:
            self._failed("furnace", exc)
            return None
        self._failures["furnace"] = 0
        return reading

    async def _read_flow(self, mfc: MassFlowController) -> FlowReading | None:
        try:
            reading = await mfc.read()
        except DeviceError as exc:
            self._failed(mfc.name, exc)
            return None
        self._failures[mfc.name] = 0
        return reading

    def _failed(self, device: str, exc: DeviceError) -> None:
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
                self._failed(self.devices.o2.name, exc)
        if self.devices.sample_tc is not None:
            try:
                sample_c = (await self.devices.sample_tc.read()).temperature_c
                self._failures[self.devices.sample_tc.name] = 0
            except DeviceError as exc:
                self._failed(self.devices.sample_tc.name, exc)
        mass_g = None
        if self.devices.balance is not None:
            try:
                mass_g = (await self.devices.balance.read_mass_g()).mass_g
                self._failures[self.devices.balance.name] = 0
            except DeviceError as exc:
                self._failed(self.devices.balance.name, exc)
        t_s = self.clock.now() - self._t0_s
        if not self.runner.is_final:  # (the safe state's writes are not ours to check)
            self._find_foreign(t_s, furnace, flows)
        furnace, health = self._monitor.update(t_s, furnace, flows, self.runner.flows_sccm)
        mass_pct = dtg = delta_rate = None
        if mass_g is not None:
            if self._mass0_g is None and mass_g > 0:
                self._mass0_g = mass_g
            if self._mass0_g:
                mass_pct = 100.0 * mass_g / self._mass0_g
                dtg = _finite(self._dtg.update(t_s, mass_pct))
        if sample_c is not None and furnace is not None:
            delta_rate = _finite(self._delta_t_rate.update(t_s,
                                                           sample_c - furnace.temperature_c))
        return Snapshot(t_s, furnace, MappingProxyType(flows), o2,
                        MappingProxyType(dict(self._failures)), sample_c, delta_rate,
                        mass_g, mass_pct, dtg, health, self.clock.real_s(),
                        self._foreign.latest)

    def _pace(self) -> None:
        """Tell the clock when a hold starts or ends (a dry run's clock runs at real speed
        while a person is awaited)."""
        held = self.runner.phase is Phase.HELD
        if held != self._paced:
            self._paced = held
            self.clock.pace_for_hold(held)

    def _find_foreign(self, t_s: float, furnace: ControllerReading | None,
                      flows: dict[str, FlowReading | None]) -> None:
        """Compare the settings we wrote and read back with what the instruments report:
        the furnace's local (fallback) setpoint and each MFC's setpoint. Free: both come
        in the block reads already made."""
        if furnace is not None:
            self._foreign.observe(t_s, self.devices.furnace.name, "local_setpoint",
                                  "local setpoint (TG.SP)",
                                  ours=self._written.get("local_setpoint"),
                                  found=furnace.target_setpoint_c,
                                  tolerance=_LOCAL_SETPOINT_TOLERANCE_C, unit="°C")
        for mfc in self.devices.mfcs:
            reading = flows.get(mfc.gas)
            ours = self._written.get(f"flow_{mfc.gas}")
            if reading is None or ours is None:
                continue
            self._foreign.observe(t_s, mfc.name, f"flow_{mfc.gas}", "setpoint", ours=ours,
                                  found=reading.setpoint_sccm,
                                  tolerance=max(_SETPOINT_TOLERANCE_SCCM, 1e-3 * ours),
                                  unit="sccm")

    # ------------------------------------------------------------------ writing
    async def _write(self, cmds: Commands, snap: Snapshot) -> None:
        """Setpoint every cycle (the remote-setpoint heartbeat); the rest on change, and
        a setting another program changed (``_foreign_found``)."""
        t_s = snap.t_s
        furnace = self.devices.furnace
        # Stale readings (faults.md C1): no new setpoints. Even if writes still get through
        # (slow or garbled replies), the instrument's remote setpoint then times out and it
        # goes to its own local fallback, which needs no PC.
        if snap.failures.get("furnace", 0) < COMMS_LOSS_CYCLES:
            rewrite = self._foreign_found(snap, furnace.name)
            retry = "local_setpoint" not in self._written  # the last rewrite failed
            if rewrite or (retry and not self.runner.run.needs_reconfigure):
                env = self.station.envelope
                await self._guarded(furnace.name, "local_setpoint", env.ambient_c, t_s,
                                    self._configure_fallback())
            await self._guarded("furnace", "setpoint_c", cmds.setpoint_c, t_s,
                                furnace.write_setpoint_c(cmds.setpoint_c), audit_change=False)
            if self._written.get("rate_limit") != cmds.rate_limit_c_per_min:
                await self._guarded("furnace", "rate_limit", cmds.rate_limit_c_per_min, t_s,
                                    furnace.write_rate_limit_c_per_min(
                                        cmds.rate_limit_c_per_min))
        for mfc in self.devices.mfcs:
            flow = cmds.flows_sccm[mfc.gas]
            key = f"flow_{mfc.gas}"
            rewrite = self._foreign_found(snap, mfc.name)
            if self._written.get(key) != flow or rewrite:
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
            self._written.pop(key, None)
            self.recorder.audit("alarm", t_s, {"alarm": "readback_mismatch", "device": device,
                                               "what": key, "detail": str(exc)})
            return
        except DeviceError as exc:
            # Not a failed poll (the comms watchdog counts reads); retried next cycle.
            self._written.pop(key, None)
            logger.warning("write failed: %s", exc, extra={"device": device, "what": key})
            return
        if audit_change:
            self.recorder.audit("setpoint_written", t_s, {"device": device, "what": key,
                                                          "old": self._written.get(key),
                                                          "new": value})
        self._written[key] = value
        self._foreign.rewritten(key)

    # ---------------------------------------------------------------- recording
    def _flush_events(self, t_s: float) -> None:
        for ev in self.runner.take_events():
            self.recorder.audit(ev.event, t_s, ev.fields)

    def checkpoint(self, t_s: float) -> None:
        """Record the whole run state in the audit chain (fsync'd): resume starts here.
        The trace is made durable first, so a crash loses at most the rows since."""
        trace_fields = self.recorder.sync_trace()
        self.recorder.audit("checkpoint", t_s, {
            "schema_version": SCHEMA_VERSION, "state": to_record(self.runner.run),
            "mass0_g": self._mass0_g, **trace_fields})
        self._checkpoint_t_s = t_s
        self._checkpoint_key = self._position()

    def _position(self) -> tuple[Phase, int, int]:
        run = self.runner.run
        return run.phase, run.step_index, len(run.inserted)

    def _after_step(self, out: CycleOutput, t_s: float) -> None:
        """Record what the step decided (before it is acted on) and act on its requests
        that are not device writes."""
        self._flush_events(t_s)
        # a step or phase changed (in this step or by a command), or the cadence is due
        due = (self._position() != self._checkpoint_key or self._checkpoint_t_s is None
               or t_s - self._checkpoint_t_s >= self.checkpoint_interval_s)
        if due and not self.runner.is_final:
            self.checkpoint(t_s)
        if out.tube_opened and self.on_tube_opened is not None:
            self.on_tube_opened()

    def _trace(self, snap: Snapshot, cmds: Commands) -> None:
        r = self.runner
        step = r.current_step
        reading = snap.furnace
        flags = [f"stale:{name}" for name, n in snap.failures.items() if n]
        if snap.health.pv_spike:
            flags.append("pv_spike")
        if r.run.ramp_paused:
            flags.append("ramp_paused")
        if r.run.inserted and step is not None:
            flags.append("ramp_back")
        row: list[object] = [
            snap.t_s, self.clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ"),
            r.stage_name, r.step_index if step is not None else "", str(r.phase),
            cmds.setpoint_c,
            reading.working_setpoint_c if reading else None,
            reading.temperature_c if reading else None,
            reading.output_pct if reading else None,
            ";".join(flags),
        ]
        if self.station.sample_tc is not None:
            row += [snap.sample_c, snap.delta_t_c]
        if self.station.balance is not None:
            row += [snap.mass_g, snap.mass_pct, snap.dtg_pct_per_min]
        if self.station.o2 is not None:
            row.append(snap.o2_ppm)
        for mfc in self.devices.mfcs:
            flow = snap.flows.get(mfc.gas)
            row += [flow.flow_sccm if flow else None, cmds.flows_sccm[mfc.gas]]
        self.recorder.trace(row)

    # --------------------------------------------------------------------- cycle
    async def _configure_fallback(self) -> None:
        """Give the furnace our fallback configuration (local setpoint, rate limit, high
        alarm, auto, remote selected), each read back by the driver."""
        env = self.station.envelope
        rate = fallback_rate_c_per_min(self.station)
        await self.devices.furnace.configure_fallback(
            local_setpoint_c=env.ambient_c, rate_limit_c_per_min=rate,
            alarm_high_c=env.max_temperature_c)
        self._written["rate_limit"] = rate

    async def _preflight(self, t_s: float) -> None:
        env = self.station.envelope
        rate = fallback_rate_c_per_min(self.station)
        await self._configure_fallback()
        self._written["local_setpoint"] = env.ambient_c
        self.recorder.audit("preflight", t_s, {
            "local_setpoint_c": env.ambient_c,
            "rate_limit_c_per_min": rate,
            "alarm_high_c": env.max_temperature_c, "remote_setpoint": "selected"})

    async def _reconfigure(self) -> None:
        """After a front-panel change or an instrument reset, resuming re-applies our
        configuration (auto mode, local fallback setpoint, rate limit, remote selected)."""
        t_s = self.clock.now() - self._t0_s
        try:
            await self._preflight(t_s)
        except DeviceError as exc:
            self._failed("furnace", exc)
            return
        self.runner.reconfigured()
        # Resuming re-applies our setpoints too, and the foreign-writer count starts again.
        self._foreign.reset()
        for mfc in self.devices.mfcs:
            self._written.pop(f"flow_{mfc.gas}", None)
        self.recorder.audit("instrument_reconfigured", t_s, {
            "reason": "resumed after the instrument was changed outside the controller"})

    def _drain_commands(self) -> list[str]:
        """Apply due operator commands; a refused one is audited, never raised. Returns
        the triggers drained."""
        t_s = self.clock.now() - self._t0_s
        at_checkpoint = self.runner.step_index != self._drained_step or self._in_band
        self._drained_step = self.runner.step_index
        drained = self.commands.apply_due(self.runner, at_checkpoint=at_checkpoint)
        for cmd, result in drained:
            self.recorder.audit("operator_command", t_s, {
                **cmd.audit_fields(), "status": str(result.status), "state": result.state,
                "message": result.message})
        self._flush_events(t_s)
        return [cmd.trigger for cmd, _ in drained]

    @staticmethod
    def _trusted(snap: Snapshot) -> bool:
        """The control thermocouple's reading can be believed (no break, not frozen)."""
        reading = snap.furnace
        return (reading is not None and not reading.is_sensor_break
                and not reading.is_over_range and snap.health.pv_unchanged_s < PV_FROZEN_S)

    def _cool_enough(self, snap: Snapshot, last: tuple[float, float] | None
                     ) -> tuple[float, str] | None:
        """The furnace's temperature for ending supervision, and where it comes from: the
        control thermocouple if it can be trusted, else the sample thermocouple, else the
        cooling model from the last trusted reading ``last`` (t_s, °C)."""
        if self._trusted(snap):
            return snap.furnace_c, "control thermocouple"
        if snap.sample_c is not None:
            return snap.sample_c, "sample thermocouple"
        if last is None:
            return None
        ambient_c = self.station.envelope.ambient_c
        t0_s, t0_c = last
        predicted_c = ambient_c + (t0_c - ambient_c) * math.exp(
            -(snap.t_s - t0_s) / SUPERVISE_COOLING_TAU_S)
        return predicted_c, "cooling model (no temperature can be read)"

    async def _supervise(self, next_t: float) -> None:
        """After a halt, stay until the furnace is below the open-tube limit: keep the
        trace, keep inert gas flowing (switch to another inert gas if its flow is lost),
        then end with the outcome the batch had. The heater stays as the halt left it."""
        env = self.station.envelope
        last: tuple[float, float] | None = None
        switched: set[str] = set()
        t0_s = self.clock.now() - self._t0_s
        self.recorder.audit("supervision_started", t0_s, {
            "until_c": env.open_tube_max_c,
            "why": "halted: the furnace is watched, the record kept and inert gas kept on "
                   "until it can be opened"})
        while True:
            if "halt" in self._drain_commands():  # the process is going away (a signal)
                self.recorder.audit("supervision_ended", self.clock.now() - self._t0_s, {
                    "reason": "halted: the controller is going away; the furnace is left "
                              "as the halt left it"})
                return
            snap = await self.read()
            if self._trusted(snap):
                last = (snap.t_s, snap.furnace_c)
            await self._keep_inert_gas(snap, switched)
            self._trace(snap, self.runner.commands())
            self.cycles += 1
            if self.observer is not None:
                self.observer(snap, self.runner)
            known = self._cool_enough(snap, last)
            if known is not None and known[0] <= env.open_tube_max_c:
                self.recorder.audit("supervision_ended", snap.t_s, {
                    "temperature_c": known[0], "source": known[1],
                    "limit_c": env.open_tube_max_c})
                return
            if snap.t_s - t0_s > SUPERVISE_MAX_S:  # it does not cool (a heater stuck on)
                self.recorder.audit("supervision_ended", snap.t_s, {
                    "temperature_c": known[0] if known else None,
                    "source": known[1] if known else "none", "limit_c": env.open_tube_max_c,
                    "reason": f"still not cool after {SUPERVISE_MAX_S / 3600:.0f} h: the "
                              "hardware over-temperature cut-out and a person must act"})
                return
            next_t += self.station.scan_period_s
            await self.clock.sleep_until(next_t)
            next_t = max(next_t, self.clock.now() - self.station.scan_period_s)

    async def _keep_inert_gas(self, snap: Snapshot, switched: set[str]) -> None:
        """The gas-supply interlock while supervising: an inert flow short for
        ``FLOW_LOST_S`` (an empty bottle) switches to another inert gas, once."""
        for gas, short_s in snap.health.flow_short_s.items():
            if short_s < FLOW_LOST_S or gas in switched or self._oxidising(gas):
                continue
            switched.add(gas)
            other = next((m for m in self.devices.mfcs if m.gas not in switched
                          and not self._oxidising(m.gas)), None)
            if other is None:
                continue
            config = self.station.gas(other.gas)
            flow = min(SAFE_INERT_FLOW_SCCM, config.full_scale_sccm) if config else 0.0
            done: dict[str, str] = {}
            await self._set_safe_flow(other, flow, done)
            self.recorder.audit("inert_gas_switched", snap.t_s, {
                "lost": gas, "to": other.gas, "result": done.get(other.gas, ""),
                "short_s": short_s})

    def _overrun(self, deadline: float, last_t_s: float) -> float:
        """After the wait for ``deadline``: if the loop is more than ``OVERRUN_PERIODS``
        behind (the PC froze, was suspended or starved), record the gap as an outage and
        go on from the present: no burst of missed cycles, and the runner credits none of
        the missed time to a ramp or a dwell. Returns the next deadline to count from."""
        now = self.clock.now()
        period_s = self.station.scan_period_s
        if now - deadline <= OVERRUN_PERIODS * period_s:
            return deadline
        t_s = now - self._t0_s
        self.recorder.audit("scan_overrun", t_s, {
            "from_t_s": last_t_s, "to_t_s": t_s,
            "missed_cycles": int((now - deadline) // period_s),
            "action": "went on from the present; the gap counts toward no ramp or dwell"})
        self.runner.outage()
        return now

    async def _align_working_setpoint(self, t_s: float) -> None:
        """After an outage the instrument's working setpoint has fallen toward its local
        fallback at its own rate limit, often faster than the furnace cools by itself: it
        is then below the furnace, the output is 0 %, and at the rate limit it would take
        many minutes to climb back. Bring it to the measured furnace temperature first:
        lift the rate limit, write the PV as the remote setpoint, give the instrument one
        scan period to take it, and put the rate limit back (read back every time).

        Done only while the output is 0 % with the working setpoint below the PV, i.e.
        while the furnace cools by itself more slowly than the instrument's fallback ramp:
        if the PC died in that window, the furnace would go on cooling at its natural
        rate, which is slower still at the lower temperatures that follow.
        """
        furnace = self.devices.furnace
        reading = await furnace.read()
        pv_c, wsp_c = reading.temperature_c, reading.working_setpoint_c
        if not wsp_c < pv_c - ALIGN_MARGIN_C or reading.output_pct > 0.0:
            return
        rate = fallback_rate_c_per_min(self.station)
        after = reading
        try:
            await furnace.write_rate_limit_c_per_min(0.0)
            await furnace.write_setpoint_c(pv_c)
            # The instrument takes the new setpoint on its own cycle: wait for it, a scan
            # period at a time (each write also refreshes its remote-setpoint timeout).
            for _ in range(ALIGN_MAX_PERIODS):
                await self.clock.sleep(self.station.scan_period_s)
                after = await furnace.read()
                if after.working_setpoint_c >= pv_c - ALIGN_MARGIN_C:
                    break
                await furnace.write_setpoint_c(pv_c)
        finally:
            await asyncio.shield(furnace.write_rate_limit_c_per_min(rate))
        self._written["rate_limit"] = rate
        self.recorder.audit("working_setpoint_aligned", t_s, {
            "furnace_c": pv_c, "working_setpoint_before_c": wsp_c,
            "working_setpoint_after_c": after.working_setpoint_c,
            "rate_limit_c_per_min": rate,
            "reason": "the instrument's fallback left its working setpoint below the "
                      "furnace; aligned before the first new setpoint"})

    async def run(self) -> Phase:
        """Run the batch to its end. Returns the final state.

        Cancellation (Ctrl-C, abort) ends the loop; the outputs are made safe either way.
        """
        try:
            snap = await self.read()
            self.runner.begin(snap.t_s, snap.furnace_c if snap.furnace else
                              self.station.envelope.ambient_c)
            self._flush_events(snap.t_s)
            if snap.furnace is None:
                self.runner.command("fault", reason="furnace controller not answering")
            else:
                await self._preflight(snap.t_s)
                if self.align_to_pv:
                    await self._align_working_setpoint(snap.t_s)
                if self.on_start is None:
                    self.runner.preflight_done(snap.t_s)
                else:
                    self.on_start(snap)
                self._flush_events(snap.t_s)
                if not self.runner.is_final:
                    self.checkpoint(snap.t_s)
            next_t = self.clock.now()
            while not self.runner.is_final:
                self._drain_commands()
                if self.runner.is_final:  # a command ended the batch (a halt on a signal)
                    break
                # After a front-panel change we hold and do not fight the operator; once
                # running again, or aborting with nobody there, our configuration returns
                # so that the controlled cool-down really controls the furnace.
                if self.runner.run.needs_reconfigure and self.runner.phase in (
                        Phase.RUNNING, Phase.ABORTING, Phase.STOPPING):
                    await self._reconfigure()
                snap = await self.read()
                verdicts = evaluate(snap, self.runner.context, self.station)
                out = self.runner.step(snap, verdicts)
                cmds = out.commands
                step = self.runner.current_step
                self._in_band = isinstance(step, Dwell) and abs(
                    snap.furnace_c - step.at_c) <= step.band_c
                self._after_step(out, snap.t_s)  # recorded before it is acted on
                if not self.runner.is_final:
                    await self._write(cmds, snap)
                self._trace(snap, cmds)
                self.cycles += 1
                if self.observer is not None:
                    self.observer(snap, self.runner)
                self._pace()
                next_t += self.station.scan_period_s
                await self.clock.sleep_until(next_t)
                next_t = self._overrun(next_t, snap.t_s)
            if self.runner.run.supervise:
                await asyncio.shield(self._safe_state())  # at once: then watch it cool
                await self._supervise(next_t)
        finally:
            await asyncio.shield(self._safe_state())
        return self.runner.phase

    def _oxidising(self, gas: str) -> bool:
        config = self.station.gas(gas)
        return config is None or config.oxidising

    @staticmethod
    async def _set_safe_flow(mfc: MassFlowController, flow_sccm: float,
                             done: dict[str, str]) -> bool:
        """Set one MFC for the safe state; say what happened in ``done``. Never raises."""
        try:
            async with asyncio.timeout(_SAFE_STATE_TIMEOUT_S):
                await mfc.set_flow_sccm(flow_sccm)
        except (DeviceError, TimeoutError) as exc:
            done[mfc.gas] = f"failed: {exc}"
            return False
        done[mfc.gas] = f"{flow_sccm:g} sccm"
        return True

    async def _safe_state(self) -> None:
        """Hand the furnace to its own fallback and keep inert gas on. Never raises."""
        t_s = self.clock.now() - self._t0_s
        done: dict[str, str] = {}
        flows = safe_flows(self.station, self.runner.commands())
        inert_on = False
        for mfc in self.devices.mfcs:
            flow = flows[mfc.gas]
            if await self._set_safe_flow(mfc, flow, done):
                inert_on = inert_on or (flow > 0 and not self._oxidising(mfc.gas))
        if not inert_on:
            # The inert gas could not be commanded (its MFC does not answer): turn on
            # another inert gas rather than leave a hot tube without one.
            for mfc in self.devices.mfcs:
                if self._oxidising(mfc.gas) or flows[mfc.gas] > 0:
                    continue
                config = self.station.gas(mfc.gas)
                flow = min(SAFE_INERT_FLOW_SCCM, config.full_scale_sccm) if config else 0.0
                if flow > 0 and await self._set_safe_flow(mfc, flow, done):
                    done[mfc.gas] += " (the other inert gas did not answer)"
                    break
        furnace = self.devices.furnace
        try:
            async with asyncio.timeout(_SAFE_STATE_TIMEOUT_S):
                if self.runner.run.heater_off:
                    await furnace.force_output_off()
                    done["furnace"] = "manual, output 0 % (read back)"
                else:
                    await furnace.release_to_local()
                    done["furnace"] = "local setpoint, instrument rate limit (read back)"
        except (DeviceError, TimeoutError) as exc:
            done["furnace"] = f"failed: {exc}; instrument falls back on remote timeout"
        try:
            self.recorder.audit("safe_state", t_s, {"outputs": done,
                                                    "state": str(self.runner.phase)})
        except Exception:  # the supervisor: records must not stop the outputs going safe
            logger.exception("could not record the safe state")


