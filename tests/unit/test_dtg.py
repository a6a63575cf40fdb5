"""The live DTG against numpy on recorded and synthetic traces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.run.dtg import SlidingSlope


def test_linear_signal_gives_its_slope_exactly() -> None:
    slope = SlidingSlope(120.0)
    out = [slope.update(t, 100.0 - 0.01 * t) for t in np.arange(0.0, 600.0, 2.0)]
    assert math.isnan(out[0])
    assert out[-1] == pytest.approx(-0.6, rel=1e-9)  # -0.01 %/s = -0.6 %/min


def test_matches_numpy_least_squares_over_the_same_window() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(0.0, 7200.0, 2.0)
    y = 100.0 - 8.0 / (1.0 + np.exp(-(t - 3600.0) / 500.0)) + rng.normal(0, 0.002, t.size)
    slope = SlidingSlope(300.0)
    live = np.array([slope.update(float(a), float(b)) for a, b in zip(t, y, strict=True)])
    for i in range(200, t.size, 97):
        sel = (t >= t[i] - 300.0) & (t <= t[i])
        expected = np.polyfit(t[sel], y[sel], 1)[0] * 60.0
        assert live[i] == pytest.approx(expected, abs=1e-9)


def test_tracks_numpy_gradient_of_a_recorded_trace() -> None:
    # A recorded mass trace (as trace.csv holds it) with balance noise: the live slope
    # follows numpy's smoothed derivative, lagging by half the window.
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 4 * 3600.0, 2.0)
    clean = 100.0 - 10.0 * (1.0 - np.exp(-t / 3000.0))
    y = clean + rng.normal(0, 0.0025, t.size)
    slope = SlidingSlope(240.0)
    live = np.array([slope.update(float(a), float(b)) for a, b in zip(t, y, strict=True)])
    reference = np.gradient(clean, t) * 60.0
    shifted = np.interp(t - 120.0, t, reference)  # centre of the window
    ok = ~np.isnan(live)
    ok[:200] = False
    assert np.max(np.abs(live[ok] - shifted[ok])) < 0.003


def test_nan_samples_are_skipped_and_memory_is_bounded() -> None:
    slope = SlidingSlope(60.0)
    for t in range(0, 100000, 2):
        slope.update(float(t), math.nan if t % 10 == 0 else 1.0)
    assert len(slope._points) <= 31
    assert slope.update(100000.0, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_rejects_bad_window() -> None:
    with pytest.raises(ValueError, match="positive"):
        SlidingSlope(0.0)
