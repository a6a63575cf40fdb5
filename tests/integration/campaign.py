"""The fault campaign (reference/faults.md §2 rows, §3.1-3.3 figures, §4 levels L1/L2): one
case per simulator fault kind, injected at a stage where it matters, run in process on the
simulator with a virtual clock, and judged against the simulator's ground-truth journal.

Shared by ``tests/integration/test_faults.py`` (one test per case) and
``benchmarks/faults.py`` (the table and the campaign figures). Nothing here edits the
controller: a case the controller got wrong would carry ``bug`` (the test then a strict
xfail); none does today.

Per case, all in process seconds (= simulator world seconds; one scan cycle is the
station's ``scan_period_s``, 2 s):

- ``injected_at``: the injector's start event (the fault takes effect in the world);
- ``symptom_at``: the first ground-truth sample showing the fault (e.g. the flow gone, the
  thermocouple 30 K off), or the injection itself when the fault shows at once;
- ``detected_at``: the first audit record (``interlock_trip`` or NOTE ``alarm``) at or after
  the injection naming one of the case's interlocks; detection latency = detected - symptom;
- ``safe_at``: the first write the simulator *accepted* after detection that carries out
  what the trip's action promised (heater off = MAN.OP 0 and A-M manual; instrument fallback
  = L-R local or the instrument's own remote-setpoint timeout; cool-down, hold or pause =
  the remote setpoint no longer rising; heat cut = setpoint at ambient; another inert gas on);
  the drivers read every write back, and the truth after it is checked too;
- inert gas: at every truth sample after the injection where the true furnace is above the
  station's air limit, the inert flows (Ar + N2) sum to at least ``INERT_MIN_SCCM`` and the
  oxidising flow is off; also for ``LEFT_ALONE_S`` after the batch ends (nobody there).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station
from controller.records.folder import BatchFolder
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.handle import RecipeRunner
from controller.run.interlocks import (
    COMMS_LOSS_CYCLES,
    FLOW_LOST_S,
    HEATER_OPEN_S,
    HEATER_STUCK_S,
    O2_LIMIT_PPM,
    PV_FROZEN_S,
    TC_DISAGREE_C,
)
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import BatchResult, run_batch
from controller.station_factory import build_devices
from drivers.alicat import registers as alicat
from drivers.eurotherm.registers import Status, build_map
from drivers.registers import Register, decode
from simulator.eurotherm import REMOTE_TIMEOUT_S
from simulator.faults import FaultInjector, FaultKind, format_duration, parse_fault
from simulator.journal import JournalWrite, SimJournal
from simulator.o2 import SENSOR_TAU_S
from simulator.sample import SAMPLE_TAU_S
from simulator.world import SimTruth, SimWorld
from tests.integration.recipes import AIR_PREOX, HOT_AR, QUICK_AR

__all__ = ["CASES", "RECIPES", "Case", "Check", "Outcome", "judge", "run_case"]

PERIOD_S = 2.0  # the built-in station's scan period; budgets below are written in it
INERT_MIN_SCCM = 100.0  # "inert gas flowing": Ar + N2 at least this (the safe flow is 200)
AIR_FLOWING_SCCM = 10.0  # 1 % of the air MFC's full scale, the interlocks' "flowing"
LEFT_ALONE_S = 600.0  # after the batch ends, the world runs on alone this long
OPERATOR = "campaign operator"

# ---- recipes ----------------------------------------------------------------------------

# tests/integration/recipes.py: QUICK_AR (argon, 600 °C for 60 min), AIR_PREOX (air
# pre-oxidation with the exotherm guard, the switch to argon, 400 °C) and HOT_AR (to 1600 °C,
# 30 min dwell).
RECIPES: dict[str, str] = {"quick": QUICK_AR, "air": AIR_PREOX, "hot": HOT_AR}

# The furnace registers the safe-state writes go to (float aliases; the same for any
# decimals setting).
_EURO = {r.name: r for r in build_map(1).registers}
_RM_SP, _MAN_OP, _AM, _LR = (_EURO["Rm.SP.F"], _EURO["MAN.OP.F"], _EURO["A-M"], _EURO["L-R"])
_AR_PURGE_S = 8 * 1.96 / 1.0 * 60.0  # 8 tube volumes of the 1.96 L tube at 1000 sccm


# ---- ground-truth symptoms ---------------------------------------------------------------

@dataclass
class Run:
    """What a symptom or a check may look at: the world's journal and the case's run."""

    station: Station
    world: SimWorld
    journal: SimJournal
    injected_at: float
    ended_at: float | None = None
    spikes_served: list[float] = field(default_factory=list)


Symptom = Callable[[Run], float | None]


def _truth(pred: Callable[[SimTruth], bool]) -> Symptom:
    """The first truth sample at or after the injection for which ``pred`` holds."""
    def first(run: Run) -> float | None:
        return run.journal.first_time(pred, after_s=run.injected_at)
    return first


def _inert_sccm(truth: SimTruth) -> float:
    return truth.flows_sccm.get("Ar", 0.0) + truth.flows_sccm.get("N2", 0.0)


def _first_spike(run: Run) -> float | None:
    return run.spikes_served[0] if run.spikes_served else None


def _power_back(run: Run) -> float | None:
    """The instrument is back, reset to its local setpoint: the fault's end."""
    return run.journal.fault_time(FaultKind.POWER_CYCLE, "end")


def _air_flowing_unasked(run: Run) -> float | None:
    """Air still flowing after the controller set the air MFC to 0 (stuck valve)."""
    air = run.station.gas("air")
    assert air is not None
    unit = air.unit
    zero = [w for w in run.journal.writes(unit, alicat.SETPOINT.address)
            if w.t_s >= run.injected_at and _value(alicat.SETPOINT, w) == 0.0]
    if not zero:
        return None
    return run.journal.first_time(lambda t: t.flows_sccm["air"] > AIR_FLOWING_SCCM,
                                  after_s=zero[0].t_s)


# ---- the cases ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class At:
    """Inject once the runner has been ``after_s`` into the first ``step`` (a step kind)
    of ``stage``."""

    stage: str
    step: str
    after_s: float


@dataclass(frozen=True)
class Case:
    """One fault of the campaign and what must follow it.

    ``interlocks`` maps each interlock (or NOTE alarm) that counts as detecting the fault
    to the severity it must have; the first one after the injection is the detection.
    ``also`` must trip later too. ``budget_s`` is the detection budget from the symptom.
    ``final``/``reason``: the batch's end state and a substring of its end reason
    (alternatives separated by ``|``).
    ``resume_after_s``: an operator resumes this long after the run was held.
    ``cap_s``: give up this long after the injection (a batch that never ends).
    ``bug``: the controller is known to get this case wrong (strict xfail in the tests;
    no case has one today).
    """

    name: str
    row: str  # faults.md §2 catalogue row
    fault: str  # KIND[:TARGET] as for --fault, without the time
    recipe: str
    at: At
    interlocks: dict[str, str]
    final: Phase
    reason: str
    budget_s: float
    budget_note: str
    symptom: Symptom | None = None
    duration_s: float | None = None
    also: tuple[str, ...] = ()
    resume_after_s: float | None = None
    inert_gap: bool = False  # the fault itself stops the inert gas until the switch
    cap_s: float = 10 * 3600.0
    bug: str | None = None
    extra_safe: tuple[str, ...] = ()  # e.g. "gas_on:N2"

    @property
    def kind(self) -> str:
        return self.fault.partition(":")[0]


_DWELL_600 = At("heat", "dwell", 300.0)
_DWELL_1600 = At("carbonisation", "dwell", 120.0)
_COMMS_BUDGET = (COMMS_LOSS_CYCLES + 1) * PERIOD_S
_COMMS_NOTE = (f"C1: stale after {COMMS_LOSS_CYCLES} failed polls; the first poll after the "
               "fault is at most 1 cycle away")
# C1: stale (hold) after COMMS_LOSS_CYCLES failed polls, give the line up (halt) after T_comm
_BAD_WIRE = {"comms_stale": "hold"}
CASES: tuple[Case, ...] = (
    Case("sensor_break", "S1", "sensor_break", "hot", _DWELL_1600,
         {"sensor_fault": "halt"}, Phase.FAULTED, "sensor_fault",
         2 * PERIOD_S, "S1: safe 1 cycle after the next status read"),
    Case("pv_frozen", "S3", "pv_frozen", "quick", _DWELL_600,
         {"pv_frozen": "halt"}, Phase.FAULTED, "pv_frozen",
         PV_FROZEN_S + PERIOD_S, "S3: PV_FROZEN_S window + 1 cycle"),
    Case("tc_drift", "S7", "tc_drift", "hot", _DWELL_1600,
         {"tc_disagree": "abort"}, Phase.ABORTED, "tc_disagree",
         SAMPLE_TAU_S + PERIOD_S,
         f"S7: control TC {TC_DISAGREE_C:g} K off in truth, + the sample TC's lag "
         f"τ_s {SAMPLE_TAU_S:g} s + 1 cycle",
         symptom=_truth(lambda t: t.tc_c - t.pv_c > TC_DISAGREE_C)),
    Case("pv_spike", "S4", "pv_spike", "quick", At("heat", "ramp", 600.0),
         {"pv_spike": "note"}, Phase.COMPLETED, "recipe completed",
         PERIOD_S, "S4: each spike rejected and noted on the read that saw it",
         symptom=_first_spike),
    Case("heater_open", "A2", "heater_open", "quick", _DWELL_600,
         {"heater_open": "abort"}, Phase.ABORTED, "heater_open",
         HEATER_OPEN_S + PERIOD_S, "A2: HEATER_OPEN_S at 100 % output + 1 cycle",
         symptom=_truth(lambda t: t.output_pct >= 99.9 and t.heater_pct <= 0.0)),
    Case("heater_stuck", "A1", "heater_stuck", "hot", _DWELL_1600,
         {"heater_stuck": "halt", "over_temperature": "abort"}, Phase.FAULTED,
         "heater_stuck|over_temperature", HEATER_STUCK_S + PERIOD_S,
         "A1: HEATER_STUCK_S at 0 % output + 1 cycle",
         symptom=_truth(lambda t: t.output_pct <= 0.1 and t.heater_pct >= 99.0),
         also=("heater_stuck",)),
    Case("comms_loss", "C1", "comms_loss:furnace", "quick", _DWELL_600,
         _BAD_WIRE, Phase.FAULTED, "comms_loss",
         _COMMS_BUDGET, _COMMS_NOTE, also=("comms_loss",)),
    Case("comms_loss_mfc_ar", "G5", "comms_loss:mfc_Ar", "quick", _DWELL_600,
         {"flow_lost:Ar": "abort"}, Phase.ABORTED, "flow_lost:Ar",
         FLOW_LOST_S + 2 * PERIOD_S, "G5 as G1: FLOW_LOST_S from the first failed poll",
         extra_safe=("gas_on:N2",)),
    Case("slow_replies", "C3", "slow_replies:furnace", "quick", _DWELL_600,
         _BAD_WIRE, Phase.FAULTED, "comms_loss", _COMMS_BUDGET, _COMMS_NOTE,
         also=("comms_loss",)),
    Case("exception_replies", "C8", "exception_replies:furnace", "quick", _DWELL_600,
         _BAD_WIRE, Phase.FAULTED, "comms_loss", _COMMS_BUDGET,
         "C8: code 04 from a safety device = lost; " + _COMMS_NOTE, also=("comms_loss",)),
    Case("garbled_replies", "C4", "garbled_replies:furnace", "quick", _DWELL_600,
         _BAD_WIRE, Phase.FAULTED, "comms_loss", _COMMS_BUDGET, _COMMS_NOTE,
         also=("comms_loss",)),
    Case("mfc_no_flow", "G1", "mfc_no_flow:Ar", "quick", _DWELL_600,
         {"flow_lost:Ar": "abort"}, Phase.ABORTED, "flow_lost:Ar",
         FLOW_LOST_S + PERIOD_S, "G1: FLOW_LOST_S below half the setpoint + 1 cycle",
         symptom=_truth(lambda t: t.flows_sccm["Ar"] < 100.0), inert_gap=True,
         extra_safe=("gas_on:N2",)),
    Case("mfc_stuck", "G2", "mfc_stuck:air", "air", At("pre-oxidation", "dwell", 600.0),
         {"o2_high": "hold"}, Phase.ABORTED, "held for more than 60 min",
         _AR_PURGE_S + 2 * PERIOD_S,
         "G2: before the furnace may heat past the air limit, i.e. by the end of the "
         "argon purge that follows the air off + 1 cycle",
         symptom=_air_flowing_unasked),
    Case("air_leak", "G7", "air_leak", "quick", _DWELL_600,
         {"o2_high": "abort"}, Phase.ABORTED, "o2_high",
         SENSOR_TAU_S + 2 * PERIOD_S,
         f"G7: tube O2 over {O2_LIMIT_PPM:g} ppm in truth + the analyser's lag "
         f"{SENSOR_TAU_S:g} s + 1 cycle",
         symptom=_truth(lambda t: t.o2_ppm > O2_LIMIT_PPM)),
    Case("balance_disconnected", "C1", "balance_disconnected", "quick", _DWELL_600,
         {"comms_loss:balance": "note"}, Phase.COMPLETED, "recipe completed",
         _COMMS_BUDGET, _COMMS_NOTE),
    Case("balance_reconnected", "C2", "balance_disconnected", "quick", _DWELL_600,
         {"comms_loss:balance": "note"}, Phase.COMPLETED, "recipe completed",
         _COMMS_BUDGET, _COMMS_NOTE, duration_s=60.0),
    Case("power_cycle", "A4", "power_cycle", "quick", _DWELL_600,
         {"comms_stale": "hold", "remote_setpoint_lost": "hold"}, Phase.COMPLETED,
         "recipe completed",
         2 * PERIOD_S, "A4: the reset seen on the first read after power returns + 1 cycle",
         symptom=_power_back, resume_after_s=120.0),
    Case("exotherm_runaway", "G9", "exotherm_runaway", "air",
         At("pre-oxidation", "ramp", 1500.0),
         {"exotherm_rate": "pause", "exotherm_guard": "pause", "exotherm_cut": "hold"},
         Phase.ABORTED, "held for more than 60 min", 2 * PERIOD_S,
         "G9: ΔT past the guard's stop limit in truth + 1 cycle",
         symptom=_truth(lambda t: t.sample_c - t.tc_c > 15.0), also=("exotherm_cut",)),
    Case("front_panel_manual", "A3", "front_panel:manual", "quick", _DWELL_600,
         {"front_panel_manual": "hold"}, Phase.COMPLETED, "recipe completed",
         2 * PERIOD_S, "A3: mode read back every cycle + 1 cycle", duration_s=600.0,
         resume_after_s=900.0),
    Case("front_panel_local_sp", "A3", "front_panel:local_sp", "quick", _DWELL_600,
         {"remote_setpoint_lost": "hold"}, Phase.ABORTED, "held for more than 60 min",
         2 * PERIOD_S, "A3: setpoint source read back every cycle + 1 cycle"),
    Case("front_panel_manual_left", "A3", "front_panel:manual", "quick", _DWELL_600,
         {"front_panel_manual": "hold"}, Phase.ABORTED, "held for more than 60 min",
         2 * PERIOD_S, "A3: mode read back every cycle + 1 cycle", cap_s=6 * 3600.0),
    Case("front_panel_local_sp_600_left", "A3", "front_panel:local_sp=600", "quick",
         _DWELL_600, {"remote_setpoint_lost": "hold"}, Phase.ABORTED,
         "held for more than 60 min", 2 * PERIOD_S,
         "A3: setpoint source read back every cycle + 1 cycle", cap_s=6 * 3600.0),
)


# ---- running a case ----------------------------------------------------------------------

class _CappedError(Exception):
    """The batch did not end within the case's cap."""


@dataclass
class Outcome:
    """A case's run and what was measured against the journal (process seconds)."""

    case: Case
    spec: str = ""  # the fault as a --fault spec (reproducible with the same seed)
    seed: int = 0
    injected_at: float | None = None
    symptom_at: float | None = None
    detected_at: float | None = None
    detected_by: str = ""
    trip: dict[str, Any] = field(default_factory=dict)
    safe_at: float | None = None
    safe_how: str = ""
    state: str = ""
    end_reason: str = ""
    ended_at: float | None = None
    capped: bool = False
    verify_ok: bool = False
    verify_reason: str = ""
    hot_no_inert_s: float = 0.0  # hot above the air limit without inert flow, all of it
    hot_no_inert_unexplained_s: float = 0.0  # ...outside the fault's own allowed gap
    air_hot_s: float = 0.0  # oxidising gas flowing above the air limit
    max_furnace_c: float = math.nan  # true furnace from the injection to the batch's end
    max_trace_gap_s: float = 0.0
    audit: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    batch_dir: Path | None = None
    checks: list[Check] = field(default_factory=list)
    run: Run | None = None

    @property
    def detect_cycles(self) -> float | None:
        if self.detected_at is None or self.symptom_at is None:
            return None
        return (self.detected_at - self.symptom_at) / PERIOD_S

    @property
    def safe_cycles(self) -> float | None:
        if self.safe_at is None or self.detected_at is None:
            return None
        return (self.safe_at - self.detected_at) / PERIOD_S

    @property
    def survived(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def record(self) -> dict[str, Any]:
        """The §3 JSON result record of this row."""
        return {"fault_id": self.case.name, "row": self.case.row, "spec": self.spec,
                "seed": self.seed, "injected_at": self.injected_at,
                "symptom_at": self.symptom_at, "detected_at": self.detected_at,
                "detected_by": self.detected_by, "safe_at": self.safe_at,
                "safe_how": self.safe_how, "detect_cycles": self.detect_cycles,
                "safe_cycles": self.safe_cycles, "budget_s": self.case.budget_s,
                "state": self.state, "end_reason": self.end_reason,
                "hot_no_inert_s": self.hot_no_inert_s, "air_hot_s": self.air_hot_s,
                "max_furnace_c": self.max_furnace_c, "max_trace_gap_s": self.max_trace_gap_s,
                "verify_ok": self.verify_ok, "survived": self.survived,
                "known_bug": self.case.bug,
                "failed_checks": [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]}


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict on an outcome."""

    name: str
    ok: bool
    detail: str


@dataclass
class _Live:
    step_index: int = -1
    step_t_s: float = 0.0
    injector: FaultInjector | None = None
    held_at: float | None = None
    resumed_at: float | None = None


async def run_case(case: Case, batches: Path, *, seed: int = 0) -> Outcome:
    """Run ``case`` in a batch under ``batches`` and measure it (see the module notes).
    Does not judge it: ``judge`` does (and fills ``Outcome.checks``)."""
    station, station_text = load_station(None)
    assert station.scan_period_s == PERIOD_S, "the budgets are written for a 2 s scan"
    batches.mkdir(parents=True, exist_ok=True)
    recipe_path = batches / f"{case.name}.toml"
    recipe_path.write_text(RECIPES[case.recipe], encoding="utf-8")
    _, plan, frozen = load_recipe(recipe_path, {}, station)
    clock = VirtualClock()
    built = build_devices(station, clock, seed=seed, material=plan.material)
    world = built.world
    assert world is not None, "the built-in station is simulated in process"
    journal = SimJournal(world)
    run = Run(station, world, journal, injected_at=math.nan)
    outcome = Outcome(case, seed=seed, run=run)
    live = _Live()
    if case.kind == FaultKind.PV_SPIKE:
        world.read_hooks.append(_spike_watch(world, station.furnace.unit, run))

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        step = runner.current_step
        if step is not None and runner.step_index != live.step_index:
            live.step_index, live.step_t_s = runner.step_index, snap.t_s
        if (live.injector is None and step is not None and step.stage == case.at.stage
                and step.kind == case.at.step and snap.t_s - live.step_t_s >= case.at.after_s):
            text = f"{case.fault}@{format_duration(snap.t_s)}"
            if case.duration_s is not None:
                text += f"+{format_duration(case.duration_s)}"
            spec = parse_fault(text)
            live.injector = FaultInjector(world, [spec], seed=seed)
            journal.watch(live.injector)
            outcome.spec = str(spec)
        if live.injector is None:
            return
        if runner.phase is Phase.HELD:
            live.held_at = snap.t_s if live.held_at is None else live.held_at
            if (case.resume_after_s is not None and live.resumed_at is None
                    and snap.t_s - live.held_at >= case.resume_after_s):
                runner.command("resume", reason="campaign: instrument checked at the panel",
                               operator=OPERATOR)
                live.resumed_at = snap.t_s
        # (a halted batch the controller supervises until cool has ended: not capped)
        if not runner.is_final and snap.t_s - _injected_t(live) > case.cap_s:
            raise _CappedError(f"still {runner.phase} {case.cap_s / 3600:g} h after the fault")

    result: BatchResult | None = None
    try:
        result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                                 station_text=station_text, clock=clock,
                                 batches_dir=batches, operator="campaign", seed=seed,
                                 observer=observer, built=built)
    except _CappedError:
        outcome.capped = True
    # Nobody there: the world runs on by itself after the batch (the outputs as left).
    t_s = world.now_s
    run.ended_at = t_s
    for _ in range(int(LEFT_ALONE_S / PERIOD_S)):
        t_s += PERIOD_S
        world.advance_to(t_s)
    journal.detach()
    if live.injector is not None:
        live.injector.close()
    batch_dir = result.batch_dir if result is not None else _only_batch(batches)
    outcome.batch_dir = batch_dir
    folder = BatchFolder(batch_dir)
    outcome.audit = list(folder.read_audit())
    outcome.rows = folder.read_trace().records()
    if result is not None:
        outcome.state = str(result.state)
        outcome.end_reason = str(result.summary["end_reason"])
        outcome.ended_at = float(result.summary["actual_s"])
    else:
        outcome.state = next((str(r["new"]) for r in reversed(outcome.audit)
                              if r["event"] == "state_change"), "")
        outcome.end_reason = "did not end: capped"
    verdict = verify_batch(batch_dir)
    outcome.verify_ok, outcome.verify_reason = verdict.ok, verdict.reason
    _measure(outcome, journal)
    return outcome


def _injected_t(live: _Live) -> float:
    """Process time of the injection (the observer's view; before it: +inf)."""
    if live.injector is None:
        return math.inf
    events = live.injector.events
    return events[0].t_s if events else math.inf


def _spike_watch(world: SimWorld, unit: int, run: Run) -> Callable[[int, int, int, float],
                                                                  None]:
    """A read hook (placed before the injector's, which clears the spike once read) that
    records each read that served a spiked PV."""
    addresses = {_EURO["PV.IN"].address, _EURO["PV.IN.F"].address}

    def hook(u: int, address: int, count: int, t_s: float) -> None:
        if (u == unit and world.furnace.pv_spike_k != 0.0
                and any(address <= a < address + count for a in addresses)):
            run.spikes_served.append(t_s)
    return hook


def _only_batch(batches: Path) -> Path:
    dirs = [p for p in batches.iterdir() if p.is_dir()]
    assert len(dirs) == 1, f"expected one batch folder in {batches}, found {dirs}"
    return dirs[0]


# ---- measuring ---------------------------------------------------------------------------



def _value(reg: Register, w: JournalWrite) -> float:
    offset = reg.address - w.address
    return decode(reg, w.words[offset:offset + reg.word_count])


def _writes(journal: SimJournal, unit: int, reg: Register) -> list[tuple[float, float]]:
    return [(w.t_s, _value(reg, w)) for w in journal.writes(unit, reg.address)
            if w.address <= reg.address and reg.address + reg.word_count
            <= w.address + len(w.words)]


def _first(writes: list[tuple[float, float]], after_s: float,
           pred: Callable[[float], bool]) -> float | None:
    return next((t for t, v in writes if t >= after_s - 1e-9 and pred(v)), None)


def _safe_at(outcome: Outcome, journal: SimJournal, trip: dict[str, Any], from_s: float
             ) -> tuple[float | None, str]:
    """When the outputs first did what ``trip``'s action promised, from the writes the
    instruments accepted (and, for the instrument's own fallback, from its truth)."""
    run = outcome.run
    assert run is not None
    station = run.station
    unit = station.furnace.unit
    action = str(trip.get("action", ""))
    severity = str(trip.get("severity", ""))
    needs: list[tuple[str, float | None]] = []
    rm = _writes(journal, unit, _RM_SP)
    if severity == "halt" and "heater off" in action:
        man = _first(_writes(journal, unit, _MAN_OP), from_s, lambda v: v == 0.0)
        am = _first(_writes(journal, unit, _AM), from_s, lambda v: v == 1.0)
        needs.append(("heater off (MAN.OP 0 %, A-M manual)",
                      None if man is None or am is None else max(man, am)))
    elif severity == "halt" or trip.get("interlock") == "comms_stale":
        # out of reach: the instrument's own remote-setpoint timeout is the safe state
        local = _first(_writes(journal, unit, _LR), from_s, lambda v: v == 0.0)
        failed = journal.first_time(lambda t: bool(t.status & Status.REMOTE_SP_FAIL),
                                    after_s=from_s)
        times = [t for t in (local, failed) if t is not None]
        needs.append(("instrument on its local setpoint (L-R 0 or remote timeout)",
                      min(times) if times else None))
    elif "heat cut" in action:
        ambient = station.envelope.ambient_c
        needs.append((f"setpoint {ambient:g} °C (heat cut)",
                      _first(rm, from_s, lambda v: v <= ambient + 0.05)))
    elif severity in ("abort", "hold", "pause"):
        before = [v for t, v in rm if t < from_s - 1e-9]
        last = before[-1] if before else math.inf
        needs.append(("setpoint no longer rising",
                      _first(rm, from_s, lambda v: v <= last + 1e-3)))
    for extra in outcome.case.extra_safe:
        what, _, gas = extra.partition(":")
        if what == "gas_on":
            mfc = station.gas(gas)
            assert mfc is not None
            needs.append((f"{gas} on", _first(_writes(journal, mfc.unit, alicat.SETPOINT),
                                              from_s, lambda v: v > 0.0)))
    if not needs:
        return None, ""
    how = "; ".join(n for n, _ in needs)
    if any(t is None for _, t in needs):
        return None, how + " — not seen"
    return max(t for _, t in needs if t is not None), how


def _trips(audit: list[dict[str, Any]], names: set[str] | dict[str, str], after_s: float
           ) -> list[dict[str, Any]]:
    out = []
    for r in audit:
        if r["t_s"] < after_s - 1e-9:
            continue
        if r["event"] == "interlock_trip" and r.get("interlock") in names:
            out.append(r)
        elif r["event"] == "alarm" and r.get("alarm") in names:
            out.append(dict(r, interlock=r["alarm"], severity="note"))
    return out


def _measure(outcome: Outcome, journal: SimJournal) -> None:
    run = outcome.run
    assert run is not None
    case = outcome.case
    injected = journal.fault_time(case.kind)
    outcome.injected_at = injected
    if injected is None:
        return
    run.injected_at = injected
    outcome.symptom_at = case.symptom(run) if case.symptom is not None else injected
    trips = _trips(outcome.audit, case.interlocks, injected)
    if trips:
        trip = trips[0]
        outcome.trip = trip
        outcome.detected_at = float(trip["t_s"])
        outcome.detected_by = str(trip["interlock"])
        outcome.safe_at, outcome.safe_how = _safe_at(outcome, journal, trip,
                                                     outcome.detected_at)
    station = run.station
    air_max = station.envelope.air_max_c
    oxidising = [m.gas for m in station.mfc if m.oxidising]
    allowed = (injected, (outcome.safe_at or math.inf) + 2 * PERIOD_S) if case.inert_gap \
        else (math.inf, math.inf)
    samples = [s for s in journal.samples if s.t_s >= injected]
    for s in samples:
        if s.furnace_c <= air_max:
            continue
        if _inert_sccm(s) < INERT_MIN_SCCM:
            outcome.hot_no_inert_s += PERIOD_S
            if not allowed[0] <= s.t_s <= allowed[1]:
                outcome.hot_no_inert_unexplained_s += PERIOD_S
        if any(s.flows_sccm[g] > AIR_FLOWING_SCCM for g in oxidising):
            outcome.air_hot_s += PERIOD_S
    ended = run.ended_at if run.ended_at is not None else math.inf
    outcome.max_furnace_c = max((s.furnace_c for s in samples if s.t_s <= ended),
                                default=math.nan)
    t = [float(r["elapsed_s"]) for r in outcome.rows]
    outcome.max_trace_gap_s = max((b - a for a, b in zip(t, t[1:], strict=False)),
                                  default=0.0)


# ---- judging -----------------------------------------------------------------------------

def _is_number(x: object) -> bool:
    return isinstance(x, int | float) or x == "NaN"


def judge(outcome: Outcome) -> list[Check]:
    """Every acceptance check of the issue on ``outcome``; also stored in ``checks``."""
    case, run = outcome.case, outcome.run
    checks: list[Check] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, bool(ok), detail))

    check("injected", outcome.injected_at is not None,
          f"{outcome.spec or case.fault} at {outcome.injected_at}")
    if outcome.injected_at is None or run is None:
        outcome.checks = checks
        return checks
    check("symptom in truth", outcome.symptom_at is not None,
          f"first symptom at {outcome.symptom_at}")
    # detection within budget, by the expected interlock and severity
    latency = (None if outcome.detected_at is None or outcome.symptom_at is None
               else outcome.detected_at - outcome.symptom_at)
    check("detected", outcome.detected_at is not None,
          f"first of {sorted(case.interlocks)} after the injection: "
          f"{outcome.detected_by or 'none'} at {outcome.detected_at}; "
          f"other trips: {_other_trips(outcome)}")
    check("detected within budget", latency is not None and latency <= case.budget_s + 1e-6,
          f"{latency} s from the symptom, budget {case.budget_s:g} s ({case.budget_note})")
    trip = outcome.trip
    if trip:
        want = case.interlocks[outcome.detected_by]
        check("severity", trip.get("severity") == want,
              f"{outcome.detected_by}: {trip.get('severity')}, expected {want}")
        check("audit names reading, limit, action",
              all(k in trip for k in ("measured", "limit", "action", "justification"))
              and _is_number(trip["measured"]) and _is_number(trip["limit"])
              and bool(str(trip["action"])),
              json.dumps({k: trip.get(k) for k in ("interlock", "severity", "measured",
                                                   "limit", "action")}, ensure_ascii=False))
    for name in case.also:
        later = _trips(outcome.audit, {name}, outcome.injected_at)
        check(f"also {name}", bool(later),
              f"{name} at {later[0]['t_s'] if later else None}")
        if later and run is not None:
            t_safe, how = _safe_at(outcome, run.journal, later[0], float(later[0]["t_s"]))
            check(f"{name} made safe within 1 cycle",
                  t_safe is not None and t_safe - float(later[0]["t_s"]) <= PERIOD_S + 1e-6,
                  f"{how} at {t_safe}")
    # outputs safe within one scan cycle of detection (the instrument's own fallback when
    # it cannot be reached: within its remote-setpoint timeout of the last setpoint write)
    if trip and trip.get("severity") != "note":
        budget = PERIOD_S
        detected = outcome.detected_at if outcome.detected_at is not None else math.nan
        unreachable = trip.get("interlock") == "comms_stale" or (
            trip.get("severity") == "halt" and "heater off" not in str(trip.get("action")))
        if unreachable:
            rm = _writes(run.journal, run.station.furnace.unit, _RM_SP)
            last = max((t for t, _ in rm if t <= detected + 1e-9),
                       default=outcome.injected_at)
            budget = max(budget, last + REMOTE_TIMEOUT_S + PERIOD_S - detected)
        safe_latency = None if outcome.safe_at is None else outcome.safe_at - detected
        check("outputs safe within budget",
              safe_latency is not None and safe_latency <= budget + 1e-6,
              f"{outcome.safe_how} at {outcome.safe_at}: {safe_latency} s after detection, "
              f"budget {budget:g} s")
        _truth_confirms(outcome, checks)
    # inert gas above the oxidation temperature, oxidising gas off
    check("inert gas while hot", outcome.hot_no_inert_unexplained_s == 0.0,
          f"{outcome.hot_no_inert_s:g} s above {run.station.envelope.air_max_c:g} °C without "
          f"{INERT_MIN_SCCM:g} sccm inert ({outcome.hot_no_inert_unexplained_s:g} s outside "
          "the fault's own gap)")
    check("no air while hot", outcome.air_hot_s == 0.0,
          f"{outcome.air_hot_s:g} s of oxidising flow above the air limit")
    # the end: state, reason, records
    check("end state", not outcome.capped and outcome.state == str(case.final),
          f"{outcome.state} ({outcome.end_reason}), expected {case.final}")
    check("end reason", any(r in outcome.end_reason for r in case.reason.split("|")),
          f"{outcome.end_reason!r} should contain {case.reason!r}")
    check("furnace verify", outcome.verify_ok, outcome.verify_reason)
    _kind_checks(outcome, checks)
    outcome.checks = checks
    return checks


def _other_trips(outcome: Outcome) -> str:
    after = outcome.injected_at or 0.0
    names = [f"{r.get('interlock') or r.get('alarm')}@{r['t_s']:g}" for r in outcome.audit
             if r["event"] in ("interlock_trip", "alarm") and r["t_s"] >= after]
    return ", ".join(names[:6]) or "none"


def _truth_confirms(outcome: Outcome, checks: list[Check]) -> None:
    """After the safe writes, the simulator's truth shows them in effect until an operator
    resumes: heater output 0 %, or the working setpoint not rising."""
    run = outcome.run
    if run is None or outcome.safe_at is None:
        return
    resumed = next((float(r["t_s"]) for r in outcome.audit if r["event"] == "state_change"
                    and r.get("operator") == OPERATOR), math.inf)
    window = [s for s in run.journal.samples
              if outcome.safe_at + PERIOD_S <= s.t_s < resumed]
    if not window:
        return
    if "heater off" in outcome.safe_how:
        worst = max(s.output_pct for s in window)
        checks.append(Check("truth: heater output 0 %", worst <= 0.5,
                            f"max instrument output {worst:.1f} % after the safe writes"))
    else:
        base = window[0].working_sp_c
        worst = max(s.working_sp_c for s in window) - base
        checks.append(Check("truth: working setpoint not rising", worst <= 0.5,
                            f"rose {worst:.2f} K above {base:.1f} °C after the safe writes"))


def _kind_checks(outcome: Outcome, checks: list[Check]) -> None:
    case, run = outcome.case, outcome.run
    assert run is not None
    kind = case.kind
    if kind == FaultKind.PV_SPIKE:
        flagged = sum("pv_spike" in r["flags"] for r in outcome.rows)
        checks.append(Check("every spike flagged in the trace",
                            flagged == len(run.spikes_served) > 0,
                            f"{len(run.spikes_served)} spikes served, {flagged} rows flagged"))
    if case.final is Phase.COMPLETED or kind == FaultKind.PV_SPIKE:
        stray = [r for r in outcome.audit if r["event"] == "interlock_trip"
                 and r["t_s"] >= (outcome.injected_at or 0.0)
                 and r["interlock"] not in case.interlocks]
        checks.append(Check("no other interlock", not stray,
                            ", ".join(f"{r['interlock']}@{r['t_s']:g}" for r in stray)
                            or "none"))
    if kind in (FaultKind.COMMS_LOSS, FaultKind.SLOW_REPLIES, FaultKind.EXCEPTION_REPLIES,
                FaultKind.GARBLED_REPLIES, FaultKind.BALANCE_DISCONNECTED):
        t0, t1 = outcome.injected_at or 0.0, outcome.detected_at or math.inf
        stale = [r for r in outcome.rows if t0 < float(r["elapsed_s"]) <= t1
                 and "stale:" in r["flags"]]
        checks.append(Check("trace flags the silent device", bool(stale),
                            f"{len(stale)} rows flagged stale between fault and detection"))
    back = run.journal.fault_time(kind, "end") if case.duration_s is not None else None
    if back is not None and all(v == "note" for v in case.interlocks.values()):
        cleared = [r for r in outcome.audit if r["event"] == "alarm_cleared"
                   and r.get("alarm") in case.interlocks and r["t_s"] >= back]
        checks.append(Check("alarm cleared once the device is back", bool(cleared),
                            f"device back at {back:g}; cleared at "
                            f"{cleared[0]['t_s'] if cleared else None}"))
        stale = [r for r in outcome.rows if float(r["elapsed_s"]) > back + 2 * PERIOD_S
                 and "stale:" in r["flags"]]
        first = f"{stale[0]['elapsed_s']} {stale[0]['flags']}" if stale else "-"
        checks.append(Check("trace not stale once the device is back", not stale,
                            f"{len(stale)} rows flagged stale after {back + 2 * PERIOD_S:g} s "
                            f"(first: {first})"))
    if case.resume_after_s is not None:
        reconf = [r for r in outcome.audit if r["event"] == "instrument_reconfigured"
                  and r["t_s"] >= (outcome.injected_at or 0.0)]
        checks.append(Check("instrument reconfigured on resume", bool(reconf),
                            f"{len(reconf)} instrument_reconfigured records"))
    if case.recipe == "hot":
        limit = run.station.envelope.max_temperature_c
        ok = outcome.max_furnace_c <= limit or kind == FaultKind.HEATER_STUCK
        checks.append(Check("true furnace within the station maximum", ok,
                            f"max {outcome.max_furnace_c:.1f} °C, limit {limit:g} °C"
                            + (" (a stuck heater is the hardware cut-out's job)"
                               if kind == FaultKind.HEATER_STUCK else "")))

