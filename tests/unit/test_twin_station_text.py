"""``furnace twin fit`` writes its ``[twin]`` into a copy of the station file: any ``[twin]``
and ``[twin.*]`` there before are replaced, everything else (comments included) kept, and
the result loads as a station whose twin is the fit's."""

from __future__ import annotations

import math

import numpy as np

from controller.recipe.station import load_station_text
from controller.twin.fitting import TwinFit
from controller.twin.station_text import with_twin
from simulator.twin import TwinParams
from simulator.twin.fit import FitResult
from tests.conftest import ROOT

BUILTIN = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")


def _fit(params: TwinParams) -> TwinFit:
    result = FitResult(params, {"tc_tau_s": 0.8, "heat_capacity_j_per_k": 4.7},
                       {"B1": 0.19, "B2": 0.17}, {"B1": 1.7, "B2": 1.8}, (), (), 80)
    return TwinFit(result, TwinParams(), (), "2026-12-01T21:30:00Z")


def test_an_old_twin_is_replaced_and_the_rest_kept() -> None:
    old = (BUILTIN + "\n# my notes on the tube\n[twin]\ntc_tau_s = 999.0\n\n[twin.fit]\n"
           'fitted_utc = "2020-01-01T00:00:00Z"\nbatches = ["OLD"]\nrms_k = [9.0]\n'
           "one_sigma = {}\n")
    fitted = TwinParams(heat_capacity_j_per_k=4939.123456, tc_tau_s=121.98765)
    text = with_twin(old, _fit(fitted))
    assert text.startswith(BUILTIN.rstrip())
    assert "# my notes on the tube" in text
    assert text.count("[twin]") == 1
    assert "999" not in text
    assert "OLD" not in text
    station = load_station_text(text, "station-twin.toml", base_dir=ROOT)
    twin = station.twin
    assert twin is not None
    assert twin.fit is not None
    assert math.isclose(twin.heat_capacity_j_per_k, 4939.1)  # five significant figures
    assert math.isclose(twin.tc_tau_s, 121.99)
    assert twin.fit.batches == ("B1", "B2")
    assert twin.fit.rms_k == (0.19, 0.17)
    assert twin.fit.one_sigma["tc_tau_s"] == 0.8
    assert twin.fit.fitted_utc == "2026-12-01T21:30:00Z"


def test_a_station_without_a_twin_gets_one_at_the_end() -> None:
    text = with_twin(BUILTIN, _fit(TwinParams()))
    station = load_station_text(text, "station-twin.toml", base_dir=ROOT)
    assert station.twin is not None
    assert station.twin.params() == TwinParams().as_dict()
    assert np.isclose(station.twin.radiation_w_per_k4, TwinParams().radiation_w_per_k4)
