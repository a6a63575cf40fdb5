"""A simulated world's state as plain data (``simulator.state``): captured from a world in
the middle of an air pre-oxidation (hot furnace, air flowing, the sample reacting), put as
JSON into a world built afresh with another seed, the two then go on for an hour alone
(the instrument's own fallback, its PID, the sample's chemistry) and agree bit for bit:
nothing the world holds was left out. The noise generators are not kept (a resumed world's
noise starts again from its seed), so the test gives both worlds the same noise first. A
state that does not fit is refused before anything changes."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.dry_run_world import kept_world
from controller.records.folder import BatchFolder
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session_resume import resume_batch
from simulator.state import StateError, _attributes, _parts, capture, restore
from simulator.world import SimWorld
from tests.integration.helpers import InProcess, in_process
from tests.integration.recipes import AIR_PREOX, TINY


class _StopError(Exception):
    pass


@pytest.fixture(scope="module")
def reacting(tmp_path_factory: pytest.TempPathFactory) -> SimWorld:
    """The world of AIR_PREOX stopped in its pre-oxidation dwell."""
    folder = tmp_path_factory.mktemp("preox")
    sim = in_process(folder, AIR_PREOX)

    def observer(snap: Snapshot, runner: object) -> None:
        if snap.t_s > 4_500.0:
            raise _StopError

    with pytest.raises(_StopError):
        asyncio.run(sim.run(folder / "b", observer=observer))
    world = sim.world
    assert world.kinetics is not None
    assert world.furnace.thermal.furnace_c > 200.0
    assert world.mfcs["air"].flow_sccm > 100.0
    assert 0.0 < world.kinetics.alpha_ox < 1.0
    return world


def _words(world: SimWorld) -> list[list[int]]:
    return [world.read(unit, address, 1) for unit in world.units
            for address in range(0, 8)
            if _readable(world, unit, address)]


def _readable(world: SimWorld, unit: int, address: int) -> bool:
    try:
        world.read(unit, address, 1)
    except Exception:  # no whole register there
        return False
    return True


def test_a_restored_world_goes_on_exactly_as_the_original(reacting: SimWorld) -> None:
    t_s = reacting.now_s
    state = json.loads(json.dumps(capture(reacting, t_s)))
    twin = SimWorld(reacting.spec, seed=12345)
    assert twin.truth() != reacting.truth()
    assert restore(twin, state) == t_s
    _same_noise(reacting, twin)
    for step in range(1, 1801):
        for world in (reacting, twin):
            world.advance_to(t_s + 2.0 * step)
        assert twin.truth() == reacting.truth(), step
    assert _words(twin) == _words(reacting)
    assert twin.kinetics is not None
    assert reacting.kinetics is not None
    assert twin.kinetics.conversions() == reacting.kinetics.conversions()
    assert capture(twin, 0.0) == capture(reacting, 0.0)


def test_a_state_that_does_not_fit_changes_nothing(reacting: SimWorld) -> None:
    state = json.loads(json.dumps(capture(reacting, reacting.now_s)))
    inert = SimWorld(reacting.spec.__class__(**{**_fields(reacting.spec),
                                                "sample_precursor": None}))
    before = capture(inert, 0.0)
    with pytest.raises(StateError, match="another station"):
        restore(inert, state)
    state["parts"]["furnace"]["_i_pct"] = ["list", [1.0]]
    with pytest.raises(StateError, match="another kind"):
        restore(SimWorld(reacting.spec), state)
    with pytest.raises(StateError):
        restore(inert, {"format": 99})
    assert capture(inert, 0.0) == before


def _same_noise(source: SimWorld, target: SimWorld) -> None:
    """Give ``target`` the noise generators' states of ``source`` (what the state leaves
    out), part by part."""
    copied = 0
    for (_, part), (_, twin) in zip(_parts(source).items(), _parts(target).items(),
                                       strict=True):
        twins = dict(_attributes(twin))
        for attr, value in _attributes(part):
            if isinstance(value, random.Random):
                twins[attr].setstate(value.getstate())
                copied += 1
    assert copied >= 6, copied  # furnace, three MFCs, O2, sample TC, balance


def _fields(spec: object) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(spec, f.name) for f in fields(spec)}  # type: ignore[arg-type]


async def test_a_dry_run_killed_twice_resumes_with_its_furnace_each_time(
        tmp_path: Path) -> None:
    """``furnace resume`` of a dry run (no devices handed in, as the command line does it):
    the simulated world is the one kept at the last checkpoint, not a cold tube full of
    air. Killed in the air pre-oxidation dwell at 220 °C and again in the argon heat, each
    life resumes with the furnace where it was and the gas it had, carries on, and the batch
    completes, verifies and leaves no kept world behind."""
    sim = in_process(tmp_path, AIR_PREOX)
    batches = tmp_path / "batches"

    def crash_after(t_s: float) -> Callable[[Snapshot, RecipeRunner], None]:
        def observer(snap: Snapshot, runner: RecipeRunner) -> None:
            if snap.t_s > t_s:
                raise _StopError
        return observer

    with pytest.raises(_StopError):
        await sim.run(batches, observer=crash_after(4_500.0))
    batch = next(batches.iterdir())
    kept = BatchFolder(batch).sim_state_json
    assert kept.is_file()

    def make_clock(start_s: float) -> VirtualClock:
        return VirtualClock(start_s, wall_start=sim.clock.wall())

    with pytest.raises(_StopError):
        await resume_batch(batch, make_clock=make_clock, now_utc=sim.clock.wall,
                           observer=crash_after(9_000.0))
    result = await resume_batch(batch, make_clock=make_clock, now_utc=sim.clock.wall)
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    assert verify_batch(batch).ok
    assert not kept.exists()

    resumed = [r for r in BatchFolder(batch).read_audit() if r["event"] == "batch_resumed"]
    assert len(resumed) == 2
    for r in resumed:
        assert r["simulated_world"].startswith("the simulated world as it was at")
        assert r["furnace_now_c"] == pytest.approx(r["furnace_then_c"], abs=15.0)
        assert r["furnace_now_c"] > 150.0
        assert r["policy"] == "continue"
    assert resumed[0]["o2_now_ppm"] > 100_000.0  # the air of the pre-oxidation, kept
    assert resumed[1]["o2_now_ppm"] < 1_000.0  # the argon after the switch, kept


def _spoil(state: dict[str, Any], edit: str) -> None:
    parts = state["parts"]
    if edit == "t_s nan":
        state["t_s"] = math.nan
    elif edit == "smaller steps":
        parts["world"]["substep_s"] = 1e-9
    elif edit.startswith("bank "):
        values = parts["furnace.bank"]["_values"][1]
        if edit == "bank short":
            del values[3:]
        else:
            values[0] = "x"
    elif edit == "table as list":
        parts["furnace.bank"]["_slot_index"] = ["dict", [1, 2]]
    else:  # a value where the furnace's temperature was
        parts["thermal"]["furnace_c"] = {"nan": math.nan, "inf": math.inf, "text": "hot",
                                         "null": None, "table": {}, "flag": True}[edit]


@pytest.mark.parametrize("edit", ["nan", "inf", "text", "null", "table", "flag", "t_s nan",
                                  "smaller steps", "bank short", "bank text",
                                  "table as list"])
def test_a_hand_edited_state_is_refused_before_anything_changes(
        reacting: SimWorld, edit: str) -> None:
    """Each of these, put back, broke the resumed dry run with a traceback (NaN, a string,
    a table or nothing for a number, a bank of the wrong length), let it run on in steps
    of a nanosecond, or failed half put back (a list for a table); now each is refused
    and the world is left as built."""
    state = json.loads(json.dumps(capture(reacting, reacting.now_s)))
    _spoil(state, edit)
    fresh = SimWorld(reacting.spec)
    before = capture(fresh, 0.0)
    with pytest.raises(StateError):
        restore(fresh, json.loads(json.dumps(state)))
    assert capture(fresh, 0.0) == before


@pytest.mark.parametrize("spoil", ["huge", "nested", "future"])
def test_a_kept_world_that_cannot_go_on_is_not_used(reacting: SimWorld, tmp_path: Path,
                                                    spoil: str) -> None:
    """A state every value of which has its type but whose world breaks once it runs (a
    furnace at 1e300 °C), a file nested past the parser, a state kept after the batch's
    last record (another batch's): the world starts afresh, one line says why, nothing
    is raised (before: a traceback from ``furnace resume``, or a furnace frozen until
    the clock caught up with the state and a batch faulted for a frozen PV)."""
    sim = in_process(tmp_path, AIR_PREOX)
    path = tmp_path / "sim_state.json"
    state = capture(reacting, reacting.now_s)
    path.write_text(json.dumps(state), encoding="utf-8")
    world, note = kept_world(sim.station, sim.plan.material, path, reacting.now_s)
    assert world is not None, note  # as kept, it is used
    if spoil == "huge":
        state["parts"]["thermal"]["furnace_c"] = 1e300
        path.write_text(json.dumps(state), encoding="utf-8")
    elif spoil == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    world, note = kept_world(sim.station, sim.plan.material, path,
                             reacting.now_s - (1.0 if spoil == "future" else 0.0))
    assert world is None
    assert note.startswith("sim_state.json not used (")
    assert "\n" not in note


async def test_a_resume_with_a_spoiled_world_starts_afresh_and_completes(
        tmp_path: Path) -> None:
    """``furnace resume`` of a dry run whose kept world holds NaN: before, the resume died
    with a traceback before its first record, and every later resume too, until someone
    found the file to delete; now the world starts afresh and the batch completes."""
    sim, batch = await _killed_in_preoxidation(tmp_path)
    kept = BatchFolder(batch).sim_state_json
    state = json.loads(kept.read_text(encoding="utf-8"))
    state["parts"]["thermal"]["furnace_c"] = math.nan
    kept.write_text(json.dumps(state), encoding="utf-8")
    result = await resume_batch(
        batch, make_clock=lambda s: VirtualClock(s, wall_start=sim.clock.wall()),
        now_utc=sim.clock.wall)
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    resumed = [r for r in BatchFolder(batch).read_audit() if r["event"] == "batch_resumed"]
    assert resumed[0]["simulated_world"].startswith("sim_state.json not used (")


async def test_a_world_that_cannot_be_kept_is_said_once_and_the_batch_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """sim_state.json cannot be written (here: its temporary name is taken by a folder;
    a full disk or a folder it may not write in alike): before, every checkpoint logged
    the listener's traceback (hundreds in a dry run, on the operator's console); now one
    line says it once, and the batch completes."""
    sim = in_process(tmp_path, TINY)
    batches = tmp_path / "batches"
    blocked: list[Path] = []

    def block(snap: Snapshot, runner: RecipeRunner) -> None:
        if not blocked:
            blocked.append(next(batches.iterdir()) / "sim_state.json.tmp")
            blocked[0].mkdir()

    result = await sim.run(batches, observer=block)
    assert result.state is Phase.COMPLETED
    checkpoints = [r for r in BatchFolder(result.batch_dir).read_audit()
                   if r["event"] == "checkpoint"]
    assert len(checkpoints) >= 3
    assert not [r for r in caplog.records if r.exc_info]
    said = [r for r in caplog.records if "not written" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].levelname == "WARNING"


async def test_a_dry_run_resumed_months_later_counts_at_most_12_hours(tmp_path: Path) -> None:
    """The in-process simulator integrates an outage in 0.5 s steps: a dry run resumed 300
    days after its kill counts 12 h of process time (the furnace is at the room's
    temperature long before), not 52 million steps; a person decides how to go on."""
    sim, batch = await _killed_in_preoxidation(tmp_path)
    later = sim.clock.wall() + timedelta(days=300)

    def first_cycle(snap: Snapshot, runner: RecipeRunner) -> None:
        raise _StopError

    with pytest.raises(_StopError):
        await resume_batch(batch, make_clock=lambda start_s: VirtualClock(start_s,
                                                                          wall_start=later),
                           now_utc=lambda: later, observer=first_cycle)
    [resumed] = [r for r in BatchFolder(batch).read_audit() if r["event"] == "batch_resumed"]
    assert resumed["outage_wall_s"] == pytest.approx(300 * 86_400.0, rel=1e-3)
    assert resumed["outage_to_t_s"] - resumed["outage_from_t_s"] == pytest.approx(12 * 3600.0)
    assert resumed["furnace_now_c"] < 40.0  # twelve hours alone: cold
    assert resumed["policy"] == "hold for the operator"


async def _killed_in_preoxidation(folder: Path) -> tuple[InProcess, Path]:
    """AIR_PREOX run in process and killed in its pre-oxidation dwell (220 °C, in air);
    the devices and its batch folder."""
    sim = in_process(folder, AIR_PREOX)
    batches = folder / "batches"

    def crash(snap: Snapshot, runner: RecipeRunner) -> None:
        if snap.t_s > 4_500.0:
            raise _StopError

    with pytest.raises(_StopError):
        await sim.run(batches, observer=crash)
    return sim, next(batches.iterdir())
