"""The scan cycle: read → snapshot → interlocks → runner → write with read-back → record →
sleep until the next absolute deadline. One task per station; the supervisor's ``finally``
always leaves the outputs defined. Here: the order and timing of every scan (checkpoints,
overruns, pacing for a hold, operator commands between cycles), the trace rows, and the
scans of the supervised cool-down after a halt.

Not here: reading and writing the devices (``devices``); preflight, resume alignment, the
safe state and what supervision decides (``safety``); building devices
(``station_factory``), file formats (``audit``, ``trace``) or the console. This module
never sees a register.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from controller.recipe.station import Station
from controller.recipe.steps import Dwell
from controller.run.clock import Clock
from controller.run.commands import CommandQueue
from controller.run.devices import DeviceIO, Devices, Recorder
from controller.run.handle import RecipeRunner
from controller.run.interlocks import evaluate
from controller.run.runner import CycleOutput
from controller.run.runstate import SCHEMA_VERSION, Phase, awaits_person, to_record
from controller.run.safety import Safety, safe_flows
from controller.run.snapshot import Commands, Snapshot

# Devices, Recorder and safe_flows moved out; still importable from here.
__all__ = ["Devices", "Recorder", "ScanLoop", "safe_flows"]

# A checkpoint (the whole run state, in the audit chain) at every step boundary and at
# least this often; resume repeats at most this much counted dwell time, never skips it.
CHECKPOINT_INTERVAL_S = 300.0
# The loop this many periods late is an outage (recorded), not a run of missed cycles.
OVERRUN_PERIODS = 5


_SECONDS_TEXT = tuple(f"{second:02d}Z" for second in range(60))


class _WallText:
    """The trace's ``wall_utc`` cell, ``YYYY-MM-DDTHH:MM:SSZ``, of a UTC time: from its
    offset into the day, the date formatted once a day and the hour and minute once a
    minute (a ``strftime`` per row cost as much as the rest of the row's cells)."""

    __slots__ = ("_day", "_day_text", "_minute", "_minute_text")

    def __init__(self) -> None:
        self._day = datetime.min.replace(tzinfo=UTC)
        self._day_text = ""
        self._minute = -1
        self._minute_text = ""

    def __call__(self, wall: datetime) -> str:
        into = wall - self._day
        if into.days != 0:  # another day (or the first row): format its date once
            self._day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_text = self._day.strftime("%Y-%m-%dT")
            self._minute = -1
            into = wall - self._day
        minute, second = divmod(into.seconds, 60)
        if minute != self._minute:
            self._minute = minute
            self._minute_text = f"{self._day_text}{minute // 60:02d}:{minute % 60:02d}:"
        return self._minute_text + _SECONDS_TEXT[second]


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
        self._wall_text = _WallText()
        self.io = DeviceIO(station=station, devices=devices, clock=clock, recorder=recorder,
                           runner=runner, t0_s=self._t0_s, mass0_g=mass0_g)
        self.safety = Safety(station=station, devices=devices, clock=clock,
                             recorder=recorder, runner=runner, io=self.io, t0_s=self._t0_s)

    async def read(self) -> Snapshot:
        """Poll every device once into one immutable snapshot (``DeviceIO.read``)."""
        return await self.io.read()

    def _pace(self) -> None:
        """Tell the clock when a hold that waits for a person starts or ends (a dry run's
        clock runs at real speed while a person is awaited; a hold that lifts itself waits
        for the furnace, whose time a dry run compresses)."""
        held = awaits_person(self.runner.run)
        if held != self._paced:
            self._paced = held
            self.clock.pace_for_hold(held)

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
            "mass0_g": self.io.mass0_g, **trace_fields})
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
            snap.t_s, self._wall_text(self.clock.wall()),
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

    async def _supervise(self, next_t: float) -> None:
        """After a halt, scan on until ``safety.Supervision`` says the furnace may be left:
        no runner step and no writes but the inert gas, the trace kept."""
        supervision = self.safety.supervise()
        while True:
            if "halt" in self._drain_commands():  # the process is going away (a signal)
                supervision.going_away(self.clock.now() - self._t0_s)
                return
            snap = await self.io.read()
            await supervision.watch(snap)
            self._trace(snap, self.runner.commands())
            self.cycles += 1
            if self.observer is not None:
                self.observer(snap, self.runner)
            if supervision.is_done(snap):
                return
            next_t += self.station.scan_period_s
            await self.clock.sleep_until(next_t)
            next_t = max(next_t, self.clock.now() - self.station.scan_period_s)

    async def run(self) -> Phase:
        """Run the batch to its end. Returns the final state.

        Cancellation (Ctrl-C, abort) ends the loop; the outputs are made safe either way.
        """
        try:
            snap = await self.io.read()
            self.runner.begin(snap.t_s, snap.furnace_c if snap.furnace else
                              self.station.envelope.ambient_c)
            self._flush_events(snap.t_s)
            if snap.furnace is None:
                self.runner.command("fault", reason="furnace controller not answering")
            else:
                await self.safety.preflight(snap.t_s)
                if self.align_to_pv:
                    await self.safety.align_working_setpoint(snap.t_s)
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
                    await self.safety.reconfigure()
                snap = await self.io.read()
                verdicts = evaluate(snap, self.runner.context, self.station)
                out = self.runner.step(snap, verdicts)
                cmds = out.commands
                step = self.runner.current_step
                self._in_band = isinstance(step, Dwell) and abs(
                    snap.furnace_c - step.at_c) <= step.band_c
                self._after_step(out, snap.t_s)  # recorded before it is acted on
                if not self.runner.is_final:
                    await self.io.write(cmds, snap)
                self._trace(snap, cmds)
                self.cycles += 1
                if self.observer is not None:
                    self.observer(snap, self.runner)
                self._pace()
                next_t += self.station.scan_period_s
                await self.clock.sleep_until(next_t)
                next_t = self._overrun(next_t, snap.t_s)
            if self.runner.run.supervise:
                await asyncio.shield(self.safety.safe_state())  # at once: then watch it cool
                await self._supervise(next_t)
        finally:
            await asyncio.shield(self.safety.safe_state())
        return self.runner.phase
