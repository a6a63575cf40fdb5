"""What each step kind does in a running cycle: ``run_step`` moves the setpoint, the flows or
the step's progress on one ``Cycle`` and leaves the step once it is done.

Not here: what holds, stops or aborts a run, the bookkeeping of entering and leaving a step
(``cycle``), or what the step kinds are (``controller.recipe.steps``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from controller.recipe.steps import Cool, Dwell, End, OperatorStep, Purge, Ramp, SetGas
from controller.run.snapshot import Snapshot
from controller.run.step_data import confirmation, simulated_data

if TYPE_CHECKING:
    from controller.run.cycle import Cycle

__all__ = ["run_step"]

# A gas step is done once every flow is within this fraction of full scale of its setpoint.
_FLOW_TOLERANCE_FRACTION = 0.05
# Purge time counts only while the flow is at least this fraction of its setpoint.
_PURGE_FLOW_FRACTION = 0.9
# Flows must settle within this much running time, else the run holds.
_GAS_SETTLE_TIMEOUT_S = 120.0


def run_step(c: Cycle, snap: Snapshot, dt_s: float) -> None:
    """Advance the current step of ``c`` by ``dt_s`` seconds on ``snap``."""
    step = c.step_now()
    done = False
    match step:
        case Ramp():
            done = not c.ramp_paused and c.ramp_toward(
                step.to_c, step.rate_c_per_min, dt_s)
        case Dwell():
            done = _dwell(c, step, snap, dt_s)
        case SetGas():
            done = _gas(c, step.flow_map, snap, dt_s)
        case Purge():
            done = _purge(c, step, snap, dt_s)
        case Cool():
            c.ramp_toward(c.env.ambient_c, step.rate_c_per_min, dt_s)
            done = snap.furnace_c <= step.to_c
        case OperatorStep():
            done = _operator(c, step, snap, dt_s)
        case End():
            c.ramp_toward(c.env.ambient_c, c.env.max_cooling_rate_c_per_min, dt_s)
            done = True
    if done:
        c.leave_step(snap)


def _dwell(c: Cycle, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
    c.setpoint_c = step.at_c
    p = c.progress
    if abs(snap.furnace_c - step.at_c) <= step.band_c:
        p = replace(p, counted_s=p.counted_s + dt_s)
    else:
        p = replace(p, holdback_s=p.holdback_s + dt_s)
        c.holdback_total_s += dt_s
        if p.holdback_s > step.max_holdback_s:
            c.audit("alarm", alarm="holdback_exceeded", measured=snap.furnace_c,
                    limit=step.band_c, holdback_s=p.holdback_s,
                    max_holdback_s=step.max_holdback_s)
            c.progress = replace(p, holdback_s=0.0)
            c.hold_cause, c.hold_auto_resume_s = "holdback_exceeded", None
            c.fire("hold", reason="furnace out of the holdback band for longer "
                   f"than {step.max_holdback_s / 60:.0f} min")
            return False
    c.progress = p
    if step.endpoint is not None:
        return _endpoint(c, step, snap, dt_s)
    return p.counted_s >= step.duration_s


def _endpoint(c: Cycle, step: Dwell, snap: Snapshot, dt_s: float) -> bool:
    """A cross-linking endpoint: |DTG| below the threshold for long enough, after the
    minimum dwell; the dwell's duration is the maximum."""
    ep = step.endpoint
    if ep is None:
        return False
    counted_s = c.progress.counted_s
    dtg = snap.dtg_pct_per_min
    quiet = (counted_s >= ep.min_s and dtg is not None
             and abs(dtg) < ep.dtg_below_pct_per_min)
    c.progress = replace(c.progress, quiet_s=c.progress.quiet_s + dt_s if quiet else 0.0)
    if c.progress.quiet_s >= ep.for_s:
        c.audit("endpoint_reached", dtg_pct_per_min=dtg,
                limit=ep.dtg_below_pct_per_min, counted_s=counted_s)
        return True
    if counted_s >= step.duration_s:
        c.audit("alarm", alarm="endpoint_not_reached", dtg_pct_per_min=dtg,
                limit=ep.dtg_below_pct_per_min, counted_s=counted_s,
                action="dwell ended at its maximum duration")
        return True
    return False


def _flows_reached(c: Cycle, snap: Snapshot) -> bool:
    for mfc in c.station.mfc:
        tolerance = _FLOW_TOLERANCE_FRACTION * mfc.full_scale_sccm
        if not abs(snap.flow_sccm(mfc.gas) - c.flows_sccm[mfc.gas]) <= tolerance:
            return False
    return True


def _gas(c: Cycle, flows: dict[str, float], snap: Snapshot, dt_s: float) -> bool:
    c.set_flows(flows)
    if _flows_reached(c, snap):
        return True
    # Only running time counts toward the settle timeout: time spent held (for an O2
    # or flow hold, say) is not the flows' fault.
    waited_s = c.progress.waited_s + dt_s
    c.progress = replace(c.progress, waited_s=waited_s)
    if waited_s > _GAS_SETTLE_TIMEOUT_S:
        c.audit("alarm", alarm="flow_not_reached", wanted=dict(c.flows_sccm),
                measured={g: snap.flow_sccm(g) for g in c.flows_sccm})
        c.progress = replace(c.progress, waited_s=0.0)
        c.hold_cause, c.hold_auto_resume_s = "flow_not_reached", None
        c.fire("hold", reason="gas flows did not reach their setpoints")
    return False


def _purge(c: Cycle, step: Purge, snap: Snapshot, dt_s: float) -> bool:
    c.set_flows({step.gas: step.flow_sccm})
    p = c.progress
    if snap.flow_sccm(step.gas) >= _PURGE_FLOW_FRACTION * step.flow_sccm:
        p = c.progress = replace(p, counted_s=p.counted_s + dt_s)
    if p.counted_s < step.duration_s:
        return False
    if step.o2_max_ppm is not None:
        o2 = snap.o2_ppm
        if o2 is None or o2 > step.o2_max_ppm:
            waited_s = p.counted_s - step.duration_s
            if step.timeout_s and waited_s > step.timeout_s:
                c.audit("alarm", alarm="purge_o2_not_reached", measured=o2,
                        limit=step.o2_max_ppm)
                c.hold_cause, c.hold_auto_resume_s = "purge_o2_not_reached", None
                c.fire("hold", reason="O2 did not fall below the purge limit")
            return False
    c.purged.add(step.gas)
    c.audit("purge_complete", gas=step.gas, volumes=step.volumes,
            counted_s=p.counted_s, o2_ppm=snap.o2_ppm)
    return True


def _operator(c: Cycle, step: OperatorStep, snap: Snapshot, dt_s: float) -> bool:
    if step.max_c is not None and not snap.furnace_c <= step.max_c:
        return False  # wait: the tube may not be opened yet
    if step.open_flows_sccm is not None:
        c.set_flows(dict(step.open_flows_sccm))  # the station's open-tube rule
    if not c.progress.confirmed:
        # The time since the step may begin, counted like a dwell's (a checkpoint carries
        # it): the simulated operator takes the step's expected time, as a person would, so
        # a dry run and a prediction (``controller.predict``) both count it; a prediction
        # from a running batch counts what a real person has already spent.
        counted_s = c.progress.counted_s
        if counted_s < step.expected_s:
            c.progress = replace(c.progress, counted_s=counted_s + dt_s)
        if not c.r.auto_confirm or counted_s < step.expected_s:
            return False
        c.progress = replace(c.progress, confirmed=True)
        data, source = simulated_data(step, c.r.readings, c.r.plan.material, snap.mass_g)
        c.audit("operator_confirmed", furnace_c=snap.furnace_c, **confirmation(
            step, c.step_index, data, operator="simulator",
            how="confirmed automatically (simulated station)", simulated=True,
            source=source))
    if step.opens_tube:
        c.purged.clear()
        c.tube_opened = True
    return True
