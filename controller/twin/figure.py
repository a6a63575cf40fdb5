"""The fit's figure: per batch, the furnace temperature and output as recorded against the
twin's closed-loop replay of the same working setpoint (matplotlib's Agg canvas), so a lab
can see where the twin is like its furnace and where it is not.

Not here: the fit (``fitting``) or where the file goes (``controller.cli_twin``).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from controller.twin.fitting import TwinFit

__all__ = ["MAX_PANELS", "panels", "write_fit_png"]

MAX_PANELS = 12
"""Batches drawn at most, one panel each: a fit from more draws its worst replays (the
command prints every batch's error). More panels would make a page nobody scrolls, and
past about 186 the image is taller than Agg can draw (65,536 pixels)."""


def panels(fit: TwinFit) -> list[str]:
    """The batches drawn: all of them in the fit's order, or the ``MAX_PANELS`` that replay
    worst (largest RMS error first)."""
    rms_k = fit.result.rms_k
    batches = list(rms_k)
    if len(batches) <= MAX_PANELS:
        return batches
    return sorted(batches, key=lambda b: rms_k[b], reverse=True)[:MAX_PANELS]


def write_fit_png(fit: TwinFit, path: Path) -> Path:
    """Draw ``fit`` to ``path`` (replaced whole: written beside it, then renamed). Raises
    ``OSError`` if it cannot be written (nothing is left beside it)."""
    batches = panels(fit)
    fig = Figure(figsize=(11.0, 3.2 * len(batches) + 0.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(batches), 1, squeeze=False)[:, 0]
    for ax, batch in zip(axes, batches, strict=True):
        out_ax = ax.twinx()
        first = True
        for s, r in fit.result.replays:
            if s.batch != batch:
                continue
            h = s.t_s / 3600.0
            ax.plot(h, s.wsp_c, color="0.6", lw=0.8, ls="--", label="working SP" if first
                    else None)
            ax.plot(h, s.pv_c, color="C3", lw=1.2, label="PV recorded" if first else None)
            ax.plot(h, r.tc_c, color="C0", lw=1.0, label="PV replayed" if first else None)
            out_ax.plot(h, s.output_pct, color="C1", lw=0.5, alpha=0.5,
                        label="output recorded" if first else None)
            out_ax.plot(h, r.output_pct, color="C2", lw=0.6, alpha=0.7,
                        label="output replayed" if first else None)
            first = False
        ax.set_title(f"{batch}: replay error {fit.result.rms_k[batch]:.2f} K RMS, output "
                     f"{fit.result.output_rms_pct[batch]:.1f} % RMS", fontsize=9)
        ax.set_xlabel("elapsed (h)")
        ax.set_ylabel("furnace (°C)")
        out_ax.set_ylabel("output (%)")
        out_ax.set_ylim(0.0, 105.0)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = out_ax.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper right")
    shown = ("" if len(batches) == len(fit.result.rms_k) else
             f" (the {len(batches)} worst replays of {len(fit.result.rms_k)} batches)")
    fig.suptitle(f"twin fitted {fit.fitted_utc}: recorded against replayed{shown}",
                 fontsize=10)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path
