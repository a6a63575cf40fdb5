"""The report's rows for the console: what a batch did and what its traces show, as
(what, value) pairs for a two-column table (``furnace report``).

Not here: finding the numbers (``events``) or drawing them (``report``).
"""

from __future__ import annotations

from collections.abc import Collection

from controller.analysis.events import Report
from controller.analysis.yields import Mass, MassBalance, MassRow
from controller.text import hms

__all__ = ["format_events", "format_yields"]


def _c(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else f"{value:{spec}} °C"


def _g(mass: Mass) -> str:
    return "—" if mass.mass_g is None else f"{mass.mass_g:.4f} g ({mass.label})"


def _pts(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _left(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} %"


def _change(row: MassRow) -> str:
    change = "—" if row.change_g is None else f"{row.change_g:+.4f} g"
    return (f"{change} ({_pts(row.change_loaded_pct)} / {_pts(row.change_precursor_pct)} "
            "pts of loaded / precursor)")


def format_yields(mb: MassBalance, *, staged: Collection[str] = ()) -> list[tuple[str, str]]:
    """(what, value) rows of the mass balance: the two bases, where the rows come from,
    the rows not already on a stage's line (``staged``), the wash's loss and the yield."""
    acid = "" if mb.acid_wt_pct is None else (
        f", recipe acid {mb.acid_wt_pct:g} wt% (g reagent per 100 g precursor)")
    rows = [("loaded mixture", _g(mb.loaded)), ("precursor", _g(mb.precursor) + acid)]
    sources = sorted({r.end.label for r in mb.rows})
    if sources:
        rows.append(("mass per stage", f"from {' and '.join(sources)}, boundary to boundary"))
    rows += [(f"mass: {r.name}", _change(r)) for r in mb.rows if r.name not in staged]
    if mb.wash is not None:
        rows.append(("wash loss", _change(mb.wash)))
    final = ("—" if mb.final.mass_g is None else
             f"{_left(mb.yield_loaded_pct)} of loaded mixture, {_left(mb.yield_precursor_pct)}"
             f" of precursor: {_g(mb.final)}")
    rows.append(("final yield", final))
    rows += [(f"weighed: {w.field}", f"{w.mass_g:.4f} g at {w.sample_action or w.stage} "
                                     f"({'simulated' if w.simulated else w.source})")
             for w in mb.weighings]
    return rows


def format_events(report: Report) -> list[tuple[str, str]]:
    """(what, value) rows for a two-column console table; the numbers of ``to_dict``."""
    rows = [("outcome", report.outcome + (f" ({report.end_reason})" if report.end_reason
                                          else "")),
            ("duration", f"{hms(report.actual_s)} actual, {hms(report.planned_s)} planned"),
            ("holdback", hms(report.holdback_s))]
    mm = report.mass_minimum
    rows.append(("mass minimum", f"none: {report.mass_note}" if mm is None else
                 f"{mm.mass_pct:.2f} % at {_c(mm.sample_c)} sample, {_c(mm.furnace_c)} "
                 f"furnace ({hms(mm.elapsed_s)}, {mm.stage})"))
    exo = report.exotherm
    if exo is None:
        rows.append(("exotherm", f"none: {report.exotherm_note}"))
    else:
        where = "sample" if exo.temperature_channel == "sample_c" else "furnace"
        rows.append(("exotherm peak", f"{_c(exo.peak_c)} {where} (ΔT {exo.peak_excess_c:+.2f} "
                                      f"°C above baseline, {exo.stage})"))
        rows.append(("exotherm onset", f"{_c(exo.onset_c)} (5 σ departure; σ "
                                       f"{exo.noise_c:.3f} °C), extrapolated "
                                       f"{_c(exo.extrapolated_onset_c)}"))
    if report.screening or report.suggested_preoxidation_c is not None:
        rows.append(("pre-oxidation", report.suggestion))
    per_stage = {r.name: r for r in report.yields.rows if len(r.stages) == 1}
    for s in report.stages:
        mass = per_stage.get(s.name)
        rows.append((f"stage: {s.name}", f"{hms(s.actual_s)} actual, {hms(s.planned_s)} "
                                         f"planned" + ("" if mass is None else
                                                       f"; mass {_change(mass)}")))
    rows += format_yields(report.yields, staged=per_stage)
    for g in report.gases:
        used = "—" if g.used_l is None else f"{g.used_l:.1f} L"
        planned = "—" if g.planned_l is None else f"{g.planned_l:.1f} L"
        rows.append((f"gas: {g.gas}", f"{used} used, {planned} planned"))
    rows += [(f"{hms(i.elapsed_s)} {i.event}", i.text) for i in report.incidents]
    return rows
