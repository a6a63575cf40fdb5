"""Predict a batch by running it: the plan on the station's simulated twin, on a virtual
clock, through the scan loop, runner and drivers a dry run uses (``scan_loop`` builds the
loop for both), with no batch folder: the records go to a ``PredictionRecorder`` that keeps
only the times it needs. So ``furnace plan`` cannot disagree with a dry run of the same
recipe on the built-in station; a prediction for a real station plays it with the
station's layout on its ``[twin]`` (the physics ``furnace twin fit`` fitted to its past
batches, or set by hand), or on the built-in furnace if it has none (issue 16).

Not here: the batch's records, lock or control server (``session``), when a running batch
asks for a prediction (``eta``), or the printing (``cli_plan``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from controller.recipe.station import BusConfig, Station
from controller.recipe.steps import OperatorStep, Plan
from controller.run.clock import Clock, VirtualClock
from controller.run.commands import CommandQueue
from controller.run.devices import Recorder
from controller.run.forecast import OperatorTimes, Prediction, StageTimes
from controller.run.handle import RecipeRunner
from controller.run.runstate import FINAL, Phase, RunState
from controller.run.scan import ScanLoop
from controller.run.snapshot import Snapshot
from controller.station_factory import Built, build_devices

__all__ = ["Present", "PredictionRecorder", "predict", "predict_plan", "scan_loop",
           "twin_station"]


def scan_loop(*, station: Station, runner: RecipeRunner, built: Built, clock: Clock,
              recorder: Recorder, **options: Any) -> ScanLoop:
    """The scan loop of a batch on ``built``: what a run, a resume and a prediction share.
    An in-process simulated world plays the operator's hands (it opens the tube and fills
    in the step data). ``options`` go to ``ScanLoop``."""
    world = built.world
    loop = ScanLoop(station=station, runner=runner, devices=built.devices, clock=clock,
                    recorder=recorder, on_tube_opened=world.open_tube if world is not None
                    else None, **options)
    if world is not None:  # the simulated operator's hands fill in the step data
        runner.rules.readings = world.operator_step
    return loop


def twin_station(station: Station) -> Station:
    """``station``'s layout (devices, units, envelope, scan period) and its ``[twin]`` on
    the in-process simulator: what a prediction runs on. The station is copied whole but
    for its bus, so the twin comes along (none: the built-in furnace; ``describe_twin``
    says which)."""
    if station.bus.kind == "sim":
        return station
    return station.model_copy(update={"bus": BusConfig(kind="sim"), "simulated": False})


class PredictionRecorder:
    """A ``Recorder`` that writes nothing: it keeps the process times of the operator
    steps (when each may begin, when it is confirmed) from the audit events the scan loop
    records, and drops the trace rows."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self.confirmed_s: dict[int, float] = {}
        self.events = 0

    def audit(self, event: str, t_s: float, fields: dict[str, Any]) -> None:
        """Note an operator step's confirmation; count the rest."""
        self.events += 1
        if event == "operator_confirmed":
            index = fields.get("index")
            if isinstance(index, int):
                self.confirmed_s[index] = t_s

    def trace(self, row: Sequence[object]) -> None:
        """Dropped: a prediction has no trace."""

    def sync_trace(self) -> dict[str, object]:
        """Nothing to make durable."""
        return {}

    def operator_times(self) -> tuple[OperatorTimes, ...]:
        """Every operator step of the plan, with its predicted times (None: not reached)."""
        out = []
        for i, step in enumerate(self._plan.steps):
            if not isinstance(step, OperatorStep):
                continue
            done = self.confirmed_s.get(i)
            out.append(OperatorTimes(i, step.stage, step.label,
                                     None if done is None else done - step.expected_s, done))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Present:
    """Where a running batch is: its run state (``runstate.from_record`` of a checkpoint
    record) at process time ``t_s`` (s) with the furnace measured at ``furnace_c`` and the
    tube's O2 at ``o2_ppm`` (None: no analyser; then a tube the state says is purged is
    taken as inert, else as air)."""

    state: RunState
    t_s: float
    furnace_c: float
    o2_ppm: float | None = None

    def tube_o2_ppm(self) -> float | None:
        """The twin's starting O2 (None: air)."""
        if self.o2_ppm is not None:
            return self.o2_ppm
        return 0.0 if self.state.purged else None


def _ready(state: RunState) -> tuple[RunState, str]:
    """``state`` made ready to go on after a preflight (as a resume does, without its
    outage policy), and the trigger to fire then: a hold is taken as lifted now."""
    trigger = {Phase.STOPPING: "stop", Phase.ABORTING: "abort"}.get(state.phase, "")
    return replace(state, phase=Phase.IDLE, last_t_s=None, hold_clear_since_t_s=None,
                   ramp_paused=False, hold_cause="", hold_auto_resume_s=None,
                   hold_started_real_s=None), trigger


#: The prediction scans at most this often (s of process time): the furnace's time
#: constants are minutes, so a coarser scan moves a 35 h prediction by about 0.1 % (a 2.5 h
#: screen by 0.3 %) against the station's own 2 s, at well under half the CPU (decision
#: 0013; benchmarks/plan_prediction.py prints both).
PREDICTION_SCAN_PERIOD_S: Final = 5.0


async def predict(plan: Plan, station: Station, *, seed: int = 0,
                  present: Present | None = None,
                  observer: Callable[[Snapshot, RecipeRunner], None] | None = None
                  ) -> Prediction:
    """Run ``plan`` on ``station``'s simulated twin (``twin_station``) on a virtual clock,
    from the start or from ``present``, and return what it took. The simulated operator
    confirms each operator step after its expected time. It scans every
    ``PREDICTION_SCAN_PERIOD_S`` at most (a dry run at the station's period). Writes no
    file; no real waiting. Raises ``ConfigurationError`` if the simulated
    devices cannot be connected (a station layout the simulator cannot play)."""
    twin = twin_station(station)
    if twin.scan_period_s < PREDICTION_SCAN_PERIOD_S:
        twin = twin.model_copy(update={"scan_period_s": PREDICTION_SCAN_PERIOD_S})
    start_s = present.t_s if present is not None else 0.0
    clock = VirtualClock(start_s)
    built = build_devices(twin, clock, seed=seed, material=plan.material,
                          start_c=present.furnace_c if present is not None else None,
                          start_o2_ppm=present.tube_o2_ppm() if present is not None else None)
    recorder = PredictionRecorder(plan)
    runner = RecipeRunner(plan, twin, auto_confirm=True)
    on_start: Callable[[Snapshot], None] | None = None
    if present is not None and present.state.phase in FINAL:
        runner.run = present.state
    elif present is not None and present.state.phase is not Phase.IDLE:
        runner.run, trigger = _ready(present.state)
        setpoint_c = present.state.setpoint_c

        def resume_here(snap: Snapshot) -> None:
            runner.resumed(snap.t_s, setpoint_c=setpoint_c, trigger=trigger,
                           reason="prediction from the batch's present state")

        on_start = resume_here
    peak = [-math.inf]

    def observe(snap: Snapshot, r: RecipeRunner) -> None:
        if snap.furnace is not None:
            peak[0] = max(peak[0], snap.furnace_c)
        if observer is not None:
            observer(snap, r)

    try:
        await built.connect("simulated twin")
        loop = scan_loop(station=twin, runner=runner, built=built, clock=clock,
                         recorder=recorder, observer=observe, t0_s=0.0, on_start=on_start,
                         commands=CommandQueue(), align_to_pv=on_start is not None)
        if not runner.is_final:
            await loop.run()
    finally:
        await built.close()
    run = runner.run
    stages = tuple(StageTimes(s.name, run.stage_started_t_s.get(s.name),
                              run.stage_ended_t_s.get(s.name)) for s in plan.stages)
    outcome = "completed" if run.phase is Phase.COMPLETED else str(run.phase)
    return Prediction(plan.sample_name, start_s, clock.now(), outcome, stages,
                      recorder.operator_times(), run.gas_used_l,
                      peak[0] if math.isfinite(peak[0]) else math.nan)


def predict_plan(plan: Plan, station: Station, *, seed: int = 0,
                 present: Present | None = None) -> Prediction:
    """``predict`` in its own event loop (call it from synchronous code)."""
    return asyncio.run(predict(plan, station, seed=seed, present=present))
