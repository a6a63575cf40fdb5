"""``furnace twin fit`` writes its ``[twin]`` into a copy of the station file: any ``[twin]``
and ``[twin.*]`` there before are replaced (however written: tables, dotted keys, an inline
table; an earlier fit's note with them), everything else (comments included) kept, and the
result loads as a station whose twin is the fit's; a twin that cannot be taken out whole is
one line naming the file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.recipe.station import load_station, load_station_text
from controller.twin.fitting import TwinFit
from controller.twin.station_text import with_twin, without_twin
from controller.twin.stretches import BatchStretches
from drivers.errors import ConfigurationError
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
    text = with_twin(old, _fit(fitted), source="station.toml")
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
    text = with_twin(BUILTIN, _fit(TwinParams()), source="station.toml")
    station = load_station_text(text, "station-twin.toml", base_dir=ROOT)
    assert station.twin is not None
    assert station.twin.params() == TwinParams().as_dict()
    assert np.isclose(station.twin.radiation_w_per_k4, TwinParams().radiation_w_per_k4)


HEAD, TAIL = BUILTIN.split("[hold]")


def _loads_with_the_fit(text: str) -> None:
    fitted = TwinParams(tc_tau_s=77.0)
    written = with_twin(text, _fit(fitted), source="station.toml")
    station = load_station_text(written, "station-twin.toml", base_dir=ROOT)
    assert station.twin is not None
    assert station.twin.tc_tau_s == 77.0
    assert station.hold == load_station_text(BUILTIN, "s.toml", base_dir=ROOT).hold
    assert written.count("fitted by `furnace twin fit`") == 1


@pytest.mark.parametrize("text", [
    BUILTIN.replace("scan_period_s = 2.0", "scan_period_s = 2.0\ntwin.tc_tau_s = 3.0"),
    BUILTIN.replace("scan_period_s = 2.0", "scan_period_s = 2.0\ntwin = { tc_tau_s = 3.0 }"),
    BUILTIN.replace("scan_period_s = 2.0",
                    'scan_period_s = 2.0\n"twin".fit = { fitted_utc = "2020-01-01T00:00:00Z", '
                    'batches = ["X"], rms_k = [1.0], one_sigma = {} }'),
    BUILTIN + '\n["twin"]\ntc_tau_s = 3.0\n',
    BUILTIN + "\n[ twin . fit ]\nfitted_utc = \"2020-01-01T00:00:00Z\"\nbatches = [\"X\"]\n"
              "rms_k = [1.0]\none_sigma = {}\n",
    HEAD + "[twin] # by hand\ntc_tau_s = 3.0\n\n[twin.fit]\nfitted_utc = \"2020-01-01T00:00:00Z\"\n"
           "batches = [\"X\"]\nrms_k = [1.0]\n\n[twin.fit.one_sigma]\ntc_tau_s = 1.0\n\n[hold]"
    + TAIL,
], ids=["dotted", "inline", "quoted-dotted", "quoted-header", "spaced-header", "middle"])
def test_a_twin_however_written_is_replaced(text: str) -> None:
    load_station_text(text, "station.toml", base_dir=ROOT)  # the lab's file is valid
    _loads_with_the_fit(text)


def test_the_comments_of_the_next_table_stay_and_the_old_fits_go() -> None:
    text = HEAD + "[twin]\ntc_tau_s = 3.0\n\n# the hold: keep it short\n[hold]" + TAIL
    written = with_twin(text, _fit(TwinParams()), source="station.toml")
    assert "# the hold: keep it short\n[hold]" in written
    # A fit of a fitted station says once when it was fitted.
    again = with_twin(written, _fit(TwinParams()), source="station.toml")
    _loads_with_the_fit(again)


def test_a_twin_it_cannot_take_out_whole_is_one_line_naming_the_file() -> None:
    text = BUILTIN.replace("scan_period_s = 2.0", 'scan_period_s = 2.0\ntwin.fit.batches = [\n'
                           '  "X",\n]\ntwin.fit.rms_k = [1.0]\ntwin.fit.one_sigma = {}\n'
                           'twin.fit.fitted_utc = "2020-01-01T00:00:00Z"')
    load_station_text(text, "station.toml", base_dir=ROOT)
    with pytest.raises(ConfigurationError, match=r"^station\.toml: twin: .*\[twin\] table"):
        without_twin(text, "station.toml")


def test_a_batch_name_as_long_as_a_file_name_can_be_is_recorded() -> None:
    # A folder's name may be 255 characters (ext4, NTFS, APFS); a note on a stretch of it
    # left out is that name and why.
    name = "B" * 255
    note = (f"{name}: 100:00:00-100:20:00 excluded: furnace PV outside -5..1680 °C (a broken "
            "or shorted thermocouple?)")
    result = FitResult(TwinParams(), {"tc_tau_s": 0.8}, {name: 0.19}, {name: 1.7}, (), (), 80)
    station, _ = load_station(None)
    fit = TwinFit(result, TwinParams(), (BatchStretches(name, station, (), (note,)),),
                  "2026-12-01T21:30:00Z")
    text = with_twin(BUILTIN, fit, source="station.toml")
    twin = load_station_text(text, "station-twin.toml", base_dir=ROOT).twin
    assert twin is not None
    assert twin.fit is not None
    assert twin.fit.batches == (name,)
    assert twin.fit.excluded == (note,)
