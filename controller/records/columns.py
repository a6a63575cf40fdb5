"""The trace's columns (DESIGN.md §3), defined once: which a station's trace has, and what
its ``state`` column holds.

The scan cycle writes one row per cycle in ``trace_columns`` order; the report and resume
read them back by these names. Not here: formatting cells (``trace.py``) or reading the
file (``folder.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from controller.recipe.station import Station

__all__ = [
    "FLAGS_COLUMN",
    "REQUIRED_COLUMNS",
    "TEXT_COLUMNS",
    "Phase",
    "flow_column",
    "flow_setpoint_column",
    "gases_in",
    "trace_columns",
]


class Phase(StrEnum):
    """Where a batch is; the values appear in the trace's ``state`` column (and in its
    ``stage`` column outside the recipe's steps) and in the audit."""

    IDLE = "idle"
    PREFLIGHT = "preflight"
    RUNNING = "running"
    HELD = "held"
    STOPPING = "stopping"  # operator stop: normal cool-down, batch not completed
    ABORTING = "aborting"  # controlled cool-down under inert gas after a trip
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAULTED = "faulted"


#: Every trace has these, first and in this order (a reader refuses a trace without them).
REQUIRED_COLUMNS: Final = ("elapsed_s", "wall_utc", "stage", "step", "state", "setpoint_c",
                           "working_setpoint_c", "furnace_c", "output_pct")
#: Written after the required columns: ``;``-separated conditions of the row (stale:<device>,
#: pv_spike, ramp_paused, ramp_back), empty when none.
FLAGS_COLUMN: Final = "flags"
#: Required columns that hold text, not numbers.
TEXT_COLUMNS: Final = frozenset({"wall_utc", "stage", "state"})
_FLOW_PREFIX: Final = "flow_"
_FLOW_SUFFIX: Final = "_sccm"
_SETPOINT_SUFFIX: Final = "_setpoint_sccm"


def flow_column(gas: str) -> str:
    """The measured flow of ``gas`` (sccm): ``flow_Ar_sccm``."""
    return f"{_FLOW_PREFIX}{gas}{_FLOW_SUFFIX}"


def flow_setpoint_column(gas: str) -> str:
    """The commanded flow of ``gas`` (sccm): ``flow_Ar_setpoint_sccm``."""
    return f"{_FLOW_PREFIX}{gas}{_SETPOINT_SUFFIX}"


def gases_in(columns: Iterable[str]) -> tuple[str, ...]:
    """Gas names with a measured-flow column, in header order."""
    return tuple(c[len(_FLOW_PREFIX):-len(_FLOW_SUFFIX)] for c in columns
                 if c.startswith(_FLOW_PREFIX) and c.endswith(_FLOW_SUFFIX)
                 and not c.endswith(_SETPOINT_SUFFIX))


def trace_columns(station: Station) -> list[str]:
    """The trace header for ``station``: the required columns and flags, then the sample
    thermocouple, balance and O2 analyser where the station has them, then per gas."""
    cols = [*REQUIRED_COLUMNS, FLAGS_COLUMN]
    if station.sample_tc is not None:
        cols += ["sample_c", "delta_t_c"]
    if station.balance is not None:
        cols += ["mass_g", "mass_pct", "dtg_pct_per_min"]
    if station.o2 is not None:
        cols.append("o2_ppm")
    for mfc in station.mfc:
        cols += [flow_column(mfc.gas), flow_setpoint_column(mfc.gas)]
    return cols
