"""The twin's replays and fit (``simulator.twin``) on rows as a trace may hold them: a row
written twice (the same ``elapsed_s``: no time passes between them) is replayed as no time
passing, never as a division by zero, even when every row is. Simulated physics only; no
clock is involved."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from controller.recipe.station import twin_bounds
from simulator.thermal import FurnaceThermal
from simulator.twin.fit import TwinFitError, fit_twin
from simulator.twin.params import TwinParams
from simulator.twin.replay import Stretch, replay_loop, replay_plant

AMBIENT_C = 25.0


def _heating(rows: int = 900) -> Stretch:
    """A 30-minute ramp from 300 °C at 5 °C/min, the PV and output as the loop gives them."""
    t_s = np.arange(rows) * 2.0
    wsp_c = 300.0 + t_s * 5.0 / 60.0
    seed = Stretch("B", t_s, wsp_c, np.full(rows, 300.0), np.full(rows, 20.0),
                   np.full(rows, math.nan), AMBIENT_C)
    loop = replay_loop(TwinParams(), seed)
    return Stretch("B", t_s, wsp_c, loop.tc_c, loop.output_pct, np.full(rows, math.nan),
                   AMBIENT_C)


def _with_row_twice(s: Stretch, row: int) -> Stretch:
    def twice(a: np.ndarray) -> np.ndarray:
        return np.insert(a, row + 1, a[row])
    return Stretch(s.batch, twice(s.t_s), twice(s.wsp_c), twice(s.pv_c), twice(s.output_pct),
                   twice(s.sample_c), s.ambient_c)


def test_a_row_written_twice_is_no_time_passing() -> None:
    s = _heating()
    doubled = _with_row_twice(s, 400)
    p = TwinParams()
    loop, loop2 = replay_loop(p, s), replay_loop(p, doubled)
    assert np.isfinite(loop2.tc_c).all()
    assert np.isfinite(loop2.output_pct).all()
    keep = np.delete(np.arange(doubled.t_s.size), 401)  # the copy
    assert np.allclose(loop2.tc_c[keep], loop.tc_c)
    assert np.allclose(loop2.output_pct[keep], loop.output_pct)
    assert np.allclose(replay_plant(p, doubled)[0][keep], replay_plant(p, s)[0])


def test_a_trace_with_every_row_written_twice_is_fitted() -> None:
    s = _heating(rows=300)  # 10 minutes: 5 of them scored
    doubled = s
    for row in range(s.t_s.size - 1, -1, -1):
        doubled = _with_row_twice(doubled, row)
    assert np.median(np.diff(doubled.t_s)) == 0.0
    result = fit_twin([doubled], TwinParams(), twin_bounds())
    assert all(math.isfinite(v) for v in result.params.as_dict().values())
    assert result.rms_k["B"] < 1.0


def test_a_boat_the_core_cannot_explain_is_an_unbounded_uncertainty() -> None:
    # The furnace holds 300 °C while the boat reads 1500 °C throughout: no lag explains
    # that, and the boat's lag is pinned by nothing (an uncertainty of inf, not an overflow).
    p = TwinParams()
    rows = 600
    t_s = np.arange(rows) * 2.0
    hold = np.full(rows, 100.0 * FurnaceThermal(p.thermal(AMBIENT_C)).heat_loss_w(300.0)
                   / p.max_power_w)
    seed = Stretch("B", t_s, np.full(rows, 300.0), np.full(rows, 300.0), hold,
                   np.full(rows, math.nan), AMBIENT_C)
    loop = replay_loop(p, seed)
    s = Stretch("B", t_s, seed.wsp_c, loop.tc_c, loop.output_pct, np.full(rows, 1500.0),
                AMBIENT_C)
    result = fit_twin([s], p, twin_bounds())
    assert result.one_sigma["sample_tau_s"] == math.inf
    assert all(math.isfinite(v) for v in result.params.as_dict().values())


def test_the_boats_lag_is_fitted_to_the_rows_the_boat_was_read() -> None:
    s = _heating(rows=600)
    p = TwinParams()
    boat = replay_loop(p, s).sample_c.copy()
    whole = fit_twin([replace(s, sample_c=boat)], p, twin_bounds())
    boat[300:400] = math.nan  # the boat's thermocouple not read for 200 s
    gap = fit_twin([replace(s, sample_c=boat)], p, twin_bounds())
    assert math.isfinite(gap.one_sigma["sample_tau_s"])
    # A ramp alone pins the furnace loosely; the boat's lag behind that furnace is fitted
    # all the same from the rows it was read, as from the whole record.
    assert gap.params.sample_tau_s == pytest.approx(whole.params.sample_tau_s, rel=0.05)


def test_a_twin_whose_replay_diverges_is_a_fit_error() -> None:
    # Within the [twin]'s bounds, but a heated mass far too small for its losses and power:
    # the replay cannot step it, and the fit says so (scipy would raise its own ValueError).
    stiff = TwinParams(heat_capacity_j_per_k=100.0, conductance_w_per_k=100.0,
                       radiation_w_per_k4=1e-8, max_power_w=1e5, tc_tau_s=1.0)
    with pytest.raises(TwinFitError, match="not finite"):
        fit_twin([_heating(rows=600)], stiff, twin_bounds())
