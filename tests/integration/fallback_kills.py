"""Killing the PC at chosen points of a batch on the in-process simulator (virtual clock) and
leaving the furnace to its instrument: the simulator's ground truth after each kill.

Shared by ``tests/integration/test_fallback_rate.py`` and ``benchmarks/faults.py``
(``--fallback-kills``). One dry run serves every kill. At a kill point the simulated world
is copied and every unit of the copy stops answering, which is what a dead PC looks like to
the instruments: nothing reaches the line, the remote setpoint times out and the furnace
controller falls back to its local setpoint (ambient) at its own rate limit, while the MFCs
keep their flows. The copy then runs on alone; the batch goes on in the original world.
``silence`` instead kills the PC in the original world itself (``set_responding(unit,
False)`` for every unit while the controller runs on and gives up the line, as
``test_kill_resume`` does), and takes a copy at the same instant, so that a test can check
that a copy behaves as a real kill does.

Ground truth is the true furnace temperature (``world.truth().furnace_c``), sampled every
``SAMPLE_S`` of process time, from ``WINDOW_S`` before the kill (the controlled part of
a window that straddles the kill) to ``alone_s`` after it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.recipe.plan import load_recipe, summarize
from controller.recipe.station import Station, load_station
from controller.recipe.steps import Cool, Plan, Ramp
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import run_batch
from controller.station_factory import build_devices
from simulator.world import SimWorld

WINDOW_S = 120.0  # the acceptance's window: no cooling faster than the limit over any 2 min
SAMPLE_S = 10.0  # ground truth every 10 s of process time
ALONE_S = 2 * 3600.0  # how long the furnace is left to its instrument after a kill

Samples = tuple[tuple[float, float], ...]  # (process time s, true furnace °C)


@dataclass(frozen=True, slots=True)
class KillPoint:
    """Where to kill the PC: ``fraction`` of the way through plan step ``step`` (of its
    planned duration, counted from when the runner entered it), or else at process time
    ``t_s``."""

    t_s: float | None = None
    step: int | None = None
    fraction: float = 0.5

    def due(self, t_s: float, step: int, entered_t_s: float, planned_s: float) -> bool:
        """True once the batch, at ``t_s`` in plan step ``step`` (entered at
        ``entered_t_s``, planned to last ``planned_s``), has reached this point."""
        if self.step is not None:
            return step > self.step or (
                step == self.step and t_s - entered_t_s >= self.fraction * planned_s)
        return self.t_s is not None and t_s >= self.t_s


@dataclass(frozen=True, slots=True)
class Kill:
    """One kill and the ground truth around it. ``how``: "copy" (a copy of the world left
    alone) or "silenced" (the original world, the controller still running and failing)."""

    point: KillPoint
    how: str
    t_s: float
    step: int
    label: str
    heating: bool  # the step was a ramp up
    furnace_c: float  # true furnace temperature at the kill, °C
    samples: Samples

    def max_cooling(self) -> tuple[float, float]:
        """Fastest cooling over any ``WINDOW_S`` window: (°C/min, window start t_s)."""
        return max_cooling_c_per_min(self.samples)

    def cooled_c(self, after_s: float) -> float:
        """How far the true furnace fell in the first ``after_s`` after the kill, K."""
        later = next(c for t, c in self.samples if t >= self.t_s + after_s - 1e-6)
        return self.furnace_c - later


@dataclass
class Campaign:
    """The kills of one dry run, the truth of the batch itself (PC alive: up to the silenced
    kill, or to its end) and the kill points never reached."""

    station: Station
    plan: Plan
    kills: list[Kill] = field(default_factory=list)
    missed: list[KillPoint] = field(default_factory=list)
    batch: Samples = ()
    state: Phase = Phase.IDLE

    @property
    def limit_c_per_min(self) -> float:
        """The station's maximum cooling rate, °C/min."""
        return self.station.envelope.max_cooling_rate_c_per_min

    def worst(self) -> Kill:
        """The kill followed by the fastest 2-minute cooling."""
        return max(self.kills, key=lambda k: k.max_cooling()[0])


def heating_ramps(plan: Plan, ambient_c: float) -> list[int]:
    """Indices of the plan's ramps that go up (the setpoint walked from ``ambient_c``)."""
    out, setpoint_c = [], ambient_c
    for i, step in enumerate(plan.steps):
        if isinstance(step, Ramp | Cool):
            if isinstance(step, Ramp) and step.to_c > setpoint_c:
                out.append(i)
            setpoint_c = step.to_c
    return out


def max_cooling_c_per_min(samples: Samples, window_s: float = WINDOW_S) -> tuple[float, float]:
    """Fastest fall of temperature over any window of at least ``window_s`` seconds between
    two samples, as (°C/min, window start s); (-inf, nan) for fewer samples than that."""
    best, at_s = -math.inf, math.nan
    j = 0
    for t0_s, c0 in samples:
        while j < len(samples) and samples[j][0] < t0_s + window_s - 1e-6:
            j += 1
        if j == len(samples):
            break
        t1_s, c1 = samples[j]
        rate = (c0 - c1) / ((t1_s - t0_s) / 60.0)
        if rate > best:
            best, at_s = rate, t0_s
    return best, at_s


def dead_copy(world: SimWorld) -> SimWorld:
    """A copy of ``world`` in which no unit answers: the PC is dead from here on. Fault and
    journal hooks are not copied, nor the balance (it is off the Modbus line and reads the
    original's sample)."""
    memo: dict[int, object] = {id(world.hooks): [], id(world.write_hooks): [],
                               id(world.read_hooks): [], id(world.balance): None}
    dead = copy.deepcopy(world, memo)
    for unit in dead.units:
        dead.set_responding(unit, False)
    return dead


def leave_alone(world: SimWorld, alone_s: float) -> Samples:
    """Advance ``world`` by itself for ``alone_s``; its true furnace every ``SAMPLE_S``."""
    t0_s = world.now_s
    out = [(t0_s, world.truth().furnace_c)]
    for k in range(1, int(alone_s / SAMPLE_S) + 1):
        world.advance_to(t0_s + k * SAMPLE_S)
        out.append((world.now_s, world.truth().furnace_c))
    return tuple(out)


async def run_kills(recipe: Path, points: Sequence[KillPoint], batches: Path, *,
                    silence: KillPoint | None = None, alone_s: float = ALONE_S,
                    seed: int = 0) -> Campaign:
    """Dry-run ``recipe`` on the built-in simulated station and kill the PC at every one of
    ``points`` (a copy of the world each), then at ``silence`` in the original world (the
    batch then ends by losing its instruments; later points are missed). Each killed
    furnace is left alone for ``alone_s`` seconds of process time."""
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(recipe, {}, station)
    planned = summarize(plan, station).step_durations_s
    clock = VirtualClock()
    built = build_devices(station, clock, seed=seed, material=plan.material)
    world = built.world
    if world is None:
        raise RuntimeError("the built-in station is not simulated in process")
    campaign = Campaign(station, plan)
    truth: list[tuple[float, float]] = []
    next_sample_s = [0.0]

    def sample(w: SimWorld, t_s: float) -> None:
        if t_s >= next_sample_s[0]:
            truth.append((t_s, w.truth().furnace_c))
            next_sample_s[0] = t_s + SAMPLE_S - 1e-6

    world.hooks.append(sample)
    pending = list(points)
    entered = {"step": -1, "t_s": 0.0}
    silenced_at: list[tuple[float, int, str, bool, float]] = []

    def kill(point: KillPoint, snap: Snapshot, runner: RecipeRunner, how: str) -> Kill:
        step = runner.current_step
        heating = isinstance(step, Ramp) and step.to_c > runner.run.setpoint_c
        now_s = world.now_s
        before = tuple((t, c) for t, c in truth if now_s - WINDOW_S - 1e-6 <= t < now_s - 1e-6)
        after = leave_alone(dead_copy(world), alone_s)
        return Kill(point, how, now_s, runner.step_index,
                    step.label if step is not None else "", heating,
                    world.truth().furnace_c, before + after)

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if silenced_at:
            return
        if runner.step_index != entered["step"]:
            entered["step"], entered["t_s"] = runner.step_index, snap.t_s
        index = runner.step_index
        planned_s = planned[index] if index < len(planned) else 0.0
        for point in [p for p in pending if p.due(snap.t_s, index, entered["t_s"], planned_s)]:
            pending.remove(point)
            campaign.kills.append(kill(point, snap, runner, "copy"))
        if silence is not None and silence.due(snap.t_s, index, entered["t_s"], planned_s):
            campaign.kills.append(kill(silence, snap, runner, "copy"))
            step = runner.current_step
            silenced_at.append((world.now_s, index, step.label if step else "",
                                isinstance(step, Ramp) and step.to_c > runner.run.setpoint_c,
                                world.truth().furnace_c))
            for unit in world.units:  # the PC goes silent: nothing reaches the line
                world.set_responding(unit, False)

    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=clock, batches_dir=batches,
                             operator="pytest", observer=observer, built=built)
    campaign.state = result.state
    campaign.missed = pending
    if silence is None or not silenced_at:
        campaign.batch = tuple(truth)
        if silence is not None:
            campaign.missed.append(silence)
        return campaign
    t_s, index, label, heating, furnace_c = silenced_at[0]
    campaign.batch = tuple((t, c) for t, c in truth if t <= t_s)
    while world.now_s < t_s + alone_s - 1e-6:  # the controller has given up: alone now
        world.advance_to(min(world.now_s + SAMPLE_S, t_s + alone_s))
    truth.append((world.now_s, world.truth().furnace_c))
    campaign.kills.append(Kill(silence, "silenced", t_s, index, label, heating, furnace_c,
                               tuple((t, c) for t, c in truth if t >= t_s - WINDOW_S - 1e-6
                                     and t <= t_s + alone_s + 1e-6)))
    return campaign
