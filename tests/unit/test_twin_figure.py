"""The fit's figure (``controller.twin.figure``): every batch drawn when there are few, the
worst replays when there are many, so that a fit from hundreds of batches still draws a
figure Agg can make (it cannot past 65,536 pixels: about 186 panels)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from controller.twin.figure import MAX_PANELS, panels, write_fit_png
from controller.twin.fitting import TwinFit
from simulator.twin.fit import FitResult
from simulator.twin.params import TwinParams
from simulator.twin.replay import LoopReplay, Stretch


def _fit(n_batches: int) -> TwinFit:
    t = np.arange(0.0, 600.0, 2.0)
    pv = 25.0 + t / 10.0
    replays = []
    rms_k, output_pct = {}, {}
    for i in range(n_batches):
        name = f"batch-{i:03d}"
        stretch = Stretch(name, t, pv, pv, np.full_like(t, 40.0), np.full_like(t, np.nan),
                          25.0)
        replays.append((stretch, LoopReplay(pv + 0.5, pv, pv, np.full_like(t, 41.0))))
        rms_k[name] = (i * 37 % n_batches) / 10.0  # distinct, in no order
        output_pct[name] = 1.0
    result = FitResult(TwinParams(), {}, rms_k, output_pct, tuple(replays), (), 1)
    return TwinFit(result, TwinParams(), (), "2026-12-01T00:00:00Z")


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_a_few_batches_are_all_drawn_in_the_fits_order(tmp_path: Path) -> None:
    fit = _fit(3)
    assert panels(fit) == list(fit.result.rms_k)
    path = write_fit_png(fit, tmp_path / "fit.png")
    assert _png_size(path)[1] > 3 * 300  # three panels of 3.2 in at 110 dpi


def test_two_hundred_batches_draw_the_worst_replays_only(tmp_path: Path) -> None:
    fit = _fit(200)
    drawn = panels(fit)
    rms_k = fit.result.rms_k
    assert len(drawn) == MAX_PANELS
    assert min(rms_k[b] for b in drawn) >= max(rms_k[b] for b in rms_k if b not in drawn)
    path = write_fit_png(fit, tmp_path / "fit.png")
    _, height = _png_size(path)
    assert height < 2 * MAX_PANELS * 3.2 * 110  # a page, not 200 panels
    assert not (tmp_path / "fit.png.tmp").exists()
