"""The words and the table on report.png: what is in the boat (sample, acid loading,
loaded mass), who ran it on which station, the headline numbers, and the mass balance
drawn as a table (matplotlib's Axes only; no pyplot).

Not here: the panels (``report``), the numbers themselves (``events``, ``yields``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from matplotlib.axes import Axes

from controller.analysis.data import BatchData
from controller.analysis.events import Report
from controller.analysis.yields import Mass, MassBalance

__all__ = ["draw_mass_table", "headline", "material_line", "operators"]

_HEADER: Final = ("stage", "Δm (g)", "Δ pts of\nloaded", "Δ pts of\nprecursor",
                  "left, % of\nloaded", "left, % of\nprecursor", "from")
_WIDTHS: Final = (0.26, 0.10, 0.10, 0.11, 0.11, 0.11, 0.21)
_WASH_COLOUR: Final = "#d9ecff"
_FINAL_COLOUR: Final = "#fff2cc"


def _f(value: float | None, spec: str) -> str:
    return "—" if value is None else f"{value:{spec}}"


def operators(data: BatchData) -> list[str]:
    """Who ran the batch: summary.json's ``operators`` if it has them, else the names in
    the audit (who started it, who confirmed operator steps); "unknown" only if none."""
    named = (data.summary or {}).get("operators")
    names: list[Any] = list(named) if isinstance(named, list) else []
    names += [r.get("operator") for r in data.audit
              if r.get("event") in ("batch_created", "operator_confirmed")]
    found = [str(n) for n in dict.fromkeys(names) if n]
    return [n for n in found if n != "unknown"] or found or ["unknown"]


def _material(data: BatchData) -> Mapping[str, Any]:
    material = (data.recipe_doc or {}).get("sample_material")
    return material if isinstance(material, Mapping) else {}


def material_line(data: BatchData, mb: MassBalance) -> str:
    """One line: precursor and acid loading, loaded and precursor masses with their
    sources, operators, station (and "simulated" for a dry run)."""
    what = str(_material(data).get("precursor", "")).replace("_", " ") or "sample"
    parts = [what + ("" if mb.acid_wt_pct is None
                     else f" + H₃PO₄ {mb.acid_wt_pct:g} wt% (recipe: g reagent per 100 g)")]
    parts.append(f"loaded {_mass(mb.loaded)}")
    parts.append(f"precursor {_mass(mb.precursor)}")
    who = operators(data)
    parts.append(("operators " if len(who) > 1 else "operator ") + ", ".join(who))
    station = data.station or "station unknown"
    parts.append(f"station {station}" + (" (simulated)" if data.simulated else ""))
    return "   ·   ".join(parts)


def _mass(m: Mass) -> str:
    return "unknown" if m.mass_g is None else f"{m.mass_g:.4f} g ({m.label})"


def headline(report: Report) -> str:
    """The line of results: mass minimum, exotherm, suggestion, wash loss, final yield."""
    parts = []
    mm = report.mass_minimum
    if mm is not None:
        at = mm.sample_c if mm.sample_c is not None else mm.furnace_c
        parts.append(f"mass minimum {mm.mass_pct:.2f} % at {at:.0f} °C")
    elif report.mass_note.startswith("no balance"):
        parts.append("no balance")
    if report.exotherm is not None:
        parts.append(f"exotherm peak {report.exotherm.peak_c:.1f} °C "
                     f"(onset {report.exotherm.onset_c:.1f} °C)")
    else:
        parts.append(report.exotherm_note.split(":")[0].split(" (")[0])
    if report.suggested_preoxidation_c is not None:
        parts.append(f"suggested pre-oxidation {report.suggested_preoxidation_c:.0f} °C")
    mb = report.yields
    if mb.wash is not None and mb.wash.change_loaded_pct is not None:
        parts.append(f"wash {mb.wash.change_loaded_pct:+.1f} pts")
    if mb.yield_loaded_pct is not None:
        parts.append(f"final yield {mb.yield_loaded_pct:.1f} % of loaded mixture"
                     + ("" if mb.yield_precursor_pct is None
                        else f", {mb.yield_precursor_pct:.1f} % of precursor"))
    else:
        parts.append("final yield unknown")
    return "   ·   ".join(parts)


def draw_mass_table(ax: Axes, mb: MassBalance) -> None:
    """The mass balance as a table on ``ax`` (its axes hidden): one row per stage (or per
    span between weighings), the wash's row shaded, the final yield last."""
    ax.set_axis_off()
    ax.set_title("Mass balance (boundary to boundary: a jump at a stage's end is that "
                 "stage's)", fontsize=9, loc="left")
    cells = [[r.name, _f(r.change_g, "+.4f"), _f(r.change_loaded_pct, "+.2f"),
              _f(r.change_precursor_pct, "+.2f"), _f(r.remaining_loaded_pct, ".2f"),
              _f(r.remaining_precursor_pct, ".2f"), r.end.label] for r in mb.rows]
    cells.append(["final yield", _f(mb.final.mass_g, ".4f") + " g", "", "",
                  _f(mb.yield_loaded_pct, ".2f"), _f(mb.yield_precursor_pct, ".2f"),
                  mb.final.label])
    table = ax.table(cellText=cells, colLabels=_HEADER, colWidths=list(_WIDTHS),
                     loc="upper left", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    wash = len(mb.rows) and mb.wash is not None
    for (row, col), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        cell.set_height(0.085 if row else 0.14)
        if col in (0, len(_HEADER) - 1):
            cell.get_text().set_horizontalalignment("left")
        if row == 0:
            cell.set_facecolor("#eeeeee")
        elif row == len(cells):
            cell.set_facecolor(_FINAL_COLOUR)
            cell.get_text().set_fontweight("bold")
        elif wash and mb.rows[row - 1] == mb.wash:
            cell.set_facecolor(_WASH_COLOUR)
    if not mb.rows:
        ax.text(0.0, 0.2, "no mass per stage: no balance readings and no weighings after "
                "loading", transform=ax.transAxes, fontsize=8, color="#555555")
