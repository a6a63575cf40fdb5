"""Rung 3: another program on the bus writing to our instruments (faults.md A3, X3). Once is
an alarm and a rewrite; more than once holds the batch, once, until a person resumes, and
the resume re-applies our setting. In process, on the simulator, with a virtual clock; the
other program writes through ``SimWorld.write``, as a second Modbus master would."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.recipe.steps import Dwell
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.interlocks import FLOW_LOST_S
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import run_batch
from controller.station_factory import build_devices
from drivers.alicat import registers as alicat
from drivers.eurotherm.registers import build_map
from drivers.registers import Register, encode
from simulator import SimWorld
from tests.integration.helpers import Batch, read_batch

TG_SP = {r.name: r for r in build_map(1).registers}["TG.SP.F"]
AR_UNIT, FURNACE_UNIT = 2, 1
OURS_AR_SCCM = 200.0
PERSON = "pytest-person"

RECIPE = """
schema_version = 1
name = "foreign"
sample = "F-300"
[[stages]]
name = "purge"
atmosphere = "Ar"
[[stages.steps]]
kind = "purge"
gas = "Ar"
flow_sccm = 1000
volumes = 8
[[stages.steps]]
kind = "gas"
flows_sccm = { Ar = 200 }
[[stages]]
name = "heat"
atmosphere = "Ar"
[[stages.steps]]
kind = "ramp"
to_c = 300
rate_c_per_min = 10
[[stages.steps]]
kind = "dwell"
duration_min = 30
band_c = 5
[[stages]]
name = "cool"
atmosphere = "Ar"
[[stages.steps]]
kind = "cool"
to_c = 100
rate_c_per_min = 5
[[stages.steps]]
kind = "end"
"""


@dataclass
class Sample:
    """What the world held after one scan cycle (our writes done, the other's not yet)."""

    t_s: float
    phase: Phase
    ar_setpoint_sccm: float
    local_setpoint_c: float
    inert_flow_sccm: float  # true Ar + N2 flow


@dataclass
class OtherProgram:
    """Another Modbus master: writes ``value`` to ``register`` of ``unit`` every ``every_s``
    (``times`` writes at most) once started, until someone finds it and stops it."""

    unit: int
    register: Register
    value: float
    every_s: float = 10.0
    times: int | None = None
    started_at: float | None = None
    stopped: bool = False
    writes: list[float] = field(default_factory=list)

    def tick(self, world: SimWorld, t_s: float) -> None:
        if self.started_at is None or self.stopped or t_s < self.started_at:
            return
        if self.times is not None and len(self.writes) >= self.times:
            return
        if self.writes and t_s - self.writes[-1] < self.every_s:
            return
        world.write(self.unit, self.register.address, encode(self.register, self.value))
        self.writes.append(t_s)


@dataclass
class Person:
    """Resumes a hold after ``after_s``, having found and stopped the other program."""

    after_s: float | None
    held_at: float | None = None
    resumed_at: float | None = None


Injected = tuple[Batch, list[Sample]]


async def _run(tmp_path: Path, other: OtherProgram, person: Person,
               start: Callable[[RecipeRunner], bool]) -> Injected:
    station, station_text = load_station(None)
    recipe = tmp_path / "foreign.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    _, plan, frozen = load_recipe(recipe, {}, station)
    clock = VirtualClock()
    built = build_devices(station, clock)
    world = built.world
    assert world is not None
    log: list[Sample] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        truth = world.truth()
        log.append(Sample(snap.t_s, runner.phase, world.mfcs["Ar"].setpoint_sccm,
                          world.furnace.bank.get("TG.SP"),
                          truth.flows_sccm["Ar"] + truth.flows_sccm["N2"]))
        if other.started_at is None and start(runner):
            other.started_at = snap.t_s + 60.0
        other.tick(world, snap.t_s)
        if runner.phase is Phase.HELD and person.after_s is not None:
            person.held_at = snap.t_s if person.held_at is None else person.held_at
            if person.resumed_at is None and snap.t_s - person.held_at >= person.after_s:
                other.stopped = True  # found it
                runner.command("resume", reason="the other program found and stopped",
                               operator=PERSON)
                person.resumed_at = snap.t_s

    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=clock, batches_dir=tmp_path,
                             operator="pytest", observer=observer, built=built)
    return read_batch(result, plan), log


def _in_dwell(runner: RecipeRunner) -> bool:
    return runner.phase is Phase.RUNNING and isinstance(runner.current_step, Dwell)


def _alarms(batch: Batch) -> list[dict[str, object]]:
    return [e for e in batch.events("alarm") if e["alarm"] == "setpoint_changed_externally"]


def _trips(batch: Batch) -> list[dict[str, object]]:
    return [e for e in batch.events("interlock_trip") if e["interlock"] == "foreign_writer"]


def _at(log: list[Sample], t_s: float) -> Sample:
    return next(s for s in log if s.t_s >= t_s)


def _held_states(batch: Batch) -> list[dict[str, object]]:
    return [e for e in batch.events("state_change") if e["new"] == "held"]


async def test_mfc_setpoint_written_again_and_again_holds_once(tmp_path: Path) -> None:
    other = OtherProgram(AR_UNIT, alicat.SETPOINT, 150.0)
    person = Person(after_s=600.0)
    batch, log = await _run(tmp_path, other, person, _in_dwell)
    # it kept writing all through the hold: ~60 writes, one alarm, one trip
    assert len(other.writes) > 50
    [alarm] = _alarms(batch)
    assert alarm["device"] == "mfc_Ar"
    assert alarm["what"] == "flow_Ar"
    assert (alarm["measured"], alarm["limit"], alarm["action"]) == (150.0, 200.0, "rewritten")
    assert alarm["t_s"] == _at(log, other.writes[0] + 1e-9).t_s  # found on the next read
    assert _at(log, alarm["t_s"]).ar_setpoint_sccm == OURS_AR_SCCM  # and rewritten at once
    [trip] = _trips(batch)
    assert trip["severity"] == "hold"
    assert trip["action"] == "hold"
    assert trip["t_s"] == _at(log, other.writes[1] + 1e-9).t_s  # the second change
    assert trip["justification"] == (
        "mfc_Ar setpoint changed by another program twice (200 -> 150 sccm): another "
        "controller or program writes to this instrument; find it before resuming")
    [held] = _held_states(batch)
    assert held["reason"].startswith("foreign_writer: mfc_Ar setpoint changed")
    # held until the person resumed, the instrument left as the other program set it
    assert person.resumed_at is not None
    during = [s for s in log if trip["t_s"] <= s.t_s < person.resumed_at]
    assert len(during) >= 290
    assert all(s.phase is Phase.HELD for s in during)
    assert all(s.ar_setpoint_sccm == 150.0 for s in during)
    resumed = [e for e in batch.events("state_change")
               if e["old"] == "held" and e["new"] == "running"]
    assert [e.get("operator") for e in resumed] == [PERSON]  # no auto-resume
    # resuming re-applied our setpoint, on the first cycle after the command
    assert [e["t_s"] for e in batch.events("instrument_reconfigured")] == [
        _at(log, person.resumed_at + 1e-9).t_s]
    assert _at(log, person.resumed_at + 1e-9).ar_setpoint_sccm == OURS_AR_SCCM
    assert all(s.ar_setpoint_sccm == OURS_AR_SCCM for s in log
               if s.t_s > person.resumed_at and s.phase is Phase.RUNNING)
    assert batch.result.state is Phase.COMPLETED
    assert verify_batch(batch.result.batch_dir).ok


async def test_furnace_local_setpoint_changed_twice_holds(tmp_path: Path) -> None:
    station = load_station(None)[0]
    ours_c = station.envelope.ambient_c
    other = OtherProgram(FURNACE_UNIT, TG_SP, 300.0, every_s=120.0, times=2)
    person = Person(after_s=300.0)
    batch, log = await _run(tmp_path, other, person, _in_dwell)
    assert len(other.writes) == 2
    [alarm] = _alarms(batch)
    assert alarm["device"] == "furnace"
    assert alarm["what"] == "local_setpoint"
    assert (alarm["measured"], alarm["limit"], alarm["action"]) == (300.0, ours_c,
                                                                    "rewritten")
    assert _at(log, alarm["t_s"]).local_setpoint_c == ours_c  # the EEPROM value restored
    [trip] = _trips(batch)
    assert trip["t_s"] == _at(log, other.writes[1] + 1e-9).t_s
    assert trip["justification"].startswith(
        f"furnace local setpoint (TG.SP) changed by another program twice "
        f"({ours_c:g} -> 300 °C): another controller or program writes to this instrument")
    assert person.resumed_at is not None
    during = [s for s in log if trip["t_s"] <= s.t_s < person.resumed_at]
    assert during
    assert all(s.phase is Phase.HELD for s in during)
    assert all(s.local_setpoint_c == 300.0 for s in during)  # left as found
    assert _at(log, person.resumed_at + 1e-9).local_setpoint_c == ours_c  # re-applied
    assert len(_held_states(batch)) == 1
    assert batch.result.state is Phase.COMPLETED
    assert verify_batch(batch.result.batch_dir).ok


@pytest.mark.parametrize(("unit", "register", "value"), [
    (AR_UNIT, alicat.SETPOINT, 150.0), (FURNACE_UNIT, TG_SP, 300.0)],
    ids=["mfc_setpoint", "furnace_local_setpoint"])
async def test_one_change_is_an_alarm_and_a_rewrite_only(
        tmp_path: Path, unit: int, register: Register, value: float) -> None:
    station = load_station(None)[0]
    other = OtherProgram(unit, register, value, times=1)
    batch, log = await _run(tmp_path, other, Person(after_s=None), _in_dwell)
    assert len(other.writes) == 1
    [alarm] = _alarms(batch)
    assert alarm["action"] == "rewritten"
    after = _at(log, alarm["t_s"])
    assert after.ar_setpoint_sccm == OURS_AR_SCCM
    assert after.local_setpoint_c == station.envelope.ambient_c
    assert _trips(batch) == []
    assert _held_states(batch) == []
    assert batch.result.state is Phase.COMPLETED


async def test_argon_cut_by_another_program_while_hot_is_not_left_cut(tmp_path: Path
                                                                      ) -> None:
    """The hold leaves the instrument as found, but the flow interlocks still judge the
    measured flow: argon cut at 300 °C aborts after ``FLOW_LOST_S`` and the cool-down
    re-applies an inert gas, with nobody there."""
    station = load_station(None)[0]
    other = OtherProgram(AR_UNIT, alicat.SETPOINT, 0.0)
    batch, log = await _run(tmp_path, other, Person(after_s=None), _in_dwell)
    assert len(_alarms(batch)) == 1
    [trip] = _trips(batch)
    lost = [e for e in batch.events("interlock_trip") if e["interlock"] == "flow_lost:Ar"]
    assert lost
    assert lost[0]["action"].startswith("abort")
    assert lost[0]["t_s"] - trip["t_s"] <= FLOW_LOST_S + 3 * station.scan_period_s
    assert batch.result.state is Phase.ABORTED
    # without inert gas no longer than the flow-loss window and the MFCs' response
    short = [s.t_s for s in log if s.t_s > trip["t_s"] and s.inert_flow_sccm < 100.0]
    assert short
    assert max(short) - min(short) <= FLOW_LOST_S + 10 * station.scan_period_s
    assert math.isclose(log[-1].inert_flow_sccm, 200.0, rel_tol=0.1)
