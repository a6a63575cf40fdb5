"""The tube's gas volume from a purge's record (issue 16): the simulator's own tube and O2
analyser wash a tube of a volume the fit is not told; the fit gets it back from the
flows and the readings alone."""

from __future__ import annotations

import random

import numpy as np
import pytest

from simulator.gas import AIR_O2_PPM, TubeGas, inlet_o2_ppm
from simulator.o2 import SimO2Analyser
from simulator.twin.purge import Purge, fit_tube_volume, replay_o2

ROW_S = 2.0


def _record(volume_l: float, flow_sccm: float, rows: int, seed: int = 1) -> Purge:
    """An argon purge of a tube of ``volume_l`` at ``flow_sccm`` as the simulator plays it
    (0.5 s substeps, the analyser's lag and 1 % noise), read every ``ROW_S``."""
    tube = TubeGas(volume_l)
    analyser = SimO2Analyser(random.Random(seed), initial_ppm=AIR_O2_PPM)
    ar_ppm = inlet_o2_ppm(0.0)
    # the published reading, noise included (the built-in map's O2 register is its first)
    t, readings = [0.0], [analyser.bank.values[0]]
    for k in range(1, rows):
        for _ in range(4):
            tube.step(0.5, flow_sccm, ar_ppm)
            analyser.step(0.5, tube.o2_ppm)
        analyser.publish()
        t.append(k * ROW_S)
        readings.append(analyser.bank.values[0])
    n = len(t)
    return Purge("B", np.asarray(t), np.full(n, flow_sccm), np.full(n, ar_ppm),
                 np.asarray(readings))


@pytest.mark.parametrize("volume_l", [0.8, 1.96, 6.5])
def test_the_fit_finds_the_volume_the_tube_had(volume_l: float) -> None:
    purge = _record(volume_l, 500.0, rows=int(8 * volume_l / (500.0 / 60_000.0) / ROW_S))
    fit = fit_tube_volume([purge], start_l=3.0, bounds_l=(0.05, 200.0))
    assert fit is not None
    assert fit.volume_l == pytest.approx(volume_l, rel=0.02)
    assert fit.rms_decades["B"] < 0.02
    assert fit.one_sigma_l < 0.05 * volume_l


def test_a_wrong_volume_replays_worse() -> None:
    purge = _record(1.96, 500.0, rows=900)
    right = np.log10(replay_o2(1.96, purge)) - np.log10(purge.o2_ppm)
    wrong = np.log10(replay_o2(2.5, purge)) - np.log10(purge.o2_ppm)
    assert float(np.sqrt(np.mean(wrong ** 2))) > 5 * float(np.sqrt(np.mean(right ** 2)))


def test_no_purge_no_volume() -> None:
    flat = Purge("B", np.arange(5.0), np.zeros(5), np.full(5, 2.0), np.full(5, 5.0))
    assert fit_tube_volume([flat], 1.96, (0.05, 200.0)) is None
