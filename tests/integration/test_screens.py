"""The TGA/DSC-like screens of DESIGN §1 at every acid loading of the paper (50, 60, 70 and
80 g of reagent per 100 g of pitch; docs/decisions/0011-acid-loading.md), each a whole dry
run of profiles/screen-air.toml or screen-n2.toml (2 g) on the built-in simulated station,
read back by the report's analysis as ``furnace report`` reads it.

In air the mass falls while the water leaves, bottoms out at 150-190 °C and rises as the
pitch takes up oxygen; an exotherm peaks near 220 °C and the report suggests pre-oxidising
there. In nitrogen the mass falls steadily from 170 to 300 °C and there is no exotherm.

Each test runs its own screen (a few seconds, virtual clock), so xdist spreads them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

import numpy as np
import pytest

from controller.analysis.data import load_batch
from controller.analysis.events import Report, analyse
from controller.analysis.exotherm import BASELINE_QUIET
from controller.analysis.series import (
    SMOOTH_S,
    heating_rate_c_per_min,
    moving_mean,
    window_rows,
)
from controller.run.runstate import Phase
from tests.conftest import PROFILES
from tests.integration.helpers import Batch, dry_run

LOADINGS: Final = (50, 60, 70, 80)


def screen(gas: str, acid_wt: int, folder: Path) -> tuple[Batch, Report]:
    batch = asyncio.run(dry_run(PROFILES / f"screen-{gas}.toml", folder,
                                {"acid_wt": str(acid_wt)}))
    assert batch.result.state is Phase.COMPLETED
    assert not batch.events("interlock_trip")  # 2 g: the exotherm guard stays quiet
    return batch, analyse(load_batch(batch.result.batch_dir))


def heating_columns(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(elapsed s, sample °C, mass %, ΔT °C) while heating; mass and ΔT smoothed as the
    report smooths them."""
    t = np.array(batch.col("elapsed_s"))
    rows_per_window = window_rows(t, SMOOTH_S)
    mass = moving_mean(np.array(batch.col("mass_pct")), rows_per_window)
    delta = moving_mean(np.array(batch.col("delta_t_c")), rows_per_window)
    rate = heating_rate_c_per_min(t, np.array(batch.col("furnace_c")))
    rows = np.isfinite(rate) & (rate > 1.0)
    return t[rows], np.array(batch.col("sample_c"))[rows], mass[rows], delta[rows]


@pytest.mark.parametrize("acid_wt", LOADINGS)
def test_air_screen_bottoms_out_rises_and_peaks_near_220(acid_wt: int,
                                                         tmp_path: Path) -> None:
    batch, report = screen("air", acid_wt, tmp_path)
    t, sample_c, mass, delta = heating_columns(batch)
    low = report.mass_minimum
    assert low is not None
    assert low.sample_c is not None
    assert 150.0 <= low.sample_c <= 190.0
    # By 230 °C the pitch's oxygen uptake has lifted the mass at least a point off it.
    after = (t >= low.elapsed_s) & (np.maximum.accumulate(sample_c) <= 230.0)
    assert mass[after].max() - low.mass_pct >= 1.0

    exo = report.exotherm
    assert exo is not None
    assert exo.temperature_channel == "sample_c"
    assert 205.0 <= exo.peak_c <= 235.0
    assert report.suggested_preoxidation_c is not None
    assert abs(report.suggested_preoxidation_c - 220.0) <= 10.0
    # The baseline sits where the sample is quiet: after the start-up transient (the lag
    # has built up: ΔT level there), before the water leaves (mass within 0.3 points of
    # the start) ...
    assert exo.baseline_method == BASELINE_QUIET
    window = (sample_c >= exo.baseline_from_c) & (sample_c <= exo.baseline_to_c)
    assert mass[window].min() > 99.7
    assert delta[window].max() - delta[window].min() < 0.3
    # ... and the onset comes after the water has gone: not inside its endotherm.
    assert exo.onset_c < exo.peak_c
    at_onset = float(np.interp(exo.onset_c, sample_c[t <= exo.peak_elapsed_s],
                               mass[t <= exo.peak_elapsed_s]))
    assert at_onset - low.mass_pct < 0.1


@pytest.mark.parametrize("acid_wt", LOADINGS)
def test_n2_screen_loses_mass_steadily_without_an_exotherm(acid_wt: int,
                                                          tmp_path: Path) -> None:
    batch, report = screen("n2", acid_wt, tmp_path)
    _, sample_c, mass, _ = heating_columns(batch)
    span = (sample_c >= 170.0) & (sample_c <= 300.0)
    assert np.diff(mass[span]).max() < 0.01  # never a rise above the balance noise
    assert mass[span][0] - mass[span][-1] > 3.0  # and it does fall
    assert report.exotherm is None
    assert report.suggested_preoxidation_c is None
