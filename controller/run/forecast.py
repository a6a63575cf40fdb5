"""What a batch is predicted to take, as data: a ``Prediction`` in process time (``furnace
plan``, and each re-prediction during a run) and a ``Forecast`` in wall time (the live ETA
the console and the web page show).

Not here: how a prediction is made (``controller.predict``, the simulator on a virtual
clock) or when a running batch asks for one (``controller.eta``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from controller.recipe.summary import PlanSummary
from controller.run.runstate import RunState

__all__ = ["Forecast", "OperatorTimes", "Prediction", "StageTimes", "plan_forecast"]


@dataclass(frozen=True, slots=True)
class StageTimes:
    """One stage: when it starts and ends, seconds of process time (None: never reached)."""

    name: str
    start_s: float | None
    end_s: float | None

    @property
    def duration_s(self) -> float | None:
        """The stage's length, s (None if it does not both start and end)."""
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class OperatorTimes:
    """One operator step: when it may begin (the person is needed: the tube cool enough
    to open) and when it is confirmed, seconds of process time (None: not reached by the
    prediction, or already confirmed before a prediction from the present started)."""

    index: int
    stage: str
    label: str
    start_s: float | None
    confirmed_s: float | None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A batch run on the simulator from ``from_s`` (0: the start) to its end at ``end_s``
    (process time, s): its outcome (``completed`` unless the simulated batch did not),
    stage and operator-step times, gas used over the whole batch (standard litres, per
    station gas; a prediction from a running batch includes what it had used) and the peak
    measured furnace temperature (°C) from ``from_s``."""

    sample_name: str
    from_s: float
    end_s: float
    outcome: str
    stages: tuple[StageTimes, ...]
    operator_steps: tuple[OperatorTimes, ...]
    gas_l: Mapping[str, float]
    peak_c: float

    @property
    def total_s(self) -> float:
        """The batch's predicted length from its start, s."""
        return self.end_s

    def to_dict(self) -> dict[str, Any]:
        """``furnace plan --json``: plain JSON types, times in seconds from the start."""
        return {
            "sample": self.sample_name,
            "from_s": self.from_s,
            "total_s": round(self.end_s, 1),
            "outcome": self.outcome,
            "stages": [{"name": s.name, "start_s": _r(s.start_s),
                        "predicted_s": _r(s.duration_s)} for s in self.stages],
            "operator_steps": [{"index": o.index, "stage": o.stage, "label": o.label,
                                "start_s": _r(o.start_s), "confirmed_s": _r(o.confirmed_s)}
                               for o in self.operator_steps],
            "gas_l": {g: round(v, 3) for g, v in self.gas_l.items()},
            "peak_c": round(self.peak_c, 1),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prediction:
        """The inverse of ``to_dict`` (a prediction sent back by the ETA's child process)."""
        stages = tuple(StageTimes(s["name"], s["start_s"],
                                  None if s["start_s"] is None or s["predicted_s"] is None
                                  else s["start_s"] + s["predicted_s"]) for s in d["stages"])
        ops = tuple(OperatorTimes(o["index"], o["stage"], o["label"], o["start_s"],
                                  o["confirmed_s"]) for o in d["operator_steps"])
        return cls(str(d["sample"]), float(d["from_s"]), float(d["total_s"]),
                   str(d["outcome"]), stages, ops,
                   MappingProxyType({str(g): float(v) for g, v in d["gas_l"].items()}),
                   float(d["peak_c"]))


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Forecast:
    """The live ETA: when the batch ends and when each stage and operator step is due, in
    the clock's wall time (real UTC on a station; a dry run's simulated time), as of the
    process time ``as_of_s``. ``source`` says where it came from: ``prediction`` (the
    simulator run on from the batch's state at ``as_of_s``) or ``plan`` (the recipe's
    nominal programme counted down, until the first prediction arrives or when
    predictions fail)."""

    source: str
    as_of_s: float
    eta_utc: datetime | None
    remaining_s: float
    stages: tuple[tuple[str, datetime | None, datetime | None], ...] = ()
    operator_steps: tuple[tuple[int, str, datetime | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the web page's ``eta_utc`` and timeline): ISO 8601 UTC strings."""
        return {
            "source": self.source, "as_of_s": round(self.as_of_s, 1),
            "eta_utc": _utc(self.eta_utc), "remaining_s": round(self.remaining_s, 1),
            "stages": [{"name": n, "start_utc": _utc(a), "end_utc": _utc(b)}
                       for n, a, b in self.stages],
            "operator_steps": [{"index": i, "stage": s, "start_utc": _utc(t)}
                               for i, s, t in self.operator_steps],
        }

    @classmethod
    def from_prediction(cls, p: Prediction, *, as_of_s: float, wall: datetime) -> Forecast:
        """``p`` (made from the state at process time ``as_of_s``, when the clock's wall
        time was ``wall``) in wall time."""

        def at(t_s: float | None) -> datetime | None:
            return None if t_s is None else wall + timedelta(seconds=t_s - as_of_s)

        return cls("prediction", as_of_s, at(p.end_s), max(p.end_s - as_of_s, 0.0),
                   tuple((s.name, at(s.start_s), at(s.end_s)) for s in p.stages),
                   tuple((o.index, o.stage, at(o.start_s)) for o in p.operator_steps))


def plan_forecast(summary: PlanSummary, state: RunState, stage: str, t_s: float,
                  wall: datetime) -> Forecast:
    """The nominal plan counted down from process time ``t_s`` in ``stage``: the rest of
    the stage (its planned length since it started) plus every later stage's."""
    names = [s.name for s in summary.stages]
    if stage not in names:
        return Forecast("plan", t_s, None, 0.0)
    i = names.index(stage)
    started = state.stage_started_t_s.get(stage, t_s)
    left = max(summary.stages[i].duration_s - (t_s - started), 0.0)
    stages: list[tuple[str, datetime | None, datetime | None]] = []
    at_s = left
    for s in summary.stages[i + 1:]:
        stages.append((s.name, wall + timedelta(seconds=at_s),
                       wall + timedelta(seconds=at_s + s.duration_s)))
        at_s += s.duration_s
    return Forecast("plan", t_s, wall + timedelta(seconds=at_s), at_s, tuple(stages))
