"""One batch loaded for analysis: the trace's columns as numpy arrays, the audit records,
the summary, the planned stages, the frozen recipe as written, and what the station is
(its name, whether it is simulated, which gases it declares oxidising).

The files are read through ``controller.records.folder.BatchFolder`` (the one reader of
each); this module only turns what it reads into arrays and checks that the numbers are
numbers. Not here: what the numbers show (``events``) or drawing them (``report``).
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from controller.analysis.series import FloatArray
from controller.records.columns import REQUIRED_COLUMNS, TEXT_COLUMNS, Phase, gases_in
from controller.records.folder import BatchFolder, iter_trace
from drivers.errors import ConfigurationError

__all__ = ["RUN_STATES", "BatchData", "StagePlan", "load_batch", "sample_leaves",
           "sample_window"]

logger = logging.getLogger(__name__)

#: What the trace's stage column holds outside the recipe's steps: the phase's name.
RUN_STATES: Final = frozenset(p.value for p in Phase)
#: An operator step with one of these ``sample_action``s takes the sample out of the furnace.
SAMPLE_LEAVES: Final = frozenset({"wash", "unload"})


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage of the recipe as planned: its name, atmosphere and step kinds in order."""

    name: str
    atmosphere: str
    step_kinds: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class BatchData:
    """One batch, loaded: trace columns as arrays, audit records, summary, planned stages.

    ``trace`` holds every numeric column as float64 (°C, s, sccm, % as the names say),
    NaN where a cell was empty; ``text`` holds ``wall_utc``, ``stage`` and ``state`` (and
    any other non-numeric column) as str arrays. ``summary`` is None for a batch that has
    not ended (no summary.json). ``oxidising_gases`` are the gases the batch's frozen
    station declares oxidising; None if its station.toml is missing or not a station.
    """

    batch_dir: Path
    batch_id: str
    sample: str
    recipe: str
    columns: tuple[str, ...]
    trace: Mapping[str, FloatArray]
    text: Mapping[str, NDArray[np.str_]]
    audit: tuple[Mapping[str, Any], ...]
    summary: Mapping[str, Any] | None
    stages: tuple[StagePlan, ...]
    oxidising_gases: frozenset[str] | None = None
    recipe_doc: Mapping[str, Any] | None = None
    station: str | None = None
    simulated: bool | None = None

    @property
    def rows(self) -> int:
        """Number of trace rows."""
        return len(self.trace["elapsed_s"])

    def channel(self, name: str) -> FloatArray | None:
        """A numeric column with at least one reading, else None (absent or all empty)."""
        values = self.trace.get(name)
        if values is None or not np.isfinite(values).any():
            return None
        return values

    def gases(self) -> tuple[str, ...]:
        """Gas names with a measured-flow column (``flow_<gas>_sccm``), in header order."""
        return gases_in(self.columns)


def sample_leaves(data: BatchData) -> Mapping[str, Any] | None:
    """The ``step_started`` record of the operator step that takes the sample out of the
    furnace (the wash or the unload), or None if no step does.

    An operator step says so by its ``sample_action`` ("wash" or "unload"; "load" and
    "none" leave it in). A batch recorded before operator steps had an action: its first
    operator step after a step of another kind (one at the very start loads the boat).
    """
    started = False  # a step of another kind has started: the batch is under way
    for r in data.audit:
        if r.get("event") != "step_started":
            continue
        if r.get("kind") != "operator":
            started = True
        elif "sample_action" in r:
            if r.get("sample_action") in SAMPLE_LEAVES:
                return r
        elif started:
            return r
    return None


def sample_window(data: BatchData) -> int:
    """Rows before the sample leaves the furnace (``sample_leaves``); all rows if it never
    does. Events that describe one material (mass minimum, exotherm) use these rows."""
    t = data.trace["elapsed_s"]
    leaves = sample_leaves(data)
    t_s = math.nan if leaves is None else leaves.get("t_s", math.nan)
    if isinstance(t_s, bool) or not isinstance(t_s, int | float) or not math.isfinite(t_s):
        return len(t)
    return int(np.searchsorted(t, float(t_s), side="left"))


# ----------------------------------------------------------------------------- loading
def _arrays(path: Path, as_text: frozenset[str] = frozenset()
            ) -> tuple[tuple[str, ...], dict[str, FloatArray], dict[str, NDArray[np.str_]]]:
    """The trace's columns, its float columns (NaN for empty cells) and its text columns,
    read row by row into arrays: a 30 h batch's trace is never held as Python strings, and
    text cells that repeat (stage, state) are kept once. Raises ``ConfigurationError``
    naming ``path`` for a trace without rows, a required column that is not numeric, or
    time that is empty or goes backwards (and as ``iter_trace`` does)."""
    rows = iter_trace(path)
    columns = next(rows)
    text_names = TEXT_COLUMNS | as_text
    floats = [(i, name, array("d")) for i, name in enumerate(columns)
              if name not in text_names]
    texts = [(i, name, list[str]()) for i, name in enumerate(columns) if name in text_names]
    kept: dict[str, str] = {}
    nan = math.nan
    line = 1
    for line, row in enumerate(rows, start=2):
        for i, name, values in floats:
            cell = row[i]
            try:
                values.append(float(cell) if cell else nan)
            except ValueError:
                if name in REQUIRED_COLUMNS:
                    raise ConfigurationError(f"line {line}: {name} is {cell!r}, not a number",
                                             source=str(path)) from None
                return _arrays(path, as_text | {name})  # someone's extra text column
        for i, _, cells in texts:
            cell = row[i]
            cells.append(kept.setdefault(cell, cell))
    if line == 1:
        raise ConfigurationError("no data rows", source=str(path))
    numeric: dict[str, FloatArray] = {name: np.frombuffer(values, dtype=np.float64)
                                      for _, name, values in floats}
    text = {name: np.array(cells, dtype=np.str_) for _, name, cells in texts}
    t = numeric["elapsed_s"]
    bad = np.flatnonzero(~np.isfinite(t) | (np.diff(t, prepend=-np.inf) < 0))
    if len(bad):
        raise ConfigurationError(f"line {bad[0] + 2}: elapsed_s is empty or goes backwards",
                                 source=str(path))
    return columns, numeric, text


def _stages(recipe: Mapping[str, Any] | None, path: Path,
            audit: Sequence[Mapping[str, Any]]) -> tuple[StagePlan, ...]:
    """Stages from the frozen recipe; without one, from the audit's step_started records."""
    if recipe is None:
        kinds: dict[str, list[str]] = {}
        for r in audit:
            if r.get("event") == "step_started":
                kinds.setdefault(str(r.get("stage")), []).append(str(r.get("kind")))
        return tuple(StagePlan(name, "", tuple(k)) for name, k in kinds.items())
    stages = recipe.get("stages")
    if not isinstance(stages, list):
        raise ConfigurationError("stages: missing or not an array of tables", source=str(path))
    plans = []
    for s in stages:
        steps = s.get("steps", []) if isinstance(s, dict) else []
        plans.append(StagePlan(str(s.get("name", "")) if isinstance(s, dict) else "",
                               str(s.get("atmosphere", "")) if isinstance(s, dict) else "",
                               tuple(str(x.get("kind", "")) for x in steps
                                     if isinstance(x, dict))))
    return tuple(plans)


def _station_facts(folder: BatchFolder) -> tuple[frozenset[str] | None, str | None,
                                                 bool | None]:
    """The frozen station's oxidising gases, name and whether it is simulated; Nones if it
    cannot be loaded (a report still reads a batch whose station this version no longer
    accepts)."""
    if not folder.station_toml.is_file():
        return None, None, None
    try:
        station, _ = folder.read_station()
    except ConfigurationError as exc:
        logger.warning("the batch's station cannot be read; oxidising gases unknown (%s)", exc)
        return None, None, None
    return (frozenset(m.gas for m in station.mfc if m.oxidising), station.name,
            station.simulated or station.bus.kind == "sim")


def load_batch(batch_dir: Path) -> BatchData:
    """Load a batch folder (DESIGN.md §3) for ``analyse`` and ``write_report_png``.

    Needs trace.csv and audit.jsonl; recipe.toml, station.toml and summary.json are used
    when present (a batch still running or interrupted has no summary). Reads files only,
    blocking. Raises ``ConfigurationError`` (one line naming the file) for a folder that is
    not a batch, or a malformed trace, audit, recipe or summary.
    """
    folder = BatchFolder.open(batch_dir)
    columns, numeric, texts = _arrays(folder.trace_csv)
    audit = folder.read_audit()
    summary = folder.read_summary()
    created = next((r for r in audit if r.get("event") == "batch_created"), {})
    info: Mapping[str, Any] = summary or {}
    oxidising, station, simulated = _station_facts(folder)
    recorded_sim = created.get("simulated")
    recipe_doc = folder.read_recipe_toml()
    return BatchData(
        batch_dir=folder.path,
        batch_id=str(created.get("batch_id") or info.get("batch_id") or folder.path.name),
        sample=str(created.get("sample") or info.get("sample") or ""),
        recipe=str(created.get("recipe") or info.get("recipe") or ""),
        columns=columns, trace=numeric, text=texts, audit=audit, summary=summary,
        stages=_stages(recipe_doc, folder.recipe_toml, audit), oxidising_gases=oxidising,
        recipe_doc=recipe_doc, station=str(created.get("station") or station or "") or None,
        simulated=recorded_sim if isinstance(recorded_sim, bool) else simulated)
