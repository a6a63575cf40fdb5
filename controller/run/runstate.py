"""The run state: one frozen value holding everything the runner knows about a batch, the
phases it moves through, and how it is written into (and read back from) a checkpoint.

Not here: how the state changes (``runner``) or where checkpoints are stored (the audit
chain, ``scan``). A checkpoint is the whole value as JSON; resume loads the last one and
never replays events (docs/decisions/0008-run-state.md). The ``Phase`` values are a record
format (the trace's ``state`` column, the audit), so the enum lives with the trace's columns
in ``controller/records/columns.py`` and is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final

from controller.recipe.steps import Plan, Ramp, Step
from controller.records.columns import Phase
from drivers.errors import ConfigurationError

__all__ = [
    "FINAL",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "CheckpointError",
    "Phase",
    "RunState",
    "StepProgress",
    "current_step",
    "frozen_map",
    "from_record",
    "initial_state",
    "to_record",
]

# Bump when a field is added, removed or changes meaning; resume refuses other versions.
SCHEMA_VERSION: Final = 1


P = Phase
_ACTIVE = [P.PREFLIGHT, P.RUNNING, P.HELD, P.STOPPING, P.ABORTING]
FINAL: Final = frozenset({P.COMPLETED, P.ABORTED, P.FAULTED})

# trigger          source                         destination
TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "start", "source": P.IDLE, "dest": P.PREFLIGHT},
    {"trigger": "preflight_ok", "source": P.PREFLIGHT, "dest": P.RUNNING},
    {"trigger": "hold", "source": P.RUNNING, "dest": P.HELD},
    {"trigger": "resume", "source": P.HELD, "dest": P.RUNNING},
    {"trigger": "stop", "source": [P.RUNNING, P.HELD], "dest": P.STOPPING},
    {"trigger": "abort", "source": _ACTIVE, "dest": P.ABORTING},
    {"trigger": "finish", "source": P.RUNNING, "dest": P.COMPLETED},
    {"trigger": "cooled", "source": [P.STOPPING, P.ABORTING], "dest": P.ABORTED},
    {"trigger": "fault", "source": [P.IDLE, *_ACTIVE], "dest": P.FAULTED},
]


class CheckpointError(ConfigurationError):
    """A checkpoint cannot be loaded: another schema version, or not a run state."""


def frozen_map(values: Mapping[str, float]) -> MappingProxyType[str, float]:
    """A read-only copy of ``values`` (for the mapping fields of ``RunState``)."""
    return MappingProxyType(dict(values))


_EMPTY: MappingProxyType[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StepProgress:
    """How far the current step has got. Times are seconds of process time."""

    started_t_s: float
    counted_s: float = 0.0  # dwell time in band, or purge time at flow
    holdback_s: float = 0.0  # dwell time out of band since the last holdback alarm
    quiet_s: float = 0.0  # dwell time with |DTG| under the endpoint threshold
    waited_s: float = 0.0  # running time spent waiting for gas flows to settle
    confirmed: bool = False  # an operator step was confirmed


@dataclass(frozen=True, slots=True)
class RunState:
    """Everything the runner knows, as one value. ``Runner.step`` makes the next one.

    The current step is ``inserted[0]`` if there is one (a ramp back inserted by resume),
    else ``plan.steps[step_index]``; inserted steps live here, not in the plan, so any
    number of crash/resume cycles neither skips nor repeats a step of the plan.
    """

    phase: Phase = Phase.IDLE
    step_index: int = 0
    inserted: tuple[Ramp, ...] = ()
    progress: StepProgress = field(default_factory=lambda: StepProgress(0.0))
    suspended: StepProgress | None = None  # the plan step's progress while inserted run
    setpoint_c: float = 25.0
    # commanded flows, every MFC
    flows_sccm: MappingProxyType[str, float] = field(default_factory=lambda: _EMPTY)
    rate_limit_c_per_min: float = 0.0  # the instrument's own rate limit (its fallback)
    purged: frozenset[str] = frozenset()  # inert gases that have purged the tube
    last_t_s: float | None = None  # the previous cycle (None: the next dt is 0)
    stage_started_t_s: MappingProxyType[str, float] = field(default_factory=lambda: _EMPTY)
    stage_ended_t_s: MappingProxyType[str, float] = field(default_factory=lambda: _EMPTY)
    holdback_total_s: float = 0.0  # all dwell time out of band, for the summary
    # measured flows integrated, standard litres
    gas_used_l: MappingProxyType[str, float] = field(default_factory=lambda: _EMPTY)
    hold_cause: str = ""  # the interlock (or "resume", "operator") that held the run
    hold_auto_resume_s: float | None = None  # the cause lifts itself after this clear
    held_since_t_s: float = 0.0
    # The clock's real_s at the first cycle of this hold (see ``hold_waited_s``).
    # Meaningless in another process: a resume starts it again.
    hold_started_real_s: float | None = None
    hold_clear_since_t_s: float | None = None
    notes: frozenset[str] = frozenset()  # NOTE verdicts active (their edges are audited)
    ramp_paused: bool = False  # the exotherm guard holds the ramp back
    heater_off: bool = False  # a halt wants the heater off (manual 0 %) in the safe state
    needs_reconfigure: bool = False  # the instrument was changed under us: re-apply
    failed_gases: frozenset[str] = frozenset()  # inert gases whose flow was lost
    end_reason: str = ""
    interrupted: bool = False  # halted on a condition resume can pick up (lost comms)
    supervise: bool = False  # halted by an interlock: stay with the furnace until it is cool


def initial_state(plan: Plan, *, ambient_c: float, gases: tuple[str, ...],
                  rate_limit_c_per_min: float) -> RunState:
    """The state before ``start``: idle, every flow zero, the setpoint at ambient."""
    del plan  # the same initial state for every plan of a station
    return RunState(setpoint_c=ambient_c, flows_sccm=frozen_map(dict.fromkeys(gases, 0.0)),
                    rate_limit_c_per_min=rate_limit_c_per_min)


def awaits_person(state: RunState) -> bool:
    """Held, and only a person lifts the hold (its cause has no auto-resume)."""
    return state.phase is P.HELD and state.hold_auto_resume_s is None


def hold_waited_s(state: RunState, t_s: float, real_s: float) -> float:
    """How long the hold has lasted, for its timeout (decision 0009): real seconds while
    it waits for a person, whatever the clock's speed; process seconds while it waits for
    its cause to clear by itself (the furnace's time, which a dry run compresses)."""
    if state.hold_auto_resume_s is not None:
        return t_s - state.held_since_t_s
    started_s = state.hold_started_real_s
    return 0.0 if started_s is None else real_s - started_s


def current_step(plan: Plan, state: RunState) -> Step | None:
    """The step being executed, or None before start and after the last step."""
    if state.phase not in (P.RUNNING, P.HELD):
        return None
    if state.inserted:
        return state.inserted[0]
    return plan.steps[state.step_index] if state.step_index < len(plan.steps) else None


# ------------------------------------------------------------------ checkpoints
def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


def _progress_record(p: StepProgress) -> dict[str, Any]:
    return {g.name: getattr(p, g.name) for g in fields(StepProgress)}


def _progress(p: Any) -> StepProgress:
    return StepProgress(
        _number(p["started_t_s"], "progress"), _number(p["counted_s"], "progress"),
        _number(p["holdback_s"], "progress"), _number(p["quiet_s"], "progress"),
        _number(p["waited_s"], "progress"), bool(p["confirmed"]))


def to_record(state: RunState) -> dict[str, Any]:
    """The state as JSON-ready fields of a ``checkpoint`` audit record (plain types only)."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for f in fields(RunState):
        value = getattr(state, f.name)
        if isinstance(value, StepProgress):
            value = _progress_record(value)
        elif isinstance(value, MappingProxyType):
            value = dict(value)
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif f.name == "inserted":
            value = [{"stage": r.stage, "label": r.label, "to_c": r.to_c,
                      "rate_c_per_min": r.rate_c_per_min} for r in value]
        elif isinstance(value, float):
            value = _json_float(value)
        out[f.name] = value
    return out


_FLOAT_FIELDS: Final = frozenset({"setpoint_c", "rate_limit_c_per_min", "holdback_total_s",
                                  "held_since_t_s"})
_OPTIONAL_FLOAT_FIELDS: Final = frozenset({"last_t_s", "hold_auto_resume_s",
                                           "hold_clear_since_t_s", "hold_started_real_s"})
_MAP_FIELDS: Final = frozenset({"flows_sccm", "stage_started_t_s", "stage_ended_t_s",
                                "gas_used_l"})
_SET_FIELDS: Final = frozenset({"purged", "notes", "failed_gases"})
_BOOL_FIELDS: Final = frozenset({"ramp_paused", "heater_off", "needs_reconfigure",
                                 "interrupted", "supervise"})
_STR_FIELDS: Final = frozenset({"hold_cause", "end_reason"})


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CheckpointError(f"checkpoint field {name} is not a number", field=name)
    try:
        return float(value)
    except ValueError:
        raise CheckpointError(f"checkpoint field {name} is not a number", field=name) from None


def from_record(record: Mapping[str, Any], plan: Plan) -> RunState:
    """The ``RunState`` saved in a checkpoint record. Raises ``CheckpointError`` (one line)
    for another schema version, a missing or malformed field, or a step index that does
    not fit ``plan``."""
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CheckpointError(f"the last checkpoint has schema_version {version!r}; this "
                              f"software reads only {SCHEMA_VERSION}: resume it with the "
                              "software version that wrote it", field="schema_version")
    names = {f.name for f in fields(RunState)}
    missing = sorted(names - record.keys())
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}", field=missing[0])
    try:
        values: dict[str, Any] = {"phase": Phase(record["phase"])}
    except ValueError:
        raise CheckpointError(f"checkpoint phase {record['phase']!r} is unknown",
                              field="phase") from None
    for name in names - {"phase", "step_index", "inserted", "progress", "suspended"}:
        raw = record[name]
        if name in _FLOAT_FIELDS:
            values[name] = _number(raw, name)
        elif name in _OPTIONAL_FLOAT_FIELDS:
            values[name] = None if raw is None else _number(raw, name)
        elif name in _MAP_FIELDS:
            if not isinstance(raw, dict):
                raise CheckpointError(f"checkpoint field {name} is not a mapping", field=name)
            values[name] = frozen_map({str(k): _number(v, name) for k, v in raw.items()})
        elif name in _SET_FIELDS:
            if not isinstance(raw, list):
                raise CheckpointError(f"checkpoint field {name} is not a list", field=name)
            values[name] = frozenset(str(v) for v in raw)
        elif name in _BOOL_FIELDS:
            values[name] = bool(raw)
        elif name in _STR_FIELDS:
            values[name] = str(raw)
    index = record["step_index"]
    if type(index) is not int or not 0 <= index <= len(plan.steps):
        raise CheckpointError(f"checkpoint step_index {index!r} does not fit the plan's "
                              f"{len(plan.steps)} steps", field="step_index")
    values["step_index"] = index
    try:
        values["inserted"] = tuple(Ramp(stage=str(r["stage"]), label=str(r["label"]),
                                        to_c=_number(r["to_c"], "inserted"),
                                        rate_c_per_min=_number(r["rate_c_per_min"],
                                                               "inserted"))
                                   for r in record["inserted"])
        values["progress"] = _progress(record["progress"])
        suspended = record["suspended"]
        values["suspended"] = None if suspended is None else _progress(suspended)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint step data is malformed ({exc})",
                              field="progress") from None
    return replace(RunState(), **values)
