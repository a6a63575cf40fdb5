"""Recovery after a crash, kill -9 or reboot: rebuild a batch's state from its folder, check
that the furnace is plausibly where the batch left it, and decide how to go on.

Not here: running (``session.resume_batch``). The frozen ``recipe.toml`` and
``station.toml`` are the only inputs; the original recipe file is never read again.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.audit import scan_chain
from controller.interlocks import O2_LIMIT_PPM
from controller.plan import load_recipe
from controller.snapshot import Snapshot
from controller.station import Station, load_station
from controller.steps import Dwell, OperatorStep, Plan, Purge, Ramp
from drivers.errors import ConfigurationError

__all__ = ["Policy", "Recovered", "decide", "recover"]

# The furnace is where the batch left it if within this of the setpoint then in force.
PLAUSIBLE_BAND_C = 25.0
# Away longer than this, a person decides: the process may have changed too much.
MAX_UNATTENDED_OUTAGE_S = 4 * 3600.0
_FINAL = {"completed", "aborted", "faulted"}


class Policy(StrEnum):
    """How a resumed batch goes on (the stage's policy, judged on the furnace's state)."""

    CONTINUE = "continue"  # the furnace is where it was: carry on with the step
    RAMP_BACK = "ramp back"  # it cooled (instrument fallback): ramp back, then carry on
    HOLD = "hold for the operator"  # implausible or uncertain: a person decides
    ABORT = "abort with a controlled cool-down"  # unsafe to go on


@dataclass(frozen=True, slots=True)
class Recovered:
    """A batch's state rebuilt from its folder."""

    batch_dir: Path
    plan: Plan
    station: Station
    recipe_text: str
    station_text: str
    last_t_s: float  # process time of the last record (audit or trace)
    last_wall: datetime  # its wall time (UTC)
    state: str  # runner state at the last record
    step_index: int
    setpoint_c: float
    furnace_c: float  # last recorded furnace temperature
    flows_sccm: dict[str, float]
    purged: frozenset[str]
    counted_s: float  # counted dwell or purge time of the current step
    holdback_s: float
    stage_started_t_s: dict[str, float] = field(default_factory=dict)
    operator: str = ""
    torn_audit_bytes: int = 0


def _records(batch_dir: Path) -> tuple[list[dict[str, Any]], int]:
    path = batch_dir / "audit.jsonl"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read ({exc.strerror})", source=str(path)) from None
    scan = scan_chain(data)
    if scan.bad_index is not None:
        raise ConfigurationError(f"audit chain broken, cannot resume: {scan.reason}",
                                 source=str(path))
    lines = data[:scan.end_offset].splitlines()
    return [json.loads(line) for line in lines], len(scan.torn_tail)


def _trace_tail(batch_dir: Path, step_index: int, plan: Plan
                ) -> tuple[dict[str, str] | None, float, float]:
    """The last complete trace row, and the counted and holdback time of the step."""
    last: dict[str, str] | None = None
    counted_s = holdback_s = 0.0
    step = plan.steps[step_index] if step_index < len(plan.steps) else None
    prev_t: float | None = None
    with open(batch_dir / "trace.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if None in row.values() or None in row:  # a torn last row
                continue
            last = row
            if row["step"] != str(step_index) or row["state"] != "running":
                prev_t = None
                continue
            t_s = float(row["elapsed_s"])
            dt_s = t_s - prev_t if prev_t is not None else 0.0
            prev_t = t_s
            if isinstance(step, Dwell) and row["furnace_c"]:
                if abs(float(row["furnace_c"]) - step.at_c) <= step.band_c:
                    counted_s += dt_s
                else:
                    holdback_s += dt_s
    return last, counted_s, holdback_s


def recover(batch_dir: Path) -> Recovered:
    """Rebuild the batch's state. Raises ``ConfigurationError`` if the folder is not an
    interrupted batch (missing files, a broken chain, or a batch that already ended)."""
    for name in ("recipe.toml", "station.toml", "audit.jsonl", "trace.csv"):
        if not (batch_dir / name).is_file():
            raise ConfigurationError(f"not a batch folder (no {name})", source=str(batch_dir))
    station, station_text = load_station(batch_dir / "station.toml")
    _, plan, recipe_text = load_recipe(batch_dir / "recipe.toml", {}, station)
    records, torn = _records(batch_dir)
    state, step_index, operator = "idle", 0, ""
    flows = {m.gas: 0.0 for m in station.mfc}
    oxidising = {m.gas for m in station.mfc if m.oxidising}
    purged: set[str] = set()
    stage_started: dict[str, float] = {}
    for rec in records:
        event = rec["event"]
        if event == "batch_ended":
            raise ConfigurationError("this batch already ended; nothing to resume",
                                     source=str(batch_dir))
        if event == "batch_created":
            operator = str(rec.get("operator", ""))
        elif event == "state_change":
            state = str(rec["new"])
        elif event == "step_started":
            step_index = int(rec["index"])
            stage_started.setdefault(str(rec["stage"]), float(rec["t_s"]))
        elif event == "gas_change":
            flows = {g: float(v) for g, v in rec["new"].items()}
            if any(flows.get(g, 0.0) > 0 for g in oxidising):
                purged.clear()
        elif event == "purge_complete":
            purged.add(str(rec["gas"]))
        elif event == "operator_confirmed" and step_index < len(plan.steps):
            step = plan.steps[step_index]
            if isinstance(step, OperatorStep) and step.opens_tube:
                purged.clear()
    if state in _FINAL:
        raise ConfigurationError(f"this batch already ended ({state}); nothing to resume",
                                 source=str(batch_dir))
    last_row, counted_s, holdback_s = _trace_tail(batch_dir, step_index, plan)
    last_rec = records[-1]
    last_t_s, last_wall = float(last_rec["t_s"]), datetime.fromisoformat(
        str(last_rec["wall_utc"]).replace("Z", "+00:00"))
    setpoint_c = furnace_c = station.envelope.ambient_c
    if last_row is not None:
        row_t = float(last_row["elapsed_s"])
        setpoint_c = float(last_row["setpoint_c"])
        furnace_c = float(last_row["furnace_c"]) if last_row["furnace_c"] else math.nan
        if row_t > last_t_s:
            last_t_s = row_t
            last_wall = datetime.fromisoformat(last_row["wall_utc"].replace("Z", "+00:00"))
    return Recovered(batch_dir, plan, station, recipe_text, station_text, last_t_s,
                     last_wall, state, step_index, setpoint_c, furnace_c, flows,
                     frozenset(purged), counted_s, holdback_s, stage_started, operator, torn)


def decide(rec: Recovered, snap: Snapshot, outage_s: float
           ) -> tuple[Policy, str, Plan, int]:
    """The policy for ``rec`` given the furnace's state now (``snap``) after ``outage_s``.

    Returns (policy, one-line reason, the plan to run, the step to start at). RAMP_BACK
    inserts a ramp back to the step's temperature before it, at the station's rate.
    """
    env, plan, i = rec.station.envelope, rec.plan, rec.step_index
    step = plan.steps[i] if i < len(plan.steps) else None
    if rec.state in ("aborting", "stopping"):
        return Policy.ABORT, f"the batch was {rec.state} when it stopped", plan, i
    if snap.furnace is None:
        return Policy.ABORT, "the furnace controller does not answer", plan, i
    now_c = snap.furnace_c
    inert_expected = any(f > 0 for g, f in rec.flows_sccm.items()
                         if (m := rec.station.gas(g)) is not None and not m.oxidising)
    if now_c > env.air_max_c and inert_expected:
        flowing = [g for g, f in rec.flows_sccm.items() if f > 0
                   and (m := rec.station.gas(g)) is not None and not m.oxidising
                   and snap.flow_sccm(g) >= 0.5 * f]
        if not flowing:
            return (Policy.ABORT, f"furnace at {now_c:.0f} °C without verified inert flow",
                    plan, i)
        if snap.o2_ppm is not None and snap.o2_ppm > O2_LIMIT_PPM and rec.purged:
            return (Policy.ABORT, f"O2 {snap.o2_ppm:.0f} ppm in the hot inert tube", plan, i)
    if outage_s > MAX_UNATTENDED_OUTAGE_S:
        return (Policy.HOLD, f"away {outage_s / 3600:.1f} h: longer than "
                f"{MAX_UNATTENDED_OUTAGE_S / 3600:.0f} h, a person decides", plan, i)
    expected_c = step.at_c if isinstance(step, Dwell) else rec.setpoint_c
    deviation_c = now_c - expected_c
    if isinstance(step, OperatorStep | Purge) or abs(deviation_c) <= PLAUSIBLE_BAND_C:
        return (Policy.CONTINUE, f"furnace at {now_c:.0f} °C, {deviation_c:+.0f} K from "
                f"{expected_c:.0f} °C", plan, i)
    if deviation_c > 0:
        return (Policy.HOLD, f"furnace at {now_c:.0f} °C, {deviation_c:.0f} K above where "
                "the batch left it: implausible", plan, i)
    if step is None:
        return Policy.CONTINUE, "at the end of the recipe", plan, i
    target_c = expected_c if isinstance(step, Dwell | Ramp) else now_c
    rate = env.max_rate_between(now_c, target_c)
    if isinstance(step, Ramp):
        rate = min(rate, step.rate_c_per_min)
    back = Ramp(stage=step.stage, label=f"ramp back to {target_c:g} °C after the outage",
                to_c=target_c, rate_c_per_min=rate)
    steps = (*plan.steps[:i], back, *plan.steps[i:])
    new_plan = Plan(plan.recipe_name, plan.sample_name, plan.stages, steps, plan.parameters,
                    plan.material)
    return (Policy.RAMP_BACK, f"furnace at {now_c:.0f} °C, {-deviation_c:.0f} K below "
            f"{expected_c:.0f} °C: ramping back at {rate:g} °C/min", new_plan, i)
