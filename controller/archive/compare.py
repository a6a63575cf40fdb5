"""``furnace compare``: several batches side by side, from the archive or from their folders:
a row of numbers each (yields on both bases, the exotherm's peak, time in band per dwell,
outcome) and their TGA curves (mass % against sample temperature) overlaid in one PNG.

Folders are read through ``controller.analysis`` (as ``furnace report`` does); archived
batches through ``query``, the numbers as ingested and the curve from the stored trace.
Not here: printing (the CLI). matplotlib is imported only to draw.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection

from controller.analysis.data import BatchData, load_batch, sample_window
from controller.archive.query import audit_of, dwells_of, find_batch, trace_of
from controller.text import hms
from drivers.errors import ConfigurationError

__all__ = ["Compared", "DwellTime", "from_archive", "from_folder", "table_rows",
           "write_overlay_png"]

_TGA = ("elapsed_s", "mass_pct", "sample_c", "furnace_c")


@dataclass(frozen=True, slots=True)
class DwellTime:
    """One dwell: its label and temperature, time in band and planned (s)."""

    label: str
    at_c: float | None
    in_band_s: float | None
    planned_s: float | None


@dataclass(frozen=True, eq=False)
class Compared:
    """One batch's numbers and TGA curve. ``temperature`` names the curve's x channel
    (``sample_c``, else ``furnace_c``); the curve holds the rows while the sample is in
    the furnace (``analysis.data.sample_window``), empty without a balance."""

    batch_id: str
    sample: str
    outcome: str
    source: str  # "archive" or the folder
    yield_loaded_pct: float | None
    yield_precursor_pct: float | None
    exotherm_c: float | None
    exotherm_delta_t_c: float | None
    dwells: tuple[DwellTime, ...]
    temperature: str
    temperature_c: NDArray[np.float64]
    mass_pct: NDArray[np.float64]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _curve(trace: Mapping[str, Any], audit: Sequence[Mapping[str, Any]]
           ) -> tuple[str, NDArray[np.float64], NDArray[np.float64]]:
    t = np.asarray(trace["elapsed_s"], dtype=np.float64)
    mass = trace.get("mass_pct")
    sample = trace.get("sample_c")
    name = ("sample_c" if sample is not None and np.isfinite(sample).any() else "furnace_c")
    if mass is None or not np.isfinite(mass).any():
        return name, np.empty(0), np.empty(0)
    window = BatchData(Path(), "", "", "", (), {"elapsed_s": t}, {}, tuple(audit), None, ())
    end = sample_window(window)
    temp, mass = np.asarray(trace[name])[:end], np.asarray(mass)[:end]
    ok = np.isfinite(temp) & np.isfinite(mass)
    return name, temp[ok], mass[ok]


def from_folder(path: Path) -> Compared:
    """A batch folder's numbers and curve. Raises ``ConfigurationError``."""
    data = load_batch(path)
    return from_data(data, data.summary or {})


def from_data(data: BatchData, summary: Mapping[str, Any]) -> Compared:
    """A batch's numbers and curve from its records already loaded (``data``, as
    ``load_batch`` gives them) and its ``summary`` (summary.json's fields), without reading
    its folder again: what the batch that just ended hands on (``furnace sweep``)."""
    from controller.analysis.events import analyse

    if data.summary is None:
        data = replace(data, summary=summary)
    yields = summary.get("yields") or {}
    exo = analyse(data).exotherm
    name, temp, mass = _curve(data.trace, data.audit)
    return Compared(data.batch_id, data.sample, str(summary.get("outcome", "not ended")),
                    str(data.batch_dir), _num(yields.get("yield_loaded_pct")),
                    _num(yields.get("yield_precursor_pct")),
                    None if exo is None else exo.peak_c,
                    None if exo is None else exo.peak_delta_t_c,
                    tuple(DwellTime(str(d.get("label", "")), _num(d.get("at_c")),
                                    _num(d.get("in_band_s")), _num(d.get("planned_s")))
                          for d in summary.get("dwells") or ()),
                    name, temp, mass)


def from_archive(connection: Connection, name: str) -> Compared:
    """The archived batch ``name`` (a batch id, or a sample name: its newest batch).
    Raises ``ConfigurationError`` if the archive has no such batch."""
    row = find_batch(connection, name)
    if row is None:
        raise ConfigurationError("no such batch in the archive (give a batch id, a sample "
                                 "name or a batch folder)", source=name)
    pk = int(row["pk"])
    trace = trace_of(connection, pk, _TGA)
    curve = _curve(trace, audit_of(connection, pk))
    return Compared(row["batch_id"], row["sample"], row["outcome"], "archive",
                    row["yield_loaded_pct"], row["yield_precursor_pct"],
                    row["peak_exotherm_c"], row["peak_exotherm_delta_t_c"],
                    tuple(DwellTime(d["label"], d["at_c"], d["in_band_s"], d["planned_s"])
                          for d in dwells_of(connection, pk)), *curve)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def table_rows(batches: Sequence[Compared]) -> tuple[list[str], list[list[str]]]:
    """The comparison as a header and one row of text per batch."""
    header = ["batch", "sample", "outcome", "yield (loaded)", "yield (precursor)",
              "exotherm peak", "time in band per dwell"]
    rows = []
    for b in batches:
        exo = ("—" if b.exotherm_c is None else
               f"{b.exotherm_c:.1f} °C (ΔT {b.exotherm_delta_t_c or 0.0:+.2f} °C)")
        dwell = "; ".join(f"{d.label or (f'{d.at_c:g} °C' if d.at_c is not None else '?')}: "
                          f"{hms(d.in_band_s)} of {hms(d.planned_s)}" for d in b.dwells)
        rows.append([b.batch_id, b.sample, b.outcome, _pct(b.yield_loaded_pct),
                     _pct(b.yield_precursor_pct), exo, dwell or "— (no dwell)"])
    return header, rows


def write_overlay_png(batches: Sequence[Compared], path: Path) -> Path:
    """The batches' TGA curves, mass % against temperature, in one figure (PNG, 120 dpi;
    written to a temporary file and renamed into place). Batches without a curve are named
    in the legend as such. Blocking; raises ``OSError``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 6.0), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    channels = set()
    for b in batches:
        if len(b.mass_pct) == 0:
            ax.plot([], [], label=f"{b.sample} ({b.batch_id}): no balance")
            continue
        channels.add(b.temperature)
        ax.plot(b.temperature_c, b.mass_pct, linewidth=1.2,
                label=f"{b.sample}  ({b.batch_id.split('_')[0]})")
    which = " / ".join(sorted(channels)) or "sample_c"
    ax.set_xlabel(f"{'sample' if which == 'sample_c' else which} temperature (°C)")
    ax.set_ylabel("mass (% of loaded)")
    ax.set_title("TGA overlay: mass against temperature while the sample is in the furnace")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
