"""Yields and the mass balance of one batch, per stage, on the loaded-mixture basis and on
the precursor basis, from the balance where the station has one and from the operator's
weighings otherwise (pure: no I/O, no clock). Every mass says where it came from.

Not here: loading the batch (``data``), the thermal events (``events``), drawing
(``report``). ``summary.json``'s ``yields`` is ``mass_balance(data).to_dict()``.

Masses (g) are the balance's readings (trace ``mass_g``), or the numbers the operator typed
at an operator step (audit ``operator_confirmed``: ``data`` by field name, ``roles`` saying
which field is the precursor, the acid or the sample's mass), or the recipe's nominal
``[sample_material]``. Percentages of a basis are ``100 × mass / basis``; a change is in
percentage points of that basis.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from controller.analysis.data import RUN_STATES, BatchData, sample_leaves
from controller.analysis.series import stage_readings

__all__ = ["BALANCE", "NOMINAL", "WEIGHING", "Mass", "MassBalance", "MassRow", "Weighing",
           "mass_balance"]

BALANCE: Final = "balance"  # the trace's mass_g
WEIGHING: Final = "operator weighing"  # a number typed at an operator step
NOMINAL: Final = "nominal recipe"  # [sample_material] of the frozen recipe
_MASS_ROLES: Final = frozenset({"precursor_g", "acid_g", "sample_g"})
_REF: Final = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class Mass:
    """A mass in g (None if unknown), where it came from (``BALANCE``, ``WEIGHING``,
    ``NOMINAL``; None if unknown) and whether the simulator produced it (a dry run's
    balance, or an operator step confirmed automatically with the simulated sample's mass)."""

    mass_g: float | None = None
    source: str | None = None
    simulated: bool = False

    @property
    def label(self) -> str:
        """Where it came from, in words: "balance", "simulated balance", "unknown"..."""
        if self.source is None:
            return "unknown"
        return f"simulated {self.source.removeprefix('operator ')}" if self.simulated \
            else self.source


@dataclass(frozen=True, slots=True)
class MassRow:
    """The mass change over consecutive stages, from ``start`` to ``end`` (boundary to
    boundary: with a balance, one row per stage; without, between weighings). ``*_pct``
    are percentages of the loaded mixture and of the precursor; changes in points."""

    stages: tuple[str, ...]
    start: Mass
    end: Mass
    change_g: float | None
    change_loaded_pct: float | None
    change_precursor_pct: float | None
    remaining_loaded_pct: float | None
    remaining_precursor_pct: float | None

    @property
    def name(self) -> str:
        """The stage's name, or "first … last" for a row over several stages."""
        return self.stages[0] if len(self.stages) == 1 else f"{self.stages[0]} … {self.stages[-1]}"


@dataclass(frozen=True, slots=True)
class Weighing:
    """One mass the operator step recorded: at which step (stage, sample action), under
    which field name and role."""

    stage: str
    sample_action: str
    field: str
    role: str
    mass_g: float
    source: str
    simulated: bool
    elapsed_s: float | None


@dataclass(frozen=True, slots=True)
class MassBalance:
    """The batch's mass balance: the two bases, per-stage rows, the wash's loss, the final
    mass and yields. ``notes`` say how each was chosen and what is missing."""

    loaded: Mass
    precursor: Mass
    acid_wt_pct: float | None
    rows: tuple[MassRow, ...]
    wash: MassRow | None
    final: Mass
    yield_loaded_pct: float | None
    yield_precursor_pct: float | None
    weighings: tuple[Weighing, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, str, float, bool and None (never NaN): ``json.dumps`` with
        ``allow_nan=False`` takes it as it is."""
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


# ---------------------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pct(part: float | None, whole: Mass) -> float | None:
    if part is None or whole.mass_g is None or whole.mass_g <= 0:
        return None
    return 100.0 * part / whole.mass_g


def _parameters(data: BatchData) -> dict[str, Any]:
    """Parameter values: the recipe's defaults, overridden by the summary's and the audit's."""
    doc = data.recipe_doc or {}
    params: dict[str, Any] = {}
    declared = doc.get("parameters")
    if isinstance(declared, Mapping):
        params |= {k: v.get("default") for k, v in declared.items() if isinstance(v, Mapping)}
    for source in ((data.summary or {}).get("parameters"),
                   next((r.get("parameters") for r in data.audit
                         if r.get("event") == "batch_created"), None)):
        if isinstance(source, Mapping):
            params |= source
    return params


def _nominal(data: BatchData) -> tuple[float | None, float | None]:
    """The frozen recipe's ``[sample_material]`` mass (g) and acid loading (wt%), with
    parameter references (``"{mass_g}"``) replaced by the batch's values."""
    material = (data.recipe_doc or {}).get("sample_material")
    if not isinstance(material, Mapping):
        return None, None
    params = _parameters(data)

    def value(raw: Any) -> float | None:
        if isinstance(raw, str):
            ref = _REF.match(raw.strip())
            raw = params.get(ref.group(1)) if ref else raw
            try:
                raw = float(raw) if isinstance(raw, str) else raw
            except ValueError:
                return None
        return _num(raw)

    acid = value(material.get("acid_wt", 0.0))
    return value(material.get("mass_g")), acid


def weighings(audit: Sequence[Mapping[str, Any]]) -> tuple[Weighing, ...]:
    """The masses (roles precursor_g, acid_g, sample_g) recorded at operator steps."""
    out = []
    for r in audit:
        values, roles = r.get("data"), r.get("roles")
        if r.get("event") != "operator_confirmed" or not isinstance(values, Mapping) \
                or not isinstance(roles, Mapping):
            continue
        how = str(r.get("data_source", "operator"))
        source = NOMINAL if how.startswith("nominal") else WEIGHING
        simulated = bool(r.get("simulated")) or how.startswith("simulated")
        for field, role in roles.items():
            mass_g = _num(values.get(field))
            if role in _MASS_ROLES and mass_g is not None:
                out.append(Weighing(str(r.get("stage", "")), str(r.get("sample_action", "")),
                                    str(field), str(role), mass_g, source, simulated,
                                    _num(r.get("t_s"))))
    return tuple(out)


def _find(found: Sequence[Weighing], action: str, role: str) -> Weighing | None:
    """The last weighing of ``role`` at an operator step with ``sample_action``."""
    return next((w for w in reversed(found) if w.sample_action == action and w.role == role),
                None)


def _as_mass(w: Weighing | None) -> Mass:
    return Mass() if w is None else Mass(w.mass_g, w.source, w.simulated)


def _step(data: BatchData, action: str) -> Mapping[str, Any] | None:
    return next((r for r in data.audit if r.get("event") == "step_started"
                 and r.get("kind") == "operator" and r.get("sample_action") == action), None)


def _wash_stage(data: BatchData) -> str | None:
    """The stage of the wash step; for a batch recorded before steps had a sample action,
    the stage of its operator step where the sample leaves (the wash, in those recipes)."""
    step = _step(data, "wash")
    if step is None:
        leaves = sample_leaves(data)
        step = leaves if leaves is not None and "sample_action" not in leaves else None
    return None if step is None else str(step.get("stage"))


# ----------------------------------------------------------------------------- balance
def _stage_names(data: BatchData) -> list[str]:
    seen = [str(s) for s in dict.fromkeys(data.text["stage"].tolist()) if s not in RUN_STATES]
    return list(dict.fromkeys([*(s.name for s in data.stages), *seen]))


def _balance_points(data: BatchData, names: list[str],
                    simulated: bool) -> tuple[dict[int, Mass], Mass]:
    """Balance readings at stage boundaries (key k: where stage k opens; len(names): the
    last reading) and the first reading with the sample loaded."""
    mass = data.channel("mass_g")
    if mass is None:
        return {}, Mass()
    points: dict[int, Mass] = {}
    for name, a, b in stage_readings(data.text["stage"], mass, RUN_STATES):
        k = names.index(name)
        for key, row in ((k, a), (k + 1, b)):
            if row is not None:
                points.setdefault(key, Mass(float(mass[row]), BALANCE, simulated))
    load = _step(data, "load")
    if load is not None:  # the balance weighs an empty boat until the load step ends
        done = next((r for r in data.audit if r.get("event") == "step_completed"
                     and r.get("index") == load.get("index")), None)
        t_s = _num((done or {}).get("t_s"))
        k = names.index(str(load.get("stage"))) if load.get("stage") in names else 0
        rows = np.flatnonzero(np.isfinite(mass) & (data.trace["elapsed_s"] > (t_s or -1)))
        for key in [key for key in points if key <= k]:
            del points[key]
        if t_s is not None and len(rows):  # the next scan's reading is after the load
            points[k] = Mass(float(mass[rows[0]]), BALANCE, simulated)
    first = points[min(points)] if points else Mass()
    return points, first


def _rows(names: list[str], points: Mapping[int, Mass], loaded: Mass,
          precursor: Mass) -> tuple[MassRow, ...]:
    keys = sorted(points)
    out = []
    for k0, k1 in zip(keys, keys[1:], strict=False):
        start, end = points[k0], points[k1]
        change = None if start.mass_g is None or end.mass_g is None else end.mass_g - start.mass_g
        out.append(MassRow(tuple(names[k0:k1]), start, end, change, _pct(change, loaded),
                           _pct(change, precursor), _pct(end.mass_g, loaded),
                           _pct(end.mass_g, precursor)))
    return tuple(out)


def mass_balance(data: BatchData) -> MassBalance:
    """The batch's mass balance and yields. Pure: no I/O, no clock; works on a batch that
    has not ended (``data.summary`` None: the lead calls it before summary.json exists).

    Loaded mixture: the loading step's precursor_g + acid_g (or its sample_g), else the
    balance's first reading with the sample in, else the recipe's nominal mass_g.
    Precursor: the loading step's precursor_g, else nominal mass_g / (1 + acid_wt/100)
    (``acid_wt`` is g reagent per 100 g precursor, decision 0011).
    Rows: per stage from the balance, boundary to boundary (``stage_readings``: the wash's
    loss on the wash's row); where the balance has no reading, between the operator's
    weighings (sample_g after the wash, at the unload). Final: the unload step's sample_g,
    else the balance's last reading.
    """
    names = _stage_names(data)
    simulated = bool(data.simulated)
    found = weighings(data.audit)
    notes: list[str] = []
    nominal_g, acid_wt = _nominal(data)
    points, balance_first = _balance_points(data, names, simulated)

    pre, acid = _find(found, "load", "precursor_g"), _find(found, "load", "acid_g")
    if pre is not None and acid is not None:
        loaded = Mass(pre.mass_g + acid.mass_g, pre.source, pre.simulated or acid.simulated)
        notes.append("loaded mixture: precursor_g + acid_g weighed at the loading step")
    elif (w := _find(found, "load", "sample_g")) is not None:
        loaded = _as_mass(w)
        notes.append("loaded mixture: sample_g weighed at the loading step")
    elif balance_first.mass_g is not None:
        loaded = balance_first
        notes.append("loaded mixture: the balance's first reading with the sample in")
    elif nominal_g is not None:
        loaded = Mass(nominal_g, NOMINAL)
        notes.append("loaded mixture: the recipe's nominal mass_g (nothing weighed)")
    else:
        loaded = Mass()
        notes.append("loaded mixture unknown: no weighing, no balance, no [sample_material]")
    if pre is not None:
        precursor = _as_mass(pre)
    elif nominal_g is not None and acid_wt is not None:
        precursor = Mass(nominal_g / (1.0 + acid_wt / 100.0), NOMINAL)
        notes.append(f"precursor: nominal {nominal_g:g} g × (1 − {acid_wt:g}/100)")
    else:
        precursor = Mass()
        notes.append("precursor unknown: no precursor_g weighed and no [sample_material]")

    # Without balance readings, the operator's weighings close the stages they end.
    for action in ("wash", "unload"):
        w = _find(found, action, "sample_g")
        if w is not None and w.stage in names:
            points.setdefault(names.index(w.stage) + 1, _as_mass(w))
    if not any(p.source == BALANCE for p in points.values()) and points:
        load = _step(data, "load")
        k0 = names.index(str(load.get("stage"))) if load and load.get("stage") in names else 0
        points.setdefault(k0, loaded)
    rows = _rows(names, points, loaded, precursor)

    wash_stage = _wash_stage(data)
    wash = next((r for r in rows if r.stages == (wash_stage,)), None)
    if wash_stage is not None and wash is None:
        notes.append(f"the wash's own loss is unknown: no mass just before the {wash_stage!r} "
                     "stage (its row, if any, spans earlier stages too)")

    unload = _find(found, "unload", "sample_g")
    mass = data.channel("mass_g")
    if unload is not None:
        final = _as_mass(unload)
        notes.append("final: sample_g weighed at the unload step")
    elif mass is not None:
        final = Mass(float(mass[np.flatnonzero(np.isfinite(mass))[-1]]), BALANCE, simulated)
        notes.append("final: the balance's last reading (no unload weighing)")
    else:
        final = Mass()
        notes.append("final mass unknown: no unload weighing and no balance")
    outcome = (data.summary or {}).get("outcome") or next(
        (r.get("outcome") for r in reversed(data.audit) if r.get("event") == "batch_ended"),
        None)
    if outcome not in (None, "completed") and final.source == BALANCE:  # None: still ending
        notes.append(f"the batch did not complete ({outcome}): the final mass is where it "
                     "stopped, not the product's")
    return MassBalance(loaded, precursor, acid_wt, rows, wash, final,
                       _pct(final.mass_g, loaded), _pct(final.mass_g, precursor), found,
                       tuple(notes))
