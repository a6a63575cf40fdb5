"""report.png: the batch drawn on one A4 landscape page (matplotlib's Agg canvas).

Panels: temperature and setpoint with shaded stages over process hours, flows (and O2)
beneath, the mass balance table under them; TGA over the whole batch (mass % of the loaded
mixture and of the precursor over process hours, the wash marked, the final yield) and
DSC-like ΔT against temperature while the sample is in before the wash (exo up). Drawing
uses the Agg canvas directly, never pyplot, so it needs no display and leaves no global
state behind.

Not here: loading the batch (``data``), the events (``events``, ``exotherm``, ``yields``),
the page's words and table (``figure_text``) or the console rows (``table``); ``furnace
report`` in ``controller/cli.py`` calls them in turn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from numpy.typing import NDArray

from controller.analysis.data import RUN_STATES, BatchData, sample_leaves, sample_window
from controller.analysis.events import Report
from controller.analysis.figure_text import draw_mass_table, headline, material_line
from controller.analysis.series import (
    HEATING_MIN_C_PER_MIN,
    SMOOTH_S,
    heating_rate_c_per_min,
    moving_mean,
    stage_readings,
    stage_runs,
)
from controller.records.columns import Phase, flow_column
from controller.records.folder import TRACE_FILE
from controller.text import hms

__all__ = ["decimate", "write_report_png"]

FIGSIZE_IN: Final = (11.69, 8.27)  # A4 landscape
DPI: Final = 120
PLOT_BUCKETS: Final = 2000  # min/max decimation: at most ~4000 points per line
_STAGE_COLOURS: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_GAS_COLOURS: Final = {"Ar": "#1f77b4", "air": "#d62728", "N2": "#2ca02c", "O2": "#ff7f0e"}
_FAILED_STATES: Final = frozenset(p.value for p in (Phase.ABORTING, Phase.ABORTED,
                                                    Phase.FAULTED))
_INCIDENT_STYLE: Final = {"interlock_trip": ("#d62728", "interlock trip"),
                          "alarm": ("#ff7f0e", "alarm"),
                          "operator_confirmed": ("#9467bd", "operator")}


def decimate(x: NDArray[np.float64], y: NDArray[np.float64],
             buckets: int = PLOT_BUCKETS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Keep each bucket's lowest and highest point, so spikes survive; NaN gaps stay gaps."""
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    size = math.ceil(n / buckets)
    m = (n // size) * size
    block = y[:m].reshape(-1, size)
    finite = np.isfinite(block)
    lo = np.where(finite, block, np.inf).argmin(axis=1)
    hi = np.where(finite, block, -np.inf).argmax(axis=1)
    start = np.arange(0, m, size)
    idx = np.concatenate((np.unique(np.concatenate((start + lo, start + hi))), np.arange(m, n)))
    return x[idx], y[idx]


def _plot(ax: Axes, x: NDArray[np.float64], y: NDArray[np.float64], **style: Any) -> None:
    ax.plot(*decimate(x, y), **style)


def _stage_colours(data: BatchData) -> dict[str, str]:
    names = [s.name for s in data.stages]
    names += [n for n, _, _ in stage_runs(data.text["stage"])
              if n not in names and n not in RUN_STATES]
    return {n: _STAGE_COLOURS[i % len(_STAGE_COLOURS)] for i, n in enumerate(names)}


def _no_channel(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title, fontsize=10, loc="left")
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=12,
            color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_process(ax: Axes, axf: Axes, data: BatchData, colours: Mapping[str, str]) -> None:
    """Panel 1: temperatures and setpoint over hours with stages; flows (and O2) beneath."""
    tr = data.trace
    hours = tr["elapsed_s"] / 3600.0
    top = blended_transform_factory(ax.transData, ax.transAxes)
    span_h = float(hours[-1] - hours[0]) or 1.0
    for name, a, b in stage_runs(data.text["stage"]):
        x0, x1 = float(hours[a]), float(hours[min(b, len(hours) - 1)])
        # Outside the recipe (aborting, held...): hatched, red where the batch failed.
        colour = colours.get(name, "#d62728" if name in _FAILED_STATES else "#999999")
        for axis in (ax, axf):
            axis.axvspan(x0, x1, color=colour, alpha=0.12 if name in colours else 0.08,
                         lw=0, hatch=None if name in colours else "//")
        if (x1 - x0) / span_h >= 0.012:
            ax.text((x0 + x1) / 2, 0.985, name, transform=top, rotation=90, ha="center",
                    va="top", fontsize=8, color=colour if name in colours else "#555555")
    _plot(ax, hours, tr["setpoint_c"], color="black", lw=1.0, ls="--", label="setpoint")
    _plot(ax, hours, tr["furnace_c"], color="#b2182b", lw=1.4, label="furnace")
    sample = data.channel("sample_c")
    if sample is not None:
        _plot(ax, hours, sample, color="#ef8a62", lw=1.0, label="sample")
    seen: set[str] = set()
    for r in data.audit:
        style = _INCIDENT_STYLE.get(str(r.get("event")))
        t_s = r.get("t_s")
        if style is None or not isinstance(t_s, int | float):
            continue
        ax.axvline(t_s / 3600.0, color=style[0], lw=1.0, ls=":",
                   label=None if style[1] in seen else style[1])
        seen.add(style[1])
    ax.set_ylabel("temperature (°C)")
    # Headroom above the highest temperature for the stage names.
    ax.set_ylim(bottom=0, top=max(_finite_max(tr["furnace_c"]), _finite_max(tr["setpoint_c"]),
                                  _finite_max(sample), 100.0) * 1.25 + 10)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=6, fontsize=8, frameon=False,
              borderaxespad=0.2)
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    for gas in data.gases():
        flow = data.channel(flow_column(gas))
        if flow is not None and np.nanmax(np.abs(flow)) > 0:
            _plot(axf, hours, flow, lw=1.1, label=gas, color=_GAS_COLOURS.get(gas))
    axf.set_ylim(bottom=0.0, top=max([*(_finite_max(np.asarray(line.get_ydata(), float))
                                        for line in axf.lines), 1.0]) * 1.25)
    axf.set_ylabel("flow (sccm)")
    axf.set_xlabel("process time (h)")
    if hours[-1] > hours[0]:
        axf.set_xlim(float(hours[0]), float(hours[-1]))
    axf.grid(alpha=0.3)
    o2 = data.channel("o2_ppm")
    handles, labels = axf.get_legend_handles_labels()
    if o2 is not None and (o2 > 0).any():
        axo = axf.twinx()
        _plot(axo, hours, np.where(o2 > 0, o2, np.nan), color="#555555", lw=0.9, ls="-.")
        axo.set_yscale("log")
        axo.set_ylabel("O₂ (ppm)", color="#555555")
        handles += axo.lines[:1]
        labels += ["O₂"]
    if handles:
        axf.legend(handles, labels, loc="upper right", fontsize=8, ncol=len(labels))


def _finite_max(y: NDArray[np.float64] | None) -> float:
    """The largest finite value, or -inf (no warning for an all-NaN column)."""
    if y is None:
        return -math.inf
    finite = y[np.isfinite(y)]
    return float(finite.max()) if len(finite) else -math.inf


def _robust_ylim(ax: Axes, y: NDArray[np.float64], *, include_zero: bool) -> None:
    """Limits from the 0.5-99.5 percentiles, so one start-up spike does not flatten a panel."""
    if not np.isfinite(y).any():
        return
    lo, hi = (float(v) for v in np.nanpercentile(y, [0.5, 99.5]))
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = 0.12 * (hi - lo) or 0.5
    ax.set_ylim(lo - pad, hi + pad)


def _smooth_rows(data: BatchData) -> int:
    """Rows in SMOOTH_S seconds at the trace's median scan period."""
    t = data.trace["elapsed_s"]
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return max(1, round(SMOOTH_S / step)) if step > 0 else 1


def _thermal_rows(data: BatchData, temp: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Rows for the TGA/DSC panels: the sample in the furnace, heating or holding."""
    t = data.trace["elapsed_s"]
    keep = np.zeros(len(t), dtype=bool)
    keep[:sample_window(data)] = True
    rate = heating_rate_c_per_min(t, temp)
    keep &= ~(rate < -HEATING_MIN_C_PER_MIN)  # NaN rate keeps the row
    return keep


def _by_stage(ax: Axes, x: NDArray[np.float64], y: NDArray[np.float64],
              keep: NDArray[np.bool_], data: BatchData, colours: Mapping[str, str],
              **style: Any) -> None:
    stage = data.text["stage"]
    for name, colour in colours.items():
        mask = keep & (stage == name)
        if mask.any():
            _plot(ax, x, np.where(mask, y, np.nan), color=colour, label=name, **style)


def _wash_span_h(data: BatchData) -> tuple[float, float] | None:
    """Hours from the start of the step where the sample leaves to the scan that closes its
    stage (``stage_readings``: the first reading with the sample back): the wash's gap."""
    leaves = sample_leaves(data)
    t_s = data.trace["elapsed_s"]
    if leaves is None or not isinstance(leaves.get("t_s"), int | float):
        return None
    closes = {n: b for n, _, b in stage_readings(data.text["stage"], t_s, RUN_STATES)}
    row = closes.get(str(leaves.get("stage")))
    return None if row is None else (float(leaves["t_s"]) / 3600.0, float(t_s[row]) / 3600.0)


def _draw_tga(ax: Axes, data: BatchData, report: Report, colours: Mapping[str, str]) -> None:
    """Mass % of the loaded mixture over the whole batch (right axis: % of precursor),
    the wash's gap and loss marked, the final yield drawn; weighings as points."""
    mb = report.yields
    title = "TGA, whole batch: mass (% of loaded mixture)"
    hours = data.trace["elapsed_s"] / 3600.0
    grams = data.channel("mass_g")
    loaded = mb.loaded.mass_g
    pct = 100.0 * grams / loaded if grams is not None and loaded else data.channel("mass_pct")
    if pct is None and not mb.rows:
        _no_channel(ax, title, f"no balance (no mass readings in {TRACE_FILE})\n"
                               "and no weighings after loading")
        return
    ax.set_title(title, fontsize=10, loc="left")
    gap = _wash_span_h(data)
    if pct is not None:
        shown = pct.copy()
        if gap is not None:  # the boat is out (or just back): no line across the wash
            shown[(hours > gap[0]) & (hours < gap[1])] = np.nan
        stage = data.text["stage"]
        for name, colour in colours.items():
            mask = stage == name
            if mask.any():
                _plot(ax, hours, np.where(mask, shown, np.nan), color=colour, lw=1.4,
                      label=name)
    weighed = [((w.elapsed_s or 0.0) / 3600.0, 100.0 * w.mass_g / loaded, w.sample_action)
               for w in mb.weighings if w.role == "sample_g" and loaded
               and w.sample_action != "load"]
    if weighed:  # points, not a line: nothing is known between weighings
        points = [(0.0, 100.0, "load"), *weighed]
        xs, ys, actions = zip(*points, strict=True)
        ax.plot(xs, ys, ls="none", marker="s", ms=5, color="#444444", label="weighed")
        for x, y, action in points:
            ax.annotate(action, (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=7, color="#444444")
    wash = mb.wash
    if gap is not None:
        wide = 0.004 * float(hours[-1] - hours[0])  # visible even when the wash took 2 s
        ax.axvspan(gap[0], max(gap[1], gap[0] + wide), color="#555555", alpha=0.18, lw=0,
                   hatch="//")
        if wash is not None and wash.remaining_loaded_pct is not None \
                and wash.change_loaded_pct is not None:
            top = wash.remaining_loaded_pct - wash.change_loaded_pct
            ax.annotate("", (gap[1], wash.remaining_loaded_pct), xytext=(gap[0], top),
                        arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.9})
            ax.annotate(f"wash {wash.change_loaded_pct:+.1f} pts\n({wash.change_g:+.3f} g)",
                        (gap[1], (top + wash.remaining_loaded_pct) / 2), xytext=(5, 0),
                        textcoords="offset points", fontsize=8, va="center")
    if mb.yield_loaded_pct is not None:
        ax.axhline(mb.yield_loaded_pct, color="black", lw=0.8, ls="--")
        yp = ("" if mb.yield_precursor_pct is None
              else f" = {mb.yield_precursor_pct:.1f} % of precursor")
        ax.annotate(f"final yield {mb.yield_loaded_pct:.1f} % of loaded{yp}\n"
                    f"({mb.final.label})",
                    (1.0, mb.yield_loaded_pct), xycoords=("axes fraction", "data"),
                    xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom",
                    fontsize=8, fontweight="bold")
    mm = report.mass_minimum
    if mm is not None and pct is not None and data.channel("mass_g") is not None and loaded:
        i = int(np.searchsorted(data.trace["elapsed_s"], mm.elapsed_s))
        at = mm.sample_c if report.temperature_channel == "sample_c" else mm.furnace_c
        y = float(moving_mean(pct, _smooth_rows(data))[min(i, len(pct) - 1)])
        ax.plot([mm.elapsed_s / 3600.0], [y], marker="v", color="black", ms=6)
        ax.annotate(f"min at {at:.0f} °C", (mm.elapsed_s / 3600.0, y), xytext=(4, -12),
                    textcoords="offset points", fontsize=7)
    if loaded and mb.precursor.mass_g:
        ratio = loaded / mb.precursor.mass_g

        def to_precursor(y: Any) -> Any:
            return y * ratio

        def to_loaded(y: Any) -> Any:
            return y / ratio

        sec = ax.secondary_yaxis("right", functions=(to_precursor, to_loaded))
        sec.set_ylabel(f"% of precursor ({mb.precursor.label})", fontsize=8)
    ax.set_ylim(bottom=0.0, top=105.0)
    ax.set_xlim(float(hours[0]), float(hours[-1]) if hours[-1] > hours[0] else 1.0)
    ax.set_xlabel("process time (h)")
    ax.set_ylabel("mass (% of loaded mixture)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=6.5, ncol=2)


def _draw_dsc(ax: Axes, data: BatchData, report: Report, colours: Mapping[str, str],
              temp: NDArray[np.float64], keep: NDArray[np.bool_], tlabel: str) -> None:
    title = f"DSC-like, before the wash: ΔT, {SMOOTH_S:.0f} s mean (exo up)"
    delta = data.channel("delta_t_c")
    sample = data.channel("sample_c")
    if delta is None and sample is not None:
        delta = sample - data.trace["furnace_c"]
    if delta is None:
        _no_channel(ax, title, "no sample thermocouple\n(no sample_c/delta_t_c readings)")
        return
    ax.set_title(title, fontsize=10, loc="left")
    smooth = moving_mean(delta, _smooth_rows(data))
    _by_stage(ax, temp, smooth, keep, data, colours, lw=1.2)
    _robust_ylim(ax, np.where(keep, smooth, np.nan), include_zero=False)
    exo = report.exotherm
    if exo is None:
        ax.text(0.02, 0.95, "no exotherm found", transform=ax.transAxes, va="top", fontsize=9)
    else:
        xs = np.array([exo.baseline_from_c, exo.peak_c])
        ax.plot(xs, exo.baseline_intercept_c + exo.baseline_slope * xs, color="black",
                lw=0.9, ls=":", label="baseline")
        ax.plot([exo.peak_c], [exo.peak_delta_t_c], marker="v", color="black", ms=8)
        ax.annotate(f"peak {exo.peak_c:.1f} °C", (exo.peak_c, exo.peak_delta_t_c),
                    xytext=(6, 4), textcoords="offset points", fontsize=9, fontweight="bold")
        ax.axvline(exo.onset_c, color="black", lw=0.8, ls="--")
        ax.annotate(f"onset {exo.onset_c:.1f} °C", (exo.onset_c, 0.97),
                    xycoords=("data", "axes fraction"), xytext=(-3, 0),
                    textcoords="offset points", ha="right", va="top", rotation=90,
                    fontsize=8)
    ax.set_xlabel(tlabel)
    ax.set_ylabel("ΔT = sample − furnace (°C)   exo ↑")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def write_report_png(data: BatchData, report: Report, path: Path) -> Path:
    """Draw the batch report as a PNG (A4 landscape, 120 dpi) and return its path.

    Panels: temperature/setpoint with shaded stages over process hours and flows beneath;
    TGA (mass %, DTG) and DSC-like ΔT against temperature. Written to a temporary file and
    renamed into place. Blocking (about a second for a 25 h trace); raises ``OSError``.
    """
    path = Path(path)
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    outer = fig.add_gridspec(1, 2, width_ratios=(1.35, 1.0))
    left = outer[0].subgridspec(3, 1, height_ratios=(2.6, 1.0, 1.75), hspace=0.0)
    right = outer[1].subgridspec(2, 1)
    ax_t = fig.add_subplot(left[0])
    ax_f = fig.add_subplot(left[1], sharex=ax_t)
    ax_b = fig.add_subplot(left[2])
    ax_m = fig.add_subplot(right[0])  # not sharex: a "no balance" panel drops its ticks
    ax_d = fig.add_subplot(right[1])
    colours = _stage_colours(data)
    channel = report.temperature_channel
    temp = data.trace[channel]
    keep = _thermal_rows(data, temp)
    tlabel = f"{'sample' if channel == 'sample_c' else 'furnace'} temperature (°C)"
    _draw_process(ax_t, ax_f, data, colours)
    draw_mass_table(ax_b, report.yields)
    _draw_tga(ax_m, data, report, colours)
    _draw_dsc(ax_d, data, report, colours, temp, keep, tlabel)
    end = f" ({report.end_reason})" if report.end_reason else ""
    fig.suptitle(f"{report.sample or '?'}  ·  batch {report.batch_id}  ·  {report.outcome}{end}"
                 f"  ·  {hms(report.actual_s)} actual, {hms(report.planned_s)} planned\n"
                 f"{material_line(data, report.yields)}\n{headline(report)}", fontsize=9.5)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path
