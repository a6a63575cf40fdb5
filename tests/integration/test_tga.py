"""Rung 3: the TGA/DSC-like channels end to end: the screening recipes reproduce the paper's
observations, the controls order as the chemistry says, the report reads them, and the
exotherm guard trips only when the exotherm is made larger.

The screens (about 2-4 h each) and the whole process recipes (about 30 h each: the controls
and the headline, ``slow``) are the session's dry runs (``dry_runs``), shared with
test_profiles_dry_run and test_headline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.analysis.data import load_batch
from controller.analysis.events import analyse
from controller.analysis.report import write_report_png
from controller.analysis.series import heating_rate_c_per_min, moving_mean
from controller.run.runstate import Phase
from tests.conftest import PROFILES
from tests.integration.helpers import Batch, DryRuns


@pytest.fixture(scope="module")
def air(dry_runs: DryRuns) -> Batch:
    return dry_runs(PROFILES / "screen-air.toml")


@pytest.fixture(scope="module")
def nitrogen(dry_runs: DryRuns) -> Batch:
    return dry_runs(PROFILES / "screen-n2.toml")


def _heating(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, temp = np.array(batch.col("elapsed_s")), np.array(batch.col("sample_c"))
    mass, delta = np.array(batch.col("mass_pct")), np.array(batch.col("delta_t_c"))
    rate = heating_rate_c_per_min(t, np.array(batch.col("furnace_c")))
    rows = np.isfinite(rate) & (rate > 1.0)
    return temp[rows], moving_mean(mass, 30)[rows], moving_mean(delta, 30)[rows]


def test_air_screen_mass_bottoms_out_between_150_and_190_then_rises(air: Batch) -> None:
    temp, mass, _ = _heating(air)
    i = int(np.argmin(mass[temp < 200]))
    assert 150.0 <= temp[i] <= 190.0
    after = mass[(temp > temp[i]) & (temp < 215)]
    assert after.max() - mass[i] > 0.3  # it rises as the pitch takes up oxygen


def test_air_screen_exotherm_peaks_between_200_and_240(air: Batch) -> None:
    temp, _, delta = _heating(air)
    window = (temp > 150) & (temp < 238)
    peak_c = temp[window][int(np.argmax(delta[window]))]
    assert 200.0 <= peak_c <= 240.0


def test_report_on_air_screen_suggests_about_220(air: Batch) -> None:
    report = analyse(load_batch(air.result.batch_dir))
    assert report.suggested_preoxidation_c is not None
    assert abs(report.suggested_preoxidation_c - 220.0) <= 10.0
    assert report.mass_minimum is not None
    assert report.mass_minimum.sample_c is not None
    assert 150.0 <= report.mass_minimum.sample_c <= 190.0


def test_n2_screen_mass_falls_steadily_and_no_exotherm(nitrogen: Batch) -> None:
    temp, mass, delta = _heating(nitrogen)
    span = (temp >= 170) & (temp <= 300)
    steps = np.diff(mass[span])
    assert steps.max() < 0.01  # never a rise above the balance noise
    assert mass[span][0] - mass[span][-1] > 3.0  # and it does fall
    report = analyse(load_batch(nitrogen.result.batch_dir))
    assert report.exotherm is None
    assert report.suggested_preoxidation_c is None


def _preox_peak_excess_c(batch: Batch) -> float:
    """Largest rise of ΔT in the 220 °C stage above its level below 120 °C."""
    stage = {"air": "pre-oxidation", "N2": "nitrogen treatment"}
    names = {stage[s.atmosphere] for s in batch.plan.stages if s.atmosphere in stage}
    rows = [r for r in batch.rows if r["stage"] in names]
    delta = moving_mean(np.array([float(r["delta_t_c"]) for r in rows]), 30)
    temp = np.array([float(r["furnace_c"]) for r in rows])
    hot = temp > 150.0
    return float(np.nanmax(delta[hot]) - np.nanmedian(delta[temp < 120.0]))


@pytest.fixture(scope="module")
def controls(dry_runs: DryRuns) -> dict[str, Batch]:
    """POP50 and its three controls, whole (each batch carries the sample's final carbon
    yield, the simulator's ground truth)."""
    return {"POP50": dry_runs(PROFILES / "pop70-600-1600.toml", {"acid_wt": "50"}),
            "PO": dry_runs(PROFILES / "po-600-1600.toml"),
            "PN": dry_runs(PROFILES / "pn-600-1600.toml"),
            "PNP50": dry_runs(PROFILES / "pnp50-600-1600.toml")}


@pytest.mark.slow
@pytest.mark.timeout(480)  # its fixture dry-runs four whole batches (unless shared)
def test_controls_order_as_the_chemistry_says(controls: dict[str, Batch]) -> None:
    for batch in controls.values():
        assert batch.result.state is Phase.COMPLETED
    excess = {name: _preox_peak_excess_c(b) for name, b in controls.items()}
    assert excess["POP50"] > excess["PO"] + 1.0  # acid and air: the larger exotherm
    for name in ("PN", "PNP50"):  # nitrogen: none
        assert excess[name] < excess["PO"], name
        report = analyse(load_batch(controls[name].result.batch_dir))
        assert report.exotherm is None, name
    yields = {name: b.carbon_yield_pct for name, b in controls.items()}
    assert None not in yields.values()
    assert yields["POP50"] > yields["PN"] + 10.0
    assert yields["PO"] > yields["PN"]


@pytest.mark.slow
def test_report_png_for_headline_and_screen(air: Batch, dry_runs: DryRuns,
                                            tmp_path: Path) -> None:
    headline = dry_runs(PROFILES / "pop70-600-1600.toml")
    for batch in (headline, air):
        data = load_batch(batch.result.batch_dir)  # the shared batch: the PNG goes elsewhere
        png = write_report_png(data, analyse(data), tmp_path / f"{batch.plan.sample_name}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 50_000


def test_exotherm_guard_trips_on_a_larger_exotherm(dry_runs: DryRuns) -> None:
    batch = dry_runs(PROFILES / "screen-air.toml", {"mass_g": "8", "rate_c_per_min": "10"})
    trips = batch.events("interlock_trip")
    assert [t["interlock"] for t in trips][:1] in (["exotherm_rate"], ["exotherm_guard"])
    assert trips[0]["action"] == "ramp stopped"
    cut = [t for t in trips if t["interlock"] == "exotherm_cut"]
    assert cut
    assert cut[0]["action"] == "hold, heat cut"
    assert cut[0]["measured"] > cut[0]["limit"]
    # heat cut: the setpoint drops to ambient at once and stays there
    t_cut = cut[0]["t_s"]
    later = [float(r["setpoint_c"]) for r in batch.rows if float(r["elapsed_s"]) > t_cut]
    assert max(later) <= 25.0 + 1e-6
    assert batch.result.state is Phase.ABORTED  # nobody resumed the hold
