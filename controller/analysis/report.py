"""The batch report: load a batch folder, draw report.png, and the event rows for the console.

Not here: the event extraction (``controller/analysis/events.py``, pure numpy) or the command
line (``furnace report`` in ``controller/cli.py`` calls ``load_batch``, ``analyse``,
``write_report_png`` and ``format_events``). Drawing uses matplotlib's Agg canvas directly,
never pyplot, so it needs no display and leaves no global state behind.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from numpy.typing import NDArray

from controller.analysis.events import (
    HEATING_MIN_C_PER_MIN,
    RUN_STATES,
    SMOOTH_S,
    BatchData,
    Report,
    StagePlan,
    analyse,
    heating_rate_c_per_min,
    moving_mean,
    sample_window,
    stage_runs,
)
from controller.records.folder import AUDIT_FILE, RECIPE_FILE, SUMMARY_FILE, TRACE_FILE
from controller.text import hms
from drivers.errors import ConfigurationError

__all__ = [
    "BatchData",
    "REPORT_FILE",
    "REQUIRED_COLUMNS",
    "Report",
    "analyse",
    "decimate",
    "format_events",
    "load_batch",
    "write_report_png",
]

logger = logging.getLogger(__name__)

REPORT_FILE: Final = "report.png"
REQUIRED_COLUMNS: Final = ("elapsed_s", "wall_utc", "stage", "step", "state", "setpoint_c",
                           "working_setpoint_c", "furnace_c", "output_pct")
TEXT_COLUMNS: Final = frozenset({"wall_utc", "stage", "state"})
FIGSIZE_IN: Final = (11.69, 8.27)  # A4 landscape
DPI: Final = 120
PLOT_BUCKETS: Final = 2000  # min/max decimation: at most ~4000 points per line
_STAGE_COLOURS: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_GAS_COLOURS: Final = {"Ar": "#1f77b4", "air": "#d62728", "N2": "#2ca02c", "O2": "#ff7f0e"}
_FAILED_STATES: Final = frozenset({"aborting", "aborted", "faulted"})
_INCIDENT_STYLE: Final = {"interlock_trip": ("#d62728", "interlock trip"),
                          "alarm": ("#ff7f0e", "alarm"),
                          "operator_confirmed": ("#9467bd", "operator")}


# ----------------------------------------------------------------------------- loading
def _fail(path: Path, message: str) -> ConfigurationError:
    return ConfigurationError(message, source=str(path))


def _read_trace(path: Path) -> tuple[tuple[str, ...], dict[str, NDArray[np.float64]],
                                       dict[str, NDArray[np.str_]]]:
    """Parse trace.csv into float columns (NaN for empty cells) and text columns."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _fail(path, "not UTF-8 text") from None
    lines = text.splitlines()
    if lines and not raw.endswith(b"\n"):  # a row torn by a crash: not data yet
        logger.warning("ignoring a torn last trace row", extra={"path": str(path)})
        lines.pop()
    rows = list(csv.reader(lines))
    if not rows or not rows[0]:
        raise _fail(path, "empty, no header line")
    header = tuple(rows[0])
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise _fail(path, f"not a batch trace: missing column(s) {', '.join(missing)}")
    body = rows[1:]
    if not body:
        raise _fail(path, "no data rows")
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _fail(path, f"line {n}: {len(row)} cells, the header has {len(header)}")
    numeric: dict[str, NDArray[np.float64]] = {}
    texts: dict[str, NDArray[np.str_]] = {}
    for name, cells in zip(header, zip(*body, strict=True), strict=True):
        if name in TEXT_COLUMNS:
            texts[name] = np.array(cells, dtype=np.str_)
            continue
        try:
            numeric[name] = np.array([c or "nan" for c in cells], dtype=np.float64)
        except ValueError:
            if name in REQUIRED_COLUMNS:
                line = next(i for i, c in enumerate(cells, start=2) if not _is_number(c))
                raise _fail(path, f"line {line}: {name} is {cells[line - 2]!r}, "
                                  f"not a number") from None
            texts[name] = np.array(cells, dtype=np.str_)  # someone's extra text column
    t = numeric["elapsed_s"]
    bad = np.flatnonzero(~np.isfinite(t) | (np.diff(t, prepend=-np.inf) < 0))
    if len(bad):
        raise _fail(path, f"line {bad[0] + 2}: elapsed_s is empty or goes backwards")
    return header, numeric, texts


def _is_number(cell: str) -> bool:
    try:
        float(cell or "nan")
    except ValueError:
        return False
    return True


def _read_audit(path: Path) -> tuple[dict[str, Any], ...]:
    """The audit records, in order; a torn last line is skipped (the verifier reports it)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    if torn.strip():
        logger.warning("ignoring a torn last audit record", extra={"path": str(path)})
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise _fail(path, f"line {n}: not JSON") from None
        if not isinstance(record, dict):
            raise _fail(path, f"line {n}: not a JSON object")
        records.append(record)
    return tuple(records)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    except (ValueError, RecursionError):
        raise _fail(path, "not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise _fail(path, "not a JSON object")
    return value


def _read_stages(path: Path, audit: Sequence[Mapping[str, Any]]) -> tuple[StagePlan, ...]:
    """Stages from the frozen recipe; without one, from the audit's step_started records."""
    if not path.exists():
        kinds: dict[str, list[str]] = {}
        for r in audit:
            if r.get("event") == "step_started":
                kinds.setdefault(str(r.get("stage")), []).append(str(r.get("kind")))
        return tuple(StagePlan(name, "", tuple(k)) for name, k in kinds.items())
    try:
        recipe = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, f"not valid TOML ({exc})") from None
    stages = recipe.get("stages")
    if not isinstance(stages, list):
        raise _fail(path, "stages: missing or not an array of tables")
    plans = []
    for s in stages:
        steps = s.get("steps", []) if isinstance(s, dict) else []
        plans.append(StagePlan(str(s.get("name", "")) if isinstance(s, dict) else "",
                               str(s.get("atmosphere", "")) if isinstance(s, dict) else "",
                               tuple(str(x.get("kind", "")) for x in steps
                                     if isinstance(x, dict))))
    return tuple(plans)


def load_batch(batch_dir: Path) -> BatchData:
    """Load a batch folder (DESIGN.md §3) for ``analyse`` and ``write_report_png``.

    Needs trace.csv and audit.jsonl; recipe.toml and summary.json are used when present
    (a batch still running or interrupted has no summary). Reads files only, blocking.
    Raises ``ConfigurationError`` (one line naming the file) for a folder that is not a
    batch, or a malformed trace, audit, recipe or summary.
    """
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise _fail(batch_dir, "not a folder")
    for name in (TRACE_FILE, AUDIT_FILE):
        if not (batch_dir / name).is_file():
            raise _fail(batch_dir, f"not a batch folder: no {name}")
    columns, numeric, texts = _read_trace(batch_dir / TRACE_FILE)
    audit = _read_audit(batch_dir / AUDIT_FILE)
    summary = _read_json(batch_dir / SUMMARY_FILE)
    created = next((r for r in audit if r.get("event") == "batch_created"), {})
    info: Mapping[str, Any] = summary or {}
    return BatchData(
        batch_dir=batch_dir,
        batch_id=str(created.get("batch_id") or info.get("batch_id") or batch_dir.name),
        sample=str(created.get("sample") or info.get("sample") or ""),
        recipe=str(created.get("recipe") or info.get("recipe") or ""),
        columns=columns, trace=numeric, text=texts, audit=audit, summary=summary,
        stages=_read_stages(batch_dir / RECIPE_FILE, audit))


# ----------------------------------------------------------------------------- drawing
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
        flow = data.channel(f"flow_{gas}_sccm")
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


def _draw_tga(ax: Axes, data: BatchData, report: Report, colours: Mapping[str, str],
              temp: NDArray[np.float64], keep: NDArray[np.bool_], tlabel: str) -> None:
    mass = data.channel("mass_pct")
    title = "TGA: mass % and DTG (heating and holds)"
    if mass is None:
        _no_channel(ax, title, "no balance\n(no mass_pct readings in trace.csv)")
        return
    ax.set_title(title, fontsize=10, loc="left")
    _by_stage(ax, temp, mass, keep, data, colours, lw=1.4)
    dtg = data.channel("dtg_pct_per_min")
    if dtg is not None:
        axd = ax.twinx()
        smooth = moving_mean(dtg, _smooth_rows(data))
        shown = np.where(keep, smooth, np.nan)
        _plot(axd, temp, shown, color="#444444", lw=0.9, ls="--")
        _robust_ylim(axd, shown, include_zero=True)
        axd.set_ylabel(f"DTG (%/min, {SMOOTH_S:.0f} s mean), dashed", color="#444444")
    mm = report.mass_minimum
    if mm is not None:
        at = mm.sample_c if report.temperature_channel == "sample_c" else mm.furnace_c
        if at is not None:
            ax.plot([at], [mm.mass_pct], marker="v", color="black", ms=7)
            x0, x1 = ax.get_xlim()
            side = "right" if at > (x0 + x1) / 2 else "left"
            ax.annotate(f"min {mm.mass_pct:.2f} % at {at:.0f} °C", (at, mm.mass_pct),
                        xytext=(-4 if side == "right" else 4, 9), textcoords="offset points",
                        ha=side, va="bottom", fontsize=8, fontweight="bold")
    ax.set_xlabel(tlabel)
    ax.set_ylabel("mass (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def _draw_dsc(ax: Axes, data: BatchData, report: Report, colours: Mapping[str, str],
              temp: NDArray[np.float64], keep: NDArray[np.bool_], tlabel: str) -> None:
    title = f"DSC-like: ΔT (sample − furnace, {SMOOTH_S:.0f} s mean)"
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
    ax.set_ylabel("ΔT (°C)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def _headline(report: Report) -> str:
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
    return "   ·   ".join(parts)


def write_report_png(data: BatchData, report: Report, path: Path) -> Path:
    """Draw the batch report as a PNG (A4 landscape, 120 dpi) and return its path.

    Panels: temperature/setpoint with shaded stages over process hours and flows beneath;
    TGA (mass %, DTG) and DSC-like ΔT against temperature. Written to a temporary file and
    renamed into place. Blocking (about a second for a 25 h trace); raises ``OSError``.
    """
    path = Path(path)
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    outer = fig.add_gridspec(1, 2, width_ratios=(1.45, 1.0))
    left = outer[0].subgridspec(2, 1, height_ratios=(3.0, 1.25), hspace=0.0)
    right = outer[1].subgridspec(2, 1)
    ax_t = fig.add_subplot(left[0])
    ax_f = fig.add_subplot(left[1], sharex=ax_t)
    ax_m = fig.add_subplot(right[0])
    ax_d = fig.add_subplot(right[1])  # not sharex: a "no balance" panel drops its ticks
    colours = _stage_colours(data)
    channel = report.temperature_channel
    temp = data.trace[channel]
    keep = _thermal_rows(data, temp)
    tlabel = f"{'sample' if channel == 'sample_c' else 'furnace'} temperature (°C)"
    _draw_process(ax_t, ax_f, data, colours)
    _draw_tga(ax_m, data, report, colours, temp, keep, tlabel)
    _draw_dsc(ax_d, data, report, colours, temp, keep, tlabel)
    end = f" ({report.end_reason})" if report.end_reason else ""
    fig.suptitle(f"{report.sample or '?'}  ·  batch {report.batch_id}  ·  {report.outcome}{end}"
                 f"  ·  {hms(report.actual_s)} actual, {hms(report.planned_s)} planned\n"
                 f"{_headline(report)}", fontsize=10.5)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------ events
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
