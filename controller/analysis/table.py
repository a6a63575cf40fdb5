"""The report's rows for the console: what a batch did and what its traces show, as
(what, value) pairs for a two-column table (``furnace report``).

Not here: finding the numbers (``events``) or drawing them (``report``).
"""

from __future__ import annotations

from controller.analysis.events import Report
from controller.text import hms

__all__ = ["format_events"]


def _c(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else f"{value:{spec}} °C"


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
    for s in report.stages:
        mass = ("" if s.mass_change_pct is None
                else f", mass {s.mass_change_pct:+.2f} % ({s.mass_start_pct:.2f} → "
                     f"{s.mass_end_pct:.2f} %)")
        rows.append((f"stage: {s.name}",
                     f"{hms(s.actual_s)} actual, {hms(s.planned_s)} planned{mass}"))
    for g in report.gases:
        used = "—" if g.used_l is None else f"{g.used_l:.1f} L"
        planned = "—" if g.planned_l is None else f"{g.planned_l:.1f} L"
        rows.append((f"gas: {g.gas}", f"{used} used, {planned} planned"))
    rows += [(f"{hms(i.elapsed_s)} {i.event}", i.text) for i in report.incidents]
    return rows
