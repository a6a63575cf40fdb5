"""The report's events and numbers of one batch: mass minimum, per-stage durations and
mass change, gas used, incidents, the pre-oxidation suggestion, the mass balance (pure
numpy, no I/O).

Not here: loading the batch (``data``), the exotherm (``exotherm``), the yields
(``yields``), drawing (``report``) or the console rows (``table``).

The mass minimum and the exotherm use only the rows before the sample leaves the furnace
(``data.sample_window``: the wash or unload step), since later rows describe another
material; the per-stage mass change runs over the whole batch, boundary to boundary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from controller.analysis.data import RUN_STATES, BatchData, sample_window
from controller.analysis.exotherm import Exotherm, find_exotherm
from controller.analysis.series import (
    HEATING_MIN_C_PER_MIN,
    SMOOTH_S,
    FloatArray,
    heating_rate_c_per_min,
    moving_mean,
    stage_readings,
    stage_runs,
    true_runs,
    window_rows,
)
from controller.analysis.yields import MassBalance, mass_balance
from controller.records.columns import Phase
from controller.records.folder import STATION_FILE, SUMMARY_FILE, TRACE_FILE

__all__ = [
    "GasUse",
    "Incident",
    "MassMinimum",
    "Report",
    "StageResult",
    "analyse",
]

PREOX_ROUND_C: Final = 5.0  # the suggestion is the peak rounded to 5 °C
MASS_RISE_PCT: Final = 0.2  # a rise this large after a minimum makes it a turning point
_INCIDENT_EVENTS: Final = frozenset({"interlock_trip", "interlock_cleared", "alarm",
                                     "operator_confirmed", "endpoint_reached"})
_NOTABLE_STATES: Final = frozenset(p.value for p in (Phase.HELD, Phase.STOPPING, Phase.ABORTING,
                                                     Phase.ABORTED, Phase.FAULTED))


@dataclass(frozen=True, slots=True)
class MassMinimum:
    """Lowest (smoothed) mass % and where it happened (°C, s of process time)."""

    mass_pct: float
    elapsed_s: float
    furnace_c: float
    sample_c: float | None
    stage: str


@dataclass(frozen=True, slots=True)
class StageResult:
    """Planned against actual duration (s) and mass change (% points) of one stage."""

    name: str
    planned_s: float | None
    actual_s: float | None
    mass_start_pct: float | None
    mass_end_pct: float | None
    mass_change_pct: float | None


@dataclass(frozen=True, slots=True)
class GasUse:
    """Gas used and planned, litres at standard conditions."""

    gas: str
    used_l: float | None
    planned_l: float | None


@dataclass(frozen=True, slots=True)
class Incident:
    """A notable audit event (trip, alarm, operator action, hold/abort), one line."""

    elapsed_s: float
    event: str
    text: str


@dataclass(frozen=True, slots=True)
class Report:
    """What a batch did and what its traces show. Every field is JSON-ready (see to_dict).

    ``mass_note`` and ``exotherm_note`` say how the events were found or why they are None.
    ``suggested_preoxidation_c`` is set only for a screening batch with an exotherm, in a gas
    the batch's station declares oxidising (air); ``suggestion`` gives the reasoning (or why
    there is none) in one line. ``yields`` is the mass balance (``yields.mass_balance``),
    the same numbers as summary.json's ``yields``.
    """

    batch_id: str
    sample: str
    recipe: str
    outcome: str
    end_reason: str
    planned_s: float | None
    actual_s: float | None
    holdback_s: float | None
    temperature_channel: str
    analysed_until_s: float | None
    mass_minimum: MassMinimum | None
    mass_note: str
    exotherm: Exotherm | None
    exotherm_note: str
    stages: tuple[StageResult, ...]
    gases: tuple[GasUse, ...]
    incidents: tuple[Incident, ...]
    screening: bool
    suggested_preoxidation_c: float | None
    suggestion: str
    yields: MassBalance

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, str, float, bool and None: ``json.dumps`` takes it as it is."""
        plain: dict[str, Any] = _lists(dataclasses.asdict(self))
        plain["yields"] = self.yields.to_dict()
        return plain


# ---------------------------------------------------------------------------- helpers
def _lists(value: Any) -> Any:
    """Tuples become lists, recursively, so the dict equals its own JSON round trip."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def _num(value: Any) -> float | None:
    """A finite float from JSON, else None (the summary writes NaN as a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(parent: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``parent[key]`` if it is a JSON object, else an empty one."""
    value = (parent or {}).get(key)
    return value if isinstance(value, Mapping) else {}


def _opt(values: FloatArray | None, i: int) -> float | None:
    if values is None:
        return None
    v = float(values[i])
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------- events
def _mass_minimum(data: BatchData, end: int) -> tuple[MassMinimum | None, str]:
    mass = data.channel("mass_pct")
    if mass is None:
        return None, f"no balance (no mass_pct readings in {TRACE_FILE})"
    t = data.trace["elapsed_s"][:end]
    smooth = moving_mean(mass[:end], window_rows(t, SMOOTH_S))
    if not np.isfinite(smooth).any():
        return None, "no mass_pct readings before the sample left the furnace"
    # TGA reads the mass against temperature while heating: the minimum worth naming is
    # where the mass stops falling and starts to rise (a turning point on the heating
    # curve); without one, the lowest point while heating; without heating, the lowest.
    rate = heating_rate_c_per_min(t, data.trace["furnace_c"][:end])
    heating = np.isfinite(rate) & (rate >= HEATING_MIN_C_PER_MIN) & np.isfinite(smooth)
    how = f"lowest {SMOOTH_S:.0f} s moving mean of mass_pct before the first operator step"
    i = int(np.nanargmin(smooth))
    for a, b in true_runs(heating):
        turn = _turning_point(smooth[a:b])
        if turn is not None:
            i, how = a + turn, (f"first turning point of the {SMOOTH_S:.0f} s moving mean "
                                f"of mass_pct while heating (a rise of at least "
                                f"{MASS_RISE_PCT:g} % follows)")
            break
    else:
        if heating.any():
            rows = np.flatnonzero(heating)
            i = int(rows[np.nanargmin(smooth[rows])])
            how = f"lowest {SMOOTH_S:.0f} s moving mean of mass_pct while heating"
    furnace_c = float(data.trace["furnace_c"][i])
    found = MassMinimum(float(smooth[i]), float(t[i]), furnace_c,
                        _opt(data.channel("sample_c"), i), str(data.text["stage"][i]))
    return found, how


def _turning_point(mass: FloatArray) -> int | None:
    """Index of the first running minimum that a rise of ``MASS_RISE_PCT`` follows."""
    low_i, low = -1, np.inf
    for k, m in enumerate(mass):
        if not np.isfinite(m):
            continue
        if m < low:
            low_i, low = k, float(m)
        elif m - low >= MASS_RISE_PCT:
            return low_i
    return None


def _stages(data: BatchData) -> tuple[StageResult, ...]:
    """Planned against actual time per stage, and its mass change boundary to boundary
    (``stage_readings``: the wash's loss on the wash's row)."""
    summary_stages = _mapping(data.summary, "stages")
    stage = data.text["stage"]
    seen = [n for n, _, _ in stage_runs(stage) if n not in RUN_STATES]
    names = list(dict.fromkeys([*(s.name for s in data.stages), *summary_stages, *seen]))
    t = data.trace["elapsed_s"]
    mass = data.channel("mass_pct")
    bounds = ({} if mass is None else
              {n: (a, b) for n, a, b in stage_readings(stage, mass, RUN_STATES)})
    out: list[StageResult] = []
    for name in names:
        timing = summary_stages.get(name)
        timing = timing if isinstance(timing, Mapping) else {}
        rows = np.flatnonzero(stage == name)
        actual = _num(timing.get("actual_s"))
        if actual is None and len(rows):
            actual = float(t[rows[-1]] - t[rows[0]])
        a, b = bounds.get(name, (None, None))
        start = None if mass is None or a is None else float(mass[a])
        end = None if mass is None or b is None else float(mass[b])
        out.append(StageResult(name, _num(timing.get("planned_s")), actual, start, end,
                               None if start is None or end is None else end - start))
    return tuple(out)


def _gases(data: BatchData) -> tuple[GasUse, ...]:
    used = _mapping(data.summary, "gas_used_l")
    planned = _mapping(data.summary, "gas_planned_l")
    names = list(dict.fromkeys([*data.gases(), *used, *planned]))
    return tuple(GasUse(g, _num(used.get(g)), _num(planned.get(g))) for g in names)


def _incident_text(r: Mapping[str, Any]) -> str | None:
    event = r.get("event")
    if event == "state_change":
        if r.get("new") not in _NOTABLE_STATES:
            return None
        return f"{r.get('old')} -> {r.get('new')}: {r.get('reason', '')}".rstrip(": ")
    if event not in _INCIDENT_EVENTS:
        return None
    if event in ("interlock_trip", "interlock_cleared"):
        what = f"{r.get('interlock', '?')}: {r.get('action', '')}"
        measured, limit = _num(r.get("measured")), _num(r.get("limit"))
        return what + (f" ({measured:g} against {limit:g})"
                       if measured is not None and limit is not None else "")
    if event == "alarm":
        measured = _num(r.get("measured"))
        return str(r.get("alarm", "?")) + (f" (measured {measured:g})" if measured is not None
                                           else "")
    if event == "operator_confirmed":
        return f"{r.get('operator', '?')}: {r.get('how', 'confirmed')}"
    return ", ".join(f"{k}={v}" for k, v in r.items()
                     if k not in ("seq", "t_s", "wall_utc", "event", "prev", "hash"))


def _incidents(audit: Sequence[Mapping[str, Any]]) -> tuple[Incident, ...]:
    out = []
    for r in audit:
        text = _incident_text(r)
        if text is not None:
            out.append(Incident(_num(r.get("t_s")) or 0.0, str(r.get("event")), text))
    return tuple(sorted(out, key=lambda i: i.elapsed_s))  # stable: audit order within a time


def _screening(data: BatchData) -> tuple[bool, str]:
    """A screening batch is one constant-rate heating ramp: say so, and in which gas."""
    kinds = [k for s in data.stages for k in s.step_kinds]
    ramps = [s for s in data.stages for k in s.step_kinds if k == "ramp"]
    named = data.recipe.lower().startswith("screen") or data.sample.lower().startswith("screen")
    one_ramp = len(ramps) == 1 and "dwell" not in kinds
    atmosphere = ramps[0].atmosphere if len(ramps) == 1 else ""
    return named or one_ramp, atmosphere


def _suggest(data: BatchData, exo: Exotherm | None) -> tuple[bool, float | None, str]:
    screening, atmosphere = _screening(data)
    if not screening:
        return False, None, ("not a screening batch (not one heating ramp): no pre-oxidation "
                             "temperature suggested")
    if atmosphere and data.oxidising_gases is None:
        return True, None, (f"screening in {atmosphere}, but the batch's {STATION_FILE} is "
                            "missing or not a station, so whether that gas is oxidising is "
                            "unknown: no pre-oxidation temperature suggested")
    if atmosphere and atmosphere not in (data.oxidising_gases or ()):
        return True, None, (f"screening in {atmosphere}: no cross-linking exotherm is expected "
                            "without air, so no pre-oxidation temperature is suggested")
    if exo is None:
        return True, None, "screening batch, but no exotherm in ΔT: no temperature suggested"
    suggested = math.floor(exo.peak_c / PREOX_ROUND_C + 0.5) * PREOX_ROUND_C
    where = "sample" if exo.temperature_channel == "sample_c" else "furnace"
    return True, suggested, (
        f"pre-oxidise at {suggested:.0f} °C: the cross-linking exotherm in {atmosphere or 'air'} "
        f"peaks at {exo.peak_c:.1f} °C ({where}, onset {exo.onset_c:.1f} °C), rounded to "
        f"{PREOX_ROUND_C:g} °C, as DESIGN.md §1's 220 °C was read from TGA/DSC traces")


def analyse(data: BatchData) -> Report:
    """Extract the report's events from a loaded batch. Pure: no I/O, no clock.

    Temperatures are °C on ``sample_c`` where the trace has readings, else ``furnace_c``.
    Events that need a missing channel are None, and the matching note says why.
    """
    channel = "sample_c" if data.channel("sample_c") is not None else "furnace_c"
    end = sample_window(data)
    mass_min, mass_note = _mass_minimum(data, end)
    exo, exo_note = find_exotherm(data, end, channel)
    screening, suggested, suggestion = _suggest(data, exo)
    summary = data.summary or {}
    ended: Mapping[str, Any] = next(
        (r for r in reversed(data.audit) if r.get("event") == "batch_ended"), {})
    t = data.trace["elapsed_s"]
    return Report(
        batch_id=data.batch_id, sample=data.sample, recipe=data.recipe,
        outcome=str(summary.get("outcome") or ended.get("outcome")
                    or f"unknown (no {SUMMARY_FILE}: interrupted or still running)"),
        end_reason=str(summary.get("end_reason") or ended.get("end_reason") or ""),
        planned_s=_num(summary.get("planned_s")),
        actual_s=_num(summary.get("actual_s")) or (float(t[-1]) if len(t) else None),
        holdback_s=_num(summary.get("holdback_s")), temperature_channel=channel,
        analysed_until_s=float(t[end - 1]) if 0 < end <= len(t) else None,
        mass_minimum=mass_min, mass_note=mass_note, exotherm=exo, exotherm_note=exo_note,
        stages=_stages(data), gases=_gases(data), incidents=_incidents(data.audit),
        screening=screening, suggested_preoxidation_c=suggested, suggestion=suggestion,
        yields=mass_balance(data))
