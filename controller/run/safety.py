"""What happens around the scan cycle, at a start, a resume or a halt: preflight (the
instrument's own fallback, read back), re-applying it after a front-panel change, bringing
the working setpoint up to the furnace on resume, the safe state, and the supervised
cool-down after a halt (with its cooling model and inert-gas switching).

Not here: the scans themselves and their timing, which the scan loop runs for these too
(``scan``); reading and writing each cycle (``devices``); the interlocks (``interlocks``).
"""

from __future__ import annotations

import asyncio
import logging
import math

from controller.recipe.station import Station, fallback_rate_c_per_min
from controller.run.clock import Clock
from controller.run.devices import DeviceIO, Devices, Recorder
from controller.run.handle import RecipeRunner
from controller.run.interlocks import FLOW_LOST_S, PV_FROZEN_S
from controller.run.runner import SAFE_INERT_FLOW_SCCM
from controller.run.snapshot import Commands, Snapshot
from drivers.errors import DeviceError
from drivers.roles import MassFlowController

__all__ = ["Safety", "Supervision", "safe_flows"]

logger = logging.getLogger(__name__)

_SAFE_STATE_TIMEOUT_S = 5.0
# Resume aligns the instrument's working setpoint with the furnace when it has fallen more
# than this below it (see ``Safety.align_working_setpoint``).
ALIGN_MARGIN_C = 2.0
ALIGN_MAX_PERIODS = 10  # then the rate limit goes back regardless (and the audit says so)
# The cooling model for supervision when no temperature can be read: Newton cooling with
# this time constant. Deliberately slow (a large, well-insulated furnace; the built-in
# twin's is about 1 h at 1300 °C), so the predicted furnace is never cooler than the real
# one and supervision ends late rather than early.
SUPERVISE_COOLING_TAU_S = 4 * 3600.0
SUPERVISE_MAX_S = 24 * 3600.0  # a furnace that will not cool: the record ends here


def safe_flows(station: Station, cmds: Commands) -> dict[str, float]:
    """Flows for the safe state: oxidising gases off, inert gases as commanded, and if no
    inert gas was flowing, the first one at the safe flow."""
    flows = {m.gas: 0.0 if m.oxidising else cmds.flows_sccm.get(m.gas, 0.0)
             for m in station.mfc}
    if not any(flows.values()):
        first = next(m for m in station.mfc if not m.oxidising)
        flows[first.gas] = min(SAFE_INERT_FLOW_SCCM, first.full_scale_sccm)
    return flows


def _oxidising(station: Station, gas: str) -> bool:
    config = station.gas(gas)
    return config is None or config.oxidising


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


class Safety:
    """The instrument's set-up and safe state for one batch, written through ``io`` (which
    remembers what was written) and recorded in ``recorder``."""

    def __init__(self, *, station: Station, devices: Devices, clock: Clock,
                 recorder: Recorder, runner: RecipeRunner, io: DeviceIO,
                 t0_s: float) -> None:
        self.station = station
        self.devices = devices
        self.clock = clock
        self.recorder = recorder
        self.runner = runner
        self.io = io
        self._t0_s = t0_s

    async def preflight(self, t_s: float) -> None:
        """Configure the instrument's fallback (``DeviceIO.configure_fallback``) and record
        it. Raises ``DeviceError`` if the instrument refuses or does not read back."""
        env = self.station.envelope
        rate = fallback_rate_c_per_min(self.station)
        await self.io.configure_fallback()
        self.io.written["local_setpoint"] = env.ambient_c
        self.recorder.audit("preflight", t_s, {
            "local_setpoint_c": env.ambient_c,
            "rate_limit_c_per_min": rate,
            "alarm_high_c": env.max_temperature_c, "remote_setpoint": "selected"})

    async def reconfigure(self) -> None:
        """After a front-panel change or an instrument reset, resuming re-applies our
        configuration (auto mode, local fallback setpoint, rate limit, remote selected)."""
        t_s = self.clock.now() - self._t0_s
        try:
            await self.preflight(t_s)
        except DeviceError as exc:
            self.io.failed("furnace", exc)
            return
        self.runner.reconfigured()
        # Resuming re-applies our setpoints too, and the foreign-writer count starts again.
        self.io.foreign.reset()
        for mfc in self.devices.mfcs:
            self.io.written.pop(f"flow_{mfc.gas}", None)
        self.recorder.audit("instrument_reconfigured", t_s, {
            "reason": "resumed after the instrument was changed outside the controller"})

    async def align_working_setpoint(self, t_s: float) -> None:
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
        self.io.written["rate_limit"] = rate
        self.recorder.audit("working_setpoint_aligned", t_s, {
            "furnace_c": pv_c, "working_setpoint_before_c": wsp_c,
            "working_setpoint_after_c": after.working_setpoint_c,
            "rate_limit_c_per_min": rate,
            "reason": "the instrument's fallback left its working setpoint below the "
                      "furnace; aligned before the first new setpoint"})

    async def safe_state(self) -> None:
        """Hand the furnace to its own fallback and keep inert gas on. Never raises."""
        t_s = self.clock.now() - self._t0_s
        done: dict[str, str] = {}
        flows = safe_flows(self.station, self.runner.commands())
        inert_on = False
        for mfc in self.devices.mfcs:
            flow = flows[mfc.gas]
            if await _set_safe_flow(mfc, flow, done):
                inert_on = inert_on or (flow > 0 and not _oxidising(self.station, mfc.gas))
        if not inert_on:
            # The inert gas could not be commanded (its MFC does not answer): turn on
            # another inert gas rather than leave a hot tube without one.
            for mfc in self.devices.mfcs:
                if _oxidising(self.station, mfc.gas) or flows[mfc.gas] > 0:
                    continue
                config = self.station.gas(mfc.gas)
                flow = min(SAFE_INERT_FLOW_SCCM, config.full_scale_sccm) if config else 0.0
                if flow > 0 and await _set_safe_flow(mfc, flow, done):
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

    def supervise(self) -> Supervision:
        """Start the supervised cool-down after a halt (recorded)."""
        return Supervision(station=self.station, devices=self.devices,
                           recorder=self.recorder, t_s=self.clock.now() - self._t0_s)


class Supervision:
    """After a halt, stay until the furnace is below the open-tube limit: keep inert gas
    flowing (switch to another inert gas if its flow is lost), then end with the outcome
    the batch had. The heater stays as the halt left it. The scan loop runs the scans and
    keeps the trace; this decides, one scan at a time."""

    def __init__(self, *, station: Station, devices: Devices, recorder: Recorder,
                 t_s: float) -> None:
        self.station = station
        self.devices = devices
        self.recorder = recorder
        self._t0_s = t_s  # process time supervision started
        self._last: tuple[float, float] | None = None  # the last trusted (t_s, °C)
        self._switched: set[str] = set()  # inert gases whose flow was lost
        recorder.audit("supervision_started", t_s, {
            "until_c": station.envelope.open_tube_max_c,
            "why": "halted: the furnace is watched, the record kept and inert gas kept on "
                   "until it can be opened"})

    def going_away(self, t_s: float) -> None:
        """End supervision at once: the process is going away (a signal)."""
        self.recorder.audit("supervision_ended", t_s, {
            "reason": "halted: the controller is going away; the furnace is left "
                      "as the halt left it"})

    async def watch(self, snap: Snapshot) -> None:
        """Note a trusted temperature (for the cooling model) and keep inert gas on."""
        if self._trusted(snap):
            self._last = (snap.t_s, snap.furnace_c)
        await self._keep_inert_gas(snap, self._switched)

    def is_done(self, snap: Snapshot) -> bool:
        """True (and recorded) once the furnace may be left: below the open-tube limit,
        or ``SUPERVISE_MAX_S`` after supervision started."""
        env = self.station.envelope
        known = self._cool_enough(snap, self._last)
        if known is not None and known[0] <= env.open_tube_max_c:
            self.recorder.audit("supervision_ended", snap.t_s, {
                "temperature_c": known[0], "source": known[1],
                "limit_c": env.open_tube_max_c})
            return True
        if snap.t_s - self._t0_s > SUPERVISE_MAX_S:  # it does not cool (a heater stuck on)
            self.recorder.audit("supervision_ended", snap.t_s, {
                "temperature_c": known[0] if known else None,
                "source": known[1] if known else "none", "limit_c": env.open_tube_max_c,
                "reason": f"still not cool after {SUPERVISE_MAX_S / 3600:.0f} h: the "
                          "hardware over-temperature cut-out and a person must act"})
            return True
        return False

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

    async def _keep_inert_gas(self, snap: Snapshot, switched: set[str]) -> None:
        """The gas-supply interlock while supervising: an inert flow short for
        ``FLOW_LOST_S`` (an empty bottle) switches to another inert gas, once."""
        for gas, short_s in snap.health.flow_short_s.items():
            if short_s < FLOW_LOST_S or gas in switched or _oxidising(self.station, gas):
                continue
            switched.add(gas)
            other = next((m for m in self.devices.mfcs if m.gas not in switched
                          and not _oxidising(self.station, m.gas)), None)
            if other is None:
                continue
            config = self.station.gas(other.gas)
            flow = min(SAFE_INERT_FLOW_SCCM, config.full_scale_sccm) if config else 0.0
            done: dict[str, str] = {}
            await _set_safe_flow(other, flow, done)
            self.recorder.audit("inert_gas_switched", snap.t_s, {
                "lost": gas, "to": other.gas, "result": done.get(other.gas, ""),
                "short_s": short_s})
