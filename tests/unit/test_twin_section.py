"""The station file's ``[twin]``: its defaults are the simulator's built-in furnace, its
bounds hold every default, a bad value is a one-line error naming the field, and
``describe_twin`` says which twin a station has."""

from __future__ import annotations

from dataclasses import fields

import pytest

from controller.recipe.station import (
    TUBE_VOLUME_BOUNDS_L,
    TwinSection,
    describe_twin,
    load_station_text,
    twin_bounds,
)
from drivers.errors import ConfigurationError
from simulator.sample import SAMPLE_TAU_S
from simulator.twin import FITTED, PARAM_UNITS, TwinParams
from tests.conftest import ROOT

BUILTIN = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
FIT = ('[twin.fit]\nfitted_utc = "2026-12-01T21:30:00Z"\nbatches = ["A", "B"]\n'
       "rms_k = [1.5, 1.23]\none_sigma = { heat_capacity_j_per_k = 40.0 }\n")


def _station(twin: str) -> str:
    return f"{BUILTIN}\n[twin]\n{twin}"


def _error(twin: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load_station_text(_station(twin), "st.toml")
    return info.value


def test_the_defaults_are_the_built_in_furnace() -> None:
    names = [f.name for f in fields(TwinParams)]
    assert list(TwinSection().params()) == names
    assert TwinSection().params() == TwinParams().as_dict()
    assert TwinParams(**TwinSection().params()) == TwinParams()
    assert TwinParams().sample_tau_s == SAMPLE_TAU_S
    assert set(PARAM_UNITS) == set(names) >= set(FITTED)


def test_the_bounds_hold_every_default() -> None:
    bounds = twin_bounds()
    assert list(bounds) == [*(f.name for f in fields(TwinParams)), "tube_volume_l"]
    assert bounds["tube_volume_l"] == TUBE_VOLUME_BOUNDS_L
    assert bounds["tc_tau_s"] == (1.0, 1800.0)
    assert bounds["radiation_w_per_k4"] == (0.0, 1e-8)
    for name, value in TwinParams().as_dict().items():
        lo, hi = bounds[name]
        assert lo <= value <= hi, name


def test_the_bounds_are_what_the_file_allows() -> None:
    """Each bound itself is accepted; TwinParams takes every value inside them."""
    for name, (lo, hi) in twin_bounds().items():
        for value in (lo, hi):
            if name.startswith("output_") and value in (0.0, 100.0):
                continue  # the limits must not cross: checked below
            twin = load_station_text(_station(f"{name} = {value!r}\n"), "st.toml").twin
            assert twin is not None
            TwinParams(**twin.params())
            assert twin.params().get(name, twin.tube_volume_l) == value


def test_a_twin_is_read_with_its_fit() -> None:
    station = load_station_text(_station("tc_tau_s = 75.0\n\n" + FIT), "st.toml")
    assert station.twin is not None
    assert station.twin.params()["tc_tau_s"] == 75.0
    assert station.twin.fit is not None
    assert station.twin.fit.batches == ("A", "B")
    assert station.twin.fit.one_sigma == {"heat_capacity_j_per_k": 40.0}
    assert station.twin.fit.excluded == ()


@pytest.mark.parametrize(("twin", "field", "words"), [
    ("tc_tau_s = 5000\n", "twin.tc_tau_s", "less than or equal to 1800 (got 5000)"),
    ("heat_capacity_j_per_k = 50.0\n", "twin.heat_capacity_j_per_k", "greater than or equal"),
    ("radiation_w_per_k4 = -1e-12\n", "twin.radiation_w_per_k4", "greater than or equal"),
    ("conductance_w_per_k = nan\n", "twin.conductance_w_per_k", "finite"),
    ("output_low_pct = 60\noutput_high_pct = 40\n", "twin.output_low_pct",
     "60 % is not below output_high_pct (40 %)"),
    ("output_low_pct = 100\n", "twin.output_low_pct", "not below output_high_pct"),
    ("tc_tau = 50\n", "twin.tc_tau", "unknown field"),
    # Each value in bounds, together a core that moves in a fraction of a second at 1820 °C:
    # no furnace, and a simulator that cannot step it (a dry run on it never ended).
    ("heat_capacity_j_per_k = 100\nconductance_w_per_k = 100\nradiation_w_per_k4 = 1e-8\n",
     "twin.heat_capacity_j_per_k", "core time constant of 0.21 s"),
    ("\n" + FIT.replace("rms_k = [1.5, 1.23]", "rms_k = [1.5]"), "twin.fit.rms_k",
     "1 values for 2 batches"),
    ("\n" + FIT.replace("batches = [\"A\", \"B\"]", "batches = []"), "twin.fit.batches",
     "at least 1"),
    ("\n" + FIT.replace("21:30:00Z", "21:30:00+01:00"), "twin.fit.fitted_utc",
     "2026-12-01T21:30:00Z"),
    ("\n" + FIT.replace("2026-12-01T", "2026-13-01T"), "twin.fit.fitted_utc", "UTC time"),
    ("\n" + FIT.replace("heat_capacity_j_per_k = 40.0", "mass = 1.0"),
     "twin.fit.one_sigma.mass", "not a twin parameter"),
    ("\n" + FIT + "colour = 1\n", "twin.fit.colour", "unknown field"),
])
def test_a_bad_twin_is_one_line_naming_the_field(twin: str, field: str, words: str) -> None:
    err = _error(twin)
    assert err.field == field
    assert str(err).startswith(f"st.toml: {field}: ")
    assert words in str(err)
    assert "\n" not in str(err)


def test_describe_twin_says_which_furnace() -> None:
    assert describe_twin(load_station_text(BUILTIN, "st.toml")) == (
        "the built-in furnace model (not fitted to this station)")
    assert describe_twin(load_station_text(_station("tc_tau_s = 75.0\n"), "st.toml")) == (
        "set by hand in the station file (not fitted)")
    assert describe_twin(load_station_text(_station(FIT), "st.toml")) == (
        "fitted 2026-12-01T21:30:00Z from 2 batches (A, B), replay error 1.2-1.5 K RMS")
    one = FIT.replace('["A", "B"]', '["A"]').replace("[1.5, 1.23]", "[0.84]")
    assert describe_twin(load_station_text(_station(one), "st.toml")) == (
        "fitted 2026-12-01T21:30:00Z from 1 batch (A), replay error 0.8 K RMS")
    many = FIT.replace('["A", "B"]', str([f"B{i}" for i in range(6)]).replace("'", '"')
                       ).replace("[1.5, 1.23]", "[1.0, 1.0, 1.0, 1.0, 1.0, 2.0]")
    assert describe_twin(load_station_text(_station(many), "st.toml")) == (
        "fitted 2026-12-01T21:30:00Z from 6 batches (B0, B1, B2, B3, ... and 2 more), "
        "replay error 1.0-2.0 K RMS")


def test_the_example_stations_twin_block_is_valid_and_the_defaults() -> None:
    """The commented-out ``[twin]`` of stations/example-eurotherm-alicat.toml, uncommented."""
    text = (ROOT / "stations" / "example-eurotherm-alicat.toml").read_text(encoding="utf-8")
    start = text.index("# [twin]\n")
    block = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    station = load_station_text(text[:start] + block, "st.toml")
    assert station.twin is not None
    assert station.twin.params() == TwinParams().as_dict()
    assert station.twin.fit is not None
    assert set(station.twin.fit.one_sigma) <= set(FITTED)
