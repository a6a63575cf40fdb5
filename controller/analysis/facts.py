"""What summary.json says about a batch beyond its timings: who ran it, on what, when, how it
ended (stop, abort and fault told apart), the peak measured temperatures, the time in band
of each dwell and the operator-step data; read from the audit records and, where given, the
trace (pure, no I/O).

Not here: the yields (``yields``), writing the summary (``controller.session``) or the
report's numbers (``events``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from controller.analysis.data import BatchData

__all__ = ["END_KINDS", "end_of", "operators_of", "record_facts", "step_data_of"]

#: How a batch can end, as summary.json's ``end.kind`` says it.
END_KINDS: Final = ("completed", "stopped", "aborted", "faulted", "interrupted")
_NOT_A_PERSON: Final = frozenset({"", "simulator", "unknown"})

Record = Mapping[str, Any]


def operators_of(audit: Sequence[Record]) -> list[str]:
    """Everyone who started, resumed, commanded or confirmed the batch, in order of first
    appearance (the simulated operator and an unknown login left out)."""
    names: list[str] = []
    for r in audit:
        if r.get("event") in ("batch_created", "batch_resumed", "operator_command",
                              "operator_confirmed"):
            name = str(r.get("operator") or "")
            if name not in _NOT_A_PERSON and name not in names:
                names.append(name)
    return names


def end_of(audit: Sequence[Record], final_state: str, end_reason: str) -> dict[str, Any]:
    """``{"kind", "reason", "by"}``: completed; stopped (a stop, never an abort, ended it);
    aborted; faulted; or interrupted (to be resumed). ``by`` is who or what ended it: an
    operator's name, "interlock" or "controller"."""
    ending = [r for r in audit if r.get("event") == "state_change"
              and r.get("new") in ("stopping", "aborting", "faulted")]
    if final_state == "completed":
        kind = "completed"
    elif final_state == "faulted":
        kind = "faulted"
    elif final_state == "aborted":
        kind = "aborted" if any(r.get("new") == "aborting" for r in ending) else "stopped"
    else:
        kind = "interrupted"
    first = ending[0] if ending else None
    by = "controller"
    if first is not None:
        by = str(first.get("operator") or "") or "interlock"
    return {"kind": kind, "reason": end_reason, "by": None if kind == "completed" else by}


def step_data_of(audit: Sequence[Record]) -> list[dict[str, Any]]:
    """Each confirmed operator step: where, what, by whom, its data and their source."""
    out = []
    for r in audit:
        if r.get("event") != "operator_confirmed":
            continue
        out.append({"index": r.get("index"), "stage": r.get("stage"),
                    "sample_action": r.get("sample_action", "none"),
                    "operator": r.get("operator"), "wall_utc": r.get("wall_utc"),
                    "data": dict(r.get("data") or {}), "units": dict(r.get("units") or {}),
                    "simulated": bool(r.get("simulated", False)),
                    "data_source": r.get("data_source", "operator")})
    return out


def _dwells(audit: Sequence[Record], plan_dwells: Mapping[int, Mapping[str, Any]]
            ) -> list[dict[str, Any]]:
    """Per dwell of the plan: planned, in band (counted) and out of band (holdback)."""
    done = {int(r["index"]): r for r in audit if r.get("event") == "step_completed"
            and r.get("kind") == "dwell" and isinstance(r.get("index"), int)}
    out = []
    for index, planned in sorted(plan_dwells.items()):
        r = done.get(index)
        in_band = _finite(r.get("counted_s")) if r else None
        total = _finite(r.get("duration_s")) if r else None
        out.append({**planned, "index": index, "completed": r is not None,
                    "in_band_s": in_band,
                    "out_of_band_s": (None if in_band is None or total is None
                                      else max(0.0, total - in_band))})
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _peak(data: BatchData | None, column: str) -> float | None:
    values = None if data is None else data.channel(column)
    if values is None:
        return None
    return round(float(np.nanmax(values)), 2)


def record_facts(audit: Sequence[Record], data: BatchData | None, *, final_state: str,
                 end_reason: str, plan_dwells: Mapping[int, Mapping[str, Any]]
                 ) -> dict[str, Any]:
    """The summary's facts from the batch's ``audit`` records and its trace (``data``;
    None when the trace could not be read: the trace-borne facts are then None)."""
    created = next((r for r in audit if r.get("event") == "batch_created"), {})
    return {
        "operators": operators_of(audit),
        "started_utc": created.get("wall_utc"),
        "end": end_of(audit, final_state, end_reason),
        "peak_measured_c": {"furnace_c": _peak(data, "furnace_c"),
                            "sample_c": _peak(data, "sample_c")},
        "dwells": _dwells(audit, plan_dwells),
        "step_data": step_data_of(audit),
    }
